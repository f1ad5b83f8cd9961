"""Which processes ``sweep run`` kills as it ends: the local Ray it started, never its other
children (the MLflow writer may still be flushing after a bounded wait ran out)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sweep.driver import cluster

RAY_PACKAGE = "/opt/site-packages/ray"  # stands for os.path.dirname(ray.__file__)
SLEEP = "import subprocess, sys, time; {spawn}time.sleep(60)"


def _start(*args: str, spawn: bool = False) -> subprocess.Popen:
    grandchild = "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " if spawn else ""
    return subprocess.Popen([sys.executable, "-c", SLEEP.format(spawn=grandchild), *args], start_new_session=True)


def _wait_for(condition, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "the test's processes did not start in 20 s"
        time.sleep(0.05)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_only_the_children_started_from_rays_package_and_their_descendants_are_rays():
    raylet = _start(f"{RAY_PACKAGE}/core/src/ray/raylet/raylet", spawn=True)  # a raylet and its worker
    writer = _start("-m", "sweep.tracking.writer", spawn=True)  # not Ray's: never killed
    try:
        _wait_for(lambda: len(cluster._local_ray_processes(RAY_PACKAGE)) == 2)
        found = cluster._local_ray_processes(RAY_PACKAGE)
        assert raylet.pid in found and writer.pid not in found
        (worker,) = set(found) - {raylet.pid}
        assert worker != writer.pid
        assert cluster._local_ray_processes("/elsewhere/ray") == []
    finally:
        for process in (raylet, writer):
            os.killpg(process.pid, signal.SIGKILL)  # the grandchildren too
            process.wait()
