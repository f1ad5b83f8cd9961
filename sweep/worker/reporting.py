"""A trial's line to Tune: report an epoch, read the checkpoint it starts from, know its id.

A trial normally runs inside Tune's trial actor and these are ``tune.report``,
``tune.get_checkpoint`` and ``tune.get_context().get_trial_id()``. On a warm executor
(:mod:`sweep.worker.executor`) the trial runs in another process, one that outlives
``Tuner.fit``, and Tune's session is in the trial actor that drives it: the executor installs a
:class:`Channel` for the trial, and the same calls go through it. The trial's code is the same
either way.
"""

from __future__ import annotations

from typing import Any, Protocol


class Channel(Protocol):
    """Where a trial running outside Tune's actor sends what it would hand to Tune."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None) -> None:
        """Deliver one result; returns once Tune took it (and persisted the checkpoint
        folder's files), raises :class:`TrialStopped` when Tune stopped the trial instead."""

    def get_checkpoint(self) -> Any:
        """The ``ray.tune.Checkpoint`` the trial resumes from, or None."""

    def trial_id(self) -> str | None:
        """The trial's Tune id."""


class TrialStopped(BaseException):
    """Tune stopped this trial (a scheduler's decision, the end of the sweep) while it ran on a
    warm executor. A ``BaseException``, like the ``SystemExit`` Tune's own ``report`` raises in
    the same case, so a trial's ``except Exception`` handlers do not swallow it."""


_CHANNEL: list[Channel] = []  # the running trial's, on a warm executor; empty inside Tune's actor


def use_channel(channel: Channel | None) -> None:
    """Route this process's reports through ``channel`` (None: back to Tune's session)."""
    _CHANNEL[:] = [channel] if channel is not None else []


def report(metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
    """Report one epoch's ``metrics`` (with the files in ``checkpoint_dir`` as its checkpoint).

    The folder may be deleted once this returns: Tune has copied it to the sweep's storage.
    """
    if _CHANNEL:
        _CHANNEL[0].report(metrics, checkpoint_dir)
        return
    from ray import tune

    checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir is not None else None
    try:
        tune.report(metrics, checkpoint=checkpoint)
    except SystemExit as exc:  # Tune ends a stopped trial's thread this way: marked, to tell it from the user's sys.exit
        exc.from_tune = True  # type: ignore[attr-defined]
        raise


def get_checkpoint() -> Any:
    """The checkpoint a retried or resumed trial continues from (``ray.tune.Checkpoint``), or None."""
    if _CHANNEL:
        return _CHANNEL[0].get_checkpoint()
    from ray import tune

    return tune.get_checkpoint()


def trial_id() -> str | None:
    """This trial's Tune id (None when called outside any trial, e.g. from a test)."""
    if _CHANNEL:
        return _CHANNEL[0].trial_id()
    try:
        from ray import tune

        return tune.get_context().get_trial_id()
    except Exception:
        return None
