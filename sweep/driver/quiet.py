"""Keeping the terminal for the sweep's own output: TensorFlow, Ray, Optuna and MLflow notices
that need no action are silenced in the driver (the workers get their log levels from the
environment the Ray session hands them, ``sweep.driver.session``)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator


def quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter (oneDNN, missing CUDA) is noise in a sweep's output.

    TF 2.21 prints it through absl before any log level applies, so the one import in the
    driver runs with file descriptor 2 pointed at /dev/null; an import error still raises.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        with _stderr_silenced():
            import tensorflow  # noqa: F401
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


_real_stderr: int | None = None  # while TensorFlow imports: a duplicate of the real file descriptor 2


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    global _real_stderr
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    _real_stderr = saved
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        _real_stderr = None
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def print_to_stderr(text: str) -> None:
    """``print(text, file=sys.stderr)``, seen even while TensorFlow's import (in the preflight's
    thread) has file descriptor 2 pointed at /dev/null: that redirect is process-wide, and a
    Ctrl-C's lines ("stopping after the preflight", "interrupted ...") printed meanwhile by the
    main thread were lost. They go to the real stderr; TF's chatter stays hidden."""
    saved = _real_stderr
    try:
        on_fd_2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # a stream of its own (the warm session's): not silenced
        on_fd_2 = False
    if saved is not None and on_fd_2:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
            os.write(saved, (text + "\n").encode(errors="replace"))
            return
    print(text, file=sys.stderr, flush=True)


class _TrialFailureFilter(logging.Filter):
    """Drops Ray Tune's own reports of trial failures; every other Tune message passes."""

    PREFIXES = ("Trial task failed for trial", "Trials did not complete")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.PREFIXES)


class _StorageSyncFilter(logging.Filter):
    """Ray Tune's failure to save its experiment state to the storage, as one line, once per
    distinct error (it printed a 20-line pyarrow traceback on every attempt while the storage was
    read-only, rel-02). The sweep says what it does about a storage fault itself: the trials that
    hit it stop the sweep, resumable."""

    PREFIX = "Saving experiment state to storage"

    def __init__(self) -> None:
        super().__init__()
        self.said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.PREFIX):
            return True
        from sweep.errors import one_line

        error = record.exc_info[1] if record.exc_info and record.exc_info[1] is not None else None
        line = one_line(error) if error is not None else record.getMessage()
        if line in self.said:
            return False
        self.said.add(line)
        record.msg, record.args = f"saving Ray Tune's experiment state to the storage failed (the trials go on; a storage fault stops the sweep resumable): {line}", ()
        record.exc_info = record.exc_text = None
        return True


def quiet_ray_and_optuna() -> None:
    """Keep the terminal for the sweep's own view: Ray/Optuna notices that need no action go."""
    import warnings

    import optuna

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # we record results ourselves
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")  # a stopped trial's error is ours to report, once
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("ray.tune.analysis.experiment_analysis", "ray.tune.result_grid", "ray._private.authentication"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # A failed trial's traceback is the sweep's to tell (one line per trial in the live view,
    # the tail once when fail_fast stops a sweep), not Ray's to print in full for every trial.
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        tune_logger = logging.getLogger(name)
        if not any(isinstance(f, _TrialFailureFilter) for f in tune_logger.filters):
            tune_logger.addFilter(_TrialFailureFilter())
    state_logger = logging.getLogger("ray.tune.execution.experiment_state")
    if not any(isinstance(f, _StorageSyncFilter) for f in state_logger.filters):
        state_logger.addFilter(_StorageSyncFilter())
    from sweep.tracking import client  # noqa: F401 - sets MLflow's environment (telemetry) before mlflow loads
    import mlflow  # noqa: F401 - mlflow sets up its logger on import; quiet it afterwards

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)  # its ~90-line tracebacks per failed write: the sweep says each in one line
