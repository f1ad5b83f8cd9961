"""The sweep report: one static HTML file (plots embedded) and the PNGs, read back from MLflow.

MLflow is the source of truth, so a report can be made for a running sweep, a finished one,
or one recorded on another machine: ``sweep report NAME``. The HTML needs no server and no
network (images are base64 ``data:`` URIs, styles inline), so it can be mailed or attached to
a ticket. The runner logs the same files to the parent run at the end of every sweep (built
from its ledger, which holds every trial already), and ``sweep report`` of an ended sweep
copies those files instead of reading every run back (``--rebuild`` reads them).

Plots use matplotlib's Agg backend with a fixed size and dpi, so every PNG has the pixel size
in ``PLOT_PIXELS`` (tests and layouts can rely on it).
"""

from __future__ import annotations

import contextlib
import dataclasses

import base64
import html
import logging
import math
import os
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sweep.tracking import store
from sweep.tracking.client import client, redact, resolve_uri
from sweep.tracking.tags import BEST_EPOCH_TAG, EPOCHS_TAG, METRIC_TAG, MODE_TAG, NAME_TAG, STATUS_TAG, TRIAL_NUMBER_TAG, TRIAL_TAG
from sweep.tracking.writer import param_text
from sweep.protocol import Objective, TrialStatus

log = logging.getLogger("sweep.report")

DPI = 100
FIGSIZE = (10.0, 4.5)  # inches; PLOT_PIXELS = FIGSIZE * DPI
PLOT_PIXELS = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
PLOTS = ("history", "learning_curves", "parallel_coordinates", "importance")
TITLES = {
    "history": "Optimization history",
    "learning_curves": "Learning curves",
    "parallel_coordinates": "Hyperparameters vs objective",
    "importance": "Hyperparameter importance",
}
HTML_NAME = "report.html"
ARTIFACT_DIR = "report"
STATUS_COLORS = {TrialStatus.COMPLETED: "#1f77b4", TrialStatus.STOPPED_EARLY: "#ff7f0e", TrialStatus.FAILED: "#d62728", TrialStatus.RUNNING: "#7f7f7f"}


@dataclass
class TrialRecord:
    """One trial as MLflow recorded it: params, status, best value and its objective per epoch."""

    run_id: str
    trial_id: str
    number: int
    status: str
    params: dict[str, str]
    value: float | None
    epochs: int | None
    best_epoch: int | None
    start_ms: int | None
    end_ms: int | None
    curve: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def from_outcome(cls, outcome: Any) -> "TrialRecord":
        """A ``results.TrialOutcome`` as its MLflow run holds it (params as the text MLflow keeps)."""
        return cls(
            run_id=outcome.mlflow_run_id,
            trial_id=outcome.trial_id,
            number=outcome.number,
            status=outcome.status,
            params={k: param_text(v) for k, v in outcome.params.items()},
            value=outcome.value,
            epochs=outcome.epochs,
            best_epoch=outcome.best_epoch,
            start_ms=_ms(outcome.started_at),
            end_ms=_ms(outcome.ended_at),
        )


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


