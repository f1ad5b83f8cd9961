"""The local Ray a sweep starts: its workers get the sweep's environment without a job runtime_env.

A job runtime_env would keep the trial actors off the idle workers Ray prestarts, so the
variables reach the workers through the environment they inherit (``session.ensure_ray``).
"""

from __future__ import annotations

import os


def test_workers_of_the_local_ray_see_the_sweep_environment(ray_session):
    import ray

    @ray.remote(num_cpus=1)
    def worker_environment() -> dict[str, str | None]:
        import os

        names = ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND", "PYTHONWARNINGS", "TUNE_FUNCTION_THREAD_TIMEOUT_S")
        return {name: os.environ.get(name) for name in names}

    seen = ray.get(worker_environment.remote())
    assert seen["KERAS_BACKEND"] == "tensorflow"
    assert seen["TF_CPP_MIN_LOG_LEVEL"] == os.environ["TF_CPP_MIN_LOG_LEVEL"] and seen["TF_CPP_MIN_LOG_LEVEL"] is not None
    assert seen["PYTHONWARNINGS"] == "ignore"
    # A stopped trial's thread gets 30 s to end on a reused worker (Ray's default, 2 s, broke reuse).
    assert seen["TUNE_FUNCTION_THREAD_TIMEOUT_S"] == os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30") == "30"


def test_the_local_ray_has_no_job_runtime_env(ray_session):
    import ray

    assert not ray.get_runtime_context().runtime_env


def test_the_sweep_environment_wins_over_the_drivers_as_a_runtime_env_did(tmp_path):
    """A user who exports KERAS_BACKEND=jax still gets TensorFlow workers; the driver's own
    TensorFlow log level is left as it was. A fresh driver process with its own local Ray."""
    import subprocess
    import sys

    script = (
        "import os, ray\n"
        "from sweep.driver.session import ensure_ray\n"
        "ensure_ray(num_cpus=1)\n"
        "@ray.remote(num_cpus=1)\n"
        "def seen():\n"
        "    import os\n"
        "    return os.environ.get('KERAS_BACKEND'), os.environ.get('PYTHONWARNINGS'), os.environ.get('TF_CPP_MIN_LOG_LEVEL')\n"
        "print(*ray.get(seen.remote()))\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(KERAS_BACKEND="jax", PYTHONWARNINGS="default", TF_CPP_MIN_LOG_LEVEL="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["tensorflow", "ignore", "1"]


def test_ray_init_does_not_keep_the_commands_sigterm_handler():
    """ray.init sets SIGTERM to sys.exit(15) and keeps it: a SIGTERM while Ray started ended
    `sweep run` silently with exit 15, where the command says it stopped and exits 143."""
    import signal

    import pytest

    from sweep.driver.interrupts import SweepInterrupted
    from sweep.driver.session import _our_sigterm_handler_kept

    def ours(signum, frame):
        raise SweepInterrupted(None, signum)

    def rays(signum, frame):  # what ray.init installs
        raise SystemExit(signum)

    before = signal.signal(signal.SIGTERM, ours)
    try:
        with _our_sigterm_handler_kept():
            signal.signal(signal.SIGTERM, rays)
        assert signal.getsignal(signal.SIGTERM) is ours, "given back once Ray is up"
        with pytest.raises(SweepInterrupted) as caught, _our_sigterm_handler_kept():
            signal.signal(signal.SIGTERM, rays)
            rays(signal.SIGTERM, None)  # the signal arriving during the start
        assert caught.value.signum == signal.SIGTERM and signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, before)
