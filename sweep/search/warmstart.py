"""Warm start: seed a new sweep with the finished trials of an earlier one, read from MLflow.

``search.warm_start: OTHER`` names an earlier sweep (or an MLflow experiment). Its trials are
mapped onto the *new* space, which may have changed: parameters the space no longer has,
values outside a new range or choice list, and values whose ``when:`` condition no longer
holds are dropped, with one warning naming them. Then:

* only trials that ran to the full epoch budget (``sweep.status = completed``) count as final
  results: they are added to the Optuna study as finished trials (``Study.add_trials``), so
  the sampler starts from their evidence instead of from nothing;
* the best few of them are enqueued (``points_to_evaluate``), so the new sweep's first trials
  re-run the earlier best configurations under the new conditions.

Ray's ``OptunaSearch`` cannot take ``evaluated_rewards`` with a define-by-run space, so the
history goes to ``space.make_searcher(history=...)``, which pre-fills the Optuna storage that
``OptunaSearch`` then loads.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from sweep.tracking import store
from sweep.spec.config import CategoricalParam, FloatParam, IntParam, SearchConfig, condition_order
from sweep.errors import InputError
from sweep.protocol import Objective, TrialStatus
from sweep.tracking.client import client
from sweep.tracking.tags import ROLE_TAG, STATUS_TAG, TRIAL_NUMBER_TAG

log = logging.getLogger("sweep.warmstart")

MAX_POINTS = 3  # earlier best configurations re-run first


@dataclass
class PastTrial:
    """One earlier trial: its params (as MLflow text), status and best objective value."""

    params: dict[str, str]
    status: str
    value: float | None
    number: int = 0


@dataclass
class WarmStart:
    """What a new sweep gets from an earlier one."""

    source: str
    points: list[dict[str, Any]] = field(default_factory=list)  # re-run first, best first
    history: list[tuple[dict[str, Any], float]] = field(default_factory=list)  # final results
    dropped: dict[str, str] = field(default_factory=dict)  # parameter -> why its values were dropped

    def describe(self) -> str:
        return f"warm start from {self.source!r}: {len(self.history)} finished trial(s) as history, {len(self.points)} re-run first"


# ---------------------------------------------------------------------------------------------
# reading the earlier trials


def past_trials(uri: str, source: str, metric: str) -> list[PastTrial]:
    """The trials of the newest sweep called ``source``, else of the MLflow experiment ``source``."""
    parent = store.find_parent_run(uri, source)
    names = store.own_param_names(parent)
    if parent is not None:
        runs = store.child_runs(uri, parent)
    else:
        mlflow_client = client(uri)
        experiment = mlflow_client.get_experiment_by_name(source)
        if experiment is None:
            raise InputError("search.warm_start", f"expected the name of an earlier sweep or MLflow experiment in {uri}, got {source!r}")
        runs = [r for r in mlflow_client.search_runs([experiment.experiment_id], max_results=5000) if r.data.tags.get(ROLE_TAG) != "parent"]
    return [_past(run, metric, names) for run in runs]


def _past(run: Any, metric: str, names: Mapping[str, str]) -> PastTrial:
    tags = run.data.tags
    status = tags.get(STATUS_TAG)
    if status is None:  # a plain MLflow run, not one of ours: finished means final
        status = TrialStatus.COMPLETED if run.info.status == "FINISHED" else TrialStatus.FAILED
    return PastTrial(
        params={names.get(key, key): text for key, text in run.data.params.items()},  # the space's own names
        status=status,
        value=store.child_value(run, metric),
        number=store.int_or_none(tags.get(TRIAL_NUMBER_TAG)) or 0,
    )


# ---------------------------------------------------------------------------------------------
# mapping onto the new space


def map_params(search: SearchConfig, params: Mapping[str, str], dropped: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """Earlier params (text) as values of the new space; ``complete`` when every active entry has one.

    Entries are visited parents first, so a value whose ``when:`` no longer holds is dropped too.
    """
    from sweep.search.space import condition_holds

    for name in params:
        if name not in search.space:
            dropped.setdefault(name, "not in this space")
    chosen: dict[str, Any] = {}
    complete = True
    for name in condition_order(search.space):
        param = search.space[name]
        if not condition_holds(param.when, chosen):
            if name in params:
                dropped.setdefault(name, "its when: condition does not hold in this space")
            continue
        if name not in params:
            complete = False
            continue
        value = _convert(param, params[name])
        if value is None:
            dropped.setdefault(name, f"value {params[name]} outside this space")
            complete = False
            continue
        chosen[name] = value
    return chosen, complete


def _convert(param: Any, text: str) -> Any:
    """The value in the new space's type, or None when it is not in the space."""
    if isinstance(param, CategoricalParam):
        return next((c for c in param.choices if str(c) == str(text)), None)
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or not param.low <= number <= param.high:
        return None
    if isinstance(param, IntParam):
        if number != int(number) or (int(number) - param.low) % param.step:
            return None
        return int(number)
    if isinstance(param, FloatParam) and param.step is not None:
        steps = (number - param.low) / param.step
        if abs(steps - round(steps)) > 1e-6:
            return None
    return number


# ---------------------------------------------------------------------------------------------
# the seeded study


def prepare(search: SearchConfig, metric: str, mode: str, uri: str) -> WarmStart | None:
    """Read the earlier sweep named in ``search.warm_start`` and build the seeded Optuna storage."""
    if not search.warm_start:
        return None
    trials = past_trials(uri, search.warm_start, metric)
    warm = plan(search, trials, mode, search.warm_start)
    if warm.dropped:
        reasons = "; ".join(f"{name} ({why})" for name, why in sorted(warm.dropped.items()))
        log.warning("warm start from %r: dropped values that do not fit this space: %s", search.warm_start, reasons)
    if search.sampler == "grid":  # the grid sampler walks its own list; history would confuse it
        warm.history = []
    log.info(warm.describe())
    return warm


def plan(search: SearchConfig, trials: list[PastTrial], mode: str, source: str) -> WarmStart:
    """Pure part of the warm start: which earlier trials become history and which re-run first."""
    warm = WarmStart(source=source)
    finals = [t for t in trials if t.status == TrialStatus.COMPLETED and t.value is not None and math.isfinite(t.value)]
    finals = Objective("", mode).best_first(finals, key=lambda t: (t.value, -t.number))  # type: ignore[arg-type, return-value]
    seen: set[tuple] = set()
    for trial in finals:
        values, complete = map_params(search, trial.params, warm.dropped)
        if complete:
            warm.history.append((values, float(trial.value)))  # type: ignore[arg-type]
        key = tuple(sorted((k, repr(v)) for k, v in values.items()))
        if values and key not in seen and len(warm.points) < min(MAX_POINTS, math.ceil(search.trials / 2)):
            seen.add(key)
            warm.points.append(values)
    return warm


def frozen_history(search: SearchConfig, warm: WarmStart | None) -> list[Any]:
    """The history as Optuna trial records, for ``space.make_searcher(history=...)``."""
    from sweep.search.space import frozen_trial

    return [frozen_trial(search, values, value) for values, value in (warm.history if warm else [])]
