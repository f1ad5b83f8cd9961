"""Every ``sweep.*`` MLflow tag the package writes or reads, named once.

The tag names and their values are a public contract: the MLflow UI, ``sweep status``,
``sweep best``, ``sweep resume``, the report and users' own queries read them. Modelled on
MLflow's ``mlflow/utils/mlflow_tags.py``: one constant per tag, with a comment saying on which
run it is (the sweep's *parent* run, a trial's *child* run, the registered model *version*)
and what its value is. MLflow keeps every tag value as text.

This module imports nothing: the driver, the trial workers and the writer process all use it.
"""

from __future__ import annotations

# -- who a run is (parent and child runs) --------------------------------------------------
ROLE_TAG = "sweep.role"  # parent and child: "parent" for the sweep's run, "trial" for a trial's
NAME_TAG = "sweep.name"  # parent, child and version: the sweep's name (``name:`` of the sweep file)
TRIAL_TAG = "sweep.trial_id"  # child and version: Ray Tune's trial id of the trial
TRIAL_NUMBER_TAG = "sweep.trial_number"  # child: the trial's number (0, 1, ...); version: as shown, "0002"
STATUS_TAG = "sweep.status"  # child: the trial's status (running, completed, stopped_early, failed, interrupted)

# -- a trial's child run ---------------------------------------------------------------------
EPOCHS_TAG = "sweep.epochs"  # child: the epochs the trial ran
STOPPED_EPOCH_TAG = "sweep.stopped_epoch"  # child, a trial that did not complete: the epoch it stopped at
REASON_TAG = "sweep.reason"  # child: why the trial stopped, failed or was interrupted (one line)
BEST_VALUE_TAG = "sweep.best_value"  # child: the trial's best objective value (repr of a float); parent and version: the sweep's best
BEST_EPOCH_TAG = "sweep.best_epoch"  # child: the epoch of that value; parent and version: the best trial's
CHECKPOINT_TAG = "sweep.checkpoint"  # child: the location (folder or storage URI) of the trial's newest (= best) checkpoint
CHECKPOINT_EPOCH_TAG = "sweep.checkpoint_epoch"  # child: the epoch of that checkpoint
CHECKPOINT_EVICTED_TAG = "sweep.checkpoint_evicted"  # child: why its local checkpoint was deleted ("disk quota (...)")
RESUMED_FROM_EPOCH_TAG = "sweep.resumed_from_epoch"  # child, a resumed trial: the epochs it had run before
RESUMED_AS_TAG = "sweep.resumed_as"  # child, a resumed trial: Ray Tune's trial id in the session that continued it (its checkpoint folder carries it)
RETRIES_TAG = "sweep.retries"  # child, a retried trial: how many times its worker was lost and it ran again
RETRY_REASON_TAG = "sweep.retry_reason"  # child, a retried trial: why the worker was lost
RETRIED_FROM_EPOCH_TAG = "sweep.retried_from_epoch"  # child, a retried trial: the checkpoint's epoch it restarted from (0: none)
NODE_ID_TAG = "sweep.node_id"  # child: the Ray node id the trial ran on
NODE_IP_TAG = "sweep.node_ip"  # child: that node's IP address
CPUS_TAG = "sweep.cpus"  # child: the CPUs the trial was given
GPUS_TAG = "sweep.gpus"  # child: the GPUs the trial was given
CUDA_VISIBLE_DEVICES_TAG = "sweep.cuda_visible_devices"  # child: CUDA_VISIBLE_DEVICES in the trial's worker

# -- the sweep's parent run: what resume needs to find again (set when it is created) ------
FILE_TAG = "sweep.file"  # parent: the sweep file's absolute path ("" for a sweep given as a dict)
TRIALS_REQUESTED_TAG = "sweep.trials_requested"  # parent: the trial budget of its latest session (a resume may raise it: --trials 6)
STORAGE_ROOT_TAG = "sweep.storage_root"  # parent: the --storage root the sweep was run with
CONFIG_HASH_TAG = "sweep.config_hash"  # parent: the hash of the validated sweep file (resume refuses a changed file)
DATA_TAG = "sweep.data"  # parent: what the sweep read from the data, as printed at the start
DATA_TASK_TAG = "sweep.data.task"  # parent: the task, or each output's task for several outputs
DATA_LABELS_TAG = "sweep.data.labels"  # parent, classification: JSON list, class index -> original label
DATA_INPUTS_TAG = "sweep.data.inputs"  # parent: the input shape(s)
DATA_OUTPUTS_TAG = "sweep.data.outputs"  # parent: the output size(s)
DATA_PREPARED_TAG = "sweep.data.prepared"  # parent: what was done to the inputs before fit() (the best model takes raw inputs)
METRIC_NAMES_TAG = "sweep.metric_names"  # parent: JSON {keras name: MLflow name} of the renamed metrics
PARAM_NAMES_TAG = "sweep.param_names"  # parent: the same for params (search-space names, config keys)
RESUMED_TAG = "sweep.resumed"  # parent: "true" once the sweep was resumed

# -- the sweep's parent run: its summary (set when it ends) ----------------------------------
METRIC_TAG = "sweep.metric"  # parent and version: the objective's metric name (objective.metric)
MODE_TAG = "sweep.mode"  # parent: "min" or "max" (objective.mode)
STORAGE_TAG = "sweep.storage"  # parent: the folder or URI of the sweep's checkpoints
TRIALS_TAG_PREFIX = "sweep.trials."  # parent: sweep.trials.<status> = how many trials ended so (see trials_tag)
BEST_TRIAL_ID_TAG = "sweep.best_trial_id"  # parent: the best trial's Ray Tune trial id
BEST_RUN_ID_TAG = "sweep.best_run_id"  # parent: the best trial's MLflow run id ("" if it has none)
BEST_EPOCHS_TAG = "sweep.best_epochs"  # parent: the epochs the best trial ran
BEST_CHECKPOINT_TAG = "sweep.best_checkpoint"  # parent: the best trial's checkpoint location ("" if none)
FINISH_ERROR_TAG = "sweep.finish_error"  # parent: what failed at the end of the sweep (the run ends FAILED)

# -- the registered model version of the best model ------------------------------------------
PARENT_RUN_ID_TAG = "sweep.parent_run_id"  # version: the sweep's parent run id


def trials_tag(status: str) -> str:
    """The parent run's count of trials that ended with ``status`` (``sweep.trials.completed``):
    one tag per status, so ``sweep status`` of a finished sweep reads one run, not its trials."""
    return f"{TRIALS_TAG_PREFIX}{status}"
