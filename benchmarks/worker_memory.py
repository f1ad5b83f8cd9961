"""Does a warm worker's memory creep? 100 consecutive trials in one process, the way a reused
Ray worker runs them: ``WorkerState.reset`` (``sweep.worker.state``), build and compile, take the worker's cached
compiled model when the architecture matches (``sweep.worker.reuse``; ``--no-reuse`` to skip), fit.

    python benchmarks/worker_memory.py [--trials 100] [--rows 4000]

Prints the process's resident memory (current, from /proc) after trials 1, 10, 25, 50 and the
last, its growth from trial 10 to the last (the first trials warm TensorFlow's caches), the
peak, and the mean reset time. Target (issue 4): growth < 50 MB over 100 trials.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--full-gc-interval", type=float, default=None, help="override the worker's full_gc_interval_s, sweep.worker.state.FULL_GC_INTERVAL_S (0: a full collection every trial)")
    parser.add_argument("--no-reuse", action="store_true", help="build every trial (fit.reuse_model: false)")
    args = parser.parse_args()

    import numpy as np

    from sweep.inputs import models
    from sweep.worker.state import STATE
    from sweep.spec.config import ModelConfig
    from sweep.inputs.dataset import DataInfo

    if args.full_gc_interval is not None:
        STATE.full_gc_interval_s = args.full_gc_interval
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 64)).astype("float32")
    y = rng.integers(0, 10, size=args.rows)
    info = DataInfo(input_shape=(64,), num_outputs=10, task="classification", n_train=args.rows, n_val=500, source="synthetic", fingerprint="bench")
    builder = models.resolve_builder(ModelConfig(builder="mlp", args={"units": [256, 256]}), ())
    marks, resets = {}, []
    for trial in range(1, args.trials + 1):
        started = time.perf_counter()
        STATE.reset(trial)
        resets.append(time.perf_counter() - started)
        hp = {"learning_rate": 1e-3, "optimizer": ["adam", "sgd", "rmsprop"][trial % 3], "batch_size": 64}
        model = models.build(builder, hp, info, ModelConfig(builder="mlp", args={"units": [256, 256]}), steps_per_execution=32)
        if not args.no_reuse:
            model, _ = STATE.models.take(model)  # as run_trial does: the compiled model of an earlier trial
        model.fit(x, y, batch_size=64, epochs=2, validation_data=(x[:500], y[:500]), verbose=0)
        del model
        if trial in (1, 10, 25, 50, args.trials):
            marks[trial] = current_rss_mb()
            print(f"after trial {trial:4d}: rss {marks[trial]:7.1f} MB", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    growth = marks[args.trials] - marks[10]
    print(f"growth trial 10 -> {args.trials}: {growth:+.1f} MB (target < 50); peak rss {peak:.0f} MB; "
          f"mean reset {1000 * sum(resets) / len(resets):.1f} ms")


if __name__ == "__main__":
    main()
