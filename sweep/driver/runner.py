"""Running a sweep: ``run`` and ``resume`` decide what to run, ``execute`` runs it.

``execute`` opens the sweep's records in an order that leaves nothing behind when a step
refuses (warm start, the storage lock, Ray, the parent run), runs the Tuner under the sweep's
signal handler and closes every record however it stopped. The preflight is
``sweep.driver.preflight``, the Ray session ``sweep.driver.session``, signals
``sweep.driver.interrupts``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from sweep.driver import cluster
from sweep.driver.interrupts import Interrupts, SweepInterrupted, say, signals_held_during
from sweep.driver.ledger import FailFast, Ledger, SweepResult
from sweep.driver.preflight import Prepared, check_resources, prepare
from sweep.driver.quiet import quiet_ray_and_optuna
from sweep.driver.session import ensure_ray, free_warm_executors, start_warm_executors, warm_executors
from sweep.spec import config as config_module
from sweep.spec.config import SweepConfig
from sweep.errors import InputError, SweepConfigError, one_line
from sweep.protocol import TrialStatus
from sweep.tracking.tags import (
    CONFIG_HASH_TAG, DATA_INPUTS_TAG, DATA_LABELS_TAG, DATA_OUTPUTS_TAG, DATA_PREPARED_TAG, DATA_TAG, DATA_TASK_TAG, FILE_TAG, STORAGE_ROOT_TAG,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ray import tune

    from sweep.driver.recovery import ResumeState
    from sweep.search.warmstart import WarmStart
    from sweep.tracking.tracker import MLflowTracker
    from sweep.views.progress import LiveView

DEFAULT_STORAGE = "sweep_runs"


def run(
    source: str | Path | Mapping[str, Any],
    *,
    storage: str | None = None,
    address: str | None = None,
    quiet: bool = False,
    stream: Any = None,
    fresh: bool = False,
    **overrides: Any,
) -> SweepResult:
    """Run a sweep from a YAML path or a dict; ``overrides`` are dotted keys or aliases.

    Example: ``sweep.run("search_spaces/digits_mlp.yaml", trials=8, epochs=4)``.

    The resume rule, with no prompt: if the newest run of a sweep with this name never
    finished (its driver died) and no live driver holds it, the same sweep file continues it;
    a changed file is refused unless ``fresh=True`` (which closes the old run as KILLED and
    starts over). A finished sweep of the same name is never touched: a new run starts.
    """
    started = time.time()  # the elapsed time users see counts from here (Ray start-up included)
    tracking_uri = overrides.get("tracking_uri")  # validated with the file (a URI without a scheme is one line)
    config = config_module.load(source, overrides)
    overrides.pop("tracking_uri", None)
    if cluster.is_client_address(cluster.resolve_address(address)):  # Ray Client: the driver runs on the cluster
        extra = {**overrides, "tracking_uri": tracking_uri or config.tracking.uri, "fresh": fresh}
        return cluster.run_via_client(source, cluster.resolve_address(address), storage=storage, quiet=quiet, overrides=extra, sweep_run=run)
    if tracking_uri:
        config.tracking.uri = tracking_uri
    label = _label(source)
    storage_dir = storage_folder(storage, config.name)
    from sweep.tracking.client import resolve_uri

    from_environment = not config.tracking.uri and bool(os.environ.get("MLFLOW_TRACKING_URI"))
    if tracking_uri:  # the command line's: the file's tracking.uri is not the one to fix
        where, key = "--tracking-uri", ""
    else:
        where, key = ("environment", "MLFLOW_TRACKING_URI") if from_environment else (label, "tracking.uri")
    _check_tracking(resolve_uri(config.tracking.uri), where, key)  # first: MLflow's own HTTP retries take minutes on a dead server
    _check_storage(storage_dir)
    _refuse_if_running(config.name, label, storage_dir)  # at once, not after Ray's start and the preflight
    if config.search.sampler == "grid":  # a grid of 10**18 was refused only once Ray and TensorFlow were up (12 s)
        from sweep.search import space as space_module

        try:
            space_module.check_grid_size(config.search)
        except InputError as exc:
            raise SweepConfigError(label, exc.key, exc.expected) from None
    _say_the_preflight_starts(address, quiet, stream)
    prepared = prepare_while_ray_starts(config, label, _search_paths(source), address)
    # after Ray's start, not before it: opening an existing MLflow store to look for an unfinished
    # sweep of this name costs ~1.3 s (MLflow's import and store set-up), which delayed Ray, the
    # warm executors and so the first epoch (11.3 s against 10.0 s with no store yet, 2 cores)
    resume_state = _decide_resume(config, label, storage_dir, fresh)
    _say_what_the_data_is(prepared, quiet, stream)
    return execute(prepared, storage=storage, address=address, quiet=quiet, stream=stream, resume=resume_state, started=started)


def resume(
    name: str,
    *,
    tracking_uri: str | None = None,
    storage: str | None = None,
    address: str | None = None,
    quiet: bool = False,
    stream: Any = None,
) -> SweepResult:
    """Continue the unfinished sweep ``name`` from the sweep file recorded on its parent run."""
    started = time.time()
    from sweep.driver import recovery as resume_module
    from sweep.tracking.client import redact, resolve_uri, store_exists

    uri = resolve_uri(tracking_uri)
    _check_tracking(uri, "--tracking-uri")
    if not store_exists(uri):  # opening a sqlite URI creates it: nothing to resume is no new store
        raise SweepConfigError(name, "", f"expected an unfinished sweep named {name!r} in {redact(uri)}, but there is no store there (no such file); pass --tracking-uri")
    parent = resume_module.unfinished_parent(uri, name)
    if parent is None:
        from sweep.tracking.store import close_names, find_parent_run, sweep_names

        _refuse_an_ended_sweep(name, find_parent_run(uri, name))
        close = close_names(name, sweep_names(uri))
        hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close and name not in close else ""
        raise SweepConfigError(name, "", f"expected an unfinished sweep named {name!r} in {redact(uri)}, found none to resume{hint}")
    source_file = parent.data.tags.get(FILE_TAG, "")
    config = config_module.load(_recorded_sweep(uri, parent, source_file, name), {"tracking.uri": uri})
    if not quiet:
        _say_if_the_file_differs(uri, parent, source_file, stream)
    label = source_file or name
    root = storage or parent.data.tags.get(STORAGE_ROOT_TAG)
    state = _decide_resume(config, label, storage_folder(root, config.name), fresh=False)
    search = (Path(source_file).parent,) if source_file else ()
    _say_the_preflight_starts(address, quiet, stream)
    prepared = prepare_while_ray_starts(config, label, search + (Path.cwd(),), address)
    _say_what_the_data_is(prepared, quiet, stream)
    return execute(prepared, storage=root, address=address, quiet=quiet, stream=stream, resume=state, started=started)


def _refuse_an_ended_sweep(name: str, ended: Any | None) -> None:
    """``sweep resume`` of a sweep that ran to its end said only "found none to resume", as if the
    name were wrong; it says that it ended, how, and what the user can do instead."""
    if ended is None:
        return
    from sweep.tracking.store import iso_time

    status = ended.info.status.lower()
    when = iso_time(ended.info.end_time)
    file = ended.data.tags.get(FILE_TAG) or "FILE"
    raise SweepConfigError(
        name, "", f"expected an unfinished sweep, but sweep {name!r} ran to its end ({status}{' at ' + when if when else ''}): "
        f"`sweep best {name}` shows its best trial; `sweep run {file}` starts a new sweep of that name",
    )


def _say_if_the_file_differs(uri: str, parent: Any, source_file: str, stream: Any) -> None:
    """``sweep resume`` continues the sweep as it was recorded; when the sweep file on disk now
    says otherwise (an edit since, or an override ``sweep run`` was given), one line says which
    keys and how to run the file instead, so an edit is never ignored without a word."""
    if not source_file or not Path(source_file).is_file():
        return
    try:
        now = config_module.load(Path(source_file), {"tracking.uri": uri})
    except (SweepConfigError, InputError) as exc:
        print(f"note: {source_file} no longer loads ({one_line(exc)}); sweep resume continues the sweep as it was recorded", file=stream or sys.stdout)
        return
    if parent.data.tags.get(CONFIG_HASH_TAG) in (None, config_hash(now)):
        return
    changed = ", ".join(_changed_keys(uri, parent, now))
    print(f"note: {source_file} differs from the sweep as it was recorded{' (' + changed + ')' if changed else ''}: sweep resume "
          f"continues the recorded sweep; to run the file as it is now: sweep run {source_file} --fresh", file=stream or sys.stdout)


def _recorded_sweep(uri: str, parent: Any, source_file: str, name: str) -> Any:
    """The sweep file an unfinished sweep recorded (``sweep/config.json``), or, when its driver
    was killed before recording it, the file named by its ``sweep.file`` tag (the config hash
    check that follows refuses it if it changed since)."""
    recorded = _recorded_config(uri, parent)
    if recorded is not None:
        return recorded
    if source_file and Path(source_file).is_file():  # its driver was killed before recording it
        return Path(source_file)
    raise SweepConfigError(
        name, "", "expected the unfinished sweep's recorded sweep file (sweep/config.json), but its driver stopped before "
        "recording it: run `sweep run FILE` with the sweep file again, it continues the sweep",
    )


def _recorded_config(uri: str, parent: Any) -> dict[str, Any] | None:
    """The parent run's ``sweep/config.json`` (the validated sweep file), or None without one."""
    from sweep.tracking.client import client

    try:
        return json.loads(Path(client(uri).download_artifacts(parent.info.run_id, "sweep/config.json")).read_text())
    except Exception:  # noqa: BLE001 - a driver killed before recording it, or an older run
        return None


