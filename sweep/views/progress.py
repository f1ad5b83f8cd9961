"""What the terminal shows while a sweep runs: a live rich table on a TTY, plain lines otherwise.

Batch logs (``ray job submit``, SLURM, CI) are not terminals: they get one short line per
finished trial and a heartbeat, never cursor tricks.
"""

from __future__ import annotations

import bisect
import math
import sys
import time
from typing import Any, Sequence, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sweep.protocol import trial_label
from sweep.driver.ledger import DriverCallback, Ledger, TrialOutcome, epoch_of
from sweep.protocol import COUNTED, TrialStatus

HEARTBEAT_SECONDS = 30.0
RENDER_SECONDS = 0.25  # the rich view redraws at most this often, however fast Tune steps


def rung_milestones(scheduler: Any, max_epochs: int) -> list[int]:
    """The epochs at which the scheduler judges trials, ending with the full budget.

    ASHA: ``grace_period * reduction_factor**k`` up to ``max_epochs`` (Ray's own rungs);
    HyperBand: ``reduction_factor**k``; the median rule: its grace period. A milestone is
    reached at the first whole epoch at or past it. FIFO (or no scheduler) stops no one early,
    so it has none.
    """
    kind = getattr(scheduler, "type", None)
    if kind in ("asha", "hyperband"):
        start = float(getattr(scheduler, "grace_period", 1) if kind == "asha" else 1)
        factor = float(scheduler.reduction_factor)
        points, k = [], 0
        while start * factor**k <= max_epochs * (1 + 1e-9):
            points.append(math.ceil(start * factor**k - 1e-9))
            k += 1
    elif kind == "median":
        points = [int(scheduler.grace_period)]
    else:
        return []
    return sorted({p for p in points if 1 <= p <= max_epochs} | {int(max_epochs)})


def format_rungs(rungs: Sequence[int], counts: Sequence[int]) -> str:
    """``epoch>=1: 32, >=3: 12, >=9: 5``: how many trials reached each milestone."""
    return ", ".join(f"{'epoch' if i == 0 else ''}>={rung}: {count}" for i, (rung, count) in enumerate(zip(rungs, counts)))


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v) if isinstance(v, float) else v}" for k, v in params.items())


def waiting_for(trials: Sequence[Any]) -> str | None:
    """What the sweep waits for when trials are pending and none runs, as one line; else None.

    On a fixed cluster the preflight refuses a trial no node can hold, so this is the wait for an
    autoscaling cluster to add nodes (or for another job to free them): the line names what one
    trial needs and what the cluster has free now (Ray's public ``available_resources`` and
    ``cluster_resources``), so a batch log says why nothing moves, every heartbeat (issue 18, section 4).
    """
    pending = [t for t in trials if getattr(t, "status", None) == "PENDING"]
    if not pending or any(getattr(t, "status", None) == "RUNNING" for t in trials):
        return None
    factory = getattr(pending[0], "placement_group_factory", None)
    need = dict(getattr(factory, "required_resources", {}) or {})
    try:
        import ray

        free, total = ray.available_resources(), ray.cluster_resources()
    except Exception:  # Ray gone or unreachable: say what is known
        free, total = {}, {}
    names = sorted(need) or sorted(k for k in total if k in ("CPU", "GPU"))
    return (
        f"waiting for resources: {len(pending)} trial(s) pending, each needs {_resources(need, names)}; "
        f"the cluster has {', '.join(f'{n} {free.get(n, 0):g} free of {total.get(n, 0):g}' for n in names) or 'nothing'}"
    )


def _resources(amounts: dict[str, float], names: Sequence[str]) -> str:
    return ", ".join(f"{name} {amounts.get(name, 0):g}" for name in names) or "nothing"