@dataclass
class SweepData:
    """Everything the report draws, fetched once from MLflow."""

    name: str
    metric: str
    mode: str
    parent_run_id: str
    status: str
    start_ms: int
    trials: list[TrialRecord]
    experiment_id: str | None = None
    ui_url: str | None = None  # an MLflow UI's address: the table's trial ids link to their runs
    space: dict[str, dict[str, Any]] = field(default_factory=dict)  # the sweep file's search space, where known

    @property
    def objective(self) -> Objective:
        """The sweep's objective: which values are better."""
        return Objective(self.metric, self.mode)

    def run_url(self, run_id: str | None) -> str | None:
        if not (self.ui_url and self.experiment_id and run_id):
            return None
        from sweep.tracking.tracker import ui_url

        return ui_url(self.ui_url, self.experiment_id, run_id)

    def best(self) -> TrialRecord | None:
        ranked = self.ranked()
        return ranked[0] if ranked and _finite(ranked[0].value) else None

    def ranked(self) -> list[TrialRecord]:
        """Trials best first; trials without a value last (in trial order)."""
        scored = [t for t in self.trials if _finite(t.value)]
        scored = self.objective.best_first(scored, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
        rest = sorted((t for t in self.trials if not _finite(t.value)), key=lambda t: t.number)
        return scored + rest


# ---------------------------------------------------------------------------------------------
# reading back


MAX_CURVES = 60  # learning curves drawn (and fetched): the best trials' and the latest ones'


def collect(uri: str, name: str, parent_run_id: str | None = None, outcomes: Iterable[Any] | None = None) -> SweepData | None:
    """Fetch a sweep's parent run, its trials and the objective's history of some trials.

    The trials come from ``outcomes`` when the caller has them (the runner's ledger at the end
    of a sweep: reading 10,000 runs back took 5.4 s of a 10 s report), else from the child
    runs (a few paged requests). A history is one request per trial, so only
    :data:`MAX_CURVES` are fetched: the best half and the most recent half. A report of a
    10,000-trial sweep then costs what one of 60 trials does, and its learning-curve plot stays
    readable. Histories are fetched concurrently: against a remote tracking server that is the
    slow part, and the requests are independent.
    """
    mlflow_client = client(uri)
    parent = mlflow_client.get_run(parent_run_id) if parent_run_id else store.find_parent_run(uri, name)
    if parent is None:
        return None
    tags, params = parent.data.tags, parent.data.params
    metric = tags.get(METRIC_TAG) or params.get("config.objective.metric", "val_loss")
    mode = tags.get(MODE_TAG) or params.get("config.objective.mode", "min")
    if outcomes is not None:
        trials = [TrialRecord.from_outcome(o) for o in outcomes if o.mlflow_run_id]  # pending trials never got a run
    else:
        names = store.own_param_names(parent)
        trials = [_record(run, metric, names) for run in store.child_runs(uri, parent)]

    def history(trial: TrialRecord) -> list[tuple[int, float]]:
        points = mlflow_client.get_metric_history(trial.run_id, metric)
        return sorted((int(m.step), float(m.value)) for m in points)

    drawn = curve_trials(trials, mode)
    with ThreadPoolExecutor(max_workers=8) as pool:
        for trial, curve in zip(drawn, pool.map(history, drawn)):
            trial.curve = curve
            if trial.epochs is None and curve:
                trial.epochs = max(step for step, _ in curve)
    trials.sort(key=lambda t: t.number)
    return SweepData(
        name=tags.get(NAME_TAG, name),
        metric=metric,
        mode=mode,
        parent_run_id=parent.info.run_id,
        status=parent.info.status,
        start_ms=parent.info.start_time,
        trials=trials,
        experiment_id=parent.info.experiment_id,
        ui_url=ui_address(uri),
        space=search_space(params.get("config.search.space")),
    )


def search_space(text: str | None) -> dict[str, dict[str, Any]]:
    """The parent run's ``config.search.space`` param (the space's repr) as a dict; {} when it is
    missing or cut short. Read with ``ast.literal_eval``: literals only, nothing is executed."""
    import ast

    try:
        space = ast.literal_eval(text) if text else {}
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return {}
    return {k: v for k, v in space.items() if isinstance(v, dict)} if isinstance(space, dict) else {}


def ui_address(uri: str) -> str | None:
    """Where the MLflow UI of ``uri`` is: ``SWEEP_MLFLOW_UI`` if set, else an http(s) tracking
    server itself (it serves the UI); None for a sqlite file (no UI is known to run)."""
    import os

    explicit = os.environ.get("SWEEP_MLFLOW_UI")
    if explicit:
        return explicit
    if uri.startswith(("http://", "https://")):
        return redact(uri)
    return None


def curve_trials(trials: list[TrialRecord], mode: str, limit: int | None = None) -> list[TrialRecord]:
    """The trials whose learning curves the report draws: the best ``limit // 2`` by the
    objective, then the most recently started, up to ``limit`` (all of them in a small sweep)."""
    limit = MAX_CURVES if limit is None else limit
    if len(trials) <= limit:
        return list(trials)
    best = sorted(trials, key=lambda t: store.badness(t.value, mode))[: limit // 2]
    chosen = {id(t) for t in best}
    recent = [t for t in sorted(trials, key=lambda t: t.start_ms or 0, reverse=True) if id(t) not in chosen]
    return best + recent[: limit - len(best)]


def _record(run: Any, metric: str, names: Mapping[str, str]) -> TrialRecord:
    tags = run.data.tags
    return TrialRecord(
        run_id=run.info.run_id,
        trial_id=tags.get(TRIAL_TAG, run.info.run_id),
        number=store.int_or_none(tags.get(TRIAL_NUMBER_TAG)) or 0,
        status=tags.get(STATUS_TAG, "running"),
        params={names.get(key, key): text for key, text in run.data.params.items()},  # the space's own names
        value=store.child_value(run, metric),  # a running trial: its best so far
        epochs=store.int_or_none(tags.get(EPOCHS_TAG)),  # a running trial: from its curve, if drawn
        best_epoch=store.int_or_none(tags.get(BEST_EPOCH_TAG)),
        start_ms=run.info.start_time,
        end_ms=run.info.end_time,
    )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# plots


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=FIGSIZE, dpi=DPI)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    with _replaced_whole(path) as partial:
        fig.savefig(partial, dpi=DPI, format="png")  # no bbox_inches: the pixel size stays PLOT_PIXELS
    plt.close(fig)
    return path


@contextlib.contextmanager
def _replaced_whole(path: Path) -> Iterator[Path]:
    """Write ``path`` through a file beside it, renamed onto it once complete: a Ctrl-C while
    the report is written left a truncated history.png (124 bytes) where the last one was."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="#555")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_history(data: SweepData, path: Path) -> Path:
    """Objective of each trial and the best so far, against trial number and wall time."""
    plt, fig = _figure()
    by_number, by_time = fig.subplots(1, 2)
    finished = [t for t in data.trials if _finite(t.value)]
    if not finished:
        _empty(by_number, "no finished trial yet")
        _empty(by_time, "")
        return _save(plt, fig, path)
    for ax, xs in ((by_number, [t.number for t in finished]), (by_time, [_minutes(t, data) for t in finished])):
        order = sorted(range(len(finished)), key=lambda i: xs[i])
        best: list[float] = []
        for i in order:
            best.append(finished[i].value if not best else data.objective.best_of((best[-1], finished[i].value)))  # type: ignore[arg-type]
        for status in sorted({t.status for t in finished}):
            points = [(xs[i], finished[i].value) for i in order if finished[i].status == status]
            ax.scatter(*zip(*points), s=22, color=STATUS_COLORS.get(status, "#333"), label=status.replace("_", " "), zorder=3)
        ax.step([xs[i] for i in order], best, where="post", color="#2ca02c", label="best so far", zorder=2)
        ax.set_ylabel(data.metric)
        ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    by_number.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_number.set_xlabel("trial number")
    by_time.set_xlabel("minutes since the sweep started (trial end)")
    by_number.legend(fontsize=8)
    fig.suptitle(f"{data.name}: {data.metric} ({data.mode})")
    _tight_layout(fig)
    return _save(plt, fig, path)


def _minutes(trial: TrialRecord, data: SweepData) -> float:
    end = trial.end_ms or trial.start_ms or data.start_ms
    return max(0.0, (end - data.start_ms) / 60000.0)


def plot_learning_curves(data: SweepData, path: Path) -> Path:
    """The objective per epoch of every trial; an x marks the epoch where ASHA stopped a trial."""
    plt, fig = _figure()
    ax = fig.subplots()
    drawn = [t for t in data.trials if t.curve]
    if not drawn:
        _empty(ax, "no epoch reported yet")
        return _save(plt, fig, path)
    labelled: set[str] = set()
    best = data.best()
    for trial in drawn:
        steps, values = zip(*trial.curve)
        color = STATUS_COLORS.get(trial.status, "#333")
        label = trial.status.replace("_", " ") if trial.status not in labelled else None
        labelled.add(trial.status)
        ax.plot(steps, values, color=color, alpha=0.75, linewidth=1.2, marker=".", label=label)
        if trial.status == TrialStatus.STOPPED_EARLY:
            ax.scatter([steps[-1]], [values[-1]], marker="x", s=60, color=color, zorder=3)
    if best is not None and best.curve:
        steps, values = zip(*best.curve)
        ax.plot(steps, values, color="#2ca02c", linewidth=2.6, zorder=4, label=f"best: trial {_label(best.number)}")
        at = best.best_epoch if best.best_epoch in steps else steps[values.index(best.value)] if best.value in values else steps[-1]
        ax.scatter([at], [best.value], marker="*", s=180, color="#2ca02c", edgecolor="black", zorder=5)
        ax.annotate(f"{best.value:.4g}", (at, best.value), textcoords="offset points", xytext=(6, 6), fontsize=8)
    limits = informative_range([v for t in drawn for _, v in t.curve], data.mode)
    if limits is not None:
        ax.set_ylim(*limits)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(data.metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="x = stopped early", title_fontsize=8)
    more = len(data.trials) - len(drawn)
    ax.set_title(f"{data.metric} per epoch, {len(drawn)} trials" + (f" (the best and the latest; {more} more not drawn)" if more > 0 else ""))
    _tight_layout(fig)
    return _save(plt, fig, path)


def informative_range(values: list[float], mode: str) -> tuple[float, float] | None:
    """The objective's range worth showing: the good end whole, the bad end cut at the 10th
    percentile (a first epoch far below everything else would flatten every curve); None
    when the values fit as they are."""
    finite = sorted(v for v in values if math.isfinite(v))
    if len(finite) < 5:
        return None
    maximize = Objective("", mode).maximize
    cut = finite[len(finite) // 10] if maximize else finite[-1 - len(finite) // 10]
    low, high = (cut, finite[-1]) if maximize else (finite[0], cut)
    if high <= low or (high - low) >= 0.8 * (finite[-1] - finite[0]):
        return None
    pad = (high - low) * 0.08
    return low - pad, high + pad


def _axis_values(trials: list[TrialRecord], name: str, spec: dict[str, Any] | None = None) -> tuple[list[float], list[str] | None, bool]:
    """Map one parameter onto [0, 1]: numbers or categories, as the search space declares them
    (``spec``: a categorical's choices in their order, ``log: true``); without it, inferred
    (numbers on a log scale when they span decades)."""
    raw = [t.params.get(name) for t in trials]
    numbers = [_number(v) for v in raw]
    spec = spec or {}
    if spec.get("type") == "categorical" and isinstance(spec.get("choices"), list):
        labels = [param_text(c) for c in spec["choices"]]
        labels += sorted({str(v) for v in raw if v is not None} - set(labels))  # values the space no longer has
        position = {label: (i / (len(labels) - 1) if len(labels) > 1 else 0.5) for i, label in enumerate(labels)}
        return [math.nan if v is None else position[str(v)] for v in raw], labels, False
    if all(n is not None for n, v in zip(numbers, raw) if v is not None):
        present = [n for n in numbers if n is not None]
        low, high = min(present), max(present)
        declared = spec.get("log") if spec.get("type") in ("float", "int") else None
        use_log = low > 0 and (bool(declared) if declared is not None else high / low >= 100)
        tf = (lambda x: math.log10(x)) if use_log else (lambda x: x)
        span = (tf(high) - tf(low)) or 1.0
        return [math.nan if n is None else (tf(n) - tf(low)) / span for n in numbers], None, use_log
    labels = sorted({str(v) for v in raw if v is not None})
    position = {label: (i / (len(labels) - 1) if len(labels) > 1 else 0.5) for i, label in enumerate(labels)}
    return [math.nan if v is None else position[str(v)] for v in raw], labels, False


def _number(text: Any) -> float | None:
    if text is None or str(text) in ("True", "False", "None"):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


MAX_LINES = 300  # parallel-coordinate lines: more is ink, not information, and seconds per thousand
MAX_IMPORTANCE_TRIALS = 500  # fANOVA's forest is fitted on an even spread of at most this many (about 1 s)


def spread(trials: list[TrialRecord], limit: int) -> list[TrialRecord]:
    """At most ``limit`` trials, evenly spaced through the sweep (all of them when fewer)."""
    if len(trials) <= limit:
        return list(trials)
    step = len(trials) / limit
    return [trials[int(i * step)] for i in range(limit)]


def best_and_spread(trials: list[TrialRecord], mode: str, limit: int) -> list[TrialRecord]:
    """The best ``limit // 2`` trials plus an even spread of the others, in trial order."""
    if len(trials) <= limit:
        return list(trials)
    best = sorted(trials, key=lambda t: store.badness(t.value, mode))[: limit // 2]
    chosen = {id(t) for t in best}
    rest = spread([t for t in trials if id(t) not in chosen], limit - len(best))
    return sorted(best + rest, key=lambda t: t.number)


def plot_parallel_coordinates(data: SweepData, path: Path) -> Path:
    """One line per trial through every hyperparameter to the objective, coloured by the objective.

    Conditional parameters a trial did not have leave a gap in its line.
    """
    plt, fig = _figure()
    ax = fig.subplots()
    finished = [t for t in data.trials if _finite(t.value)]
    trials = best_and_spread(finished, data.mode, MAX_LINES)
    names = sorted({name for t in trials for name in t.params})
    if not trials or not names:
        _empty(ax, "no finished trial yet")
        return _save(plt, fig, path)
    import matplotlib as mpl

    columns = [_axis_values(trials, name, data.space.get(name)) for name in names]
    values = [t.value for t in trials]
    low, high = min(values), max(values)  # type: ignore[type-var]
    norm = mpl.colors.Normalize(vmin=low, vmax=high if high > low else low + 1e-12)
    cmap = mpl.colormaps["viridis" if data.objective.maximize else "viridis_r"]
    xs = list(range(len(names) + 1))
    for i, trial in enumerate(trials):
        objective = (trial.value - low) / ((high - low) or 1.0)  # type: ignore[operator]
        ys = [column[0][i] for column in columns] + [objective]
        ax.plot(xs, ys, color=cmap(norm(trial.value)), alpha=0.8, linewidth=1.3, marker="o", markersize=3)
    for x, (name, (_, labels, use_log)) in enumerate(zip(names, columns)):
        ax.axvline(x, color="#999", linewidth=0.8)
        if labels:
            for label in labels:
                position = labels.index(label) / (len(labels) - 1) if len(labels) > 1 else 0.5
                ax.text(x + 0.03, position, label, fontsize=7, va="center", color="#333")
        else:  # numbers: the values at the axis's ends and middle (the middle of a log axis is the geometric mean)
            present = [n for n in (_number(t.params.get(name)) for t in trials) if n is not None]
            for position, value in zip((0, 0.5, 1), axis_ticks(min(present), max(present), use_log)):
                ax.text(x + 0.03, position, f"{value:.3g}", fontsize=7, va="center", color="#333")
    ax.axvline(xs[-1], color="#999", linewidth=0.8)
    for position, value in zip((0, 0.5, 1), axis_ticks(low, high, False)):
        ax.text(xs[-1] + 0.03, position, f"{value:.4g}", fontsize=7, va="center", color="#333")
    best = data.best()
    if best is not None and best in trials:
        i = trials.index(best)
        ys = [column[0][i] for column in columns] + [(best.value - low) / ((high - low) or 1.0)]  # type: ignore[operator]
        ax.plot(xs, ys, color="#d62728", linewidth=2.8, zorder=4)
    ax.set_xticks(xs, [f"{n}\n(log)" if c[2] else n for n, c in zip(names, columns)] + [data.metric], fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, xs[-1] + 0.4)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=data.metric)
    shown = "" if len(trials) == len(finished) else f"; the best and an even spread, {len(trials)} of {len(finished)}"
    marked = f"; thick red: the best, trial {_label(best.number)}" if best is not None and best in trials else ""
    ax.set_title(f"each line is a trial (gaps: parameter not used by that trial{shown}){marked}", fontsize=10)
    _tight_layout(fig)
    return _save(plt, fig, path)


def axis_ticks(low: float, high: float, use_log: bool) -> tuple[float, float, float]:
    """The values at the bottom, middle and top of a parallel-coordinates axis."""
    middle = math.sqrt(low * high) if use_log else (low + high) / 2
    return low, middle, high


def importances(data: SweepData) -> tuple[dict[str, float], str | None]:
    """Optuna's parameter importances (fANOVA) over the trials that have a value.

    Built on an in-memory Optuna study from MLflow's records, so it works for any recorded
    sweep (conditional parameters are rated on the trials that have them); with fewer than two usable trials or no varying parameter there is nothing to rank, and
    the second element says why.
    """
    import optuna

    trials = spread([t for t in data.trials if _finite(t.value)], MAX_IMPORTANCE_TRIALS)
    if len(trials) < 2:
        return {}, f"needs at least 2 finished trials, has {len(trials)}"
    distributions = _distributions(trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=data.objective.direction)
    frozen = []
    for trial in trials:
        params = {k: _parse(v, distributions[k]) for k, v in trial.params.items() if k in distributions}
        dists = {k: distributions[k] for k in params}
        frozen.append(optuna.trial.create_trial(params=params, distributions=dists, value=trial.value))
    study.add_trials(frozen)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as exc:
        return {}, str(exc).splitlines()[0][:200]
    if not found:
        return {}, "no parameter was used by every trial"
    return dict(found), None


def _distributions(trials: list[TrialRecord]) -> dict[str, Any]:
    """Distributions that cover the recorded values (MLflow keeps params as text)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    result: dict[str, Any] = {}
    for name in sorted({n for t in trials for n in t.params}):
        raw = [t.params[name] for t in trials if name in t.params]
        numbers = [_number(v) for v in raw]
        if all(n is not None for n in numbers):
            low, high = min(numbers), max(numbers)  # type: ignore[type-var]
            result[name] = FloatDistribution(low, high if high > low else low + 1e-12)
        else:
            result[name] = CategoricalDistribution(sorted(set(raw)))
    return result


def _parse(text: str, distribution: Any) -> Any:
    from optuna.distributions import FloatDistribution

    return float(text) if isinstance(distribution, FloatDistribution) else text


def plot_importance(data: SweepData, path: Path) -> tuple[Path, dict[str, float]]:
    """Horizontal bars of Optuna's importances, or the reason there are none."""
    plt, fig = _figure()
    ax = fig.subplots()
    found, why = importances(data)
    if not found:
        _empty(ax, f"importance not available: {why}")
        return _save(plt, fig, path), {}
    names = list(found)[::-1]
    ax.barh(names, [found[n] for n in names], color="#1f77b4")
    ax.set_xlabel(f"importance for {data.metric} (fANOVA, sums to 1)")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    _tight_layout(fig)
    return _save(plt, fig, path), found


# ---------------------------------------------------------------------------------------------
# interactive plots: Optuna's visualization (plotly) of the study the report rebuilds


INTERACTIVE = ("history", "intermediate", "parallel_coordinates", "slice", "importance", "contour")
INTERACTIVE_TITLES = {
    "history": "Optimization history (interactive)",
    "intermediate": "Learning curves (interactive; x = stopped early, the best trial in green)",
    "parallel_coordinates": "Parallel coordinates (interactive: drag along an axis to filter)",
    "slice": "Each hyperparameter vs the objective",
    "importance": "Hyperparameter importance (interactive)",
    "contour": "The two most important hyperparameters",
}


def optuna_study(data: SweepData) -> Any:
    """An in-memory Optuna study of the trials that have a value: params with distributions that
    cover them (log scale when they span decades), the value, and each drawn trial's curve as
    intermediate values (the trial ids and statuses as user attributes)."""
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    finished = sorted(best_and_spread([t for t in data.trials if _finite(t.value)], data.mode, MAX_LINES), key=lambda t: t.number)
    distributions = _distributions(finished)
    for name, dist in list(distributions.items()):
        if isinstance(dist, FloatDistribution) and dist.low > 0 and dist.high / dist.low >= 100:
            distributions[name] = FloatDistribution(dist.low, dist.high, log=True)
    study = optuna.create_study(study_name=data.name, direction=data.objective.direction)
    frozen = []
    for trial in finished:
        params = {k: _parse(v, distributions[k]) for k, v in trial.params.items() if k in distributions}
        frozen.append(optuna.trial.create_trial(
            params=params, distributions={k: distributions[k] for k in params}, value=trial.value,
            intermediate_values={int(step): float(value) for step, value in trial.curve if math.isfinite(value)},
            user_attrs={"trial_id": trial.trial_id, "sweep_number": trial.number, "status": trial.status},
        ))
    study.add_trials(frozen)
    return study


def interactive_figures(data: SweepData, found: dict[str, float]) -> list[tuple[str, Any, str | None]]:
    """``(key, plotly figure or None, why not)`` for each of :data:`INTERACTIVE`."""
    try:
        import plotly  # noqa: F401 - a dependency; a broken install costs the interactive part only
        from optuna import visualization as vis
    except ImportError as exc:
        return [(key, None, f"plotly is not installed ({exc})") for key in INTERACTIVE]
    study = optuna_study(data)
    if len(study.trials) == 0:
        return [(key, None, "no finished trial yet") for key in INTERACTIVE]
    target = data.metric
    ranked_params = list(found) or sorted({k for t in study.trials for k in t.params})
    # a contour needs two axes: a parameter with one value (fixed by --set, one choice) has none (Optuna warned on the terminal)
    varied = [name for name in ranked_params if len({repr(t.params[name]) for t in study.trials if name in t.params}) >= 2]
    best_number = next((t.number for t in study.trials if t.user_attrs.get("trial_id") == getattr(data.best(), "trial_id", None)), None)
    makers = {
        "history": lambda: _mark_best_history(vis.plot_optimization_history(study, target_name=target), study, best_number),
        "intermediate": lambda: _mark_curves(vis.plot_intermediate_values(study), study, best_number),
        "parallel_coordinates": lambda: vis.plot_parallel_coordinate(study, target_name=target),
        "slice": lambda: vis.plot_slice(study, target_name=target),
        "importance": lambda: vis.plot_param_importances(study, target_name=target) if len(study.trials) >= 2 else _no("needs at least 2 finished trials"),
        "contour": lambda: vis.plot_contour(study, params=varied[:2], target_name=target) if len(varied) >= 2 and len(study.trials) >= 2 else _no("needs two hyperparameters that vary and two finished trials"),
    }
    figures = []
    for key in INTERACTIVE:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figures.append((key, makers[key](), None))
        except Exception as exc:  # one plot that cannot be drawn (too few trials, one value) is a line, not the report
            figures.append((key, None, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__))
    return figures


def _no(why: str) -> Any:
    raise ValueError(why)


def _mark_best_history(fig: Any, study: Any, best_number: int | None) -> Any:
    import plotly.graph_objects as go

    if best_number is not None:
        best = study.trials[best_number]
        fig.add_trace(go.Scatter(x=[best_number], y=[best.value], mode="markers", name=f"best (trial {_label(best.user_attrs['sweep_number'])})",
                                 marker={"symbol": "star", "size": 16, "color": "#2ca02c", "line": {"width": 1, "color": "black"}}))
    return fig


def _mark_curves(fig: Any, study: Any, best_number: int | None) -> Any:
    """The best trial's curve thick and green; an x where ASHA stopped a trial."""
    import plotly.graph_objects as go

    stopped = [t for t in study.trials if t.user_attrs.get("status") == TrialStatus.STOPPED_EARLY and t.intermediate_values]
    if stopped:
        last = [max(t.intermediate_values) for t in stopped]
        fig.add_trace(go.Scatter(x=last, y=[t.intermediate_values[s] for t, s in zip(stopped, last)], mode="markers", name="stopped early",
                                 marker={"symbol": "x", "size": 10, "color": "#ff7f0e"},
                                 text=[f"trial {_label(t.user_attrs['sweep_number'])}" for t in stopped]))
    if best_number is not None and study.trials[best_number].intermediate_values:
        curve = sorted(study.trials[best_number].intermediate_values.items())
        fig.add_trace(go.Scatter(x=[s for s, _ in curve], y=[v for _, v in curve], mode="lines+markers",
                                 name=f"best (trial {_label(study.trials[best_number].user_attrs['sweep_number'])})",
                                 line={"width": 4, "color": "#2ca02c"}))
    return fig


def _interactive_html(figures: list[tuple[str, Any, str | None]]) -> list[str]:
    """The figures as HTML, plotly.js inlined once (the file opens offline, with no server)."""
    e = html.escape
    parts: list[str] = []
    inlined = False
    for key, fig, why in figures:
        parts.append(f'<h3 id="interactive-{key}-title">{e(INTERACTIVE_TITLES[key])}</h3>')
        if fig is None:
            parts.append(f'<p class="meta">not available: {e(why or "")}</p>')
            continue
        fig.update_layout(height=460, margin={"l": 60, "r": 30, "t": 50, "b": 50})
        parts.append(fig.to_html(full_html=False, include_plotlyjs=not inlined, div_id=f"interactive-{key}",
                                 config={"displaylogo": False, "responsive": True}))
        inlined = True
    return parts


# ---------------------------------------------------------------------------------------------
# the HTML


_RENDERING = threading.Lock()  # pyplot's figure registry is not thread-safe: the prewarm's report and the end's take turns


def render(data: SweepData, out_dir: Path) -> Path:
    """Write the four PNGs and ``report.html`` (PNGs embedded) into ``out_dir``; return the HTML path."""
    with _RENDERING:
        return _render(data, out_dir)


def _render(data: SweepData, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "history": plot_history(data, out_dir / "history.png"),
        "learning_curves": plot_learning_curves(data, out_dir / "learning_curves.png"),
        "parallel_coordinates": plot_parallel_coordinates(data, out_dir / "parallel_coordinates.png"),
    }
    paths["importance"], found = plot_importance(data, out_dir / "importance.png")
    page = out_dir / HTML_NAME
    try:
        interactive = interactive_figures(data, found)
    except Exception as exc:  # the PNGs still make a report
        log.warning("the interactive plots could not be made (%s: %s)", type(exc).__name__, exc)
        interactive = []
    with _replaced_whole(page) as partial:
        partial.write_text(_html(data, paths, found, interactive), encoding="utf-8")
    return page


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:.2em} .meta{color:#555;margin-top:0} img{max-width:100%;border:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;width:100%} th,td{border:1px solid #ddd;padding:4px 6px;text-align:left}
th{background:#f4f4f4} tr.best td{background:#eaf6ea;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.stopped_early{color:#b35900} .failed{color:#b00} .completed{color:#1f5f9e}
"""


def _html(data: SweepData, paths: dict[str, Path], found: dict[str, float], interactive: list | None = None) -> str:
    e = html.escape
    counts: dict[str, int] = {}
    for trial in data.trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    summary = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(counts.items())) or "no trials"
    ranked = data.ranked()
    best = ranked[0] if ranked and _finite(ranked[0].value) else None
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>sweep report: {e(data.name)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>sweep {e(data.name)}</h1>",
        f'<p class="meta">objective {e(data.metric)} ({e(data.mode)}) &middot; {len(data.trials)} trials: {e(summary)} '
        f"&middot; MLflow parent run {e(data.parent_run_id)} ({e(data.status.lower())}) "
        f"&middot; generated {e(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>",
    ]
    if best is not None:
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(best.params.items()))
        parts.append(f"<p><b>best</b> {e(data.metric)} = {best.value:.6g} (trial {_label(best.number)}, ray {e(best.trial_id)}): {e(params)}</p>")
    if interactive:
        parts.append('<h2 id="interactive">Explore (hover, zoom, select)</h2>')
        parts += _interactive_html(interactive)
        parts.append('<h2 id="static">Static plots (the PNGs logged to MLflow)</h2>')
    for key in PLOTS:
        encoded = base64.b64encode(paths[key].read_bytes()).decode("ascii")
        parts.append(f'<h2 id="{key}">{e(TITLES[key])}</h2>')
        parts.append(f'<img id="plot-{key}" alt="{e(TITLES[key])}" width="{PLOT_PIXELS[0]}" height="{PLOT_PIXELS[1]}" src="data:image/png;base64,{encoded}">')
        if key == "importance" and found:
            parts.append("<p>" + e(", ".join(f"{k}: {v:.3f}" for k, v in found.items())) + "</p>")
    parts.append(_table(data, ranked))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _short(text: str) -> str:
    """MLflow keeps params as full-precision text; 6 significant digits read better in a table."""
    number = _number(text)
    if number is None or number == int(number) or "e" in str(text).lower():
        return str(text)
    return f"{number:.6g}"


def _label(number: int) -> str:
    """The trial's identifier as the CLI, the live view and the MLflow run name show it: ``0002``."""
    from sweep.protocol import trial_label

    return trial_label(number)


def _table(data: SweepData, ranked: list[TrialRecord]) -> str:
    """All trials, best first (the top ones are the table's first rows)."""
    e = html.escape
    names = sorted({n for t in data.trials for n in t.params})
    head = ["rank", "trial", data.metric, "status", "best epoch", "epochs"] + names + ["MLflow run"]
    rows = ['<h2 id="trials">Top trials</h2>', '<table id="trials-table">', "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead>", "<tbody>"]
    for rank, trial in enumerate(ranked, start=1):
        value = f"{trial.value:.6g}" if _finite(trial.value) else ""
        cells = [
            f'<td class="num">{rank if value else ""}</td>',
            f'<td class="num" title="ray trial {e(trial.trial_id)}">{_label(trial.number)}</td>',
            f'<td class="num">{value}</td>',
            f'<td class="{e(trial.status)}">{e(trial.status.replace("_", " "))}</td>',
            f'<td class="num">{"" if trial.best_epoch is None else trial.best_epoch}</td>',
            f'<td class="num">{"" if trial.epochs is None else trial.epochs}</td>',
        ]
        cells += [f"<td>{e(_short(trial.params.get(n, '')))}</td>" for n in names]
        url = data.run_url(trial.run_id)
        cells[1] = f'<td class="num" title="ray trial {e(trial.trial_id)}"><a href="{e(url)}">{_label(trial.number)}</a></td>' if url else cells[1]
        cells.append(f'<td><a href="{e(url)}">{e(trial.run_id)}</a></td>' if url else f"<td>{e(trial.run_id)}</td>")
        css = ' class="best"' if rank == 1 and value else ""
        rows.append(f'<tr{css} data-trial-id="{e(trial.trial_id)}">' + "".join(cells) + "</tr>")
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# entry points


def write_report(name: str, uri: str | None = None, out: str | Path | None = None, rebuild: bool = False) -> Path:
    """``sweep report NAME``: the report of the newest sweep called ``name``; returns the HTML path.

    A sweep that ended logged its report on its parent run, and that report is copied: one
    request at any size, where reading 10,000 trial runs back takes seconds. A running sweep
    (or one that never got to log its report, or ``rebuild=True``) is read from its runs.
    ``out`` defaults to ``./sweep_reports/NAME``. Raises ``LookupError`` when no such sweep.
    """
    uri = resolve_uri(uri)
    parent = store.find_parent_run(uri, name)
    if parent is None:
        raise LookupError(f"no sweep named {name!r} in {uri}")
    folder = Path(out) if out else Path("sweep_reports") / name
    if not rebuild and parent.info.status != "RUNNING":
        page = _copy_logged_report(uri, parent.info.run_id, folder)
        if page is not None:
            return page
    data = collect(uri, name, parent.info.run_id)
    assert data is not None  # the parent run was just found
    return render(data, folder)


def _copy_logged_report(uri: str, parent_run_id: str, folder: Path) -> Path | None:
    """The files under ``report/`` of the parent run, copied into ``folder``; None if it has none."""
    import shutil

    mlflow_client = client(uri)
    names = {Path(f.path).name for f in mlflow_client.list_artifacts(parent_run_id, ARTIFACT_DIR) if not f.is_dir}
    if HTML_NAME not in names or not names >= {f"{key}.png" for key in PLOTS}:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sweep-report-") as temp:
        local = Path(mlflow_client.download_artifacts(parent_run_id, ARTIFACT_DIR, temp))
        for file in names:
            shutil.copyfile(local / file, folder / file)
    return folder / HTML_NAME


def _PREWARM_DATA() -> SweepData:  # noqa: N802 - a constant, made when needed
    """Three made-up trials over two parameters: a report of them draws every plot once."""
    trials = [
        TrialRecord(f"run{n}", f"t{n}", n, "completed", {"a": str(a), "b": b}, value, 2, 2, 0, 1000, [(1, value / 2), (2, value)])
        for n, (a, b, value) in enumerate([(0.1, "x", 0.5), (0.2, "y", 0.7), (0.3, "x", 0.6)])
    ]
    return SweepData("prewarm", "val_accuracy", "max", "parent", "FINISHED", 0, trials)


_prewarmed = False


def prewarm() -> None:
    """Import what building the report needs (matplotlib on Agg, plotly, Optuna's visualization,
    fANOVA's scikit-learn) and draw a made-up report once, so the end of a sweep does not: the
    driver calls it while the trials run. The end's report took 2.2 s when it was the first one
    in the process, 0.3 s after it. Once per process: a later sweep there finds it all warm
    (the made-up report cost each in-process sweep another 0.3-0.5 s of the trials' CPU).
    Never raises."""
    global _prewarmed
    if _prewarmed:
        return
    _prewarmed = True
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot  # noqa: F401
        import plotly.graph_objects  # noqa: F401
        from optuna import visualization  # noqa: F401

        with tempfile.TemporaryDirectory(prefix="sweep-prewarm-") as folder:
            render(_PREWARM_DATA(), Path(folder))  # every first: fonts, Agg's caches, plotly's trace classes, fANOVA's imports
    except Exception as exc:  # the report says what is missing when it is built
        log.debug("report prewarm: %s", exc)


def log_to_parent_run(uri: str, name: str, parent_run_id: str, outcomes: Iterable[Any] | None = None, status: str | None = None) -> Path | None:
    """At the end of a sweep: log the report's files under ``report/`` of the parent run.

    ``outcomes`` are the ledger's trials (see :func:`collect`); ``status`` is the status the
    parent run ends with (it is built while the run is still RUNNING, and its header said
    "(running)" for ever after). Never raises: a plot that fails must not fail a sweep whose
    trials are all recorded; it logs a warning instead and returns None.
    """
    try:
        data = collect(uri, name, parent_run_id, outcomes)
        if data is None:
            return None
        if status is not None:
            data = dataclasses.replace(data, status=status)
        with tempfile.TemporaryDirectory(prefix="sweep-report-") as folder:
            page = render(data, Path(folder))
            client(uri).log_artifacts(parent_run_id, folder, ARTIFACT_DIR)
            return Path(ARTIFACT_DIR) / page.name
    except Exception as exc:  # the report is a convenience, the sweep's records are not
        log.warning("the sweep report could not be made (%s: %s); the sweep itself is recorded", type(exc).__name__, exc)
        return None


def _tight_layout(fig: Any) -> None:
    """``fig.tight_layout()`` without matplotlib's "Tight layout not applied" warning reaching
    the user (long parameter names can leave no room; the figure is still drawn as it is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
