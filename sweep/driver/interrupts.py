"""SIGINT, SIGTERM and SIGHUP during a sweep: the trials stop, the records close, the sweep
stays resumable.

``SweepInterrupted`` is what the driver raises once the records are closed; ``sweep.cli`` turns
it into exit 130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP: the terminal was closed) and raises it
itself for a SIGTERM or SIGHUP outside ``fit()``. Under ``nohup`` (SIGHUP ignored) a closed
terminal still stops nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any


def stop_signals() -> tuple[int, ...]:
    """The signals that stop a sweep: SIGINT, SIGTERM, and SIGHUP unless this process ignores it
    (``nohup sweep run ...``: the user asked for the sweep to outlive the terminal)."""
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is None or signal.getsignal(hangup) == signal.SIG_IGN:
        return (signal.SIGINT, signal.SIGTERM)
    return (signal.SIGINT, signal.SIGTERM, hangup)


def say(line: str) -> None:
    """One line on stderr from a signal handler. A SIGHUP usually means the terminal is gone:
    writing to it then fails (EIO), and every later line (progress, the closing summary) would
    fail too and could break the closing of the records, so a dead terminal's file descriptors
    are pointed at /dev/null first (:func:`detach_from_closed_terminal`) and the sweep closes
    silently."""
    from sweep.driver.quiet import print_to_stderr

    detach_from_closed_terminal()
    with contextlib.suppress(Exception):  # a handler must never raise while saying what it does
        print_to_stderr(line)


def detach_from_closed_terminal() -> None:
    """Point stdout and stderr (file descriptors 1 and 2, Python's and C++'s writes alike) at
    /dev/null where they no longer take writes: a closed terminal fails every write with EIO
    (and no longer counts as a terminal for ``isatty``), so an empty write is the probe."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in (1, 2):
                try:
                    os.write(fd, b"")
                except OSError:
                    with contextlib.suppress(OSError):
                        os.dup2(null, fd)
        finally:
            os.close(null)


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

    caught: list[int] = []  # yielded: the signal held so far, if any
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def hold(signum: int, frame: Any) -> None:
        if caught:
            raise SweepInterrupted(None, caught[0])
        caught.append(signum)
        say(f"sweep: {signal.Signals(signum).name}: stopping after {what} (seconds; again to stop at once)")

    saved = {sig: signal.getsignal(sig) for sig in stop_signals()}
    for sig in saved:
        signal.signal(sig, hold)
    try:
        yield caught
    finally:
        for sig, handler in saved.items():
            with contextlib.suppress(Exception):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    if caught:
        raise SweepInterrupted(None, caught[0])


class Interrupts:
    """SIGINT, SIGTERM and SIGHUP (:func:`stop_signals`) while ``tuner.fit()`` runs.

    Ray Tune catches the first SIGINT itself and returns from ``fit()`` as if the sweep were
    done. Here the first of them asks Tune to stop every trial (through the sweep's
    stopper, checked each step) and the sweep then ends as interrupted; a second one raises
    KeyboardInterrupt at once; a third gets Python's default handling.
    """

    def __init__(self, stopper: Any, name: str):
        import threading

        self.stopper, self.name, self.signal, self.count = stopper, name, None, 0
        self.leave_tracking = threading.Event()  # set by a second signal while the records close
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
            say(f"sweep: {signal.Signals(signum).name}: {said}")
            return
        for sig in self._saved:  # a third one is not caught
            with contextlib.suppress(Exception):
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        if not self.closing:  # while the trials run: stop now (the finally still closes the records)
            raise SweepInterrupted(self.name, self.signal)
        # already closing the records (about a second): let that finish, then exit; a third kills.
        # A wait for MLflow to take the last writes ends now: the writer process retries them alone.
        self.leave_tracking.set()

    closing = False  # set once tuner.fit() returned: the sweep's records are being closed
    _ray_watch: tuple[str, Any] | None = None
    _wakeup: Any = None  # the socket the C-level signal handler writes each signal's number to
    _saved_wakeup_fd = -1

    def watch_ray(self, gcs_address: str, close_without_ray: Any) -> None:
        """Watch the sweep's Ray: a signal to the process group (a closed terminal's SIGHUP,
        ``timeout``, ``docker stop``, SLURM) stops a local Ray's processes too, and the driver's
        next call into Ray then hangs 60 s before Ray aborts the process, leaving every run
        RUNNING. When its GCS stops answering, ``close_without_ray()`` (which closes the records
        and exits) runs from this watch instead.

        A local Ray (GCS on this machine) is watched from now on: the signal's Python handler
        runs only when the main thread leaves the call into Ray it is blocked in, which with a
        dead Ray is after those 60 s (one run in four here); the signal's number is then read
        from the wakeup socket its C handler wrote to. A remote cluster is watched only after a
        signal was handled (a GCS there may restart; the driver's signal did not stop it).
        """
        self._ray_watch = (gcs_address, close_without_ray)
        if gcs_address.rpartition(":")[0] in ("127.0.0.1", "localhost", "::1", "[::1]"):
            self._start_ray_watch(deadline_s=None)

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
        self._start_ray_watch(deadline_s=50.0)  # Ray's client gives up on a dead GCS after 60 s

    def _start_ray_watch(self, deadline_s: float | None) -> None:
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
                with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                    return True
            except OSError:
                return False

        def watch() -> None:
            deadline = None if deadline_s is None else time.monotonic() + deadline_s
            while (deadline is None or time.monotonic() < deadline) and not self.closing and self._watching:
                if not answers():
                    time.sleep(0.5)  # a GCS that stops answering twice in a row is gone
                    if not answers() and not self.closing and self._watching:
                        self.signal = self.signal or self._signal_seen()
                        close_without_ray()
                    return
                time.sleep(0.5)

        threading.Thread(target=watch, name="sweep-ray-watch", daemon=True).start()

    def _signal_seen(self) -> int | None:
        """The first signal the C-level handler recorded on the wakeup socket (None: none came)."""
        if self._wakeup is None:
            return None
        try:
            data = self._wakeup.recv(64)
        except OSError:
            return None
        stops = set(self._saved)
        return next((number for number in data if number in stops), None)

    def install(self) -> None:
        import socket
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread: nothing to install
        self._saved = {sig: signal.getsignal(sig) for sig in stop_signals()}
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune's own swallows the first Ctrl-C
        for sig in self._saved:
            signal.signal(sig, self._handle)
        with contextlib.suppress(OSError, ValueError):
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
            if previous != -1:  # someone's (an asyncio loop's in a notebook): theirs stays
                signal.set_wakeup_fd(previous)
                reader.close()
                writer.close()
            else:
                self._wakeup, self._wakeup_writer = reader, writer

    def restore(self) -> None:
        self._watching = False  # the records are closed: a Ray that stops now is the normal end
        if self._wakeup is not None:
            try:
                signal.set_wakeup_fd(-1)
            except (OSError, ValueError):  # not the main thread (the watch closing; the process exits): keep the fd valid
                pass
            else:
                for end in (self._wakeup, self._wakeup_writer):
                    end.close()
                self._wakeup = None
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
