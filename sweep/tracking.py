"""MLflow: one parent run per sweep, one nested child run per trial, written from the driver.

Workers never talk to MLflow. The tracker is a Ray Tune callback on the driver that turns
results into operations; a writer process (``sweep.writer``) applies them in order, batched
per run, so neither a slow tracking server nor MLflow's own CPU cost stalls Tune's event
loop, let alone a trial's ``fit()``. ``close()`` flushes everything before the sweep
reports its end.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any


from sweep import storage
from sweep.writer import WriterProcess, client, param_text, sqlite_path  # noqa: F401 - client: this module's API
from sweep.store import (  # noqa: F401 - reading a sweep back lives in sweep.store; re-exported, it was here first
    DEFAULT_URI, NAME_TAG, ROLE_TAG, STATUS_TAG, TRIAL_TAG, badness, best_summary, child_runs,
    default_uri, find_parent_run, redact, resolve_uri, status_summary,
)
from sweep.results import COMPLETED, FAILED, PENDING, STATUSES, DriverCallback, Ledger, epoch_of, SweepResult, TrialOutcome, keras_metrics, worker_metrics

log = logging.getLogger("sweep.tracking")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of HTTP retries, when a tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered: reachable (some proxies do not serve /health)
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"no answer from {redact(uri)} within {timeout:.0f} s ({getattr(exc, 'reason', exc)})") from None


def artifact_location(uri: str, experiment: str) -> str | None:
    """Keep a sqlite store's artifacts next to its file (not in the working directory)."""
    path = sqlite_path(uri)
    return (path.parent / "mlartifacts" / experiment).as_uri() if path is not None else None


def ensure_experiment(mlflow_client: Any, uri: str, name: str) -> str:
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow_client.create_experiment(name, artifact_location=artifact_location(uri, name))


# ---------------------------------------------------------------------------------------------
# the Tune callback


