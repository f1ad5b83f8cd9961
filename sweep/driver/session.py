"""The driver's Ray session: joining a cluster or starting a local Ray, with no credential handed to it.

How each address is reached (loopback only, a cluster on loopback, Ray Client) is
``sweep.driver.cluster``; this module decides which, and what the workers inherit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

from sweep.driver import cluster
from sweep.errors import SweepConfigError
from sweep.spec.config import ResourcesConfig


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


@contextlib.contextmanager
def _our_sigterm_handler_kept() -> Iterator[None]:
    """``ray.init`` replaces the process's SIGTERM handler with its own ``sys.exit(15)`` and never
    gives it back: a SIGTERM during or after Ray's start ended ``sweep run`` silently with exit
    15 (or an abort), where the command's own handler says so and exits 143. The handler is put
    back once Ray is up; a SIGTERM during the start is that handler's interrupt."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ours = signal.getsignal(signal.SIGTERM)
    try:
        yield
    except SystemExit as exc:
        if exc.code == signal.SIGTERM and callable(ours):  # Ray's handler fired: the command's says it
            from sweep.driver.interrupts import SweepInterrupted

            raise SweepInterrupted(None, signal.SIGTERM) from None
        raise
    finally:
        if ours is not None:
            signal.signal(signal.SIGTERM, ours)


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
            try:
                with _our_sigterm_handler_kept():
                    ray.init(address=address, runtime_env=env, **common)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:  # something answers, but not a Ray GCS
                from sweep.errors import one_line

                raise SweepConfigError("--address", "", f"{address}: expected a running Ray cluster, but joining it failed: {one_line(exc)}") from None
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
        with cluster.loopback_only(), _our_sigterm_handler_kept():  # otherwise Ray 2.x on Linux listens on every interface
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **common)


# ---------------------------------------------------------------------------------------------
# warm trial executors (sweep.worker.executor): kept by this driver process from sweep to sweep

_POOL: dict[str, Any] = {"key": None, "handles": [], "fresh": 0, "active": False}


def warm_executors_apply(resources: ResourcesConfig, address: str | None) -> bool:
    """Whether a sweep with ``resources`` runs its trials on warm executors: CPU-only trials
    (GPU visibility is fixed per process when TensorFlow starts) on a single-node Ray this
    driver runs on (an executor hands its checkpoint folders to the trainable by path), with
    ``resources.warm_workers`` on; ``SWEEP_WARM_WORKERS=0`` turns them off for a machine."""
    if not resources.warm_workers or resources.gpus_per_trial > 0 or resources.custom:
        return False
    if address or os.environ.get("RAY_ADDRESS") or os.environ.get("SWEEP_WARM_WORKERS", "1") == "0":
        return False
    import ray

    return ray.is_initialized() and len([n for n in ray.nodes() if n.get("Alive")]) == 1


def start_warm_executors(resources: ResourcesConfig, trials: int, max_concurrent: int | None, address: str | None) -> None:
    """Right after Ray is up: make sure this sweep has its executors, importing TensorFlow while
    the driver goes on (its preflight, the tracker, Tune's start). As many as trials can run at
    once here (the node's CPUs over ``cpus_per_trial``, at most ``trials`` and ``max_concurrent``).
    Returns at once; an earlier sweep's executors with the same ``cpus_per_trial`` are kept."""
    try:
        _POOL["active"] = warm_executors_apply(resources, address)
        if _POOL["active"]:
            _start_executors(resources, trials, max_concurrent)
    except Exception as exc:  # an optimization: the trials then run in Tune's own processes
        logging.getLogger("sweep").debug("warm executors not started: %s", exc)
        _POOL["active"] = False


