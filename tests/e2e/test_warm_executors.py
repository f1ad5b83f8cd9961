"""Warm executors (sweep.worker.executor) on real Ray: processes that keep TensorFlow between sweeps.

Sweeps run one after another in this test process, as in a notebook: the second runs its trials
on the processes the first one started, computes exactly what a sweep without warm executors
computes, and picks up a module the user edited in between. An executor whose trainable died
notices it and frees itself.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MODULE = '''
import os
from pathlib import Path

import keras
import numpy as np

SCALE = {scale}


@keras.saving.register_keras_serializable(package="warmtest")
class Scale(keras.layers.Layer):
    def call(self, x):
        return x * SCALE


def build(hp, info):
    with open(Path(__file__).with_name("pids.txt"), "a") as handle:
        handle.write(f"{{os.getpid()}}\\n")
    with open(Path(__file__).with_name("cwds.txt"), "a") as handle:
        handle.write(f"{{os.getcwd()}} {{os.environ.get('SWEEP_TRIAL_DIR', '-')}}\\n")
    inputs = keras.Input(shape=info.input_shape)
    x = keras.layers.Dense(8, activation="relu")(inputs)
    x = Scale()(keras.layers.Dense(3)(x))
    return keras.Model(inputs, keras.layers.Activation("softmax")(x))


def make(rows=300):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0.5).astype("int64")
'''


def _write_module(folder: Path, scale: float) -> None:
    path = folder / "warm_parts.py"
    path.write_text(MODULE.format(scale=scale))
    stat = path.stat()  # an edit within the same second must still look new to the importers
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def _sweep(folder: Path, name: str, warm: bool = True) -> dict:
    return {
        "name": name,
        "data": {"source": "warm_parts:make", "validation_split": 0.25},
        "model": {"builder": "warm_parts:build", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 3, "batch_size": 32},
        "objective": {"metric": "val_loss", "mode": "min"},
        "search": {"sampler": "grid", "seed": 0, "trials": 2,
                   "space": {"learning_rate": {"type": "categorical", "choices": [0.01, 0.001]}}},
        "scheduler": {"type": "fifo"},
        "resources": {"warm_workers": warm},
        "tracking": {"uri": f"sqlite:///{folder / 'mlflow.db'}"},
    }


def _histories(uri: str, name: str) -> dict[str, list[float]]:
    """Each trial's val_loss per epoch, by learning rate."""
    from mlflow.tracking import MlflowClient

    from sweep.tracking import store

    client = MlflowClient(uri)
    parent = store.find_parent_run(uri, name)
    found = {}
    for child in store.child_runs(uri, parent):
        history = sorted(client.get_metric_history(child.info.run_id, "val_loss"), key=lambda m: m.step)
        found[child.data.params["learning_rate"]] = [m.value for m in history]
    return found


def _pids(folder: Path) -> list[int]:
    path = folder / "pids.txt"
    pids = [int(line) for line in path.read_text().split()] if path.exists() else []
    path.unlink(missing_ok=True)
    return pids


def _executor_pids() -> set[int]:
    import ray

    from sweep.driver import session

    return set(ray.get([handle.warm_up.remote() for handle in session.warm_executor_handles()], timeout=120))


