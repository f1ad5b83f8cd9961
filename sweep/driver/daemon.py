"""The warm session: ``sweep up`` keeps one driver process up with Ray, TensorFlow, MLflow and the
trial workers loaded; ``sweep run`` and ``sweep resume`` hand their command line to it; ``sweep down``
ends it.

Why a process and not only a kept-up Ray: most of a sweep's start-up is the driver's, not Ray's.
Measured on 2 cores, a ``sweep run`` that joins a running Ray still imports TensorFlow for its
preflight (~3 s), MLflow and its store (~1.3 s), Ray's client and Tune (~1.5 s) before a trial
starts. A second sweep in one Python process skips all of it and starts its first epoch in ~2 s
on workers that already imported TensorFlow (``sweep.driver.session``'s warm executors); the warm
session gives the shell that same second sweep.

How a command runs there. The client (the ``sweep`` command the user typed) connects to a Unix
socket in a folder only its user can open, and sends its arguments, working directory and
environment. The session runs the same ``sweep.cli.main`` in its main thread with that directory
and environment, and streams stdout and stderr back; the client prints them and exits with the
command's exit code. Ctrl-C and SIGTERM at the client are sent over and raised in the session, so
a sweep stops, closes its records and stays resumable exactly as in a process of its own; a
client that disappears (terminal closed, killed) counts as a Ctrl-C. One command runs at a time:
a second client finds the session busy and runs in its own process, saying so.

Files, in :func:`session_dir` (``$SWEEP_SESSION_DIR``, else ``$XDG_RUNTIME_DIR/sweep-<uid>``, else
the temp folder's ``sweep-<uid>``; mode 0700): ``session.sock``, ``session.json`` (pid, Ray's
address, CPUs, start time) and ``session.log`` (the session's own messages, never a command's
output or environment). ``SWEEP_SESSION=0`` makes a command run in its own process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

SESSION_DIR_ENV = "SWEEP_SESSION_DIR"
SESSION_ENV = "SWEEP_SESSION"  # "0": never hand a command to the warm session
HANDSHAKE_S = 10.0  # the session answers a new client at once (accepted, busy) from its acceptor thread
FORWARDED = ("run", "resume")  # the commands a warm session runs; the others are light and read MLflow only

# what a sweep's driver imports (the preflight builds a model; the tracker opens a sqlite store)
WARM_IMPORTS = ("keras", "ray.tune", "optuna", "mlflow", "mlflow.store.tracking.sqlalchemy_store", "sweep.driver.runner", "sweep.tracking.tracker")

_SERVING = threading.Event()  # set in the session process itself: its commands never forward again
_BASE_ENV: dict[str, str] = {}  # the session's environment when it started (its workers have it)

# Variables that differ from shell to shell, or that only the driver reads (MLflow's, the sweep's,
# Tune's driver settings): a client whose environment differs only in these runs in the session.
_DRIVER_OR_SHELL_PREFIXES = (
    "MLFLOW_", "SWEEP_", "TUNE_", "SSH_", "TERM", "XDG_", "LC_", "PYTEST_", "COLUMNS", "LINES",
    "TMUX", "ITERM_", "VSCODE_", "KITTY_", "WEZTERM_", "ALACRITTY_", "KONSOLE_", "GNOME_TERMINAL_",
)
_SHELL_VARIABLES = frozenset({
    "PWD", "OLDPWD", "SHLVL", "_", "PS1", "PS2", "DISPLAY", "WINDOWID", "LANG", "LANGUAGE", "HISTFILE", "MAIL",
    "COLORTERM", "GPG_TTY", "STY", "SECURITYSESSIONID",
})


def differing_variables(env: dict[str, str]) -> list[str]:
    """Names (never values) of the variables a client sets otherwise than the session started
    with, that its trial workers could read: they keep the environment of ``sweep up``."""
    return sorted(
        name for name, value in env.items()
        if _BASE_ENV.get(name) != value and name not in _SHELL_VARIABLES and not name.startswith(_DRIVER_OR_SHELL_PREFIXES)
    )


def session_dir() -> Path:
    """The folder of the session's socket and files, private to this user."""
    configured = os.environ.get(SESSION_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"sweep-{os.getuid()}"


def socket_path() -> Path:
    return session_dir() / "session.sock"


def info_path() -> Path:
    return session_dir() / "session.json"


def log_path() -> Path:
    return session_dir() / "session.log"


def read_info() -> dict[str, Any] | None:
    """``session.json`` of a session whose process is alive, else None."""
    try:
        info = json.loads(info_path().read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info


# ---------------------------------------------------------------------------------------------
# frames: one JSON object per line, both ways


def _send(conn: socket.socket, lock: threading.Lock, frame: dict[str, Any]) -> bool:
    data = (json.dumps(frame) + "\n").encode("utf-8")
    with lock:
        try:
            conn.sendall(data)
            return True
        except OSError:  # the client is gone
            return False


def _frames(conn: socket.socket) -> Any:
    """The frames arriving on ``conn`` until it closes."""
    buffered = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        buffered += chunk
        while b"\n" in buffered:
            line, _, buffered = buffered.partition(b"\n")
            with contextlib.suppress(ValueError):
                yield json.loads(line)


def _connect(timeout_s: float) -> socket.socket | None:
    """A connection to this user's session, or None when none is up (or its socket is stale)."""
    path = socket_path()
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout_s)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    return conn


def _request(frame: dict[str, Any], timeout_s: float = HANDSHAKE_S) -> tuple[socket.socket, dict[str, Any], Any] | None:
    """Send one request: the connection, the session's first answer and the frames after it
    (one reader: its buffer may already hold them), or None when no session answers."""
    conn = _connect(timeout_s)
    if conn is None:
        return None
    if not _send(conn, threading.Lock(), frame):
        conn.close()
        return None
    frames = _frames(conn)
    answer = next(frames, None)
    if answer is None:
        conn.close()
        return None
    return conn, answer, frames


# ---------------------------------------------------------------------------------------------
# the client: the `sweep` command the user typed


def forward(command: str | None, argv: Sequence[str], address: str | None) -> int | None:
    """Run ``sweep <argv>`` in the warm session and return its exit code; None when the command
    is to run here: not ``run``/``resume``, a cluster address given (``--address``, RAY_ADDRESS),
    no session up, ``SWEEP_SESSION=0``, or the session busy with another command (said)."""
    if command not in FORWARDED or address or os.environ.get("RAY_ADDRESS") or os.environ.get(SESSION_ENV) == "0" or _SERVING.is_set():
        return None
    request = {
        "argv": list(argv),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "tty": [sys.stdout.isatty(), sys.stderr.isatty()],
        "columns": _columns(),
    }
    answered = _request(request)
    if answered is None:
        return None
    conn, answer, frames = answered
    if "busy" in answer:
        conn.close()
        print(f"sweep: the warm session (pid {answer['busy']}) is running another sweep; this one runs in its own process", file=sys.stderr)
        return None
    if "environment" in answer:  # its workers would not see them: correct first, warm second
        conn.close()
        names = ", ".join(answer["environment"][:8]) + (", ..." if len(answer["environment"]) > 8 else "")
        print(f"sweep: your environment differs from the warm session's ({names}), which its trial workers keep; "
              "this sweep runs in its own process (`sweep down` then `sweep up` takes your environment in)", file=sys.stderr)
        return None
    return _relay(conn, frames)


def _columns() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return os.get_terminal_size(sys.stdout.fileno()).columns
    return None


def _relay(conn: socket.socket, frames: Any) -> int:
    """Print what the session's command writes and hand it this process's Ctrl-C and SIGTERM,
    until it sends the exit code (or the session dies, said in one line)."""
    lock = threading.Lock()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def pass_on(signum: int, frame: Any) -> None:
        _send(conn, lock, {"signal": int(signum if signum != signal.SIGHUP else signal.SIGINT)})

    for sig in saved:
        signal.signal(sig, pass_on)
    conn.settimeout(None)  # a sweep runs as long as it runs; the session's death closes the socket
    try:
        for frame in frames:
            if "out" in frame:
                sys.stdout.write(frame["out"])
                sys.stdout.flush()
            elif "err" in frame:
                sys.stderr.write(frame["err"])
                sys.stderr.flush()
            elif "exit" in frame:
                return int(frame["exit"])
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        conn.close()
    print(f"error: the warm session ended while it ran this command; its log: {log_path()}", file=sys.stderr)
    return 1


def up_status() -> str | None:
    """One line about the running session, or None when none is up."""
    info = read_info()
    answered = _request({"ping": True}, timeout_s=2.0) if info else None
    if answered is None:
        return None
    answered[0].close()
    since = time.strftime("%H:%M:%S", time.localtime(info.get("started", 0)))
    return f"warm session up since {since} (pid {info['pid']}, Ray with {info.get('cpus')} CPUs on {info.get('ray')}, log {log_path()})"


def start(num_cpus: int | None, idle_timeout_min: float | None, timeout_s: float = 180.0) -> str:
    """Start the session process and wait (at most ``timeout_s``) until it is ready: Ray up and
    the trial workers' TensorFlow loaded. Returns the line :func:`up_status` gives.
    Raises RuntimeError (with the log's last lines) when it dies or does not get ready in time."""
    import subprocess

    _private_session_dir()
    for stale in (socket_path(), info_path()):
        stale.unlink(missing_ok=True)
    command = [sys.executable, "-m", "sweep.cli", "up", "--serve"]
    if num_cpus:
        command += ["--num-cpus", str(num_cpus)]
    if idle_timeout_min:
        command += ["--idle-timeout", str(idle_timeout_min)]
    with open(log_path(), "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the warm session exited with {process.returncode} while starting; its log {log_path()} ends with:\n{_log_tail()}")
        said = up_status()
        if said is not None:
            return said
        time.sleep(0.25)
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"the warm session was not ready within {timeout_s:.0f} s (Ray's start and TensorFlow's import); its log {log_path()} ends with:\n{_log_tail()}")