def _start_executors(resources: ResourcesConfig, trials: int, max_concurrent: int | None) -> None:
    import ray

    slots = int(ray.cluster_resources().get("CPU", 0) // resources.cpus_per_trial)
    wanted = max(0, min(slots, trials, max_concurrent or slots))
    # the node's id, not the job's: a Ray started again in this process (after ray.shutdown())
    # reuses job id 01000000, and the old handles point at actors of a cluster that is gone
    key = (ray.get_runtime_context().get_node_id(), resources.cpus_per_trial)
    if _POOL["key"] != key:
        _discard(_POOL["handles"])
        _POOL.update(key=key, handles=[], fresh=0)
    handles = _POOL["handles"]
    first = None
    while len(handles) < wanted:
        # the first imports TensorFlow beside the driver's start-up, the others once it is done
        # (or when a trial reaches them first), so the first epoch is not slowed by several
        # imports sharing the cores at once
        handle, imported = _new_executor(resources.cpus_per_trial, after=first)
        if first is None:
            first = imported
        handles.append(handle)
        _POOL["fresh"] += 1


def warm_executors(timeout_s: float = 30.0) -> tuple[Any, ...]:
    """This sweep's executors (after :func:`start_warm_executors`): those an earlier sweep used
    are first freed of any trial its killed trainables left running (it ends at its epoch's
    end; waited for at most ``timeout_s``, saying so past 2 s), and a dead or stuck one is
    replaced. Empty when warm executors do not apply to this sweep."""
    if not _POOL["active"] or not _POOL["handles"]:
        return ()
    try:
        return _freed_executors(timeout_s)
    except Exception as exc:  # an optimization: the trials then run in Tune's own processes
        logging.getLogger("sweep").debug("warm executors not used: %s", exc)
        _POOL.update(key=None, handles=[], fresh=0, active=False)
        return ()


def _freed_executors(timeout_s: float) -> tuple[Any, ...]:
    import sys

    import ray

    handles, fresh = _POOL["handles"], _POOL["fresh"]
    checks = [_abort(handle) for handle in handles[: len(handles) - fresh]]
    sent = [check for check in checks if check is not None]
    _, pending = ray.wait(sent, num_returns=len(sent), timeout=2.0) if sent else ([], [])
    if pending:
        print(f"waiting up to {timeout_s:.0f} s for {len(pending)} warm worker(s) to end the epoch an interrupted sweep left running", file=sys.stderr)
    for index, check in enumerate(checks):
        try:
            if check is None or not ray.get(check, timeout=timeout_s):
                raise TimeoutError("its trial did not end")
        except Exception:  # dead (killed, out of memory) or stuck: a new one takes its place
            _discard([handles[index]])
            handles[index], _ = _new_executor(_POOL["key"][1])
    _POOL["fresh"] = 0
    return tuple(handles)


def warm_executor_handles() -> tuple[Any, ...]:
    """The executors this driver keeps now (for tools and tests; a sweep uses :func:`warm_executors`)."""
    return tuple(_POOL["handles"])


def free_warm_executors() -> None:
    """After a sweep: end any trial still running on an executor (its trainable was killed by a
    Ctrl-C or a failure), without waiting; the next sweep waits for it (:func:`warm_executors`)."""
    for handle in _POOL["handles"]:
        _abort(handle)


def _abort(handle: Any) -> Any:
    """``handle.abort.remote()``, or None when Ray refuses to send it (the actor's cluster is gone)."""
    try:
        return handle.abort.remote()
    except Exception:
        return None


def _new_executor(cpus_per_trial: float, after: Any = None) -> tuple[Any, Any]:
    """A new executor on this node, told to import TensorFlow once ``after`` (an ObjectRef, or
    None: now) is ready; the handle and the reference to its import's end."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from sweep.worker.executor import TrialExecutor

    node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    handle = ray.remote(TrialExecutor).options(num_cpus=0, max_concurrency=4, scheduling_strategy=node).remote(cpus_per_trial)
    return handle, handle.warm_up.remote(after)


def _discard(handles: list[Any]) -> None:
    import ray

    for handle in handles:
        try:
            ray.kill(handle)
        except Exception:
            pass
