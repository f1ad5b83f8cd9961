"""SIGINT and SIGTERM during a sweep: the trials stop, the records close, the sweep stays resumable.

``SweepInterrupted`` is what the driver raises once the records are closed; ``sweep.cli`` turns
it into exit 130 (SIGINT) or 143 (SIGTERM) and raises it itself for a SIGTERM outside ``fit()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any


class SweepInterrupted(KeyboardInterrupt):
    """The sweep stopped on SIGINT/SIGTERM; its records are closed and it can be resumed."""

    def __init__(self, name: str | None, signum: int = 2):
        # the message a notebook shows: what happened and how to go on (the CLI prints its own line)
        hint = f"sweep {name} interrupted, its records closed; continue it with sweep.resume({name!r}) (or `sweep resume {name}`)"
        super().__init__(hint if name else "sweep interrupted")
        self.name, self.signum = name, int(signum)


@contextlib.contextmanager
def signals_held_during(what: str) -> Any:
    """Hold SIGINT and SIGTERM while ``what`` runs, then raise :class:`SweepInterrupted` (no
    sweep yet) if one came. Start-up imports TensorFlow in a thread while the main thread starts
    Ray: a KeyboardInterrupt raised inside ``ray.init`` then ended the interpreter under the
    import (SIGSEGV, "terminate called without an active exception"), and one raised inside a
    weakref callback was swallowed and the sweep ran on. A second signal raises at once."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if caught:
            raise SweepInterrupted(None, caught[0])
        caught.append(signum)
        with contextlib.suppress(Exception):
            print(f"sweep: {signal.Signals(signum).name}: stopping after {what} (seconds; again to stop at once)", file=sys.stderr, flush=True)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    if caught:
        raise SweepInterrupted(None, caught[0])


class Interrupts:
    """SIGINT and SIGTERM while ``tuner.fit()`` runs.

    Ray Tune catches the first SIGINT itself and returns from ``fit()`` as if the sweep were
    done. Here the first SIGINT or SIGTERM asks Tune to stop every trial (through the sweep's
    stopper, checked each step) and the sweep then ends as interrupted; a second one raises
    KeyboardInterrupt at once; a third gets Python's default handling.
    """

    def __init__(self, stopper: Any, name: str):
        self.stopper, self.name, self.signal, self.count = stopper, name, None, 0
        self._saved: dict[int, Any] = {}
        self._env: str | None = None

    def reason(self) -> str | None:
        if self.signal is None:
            return None
        return f"interrupted by {signal.Signals(self.signal).name}"

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        self.signal = self.signal or signum
        if self.count == 1:
            self.stopper.halt = self.reason()
            self._watch_ray_after_signal()
            said = (
                "the trials have ended; finishing the sweep's records, then exiting" if self.closing
                else "stopping the trials (again to stop at once)"
            )
            with contextlib.suppress(Exception):
                print(f"sweep: {signal.Signals(signum).name}: {said}", file=sys.stderr, flush=True)
            return
        for sig in (signal.SIGINT, signal.SIGTERM):  # a third one is not caught
            with contextlib.suppress(Exception):
                signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
        if not self.closing:  # while the trials run: stop now (the finally still closes the records)
            raise SweepInterrupted(self.name, self.signal)
        # already closing the records (about a second): let that finish, then exit; a third kills

    closing = False  # set once tuner.fit() returned: the sweep's records are being closed
    _ray_watch: tuple[str, Any] | None = None

    def watch_ray(self, gcs_address: str, close_without_ray: Any) -> None:
        """After the first signal, watch this sweep's own local Ray: a SIGTERM to the process
        group (``timeout``, ``docker stop``, SLURM) stops Ray's processes too, and the driver's
        next call into Ray then hangs 60 s before Ray aborts the process, leaving every run
        RUNNING. When its GCS stops answering while the trials stop, ``close_without_ray()``
        (which closes the records and exits) runs from this watch instead."""
        self._ray_watch = (gcs_address, close_without_ray)

    def claim_closing(self) -> bool:
        """True for the one caller that closes the records (the driver's end, or the watch)."""
        import threading

        lock = self.__dict__.setdefault("_closing_lock", threading.Lock())
        with lock:
            if self.closing:
                return False
            self.closing = True
            return True

    def _watch_ray_after_signal(self) -> None:
        import socket
        import threading
        import time

        if self._ray_watch is None or self.__dict__.get("_watching"):
            return
        self._watching = True
        address, close_without_ray = self._ray_watch
        host, _, port = address.rpartition(":")

        def answers() -> bool:
            try:
                with socket.create_connection((host, int(port)), timeout=1.0):
                    return True
            except OSError:
                return False

        def watch() -> None:
            deadline = time.monotonic() + 50  # Ray's client gives up on a dead GCS after 60 s
            while time.monotonic() < deadline and not self.closing:
                if not answers():
                    time.sleep(0.5)  # a GCS that stops answering twice in a row is gone
                    if not answers() and not self.closing:
                        close_without_ray()
                    return
                time.sleep(0.5)

        threading.Thread(target=watch, name="sweep-ray-watch", daemon=True).start()

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread: nothing to install
        self._saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune's own swallows the first Ctrl-C
        for sig in self._saved:
            signal.signal(sig, self._handle)

    def restore(self) -> None:
        if not self._saved:
            return
        for sig, handler in self._saved.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._saved = {}
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env