def test_sweeps_in_a_row_share_warm_executors_compute_the_same_and_see_edited_code(ray_session, tmp_path, monkeypatch):
    import sweep

    monkeypatch.chdir(tmp_path)
    _write_module(tmp_path, 1.0)
    storage = str(tmp_path / "runs")

    first = sweep.run(_sweep(tmp_path, "warm-a"), storage=storage, quiet=True)
    seen = [line.split(" ") for line in (tmp_path / "cwds.txt").read_text().split("\n") if line]
    trials = [(Path(cwd), Path(folder)) for cwd, folder in seen if folder != "-"]  # the driver's preflight has no trial folder
    assert len(trials) == 2 and all(cwd == tmp_path for cwd, _ in trials), (
        "each trial ran in the sweep's working directory, as a plain script's fit() does (relative data paths work)", seen)
    assert all(re.match(r"\d{4}_", folder.name) and folder.is_dir() for _, folder in trials), (
        "$SWEEP_TRIAL_DIR is the trial's own folder (Tune's), for a callback's per-trial files", seen)
    executors = _executor_pids()
    assert executors and set(_pids(tmp_path)) - {__import__("os").getpid()} <= executors, "the trials built their models on the executors"

    second = sweep.run(_sweep(tmp_path, "warm-b"), storage=storage, quiet=True)
    trial_pids = set(_pids(tmp_path)) - {__import__("os").getpid()}  # the driver's preflight builds one too
    assert trial_pids and trial_pids <= executors, "the second sweep ran on the first sweep's processes"
    assert _executor_pids() == executors

    cold = sweep.run(_sweep(tmp_path, "warm-off", warm=False), storage=storage, quiet=True)
    cold_pids = set(_pids(tmp_path)) - {__import__("os").getpid()}
    assert cold_pids and not cold_pids & executors, "warm_workers: false trains in Tune's own trial processes"

    a, b, c = (_histories(r.tracking_uri, name) for r, name in ((first, "warm-a"), (second, "warm-b"), (cold, "warm-off")))
    assert set(a) == {"0.01", "0.001"} and all(len(h) == 3 for h in a.values()), a
    for lr in a:
        assert b[lr] == pytest.approx(a[lr], rel=1e-6, abs=1e-7), f"lr {lr}: a warm executor's second sweep computes what its first did"
        assert c[lr] == pytest.approx(a[lr], rel=1e-6, abs=1e-7), f"lr {lr}: a warm executor computes what Tune's own worker does"

    _write_module(tmp_path, 0.0)  # the user edits the custom layer between two sweeps: every logit is now 0
    edited = sweep.run(_sweep(tmp_path, "warm-edited"), storage=storage, quiet=True)
    assert set(_pids(tmp_path)) - {__import__("os").getpid()} <= _executor_pids()
    for lr, history in _histories(edited.tracking_uri, "warm-edited").items():
        assert history == pytest.approx([math.log(3)] * 3, rel=1e-5), f"lr {lr}: the edited layer ran, not the cached model"


def test_an_executor_whose_trainable_died_frees_itself(ray_session):
    """The executor learns its trainable died from an object the trainable owned (OwnerDiedError)."""
    import ray

    from sweep.worker import executor

    @ray.remote(num_cpus=0)
    class Owner:
        def make(self) -> list:
            return [ray.put("alive")]

    owner = Owner.remote()
    [owned] = ray.get(owner.make.remote())
    assert executor.owner_alive(owned)
    ray.kill(owner)
    deadline = time.monotonic() + 30
    while executor.owner_alive(owned) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not executor.owner_alive(owned), "an object whose owner died reads as dead within 30 s"


def test_a_dead_executor_is_replaced_before_the_next_sweep(ray_session, tmp_path, monkeypatch):
    """An executor killed between two sweeps (out of memory, a user's kill) is replaced at the next
    sweep's start; the sweep runs normally on the pool. A handle Ray refuses to use (its cluster
    is gone: ray.shutdown() and a new Ray) is treated the same."""
    import ray

    import sweep
    from sweep.driver import session

    monkeypatch.chdir(tmp_path)
    _write_module(tmp_path, 1.0)
    sweep.run(_sweep(tmp_path, "warm-before-kill"), storage=str(tmp_path / "runs"), quiet=True)
    handles = session.warm_executor_handles()
    victim = handles[0]
    ray.kill(victim)
    result = sweep.run(_sweep(tmp_path, "warm-after-kill"), storage=str(tmp_path / "runs"), quiet=True)
    assert result.best is not None and len(result.trials) == 2 and set(result.trials["status"]) == {"completed"}
    now = session.warm_executor_handles()
    assert victim not in now and len(now) == len(handles), "the dead one was replaced"
    assert all(ray.get([handle.warm_up.remote() for handle in now], timeout=120))