def _say_the_preflight_starts(address: str | None, quiet: bool, stream: Any) -> None:
    """One line before the preflight: loading the data, importing TensorFlow and trying the model
    (with Ray starting beside it) takes 8-25 s on 2 cores, and the command said nothing until the
    ``data:`` line or an error, so it looked hung."""
    if quiet:
        return
    from sweep.tracking.client import redact

    joining = address or os.environ.get("RAY_ADDRESS")
    ray_part = f"then joining Ray at {redact(joining)}" if joining else "while a local Ray starts"
    print(f"preflight: loading the data and trying the model on a few rows, {ray_part} ...", file=stream or sys.stdout, flush=True)


def _say_what_the_data_is(prepared: Prepared, quiet: bool, stream: Any) -> None:
    """One line at the start: what the sweep read from the data (task, outputs, inputs), and
    what it does to the inputs before ``fit()``."""
    if not quiet:
        done = _prepared_text(prepared)
        print(f"data: {prepared.dataset.info.summary()}" + (f"; inputs {done}" if done else ""), file=stream or sys.stdout)


def _prepared_text(prepared: Prepared) -> str:
    """What was done to the inputs before ``fit()``, and that the best model undoes the need."""
    preparation = prepared.dataset.preparation
    if preparation is None or not preparation.changes_anything:
        return ""
    return f"{preparation.summary()} (the best model takes them as the source gives them)"


# the URI schemes Ray Tune's storage (pyarrow.fs) opens
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "file", "mock")


def local_if_file_uri(root: str) -> str:
    """``file:///abs/path`` as the plain folder it names, so it is checked (writable, not a file)
    and locked as one before Ray starts; it failed "unexpectedly" after Ray's start and left a
    FAILED run. Raises SweepConfigError for ``file://relative/dir`` (its host part is no folder)."""
    from urllib.parse import unquote, urlsplit

    if not root.lower().startswith("file:"):
        return root
    parts = urlsplit(root)
    if parts.netloc not in ("", "localhost"):
        raise SweepConfigError("--storage", "", f"expected file:///ABSOLUTE/PATH (three slashes), got {root!r}, whose {parts.netloc!r} reads as a host")
    return unquote(parts.path) or "/"


def storage_folder(storage: str | None, name: str) -> str:
    """Where Ray keeps this sweep's checkpoints and state: ``<storage>/<name>``.

    Raises SweepConfigError (``--storage``) for a URI scheme Ray cannot open (``ftp://`` failed
    after the parent run was created) and for credentials in the URI, which would be written to
    the parent run's tags and Ray's state files: they belong in the environment
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``GOOGLE_APPLICATION_CREDENTIALS``)."""
    from urllib.parse import urlsplit, urlunsplit

    from sweep.tracking.client import redact, secret_query_names, userinfo

    root = local_if_file_uri(storage or DEFAULT_STORAGE)
    if "://" in root:
        parts = urlsplit(root)
        if parts.scheme.lower() not in STORAGE_SCHEMES:
            raise SweepConfigError("--storage", "", f"expected a local folder or a URI Ray can store checkpoints at ({', '.join(s + '://' for s in STORAGE_SCHEMES[:6])}), got {parts.scheme}://")
        in_query = secret_query_names(root)
        if userinfo(root) or parts.username or in_query:
            got = f"the query parameter(s) {', '.join(in_query)} in {redact(root)}" if in_query else f"{parts.scheme}://***@{root.rpartition('@')[2].split('/')[0]}..."
            raise SweepConfigError("--storage", "", f"expected a storage URI without credentials, got {got}: "
                                   "give them in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS)")
        return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{name}"))  # before any ?query (s3://b/p?region=x)
    return str(Path(root).expanduser().resolve() / name)


