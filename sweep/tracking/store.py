"""Reading a sweep back from MLflow: ``sweep status``, ``sweep best``, the report, resume.

MLflow is the source of truth for a sweep that ran. This module imports only MLflow (not
Ray, not TensorFlow): ``sweep status`` and ``sweep best`` start in a fresh process, and
importing ``ray.tune`` for them had cost 0.9 s of their ~2.4 s on a 10,000-trial sweep, whose
queries take 0.02 s. A finished sweep is read from its parent run (its counts and best run
are tags there); a running one from its children.
"""

from __future__ import annotations

from typing import Any

from sweep.protocol import Objective, TrialStatus
from sweep.tracking.client import client, redact, store_exists
from sweep.tracking.tags import (
    BEST_EPOCH_TAG, BEST_RUN_ID_TAG, BEST_VALUE_TAG, CHECKPOINT_TAG, EPOCHS_TAG, METRIC_TAG, MODE_TAG, NAME_TAG, PARAM_NAMES_TAG,
    RESUMED_AS_TAG, ROLE_TAG, STATUS_TAG, STORAGE_ROOT_TAG, STORAGE_TAG, TRIAL_NUMBER_TAG, TRIAL_TAG, TRIALS_REQUESTED_TAG, TRIALS_TAG_PREFIX,
)

__all__ = ["badness", "best_summary", "child_runs", "child_value", "find_parent_run", "int_or_none", "list_sweeps",
           "own_param_names", "own_params", "status_summary", "sweep_names", "close_names", "typed_param"]


def own_params(run: Any, parent: Any) -> dict[str, Any]:
    """A trial run's params, typed, under the search space's own names (:func:`own_param_names`)."""
    names = own_param_names(parent)
    return {names.get(key, key): typed_param(text) for key, text in run.data.params.items()}


def own_param_names(parent: Any) -> dict[str, str]:
    """``{MLflow param key: the search space's own name}`` for the params a sweep renamed: a
    name MLflow refuses (``drop@rate``) is logged as another (``drop_rate``, recorded in the
    parent run's ``sweep.param_names``), while ``hp["drop@rate"]`` is what the user's factory
    reads, so what ``sweep best``, ``trials`` and a warm start give back uses the space's name."""
    import json

    try:
        renamed = json.loads((parent.data.tags.get(PARAM_NAMES_TAG) if parent is not None else None) or "{}")
    except ValueError:
        return {}
    return {logged: name for name, logged in renamed.items()} if isinstance(renamed, dict) else {}


def _parent_runs(uri: str, max_results: int = 5000) -> list[Any]:
    """Every sweep's parent runs in the store, newest first."""
    mlflow_client = client(uri)
    experiment_ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not experiment_ids:
        return []
    return list(mlflow_client.search_runs(
        experiment_ids, filter_string=f"tags.`{ROLE_TAG}` = 'parent'",
        order_by=["attributes.start_time DESC"], max_results=max_results,
    ))


def sweep_names(uri: str) -> list[str]:
    """The names of the sweeps in the store, newest first (each once)."""
    if not store_exists(uri):
        return []
    names: dict[str, None] = {}
    for run in _parent_runs(uri):
        names.setdefault(run.data.tags.get(NAME_TAG, ""), None)
    return [name for name in names if name]


def close_names(name: str, names: list[str]) -> list[str]:
    """The names like ``name`` (a typo, another case), closest first."""
    import difflib

    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    return [lowered[n] for n in close]


