"""The end of a sweep: the report built beside the best model's logging, its wait bounded."""

from __future__ import annotations

import threading
import time

from sweep.driver import runner


def test_a_report_that_never_ends_is_one_problem_line_after_the_bound(monkeypatch):
    monkeypatch.setattr(runner, "REPORT_WAIT_S", 0.2)
    release = threading.Event()
    slow = threading.Thread(target=release.wait, daemon=True)
    slow.start()
    problems: list[str] = []
    began = time.monotonic()
    runner._wait_for_report(slow, problems, "digits")
    assert time.monotonic() - began < 2
    assert problems == ["the report: not done after 0.2 s; `sweep report digits` builds it from MLflow"]
    release.set()


def test_a_finished_report_adds_nothing():
    done = threading.Thread(target=lambda: None)
    done.start()
    problems: list[str] = []
    runner._wait_for_report(done, problems, "digits")
    assert problems == []