def config_hash(config: SweepConfig) -> str:
    """What must not change for a resume to make sense (the budget and the store may)."""
    import hashlib

    data = config.model_dump_json(exclude={"search": {"trials"}, "tracking": {"uri"}})
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _decide_resume(config: SweepConfig, label: str, storage_dir: str, fresh: bool) -> Any:
    from sweep.driver import recovery as resume_module
    from sweep.tracking.client import resolve_uri, store_exists

    uri = resolve_uri(config.tracking.uri)
    if not store_exists(uri):
        return None
    try:
        parent = resume_module.unfinished_parent(uri, config.name)
    except Exception:
        return None  # an unreachable store is reported when tracking starts
    if parent is None:
        return None
    _refuse_if_running(config.name, label, storage_dir)
    recorded_root = parent.data.tags.get(STORAGE_ROOT_TAG)
    if recorded_root and "://" not in recorded_root:  # its driver holds the lock of the --storage it ran with, maybe not this one:
        _refuse_if_running(config.name, label, str(Path(recorded_root) / config.name))  # it joined the live sweep, each trial twice
    if fresh:
        _close_abandoned(uri, parent)
        return None
    if parent.data.tags.get(CONFIG_HASH_TAG) != config_hash(config):
        changed = _changed_keys(uri, parent, config)
        raise SweepConfigError(
            label, changed[0].split(" ")[0] if changed else "name",
            f"expected the same sweep file as the unfinished sweep {config.name!r} (it changed{': ' + ', '.join(changed) if changed else ''}): "
            f"run `sweep resume {config.name}` to continue it, or `sweep run FILE --fresh` to start over",
        )
    state = resume_module.load_state(uri, parent, config)
    if recorded_root and "://" not in recorded_root and "://" not in storage_dir:
        _rebase_checkpoints(state, str(Path(recorded_root) / config.name), storage_dir)
    return state


def _rebase_checkpoints(state: Any, recorded_folder: str, folder: str) -> None:
    """The sweep's folder moved (``mv runs/demo elsewhere/demo``, then ``--storage elsewhere``):
    the recorded checkpoint paths name the old place, and a healthy interrupted trial failed as
    "its checkpoint is gone". Paths under the old folder that exist under the new one move there."""
    old, new = Path(recorded_folder).resolve(), Path(folder).resolve()
    if old == new:
        return
    for prior in (*state.ended, *state.interrupted):
        if not prior.checkpoint or "://" in prior.checkpoint:
            continue
        try:
            moved = new / Path(prior.checkpoint).resolve().relative_to(old)
        except ValueError:  # not under the old folder
            continue
        if moved.exists():
            prior.checkpoint = str(moved)


def _refuse_if_running(name: str, label: str, storage_dir: str) -> None:
    from sweep.driver import recovery as resume_module

    holder = resume_module.live_driver(storage_dir)
    if holder is not None:
        raise SweepConfigError(label, "name", running_now(name, holder))


def _changed_keys(uri: str, parent: Any, config: SweepConfig, shown: int = 3) -> list[str]:
    """The leaf keys where ``config`` differs from the unfinished sweep's recorded file, each with
    both values (``search.space.learning_rate.high 0.1 -> 0.05``), at most ``shown`` of them and
    then "and N more"; [] when the recorded file cannot be read (an older run without it)."""
    recorded = _recorded_config(uri, parent)
    if recorded is None:
        return []
    before, now = _leaves(recorded), _leaves(json.loads(config.model_dump_json()))
    ignored = ("search.trials", "tracking.uri")  # a budget or a store of its own may change
    keys = [key for key in sorted(set(before) | set(now)) if key not in ignored and before.get(key) != now.get(key)]
    said = [f"{key} {config_module.show_value(before.get(key))} -> {config_module.show_value(now.get(key))}" for key in keys[:shown]]
    return said + ([f"and {len(keys) - shown} more"] if len(keys) > shown else [])


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    """A sweep file's JSON as ``a.b.c`` leaf keys, into the search space too (a changed bound is
    ``search.space.learning_rate.high``, not the whole space); list items are ``key.N``."""
    if isinstance(data, dict) and data:
        items = data.items()
    elif isinstance(data, list) and data and any(isinstance(item, (dict, list)) for item in data):
        items = ((str(index), item) for index, item in enumerate(data))
    else:
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _check_storage(storage_dir: str) -> None:
    """A cloud ``--storage`` answers within a bounded wait, or the sweep stops in one line
    before Ray starts or any run is created."""
    from sweep.worker.storage import check_answers

    problem = check_answers(storage_dir, say=lambda line: print(line, file=sys.stderr, flush=True))
    if problem is not None:
        raise SweepConfigError("--storage", "", f"expected storage that answers at {storage_dir}, but: {problem}")
    if "://" not in storage_dir:  # a read-only folder was found only after Ray's start (~10 s, and Ray's noise)
        existing = Path(storage_dir).absolute()
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            why = "not a folder" if not existing.is_dir() else "read-only, or not yours"
            raise SweepConfigError("--storage", "", f"expected a writable folder, got {existing} ({why})")


def _check_tracking(uri: str, label: str, key: str = "tracking.uri") -> None:
    """An unreachable tracking server is one line in seconds, before anything else asks it;
    ``key`` is where the URI came from (``MLFLOW_TRACKING_URI`` when the file has none)."""
    from sweep.tracking.client import check_reachable, check_writable, forget_deleted_stores, redact, set_sweep_http_defaults

    set_sweep_http_defaults()  # the writer retries outages itself
    forget_deleted_stores()  # a long-lived process: a sqlite store deleted since the last sweep is opened anew
    try:
        check_reachable(uri)
        check_writable(uri)
    except ConnectionError as exc:
        raise SweepConfigError(label, key, f"expected a reachable MLflow tracking store at {redact(uri)}, but: {exc}") from None
    except PermissionError as exc:
        raise SweepConfigError(label, key, f"expected a writable MLflow store at {redact(uri)}, but {exc}") from None