def stop(timeout_s: float = 60.0) -> str | None:
    """Ask the session to end (a sweep it runs is interrupted and stays resumable) and wait at
    most ``timeout_s`` for its process to exit, then kill it. The line to print, None if none was up."""
    info = read_info()
    answered = _request({"down": True}, timeout_s=5.0)
    if answered is not None:
        answered[0].close()
    if info is None:
        return None
    pid = int(info["pid"])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        for leftover in (socket_path(), info_path()):
            leftover.unlink(missing_ok=True)
        return f"warm session (pid {pid}) did not end within {timeout_s:.0f} s; killed it and its Ray"
    return f"warm session (pid {pid}) ended; its Ray and workers stopped"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError, ValueError):  # a zombie (ended, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return True


def _log_tail(lines: int = 12) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log_path().read_text(errors="replace").splitlines()[-lines:])
    return ""


# ---------------------------------------------------------------------------------------------
# the session process (`sweep up --serve`)


class _Stream(io.TextIOBase):
    """sys.stdout / sys.stderr of a command run for a client: each write goes to it as a frame."""

    def __init__(self, conn: socket.socket, lock: threading.Lock, key: str, tty: bool):
        super().__init__()
        self._conn, self._lock, self._key, self._tty = conn, lock, key, tty

    def write(self, text: str) -> int:
        if text:
            _send(self._conn, self._lock, {self._key: text})
        return len(text)

    def isatty(self) -> bool:
        return self._tty

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def serve(run_command: Callable[[list[str]], int], num_cpus: int | None, idle_timeout_min: float | None) -> int:
    """The session process: load everything a sweep needs, then run clients' commands with
    ``run_command`` (``sweep.cli.main``) one at a time until ``sweep down``, SIGTERM while idle,
    or ``idle_timeout_min`` minutes without a command."""
    _SERVING.set()
    _BASE_ENV.update(os.environ)  # what its Ray, trial workers and executors start with
    os.environ[SESSION_ENV] = "0"
    _say("starting: Ray, TensorFlow, MLflow and the trial workers")
    ray_address, cpus = _warm_up(num_cpus)
    listener = _listen()
    state = {"busy": False, "down": False, "last": time.monotonic()}
    requests: queue.Queue = queue.Queue()
    threading.Thread(target=_accept, args=(listener, state, requests), name="sweep-session-accept", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda signum, frame: state.update(down=True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # between commands: a client's late Ctrl-C stops nothing
    info = {"pid": os.getpid(), "ray": ray_address, "cpus": cpus, "started": time.time(), "python": sys.executable}
    info_path().write_text(json.dumps(info))
    _say(f"ready: Ray at {ray_address} with {cpus} CPUs")
    try:
        while not state["down"]:
            try:
                conn, request = requests.get(timeout=0.5)
            except queue.Empty:
                idle = time.monotonic() - state["last"]
                if idle_timeout_min and idle > idle_timeout_min * 60:
                    _say(f"no command for {idle_timeout_min:g} min: ending")
                    break
                continue
            try:
                _run_for_client(run_command, conn, request)
            finally:
                state.update(busy=False, last=time.monotonic())
    finally:
        for path in (socket_path(), info_path()):
            path.unlink(missing_ok=True)
        listener.close()
        _say("ending: stopping Ray")
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
    return 0


def _say(text: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} sweep session: {text}", file=sys.stderr, flush=True)


def _warm_up(num_cpus: int | None) -> tuple[str, int]:
    """Start Ray and the trial workers, and import what a sweep's driver imports."""
    import importlib

    import ray

    from sweep.driver.quiet import quiet_tensorflow
    from sweep.driver.session import ensure_ray, start_warm_executors, warm_executor_handles
    from sweep.spec.config import ResourcesConfig

    quiet_tensorflow()
    ensure_ray(num_cpus=num_cpus)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    start_warm_executors(ResourcesConfig(), trials=cpus, max_concurrent=None, address=None)
    for module in WARM_IMPORTS:
        importlib.import_module(module)

    handles = warm_executor_handles()
    if handles:  # ready once every worker imported TensorFlow (bounded: a stuck one is replaced at the first sweep)
        with contextlib.suppress(Exception):
            ray.get([handle.warm_up.remote(None) for handle in handles], timeout=120)
    return ray.get_runtime_context().gcs_address, cpus


def _private_session_dir() -> Path:
    """:func:`session_dir`, created if needed, readable by this user only (mode 0700)."""
    folder = session_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def _listen() -> socket.socket:
    _private_session_dir()
    path = socket_path()
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(8)
    return listener


def _peer_uid(conn: socket.socket) -> int | None:
    """The connecting process's user id (Linux SO_PEERCRED), None where unavailable."""
    with contextlib.suppress(AttributeError, OSError):
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    return None


def _accept(listener: socket.socket, state: dict[str, Any], requests: queue.Queue) -> None:
    """Answer every client at once: a command goes to the main thread unless one runs already."""
    lock = threading.Lock()
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # the listener closed: the session ends
            return
        uid = _peer_uid(conn)
        if uid is not None and uid != os.getuid():  # the folder is private; this is a second lock
            conn.close()
            continue
        conn.settimeout(HANDSHAKE_S)
        request = next(_frames(conn), None)
        differing = differing_variables((request or {}).get("env") or {})
        if request is None:
            conn.close()
        elif request.get("ping"):
            _send(conn, lock, {"pid": os.getpid()})
            conn.close()
        elif request.get("down"):
            state["down"] = True
            if state["busy"]:  # the sweep it runs stops as on SIGTERM: records closed, resumable
                os.kill(os.getpid(), signal.SIGTERM)
            _send(conn, lock, {"ok": True})
            conn.close()
        elif state["busy"] or state["down"]:
            _send(conn, lock, {"busy": os.getpid()})
            conn.close()
        elif differing:
            _send(conn, lock, {"environment": differing})
            conn.close()
        else:
            state["busy"] = True
            conn.settimeout(None)
            _send(conn, lock, {"accepted": os.getpid()})
            requests.put((conn, request))


def _run_for_client(run_command: Callable[[list[str]], int], conn: socket.socket, request: dict[str, Any]) -> None:
    """Run one command as the client would have: its directory, environment and terminal, its
    signals raised here, its output sent back; then put this process back as it was."""
    lock = threading.Lock()
    done = threading.Event()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_streams = (sys.stdout, sys.stderr)
    saved_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    tty = request.get("tty") or [False, False]
    code = 1
    try:
        # the client's variables; the session's own where the client has none (MLflow's quiet
        # progress bars, Keras' backend: set by the sweep at import or start-up in this process)
        _replace_environ({**saved_env, **(request.get("env") or {}), SESSION_ENV: "0"})
        if request.get("columns"):
            os.environ["COLUMNS"] = str(request["columns"])
        os.chdir(request.get("cwd") or saved_cwd)
        sys.stdout = _Stream(conn, lock, "out", bool(tty[0]))
        sys.stderr = _Stream(conn, lock, "err", bool(tty[1]))
        for sig in (signal.SIGINT, signal.SIGTERM):  # as in a process of its own until the command installs its own
            signal.signal(sig, signal.default_int_handler)
        threading.Thread(target=_signals_from_client, args=(conn, done), name="sweep-session-signals", daemon=True).start()
        code = run_command(list(request.get("argv") or []))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:  # a Ctrl-C the command's own handling did not catch
        code = 130
    except Exception as exc:  # the command's own handler turns errors into lines; this is a last resort
        with contextlib.suppress(Exception):
            sys.stderr.write(f"error: the warm session failed to run the command: {type(exc).__name__}: {exc}\n")
    finally:
        done.set()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = saved_streams
        _send(conn, lock, {"exit": int(code)})
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        for sig, handler in saved_handlers.items():
            signal.signal(sig, handler)
        with contextlib.suppress(OSError):
            os.chdir(saved_cwd)
        _replace_environ(saved_env)


def _replace_environ(wanted: dict[str, str]) -> None:
    """Make os.environ ``wanted`` key by key (never empty in between: Ray's threads read it)."""
    for name in [name for name in os.environ if name not in wanted]:
        os.environ.pop(name, None)
    for name, value in wanted.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def _signals_from_client(conn: socket.socket, done: threading.Event) -> None:
    """Raise here the signals the client sends; its disappearance counts as a Ctrl-C."""
    for frame in _frames(conn):
        if done.is_set():
            return
        if frame.get("signal") in (signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), int(frame["signal"]))
    if not done.is_set():
        os.kill(os.getpid(), signal.SIGINT)