def list_sweeps(uri: str) -> list[dict[str, Any]]:
    """One row per sweep name (its newest run), newest first: the fields of ``sweep list --json``."""
    if not store_exists(uri):
        return []
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for parent in _parent_runs(uri):
        name = parent.data.tags.get(NAME_TAG)
        if not name or name in seen:
            continue
        seen.add(name)
        tags, info = parent.data.tags, parent.info
        metric = tags.get(METRIC_TAG) or parent.data.params.get("config.objective.metric", "val_loss")
        mode = tags.get(MODE_TAG) or parent.data.params.get("config.objective.mode", "min")
        counts = _final_counts(parent)
        best_value = float(tags[BEST_VALUE_TAG]) if tags.get(BEST_VALUE_TAG) and info.status != "RUNNING" else None
        if counts is None:  # running (or its driver died): count and rank its children
            children = child_runs(uri, parent)
            counts = {}
            for run in children:
                status = run.data.tags.get(STATUS_TAG, "running")
                counts[status] = counts.get(status, 0) + 1
            best_value = _best_value(children, metric, mode)
        elif best_value is None and info.status == "KILLED":  # interrupted: its best so far, from its trials
            best_value = _best_value(child_runs(uri, parent), metric, mode)
        end = info.end_time if info.status != "RUNNING" else None
        rows.append({
            "name": name,
            "state": info.status.lower(),
            # interrupted trials are not done: `sweep resume` runs them again from their checkpoints
            "trials_done": sum(n for status, n in counts.items() if status not in ("running", "pending", TrialStatus.INTERRUPTED.value)),
            "trials_requested": int_or_none(parent.data.tags.get(TRIALS_REQUESTED_TAG) or parent.data.params.get("config.search.trials")),
            "trials": counts,
            "metric": metric,
            "mode": mode,
            "best_value": best_value,
            "started": iso_time(info.start_time),
            "duration_s": round((end - info.start_time) / 1000, 1) if end and info.start_time else None,
            "experiment_id": info.experiment_id,
            "parent_run_id": info.run_id,
        })
    return rows


def iso_time(millis: int | None) -> str | None:
    """An MLflow timestamp (ms) as the ISO time ``sweep status`` and the command's messages show."""
    import datetime

    if not millis:
        return None
    return datetime.datetime.fromtimestamp(millis / 1000).astimezone().isoformat(timespec="seconds")