def format_duration(seconds: float) -> str:
    """``M:SS`` (``H:MM:SS`` from an hour), to the nearest second: truncated, a 0.95 s trial read ``0:00``."""
    seconds = int(seconds + 0.5) if seconds > 0 else 0
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class LiveView(DriverCallback):
    """Shows counts by status, the best trial so far, rung survival, elapsed time and an ETA.

    Rung survival (how many trials reached each scheduler milestone) is kept as running
    counters, updated when a trial's epoch crosses a milestone, so showing it costs the same
    on the thousandth trial as on the first.
    """

    transient = ("stream", "console", "_live")
    # defaults for a view unpickled from a state saved before these existed
    rungs: list[int] = []
    rung_counts: list[int] = []
    _last_render = 0.0
    started: float | None = None  # when the command started (Ray start-up included); None: the ledger's start

    def __init__(
        self,
        ledger: Ledger,
        name: str,
        total: int,
        stream: TextIO | None = None,
        quiet: bool = False,
        rungs: Sequence[int] | None = None,
        started: float | None = None,
    ):
        self.ledger, self.name, self.total, self.quiet = ledger, name, total, quiet
        self.started = started
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream)
        self.interactive = self.console.is_terminal and not quiet
        self._live: Live | None = None
        self._last_line = 0.0
        self._last_render = 0.0
        self.rungs: list[int] = sorted(set(int(r) for r in rungs or ()))
        self.rung_counts: list[int] = [0] * len(self.rungs)
        self._rungs_reached: dict[str, int] = {}  # trial id -> how many milestones it has passed
        self._reasons_seen: dict[str, int] = {}  # failure reason -> number of the trial that printed it
        self.waiting: str | None = None  # what the sweep waits for when no trial can run (see waiting_for)
        self._waiting_checked = 0.0
        self._was_waiting = False
        for outcome in list(ledger.outcomes.values()):  # trials of an earlier session (resume)
            self._note_epochs(outcome.trial_id, outcome.epochs)

    @staticmethod
    def rungs_for(config: Any) -> list[int]:
        """The milestones of a ``SweepConfig``'s scheduler (see ``rung_milestones``)."""
        return rung_milestones(config.scheduler, config.max_epochs)

    # -- Tune hooks --------------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        if self.interactive:
            self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        elif not self.quiet:
            self._print(f"sweep {self.name}: {self.total} trials, objective {self.ledger.metric} ({self.ledger.mode})")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.rungs:
            outcome = self.ledger.outcome(trial)
            self._note_epochs(outcome.trial_id, max(epoch_of(result), outcome.epochs))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.time()
        if now - self._waiting_checked >= min(HEARTBEAT_SECONDS, 5.0):
            self._waiting_checked = now
            seen = waiting_for(trials)  # said only once it held at two checks: not a trial's hand-over
            self.waiting, self._was_waiting = (seen if self._was_waiting else None), seen is not None
        if self._live is not None:
            if now - self._last_render >= RENDER_SECONDS:
                self._last_render = now
                self._live.update(self.render())
        elif not self.quiet and now - self._last_line > HEARTBEAT_SECONDS:
            self._print(self.summary_line() + (f"; {self.waiting}" if self.waiting else ""))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_line(self.ledger.outcome(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._trial_line(self.ledger.outcome(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.stop()
            self._live = None

    def _note_epochs(self, key: str, epochs: int) -> None:
        """Count the milestones ``epochs`` passes that this trial had not passed before."""
        if not self.rungs:
            return
        before = self._rungs_reached.get(key, 0)
        now = bisect.bisect_right(self.rungs, epochs)
        if now > before:
            for index in range(before, now):
                self.rung_counts[index] += 1
            self._rungs_reached[key] = now

    def rung_survival(self) -> str:
        """``epoch>=1: 32, >=3: 12, ...``; empty when the scheduler has no milestones."""
        return format_rungs(self.rungs, self.rung_counts)

    # -- rendering ---------------------------------------------------------------------------
    def _trial_line(self, outcome: TrialOutcome) -> None:
        if self.interactive or self.quiet:
            return
        reason = f" ({self._reason_once(outcome)})" if outcome.reason else ""
        self._print(
            f"trial {trial_label(outcome.number)} {outcome.status}{reason} after {outcome.epochs} epoch(s): "
            f"{self._best_of(outcome)}  |  {self.summary_line()}"
        )

    def _best_of(self, outcome: TrialOutcome) -> str:
        """``best val_accuracy=0.8194 (epoch 1)``: the trial's best epoch, which is what the sweep ranks
        and checkpoints. Shown bare beside "after 3 epoch(s)" it read as the last epoch's value."""
        if outcome.value is None:
            return f"{self.ledger.metric}=-"
        at = f" (epoch {outcome.best_epoch})" if outcome.best_epoch and outcome.epochs > 1 else ""
        return f"best {self.ledger.metric}={format_value(outcome.value)}{at}"

    def _reason_once(self, outcome: TrialOutcome) -> str:
        """A failure reason in full the first time; later trials failing alike point back to it."""
        first = self._reasons_seen.setdefault(outcome.reason, outcome.number)
        return outcome.reason if first == outcome.number else f"same error as trial {trial_label(first)}"

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
        self._last_line = time.time()

    def counts(self) -> dict[str, int]:
        return {status: self.ledger.count(status) for status in COUNTED}

    def eta(self) -> float | None:
        done = sum(1 for o in self.ledger.outcomes.values() if o.ended_at is not None)
        done_here = done - getattr(self.ledger, "prior_ended", 0)  # a resumed sweep's rate is this session's
        if done_here <= 0:
            return None
        elapsed = time.time() - self.ledger.started
        return elapsed / done_here * max(0, self.total - done)

    def elapsed(self) -> float:
        """Seconds since the command started (Ray start-up included), or since the ledger began."""
        return time.time() - (self.started or self.ledger.started)

    def best_text(self) -> str:
        best = self.ledger.best
        if best is None or best.value is None:
            return "best -"
        params = format_params(best.params)
        return f"best {format_value(best.value)} (trial {trial_label(best.number)}{': ' + params if params else ''})"

    def summary_line(self) -> str:
        c = self.counts()
        eta = self.eta()
        rungs = self.rung_survival()
        return (
            f"running {c[TrialStatus.RUNNING]}, completed {c[TrialStatus.COMPLETED]}, stopped early {c[TrialStatus.STOPPED_EARLY]}, "
            f"failed {c[TrialStatus.FAILED]} of {self.total}; {self.best_text()}"
            + (f"; reached {rungs}" if rungs else "")
            + f"; elapsed {format_duration(self.elapsed())}"
            + (f", eta {format_duration(eta)}" if eta is not None else "")
        )

    def render(self) -> Group:
        c = self.counts()
        elapsed = self.elapsed()
        eta = self.eta()
        header = Text.assemble(
            (f"sweep {self.name}", "bold"),
            f"  {self.ledger.metric} ({self.ledger.mode})  elapsed {format_duration(elapsed)}",
            f"  eta {format_duration(eta)}" if eta is not None else "",
        )
        counts = Table.grid(padding=(0, 3))
        for label, style in (("running", "cyan"), ("completed", "green"), ("stopped early", "yellow"), ("failed", "red"), ("total", "bold")):
            counts.add_column(justify="right")
        counts.add_row(
            f"[cyan]running {c[TrialStatus.RUNNING]}",
            f"[green]completed {c[TrialStatus.COMPLETED]}",
            f"[yellow]stopped early {c[TrialStatus.STOPPED_EARLY]}",
            f"[red]failed {c[TrialStatus.FAILED]}",
            f"[bold]of {self.total}",
        )
        parts: list[Any] = [header, counts, Text(self.best_text())]
        if self.waiting:
            parts.append(Text(self.waiting, style="yellow"))
        if self.rungs:
            parts.append(self._rung_table())
        parts.append(self._best_table())
        return Group(*parts)

    def _rung_table(self) -> Table:
        table = Table(title="rung survival", title_justify="left", expand=False)
        for rung in self.rungs:
            table.add_column(f"epoch>={rung}", justify="right")
        table.add_row(*(str(count) for count in self.rung_counts))
        return table

    def _best_table(self) -> Table:
        table = Table(title="top trials", title_justify="left", expand=False)
        for column in ("trial", "status", "epochs", self.ledger.metric, "params"):
            table.add_column(column, overflow="fold")
        ranked = [o for o in self.ledger.outcomes.values() if o.value is not None]
        ranked = self.ledger.objective.best_first(ranked, key=lambda o: o.value)
        for outcome in ranked[:5]:
            table.add_row(trial_label(outcome.number), outcome.status, str(outcome.epochs), format_value(outcome.value), format_params(outcome.params))
        return table
