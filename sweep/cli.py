"""The ``sweep`` command: parse arguments, call the Python API, print, exit with a clear code.

Exit codes: 0 done, 1 the sweep ran but no trial produced a result (or finishing it failed:
logging the best model, registering it, the report), 2 bad input (one line on
stderr naming the file and key), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Callable, Sequence

from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
READ_ONLY_COMMANDS = frozenset({"status", "best", "report"})


def entry() -> None:
    """The ``sweep`` console script: :func:`main` in a process of its own.

    ``status``, ``best`` and ``report`` only read MLflow. Tearing the interpreter down after
    them (the modules of MLflow, SQLAlchemy, pandas and pyarrow) took 0.7 s of a 2.2 s
    ``sweep status``, so they flush their output and end the process without it. Every other
    command, which may have files or runs to close, exits normally.
    """
    code = main()
    if _command(sys.argv[1:]) in READ_ONLY_COMMANDS:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    from sweep.config import SweepConfigError

    try:
        return args.handler(args)
    except SweepConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished trials are recorded in MLflow", file=sys.stderr)
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep", description="Keras fit() hyperparameter sweeps on Ray Tune, Optuna and MLflow.")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run the sweep described by a YAML file")
    run.add_argument("file")
    run.add_argument("--trials", type=int, help="override search.trials")
    run.add_argument("--name", help="override the sweep name")
    run.add_argument("--storage", help="folder or URI for checkpoints and Ray state (default ./sweep_runs)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    run.add_argument("--address", help="Ray cluster address: auto, HOST:PORT or ray://HOST:PORT")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--json", action="store_true", help="print the best trial as JSON at the end")
    run.add_argument("--fresh", action="store_true", help="start over even if an unfinished sweep of this name exists")
    run.set_defaults(handler=_cmd_run)

    resume = sub.add_parser("resume", help="continue an unfinished sweep whose driver died")
    resume.add_argument("name")
    resume.add_argument("--tracking-uri")
    resume.add_argument("--storage", help="default: the storage the sweep was started with")
    resume.add_argument("--address")
    resume.add_argument("--quiet", action="store_true")
    resume.add_argument("--json", action="store_true")
    resume.set_defaults(handler=_cmd_resume)

    best = sub.add_parser("best", help="show the best trial of a sweep")
    best.add_argument("name")
    best.add_argument("--tracking-uri")
    best.add_argument("--json", action="store_true")
    best.set_defaults(handler=_cmd_best)

    status = sub.add_parser("status", help="show how many trials ran, stopped early or failed")
    status.add_argument("name")
    status.add_argument("--tracking-uri")
    status.add_argument("--json", action="store_true")
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

    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the sweep store")
    ui.add_argument("--tracking-uri")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=_cmd_ui)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    import sweep

    result = sweep.run(
        args.file,
        storage=args.storage,
        address=args.address,
        quiet=args.quiet or args.json,
        name=args.name,
        trials=args.trials,
        tracking_uri=args.tracking_uri,
        fresh=args.fresh,
    )
    return _finish_run(args, result)


def _cmd_resume(args: argparse.Namespace) -> int:
    from sweep.runner import resume

    result = resume(
        args.name,
        tracking_uri=args.tracking_uri,
        storage=args.storage,
        address=args.address,
        quiet=args.quiet or args.json,
    )
    return _finish_run(args, result)


def _finish_run(args: argparse.Namespace, result: Any) -> int:
    if args.json:
        from sweep import tracking

        print(json.dumps(tracking.best_summary(result.tracking_uri, result.name), default=str))
    else:
        _print_result(result)
    if getattr(result, "finish_error", None):  # already said in one line on stderr by the runner
        return EXIT_FAILED
    return EXIT_OK if result.best is not None else EXIT_FAILED


def _print_result(result: Any) -> None:
    from sweep.progress import format_duration, format_params, format_value

    console = Console(highlight=False, soft_wrap=True)
    counts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(result.counts().items()))
    console.print(f"[bold]sweep {result.name}[/] finished in {format_duration(result.wall_seconds)}: {counts or 'no trials'}")
    best = result.best
    if best is None:
        console.print("[red]no trial produced a result[/]; see the failed trials' reasons in MLflow")
    else:
        console.print(f"[bold green]best[/] {result.metric} = {format_value(best.value)} (trial {best.trial_id}, epoch {best.epoch} of {best.epochs})")
        console.print(f"  params: {format_params(best.params)}")
        console.print(f"  checkpoint: {best.checkpoint}")
    console.print(f"MLflow: experiment '{result.experiment}', parent run {result.parent_run_id}")
    from sweep.store import redact

    console.print(f"  look: sweep ui --tracking-uri {redact(result.tracking_uri)}   (then open http://127.0.0.1:5000)")


def _summary(args: argparse.Namespace, read: Callable[[str, str], dict | None]) -> dict | None:
    """What ``read(uri, name)`` says of the sweep ``args.name``, or None after saying it does not exist."""
    from sweep import store

    uri = store.resolve_uri(args.tracking_uri)
    summary = read(uri, args.name)
    if summary is None:
        print(f"error: no sweep named {args.name!r} in {store.redact(uri)}", file=sys.stderr)
    return summary


def _cmd_best(args: argparse.Namespace) -> int:
    from sweep import store

    summary = _summary(args, store.best_summary)
    if summary is None:
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        console = Console(highlight=False)
        console.print(f"[bold]{args.name}[/]: best {summary['metric']} = {summary['value']} ({summary['mode']})")
        for key in ("params", "trial_id", "epochs", "best_epoch", "checkpoint", "mlflow_run_id", "tracking_uri"):
            console.print(f"  {key}: {summary[key]}")
    return EXIT_OK if summary["value"] is not None else EXIT_FAILED


def _cmd_status(args: argparse.Namespace) -> int:
    from sweep import store

    summary = _summary(args, store.status_summary)
    if summary is None:
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(summary["trials"].items())) or "no trials yet"
        print(f"{args.name}: {summary['sweep_status'].lower()}; {counts} (of {summary['trials_requested']} requested)")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from sweep import report

    try:
        page = report.write_report(args.name, args.tracking_uri, args.out, rebuild=args.rebuild)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.quiet:
        print(f"report: {page.resolve()}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from sweep import export

    try:
        written = export.export_best(args.name, args.dir, tracking_uri=args.tracking_uri, saved_model=args.saved_model)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_ui(args: argparse.Namespace) -> int:
    from sweep import tracking

    uri = tracking.resolve_uri(args.tracking_uri)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)]
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    return subprocess.call(command, env=os.environ.copy())


if __name__ == "__main__":
    entry()