def _close_abandoned(uri: str, parent: Any) -> None:
    """``--fresh``: the old unfinished runs end as KILLED rather than RUNNING forever."""
    from sweep.tracking.client import client as mlflow_client
    from sweep.tracking.store import child_runs

    client = mlflow_client(uri)
    for run in child_runs(uri, parent):
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, "KILLED")
    client.set_terminated(parent.info.run_id, "KILLED")


def _label(source: Any) -> str:
    return "<dict>" if isinstance(source, Mapping) else str(source)


def _search_paths(source: Any) -> tuple[Path, ...]:
    paths = [Path.cwd()]
    if not isinstance(source, Mapping):
        paths.insert(0, Path(source).resolve().parent)
    return tuple(paths)


# ---------------------------------------------------------------------------------------------
# start-up: the preflight while Ray starts


def prepare_while_ray_starts(config: SweepConfig, label: str, search_paths: tuple[Path, ...], address: str | None) -> Prepared:
    """:func:`prepare` in a thread while this one starts (or joins) Ray.

    Both take seconds and they hardly compete: the preflight is this process importing
    TensorFlow and building a model, while ``ray.init`` mostly waits for the GCS and raylet
    processes it spawns. Measured on 2 cores: 5.1 s one after the other, 3.8 s side by side.
    Ray starts in the main thread because ``ray.init`` from another thread lost its GCS
    connection here. A config error still wins over a Ray error, as when they ran in order,
    because the user must fix the sweep file first. Joining a cluster (an address) stays
    after the preflight: an unreachable address can keep ``ray.init`` retrying for minutes,
    and a mistake in the sweep file must not wait for that.
    """
    if address or os.environ.get("RAY_ADDRESS"):
        prepared = prepare(config, label, search_paths)
        ensure_ray(address)
        return prepared
    with signals_held_during("Ray's start and the preflight") as held:
        return _prepare_beside_ray(config, label, search_paths, address, held)


# After a held Ctrl-C, how long the preflight may still take before the sweep stops without it
# (a user module that blocks at import: the first Ctrl-C did nothing, the second exited silently).
PREFLIGHT_AFTER_SIGNAL_S = 10.0


def _prepare_beside_ray(config: SweepConfig, label: str, search_paths: tuple[Path, ...], address: str | None, held: list[int]) -> Prepared:
    import ray  # noqa: F401 - imported before the thread starts, so the two never import Ray's modules at once

    outcome: dict[str, Any] = {}

    def preflight() -> None:
        try:
            outcome["prepared"] = prepare(config, label, search_paths)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=preflight, name="sweep-preflight", daemon=True)
    thread.start()
    ray_error: BaseException | None = None
    try:
        ensure_ray(address)
        start_warm_executors(config.resources, trial_budget(config), config.search.max_concurrent, address)  # TensorFlow imports there while the preflight runs here
    except Exception as exc:
        ray_error = exc
    _join_unless_stopped(thread, held)
    if "error" in outcome:
        raise outcome["error"]
    if ray_error is not None:
        raise ray_error
    return outcome["prepared"]


def _join_unless_stopped(thread: threading.Thread, held: list[int]) -> None:
    """Wait for the preflight thread in short joins: a signal reaches its Python handler only
    while the main thread runs (a plain ``join()`` slept through a Ctrl-C that the kernel gave
    the preflight's thread). Once a held signal is older than :data:`PREFLIGHT_AFTER_SIGNAL_S`,
    stop without the preflight (the CLI then exits without tearing the interpreter down under
    the thread's import)."""
    deadline = None
    while thread.is_alive():
        thread.join(0.2)
        if held and deadline is None:
            deadline = time.monotonic() + PREFLIGHT_AFTER_SIGNAL_S
        if deadline is not None and thread.is_alive() and time.monotonic() > deadline:
            say(f"sweep: the preflight (importing and building your model) has not finished {PREFLIGHT_AFTER_SIGNAL_S:g} s after the signal; stopping without it")
            raise SweepInterrupted(None, held[0])


# ---------------------------------------------------------------------------------------------
# execute: open the sweep's records, run the Tuner, close them


@dataclass(frozen=True)
class StorageLocation:
    """Where Ray keeps a sweep's checkpoints and state, resolved once per sweep.

    ``root`` is what Tune is given and what the parent run records (``sweep.storage_root``, read
    back by ``sweep resume``): a local path made absolute, or a URI as given. ``folder`` is the
    sweep's own ``<root>/<name>``: where its lock lives, and ``SweepResult.storage``.
    """

    root: str
    folder: str

    @classmethod
    def of(cls, storage: str | None, name: str) -> StorageLocation:
        root = local_if_file_uri(storage or DEFAULT_STORAGE)
        if "://" not in root:
            root = str(Path(root).expanduser().resolve())
        return cls(root, storage_folder(root, name))


@dataclass
class OpenSweep:
    """A sweep whose parent run exists: everything :func:`_finish` must close, however it stops."""

    prepared: Prepared
    uri: str
    location: StorageLocation
    ledger: Ledger
    tracker: MLflowTracker
    fail_fast: FailFast
    view: LiveView
    started: float

    @property
    def config(self) -> SweepConfig:
        return self.prepared.config


def execute(
    prepared: Prepared,
    *,
    storage: str | None = None,
    address: str | None = None,
    quiet: bool = False,
    stream: Any = None,
    resume: ResumeState | None = None,
    trial: Callable | None = None,
    started: float | None = None,
) -> SweepResult:
    """Launch the trials and return the result; MLflow is complete when this returns.

    ``trial`` replaces the Keras trial body (see ``launch.make``); only benchmarks pass it.
    ``started``: when the command began (``run``/``resume`` pass it), so the live view's elapsed
    time and ``wall_seconds`` include Ray's start-up; default now.

    With ``resume`` (a ``recovery.ResumeState``) the earlier session's ended trials are kept,
    given to Optuna as history and not re-run; its interrupted trials run first, from their
    checkpoints, in their own MLflow runs; only the rest of the budget is new.
    """
    quiet_ray_and_optuna()
    from sweep.driver import retries
    from sweep.tracking.client import resolve_uri
    from sweep.views.progress import LiveView

    config = prepared.config
    started = started or time.time()
    uri = resolve_uri(config.tracking.uri)
    location = StorageLocation.of(storage, config.name)
    ledger = _new_ledger(config, resume)
    ledger.storage_root = location.root
    warm = _warm_start(prepared, uri)  # before the parent run exists, so a wrong warm_start name leaves no empty run behind
    _lock_storage(location, prepared.label, config.name)  # before the parent run exists: an unwritable --storage leaves no run behind
    _start_ray_and_check(prepared, address, uri, location)
    tracker = _open_tracker(prepared, ledger, uri, location, resume, started)
    try:  # from here the parent run is open: a failure before the trials start still ends it
        fail_fast = FailFast(ledger, config.failure.fail_fast)
        view = LiveView(ledger, config.name, trial_budget(config), stream=stream, quiet=quiet, rungs=LiveView.rungs_for(config), started=started)
        sweep = OpenSweep(prepared, uri, location, ledger, tracker, fail_fast, view, started)
        ended = len(resume.ended) if resume is not None else 0
        if resume is not None and not quiet:
            print(f"resuming sweep {config.name}: {ended} trial(s) ended, {resume.remaining} interrupted trial(s) continue", file=stream or sys.stdout)
        tuner = _tuner(sweep, warm, resume, trial, ended)
        retries.install_retry_policy()  # failure.max_retries: lost workers and infrastructure errors only
    except BaseException as exc:
        _end_before_the_trials(tracker, location, exc)
        if isinstance(exc, KeyboardInterrupt) and not getattr(exc, "name", None):  # its parent run exists (KILLED): resumable
            raise SweepInterrupted(config.name, getattr(exc, "signum", signal.SIGINT)) from None
        raise
    return _fit_and_finish(sweep, tuner, ended)


