"""Connecting a sweep to Ray: a local Ray on 127.0.0.1 only, a cluster address, or Ray Client.

Three ways in (``--address`` or ``RAY_ADDRESS``):

- none: a local Ray starts for this process. Ray 2.x on Linux turns ``127.0.0.1`` into the
  machine's routable IP (``services.resolve_ip_for_localhost``) and its GCS, raylet and
  workers then listen on every interface. Ray's single-machine mode (the one it uses on macOS
  and Windows, switched by ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps the node IP at
  127.0.0.1 and every listener on loopback; ``loopback_only`` turns it on for the start.
- ``auto`` or ``HOST:PORT``: this process becomes a driver of that cluster (it must run on a
  cluster node, e.g. through ``ray job submit``); Tune's callbacks (ledger, MLflow writer,
  live view) run here.
- ``ray://HOST:PORT`` (Ray Client): Tune would run its whole loop, callbacks included, in a
  remote actor, so the sweep's driver-side state would stay on the cluster. Instead the whole
  sweep runs as one task on the cluster (``run_via_client``) and its ``SweepResult`` comes back.
  The tracking URI and storage must then be reachable from the cluster (an ``mlflow server``,
  a shared path or a cloud URI).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
CLIENT_PREFIX = "ray://"


def resolve_address(address: str | None) -> str | None:
    """``address`` if given, else ``RAY_ADDRESS``, else None (start a local Ray).

    Raises SweepConfigError for an address Ray cannot join, e.g. the dashboard's
    ``http://HEAD:8265`` (Ray's own error was a numbered fragment of advice)."""
    resolved = address or os.environ.get("RAY_ADDRESS") or None
    if resolved and "://" in resolved and not resolved.startswith(CLIENT_PREFIX):
        from sweep.errors import SweepConfigError

        where = "--address" if address else "RAY_ADDRESS"
        raise SweepConfigError(where, "", f"expected auto, HOST:PORT (the head's GCS, e.g. 10.0.0.5:6379) or {CLIENT_PREFIX}HOST:10001, got {resolved!r} "
                               "(an http:// address is the dashboard's, for `ray job submit`)")
    return resolved


def is_client_address(address: str | None) -> bool:
    return bool(address) and str(address).startswith(CLIENT_PREFIX)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Start Ray in single-machine mode: node IP 127.0.0.1, every listener on loopback.

    The environment variable reaches the processes Ray spawns (GCS, raylet, workers); the
    module constant is read by ``ray.init`` in this process, where Ray was already imported.
    Both are restored afterwards so a later ``ray.init(address=...)`` behaves normally.
    """
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = saved_env


def connecting(address: str) -> contextlib.AbstractContextManager:
    """How to connect to ``address``: a cluster on this machine's loopback (127.0.0.1, e.g. one
    started by ``ray start --head --node-ip-address 127.0.0.1`` in single-machine mode) must be
    joined in single-machine mode too, or Ray rewrites 127.0.0.1 to the routable IP, where
    nothing listens."""
    return loopback_only() if is_loopback(address) else contextlib.nullcontext()


def is_loopback(address: str | None) -> bool:
    """True for ``127.0.0.1:PORT``, ``localhost:PORT`` and ``[::1]:PORT``."""
    if not address or "://" in address:
        return False
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def bootstrap_address(address: str) -> str:
    """``auto`` as Ray would read it (RAY_ADDRESS, then the newest local cluster), else as given.

    Resolved here rather than by ``ray.init("auto")`` so that a loopback cluster is recognised
    (see ``connecting``); trials of a driver that joined a loopback cluster through ``auto``
    were cancelled before they started (Ray 2.60).
    """
    if address != "auto":
        return address
    try:
        from ray._private.services import get_ray_address_from_environment

        return get_ray_address_from_environment("auto", None) or address
    except Exception:  # no cluster found: let ray.init report it
        return address


# ---------------------------------------------------------------------------------------------
# Ray Client


def run_via_client(
    source: str | Path | Mapping[str, Any], address: str, *, storage: str | None, quiet: bool, overrides: dict[str, Any],
    sweep_run: Callable[..., Any],
) -> Any:
    """Run the whole sweep as one task on the cluster behind ``ray://`` and return its result.

    The sweep file's folder travels as the task's working directory (so its relative paths and
    modules next to it resolve there); the tracking URI and storage are resolved here first, so
    the defaults point at this machine's ``./mlflow.db`` and ``./sweep_runs`` (useful only when
    the cluster shares this filesystem; otherwise pass an MLflow server and a shared/cloud URI).
    ``sweep_run`` is ``sweep.driver.runner.run``, the task's body, passed in (the runner imports
    this module, so this module does not import it back).
    """
    import ray

    from sweep.tracking.client import resolve_uri
    from sweep.errors import SweepConfigError

    overrides = dict(overrides)
    overrides["tracking_uri"] = resolve_uri(overrides.get("tracking_uri"))
    storage = storage if storage and "://" in storage else str(Path(storage or "sweep_runs").expanduser().resolve())
    runtime_env: dict[str, Any] = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}}
    if not isinstance(source, Mapping):
        path = Path(source).resolve()
        runtime_env["working_dir"] = str(path.parent)
        source = path.name
    if not ray.is_initialized():
        _connect_client(address, runtime_env)
    task = ray.remote(num_cpus=0)(_run_on_cluster)
    try:
        return ray.get(task.remote(sweep_run, source, storage, quiet, overrides))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, SweepConfigError):
            raise cause from None
        raise


CLIENT_CONNECT_ATTEMPTS = 3


def _connect_client(address: str, runtime_env: dict[str, Any]) -> None:
    """``ray.init`` over Ray Client, tried again when the head fails to start this client's server.

    The head starts one client server process per connection; on a busy head that process can
    die while starting ("Starting Ray client server failed", seen once in CI on 2 loaded cores),
    and a second try a few seconds later starts a new one. Any other error is raised at once.
    """
    import ray

    from sweep.errors import SweepConfigError

    try:  # nothing listening: one line in seconds (Ray Client waits ~30 s, then a bare ConnectionError)
        check_address(address.split("://", 1)[1], client=True)
    except ConnectionError as exc:
        raise SweepConfigError("--address", "", f"{address}: {exc}") from None
    for attempt in range(1, CLIENT_CONNECT_ATTEMPTS + 1):
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR")
            return
        except ConnectionAbortedError as exc:
            if attempt == CLIENT_CONNECT_ATTEMPTS or not is_client_server_start_failure(exc):
                raise SweepConfigError("--address", "", f"{address}: expected a Ray Client server, but connecting failed: {_telling_line(exc)}") from None
            print(f"sweep: the Ray head could not start a client server (try {attempt} of {CLIENT_CONNECT_ATTEMPTS}); trying again", file=sys.stderr)
            time.sleep(2.0 * attempt)
        except ConnectionError as exc:  # something answers there, but no Ray Client server
            raise SweepConfigError("--address", "", f"{address}: expected a Ray Client server, but connecting failed: {_telling_line(exc)}") from None


def _telling_line(exc: BaseException) -> str:
    """The line of a Ray Client error that says what failed: the server's traceback ends with it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {(lines[-1] if lines else '')[:300]}"


