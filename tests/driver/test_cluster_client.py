"""Connecting over Ray Client: which failures are tried again.

The head's per-client server dying while it starts cannot be produced on purpose here (it was
seen once, in CI, on 2 loaded cores), so ``ray.init`` is replaced by a stand-in that fails the
way Ray does; the e2e test in ``tests/e2e/test_cluster.py`` runs the real connection.
"""

from __future__ import annotations

import pytest

from sweep.driver import cluster

START_FAILURE = (
    "Initialization failure from server:\nTraceback (most recent call last):\n"
    "RuntimeError: Starting Ray client server failed. See ray_client_server_23001.err for detailed logs."
)


def test_only_a_client_server_that_failed_to_start_is_worth_another_try():
    assert cluster.is_client_server_start_failure(ConnectionAbortedError(START_FAILURE))
    assert not cluster.is_client_server_start_failure(ConnectionAbortedError("Initialization failure from server: version mismatch"))
    assert not cluster.is_client_server_start_failure(ConnectionError(START_FAILURE))


def _flaky_init(failures: list[BaseException]):
    calls = []

    def init(**kwargs):
        calls.append(kwargs)
        if failures:
            raise failures.pop(0)

    return init, calls


@pytest.fixture()
def address():
    """A ray:// address where a gRPC server seems to listen: it answers each connection with an
    HTTP/2 SETTINGS frame, as Ray's client server does (the check before ray.init passes)."""
    import socket
    import threading

    def answer(listening: socket.socket) -> None:
        while True:
            try:
                connection, _ = listening.accept()
            except OSError:  # closed: the test is over
                return
            with connection:
                connection.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        threading.Thread(target=answer, args=(listening,), daemon=True).start()
        yield f"ray://127.0.0.1:{listening.getsockname()[1]}"


def test_the_connection_is_tried_again_after_a_start_failure(monkeypatch, capsys, address):
    import ray

    init, calls = _flaky_init([ConnectionAbortedError(START_FAILURE), ConnectionAbortedError(START_FAILURE)])
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(cluster.time, "sleep", lambda seconds: None)
    cluster._connect_client(address, {"env_vars": {}})
    assert len(calls) == 3 and calls[-1]["address"] == address
    assert "trying again" in capsys.readouterr().err


def test_other_connection_errors_and_the_last_try_are_one_line_naming_the_address(monkeypatch, address):
    import ray

    from sweep.errors import SweepConfigError

    monkeypatch.setattr(cluster.time, "sleep", lambda seconds: None)
    init, calls = _flaky_init([ConnectionAbortedError("Initialization failure from server: version mismatch")])
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(SweepConfigError, match=r"^--address: ray://.*connecting failed: .*version mismatch"):
        cluster._connect_client(address, {})
    assert len(calls) == 1

    init, calls = _flaky_init([ConnectionAbortedError(START_FAILURE)] * cluster.CLIENT_CONNECT_ATTEMPTS)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(SweepConfigError, match="Starting Ray client server failed"):
        cluster._connect_client(address, {})
    assert len(calls) == cluster.CLIENT_CONNECT_ATTEMPTS
