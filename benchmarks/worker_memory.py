"""Does a warm worker's memory creep? 100 consecutive trials in one process, the way a reused
Ray worker runs them: ``WorkerState.reset`` (``sweep.worker.state``), build and compile, take the worker's cached
compiled model when the architecture matches (``sweep.worker.reuse``; ``--no-reuse`` to skip), fit.

    python benchmarks/worker_memory.py [--trials 100] [--rows 4000] [--architectures 9]
    python benchmarks/worker_memory.py --ray [--trials 200] [--no-reuse]

Prints the process's resident memory (current, from /proc) after trials 1, 10, 25, 50 and the
last, its growth from trial 10 to the last (the first trials warm TensorFlow's caches), the
peak, and the mean reset time. Target (issue 18, section 5): growth < 50 MB over 100 trials.

``--ray`` measures the same on real Ray workers: a sweep of ``--trials`` short digits trials on
2 warm workers (27 model signatures: 3 widths x 3 optimizers x 3 batch sizes, so the compiled
model cache fills and evicts), each worker's current resident memory read back from MLflow
(``worker/rss_mb`` at each trial's last epoch) in the order the worker ran its trials (from
``SWEEP_TRACE_DIR``). Growth is the median of a worker's trials 6-15 to that of its trials
91-100 (single readings move by tens of MB with the garbage collector's timing).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--full-gc-interval", type=float, default=None, help="override the worker's full_gc_interval_s, sweep.worker.state.FULL_GC_INTERVAL_S (0: a full collection every trial)")
    parser.add_argument("--no-reuse", action="store_true", help="build every trial (fit.reuse_model: false)")
    parser.add_argument("--architectures", type=int, default=1, help="how many layer widths the trials cycle through (x 3 optimizers = the signatures; more than the cache holds makes it evict)")
    parser.add_argument("--ray", action="store_true", help="a real sweep on 2 Ray workers instead of trials in this process")
    args = parser.parse_args()
    if args.ray:
        ray_workers(args.trials, reuse=not args.no_reuse)
        return

    import numpy as np

    from sweep.inputs import models
    from sweep.worker.resources import current_rss_mb
    from sweep.worker.state import STATE
    from sweep.spec.config import ModelConfig
    from sweep.inputs.dataset import DataInfo

    if args.full_gc_interval is not None:
        STATE.full_gc_interval_s = args.full_gc_interval
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 64)).astype("float32")
    y = rng.integers(0, 10, size=args.rows)
    info = DataInfo(input_shape=(64,), num_outputs=10, task="classification", n_train=args.rows, n_val=500, source="synthetic", fingerprint="bench")
    builder = models.resolve_builder(ModelConfig(builder="mlp", args={"units": [256, 256]}), ())  # the builder; its units vary per trial
    marks, resets = {}, []
    for trial in range(1, args.trials + 1):
        started = time.perf_counter()
        STATE.reset(trial)
        resets.append(time.perf_counter() - started)
        hp = {"learning_rate": 1e-3, "optimizer": ["adam", "sgd", "rmsprop"][trial % 3], "batch_size": 64}
        width = 256 + 8 * ((trial // 3) % args.architectures)
        model_config = ModelConfig(builder="mlp", args={"units": [width, 256]})
        model = models.build(builder, hp, info, model_config, steps_per_execution=32)
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


def ray_workers(trials: int, reuse: bool) -> None:
    """A real sweep on 2 Ray workers; each worker's current RSS per trial, in the order it ran them."""
    import collections
    import glob
    import json
    import sqlite3
    import statistics
    import tempfile

    import sweep

    folder = tempfile.mkdtemp(prefix="worker-memory-")
    trace = os.path.join(folder, "trace")
    os.mkdir(trace)
    os.environ["SWEEP_TRACE_DIR"] = trace
    spec = {
        "name": "worker-memory",
        "data": {"source": "digits", "validation_split": 0.2},
        "model": {"builder": "mlp", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        "fit": {"epochs": 2, "reuse_model": reuse},
        "objective": {"metric": "val_accuracy", "mode": "max"},
        "search": {"seed": 5, "trials": trials, "space": {
            "learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64]},
            "units": {"type": "categorical", "choices": [32, 64, 128]},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
        }},
        "scheduler": {"type": "fifo"},
        "tracking": {"uri": f"sqlite:///{folder}/mlflow.db"},
    }
    started = time.perf_counter()
    sweep.run(spec, storage=os.path.join(folder, "runs"), quiet=True)
    wall = time.perf_counter() - started
    db = sqlite3.connect(os.path.join(folder, "mlflow.db"))
    rss = dict(db.execute(
        """select (select value from tags t where t.run_uuid = m.run_uuid and t.key = 'sweep.trial_id'),
                  m.value from metrics m
           where m.key = 'worker/rss_mb' and m.step = (select max(step) from metrics n
                 where n.run_uuid = m.run_uuid and n.key = 'worker/rss_mb')"""))
    order: dict[int, list[str]] = collections.defaultdict(list)
    reused: dict[int, int] = collections.Counter()
    for path in sorted(glob.glob(os.path.join(trace, "trace-*.jsonl"))):
        for line in open(path):
            event = json.loads(line)
            if event.get("event") == "trial_start" and event.get("trial") not in order[event["pid"]]:
                order[event["pid"]].append(event["trial"])
            if event.get("event") == "model_ready" and event.get("reused"):
                reused[event["pid"]] += 1
    print(f"{trials} trials on 2 workers, reuse_model={reuse}: {wall:.0f} s")
    for pid, names in order.items():
        values = [rss[name] for name in names if name in rss]
        if len(values) < 25:
            print(f"worker {pid}: {len(values)} trials (too few to judge)")
            continue
        marks = ", ".join(f"{n} {values[n - 1]:.0f}" for n in (1, 10, 25, 50, 75, 100) if n <= len(values))
        last = min(len(values), 100)
        early, late = statistics.median(values[5:15]), statistics.median(values[last - 10:last])
        print(f"worker {pid}: {len(values)} trials, {reused[pid]} on a reused model; rss MB at trial {marks}, max {max(values):.0f}; "
              f"growth, median of trials 6-15 -> {last - 9}-{last}: {late - early:+.1f} MB (target < 50)")


if __name__ == "__main__":
    main()
