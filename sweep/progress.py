"""What the terminal shows while a sweep runs: a live rich table on a TTY, plain lines otherwise.

Batch logs (``ray job submit``, SLURM, CI) are not terminals: they get one short line per
finished trial and a heartbeat, never cursor tricks.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sweep.results import COMPLETED, FAILED, RUNNING, STOPPED_EARLY, DriverCallback, Ledger, TrialOutcome

HEARTBEAT_SECONDS = 30.0


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v) if isinstance(v, float) else v}" for k, v in params.items())


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class LiveView(DriverCallback):
    """Shows counts by status, the best trial so far, elapsed time and an ETA."""

    transient = ("stream", "console", "_live")

    def __init__(self, ledger: Ledger, name: str, total: int, stream: TextIO | None = None, quiet: bool = False):
        self.ledger, self.name, self.total, self.quiet = ledger, name, total, quiet
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream)
        self.interactive = self.console.is_terminal and not quiet
        self._live: Live | None = None
        self._last_line = 0.0

    # -- Tune hooks --------------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        if self.interactive:
            self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        elif not self.quiet:
            self._print(f"sweep {self.name}: {self.total} trials, objective {self.ledger.metric} ({self.ledger.mode})")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._live is not None:
            self._live.update(self.render())
        elif not self.quiet and time.time() - self._last_line > HEARTBEAT_SECONDS:
            self._print(self.summary_line())

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

    # -- rendering ---------------------------------------------------------------------------
    def _trial_line(self, outcome: TrialOutcome) -> None:
        if self.interactive or self.quiet:
            return
        reason = f" ({self._reason_once(outcome)})" if outcome.reason else ""
        self._print(
            f"trial {outcome.number:>4} {outcome.status}{reason} after {outcome.epochs} epoch(s): "
            f"{self.ledger.metric}={format_value(outcome.value)}  |  {self.summary_line()}"
        )

    def _reason_once(self, outcome: TrialOutcome) -> str:
        """A failure reason in full the first time; later trials failing alike point back to it."""
        seen = self.__dict__.setdefault("_reasons_seen", {})
        first = seen.setdefault(outcome.reason, outcome.number)
        return outcome.reason if first == outcome.number else f"same error as trial {first}"

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
        self._last_line = time.time()

    def counts(self) -> dict[str, int]:
        return {status: self.ledger.count(status) for status in (RUNNING, COMPLETED, STOPPED_EARLY, FAILED)}

    def eta(self) -> float | None:
        done = sum(1 for o in self.ledger.outcomes.values() if o.ended_at is not None)
        if not done:
            return None
        elapsed = time.time() - self.ledger.started
        return elapsed / done * max(0, self.total - done)

    def summary_line(self) -> str:
        c = self.counts()
        best = self.ledger.best
        best_text = f"best {format_value(best.value)} (trial {best.number})" if best else "best -"
        return (
            f"running {c[RUNNING]}, completed {c[COMPLETED]}, stopped early {c[STOPPED_EARLY]}, "
            f"failed {c[FAILED]} of {self.total}; {best_text}; elapsed {format_duration(time.time() - self.ledger.started)}"
        )

    def render(self) -> Group:
        c = self.counts()
        elapsed = time.time() - self.ledger.started
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
            f"[cyan]running {c[RUNNING]}",
            f"[green]completed {c[COMPLETED]}",
            f"[yellow]stopped early {c[STOPPED_EARLY]}",
            f"[red]failed {c[FAILED]}",
            f"[bold]of {self.total}",
        )
        return Group(header, counts, self._best_table())

    def _best_table(self) -> Table:
        table = Table(title="top trials", title_justify="left", expand=False)
        for column in ("#", "status", "epochs", self.ledger.metric, "params"):
            table.add_column(column, overflow="fold")
        ranked = [o for o in self.ledger.outcomes.values() if o.value is not None]
        ranked.sort(key=lambda o: o.value, reverse=self.ledger.mode == "max")
        for outcome in ranked[:5]:
            table.add_row(str(outcome.number), outcome.status, str(outcome.epochs), format_value(outcome.value), format_params(outcome.params))
        return table
