"""The driver's Ray session: joining a cluster or starting a local Ray, with no credential handed to it.

How each address is reached (loopback only, a cluster on loopback, Ray Client) is
``sweep.driver.cluster``; this module decides which, and what the workers inherit.
"""

from __future__ import annotations

import logging
import os

from sweep.driver import cluster
from sweep.errors import SweepConfigError


def is_secret_name(name: str) -> bool:
    """An environment variable that holds a credential (AWS_SECRET_ACCESS_KEY, *_TOKEN, *_PASSWORD, ...)."""
    import re

    return bool(re.search(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|API_KEY|PRIVATE_KEY", name.upper()))


def withhold_secrets_from_ray() -> None:
    """Ray Tune copies AWS_* credentials from the driver's environment into every trial actor's
    runtime_env, and Ray's runtime env agent writes runtime_envs in clear to its log (a world-
    readable file under the temp folder, kept after the sweep). The sweep never hands them over:
    a local Ray's workers inherit the driver's environment anyway; a cluster's nodes use their own."""
    from ray.tune.execution import class_cache

    names = class_cache.ENV_VARS_TO_PROPAGATE
    if any(is_secret_name(name) for name in names):
        class_cache.ENV_VARS_TO_PROPAGATE = type(names)(name for name in names if not is_secret_name(name))


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (or RAY_ADDRESS); else start a local Ray bound to 127.0.0.1."""
    import ray

    withhold_secrets_from_ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow", "PYTHONWARNINGS": "ignore"}}
    # A reused worker waits this long for a stopped trial's thread to end; past it (Ray's default
    # is 2 s, less than one busy epoch on 2 cores) the reuse fails and the *next* trial errors.
    env["env_vars"]["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = os.environ.get("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")
    common = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address:
        address = cluster.bootstrap_address(address)  # "auto" -> the HOST:PORT Ray would pick
        try:  # seconds, and Ctrl-C works: ray.init of a dead address retries for minutes in C++
            cluster.check_address(address)
        except ConnectionError as exc:
            raise SweepConfigError("--address", "", f"{address}: {exc}") from None
        with cluster.connecting(address):  # a loopback-only cluster is joined on loopback
            ray.init(address=address, runtime_env=env, **common)
    else:
        # A local Ray's workers inherit this process's environment, so the variables go there
        # rather than into a job runtime_env: Ray prestarts idle workers when it starts, and
        # only a job without a runtime_env can hand them to the trial actors (with one, they
        # sat unused while each actor started a process of its own). The values win over the
        # driver's, as the runtime_env's did (workers run Keras on TensorFlow whatever
        # KERAS_BACKEND a user exports), except TensorFlow's log level: the driver's own is kept.
        for name, value in env["env_vars"].items():
            if name == "TF_CPP_MIN_LOG_LEVEL":
                os.environ.setdefault(name, value)
            else:
                os.environ[name] = value
        with cluster.loopback_only():  # otherwise Ray 2.x on Linux listens on every interface
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **common)