def typed_param(text: Any) -> Any:
    """A param as MLflow keeps it (text) back as the value it was: ``'0.01'`` -> 0.01, ``'64'`` -> 64,
    ``'True'`` -> True, ``'None'`` -> None; anything else stays text."""
    if not isinstance(text, str):
        return text
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def trials_frame(uri: str, name: str) -> Any:
    """A past sweep's trials as a typed pandas DataFrame, one row per trial run, by trial number
    (like Optuna's ``trials_dataframe``): ``number``, ``trial_id``, ``status``, ``value`` (the
    trial's best objective), ``best_epoch``, ``epochs``, ``datetime_start``, ``datetime_complete``,
    ``duration``, ``mlflow_run_id`` and one ``params_<name>`` column per hyperparameter, numbers
    as numbers (MLflow keeps text). Raises ``LookupError`` when there is no such sweep."""
    import pandas as pd

    if not store_exists(uri):
        raise LookupError(f"no sweep store at {redact(uri)}")
    parent = find_parent_run(uri, name)
    if parent is None:
        raise LookupError(f"no sweep named {name!r} in {redact(uri)}")
    metric = parent.data.tags.get(METRIC_TAG) or parent.data.params.get("config.objective.metric", "val_loss")
    rows = []
    for run in child_runs(uri, parent):
        tags = run.data.tags
        value = child_value(run, metric)
        rows.append({
            "number": int_or_none(tags.get(TRIAL_NUMBER_TAG)),
            "trial_id": tags.get(TRIAL_TAG),
            "status": tags.get(STATUS_TAG, "running"),
            "value": float("nan") if value is None else float(value),
            "best_epoch": int_or_none(tags.get(BEST_EPOCH_TAG)),
            "epochs": int_or_none(tags.get(EPOCHS_TAG)),
            "datetime_start": pd.to_datetime(run.info.start_time, unit="ms", utc=True) if run.info.start_time else pd.NaT,
            "datetime_complete": pd.to_datetime(run.info.end_time, unit="ms", utc=True) if run.info.end_time else pd.NaT,
            "mlflow_run_id": run.info.run_id,
            **{f"params_{key}": value for key, value in own_params(run, parent).items()},
        })
    columns = ["number", "trial_id", "status", "value", "best_epoch", "epochs", "datetime_start", "datetime_complete", "mlflow_run_id"]
    frame = pd.DataFrame(rows, columns=columns + sorted({k for row in rows for k in row if k.startswith("params_")}))
    frame = frame.sort_values("number", kind="stable", ignore_index=True)
    for column in ("datetime_start", "datetime_complete"):  # all NaT (no trial ended yet) came out tz-naive
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame.insert(8, "duration", frame["datetime_complete"] - frame["datetime_start"])
    for column in ("number", "best_epoch", "epochs"):
        frame[column] = frame[column].astype("Int64")
    for column in ("trial_id", "status", "mlflow_run_id"):
        frame[column] = frame[column].astype("string")
    for column in [c for c in frame.columns if c.startswith("params_")]:
        # typed from the values as read, not from the frame (pandas makes ints with gaps floats:
        # a conditional int parameter absent from some trials showed as 16.0)
        present = [row[column] for row in rows if row.get(column) is not None]
        if len(present) and all(isinstance(v, bool) for v in present):
            frame[column] = frame[column].astype("boolean")
        elif len(present) and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            frame[column] = frame[column].astype("Int64")
        elif len(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            frame[column] = frame[column].astype("float64")
    frame.attrs.update({"sweep": name, "metric": metric, "mode": parent.data.tags.get(MODE_TAG, "min"), "parent_run_id": parent.info.run_id})
    return frame


def find_parent_run(uri: str, name: str) -> Any | None:
    """The newest parent run of the sweep called ``name`` in any experiment of the store."""
    mlflow_client = client(uri)
    experiment_ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not experiment_ids:
        return None
    runs = mlflow_client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{ROLE_TAG}` = 'parent' and tags.`{NAME_TAG}` = '{_quote(name)}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def child_runs(uri: str, parent: Any) -> list[Any]:
    """Every trial run of a sweep (paged, so large sweeps come back whole)."""
    mlflow_client = client(uri)
    runs: list[Any] = []
    token = None
    while True:
        page = mlflow_client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
            max_results=5000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def best_summary(uri: str, name: str) -> dict[str, Any] | None:
    """The fields of ``sweep best --json``, from the parent run (or its children while running)."""
    parent = find_parent_run(uri, name)
    if parent is None:
        return None
    tags = parent.data.tags
    metric = tags.get(METRIC_TAG) or parent.data.params.get("config.objective.metric", "val_loss")
    mode = tags.get(MODE_TAG) or parent.data.params.get("config.objective.mode", "min")
    chosen = tags.get(BEST_RUN_ID_TAG)  # a finished sweep's own pick: one request, whatever its size
    best_child = _run_or_none(uri, chosen) if chosen else None
    if best_child is None:  # still running (or it never finished): rank the children
        best_child = _best_child(child_runs(uri, parent), metric, mode)
    summary: dict[str, Any] = {
        "name": name,
        "metric": metric,
        "mode": mode,
        "value": None,
        "params": {},
        "trial_id": None,
        "resumed_as": None,  # a resumed best trial: Ray's trial id in the session that continued it (its checkpoint folder's)
        "number": None,  # the trial's number: the identifier users see (``trial 0002``, run ``NAME-0002``)
        "trial": None,  # that number as shown: "0002"
        "run_name": None,
        "epochs": None,
        "best_epoch": None,
        "checkpoint": None,
        "mlflow_run_id": None,
        "parent_run_id": parent.info.run_id,
        "experiment_id": parent.info.experiment_id,
        "tracking_uri": redact(uri),
        "sweep_status": parent.info.status,
    }
    if best_child is None:
        return summary
    child_tags = best_child.data.tags
    number = int_or_none(child_tags.get(TRIAL_NUMBER_TAG))
    summary.update(
        value=child_value(best_child, metric),
        params=own_params(best_child, parent),
        trial_id=child_tags.get(TRIAL_TAG),
        resumed_as=child_tags.get(RESUMED_AS_TAG),
        number=number,
        trial=None if number is None else f"{number:04d}",
        run_name=best_child.info.run_name,
        epochs=int_or_none(child_tags.get(EPOCHS_TAG)),
        best_epoch=int_or_none(child_tags.get(BEST_EPOCH_TAG)),
        checkpoint=child_tags.get(CHECKPOINT_TAG),
        mlflow_run_id=best_child.info.run_id,
    )
    return summary


def status_summary(uri: str, name: str) -> dict[str, Any] | None:
    """Counts of trials by status, for ``sweep status``."""
    parent = find_parent_run(uri, name)
    if parent is None:
        return None
    counts = _final_counts(parent)
    if counts is None:  # still running (or it never finished): count the children
        counts = {}
        for run in child_runs(uri, parent):
            status = run.data.tags.get(STATUS_TAG, "running")
            counts[status] = counts.get(status, 0) + 1
    return {
        "name": name,
        "sweep_status": parent.info.status,
        "trials_requested": int_or_none(parent.data.tags.get(TRIALS_REQUESTED_TAG) or parent.data.params.get("config.search.trials")),
        "trials": counts,
        "parent_run_id": parent.info.run_id,
        "tracking_uri": redact(uri),
        "storage": parent.data.tags.get(STORAGE_TAG) or _sweep_folder(parent.data.tags.get(STORAGE_ROOT_TAG), name),
    }


def _sweep_folder(root: str | None, name: str) -> str | None:
    """``<root>/<name>``: a running sweep's folder (its ``sweep.storage`` tag is written at the end)."""
    if not root:
        return None
    return f"{root.rstrip('/')}/{name}" if "://" not in root else None


def _final_counts(parent: Any) -> dict[str, int] | None:
    """The trial counts a finished sweep wrote on its parent run (``sweep.trials.<status>``);
    None while it runs, so ``sweep status`` of a 10,000-trial sweep is one request, not ten pages."""
    if parent.info.status == "RUNNING":
        return None
    prefix = TRIALS_TAG_PREFIX
    counts = {key[len(prefix):]: int_or_none(value) or 0 for key, value in parent.data.tags.items() if key.startswith(prefix)}
    if not counts:
        return None
    return {status: count for status, count in counts.items() if count}


def _run_or_none(uri: str, run_id: str) -> Any | None:
    try:
        return client(uri).get_run(run_id)
    except Exception:  # deleted, or another store: fall back to ranking the children
        return None


def badness(value: float | None, mode: str) -> float:
    """A sort key for trials by the objective: larger is worse; no value (or NaN) is the worst of all."""
    return Objective("", mode).badness(value)


def _best_value(children: list[Any], metric: str, mode: str) -> float | None:
    """The best objective value among ``children`` (None when none has one)."""
    best_child = _best_child(children, metric, mode)
    return child_value(best_child, metric) if best_child is not None else None


def _best_child(children: list[Any], metric: str, mode: str) -> Any | None:
    scored = [(run, child_value(run, metric)) for run in children]
    scored = [(run, value) for run, value in scored if value is not None and value == value]
    if not scored:
        return None
    return Objective(metric, mode).best_of(scored, key=lambda pair: pair[1])[0]


def child_value(run: Any, metric: str) -> float | None:
    """A trial run's objective: its best (``sweep.best_value``) once ended, else its latest value."""
    text = run.data.tags.get(BEST_VALUE_TAG)
    if text is not None:
        return float(text)
    return run.data.metrics.get(metric)


def int_or_none(text: Any) -> int | None:
    """A tag or param (MLflow keeps text) as an int; None when absent or not a number."""
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