def _end_before_the_trials(tracker: MLflowTracker, location: StorageLocation, exc: BaseException) -> None:
    """The parent run is open but no trial started (building the Tuner failed, the object store
    refused the data, Ctrl-C): end it truthfully, never RUNNING (KILLED, and resumable, on an
    interrupt; FAILED with ``sweep.finish_error`` otherwise), stop the writer, release the lock."""
    from sweep.driver import recovery as resume_module

    with contextlib.suppress(Exception):
        tracker.flush()
    interrupted = isinstance(exc, KeyboardInterrupt)
    why = None if interrupted else f"the sweep could not start its trials: {one_line(exc)}"
    tracker.end_parent_run("KILLED" if interrupted else "FAILED", why)
    with contextlib.suppress(Exception):
        resume_module.release_lock(location.folder)


def _new_ledger(config: SweepConfig, resume: ResumeState | None) -> Ledger:
    """The driver's record of every trial, seeded with a resumed sweep's earlier trials (they
    count toward the budget and the best, and are not run again)."""
    from sweep.search import space

    ledger = Ledger(config.objective.metric, config.objective.mode, space.hyperparameters, config.max_epochs)
    if resume is not None:
        ledger.seed(resume.ended + resume.interrupted)
    return ledger


def _warm_start(prepared: Prepared, uri: str) -> WarmStart | None:
    """The earlier sweep's trials that ``search.warm_start`` names; a wrong name is a config error."""
    from sweep.search import warmstart

    config = prepared.config
    try:
        return warmstart.prepare(config.search, config.objective.metric, config.objective.mode, uri)
    except InputError as exc:
        raise SweepConfigError(prepared.label, exc.key, exc.expected) from None


def running_now(name: str, holder: dict[str, Any]) -> str:
    """The line for a sweep another driver runs now."""
    return (f"expected a sweep that is not running, but {name!r} is running now (pid {holder.get('pid')} on {holder.get('host')}): "
            f"wait for it (sweep status {name}), or give this one another --name")


def _lock_storage(location: StorageLocation, label: str, name: str) -> None:
    """One live driver per sweep: the lock in its storage folder (an unwritable one is one line)."""
    from sweep.driver import recovery as resume_module

    try:
        resume_module.take_lock(location.folder)
    except resume_module.SweepRunning as exc:
        raise SweepConfigError(label, "name", running_now(name, exc.holder)) from None
    except resume_module.StorageNotWritable as exc:
        raise SweepConfigError("--storage", "", str(exc)) from None


def _start_ray_and_check(prepared: Prepared, address: str | None, uri: str, location: StorageLocation) -> None:
    """Ray up, a trial fits on one of its nodes, the tracking store still answers. No parent run
    exists yet to record a failure here (Ctrl-C included), so the lock is released and it raises."""
    from sweep.driver import recovery as resume_module
    from sweep.tracking.client import check_reachable

    try:
        ensure_ray(address)
        own_ray = not (address or os.environ.get("RAY_ADDRESS"))
        check_resources(prepared.config, prepared.label, own_ray=own_ray)  # a trial no node can hold would wait forever
        config = prepared.config
        start_warm_executors(config.resources, trial_budget(config), config.search.max_concurrent, address)
        check_reachable(uri)
    except BaseException:
        resume_module.release_lock(location.folder)
        raise


def _open_tracker(prepared: Prepared, ledger: Ledger, uri: str, location: StorageLocation, resume: ResumeState | None, started: float) -> MLflowTracker:
    """The parent run, created (or reopened, on resume) once every check above passed, with the
    validated sweep file recorded on it. A store that fails now releases the lock and is one line
    naming ``tracking.uri``. A new parent run starts when the command did (``started``, seconds since
    the epoch), so its duration in the MLflow UI and ``sweep list`` is the "finished in" the command
    printed; it left out Ray's start and the preflight."""
    from sweep.driver import recovery as resume_module
    from sweep.tracking import tracker as tracking
    from sweep.tracking.client import redact

    config = prepared.config
    tracker = None
    try:
        tracker = tracking.MLflowTracker(
            ledger, uri, config.experiment, config.name, sweep_params(config), parent_tags(prepared, location.root), resume=resume,
            registered_model=config.tracking.registered_model or config.name,
            model_settings=(config.model, tuple(prepared.search_paths)),  # how the best model loads
            checkpoint_quota_mb=config.resources.checkpoint_quota_mb,
            preparation=prepared.dataset.preparation,  # the best model takes the source's raw inputs
            trials_requested=trial_budget(config),  # a grid's size where it is below search.trials
            start_time_ms=int(started * 1000),
        )
        if resume is None:
            tracker.log_config(_config_json(config))
    except KeyboardInterrupt as exc:  # the parent run ends KILLED (resumable), never RUNNING; the lock goes
        if tracker is not None:
            with contextlib.suppress(Exception):
                tracker.flush()
            tracker.end_parent_run("KILLED")
        resume_module.release_lock(location.folder)
        if tracker is not None or getattr(exc, "name", None):  # a parent run exists: `sweep resume NAME` continues it
            raise SweepInterrupted(config.name, getattr(exc, "signum", signal.SIGINT)) from None
        raise
    except Exception as exc:
        said = str(exc).splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if tracker is not None:  # the parent run exists: closed, not left RUNNING for ever
            with contextlib.suppress(Exception):
                tracker.end_parent_run("FAILED", f"recording the sweep file failed: {said}")
        resume_module.release_lock(location.folder)
        raise SweepConfigError(prepared.label, "tracking.uri", f"expected a reachable MLflow tracking store at {redact(uri)}, but: {said}") from None
    return tracker


