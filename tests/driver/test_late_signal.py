"""A SIGTERM that comes once the trials ran to their end (while the records close, or after)
stops nothing: the sweep ended, its exit code is its own, never 143. The SLURM script requeues a
143, and ``sweep run`` of a finished sweep's file starts a new sweep (every trial again)."""

from __future__ import annotations

import argparse
import os
import signal
from types import SimpleNamespace

import pytest

from sweep import cli
from sweep.driver import runner
from sweep.driver.interrupts import SweepInterrupted


@pytest.fixture(autouse=True)
def _signal_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _sweep() -> SimpleNamespace:
    config = SimpleNamespace(name="late", search=SimpleNamespace(sampler="random", trials=2))
    return SimpleNamespace(config=config, fail_fast=SimpleNamespace(halt=None), ledger=SimpleNamespace(outcomes={}))


def _fit_and_finish(monkeypatch, signal_in_fit: bool, signal_in_finish: bool) -> tuple[object, list[str], object]:
    statuses: list[str] = []
    result = object()

    def finish(sweep, status, stop):
        statuses.append(status)
        stop.closing = True  # as runner._finish does first
        if signal_in_finish:
            os.kill(os.getpid(), signal.SIGTERM)  # the sweep's handler is still installed while closing
        stop.restore()
        return result

    def fit():
        if signal_in_fit:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(runner, "_finish", finish)
    monkeypatch.setattr(runner, "_prewarm_finish", lambda ledger, stopped: None)
    return runner._fit_and_finish(_sweep(), SimpleNamespace(fit=fit), 0), statuses, result


def test_a_sigterm_while_a_finished_sweep_closes_its_records_is_not_an_interrupt(monkeypatch, capsys):
    try:
        returned, statuses, result = _fit_and_finish(monkeypatch, signal_in_fit=False, signal_in_finish=True)
    except KeyboardInterrupt as exc:  # a KeyboardInterrupt would end the whole pytest session
        pytest.fail(f"a finished sweep raised {exc!r}")
    assert returned is result and statuses == ["FINISHED"]
    said = capsys.readouterr().err
    assert "SIGTERM: the trials have ended; finishing the sweep's records" in said and "stopping the trials" not in said, said


def test_a_sigterm_while_the_trials_run_still_interrupts_the_sweep(monkeypatch):
    with pytest.raises(SweepInterrupted) as raised:
        _fit_and_finish(monkeypatch, signal_in_fit=True, signal_in_finish=False)
    assert raised.value.signum == signal.SIGTERM and raised.value.name == "late"


def test_a_sigterm_after_the_sweep_returned_leaves_the_exit_code_alone(monkeypatch):
    import sweep

    def finish_run(args, result):
        os.kill(os.getpid(), signal.SIGTERM)  # as the summary prints, or Ray shuts down at exit
        return cli.EXIT_OK

    monkeypatch.setattr(sweep, "run", lambda *a, **k: SimpleNamespace())
    monkeypatch.setattr(cli, "_finish_run", finish_run)
    args = argparse.Namespace(file="s.yaml", set=[], quiet=True, json=False, storage=None, address=None, name=None, trials=None,
                              tracking_uri=None, fresh=False, epochs=None)
    monkeypatch.setattr(cli, "_set_overrides", lambda args: {})
    try:
        assert cli._cmd_run(args) == cli.EXIT_OK
    except KeyboardInterrupt as exc:
        pytest.fail(f"a finished sweep raised {exc!r}")


def test_nohup_keeps_a_sweep_running_when_the_terminal_closes():
    """Under ``nohup`` (SIGHUP ignored) the user asked the sweep to outlive the terminal: SIGHUP
    is then not among the signals that stop it; otherwise it is (a closed terminal)."""
    import signal

    from sweep.driver.interrupts import stop_signals

    saved = signal.getsignal(signal.SIGHUP)
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert stop_signals() == (signal.SIGINT, signal.SIGTERM)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert stop_signals() == (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, saved)
