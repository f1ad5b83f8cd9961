"""The ``sweep`` command: parse arguments, call the Python API, print, exit with a clear code.

Exit codes: 0 done, 1 the sweep ran but no trial produced a result (or finishing it failed:
logging the best model, registering it, the report), 2 bad input (one line on
stderr naming the file and key), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
READ_ONLY_COMMANDS = frozenset({"status", "best", "report", "list", "trials"})


def entry() -> None:
    """The ``sweep`` console script: :func:`main` in a process of its own.

    ``status``, ``best`` and ``report`` only read MLflow. Tearing the interpreter down after
    them (the modules of MLflow, SQLAlchemy, pandas and pyarrow) took 0.7 s of a 2.2 s
    ``sweep status``, so they flush their output and end the process without it; ``run`` and
    ``resume`` too, once their records are closed and Ray is stopped (:func:`_stop_own_ray`).
    Every other command exits normally.
    """
    code = main()
    command = _command(sys.argv[1:])
    if command in READ_ONLY_COMMANDS or command in ("run", "resume"):
        import logging

        logging.shutdown()
        with contextlib.suppress(Exception):  # a reader gone, a closed terminal: nothing left to say
            sys.stdout.flush()
            sys.stderr.flush()
        if command in ("run", "resume"):
            _stop_own_ray()
        os._exit(code)
    sys.exit(code)


def _stop_own_ray() -> None:
    """``sweep run``/``resume`` end here once the sweep's records are closed (MLflow's writer has
    exited, the report is logged, the output printed): stop Ray, which is all that is left, and
    end the process without tearing the interpreter down. The prompt came back 4-5 s after the
    summary on 2 cores: 1.4 s of ``ray.shutdown()`` (:func:`sweep.driver.cluster.stop_ray_for_exit`
    now takes 0.1 s), and ~2 s unloading TensorFlow, MLflow and pandas, which nothing needs."""
    with contextlib.suppress(Exception):
        from sweep.driver.cluster import stop_ray_for_exit

        _silence_output()  # the driver's Ray threads print the raylet's death ("Termination is unexpected")
        stop_ray_for_exit()


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null: everything the command had to say is flushed."""
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(null, fd)
    os.close(null)