def is_client_server_start_failure(exc: BaseException) -> bool:
    """Whether a Ray Client connection failed because the head's per-client server did not start
    (worth another try), rather than a refused address, a version mismatch or bad credentials."""
    return isinstance(exc, ConnectionAbortedError) and "Starting Ray client server failed" in str(exc)


def _run_on_cluster(sweep_run: Callable[..., Any], source: Any, storage: str, quiet: bool, overrides: dict[str, Any]) -> Any:
    """The task body: an ordinary ``sweep.run`` in a process that is already a cluster driver."""
    return sweep_run(source, storage=storage, address="auto", quiet=quiet, **overrides)


# ---------------------------------------------------------------------------------------------
# bounded waits: an address nobody answers, resources no node has


ADDRESS_TIMEOUT_S = 5.0


def check_address(address: str, timeout: float = ADDRESS_TIMEOUT_S, client: bool = False) -> None:
    """Raise ConnectionError within ``timeout`` seconds when nothing listens at ``HOST:PORT``.

    ``ray.init(address=...)`` of an address where nothing runs retries in Ray's C++ client for
    minutes, printing warnings and ignoring Ctrl-C (it does not return to Python); a plain TCP
    connect first says the same thing in seconds. ``auto`` and ``ray://`` are left to Ray."""
    import socket

    if not address or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        port_number = int(port)
    except ValueError:
        raise ConnectionError(f"expected HOST:PORT, got {address!r}") from None
    try:
        connection = socket.create_connection((host, port_number), timeout=timeout)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__ if not isinstance(exc, socket.timeout) else f"no answer within {timeout:.0f} s"
        raise ConnectionError(f"expected a running Ray cluster, but nothing answers at {address} ({reason})") from None
    with connection:
        if os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true"):  # a TLS GCS answers only after a handshake
            _check_speaks_grpc(connection, address, timeout, client)


# HTTP/2's client connection preface and an empty SETTINGS frame (RFC 9113, sections 3.4 and 6.5)
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS_FRAME = 0x04