class MLflowTracker(DriverCallback):
    """Logs the sweep to MLflow from the driver as Tune reports (see the module docstring)."""

    transient = ("_client", "writer")
    registered_model: str | None = None  # Model Registry name for the best model (runner sets it)
    checkpoint_quota_mb: float | None = None  # resources.checkpoint_quota_mb (runner sets it)

    def __init__(
        self,
        ledger: Ledger,
        uri: str,
        experiment: str,
        sweep_name: str,
        sweep_params: dict[str, Any],
        parent_tags: dict[str, Any] | None = None,
        resume: Any = None,
    ):
        """Create the parent run, or with ``resume`` (a ``recovery.ResumeState``) reopen it."""
        self.ledger, self.uri, self.sweep_name = ledger, uri, sweep_name
        # The writer retries through outages itself (and says so); MLflow's own HTTP retries
        # (7, with minutes of backoff) would only hide an outage from the user.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        self._client = client(uri)
        self.experiment_id = ensure_experiment(self._client, uri, experiment)
        # The last epoch logged per trial: a trial restarted from its checkpoint (a retry after
        # its worker died, or a resumed sweep) re-reports epochs MLflow already has; never twice.
        self.logged_steps: dict[str, int] = {}
        run_ids = {}
        if resume is None:
            tags = {"mlflow.runName": sweep_name, ROLE_TAG: "parent", NAME_TAG: sweep_name, **(parent_tags or {})}
            parent = self._client.create_run(self.experiment_id, run_name=sweep_name, tags=tags)
            self.parent_run_id = parent.info.run_id
            self._client.log_batch(self.parent_run_id, params=[_param(k, v) for k, v in sweep_params.items()])
        else:
            self.parent_run_id = resume.parent_run_id
            self._client.update_run(self.parent_run_id, status="RUNNING")
            self._client.set_tag(self.parent_run_id, "sweep.resumed", "true")
            run_ids = {t.trial_id: t.run_id for t in resume.ended + resume.interrupted}
            self.logged_steps = {t.trial_id: t.last_step for t in resume.interrupted}
        self.writer = WriterProcess(uri, self.experiment_id, {"parent": self.parent_run_id, **run_ids})

    def log_config(self, text: str) -> None:
        """The validated sweep file, as ``sweep/config.json`` on the parent run (``sweep resume`` reads it)."""
        self._client.log_text(self.parent_run_id, text, "sweep/config.json")

    # -- Tune hooks ------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        outcome = self.ledger.outcome(trial)
        if outcome.trial_id in self.writer.run_ids:  # a resumed trial continues in its own run
            self.writer.submit("reopen", outcome.trial_id, {STATUS_TAG: "running", "sweep.resumed_from_epoch": outcome.epochs})
            return
        self._submit_start(outcome)

    def _submit_start(self, outcome: TrialOutcome) -> None:
        """Queue the creation of the trial's child run (the writer skips it when the run exists)."""
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            ROLE_TAG: "trial",
            NAME_TAG: self.sweep_name,
            TRIAL_TAG: outcome.trial_id,
            "sweep.trial_number": outcome.number,
            STATUS_TAG: "running",
        }
        name = f"{self.sweep_name}-{outcome.number:04d}"
        self.writer.submit("start", outcome.trial_id, {"name": name, "tags": tags, "params": outcome.params})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        key = self.ledger.outcome(trial).trial_id
        step = epoch_of(result)
        if step <= self.logged_steps.get(key, 0):
            return  # logged before a restart: an epoch is never logged twice
        self.logged_steps[key] = step
        ts = int(result.get("timestamp", time.time()) * 1000)
        logged = {**keras_metrics(result), **worker_metrics(result)}
        metrics = [(name, value, step, ts) for name, value in logged.items()]
        if metrics:
            self.writer.submit("metrics", key, metrics)
        identified = self.__dict__.setdefault("_identified", set())
        if key not in identified:  # where it runs: node id/ip, cpus, gpus (once per trial)
            from sweep.placement import identity_tags

            node_tags = identity_tags(result)
            if node_tags:
                identified.add(key)
                self.writer.submit("tags", key, node_tags)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        """Record where the newest (= best) checkpoint is, so a resume can continue from it; then
        the one it superseded goes, in the writer's order: only once that record has landed."""
        outcome = self.ledger.outcome(trial)
        self.writer.submit("tags", outcome.trial_id, {"sweep.checkpoint": checkpoint.path, "sweep.checkpoint_epoch": outcome.best_epoch})
        if outcome.superseded:
            self.writer.submit("prune", outcome.trial_id, outcome.superseded)
            outcome.superseded = None
        self.enforce_quota()

    def enforce_quota(self) -> list[str]:
        """Keep the sweep's local checkpoints under ``checkpoint_quota_mb``: evict those of ended
        trials, worst first, never the sweep's best nor a running trial's (it may need it to
        retry). Eviction goes through the writer queue, after the trial's checkpoint artifact
        was logged, so MLflow keeps every trial's best model. Returns the evicted trial ids."""
        if not self.checkpoint_quota_mb:
            return []
        from sweep.results import FAILED, STOPPED_EARLY

        sizes: dict[str, int] = self.__dict__.setdefault("_checkpoint_sizes", {})
        live = {o.checkpoint: o for o in self.ledger.outcomes.values() if o.checkpoint}
        for location in [loc for loc in sizes if loc not in live]:
            del sizes[location]
        for location in live:
            if location not in sizes:
                sizes[location] = storage.size_bytes(location)
        total, quota = sum(sizes.values()), self.checkpoint_quota_mb * 1024 * 1024
        ended = [o for o in live.values() if o.status in (COMPLETED, STOPPED_EARLY, FAILED) and o is not self.ledger.best]
        ended.sort(key=lambda o: badness(o.value, self.ledger.mode), reverse=True)
        evicted = []
        for outcome in ended:
            if total <= quota:
                break
            total -= sizes.pop(outcome.checkpoint, 0)
            self.writer.submit("evict", outcome.trial_id, outcome.checkpoint)
            outcome.checkpoint = None
            evicted.append(outcome.trial_id)
        return evicted

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The run shows each retry: how many, and why the worker was lost."""
        outcome = self.ledger.outcome(trial)
        self.writer.submit("tags", outcome.trial_id, {"sweep.retries": outcome.retries, "sweep.retry_reason": outcome.reason or "", "sweep.retried_from_epoch": outcome.best_epoch or 0})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end_trial(self.ledger.outcome(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._end_trial(self.ledger.outcome(trial))

    def _end_trial(self, outcome: TrialOutcome) -> None:
        if outcome.started_at is None:  # its worker died before Tune called on_trial_start: it still gets its run
            self._submit_start(outcome)
        tags: dict[str, Any] = {STATUS_TAG: outcome.status, "sweep.epochs": outcome.epochs}
        if outcome.status != COMPLETED:
            tags["sweep.stopped_epoch"] = outcome.epochs
        if outcome.reason:
            tags["sweep.reason"] = outcome.reason
        if outcome.value is not None:
            tags.update({"sweep.best_value": repr(outcome.value), "sweep.best_epoch": outcome.best_epoch})
        if outcome.node_ip:
            tags["sweep.node_ip"] = outcome.node_ip
        if outcome.checkpoint:
            tags["sweep.checkpoint"] = outcome.checkpoint
            self.writer.submit("checkpoint", outcome.trial_id, outcome.checkpoint)
        self.writer.submit("tags", outcome.trial_id, tags)
        self.writer.submit("end", outcome.trial_id, "FAILED" if outcome.status == FAILED else "FINISHED")
        self.enforce_quota()  # this trial's checkpoint may go now that its artifact is queued

    # -- the end of the sweep ----------------------------------------------------------------
    def finish(self, result: SweepResult, status: str = "FINISHED", input_example: Any = None) -> None:
        """Flush trials, then give the parent run the best trial, its model and trials.csv."""
        self.writer.close()
        for outcome in self.ledger.outcomes.values():
            outcome.mlflow_run_id = self.writer.run_ids.get(outcome.trial_id)
        if result.best is not None:
            result.best.mlflow_run_id = self.writer.run_ids.get(result.best.trial_id)
        self._log_summary(result, input_example)
        self._client.set_terminated(self.parent_run_id, status)

    def _log_summary(self, result: SweepResult, input_example: Any = None) -> None:
        from mlflow.entities import Metric

        with tempfile.TemporaryDirectory(prefix="sweep-summary-") as folder:
            csv_path = Path(folder) / "trials.csv"
            result.trials.to_csv(csv_path, index=False)
            self._client.log_artifact(self.parent_run_id, str(csv_path))
        counts = result.counts()
        # every status, zeros included: a resumed sweep's earlier counts must not linger (sweep status reads these)
        tags = {f"sweep.trials.{status}": counts.get(status, 0) for status in (*STATUSES, PENDING, *counts)}
        tags.update({"sweep.metric": result.metric, "sweep.mode": result.mode, "sweep.storage": result.storage})
        best = result.best
        if best is None:
            self._client.log_batch(self.parent_run_id, tags=[_tag(k, v) for k, v in tags.items()])
            return
        tags.update(
            {
                "sweep.best_trial_id": best.trial_id,
                "sweep.best_run_id": best.mlflow_run_id or "",
                "sweep.best_value": repr(best.value),
                "sweep.best_epoch": best.epoch,
                "sweep.best_epochs": best.epochs,
                "sweep.best_checkpoint": best.checkpoint or "",
            }
        )
        now = int(time.time() * 1000)
        self._client.log_batch(
            self.parent_run_id,
            metrics=[Metric(result.metric, best.value, now, 0)],
            params=[_param(k, v) for k, v in best.params.items()],  # under their own names
            tags=[_tag(k, v) for k, v in tags.items()],
        )
        if best.checkpoint:
            self._log_best_model(best.checkpoint, input_example)

    def _log_best_model(self, checkpoint: str, input_example: Any = None) -> None:
        """The best trial's checkpoint, logged with MLflow's Keras flavor on the parent run."""
        with storage.local_copy(checkpoint) as folder:  # a local folder, or a temp copy of a URI
            self._log_model_from(Path(folder), input_example)

    def _log_model_from(self, checkpoint: Path, input_example: Any = None) -> None:
        import mlflow

        from sweep.callbacks import load_checkpoint

        from mlflow.models import infer_signature

        model = load_checkpoint(checkpoint)
        signature = None
        if input_example is not None:
            signature = infer_signature(input_example, model.predict(input_example, verbose=0))
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=self.parent_run_id):
            from sweep.export import model_requirements  # stated, not inferred (saves ~5 s)

            info = mlflow.keras.log_model(model, name="model", signature=signature, pip_requirements=model_requirements())
            if self.registered_model:
                from sweep.export import register

                register(info, self.registered_model)  # warns, never raises (a store without a registry)
            if input_example is not None:
                from sweep.export import attach_input_example

                attach_input_example(info, model, signature, input_example)  # see there: MLflow bug
            mlflow.log_artifact(str(Path(checkpoint) / storage.MODEL_FILE), "best_checkpoint")


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(key, param_text(value))


def _tag(key: str, value: Any) -> Any:
    from mlflow.entities import RunTag

    return RunTag(key, str(value))
