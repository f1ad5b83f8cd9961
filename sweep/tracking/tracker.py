"""MLflow: one parent run per sweep, one nested child run per trial, written from the driver.

Workers never talk to MLflow. The tracker is a Ray Tune callback on the driver that turns
results into operations; a writer process (``sweep.tracking.writer``) applies them in order, batched
per run, so neither a slow tracking server nor MLflow's own CPU cost stalls Tune's event
loop, let alone a trial's ``fit()``. ``close()`` flushes everything before the sweep
reports its end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator


from sweep.worker import storage
from sweep.worker.checkpoints import MODEL_FILE
from sweep.tracking.client import client, forget_deleted_stores, set_sweep_http_defaults, sqlite_path
from sweep.tracking.tags import (
    BEST_CHECKPOINT_TAG, BEST_EPOCH_TAG, BEST_EPOCHS_TAG, BEST_RUN_ID_TAG, BEST_TRIAL_ID_TAG, BEST_VALUE_TAG, CHECKPOINT_EPOCH_TAG,
    CHECKPOINT_TAG, EPOCHS_TAG, FINISH_ERROR_TAG, METRIC_NAMES_TAG, METRIC_TAG, MODE_TAG, NAME_TAG, NODE_IP_TAG, PARAM_NAMES_TAG,
    PARENT_RUN_ID_TAG, REASON_TAG, RESUMED_AS_TAG, RESUMED_FROM_EPOCH_TAG, RESUMED_TAG, RETRIED_FROM_EPOCH_TAG, RETRIES_TAG, RETRY_REASON_TAG,
    ROLE_TAG, STATUS_TAG, STOPPED_EPOCH_TAG, STORAGE_TAG, TRIAL_NUMBER_TAG, TRIAL_TAG, TRIALS_REQUESTED_TAG, trials_tag,
)
from sweep.errors import one_line
from sweep.protocol import COUNTED, HELD_EPOCHS_FIELD, TrialStatus, is_finished
from sweep.tracking.writer import ORPHAN_DRAIN_S, MlflowNames, OpKind, WriterProcess, name_problem, param_text, sanitized
from sweep.tracking.store import badness
from sweep.driver.ledger import DriverCallback, Ledger, epoch_of, SweepResult, TrialOutcome, keras_metrics, worker_metrics

log = logging.getLogger("sweep.tracking")

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # MLflow 3's UI: which view an experiment opens in
EXPERIMENT_KIND = "custom_model_development"  # its model-training view (not the GenAI one)
CHAMPION_ALIAS = "champion"  # the registry alias that follows the newest sweep's best model


def artifact_location(uri: str, experiment: str) -> str | None:
    """Keep a sqlite store's artifacts next to its file (not in the working directory)."""
    path = sqlite_path(uri)
    return (path.parent / "mlartifacts" / experiment).as_uri() if path is not None else None