def _check_speaks_grpc(connection: Any, address: str, timeout: float, client: bool = False) -> None:
    """A GCS is a gRPC (HTTP/2) server: it answers the HTTP/2 preface with a SETTINGS frame at
    once. Something else at that port (the dashboard's 8265, any web server) made ``ray.init``
    retry for minutes with C++ warnings only, deaf to Ctrl-C for ~40 s; said here in seconds."""
    import socket

    answer = b""
    try:
        connection.settimeout(timeout)
        connection.sendall(_HTTP2_PREFACE)
        while len(answer) < 9:
            chunk = connection.recv(64)
            if not chunk:
                break
            answer += chunk
    except socket.timeout:
        pass
    except OSError:
        answer = answer or b"(the connection was reset)"
    if len(answer) >= 9 and answer[3] == _SETTINGS_FRAME:
        return
    text = answer[:40].decode("latin-1")
    shown = text.splitlines()[0] if text and text[0].isascii() and text[0].isprintable() else None  # e.g. '<!DOCTYPE HTML>', 'HTTP/1.1 400
    got = f"it answered {shown!r}" if shown else ("it said nothing" if not answer else "it does not speak gRPC")
    what, port = ("a Ray Client server", "Ray Client port (10001 by default)") if client else ("a Ray cluster's GCS", "GCS port (6379 by default, `ray start --head` prints it)")
    raise ConnectionError(
        f"expected {what} at {address}, but something else listens there ({got} within {timeout:.0f} s): "
        f"give the head's {port}, not the dashboard's (8265)"
    )


def autoscaling() -> bool:
    """Whether the cluster may add nodes (then a trial bigger than today's nodes may still fit).

    Ray does not say so through a public API; ``SWEEP_AUTOSCALING=1`` declares it (and skips the
    resource check), ``0`` or unset means the nodes there now are all there will be."""
    return os.environ.get("SWEEP_AUTOSCALING", "0").strip().lower() in ("1", "true", "yes")


def resource_shortfall(need: Mapping[str, float], nodes: list[dict[str, Any]]) -> tuple[str, str] | None:
    """``(key, message)`` when no alive node has every resource one trial needs, else None.

    ``need`` maps the sweep's ``resources.*`` keys (``cpus_per_trial``, ``gpus_per_trial``,
    ``custom.NAME``) to amounts; ``nodes`` is ``ray.nodes()``. A trial is placed on one node, so
    the largest node counts, not the cluster's total."""
    ray_name = {"cpus_per_trial": "CPU", "gpus_per_trial": "GPU"}
    alive = [n.get("Resources") or {} for n in nodes if n.get("Alive", n.get("alive", True))]
    for key, amount in need.items():
        if not amount:
            continue
        name = ray_name.get(key, key.split(".", 1)[-1])
        offered = max((float(r.get(name, 0)) for r in alive), default=0.0)
        if offered + 1e-9 < float(amount):
            what = {"CPU": "CPUs", "GPU": "GPUs"}.get(name, f"{name!r} resource")
            if offered:
                offer = f"at most {_number(offered)} {what} on one node"
            else:
                names = sorted({k for r in alive for k in r if not k.startswith(("node:", "memory", "object_store_memory"))})
                offer = f"no {what} (it offers {', '.join(names) or 'nothing'})"
            return f"resources.{key}", f"expected at most what this Ray cluster offers ({offer}), got {_number(float(amount))}"
    if alive:  # every key fits some node; all of them together must fit one node
        names = [ray_name.get(k, k.split(".", 1)[-1]) for k, v in need.items() if v]
        if not any(all(float(r.get(n, 0)) + 1e-9 >= float(need[k]) for k, n in zip([k for k, v in need.items() if v], names)) for r in alive):
            wanted = ", ".join(f"{k}={_number(float(v))}" for k, v in need.items() if v)
            return "resources", f"expected a trial that fits on one node of this Ray cluster, but no node has all of {wanted}"
    return None


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def stop_ray_for_exit() -> None:
    """Stop this process's part of Ray just before the process ends (``sweep run``/``resume``,
    once every record is closed).

    A local Ray this process started holds nothing worth a graceful stop: its processes
    (GCS, raylet, dashboard, monitors, agents, workers) get SIGKILL, as Ray's own fate sharing
    gives most of them when a driver dies. ``ray.shutdown()`` terminated them type by type,
    waiting up to 1 s each: 1.4 s of a 1.5 s finish on 2 cores; a bare exit (fate sharing
    alone) left the raylet's agents running for 20 s and more. Connected to a cluster it did not start, the
    process only disconnects (``ray.shutdown()``). Off Linux (no ``/proc``), ``ray.shutdown()``.
    """
    if "ray" not in sys.modules:
        return
    import ray

    if not ray.is_initialized():
        return
    started_here = _local_ray_processes(os.path.dirname(ray.__file__))
    if not started_here:
        ray.shutdown()
        return
    import signal

    for pid in started_here:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _local_ray_processes(ray_package: str) -> list[int]:
    """Pids of the Ray processes this process started (children whose command runs from the
    ``ray`` package, and all their descendants); empty where ``/proc`` is unreadable. The
    MLflow writer and any other child that is not Ray's are left alone."""
    children: dict[int, list[int]] = {}
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    pending = [pid for pid in children.get(os.getpid(), []) if ray_package.encode() in _command_line(pid)]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as command:
            return command.read()
    except OSError:
        return b""