def _tuner(sweep: OpenSweep, warm: WarmStart | None, resume: ResumeState | None, trial: Callable | None, ended: int) -> tune.Tuner:
    """The Tuner: the data in Ray's object store once, the trainable, the searcher and scheduler,
    and only the budget a resumed sweep has left."""
    import ray
    from ray import tune

    from sweep.search import schedulers
    from sweep.worker import launch, trainable

    config, prepared = sweep.config, sweep.prepared
    data_ref = ray.put(prepared.dataset)
    settings = trainable.TrialSettings.from_config(config)
    return tune.Tuner(
        launch.make(
            settings, data_ref, prepared.dataset.info.fingerprint, prepared.builder, trial, search_paths=prepared.search_paths,
            executors=warm_executors(),
        ),
        tune_config=tune.TuneConfig(
            metric=config.objective.metric,
            mode=config.objective.mode,
            search_alg=_searcher(config, warm, resume),
            scheduler=schedulers.build(config, history=resume.curves() if resume is not None else ()),  # the rungs the earlier session filled
            num_samples=max(1, trial_budget(config) - ended),
            max_concurrent_trials=config.search.max_concurrent,
            reuse_actors=True,
            # checkpoint folders named by the trial's number, as users see it (0002_<ray id>)
            trial_dirname_creator=sweep.ledger.numbering.dirname,
        ),
        run_config=_run_config(sweep),
    )


def _searcher(config: SweepConfig, warm: WarmStart | None, resume: ResumeState | None) -> Any:
    """Optuna's searcher, told what is known already: the warm start's trials and a resumed sweep's
    ended ones as history; a resumed sweep's interrupted trials are suggested again first."""
    from sweep.driver import recovery as resume_module
    from sweep.search import space
    from sweep.search import warmstart

    search = config.search
    if resume is not None and search.seed is not None:
        # Seeded as the first session was, the sampler would suggest that session's first points
        # again: its interrupted trials, which run again anyway (they are not in its history).
        search = search.model_copy(update={"seed": search.seed + len(resume.ended) + len(resume.interrupted)})
    searcher = space.make_searcher(
        search,
        config.objective.metric,
        config.objective.mode,
        points_to_evaluate=(warm.points or None) if warm and resume is None else None,  # re-runs happened before
        history=(warmstart.frozen_history(config.search, warm) or [])
        + (resume_module.optuna_history(config, resume) if resume is not None else [])
        or None,
    )
    if resume is None or not resume.interrupted:
        return searcher
    return resume_module.resuming_searcher(searcher, resume.resume_configs())


def _run_config(sweep: OpenSweep) -> tune.RunConfig:
    """Where Tune keeps the sweep, the sweep's callbacks (in this order), checkpoints and retries."""
    from ray import tune

    config = sweep.config
    return tune.RunConfig(
        name=config.name,
        storage_path=sweep.location.root,
        callbacks=[sweep.ledger, sweep.tracker, sweep.view],
        # Trials checkpoint only on improvement and the ledger prunes superseded ones; Ray's
        # own num_to_keep would force an experiment snapshot per checkpoint (cost grows with trials).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        stop=sweep.fail_fast,
        # A trial whose worker died restarts from its latest checkpoint (the tracker tags the retry).
        failure_config=tune.FailureConfig(max_failures=config.failure.max_retries),
        verbose=0,
    )


def _fit_and_finish(sweep: OpenSweep, tuner: tune.Tuner, ended: int) -> SweepResult:
    """Run the trials under the sweep's signal handler, then close the records however it ended.

    The status here is how the trials left it: FINISHED when ``fit()`` returned on its own,
    KILLED (resumable) when a signal, fail_fast's halt or the driver failing stopped it;
    :func:`_final_status` settles the parent run's. A signal that stopped the trials is raised
    again once the records are closed (``SweepInterrupted``: exit 130 or 143).
    """
    config = sweep.config
    status = "FAILED"
    stop = Interrupts(sweep.fail_fast, config.name)
    stop.install()  # until the sweep's records are closed (the end of _finish)
    with contextlib.suppress(Exception):  # Ray Client has no GCS address here: nothing to watch
        import ray

        if ray.is_initialized():
            stop.watch_ray(ray.get_runtime_context().gcs_address, lambda: _close_without_ray(sweep, stop))
    fitting = threading.Event()
    threading.Thread(target=_prewarm_finish, args=(sweep.ledger, fitting), name="sweep-prewarm", daemon=True).start()
    try:
        if trial_budget(config) > ended:
            tuner.fit()
        status = "FINISHED"
        if stop.signal is not None or sweep.fail_fast.halt:
            status = "KILLED"  # stopped before its end: resumable (recovery.unfinished_parent)
    except KeyboardInterrupt:  # a second Ctrl-C (or one outside Tune's loop): stop now, still resumable
        status = "KILLED"
        stop.signal = stop.signal or signal.SIGINT
        raise SweepInterrupted(config.name, stop.signal) from None
    except Exception:
        status = "KILLED"  # the driver failing: the sweep stays resumable
        if not sweep.fail_fast.halt:
            raise
        # the sweep had halted the trials (a storage fault): Tune then failed building its result
        # grid from the same storage (a truncated error file: "pickle data was truncated"); the
        # halt is what happened, said once by _finish, not a second "failed unexpectedly" line
        log.debug("Tune's end of fit failed after the sweep halted", exc_info=True)
    except BaseException:
        status = "KILLED"  # the driver failing: the sweep stays resumable
        raise
    finally:
        fitting.set()
        free_warm_executors()  # a trial a killed trainable left running there ends now
        result = _finish(sweep, status, stop)
    if stop.signal is not None and status == "KILLED":
        raise SweepInterrupted(config.name, stop.signal)
    # A signal after the trials ran to their end (while the records closed) stopped nothing: the
    # sweep ended, its parent run FINISHED. Not an interrupt (exit 143 would make the SLURM script
    # requeue, and `sweep run` of a finished sweep's file starts a new sweep).
    return result


