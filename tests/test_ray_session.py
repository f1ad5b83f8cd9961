"""The local Ray a sweep starts: its workers get the sweep's environment without a job runtime_env.

A job runtime_env would keep the trial actors off the idle workers Ray prestarts, so the
variables reach the workers through the environment they inherit (``runner.ensure_ray``).
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