def _command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _positive(kind: type, expected: str) -> Callable[[str], Any]:
    """An argparse type: ``kind`` above 0, else argparse's one usage line saying what was expected
    (``sweep up --num-cpus -2`` failed "unexpectedly" inside Ray; ``--idle-timeout -1`` ended the
    session a second after it said it was up)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    _quiet_mlflow_logs()
    from sweep.errors import SweepConfigError

    if args.command in ("best", "status", "report", "export", "list", "trials", "ui"):
        try:
            refused = _store_refused(args)
        except SweepConfigError as exc:  # a tracking URI no parser reads as meant
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if refused is not None:
            return refused
    if args.command in ("run", "resume"):  # a warm session (`sweep up`) runs it, if one is up
        from sweep.driver import daemon

        if not isinstance(sys.stdout, _OutputThatOutlivesItsReader):
            sys.stdout = _OutputThatOutlivesItsReader(sys.stdout)
        forwarded = daemon.forward(args.command, list(sys.argv[1:] if argv is None else argv), args.address)
        if forwarded is not None:
            return forwarded
    try:
        return args.handler(args)
    except SweepConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        if args.command not in ("run", "resume"):  # nothing to continue: a read-only command, the UI
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        return _interrupted(exc, getattr(args, "name", None) if args.command == "resume" else None)
    except BrokenPipeError:  # `sweep best NAME | head -2`: the reader has what it wanted
        with contextlib.suppress(Exception):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit stays quiet
        return EXIT_OK
    except Exception as exc:  # a bug (ours, Ray's, MLflow's): one line, the traceback kept in a file
        return _unexpected(exc, args)


class _OutputThatOutlivesItsReader(io.TextIOBase):
    """``sweep run`` stdout whose reader may go away (``sweep run FILE | head -1``, a closed
    ``less``): the sweep goes on, its output is dropped, and stderr says so once. Before, the
    first line written after ``head`` exited raised BrokenPipeError in the driver: the sweep
    stopped before its first trial and the command exited 0, as if it had run. Its records are
    in MLflow either way (``sweep status NAME``)."""

    def __init__(self, stream: Any):
        self._stream, self._gone = stream, False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._let_go()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._let_go()

    def _let_go(self) -> None:
        self._gone = True
        with contextlib.suppress(Exception):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())  # what is still buffered, and Python's flush at exit, go nowhere
            os.close(null)
        with contextlib.suppress(Exception):
            print("sweep: the reader of this command's output went away; the sweep goes on (its output dropped; `sweep status` shows it)",
                  file=sys.stderr, flush=True)

    def isatty(self) -> bool:
        return not self._gone and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def _unexpected(exc: Exception, args: argparse.Namespace) -> int:
    """An error no check foresaw (e.g. Ray Tune ending ``fit()`` with a TuneError): one line
    with its last line and where the whole traceback was written, not a screen of Ray's frames.
    The sweep's records were closed before it got here (the parent run is KILLED, resumable)."""
    import tempfile
    import traceback

    from sweep.tracking.client import redact_text  # a URI's password in an error from MLflow or Ray never reaches the file

    text = redact_text("".join(traceback.format_exception(exc)))
    lines = [line.strip() for line in redact_text(str(exc)).splitlines() if line.strip()] or [type(exc).__name__]
    last = lines[-1] if ":" in lines[-1] else f"{type(exc).__name__}: {lines[-1]}"
    where = "(the traceback could not be written)"
    with contextlib.suppress(OSError):
        handle, path = tempfile.mkstemp(prefix="sweep-error-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        where = f"the full traceback is in {path}"
    hint = "; if the sweep had started, its records are closed and the same command continues it" if args.command in ("run", "resume") else ""
    print(f"error: sweep {args.command} failed unexpectedly: {last[:400]}{hint}; {where}", file=sys.stderr)
    return EXIT_FAILED


EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended


def _interrupted(exc: BaseException, name: str | None) -> int:
    """One line on how to continue; exit 130 after SIGINT, 143 after SIGTERM, 129 after SIGHUP
    (128 + the signal, as a shell reports a process that signal ended)."""
    import signal

    from sweep.driver.quiet import print_to_stderr  # TensorFlow's import in the preflight's thread may hold fd 2 at /dev/null

    name = getattr(exc, "name", None) or name
    signum = getattr(exc, "signum", signal.SIGINT)
    _ignore_signals()  # the records are closed: a further signal must not break Ray's shutdown at exit with a traceback
    if getattr(exc, "name", None):
        print_to_stderr(f"interrupted: sweep {name} stopped; its ended trials are in MLflow; continue it with `sweep resume {name}`")
    else:
        # no parent run of this sweep yet: `sweep resume` would find none (`sweep resume NAME` itself: the earlier one's are there)
        print_to_stderr("interrupted before any trial started; " + (f"continue it with `sweep resume {name}`" if name else "nothing was recorded: run the same command again"))
    return EXIT_INTERRUPTED if signum == signal.SIGINT else 128 + int(signum)


def _ignore_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP ignored from now on: the sweep's records are closed, a signal stops
    nothing. After a sweep ended, one must not turn its exit code into 130/143 either (the SLURM
    script requeues a 143, and `sweep run` of a finished sweep's file starts a new sweep)."""
    import signal
    import threading

    from sweep.driver.interrupts import stop_signals

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in stop_signals():
        signal.signal(sig, signal.SIG_IGN)


def _terminate_as_interrupt() -> None:
    """SIGTERM (SLURM time limit, ``ray job stop``, Kubernetes) and SIGHUP (the terminal closed)
    end ``run``/``resume`` the way Ctrl-C does: records closed, resumable, exit 143 / 129.
    (While trials run, the driver's handler stops them first; this one covers the steps before
    and after.)"""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    from sweep.driver.interrupts import SweepInterrupted, detach_from_closed_terminal, stop_signals

    def handler(signum: int, frame: Any) -> None:
        if signum != signal.SIGTERM:  # SIGHUP: a closed terminal is let go of here, so the closing lines cannot fail on it
            detach_from_closed_terminal()
        raise SweepInterrupted(None, signum)

    for sig in stop_signals():
        if sig != signal.SIGINT:
            signal.signal(sig, handler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep", description="Keras fit() hyperparameter sweeps on Ray Tune, Optuna and MLflow.")
    parser.add_argument("--version", action="version", version=f"sweep {_version()}")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the sweep described by a YAML file")
    run.add_argument("file")
    run.add_argument("--trials", type=int, help="override search.trials")
    run.add_argument("--name", help="override the sweep name")
    run.add_argument("--storage", help="folder or URI for checkpoints and Ray state (default ./sweep_runs)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    run.add_argument("--address", help="Ray cluster address: auto, HOST:PORT or ray://HOST:PORT (default: start a local Ray)")
    run.add_argument("--quiet", action="store_true", help="print nothing but errors (the exit code says how it ended)")
    run.add_argument("--json", action="store_true", help="print the best trial as JSON at the end (as sweep best --json)")
    run.add_argument("--fresh", action="store_true", help="start over even if an unfinished sweep of this name exists (it is closed as KILLED)")
    run.add_argument("--epochs", type=int, help="override fit.epochs")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any dotted key of the sweep file (VALUE is read as YAML: 64, 0.1, true, [32, 64]); repeatable")
    run.set_defaults(handler=_cmd_run)

    resume = sub.add_parser("resume", help="continue an unfinished sweep (interrupted, stopped by a storage fault, or whose driver died)")
    resume.add_argument("name", help="the sweep's name (sweep list shows them)")
    resume.add_argument("--tracking-uri", help="MLflow tracking URI the sweep was recorded in (default sqlite:///mlflow.db)")
    resume.add_argument("--storage", help="folder or URI of its checkpoints (default: the storage the sweep was started with)")
    resume.add_argument("--address", help="Ray cluster address: auto, HOST:PORT or ray://HOST:PORT (default: a local Ray)")
    resume.add_argument("--quiet", action="store_true", help="print nothing but errors")
    resume.add_argument("--json", action="store_true", help="print the best trial as JSON at the end")
    resume.set_defaults(handler=_cmd_resume)

    best = sub.add_parser("best", help="show the best trial of a sweep")
    best.add_argument("name")
    best.add_argument("--tracking-uri")
    best.add_argument("--json", action="store_true", help="the best trial as JSON (params keep their types)")
    best.add_argument("--quiet", action="store_true", help="print nothing; the exit code says whether there is a best trial")
    best.set_defaults(handler=_cmd_best)

    status = sub.add_parser("status", help="show how many trials ran, stopped early or failed")
    status.add_argument("name")
    status.add_argument("--tracking-uri")
    status.add_argument("--json", action="store_true")
    status.add_argument("--quiet", action="store_true", help="print nothing")

    listing = sub.add_parser("list", help="list the sweeps in the store, newest first")
    listing.add_argument("--tracking-uri")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_cmd_list)

    trials = sub.add_parser("trials", help="a sweep's trials, one row each (as sweep.trials(NAME) returns them)")
    trials.add_argument("name")
    trials.add_argument("--tracking-uri")
    trials.add_argument("--csv", action="store_true", help="CSV on stdout (sweep.trials()'s columns, then duration_s in seconds)")
    trials.set_defaults(handler=_cmd_trials)
    status.set_defaults(handler=_cmd_status)

    report = sub.add_parser("report", help="write an HTML report with plots (static, one file) and the PNGs")
    report.add_argument("name")
    report.add_argument("--tracking-uri")
    report.add_argument("--out", help="folder for report.html and the PNGs (default ./sweep_reports/NAME)")
    report.add_argument("--quiet", action="store_true", help="print nothing but errors")
    report.add_argument("--rebuild", action="store_true",
                        help="read every trial run again (default for an ended sweep: copy the report it logged)")
    report.set_defaults(handler=_cmd_report)

    export = sub.add_parser("export", help="write the best model of a sweep as DIR/model.keras")
    export.add_argument("name")
    export.add_argument("dir")
    export.add_argument("--tracking-uri")
    export.add_argument("--saved-model", action="store_true", help="also write a TensorFlow SavedModel to DIR/saved_model")
    export.set_defaults(handler=_cmd_export)

    up = sub.add_parser("up", help="keep a warm session up: Ray, TensorFlow, MLflow and trial workers loaded for the next sweep run / resume")
    up.add_argument("--num-cpus", type=_positive(int, "a whole number of CPUs >= 1"), help="CPUs of its local Ray (default: all of this machine's)")
    up.add_argument("--idle-timeout", type=_positive(float, "a number of minutes > 0"), metavar="MIN", help="end it after this many minutes without a sweep (default: never)")
    up.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the session process itself
    up.set_defaults(handler=_cmd_up)

    down = sub.add_parser("down", help="end the warm session (a sweep it runs stops, resumable)")
    down.set_defaults(handler=_cmd_down)

    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the sweep store (NAME: print that sweep's URL)")
    ui.add_argument("name", nargs="?", help="a sweep: print the URL of its experiment and of its best trial's run")
    ui.add_argument("--tracking-uri")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=_cmd_ui)
    return parser


def _cmd_up(args: argparse.Namespace) -> int:
    """``sweep up``: start the warm session (:mod:`sweep.driver.daemon`), or say it is up."""
    from sweep.driver import daemon

    if args.serve:
        return daemon.serve(main, args.num_cpus, args.idle_timeout)
    said = daemon.up_status()
    if said is not None:
        print(f"already up: {said}")
        return EXIT_OK
    print("starting a warm session: Ray, TensorFlow and the trial workers (seconds)...", file=sys.stderr)
    try:
        said = daemon.start(args.num_cpus, args.idle_timeout)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{said}\n`sweep run` and `sweep resume` run there now (--address or SWEEP_SESSION=0: on their own); `sweep down` ends it")
    return EXIT_OK


def _cmd_down(args: argparse.Namespace) -> int:
    """``sweep down``: end the warm session, if one is up."""
    from sweep.driver import daemon

    said = daemon.stop()
    print(said or "no warm session is up")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    _terminate_as_interrupt()
    import sweep

    overrides = _set_overrides(args)
    if not (args.quiet or args.json):
        _say_if_new_sweep(args, overrides)
    result = sweep.run(
        args.file,
        storage=args.storage,
        address=args.address,
        quiet=args.quiet or args.json,
        name=args.name,
        trials=args.trials,
        tracking_uri=args.tracking_uri,
        fresh=args.fresh,
        **overrides,
    )
    _ignore_signals()  # the sweep ended: its exit code is its own
    return _finish_run(args, result)


def _cmd_resume(args: argparse.Namespace) -> int:
    _terminate_as_interrupt()
    from sweep.driver.runner import resume

    result = resume(
        args.name,
        tracking_uri=args.tracking_uri,
        storage=args.storage,
        address=args.address,
        quiet=args.quiet or args.json,
    )
    _ignore_signals()  # the sweep ended: its exit code is its own
    return _finish_run(args, result)


def _finish_run(args: argparse.Namespace, result: Any) -> int:
    if args.json:
        from sweep.tracking import store

        print(json.dumps(store.best_summary(result.tracking_uri, result.name), default=str))
    elif not args.quiet:  # --quiet prints nothing (the README's word): the exit code says how it ended, sweep best what it found
        _print_result(result)
    if getattr(result, "finish_error", None):  # already said in one line on stderr by the runner
        return EXIT_FAILED
    if getattr(result, "stopped_because", None):  # fail-fast, or a storage fault (resumable); said on stderr
        return EXIT_FAILED
    return EXIT_OK if result.best is not None else EXIT_FAILED


def _print_result(result: Any) -> None:
    from sweep.views.progress import format_duration, format_params, format_value

    console = Console(highlight=False, soft_wrap=True)
    counts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(result.counts().items()))
    # a sweep that stopped (fail-fast, a storage fault: resumable) did not finish: "finished" contradicted "sweep stopped"
    ended = "stopped after" if getattr(result, "stopped_because", None) else "finished in"
    console.print(f"[bold]sweep {result.name}[/] {ended} {format_duration(result.wall_seconds)}: {counts or 'no trials'}")
    best = result.best
    if best is None:
        console.print("[red]no trial produced a result[/]; see the failed trials' reasons in MLflow")
    elif set(result.counts()) == {"failed"}:  # every trial failed after some epochs: no best trial, the best epoch any reached
        console.print(f"[red]every trial failed[/]; the best epoch any reached: {result.metric} = {format_value(best.value)} "
                      f"(trial {_trial_name(best.number, best.trial_id, best.resumed_as)}, epoch {best.epoch}, failed later)")
        console.print(f"  params: {format_params(best.params)}")
        console.print(f"  checkpoint: {best.checkpoint}")
    else:
        console.print(f"[bold green]best[/] {result.metric} = {format_value(best.value)} (trial {_trial_name(best.number, best.trial_id, best.resumed_as)}, epoch {best.epoch} of {best.epochs})")
        console.print(f"  params: {format_params(best.params)}")
        console.print(f"  checkpoint: {best.checkpoint}")
    console.print(f"MLflow: experiment '{result.experiment}', parent run {result.parent_run_id}")
    from sweep.tracking.client import redact

    console.print(f"  look: sweep ui --tracking-uri {redact(result.tracking_uri)}   (then open http://127.0.0.1:5000)")


def _summary(args: argparse.Namespace, read: Callable[[str, str], dict | None]) -> dict | None:
    """What ``read(uri, name)`` says of the sweep ``args.name``, or None after saying it does not exist."""
    from sweep.tracking.client import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    summary = read(uri, args.name)
    if summary is None:
        _no_such_sweep(uri, args.name)
    return summary


def _no_such_sweep(uri: str, name: str) -> None:
    """The error for an unknown sweep name: the close names, then the sweeps there are."""
    from sweep.tracking import store
    from sweep.tracking.client import redact

    names = store.sweep_names(uri)
    close = store.close_names(name, names)
    hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    print(f"error: no sweep named {name!r} in {redact(uri)}{hint}", file=sys.stderr)
    if names:
        shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
        print(f"  sweeps there: {shown} (sweep list shows them)", file=sys.stderr)
    else:
        print("  there are no sweeps there yet", file=sys.stderr)


def _lookup_error(args: argparse.Namespace, exc: LookupError) -> None:
    """A command's LookupError on stderr; an unknown sweep name with its close names and the sweeps."""
    from sweep.tracking.client import resolve_uri

    if str(exc).startswith("no sweep named"):
        _no_such_sweep(resolve_uri(args.tracking_uri), args.name)
    else:
        print(f"error: {exc}", file=sys.stderr)


def _store_refused(args: argparse.Namespace) -> int | None:
    """The exit code when a read-only command cannot read its store, said in one line; None
    when it can. Read-only commands never create a store: a sqlite file that does not exist is
    an error (``list``: an empty list, exit 0), not a new empty database; a tracking server that
    does not answer is an error in seconds."""
    from sweep.tracking.client import redact, resolve_uri, store_exists

    from sweep.tracking.client import check_reachable

    uri = resolve_uri(getattr(args, "tracking_uri", None))
    try:
        check_reachable(uri)  # a dead server: one line in seconds, not MLflow's minutes of retries
    except ConnectionError as exc:
        print(f"error: no reachable MLflow tracking store at {redact(uri)}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if store_exists(uri):
        return None
    if args.command == "list":
        if getattr(args, "json", False):
            print("[]")
        else:
            print(f"no sweeps: {redact(uri)} does not exist")
        return EXIT_OK
    print(f"error: no sweep store at {redact(uri)} (no such file); pass --tracking-uri or set MLFLOW_TRACKING_URI", file=sys.stderr)
    return EXIT_BAD_INPUT


def _quiet_mlflow_logs() -> None:
    """MLflow's and its migrations' INFO lines are for MLflow's users, not the sweep's."""
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("sweep")
    except Exception:
        return "unknown"


def _set_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set key=value`` (values read as YAML) and ``--epochs``, as ``sweep.run``'s dotted overrides."""
    import yaml

    from sweep.errors import SweepConfigError
    from sweep.spec.config import RESET

    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepConfigError("--set", item, "expected KEY=VALUE, e.g. --set fit.batch_size=64")
        if key in _OPTIONS_NOT_KEYS:
            raise SweepConfigError("--set", item, f"expected a key of the sweep file, got {key!r}, which is the option --{key.replace('_', '-')}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
            overrides[key] = RESET if value is None else value  # KEY=null (or KEY=): the key's default, as if the file lacked it
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise SweepConfigError("--set", item, f"expected a YAML value after '=', got one YAML cannot read ({problem}{where}): check its brackets and quotes") from None
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if overrides.get("name") is RESET:  # a sweep has no default name: it is how every command finds it
        raise SweepConfigError("--set", "name", "expected a sweep name (name has no default), got none")
    if "name" in overrides:  # the file's name key, as --name gives it (both at once: --name wins)
        name = overrides.pop("name")
        if hasattr(args, "name"):
            args.name = args.name or name
    return overrides


# sweep.run's own keywords that are options of the command, not keys of the sweep file
_OPTIONS_NOT_KEYS = ("storage", "address", "quiet", "fresh", "stream")


def _say_if_new_sweep(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """Running the file of a sweep that already finished starts a new sweep of that name: say so,
    and how to reach the earlier one. Never fails the run (the run reports bad input itself)."""
    try:
        from sweep.spec import config as config_module
        from sweep.tracking import store
        from sweep.tracking.client import check_reachable, resolve_uri, store_exists

        given = {**overrides, **({"name": args.name} if args.name else {}), **({"trials": args.trials} if getattr(args, "trials", None) is not None else {})}
        config = config_module.load(args.file, given, quiet=True)  # bad input: not said here, the run says it in one line
        uri = resolve_uri(args.tracking_uri or config.tracking.uri)
        if not store_exists(uri):
            return
        check_reachable(uri)  # else MLflow retries for minutes; the run itself then says it in one line
        parent = store.find_parent_run(uri, config.name)
        if parent is None or parent.info.status != "FINISHED":
            return
        print(
            f"sweep {config.name} already finished ({store.iso_time(parent.info.end_time or parent.info.start_time)}): this starts a new sweep of that name; "
            f"`sweep best/status/report {config.name}` will show the new one, the earlier one stays in MLflow as parent run "
            f"{parent.info.run_id} (use --name to keep both addressable)",
            file=sys.stderr,
        )
    except Exception:
        return


def _cmd_best(args: argparse.Namespace) -> int:
    from sweep.tracking import store

    summary = _summary(args, store.best_summary)
    if summary is None:
        return EXIT_BAD_INPUT
    if args.quiet:
        pass
    elif args.json:
        print(json.dumps(summary, default=str))
    else:
        print(best_text(summary))
    return EXIT_OK if summary["value"] is not None else EXIT_FAILED


def best_text(summary: dict[str, Any]) -> str:
    """``sweep best``'s human output: aligned ``key  value`` lines, the params one per line."""
    from sweep.views.progress import format_value

    if summary["value"] is None:
        return f"{summary['name']}: no trial has a {summary['metric']} yet ({summary['sweep_status'].lower()})"
    lines = [f"{summary['name']}: best {summary['metric']} = {format_value(summary['value'])} ({summary['mode']}, {summary['sweep_status'].lower()})"]
    rows: list[tuple[str, Any]] = [("trial", _trial_name(summary.get("number"), summary["trial_id"], summary.get("resumed_as")))]
    epoch = summary.get("best_epoch")
    rows.append(("epoch", f"{epoch} of {summary['epochs']}" if epoch is not None else summary["epochs"]))
    rows += [(f"  {key}", format_value(value) if isinstance(value, float) else value) for key, value in sorted(summary["params"].items())]
    rows = rows[:2] + ([("params", "")] if summary["params"] else []) + rows[2:]
    rows += [("checkpoint", summary["checkpoint"]), ("mlflow run", summary["mlflow_run_id"]), ("tracking uri", summary["tracking_uri"])]
    width = max(len(key) for key, _ in rows)
    lines += [f"  {key.ljust(width)}  {'' if value is None else value}".rstrip() for key, value in rows]
    return "\n".join(lines)


def _trial_name(number: int | None, trial_id: str | None, resumed_as: str | None = None) -> str | None:
    """``0002 (ray e200b21c)``: the trial's number, the one identifier shown everywhere (the MLflow
    run is ``NAME-0002``), with Ray's trial id beside it; Ray's id alone for a run without a number.
    A resumed trial also shows the id Ray gave it in the session that continued it, which its
    checkpoint folder (``0002_2a18b168``) carries: ``0002 (ray e200b21c, resumed as 2a18b168)``."""
    from sweep.protocol import trial_label

    resumed = f", resumed as {resumed_as}" if resumed_as and resumed_as != trial_id else ""
    if number is None:
        return trial_id
    return trial_label(number) + (f" (ray {trial_id}{resumed})" if trial_id else "")


def _cmd_trials(args: argparse.Namespace) -> int:
    from sweep.tracking import store
    from sweep.tracking.client import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    try:
        frame = store.trials_frame(uri, args.name)
    except LookupError as exc:
        _lookup_error(args, exc)
        return EXIT_BAD_INPUT
    if args.csv:
        sys.stdout.write(trials_csv(frame))
    elif frame.empty:
        print(f"sweep {args.name} has no trials yet")
    else:
        print(trials_text(frame))
    return EXIT_OK


def trials_csv(frame: Any) -> str:
    """``sweep trials --csv``: the typed columns as ``sweep.trials()`` has them, plus
    ``duration_s`` (seconds, last), since pandas writes ``duration`` as ``0 days 00:00:15.123000``,
    which a spreadsheet or ``awk`` cannot add up. ``duration`` stays, for scripts that read it."""
    shown = frame.copy()
    shown["duration_s"] = frame["duration"].dt.total_seconds().round(3)
    return shown.to_csv(index=False)


def trials_text(frame: Any) -> str:
    """``sweep trials``' table for people: trials named as everywhere else (``0005``), durations
    as ``M:SS`` (pandas prints ``0 days 00:00:10.457000``), no run ids or end times. ``--csv``
    and ``sweep.trials()`` keep the typed columns."""
    import pandas as pd

    from sweep.protocol import trial_label
    from sweep.views.progress import format_duration

    shown = frame.drop(columns=["datetime_complete", "mlflow_run_id"]).copy()
    shown["number"] = [trial_label(None if pd.isna(n) else int(n)) for n in frame["number"]]
    shown["duration"] = ["-" if pd.isna(d) else format_duration(d.total_seconds()) for d in frame["duration"]]
    return shown.rename(columns={"number": "trial"}).to_string(index=False)


def _cmd_list(args: argparse.Namespace) -> int:
    from sweep.tracking import store
    from sweep.tracking.client import resolve_uri

    rows = store.list_sweeps(resolve_uri(args.tracking_uri))
    if args.json:
        print(json.dumps(rows, default=str))
        return EXIT_OK
    if not rows:
        print("no sweeps yet")
        return EXIT_OK
    print(list_text(rows))
    return EXIT_OK


def list_text(rows: list[dict[str, Any]]) -> str:
    """``sweep list``'s table: one aligned line per sweep, newest first."""
    from sweep.views.progress import format_duration, format_value

    table = [("NAME", "STATE", "TRIALS", "BEST", "STARTED", "DURATION")]
    for row in rows:
        requested = row["trials_requested"] if row["trials_requested"] is not None else "?"
        best = f"{row['metric']} {format_value(row['best_value'])}" if row["best_value"] is not None else "-"
        started = (row["started"] or "-").replace("T", " ")[:16]
        duration = format_duration(row["duration_s"]) if row["duration_s"] is not None else "-"
        table.append((row["name"], row["state"], f"{row['trials_done']}/{requested}", best, started, duration))
    widths = [max(len(str(line[i])) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table)


def _cmd_status(args: argparse.Namespace) -> int:
    from sweep.tracking import store

    summary = _summary(args, store.status_summary)
    if summary is None:
        return EXIT_BAD_INPUT
    summary["driver_alive"] = _driver_alive(summary)
    if args.quiet:
        pass
    elif args.json:
        print(json.dumps(summary, default=str))
    else:
        counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(summary["trials"].items())) or "no trials yet"
        hint = f"; interrupted, continue it with `sweep resume {args.name}`" if summary["sweep_status"] == "KILLED" else ""
        if summary["driver_alive"] is False:  # RUNNING on record, but its driver was killed (kill -9, a lost node)
            hint = f"; but its driver is gone (killed before it could close the records): continue it with `sweep resume {args.name}`"
        print(f"{args.name}: {summary['sweep_status'].lower()}; {counts} (of {summary['trials_requested']} requested){hint}")
    return EXIT_OK


def _driver_alive(summary: dict[str, Any]) -> bool | None:
    """For a sweep MLflow has as RUNNING: whether a driver still holds its lock (None where that
    cannot be told: a sweep that is not running, or storage that is a URI)."""
    from sweep.driver import recovery

    folder = summary.get("storage")
    if summary["sweep_status"] != "RUNNING" or not folder or "://" in folder:
        return None
    return recovery.live_driver(folder) is not None


def _cmd_report(args: argparse.Namespace) -> int:
    from sweep.views import report

    try:
        page = report.write_report(args.name, args.tracking_uri, args.out, rebuild=args.rebuild)
    except LookupError as exc:
        _lookup_error(args, exc)
        return EXIT_BAD_INPUT
    except OSError as exc:  # --out not writable, or a file in the way
        print(f"error: report: --out: expected a folder the report can be written in, but {exc.strerror or exc}: {exc.filename or args.out}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.quiet:
        print(f"report: {page.resolve()}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from sweep.driver.quiet import quiet_tensorflow
    from sweep.tracking import export

    quiet_tensorflow()  # its C++ start-up lines ("failed call to cuInit" on a machine without a GPU) read as errors

    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        print(f"error: export: expected a folder to write the model in, got the file {target}", file=sys.stderr)
        return EXIT_BAD_INPUT
    there = {path for path in target.rglob("*")} if target.is_dir() else set()
    try:
        written = export.export_best(args.name, args.dir, tracking_uri=args.tracking_uri, saved_model=args.saved_model)
    except LookupError as exc:
        _lookup_error(args, exc)
        return EXIT_BAD_INPUT
    except OSError as exc:  # not writable, a file in the way, no such parent: one line, not a traceback file
        print(f"error: export: expected a folder the model can be written in, but {exc.strerror or exc}: {exc.filename or target}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path in written:
        print(f"{'replaced' if Path(path) in there else 'wrote'} {path}")
    return EXIT_OK


def store_redact(uri: str) -> str:
    from sweep.tracking.client import redact

    return redact(uri)


def _cmd_ui(args: argparse.Namespace) -> int:
    from sweep.tracking.client import redact, resolve_uri, store_exists

    uri = resolve_uri(args.tracking_uri)
    base = f"http://127.0.0.1:{args.port}"
    if args.name:
        from sweep.tracking import store

        if not store_exists(uri):
            print(f"error: no sweep store at {redact(uri)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        summary = store.best_summary(uri, args.name)
        if summary is None:
            _no_such_sweep(uri, args.name)
            return EXIT_BAD_INPUT
        from sweep.tracking.tracker import ui_url

        print(f"sweep {args.name}: {ui_url(base, summary['experiment_id'])}")
        if summary["mlflow_run_id"]:
            print(f"  best trial {_trial_name(summary.get('number'), summary['trial_id'])}: {ui_url(base, summary['experiment_id'], summary['mlflow_run_id'])}")
    # one worker: a local UI for one user needs no more (MLflow's default starts several)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1",
               "--uvicorn-opts", "--log-level warning"]  # not a line per request
    print(f"MLflow UI for {store_redact(uri)} at {base} (Ctrl-C stops it)")
    # its own process group: MLflow's server starts uvicorn and job-runner children; a terminal's
    # Ctrl-C reached each of them (about 250 lines of tracebacks), and a SIGTERM to `sweep ui`
    # alone (what `timeout` sends) left them serving the port, orphaned. The group goes as one.
    _terminate_as_interrupt()  # SIGTERM (`timeout`, a service manager) stops the group too, as Ctrl-C does
    ui = subprocess.Popen(command, env=os.environ.copy(), start_new_session=True)
    try:
        return ui.wait()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP (the command's handler): not a sweep to continue
        _stop_process_group(ui)
        print("MLflow UI stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


def _stop_process_group(process: subprocess.Popen, wait_s: float = 10.0) -> None:
    """SIGTERM to ``process``'s whole group, then SIGKILL to what is left after ``wait_s``."""
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # the server's children, if any outlived it


if __name__ == "__main__":
    entry()