def _close_without_ray(sweep: OpenSweep, stop: Interrupts) -> None:
    """The signal that is stopping the sweep also stopped its local Ray (a SIGTERM to the whole
    process group): close the records from here, say how to continue, and end the process with
    the signal's exit code, as the driver would after Tune returned. The driver's own thread is
    stuck in a call into the dead Ray, which aborts the process after 60 s."""
    if not stop.claim_closing():
        return
    say("sweep: Ray's processes stopped with the same signal; closing the sweep's records without them")
    with contextlib.suppress(Exception):
        _finish(sweep, "KILLED", stop, claimed=True)
    signum = stop.signal or signal.SIGTERM
    with contextlib.suppress(Exception):
        name = sweep.config.name
        print(f"interrupted: sweep {name} stopped; its ended trials are in MLflow; continue it with `sweep resume {name}`", file=sys.stderr, flush=True)
        sys.stdout.flush()
    os._exit(130 if signum == signal.SIGINT else 128 + int(signum))  # as a shell reports that signal


def _finish(sweep: OpenSweep, status: str, stop: Interrupts, claimed: bool = False) -> SweepResult:
    """The end of every sweep: open trials closed, the result built, the parent run ended, the
    lock released, the report logged, then the signal handlers restored.

    The end of a sweep is never a crash: each step below that fails is reported in one line
    (stderr, SweepResult.finish_error, the parent run's sweep.finish_error tag), the trials'
    records stay, and the parent run still ends (FAILED, never left RUNNING).
    """
    from sweep.driver import recovery as resume_module

    if not claimed and not stop.claim_closing():  # the Ray watch is closing them, then ends the process
        time.sleep(60)
        raise SweepInterrupted(sweep.config.name, stop.signal or signal.SIGTERM)
    _close_open_trials(sweep, stop)
    with contextlib.suppress(Exception):
        sweep.view.stop()
    result = _sweep_result(sweep)
    status = _final_status(sweep, result, status, stop)
    problems = sweep.tracker.flush(  # every trial recorded; the ledger's outcomes know their runs
        status, timeout=INTERRUPTED_TRACKING_WAIT_S if status == "KILLED" else None, give_up=stop.leave_tracking,
        log_path=str(Path(sweep.location.folder) / "mlflow-writer.log") if _is_local(sweep.location.folder) else None,
    )
    report_problems: list[str] = []
    report = _report_in_background(sweep, report_problems, status) if status != "KILLED" and not sweep.tracker.writer_left else None
    problems += _end_parent_run(sweep, result, status)
    with _finish_step(problems, "reading the trials back"):
        result.trials = sweep.ledger.frame()  # now with MLflow run ids
    with _finish_step(problems, "releasing the sweep's lock"):
        resume_module.release_lock(sweep.location.folder)
    if report is not None:
        _wait_for_report(report, report_problems, sweep.config.name)
        problems += report_problems
    _say_finish_problems(sweep, result, problems)
    result.wall_seconds = time.time() - sweep.started  # the whole command, its end included
    with contextlib.suppress(Exception):  # remember which file the store's engine has open (a later rm is noticed)
        from sweep.tracking.client import forget_deleted_stores

        forget_deleted_stores()
    stop.restore()
    return result


# An interrupted sweep's end waits this long for an unreachable MLflow to take its last writes;
# then the writer process retries them alone (writer.ORPHAN_DRAIN_S) and the command exits.
INTERRUPTED_TRACKING_WAIT_S = 20.0


def _is_local(folder: Any) -> bool:
    """Whether the sweep's folder is a path on this machine (not an s3:// or gs:// URI)."""
    return "://" not in str(folder) and Path(str(folder)).is_dir()


def _close_open_trials(sweep: OpenSweep, stop: Interrupts) -> None:
    """Every trial still open ends now: its run KILLED and tagged interrupted (never RUNNING)."""
    fail_fast = sweep.fail_fast
    why = stop.reason() or fail_fast.halt or ("the sweep stopped (failure.fail_fast)" if fail_fast.tripped() else "the sweep's driver stopped")
    with contextlib.suppress(Exception):
        sweep.tracker.close_interrupted(sweep.ledger.interrupt_open_trials(), why)


def _sweep_result(sweep: OpenSweep) -> SweepResult:
    """What ``run``/``resume`` return, from the ledger as the trials left it."""
    config = sweep.config
    return SweepResult(
        name=config.name,
        metric=config.objective.metric,
        mode=config.objective.mode,
        best=sweep.ledger.best_trial(),
        trials=sweep.ledger.frame(),
        tracking_uri=sweep.uri,
        experiment=config.experiment,
        parent_run_id=sweep.tracker.parent_run_id,
        storage=sweep.location.folder,
        wall_seconds=time.time() - sweep.started,
    )


def _final_status(sweep: OpenSweep, result: SweepResult, status: str, stop: Interrupts) -> str:
    """The parent run's status, and why the sweep stopped early (``result.stopped_because``, said
    once on stderr): a sweep with no best trial, or one fail_fast stopped, FAILED."""
    fail_fast = sweep.fail_fast
    if fail_fast.halt and stop.signal is None:
        result.stopped_because = f"sweep stopped: {fail_fast.halt}; fix it, then continue with `sweep resume {sweep.config.name}`"
        print(result.stopped_because, file=sys.stderr)
    if result.best is None and status == "FINISHED":
        status = "FAILED"
    result.stopped_because = _fail_fast_message(fail_fast, sweep.ledger) or result.stopped_because
    if status == "FINISHED" and not result.stopped_because:
        result.stopped_because = _every_trial_failed_message(sweep.ledger)
    if result.stopped_because and not fail_fast.halt:
        status = "FAILED"
        print(result.stopped_because, file=sys.stderr)
    return status


def _end_parent_run(sweep: OpenSweep, result: SweepResult, status: str) -> list[str]:
    """The tracker's end of the sweep (best model, registry, the parent run's status); never
    raises, returns the steps that failed."""
    # An interrupted sweep has no final best yet: the parent run gets the counts only (the best
    # trial's params, once logged, could not change when the resumed sweep finds a better one).
    final = result if status != "KILLED" else dataclasses.replace(result, best=None)
    return list(sweep.tracker.finish(final, status, input_example=sweep.prepared.dataset.example()))


# The report is built while the parent run gets its best model (both take about a second at the
# end of a sweep; the model's save and MLflow's I/O leave the GIL to the plots much of the time).
# Past this many seconds the sweep returns without it and says so: its trials are all recorded,
# and `sweep report NAME` builds it again from MLflow.
REPORT_WAIT_S = 300.0


