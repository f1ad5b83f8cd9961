"""Scheduler section -> Ray Tune trial scheduler. Pure translation; a registry per type."""

from __future__ import annotations

from typing import Any, Callable

from sweep.results import EPOCH_FIELD
from sweep.config import AshaConfig, FifoConfig, HyperbandConfig, MedianConfig, SweepConfig


def _asha(section: AshaConfig, max_t: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr=EPOCH_FIELD,
        max_t=max_t,
        grace_period=section.grace_period,
        reduction_factor=section.reduction_factor,
    )


def _hyperband(section: HyperbandConfig, max_t: int) -> Any:
    from ray.tune.schedulers import HyperBandScheduler

    return HyperBandScheduler(time_attr=EPOCH_FIELD, max_t=max_t, reduction_factor=section.reduction_factor)


def _median(section: MedianConfig, max_t: int) -> Any:
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(
        time_attr=EPOCH_FIELD,
        grace_period=section.grace_period,
        min_samples_required=section.min_samples_required,
    )


def _fifo(section: FifoConfig, max_t: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS: dict[str, Callable[[Any, int], Any]] = {
    "asha": _asha,
    "hyperband": _hyperband,
    "median": _median,
    "fifo": _fifo,
}


def build(config: SweepConfig) -> Any:
    """The Tune scheduler for ``config.scheduler``; ``max_t`` defaults to ``fit.epochs``."""
    section = config.scheduler
    return SCHEDULERS[section.type](section, config.max_epochs)