def ensure_experiment(mlflow_client: Any, uri: str, name: str) -> str:
    """The experiment's id (created when missing), tagged so MLflow's UI opens it in its
    model-training view; a kind someone chose in the UI is left as it is."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        return mlflow_client.create_experiment(
            name, artifact_location=artifact_location(uri, name), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
        try:
            mlflow_client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        except Exception as exc:  # a read-only experiment: the view is a nicety, never the sweep
            log.debug("could not tag experiment %s (%s)", name, exc)
    return experiment.experiment_id


def best_metric_name(metric: str) -> str:
    """The metric each trial run (and the parent) logs its best objective under: ``best_val_accuracy``.
    Sorting the runs table by it ranks trials as ``sweep best`` does (the objective's own
    column is each trial's last epoch)."""
    return f"best_{metric}"


def source_tags() -> dict[str, str]:
    """``mlflow.user``, ``mlflow.source.name`` and ``mlflow.source.type``, as MLflow's own clients set them."""
    try:
        from mlflow.tracking.context.default_context import DefaultRunContext

        return {k: str(v) for k, v in DefaultRunContext().tags().items()}
    except Exception:
        return {}


# config.* params always logged, defaults or not: what readers of the parent run look up
ESSENTIAL_PARAMS = frozenset({
    "config.name", "config.data.source", "config.objective.metric", "config.objective.mode", "config.search.trials",
    "config.search.sampler", "config.fit.epochs", "config.scheduler.type", "config.search.space",
})


def flat_config(data: dict[str, Any]) -> dict[str, Any]:
    """A sweep file's JSON (``SweepConfig.model_dump(mode="json")``) as flat ``config.*`` param
    names; the search space stays one value (its entries are the trials' own params)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value and prefix != "config.search.space":
            for key, item in value.items():
                walk(f"{prefix}.{key}", item)
        else:
            flat[prefix] = value

    walk("config", data)
    return flat


def non_default_params(flat: dict[str, Any]) -> dict[str, Any]:
    """The ``config.*`` params that differ from the sweep file's defaults (plus ``ESSENTIAL_PARAMS``
    and every other param): the whole file is the parent run's ``sweep/config.json`` artifact.
    The defaults are those of a sweep file with the same name, data source, space and scheduler type."""
    try:
        from sweep.spec.config import SweepConfig

        space = flat.get("config.search.space")
        default = SweepConfig.model_validate({
            "name": flat["config.name"],
            "data": {"source": flat["config.data.source"]},
            "search": {"space": space},
            "scheduler": {"type": flat.get("config.scheduler.type", "asha")},
        }).model_dump(mode="json")
    except Exception:  # not a whole sweep's params (a test's, an older format): log them all
        return dict(flat)
    defaults = flat_config(default)
    missing = object()
    return {
        key: value for key, value in flat.items()
        if key in ESSENTIAL_PARAMS or not key.startswith("config.") or defaults.get(key, missing) != value
    }


# ---------------------------------------------------------------------------------------------
# the Tune callback


class MLflowTracker(DriverCallback):
    """Logs the sweep to MLflow from the driver as Tune reports (see the module docstring)."""

    transient = ("_client", "writer")

    def __init__(
        self,
        ledger: Ledger,
        uri: str,
        experiment: str,
        sweep_name: str,
        sweep_params: dict[str, Any],
        parent_tags: dict[str, Any] | None = None,
        resume: Any = None,
        *,
        registered_model: str | None = None,
        model_settings: tuple[Any, tuple] | None = None,
        checkpoint_quota_mb: float | None = None,
        preparation: Any = None,
        trials_requested: int | None = None,
        start_time_ms: int | None = None,
    ):
        """Create the parent run, or with ``resume`` (a ``recovery.ResumeState``) reopen it.

        ``registered_model``: the Model Registry name for the best model (none: not registered);
        ``model_settings``: (ModelConfig, search paths), how the best model loads;
        ``checkpoint_quota_mb``: resources.checkpoint_quota_mb (none: no quota);
        ``preparation``: what the sweep did to the inputs (:class:`sweep.inputs.preparation.Preparation`),
        put in front of the best model so that the logged model takes raw inputs;
        ``trials_requested``: the trial budget (``search.trials``, capped by a grid's size);
        ``start_time_ms``: the new parent run's start (ms since the epoch; none: now), the command's.
        """
        self.ledger, self.uri, self.sweep_name = ledger, uri, sweep_name
        self.preparation = preparation
        self.registered_model, self.model_settings, self.checkpoint_quota_mb = registered_model, model_settings, checkpoint_quota_mb
        set_sweep_http_defaults()
        self._client = client(uri)
        self.experiment_id = ensure_experiment(self._client, uri, experiment)
        # The last epoch logged per trial: a trial restarted from its checkpoint (a retry after
        # its worker died, or a resumed sweep) re-reports epochs MLflow already has; never twice.
        self.logged_steps: dict[str, int] = {}
        # Names MLflow refuses (a metric named "top@3", a space entry "a(b)") are logged under a
        # sanitized name, said once, and the mapping kept on the parent run (see MlflowNames).
        earlier = self._client.get_run(resume.parent_run_id).data.tags if resume is not None else {}
        self.metric_names = MlflowNames(json.loads(earlier.get(METRIC_NAMES_TAG) or "{}"))
        self.param_names = MlflowNames(json.loads(earlier.get(PARAM_NAMES_TAG) or "{}"))
        space = sweep_params.get("config.search.space")
        renames = self.param_names.add([*sweep_params, *(space if isinstance(space, dict) else ())])
        _RENAMED_PARAMS.clear()
        _RENAMED_PARAMS.update(self.param_names.renamed)  # _param() logs the best trial's params under these too
        _warn_renames("param", renames)
        run_ids = {}
        self.source_tags = source_tags()
        self.best_logged: dict[str, float] = {}  # per trial: the best objective value logged as best_<metric>
        requested = str(trials_requested if trials_requested is not None else sweep_params.get("config.search.trials", ""))
        if resume is None:
            tags = {**self.source_tags, "mlflow.runName": sweep_name, ROLE_TAG: "parent", NAME_TAG: sweep_name, **(parent_tags or {}),
                    TRIALS_REQUESTED_TAG: requested}
            if self.param_names.renamed:
                tags[PARAM_NAMES_TAG] = json.dumps(self.param_names.renamed, sort_keys=True)
            parent = self._client.create_run(self.experiment_id, run_name=sweep_name, tags=tags, start_time=start_time_ms)
            self.parent_run_id = parent.info.run_id
            logged = non_default_params(sweep_params)  # the whole file is the sweep/config.json artifact
            with self._parent_ended_if_this_fails():
                self._client.log_batch(self.parent_run_id, params=[_param(k, v) for k, v in logged.items()])
        else:
            self.parent_run_id = resume.parent_run_id
            self._client.update_run(self.parent_run_id, status="RUNNING")
            self._client.set_tag(self.parent_run_id, RESUMED_TAG, "true")
            # the budget may have changed (sweep run FILE --trials 6 on an interrupted 4-trial sweep): params cannot change, a tag can
            self._client.set_tag(self.parent_run_id, TRIALS_REQUESTED_TAG, requested)
            run_ids = {t.trial_id: t.run_id for t in resume.ended + resume.interrupted}
            self.logged_steps = {t.trial_id: t.last_step for t in resume.interrupted}
            # their best_<metric> was logged at its epoch before the restart: not again at the end
            self.best_logged = {t.trial_id: t.value for t in resume.interrupted if t.value is not None}
        forget_deleted_stores()  # remembers which file this process's engine opened: a deletion is noticed at flush()
        with self._parent_ended_if_this_fails():  # Ctrl-C lands here often: the writer's start is the slowest step
            self.writer = WriterProcess(uri, self.experiment_id, {"parent": self.parent_run_id, **run_ids})
        self._flushed = False  # set by flush(): the writer drained and ended, run ids known

    @contextlib.contextmanager
    def _parent_ended_if_this_fails(self) -> Iterator[None]:
        """The parent run exists, the tracker does not yet: a failure (or Ctrl-C) here ends it
        (KILLED on an interrupt, resumable; FAILED otherwise) instead of leaving it RUNNING,
        which no caller could close (it never got the tracker)."""
        try:
            yield
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            self.end_parent_run("KILLED" if interrupted else "FAILED", None if interrupted else f"the sweep could not start: {one_line(exc)}")
            if interrupted:
                exc.name = self.sweep_name  # type: ignore[attr-defined]  # its parent run exists: resumable by name
            raise

    def log_config(self, text: str) -> None:
        """The validated sweep file, as ``sweep/config.json`` on the parent run (``sweep resume`` reads it)."""
        self._client.log_text(self.parent_run_id, text, "sweep/config.json")

    # -- Tune hooks ------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        outcome = self.ledger.outcome(trial)
        if outcome.trial_id in self.writer.run_ids:  # a resumed trial continues in its own run
            # running again: the interruption is no longer why it stopped (an empty reason is none)
            self.writer.submit(OpKind.REOPEN, outcome.trial_id, {STATUS_TAG: "running", RESUMED_FROM_EPOCH_TAG: outcome.epochs, RESUMED_AS_TAG: trial.trial_id, REASON_TAG: ""})
            return
        self._submit_start(outcome)

    def _submit_start(self, outcome: TrialOutcome) -> None:
        """Queue the creation of the trial's child run (the writer skips it when the run exists)."""
        tags = {
            **getattr(self, "source_tags", {}),
            "mlflow.parentRunId": self.parent_run_id,
            ROLE_TAG: "trial",
            NAME_TAG: self.sweep_name,
            TRIAL_TAG: outcome.trial_id,
            TRIAL_NUMBER_TAG: outcome.number,
            STATUS_TAG: "running",
        }
        from sweep.protocol import trial_label

        name = f"{self.sweep_name}-{trial_label(outcome.number)}"  # the trial's one identifier, as the CLI shows it
        params = {self._param_key(k): v for k, v in outcome.params.items()}
        started = _ms(outcome.started_at)  # when the trial started, not when a write landed (a tracking outage buffers it)
        self.writer.submit(OpKind.START, outcome.trial_id, {"name": name, "tags": tags, "params": params, "start_time": started})

    def _param_key(self, key: str) -> str:
        """A param's MLflow key (a space entry's name, as itself unless MLflow refuses it)."""
        renames = self.param_names.add([key])
        if renames:  # not in the space the tracker was given (a param added by the runner)
            _RENAMED_PARAMS.update(self.param_names.renamed)
            _warn_renames("param", renames)
            self.writer.submit(OpKind.TAGS, "parent", {PARAM_NAMES_TAG: json.dumps(self.param_names.renamed, sort_keys=True)})
        return self.param_names[key]

    def _metric_keys(self, logged: dict[str, float]) -> dict[str, str]:
        """Each metric's MLflow name. A new name MLflow refuses gets a sanitized one, which is
        said once and recorded on the parent run (``sweep.metric_names``) before any epoch uses it."""
        renames = self.metric_names.add(logged)
        if renames:
            _warn_renames("metric", renames)
            self.writer.submit(OpKind.TAGS, "parent", {METRIC_NAMES_TAG: json.dumps(self.metric_names.renamed, sort_keys=True)})
        return {name: self.metric_names[name] for name in logged}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        key = self.ledger.outcome(trial).trial_id
        step = epoch_of(result)
        if step <= self.logged_steps.get(key, 0):
            return  # logged before a restart: an epoch is never logged twice
        ts = int(result.get("timestamp", time.time()) * 1000)
        metrics = self._held_epochs(key, result, ts)
        self.logged_steps[key] = step
        logged = {**keras_metrics(result), **worker_metrics(result)}
        keys = self._metric_keys(logged)
        metrics += [(keys[name], value, step, ts) for name, value in logged.items()]
        outcome = self.ledger.outcome(trial)
        if outcome.value is not None and outcome.best_epoch == step:  # a new best: best_<metric> at the epoch it was reached
            metrics.append(self._best_metric(key, outcome.value, step, ts))
        if metrics:
            self.writer.submit(OpKind.METRICS, key, metrics)
        identified = self.__dict__.setdefault("_identified", set())
        if key not in identified:  # where it runs: node id/ip, cpus, gpus (once per trial)
            from sweep.worker.placement import identity_tags

            node_tags = identity_tags(result)
            if node_tags:
                identified.add(key)
                self.writer.submit(OpKind.TAGS, key, node_tags)

    def _held_epochs(self, trial_id: str, result: dict, ts: int) -> list[tuple[str, float, int, int]]:
        """The Keras logs of epochs reported with this result (not validated, so not reported
        on their own: ``HELD_EPOCHS_FIELD``), at their own steps; those logged before a restart skipped."""
        held = result.get(HELD_EPOCHS_FIELD)
        if not held:
            return []
        points = []
        for epoch, logs in json.loads(held):
            if int(epoch) <= self.logged_steps.get(trial_id, 0):
                continue
            keys = self._metric_keys(logs)
            points += [(keys[name], float(value), int(epoch), ts) for name, value in logs.items()]
        return points

    def _best_metric(self, trial_id: str, value: float, step: int, ts: int) -> tuple[str, float, int, int]:
        """One ``best_<metric>`` point of a trial (its MLflow name; noted so it is logged once)."""
        name = best_metric_name(self.ledger.metric)
        self.__dict__.setdefault("best_logged", {})[trial_id] = value
        return (self._metric_keys({name: value})[name], value, step, ts)

    def _logged_name(self, metric: str) -> str:
        """A metric's MLflow name without logging anything (sanitized when MLflow refuses it)."""
        names = getattr(self, "metric_names", None)
        if names is not None:
            with contextlib.suppress(KeyError):
                return names[metric]
        return metric if name_problem(metric) is None else sanitized(metric)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        """Record where the newest (= best) checkpoint is, so a resume can continue from it; then
        the one it superseded goes, in the writer's order: only once that record has landed."""
        outcome = self.ledger.outcome(trial)
        self.writer.submit(OpKind.TAGS, outcome.trial_id, {CHECKPOINT_TAG: checkpoint.path, CHECKPOINT_EPOCH_TAG: outcome.best_epoch})
        if outcome.superseded:
            self.writer.submit(OpKind.PRUNE, outcome.trial_id, outcome.superseded)
            outcome.superseded = None
        self.enforce_quota()

    def enforce_quota(self) -> list[str]:
        """Keep the sweep's local checkpoints under ``checkpoint_quota_mb``: evict those of ended
        trials, worst first, never the sweep's best nor a running trial's (it may need it to
        retry). Eviction goes through the writer queue, after the trial's checkpoint artifact
        was logged, so MLflow keeps every trial's best model. Returns the evicted trial ids."""
        if not self.checkpoint_quota_mb:
            return []
        sizes: dict[str, int] = self.__dict__.setdefault("_checkpoint_sizes", {})
        live = {o.checkpoint: o for o in self.ledger.outcomes.values() if o.checkpoint}
        for location in [loc for loc in sizes if loc not in live]:
            del sizes[location]
        for location in live:
            if location not in sizes:
                sizes[location] = storage.size_bytes(location)
        total, quota = sum(sizes.values()), self.checkpoint_quota_mb * 1024 * 1024
        ended = [o for o in live.values() if is_finished(o.status) and o is not self.ledger.best]
        ended.sort(key=lambda o: badness(o.value, self.ledger.mode), reverse=True)
        evicted = []
        for outcome in ended:
            if total <= quota:
                break
            total -= sizes.pop(outcome.checkpoint, 0)
            self.writer.submit(OpKind.EVICT, outcome.trial_id, outcome.checkpoint)
            outcome.checkpoint = None
            evicted.append(outcome.trial_id)
        return evicted

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The run shows each retry: how many, and why the worker was lost."""
        outcome = self.ledger.outcome(trial)
        self.writer.submit(OpKind.TAGS, outcome.trial_id, {RETRIES_TAG: outcome.retries, RETRY_REASON_TAG: outcome.reason or "", RETRIED_FROM_EPOCH_TAG: outcome.best_epoch or 0})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end_trial(self.ledger.outcome(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end_trial(self.ledger.outcome(trial))

    def _end_trial(self, outcome: TrialOutcome) -> None:
        if outcome.started_at is None:  # its worker died before Tune called on_trial_start: it still gets its run
            self._submit_start(outcome)
        tags: dict[str, Any] = {STATUS_TAG: outcome.status, EPOCHS_TAG: outcome.epochs}
        if outcome.status != TrialStatus.COMPLETED:
            tags[STOPPED_EPOCH_TAG] = outcome.epochs
        if outcome.reason:
            tags[REASON_TAG] = outcome.reason
        if outcome.value is not None:
            tags.update({BEST_VALUE_TAG: repr(outcome.value), BEST_EPOCH_TAG: outcome.best_epoch})
            if self.__dict__.setdefault("best_logged", {}).get(outcome.trial_id) != outcome.value:
                step = outcome.best_epoch or 0
                self.writer.submit(OpKind.METRICS, outcome.trial_id, [self._best_metric(outcome.trial_id, outcome.value, step, int(time.time() * 1000))])
        if outcome.node_ip:
            tags[NODE_IP_TAG] = outcome.node_ip
        if outcome.checkpoint:
            tags[CHECKPOINT_TAG] = outcome.checkpoint
            self.writer.submit(OpKind.CHECKPOINT, outcome.trial_id, outcome.checkpoint)
        self.writer.submit(OpKind.TAGS, outcome.trial_id, tags)
        self.writer.submit(OpKind.END, outcome.trial_id, {"status": _run_status(outcome.status), "end_time": _ms(outcome.ended_at)})
        self.enforce_quota()  # this trial's checkpoint may go now that its artifact is queued

    def close_interrupted(self, outcomes: list[TrialOutcome], why: str) -> None:
        """Trials the sweep stopped before they ended (Ctrl-C, SIGTERM, fail-fast): their runs end
        KILLED, tagged ``sweep.status=interrupted`` with ``why``, so none is left RUNNING and
        ``sweep resume`` continues each from its checkpoint in the same run."""
        for outcome in outcomes:
            if outcome.started_at is None and outcome.trial_id not in self.writer.run_ids:
                continue  # never started: no run was opened for it
            tags: dict[str, Any] = {STATUS_TAG: TrialStatus.INTERRUPTED, EPOCHS_TAG: outcome.epochs, REASON_TAG: why}
            if outcome.checkpoint:
                tags[CHECKPOINT_TAG] = outcome.checkpoint
            self.writer.submit(OpKind.TAGS, outcome.trial_id, tags)
            self.writer.submit(OpKind.END, outcome.trial_id, {"status": "KILLED", "end_time": _ms(outcome.ended_at)})

    # -- the end of the sweep ----------------------------------------------------------------
    writer_left = False  # flush() stopped waiting for an unreachable MLflow: the writer process finishes alone

    def flush(self, status: str = "FINISHED", timeout: float | None = None, give_up: Any = None, log_path: str | None = None) -> list[str]:
        """Wait for the writer to record every trial (its queue drained, the child ended), then
        give each ledger outcome its MLflow run id. Never raises: a failure is one line returned.

        The wait is bounded by ``timeout`` seconds, or by ``give_up`` (a ``threading.Event``:
        a second Ctrl-C), else by the writer's retries (``SWEEP_TRACKING_RETRY_S`` per write).
        When it ends first (MLflow not answering), the parent run's end (``status``) is queued
        behind the pending writes, the writer process retries them alone with its lines in
        ``log_path``, and this process makes no more MLflow calls (:attr:`writer_left`)."""
        problems: list[str] = []
        last = [(OpKind.TAGS, "parent", {FINISH_ERROR_TAG: "the sweep's driver stopped waiting for MLflow to take its last writes"}),
                (OpKind.END, "parent", {"status": "KILLED" if status == "KILLED" else "FAILED", "end_time": _ms(time.time())})]
        with _step(problems, "recording the trials in MLflow"):
            if not self.writer.close(timeout, give_up, log_path, last):
                self.writer_left = True
                where = f"; its log: {log_path}" if log_path else ""
                problems.append(f"MLflow did not take the sweep's last writes in time: the writer process (pid {self.writer.pid}) "
                                f"retries them for {ORPHAN_DRAIN_S:.0f} s more, then ends the parent run{where}")
        self._flushed = True
        if self.writer_left:
            return problems
        forget_deleted_stores()  # the writer wrote a deleted sqlite store back: read and write the new file
        store = sqlite_path(self.uri)
        if store is not None and not store.exists():
            problems.append(f"the tracking store {store} was deleted while the sweep ran and could not be written back: its records are lost (the checkpoints and the trials' results stay in the storage)")
        for outcome in self.ledger.outcomes.values():
            outcome.mlflow_run_id = self.writer.run_ids.get(outcome.trial_id)
        return problems

    @staticmethod
    def prewarm() -> None:
        """Import what logging the best model needs (MLflow's Keras flavor, signatures), so the
        end of a sweep does not: the driver calls it while the trials run. Never raises."""
        try:
            import mlflow.keras  # noqa: F401
            from mlflow.models import infer_signature  # noqa: F401
            from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

            from sweep.tracking.export import model_requirements

            # Logging a model checks its requirements against what is installed: the first check
            # maps every installed distribution to its modules (~1 s), later ones reuse the map.
            warn_dependency_requirement_mismatches(model_requirements())
        except Exception as exc:  # logging the model says what is wrong, at the end
            log.debug("tracker prewarm: %s", exc)

    def finish(self, result: SweepResult, status: str = "FINISHED", input_example: Any = None) -> list[str]:
        """Give the parent run the best trial, its model and trials.csv, then end it (after
        :meth:`flush`, which it runs itself when it has not run yet).

        Never raises: a step that fails (logging the best model, registering it, trials.csv)
        becomes one line in the returned list, the other steps still run, and the parent run
        still ends: FAILED, tagged ``sweep.finish_error``, when anything failed.
        """
        problems: list[str] = [] if self._flushed else self.flush()
        if self.writer_left:  # its calls would each wait out MLflow's HTTP timeout; the writer ends the parent run
            return problems
        if result.best is not None:
            result.best.mlflow_run_id = self.writer.run_ids.get(result.best.trial_id)
        self._log_summary(result, input_example, problems)
        if problems:
            self.record_finish_error("; ".join(problems), end=False)
            status = "FAILED" if status == "FINISHED" else status
        with _step(problems, "closing the parent run"):
            self._client.set_terminated(self.parent_run_id, status)
        return problems

    def end_parent_run(self, status: str, why: str | None = None) -> None:
        """End the parent run with ``status`` (tagged ``sweep.finish_error`` with ``why``, if
        given) when the sweep stops before :meth:`finish` can run. Never raises: the caller is
        already reporting an error."""
        if self.writer_left:
            return
        try:
            if why:
                self._client.set_tag(self.parent_run_id, FINISH_ERROR_TAG, why[:5000])
            self._client.set_terminated(self.parent_run_id, status)
        except Exception as exc:
            log.warning("could not end the sweep's parent run (%s)", one_line(exc))

    def record_finish_error(self, text: str, end: bool = True) -> None:
        """Tag the parent run with what failed at the end of the sweep (and, with ``end``, end it
        FAILED if it ended FINISHED). Never raises: the sweep's own output already says it."""
        if self.writer_left:
            return
        try:
            self._client.set_tag(self.parent_run_id, FINISH_ERROR_TAG, text[:5000])
            if end and self._client.get_run(self.parent_run_id).info.status in ("FINISHED", "RUNNING"):
                self._client.set_terminated(self.parent_run_id, "FAILED")
        except Exception as exc:
            log.warning("could not record the end-of-sweep error on the parent run (%s)", one_line(exc))

    def _log_summary(self, result: SweepResult, input_example: Any = None, problems: list[str] | None = None) -> None:
        from mlflow.entities import Metric

        problems = [] if problems is None else problems
        with _step(problems, "trials.csv"), tempfile.TemporaryDirectory(prefix="sweep-summary-") as folder:
            csv_path = Path(folder) / "trials.csv"
            result.trials.to_csv(csv_path, index=False)
            self._client.log_artifact(self.parent_run_id, str(csv_path))
        counts = result.counts()
        # every status, zeros included: an earlier session's counts (a resumed sweep's interrupted
        # trials) must not linger (sweep status and list read these)
        tags = {trials_tag(status): counts.get(status, 0) for status in (*COUNTED, TrialStatus.PENDING, TrialStatus.INTERRUPTED, *counts)}
        tags.update({METRIC_TAG: result.metric, MODE_TAG: result.mode, STORAGE_TAG: result.storage})
        best = result.best
        if best is None:
            with _step(problems, "the sweep's summary tags"):
                self._client.log_batch(self.parent_run_id, tags=[_tag(k, v) for k, v in tags.items()])
            return
        tags.update(
            {
                BEST_TRIAL_ID_TAG: best.trial_id,
                BEST_RUN_ID_TAG: best.mlflow_run_id or "",
                BEST_VALUE_TAG: repr(best.value),
                BEST_EPOCH_TAG: best.epoch,
                BEST_EPOCHS_TAG: best.epochs,
                BEST_CHECKPOINT_TAG: best.checkpoint or "",
            }
        )
        now = int(time.time() * 1000)
        with _step(problems, "the best trial's summary"):
            self._client.log_batch(
                self.parent_run_id,
                metrics=[Metric(result.metric, best.value, now, 0),  # as before (the public contract)
                         Metric(self._logged_name(best_metric_name(result.metric)), best.value, now, best.epoch or 0)],
                params=[_param(k, v) for k, v in best.params.items()],  # under their own names
                tags=[_tag(k, v) for k, v in tags.items()],
            )
        if best.checkpoint:
            self._registry_best = (result.metric, best)  # the registered version's lineage: the best trial's run
            self._log_best_model(best.checkpoint, input_example, problems)

    def _log_best_model(self, checkpoint: str, input_example: Any = None, problems: list[str] | None = None) -> None:
        """The best trial's checkpoint, logged with MLflow's Keras flavor on the parent run."""
        problems = [] if problems is None else problems
        with _step(problems, "logging the best model"), self._best_checkpoint_folder(checkpoint) as folder:
            self._log_model_from(Path(folder), input_example, problems)

    @contextlib.contextmanager
    def _best_checkpoint_folder(self, checkpoint: str) -> Iterator[Path]:
        """The best checkpoint's folder: local, a temp copy of a URI, or, when the storage lost it
        (its folder deleted, a disk replaced), the copy MLflow holds on the best trial's run
        (``checkpoint/``), which the writer logged when the trial ended."""
        _, best = getattr(self, "_registry_best", (None, None))
        local = storage.local_path(checkpoint) if not storage.is_uri(checkpoint) or checkpoint.startswith("file:") else None
        run_id = getattr(best, "mlflow_run_id", None)
        if local is not None and not (local / MODEL_FILE).is_file() and run_id:
            with tempfile.TemporaryDirectory(prefix="sweep-best-copy-") as folder:
                copy = Path(self._client.download_artifacts(run_id, f"checkpoint/{MODEL_FILE}", folder))
                log.warning("the best trial's checkpoint %s is gone from the storage; the best model is logged from MLflow's copy", checkpoint)
                yield copy.parent
            return
        with storage.local_copy(checkpoint) as folder:  # a local folder, or a temp copy of a URI
            yield Path(folder)

    def _log_model_from(self, checkpoint: Path, input_example: Any = None, problems: list[str] | None = None) -> None:
        """Log the best checkpoint: its model file under ``best_checkpoint/`` first (``load_best``
        and ``export`` need nothing else), the user's module files under ``sweep/code/`` (and in
        the logged model's ``code/``), then the Keras flavor and the registry version. A failure
        of a later step (reported in ``problems``) leaves the earlier ones in place.

        With a :attr:`preparation` (inputs standardized, rescaled or reshaped before ``fit()``)
        the model logged everywhere is the checkpoint behind those steps as Keras layers, so it
        takes the inputs as the data source gives them; the trial checkpoints stay as trained."""
        import mlflow

        from sweep.tracking.export import keras_signature, model_requirements  # requirements stated, not inferred (saves ~5 s)
        from sweep.worker.checkpoints import known_custom_objects, load_checkpoint

        problems = [] if problems is None else problems
        model_cfg, search_paths = self.model_settings or (None, ())
        prepared = self.preparation is not None and self.preparation.changes_anything
        if not prepared:  # logged before loading: a model that fails to load back is still there
            self._client.log_artifact(self.parent_run_id, str(Path(checkpoint) / MODEL_FILE), "best_checkpoint")
        model = load_checkpoint(checkpoint, model_cfg=model_cfg, search_paths=tuple(search_paths))
        if prepared:
            fronted = self._on_raw_inputs(model, known_custom_objects(Path(checkpoint) / MODEL_FILE, model_cfg, tuple(search_paths)), problems)
            if fronted is None:
                self._client.log_artifact(self.parent_run_id, str(Path(checkpoint) / MODEL_FILE), "best_checkpoint")
            else:
                model = fronted
                with tempfile.TemporaryDirectory(prefix="sweep-best-") as best_folder:
                    model.save(Path(best_folder) / MODEL_FILE)
                    self._client.log_artifact(self.parent_run_id, str(Path(best_folder) / MODEL_FILE), "best_checkpoint")
        with tempfile.TemporaryDirectory(prefix="sweep-code-") as code_folder:
            code = _write_user_code(Path(code_folder) / "code", search_paths)
            if code is not None:
                with _step(problems, "logging the sweep's user modules"):
                    self._client.log_artifacts(self.parent_run_id, str(code), "sweep/code")
            signature, input_example = keras_signature(model, input_example)
            mlflow.set_tracking_uri(self.uri)
            with mlflow.start_run(run_id=self.parent_run_id):
                info = mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=model_requirements())
                if code is not None:
                    with _step(problems, "adding the user's modules to the logged model"):
                        mlflow.MlflowClient().log_model_artifacts(info.model_id, str(code.parent))
                if input_example is not None:
                    from sweep.tracking.export import attach_input_example

                    attach_input_example(info, model, signature, input_example)  # see there: MLflow bug
                if self.registered_model:
                    from sweep.tracking.export import register

                    with _step(problems, f"registering the best model as {self.registered_model!r}"):
                        register(info, self.registered_model, raise_errors=True, **self._registry_lineage())

    def _on_raw_inputs(self, model: Any, custom_objects: dict[str, Any], problems: list[str]) -> Any:
        """The best model behind :attr:`preparation`'s steps; None when they cannot go in front
        of it (said in ``problems``: the logged model then takes prepared inputs, as the trials did)."""
        try:
            return self.preparation.front(model, custom_objects)
        except Exception as exc:  # e.g. a subclassed model that cannot be called on symbolic inputs
            problems.append(
                f"the best model is logged as trained, taking prepared inputs ({self.preparation.summary()}): "
                f"putting those steps in front of it failed ({one_line(exc)})"
            )
            return None

    def _registry_lineage(self) -> dict[str, Any]:
        """The best trial's run, a description and tags for the registered model version."""
        metric, best = getattr(self, "_registry_best", (None, None))
        if best is None:
            return {}
        return {
            "run_id": best.mlflow_run_id,
            "description": (
                f"Best model of sweep {self.sweep_name!r}: trial {_number(best)}(ray {best.trial_id}), "
                f"{metric} = {best.value!r} at epoch {best.epoch} of {best.epochs}."
            ),
            "tags": {
                NAME_TAG: self.sweep_name,
                TRIAL_TAG: best.trial_id,
                **({TRIAL_NUMBER_TAG: f"{best.number:04d}"} if getattr(best, "number", None) is not None else {}),
                METRIC_TAG: metric,
                BEST_VALUE_TAG: repr(best.value),
                BEST_EPOCH_TAG: best.epoch,
                PARENT_RUN_ID_TAG: self.parent_run_id,
            },
            "alias": CHAMPION_ALIAS,
        }


def _number(best: Any) -> str:
    """``0002 `` (the number users see, as in the run name), or nothing for a trial without one."""
    number = getattr(best, "number", None)
    return "" if number is None else f"{number:04d} "


def _run_status(status: str) -> str:
    """The MLflow status a trial's run ends with: FAILED, KILLED (interrupted, resumable) or FINISHED."""
    return {TrialStatus.FAILED: "FAILED", TrialStatus.INTERRUPTED: "KILLED"}.get(status, "FINISHED")


def _ms(seconds: float | None) -> int:
    """A time for MLflow (ms since the epoch): ``seconds`` (``time.time()``), or now."""
    return int((seconds if seconds is not None else time.time()) * 1000)


@contextlib.contextmanager
def _step(problems: list[str], what: str) -> Iterator[None]:
    """One part of the end of a sweep: a failure is one line in ``problems``, not a traceback."""
    try:
        yield
    except Exception as exc:
        log.debug("%s failed", what, exc_info=True)
        problems.append(f"{what}: {one_line(exc)}")


def _write_user_code(folder: Path, search_paths: tuple) -> Path | None:
    """The user's module files the sweep imported from ``search_paths``, copied under ``folder``."""
    from sweep.inputs.imports import user_code

    try:
        code = user_code(tuple(search_paths))
    except Exception:
        return None
    if not code.files:
        return None
    for _, relative, text in code.files:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return folder


_RENAMED_PARAMS: dict[str, str] = {}  # the running sweep's param renames (MLflowTracker.param_names)


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    key = _RENAMED_PARAMS.get(key) or (key if name_problem(key) is None else sanitized(key))
    return Param(key, param_text(value))


def _warn_renames(kind: str, renames: list[tuple[str, str, str]]) -> None:
    for name, logged, why in renames:
        log.warning("%s %r is logged to MLflow as %r (%s)", kind, name, logged, why)


def _tag(key: str, value: Any) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, str(value))

# MLflow 3's UI opens in its GenAI view unless the address asks for the model-training one (its
# sidebar toggle; the experiment's `mlflow.experimentKind` tag alone does not switch it).
UI_VIEW = "workflowType=machine_learning"


def ui_url(base: str, experiment_id: str, run_id: str | None = None, page: str = "") -> str:
    """The MLflow UI address of an experiment or one of its runs, in the model-training view."""
    path = f"{base.rstrip('/')}/#/experiments/{experiment_id}"
    if run_id:
        path += f"/runs/{run_id}" + (f"/{page}" if page else "")
    return f"{path}?{UI_VIEW}"