def _report_in_background(sweep: OpenSweep, problems: list[str], status: str) -> threading.Thread:
    """Start :func:`_log_report` on a thread; its failures land in ``problems``; ``status`` is the
    one the parent run ends with, for the report's header."""
    thread = threading.Thread(target=_log_report, args=(sweep, problems, status), name="sweep-report", daemon=True)
    thread.start()
    return thread


def _wait_for_report(thread: threading.Thread, problems: list[str], name: str) -> None:
    """Wait (bounded by ``REPORT_WAIT_S``) for the report started by :func:`_report_in_background`."""
    thread.join(REPORT_WAIT_S)
    if thread.is_alive():
        problems.append(f"the report: not done after {REPORT_WAIT_S:g} s; `sweep report {name}` builds it from MLflow")


def _prewarm_finish(ledger: Ledger, stopped: threading.Event) -> None:
    """Once the first epoch is in (start-up is over, the driver mostly waits), import what the
    end of the sweep needs (the report's plotting, MLflow's Keras flavor), so the end does not."""
    from sweep.tracking.tracker import MLflowTracker
    from sweep.views import report

    while not stopped.wait(0.5):
        if any(outcome.epochs for outcome in list(ledger.outcomes.values())):
            report.prewarm()
            MLflowTracker.prewarm()
            return


def _log_report(sweep: OpenSweep, problems: list[str], status: str | None = None) -> None:
    """The sweep's report (trials.csv, plots) on the parent run; a failure is one more problem."""
    from sweep.views.report import log_to_parent_run

    ledger = sweep.ledger
    with _finish_step(problems, "the report"):
        if log_to_parent_run(sweep.uri, sweep.config.name, sweep.tracker.parent_run_id, ledger.outcomes.values(), status) is None and ledger.outcomes:
            raise RuntimeError("it could not be made (see the warning above)")


def _say_finish_problems(sweep: OpenSweep, result: SweepResult, problems: list[str]) -> None:
    """Steps of the end that failed: one line on stderr, ``result.finish_error`` and the parent run's tag."""
    if not problems:
        return
    result.finish_error = "; ".join(problems)
    sweep.tracker.record_finish_error(result.finish_error)  # the parent run's tag, if an earlier step did not set it
    print(f"error: sweep {sweep.config.name} ran, but finishing it failed: {result.finish_error}", file=sys.stderr)


@contextlib.contextmanager
def _finish_step(problems: list[str], what: str) -> Iterator[None]:
    """One step of the end of a sweep: a failure becomes one line in ``problems``, not a traceback."""
    try:
        yield
    except Exception as exc:
        problems.append(f"{what}: {one_line(exc)}")


def _config_json(config: SweepConfig) -> str:
    """The validated sweep file for ``sweep/config.json``, with no password in the tracking URI."""
    from sweep.tracking.client import redact

    data = config.model_dump(mode="json")
    if data["tracking"].get("uri"):
        data["tracking"]["uri"] = redact(data["tracking"]["uri"])
    import json

    return json.dumps(data, indent=2)


def _every_trial_failed_message(ledger: Any) -> str | None:
    """A sweep whose every trial failed, some after a few epochs, ended FINISHED with exit 0
    and its best epoch's checkpoint registered: the user's code fails every run, which the
    command must say (exit 1, the parent run FAILED). Its records, best checkpoint included,
    are kept."""
    outcomes = list(ledger.outcomes.values())
    if not outcomes or any(outcome.status != TrialStatus.FAILED for outcome in outcomes):
        return None
    first = min(outcomes, key=lambda outcome: outcome.number)
    reason = (first.reason or "see the trial's run in MLflow").strip().splitlines()[0][:300]
    most = max(outcome.epochs for outcome in outcomes)
    return f"sweep failed: every trial failed (each after at most {most} epoch(s)); trial {first.number:04d}: {reason}"


def _fail_fast_message(fail_fast: Any, ledger: Any) -> str | None:
    """One message for a sweep stopped by ``failure.fail_fast``: the error once, with its trial's traceback tail."""
    error = fail_fast.tripped()
    if error is None:
        return None
    failed = ledger.count(TrialStatus.FAILED)
    tail = ledger.first_error or error
    return (
        f"sweep stopped: the first {failed} trials all failed with the same error before finishing an epoch "
        f"(failure.fail_fast: {fail_fast.limit}):\n  {error}\n"
        f"the first failed trial's traceback ends with:\n" + "\n".join(f"    {line}" for line in tail.splitlines())
    )


def _tasks(info: Any) -> str:
    """The task, or each output's task for several outputs (``{'kind': 'classification', ...}``)."""
    from sweep.inputs.structures import is_nested, map_leaves

    if not is_nested(info.target_layout):
        return info.task
    return str(map_leaves(lambda layout: "regression" if layout == "values" else "classification", info.target_layout))


def parent_tags(prepared: Prepared, storage_root: str) -> dict[str, str]:
    """What ``sweep resume`` needs to find again: the file, the storage, the config's identity."""
    label = prepared.label
    info = prepared.dataset.info
    return {
        DATA_TAG: info.summary(),  # what the sweep read from the data, as printed at the start
        DATA_TASK_TAG: _tasks(info),
        **({DATA_LABELS_TAG: json.dumps(list(info.labels))} if info.labels else {}),  # class index -> original label
        DATA_INPUTS_TAG: str(info.input_shapes if info.input_shapes is not None else info.input_shape),
        DATA_OUTPUTS_TAG: str(info.output_sizes if info.output_sizes is not None else info.num_outputs),
        **({DATA_PREPARED_TAG: _prepared_text(prepared)} if _prepared_text(prepared) else {}),
        FILE_TAG: str(Path(label).resolve()) if label != "<dict>" else "",
        STORAGE_ROOT_TAG: storage_root,
        CONFIG_HASH_TAG: config_hash(prepared.config),
    }


def trial_budget(config: SweepConfig) -> int:
    """``search.trials``, capped by the grid's size: a grid never repeats a configuration."""
    from sweep.search import space

    if config.search.sampler == "grid":
        return min(config.search.trials, space.grid_size(config.search))
    return config.search.trials


def sweep_params(config: SweepConfig) -> dict[str, Any]:
    """The sweep's settings as flat ``config.*`` params of the parent run (space excluded)."""
    from sweep.tracking.tracker import flat_config

    flat = flat_config(config.model_dump(mode="json"))
    if flat.get("config.tracking.uri"):  # never a password in a param
        from sweep.tracking.client import redact

        flat["config.tracking.uri"] = redact(flat["config.tracking.uri"])
    return flat
