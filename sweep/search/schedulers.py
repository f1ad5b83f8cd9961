"""Scheduler section -> Ray Tune trial scheduler. Pure translation; a registry per type."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

from sweep.protocol import EPOCH_FIELD
from sweep.spec.config import AshaConfig, FifoConfig, HyperbandConfig, MedianConfig, SweepConfig


class ChoosesAmongLiveTrials:
    """Tune's FIFO choice of the next trial, without scanning the whole experiment.

    ``FIFOScheduler.choose_trial_to_run`` (inherited by ASHA and the median rule) walks
    every trial of the experiment, finished ones included, at every step of Tune's loop:
    quadratic in the sweep's length. At 10,000 no-op trials it was 23% of the driver's
    samples. The trials it can return (pending, else paused) are all among the *live*
    ones, which Tune also hands schedulers (``get_live_trials``) and which a sweep with a
    concurrency limit keeps to a handful.

    The scan returns the first candidate in the experiment's order, which is the order Tune
    added the trials in (``add_trial`` appends, then calls ``on_trial_add``). Live trials come
    as a set, so each trial's place in that order is noted in ``on_trial_add`` and forgotten
    when it ends; several live candidates are then ordered by it rather than by a scan. (The
    scan was still 13% of the driver's samples late in a 10,000-trial sweep, where two
    pending trials at once are the common case.) A candidate added before this scheduler
    was watching falls back to the scan.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._added = 0  # trials added so far: the next one's place (an int: Tune pickles its scheduler)
        self._place: dict[str, int] = {}  # trial id -> its place in the experiment's order, while not ended

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]
        self._place[trial.trial_id] = self._added
        self._added += 1

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)  # type: ignore[misc]
        self._place.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        super().on_trial_remove(tune_controller, trial)  # type: ignore[misc]
        self._place.pop(trial.trial_id, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Optional[Trial]:
        live = tune_controller.get_live_trials()
        candidates = [trial for trial in live if trial.status == Trial.PENDING]
        if not candidates:
            candidates = [trial for trial in live if trial.status == Trial.PAUSED]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        if all(trial.trial_id in self._place for trial in candidates):
            return min(candidates, key=lambda trial: self._place[trial.trial_id])
        return super().choose_trial_to_run(tune_controller)  # type: ignore[misc]


class LiveASHAScheduler(ChoosesAmongLiveTrials, ASHAScheduler):
    """Ray's ASHA, choosing the next trial among the live ones (:class:`ChoosesAmongLiveTrials`)."""


class LiveMedianStoppingRule(ChoosesAmongLiveTrials, MedianStoppingRule):
    """Ray's median stopping rule, choosing the next trial among the live ones."""


class LiveFIFOScheduler(ChoosesAmongLiveTrials, FIFOScheduler):
    """Ray's FIFO scheduler, choosing the next trial among the live ones."""


def _asha(section: AshaConfig, max_t: int) -> Any:
    return LiveASHAScheduler(
        time_attr=EPOCH_FIELD,
        max_t=max_t,
        grace_period=section.grace_period,
        reduction_factor=section.reduction_factor,
    )


def _hyperband(section: HyperbandConfig, max_t: int) -> Any:
    # HyperBand chooses from its own brackets (Ray's logic), not by the FIFO scan: left as it is.
    return HyperBandScheduler(time_attr=EPOCH_FIELD, max_t=max_t, reduction_factor=section.reduction_factor)


def _median(section: MedianConfig, max_t: int) -> Any:
    return LiveMedianStoppingRule(
        time_attr=EPOCH_FIELD,
        grace_period=section.grace_period,
        min_samples_required=section.min_samples_required,
    )


def _fifo(section: FifoConfig, max_t: int) -> Any:
    return LiveFIFOScheduler()


SCHEDULERS: dict[str, Callable[[Any, int], Any]] = {
    "asha": _asha,
    "hyperband": _hyperband,
    "median": _median,
    "fifo": _fifo,
}


def build(config: SweepConfig, history: Sequence[Mapping[int, float]] = ()) -> Any:
    """The Tune scheduler for ``config.scheduler``; ``max_t`` defaults to ``fit.epochs``.

    ``history``: the objective by epoch of the trials an earlier session of this sweep ran (a
    resumed sweep), recorded in ASHA's rungs (:func:`seed_rungs`)."""
    section = config.scheduler
    scheduler = SCHEDULERS[section.type](section, config.max_epochs)
    if history:
        seed_rungs(scheduler, history, config.objective.mode)
    return scheduler


def seed_rungs(scheduler: Any, curves: Sequence[Mapping[int, float]], mode: str) -> int:
    """Record earlier trials' results in an ASHA scheduler's rungs; the number recorded.

    A resumed sweep builds a new scheduler, whose rungs were empty: the first trials to reach
    each rung again always went on (a cutoff needs recorded results), so an interrupted trial
    that the uninterrupted sweep stopped at epoch 1 trained all 27 epochs after ``sweep resume``.
    Each curve's value at a rung's milestone (the first epoch >= it, where ASHA decides) is
    recorded as ASHA records it (sign-adjusted by ``mode``). Ray Tune has no public API for
    this: it writes ``AsyncHyperBandScheduler._brackets[i]._rungs`` (Li et al., 2020, "A System
    for Massively Parallel Hyperparameter Tuning", the rungs of Algorithm 1), and does nothing
    for a scheduler without them (FIFO, the median rule, HyperBand's own brackets).
    """
    brackets = getattr(scheduler, "_brackets", None)
    if not isinstance(brackets, list) or not isinstance(scheduler, ASHAScheduler):
        return 0
    sign = 1.0 if mode == "max" else -1.0
    recorded_count = 0
    for index, curve in enumerate(curves):
        for bracket in brackets:
            for milestone, recorded in getattr(bracket, "_rungs", ()):
                value = curve.get(math.ceil(milestone))
                if value is not None and math.isfinite(value):
                    recorded[f"earlier-session-{index}"] = sign * float(value)
                    recorded_count += 1
    return recorded_count
