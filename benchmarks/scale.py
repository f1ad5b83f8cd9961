"""Many tiny trials: what each trial costs besides its epochs, and whether it stays flat.

    python benchmarks/scale.py                         # N = 1000 and 10000, every system (hours on 2 cores)
    python benchmarks/scale.py --sizes 1000            # one size
    python benchmarks/scale.py --quick                 # N = 200, every system (a few minutes)
    python benchmarks/scale.py --sizes 10000 --systems sweep_noop,ray_noop
    python benchmarks/scale.py --sizes 1000 --systems sweep_noop,ray_noop --repeat 3   # medians of 3 runs

Systems, each in its own subprocess with its own local Ray (2 slots), one after the other:

* ``sweep``          the full orchestrator: ``sweep.driver.runner`` with Optuna TPE + ASHA + MLflow
                     (sqlite) for every epoch, warm workers, model reuse; tiny Keras trials.
* ``sweep_rebuild``  the same with ``fit.reuse_model: false`` (a model built every trial).
* ``ray``            bare Ray Tune: a plain Keras function trainable (build, compile, fit,
                     ``tune.report`` per epoch), OptunaSearch(TPE) + ASHA, ``reuse_actors=True``,
                     no tracking.
* ``sweep_noop``     the full orchestrator with a trial that only reports 3 epochs (no Keras):
                     the orchestrator's own cost.
* ``ray_noop``       bare Ray Tune with the same no-op trial.

The workload: 32 seeded synthetic rows (24 train, 8 validation), 8 features, 2 classes; an
MLP with one hidden layer of 16; 3 epochs; space = learning rate (log 1e-3..1e-1), optimizer
(adam, sgd), batch size (8, 24); ASHA grace 1, eta 3.

Per system and N it prints: ms per trial = (end of the run - first trial's start) / N, so Ray
start-up and preflight are out and the final MLflow flush is in; driver CPU seconds and peak
RSS (the driver process: Tune's controller, the searcher, the tracker); the MLflow database
size; and for the sweep systems a check that MLflow holds exactly N child runs and one row
per reported epoch, and the wall seconds of ``sweep status``, ``sweep best`` and ``sweep
report`` on the finished sweep (each a fresh process, as a user runs it). Then the ratios
the targets name and the growth from the smallest to the largest N. Results also go to
``benchmarks/out/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
SYSTEMS = ("sweep", "sweep_rebuild", "ray", "sweep_noop", "ray_noop")
SLOTS, EPOCHS, SEED, ETA = 2, 3, 0, 3
METRIC = "val_accuracy"
LR, OPTIMIZERS, BATCHES = (1e-3, 1e-1), ["adam", "sgd"], [8, 24]
DATA = {"source": "synthetic", "samples": 32, "features": 8, "classes": 2, "validation_split": 0.25, "seed": SEED}
START_DIR_ENV = "SCALE_START_DIR"
SETTLE_S = 3.0  # pause between runs: the last run's Ray processes finish exiting before the next one starts


# =============================================================================================
# what every trial shares


def mark_first_start() -> None:
    """Each worker notes when its first trial began (the parent takes the earliest)."""
    folder = os.environ.get(START_DIR_ENV)
    if folder:
        path = Path(folder) / f"start-{os.getpid()}"
        if not path.exists():
            path.write_text(repr(time.time()))


def fake_score(hp: dict) -> float:
    """A deterministic objective for the no-op trials: best near lr 0.01 with adam."""
    import math

    score = 0.9 - 0.1 * abs(math.log10(float(hp.get("learning_rate", hp.get("lr", 0.01)))) + 2)
    return score - (0.05 if hp.get("optimizer") == "sgd" else 0.0)


def tiny_model(lr: float, optimizer: str, info: Any) -> Any:
    """The model every Keras system trains (sweep builds the same through ``mlp``)."""
    import keras

    inputs = keras.Input(shape=tuple(info.input_shape))
    x = keras.layers.Dense(16, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(x))
    opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}[optimizer]
    model.compile(optimizer=opt(learning_rate=lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# =============================================================================================
# sweep


def sweep_config(n: int, reuse_model: bool = True) -> dict:
    return {
        "name": "scale",
        "data": DATA,
        "model": {"builder": "mlp", "args": {"units": [16]}},
        "fit": {"epochs": EPOCHS, "reuse_model": reuse_model},
        "objective": {"metric": METRIC, "mode": "max"},
        "search": {
            "sampler": "tpe", "seed": SEED, "trials": n, "max_concurrent": SLOTS,
            "space": {
                "learning_rate": {"type": "float", "low": LR[0], "high": LR[1], "log": True},
                "optimizer": {"type": "categorical", "choices": OPTIMIZERS},
                "batch_size": {"type": "categorical", "choices": BATCHES},
            },
        },
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": ETA},
        "resources": {"cpus_per_trial": 1},
    }


def sweep_keras_trial(hp: dict, settings: Any, data_ref: Any, fingerprint: str, builder: Callable) -> None:
    """sweep's own Keras trial, with the start mark."""
    from sweep.worker import trainable

    mark_first_start()
    trainable.run_trial(hp, settings, data_ref, fingerprint, builder)


def sweep_noop_trial(hp: dict, settings: Any, data_ref: Any, fingerprint: str, builder: Callable) -> None:
    """Reports what a Keras trial reports (metrics, epoch, end) without training anything."""
    from ray import tune

    from sweep.protocol import END_FIELD, EPOCH_FIELD, IMPROVED_FIELD, KEYS_FIELD, TrialStatus

    mark_first_start()
    score = fake_score(hp)
    for epoch in range(1, settings.epochs + 1):
        accuracy = score * epoch / settings.epochs
        report = {"loss": 1 - accuracy, "accuracy": accuracy, "val_loss": 1 - accuracy, METRIC: accuracy}
        report.update({KEYS_FIELD: ",".join(report), EPOCH_FIELD: epoch, IMPROVED_FIELD: 1.0})
        if epoch == settings.epochs:
            report[END_FIELD] = TrialStatus.COMPLETED
        tune.report(report)


def run_sweep(n: int, work: Path, noop: bool = False, reuse_model: bool = True) -> dict:
    from sweep.driver import runner
    from sweep.driver.preflight import prepare
    from sweep.driver.session import ensure_ray
    from sweep.spec import config as config_module

    ensure_ray(num_cpus=SLOTS)
    config = config_module.load(sweep_config(n, reuse_model), {"tracking.uri": f"sqlite:///{work / 'mlflow.db'}"})
    prepared = prepare(config, "<scale>", (REPO,))
    result = runner.execute(prepared, storage=str(work / "runs"), quiet=True, trial=sweep_noop_trial if noop else sweep_keras_trial)
    ended = time.time()
    counts = mlflow_counts(work / "mlflow.db", result.parent_run_id)
    return {
        "ended": ended,
        "best": float(result.best.value) if result.best else None,
        "reported_epochs": int(result.trials["epochs"].sum()),
        "trials_recorded": len(result.trials),
        **counts,
        **cli_seconds(f"sqlite:///{work / 'mlflow.db'}", work),
    }


def cli_seconds(uri: str, work: Path) -> dict:
    """Wall seconds of ``sweep status``, ``sweep best`` and ``sweep report`` on the finished
    sweep, each a fresh process as a user runs it (imports included)."""
    timings = {}
    for command in (["status", "--json"], ["best", "--json"], ["report", "--quiet", "--out", str(work / "report")]):
        started = time.time()
        subprocess.run([sys.executable, "-m", "sweep.cli", command[0], "scale", "--tracking-uri", uri, *command[1:]],
                       check=True, capture_output=True, cwd=work)
        timings[f"cli_{command[0]}_s"] = round(time.time() - started, 2)
    return timings


def mlflow_counts(db: Path, parent_run_id: str) -> dict:
    """Child runs under the parent and their rows of the objective metric, straight from sqlite."""
    with sqlite3.connect(db) as con:
        runs = con.execute("SELECT COUNT(*) FROM tags WHERE key='mlflow.parentRunId' AND value=?", (parent_run_id,)).fetchone()[0]
        rows = con.execute(
            "SELECT COUNT(*) FROM metrics m JOIN tags t ON m.run_uuid = t.run_uuid "
            "WHERE t.key='mlflow.parentRunId' AND t.value=? AND m.key=?", (parent_run_id, METRIC),
        ).fetchone()[0]
    return {"child_runs": int(runs), "metric_rows": int(rows), "db_mb": round(db.stat().st_size / 2**20, 1)}


# =============================================================================================
# bare Ray Tune


def ray_keras_trial(config: dict, data: Any) -> None:
    """A plain Keras function trainable: build, compile, fit, report each epoch."""
    import keras
    from ray import tune

    mark_first_start()

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            tune.report({k: float(v) for k, v in (logs or {}).items()})

    keras.utils.set_random_seed(SEED)
    model = tiny_model(config["lr"], config["optimizer"], data.info)
    model.fit(data.x_train, data.y_train, batch_size=config["batch_size"], epochs=EPOCHS, validation_data=(data.x_val, data.y_val), verbose=0, callbacks=[Report()])


def ray_noop_trial(config: dict, data: Any) -> None:
    from ray import tune

    mark_first_start()
    score = fake_score(config)
    for epoch in range(1, EPOCHS + 1):
        accuracy = score * epoch / EPOCHS
        tune.report({"loss": 1 - accuracy, "accuracy": accuracy, "val_loss": 1 - accuracy, METRIC: accuracy})


def run_ray(n: int, work: Path, noop: bool = False) -> dict:
    import ray
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from sweep.inputs import data
    from sweep.spec.config import DataConfig

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # bare: no CSV/JSON/TensorBoard loggers either
    ray.init(num_cpus=SLOTS, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    dataset = data.load(DataConfig(**DATA))
    trial = ray_noop_trial if noop else ray_keras_trial
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trial, data=dataset), {"cpu": 1}),
        param_space={"lr": tune.loguniform(*LR), "optimizer": tune.choice(OPTIMIZERS), "batch_size": tune.choice(BATCHES)},
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=n, max_concurrent_trials=SLOTS, reuse_actors=True,
            search_alg=OptunaSearch(sampler=TPESampler(seed=SEED)),
            scheduler=ASHAScheduler(max_t=EPOCHS, grace_period=1, reduction_factor=ETA),
        ),
        run_config=tune.RunConfig(storage_path=str(work / "ray"), verbose=0),
    )
    results = tuner.fit()
    ended = time.time()
    values = [r.metrics.get(METRIC) for r in results]
    return {"ended": ended, "best": max(float(v) for v in values if v is not None), "trials_recorded": len(values)}


RUNNERS: dict[str, Callable[[int, Path], dict]] = {
    "sweep": lambda n, work: run_sweep(n, work),
    "sweep_rebuild": lambda n, work: run_sweep(n, work, reuse_model=False),
    "sweep_noop": lambda n, work: run_sweep(n, work, noop=True),
    "ray": lambda n, work: run_ray(n, work),
    "ray_noop": lambda n, work: run_ray(n, work, noop=True),
}


# =============================================================================================
# the parent


def child(system: str, n: int, work: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raw = RUNNERS[system](n, work)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    raw.update({"driver_cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "driver_peak_rss_mb": round(usage.ru_maxrss / 1024, 1)})
    (work / "result.json").write_text(json.dumps(raw))


def launch(system: str, n: int, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"scale-{system}-") as tmp:
        work = Path(tmp)
        (work / "starts").mkdir()
        env = {**os.environ, START_DIR_ENV: str(work / "starts"), "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        OUT.mkdir(parents=True, exist_ok=True)
        log = OUT / f"scale-{system}-{n}.log"
        launched = time.time()
        with open(log, "w") as handle:
            proc = subprocess.run([sys.executable, __file__, "--child", system, "--n", str(n), "--work", str(work)],
                                  env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, cwd=work)
        result = work / "result.json"
        if proc.returncode != 0 or not result.exists():
            tail = " | ".join(log.read_text().strip().splitlines()[-5:])[-600:]
            return {"system": system, "n": n, "error": f"exit {proc.returncode}: {tail}"}
        raw = json.loads(result.read_text())
        starts = [float(p.read_text()) for p in (work / "starts").iterdir()]
    first = min(starts)
    raw.update({"system": system, "n": n, "wall_s": round(raw["ended"] - launched, 1), "startup_s": round(first - launched, 1)})
    raw["ms_per_trial"] = round((raw["ended"] - first) * 1000 / n, 1)
    return raw


def check(row: dict) -> list[str]:
    """What must hold whatever the timings: every trial recorded, every reported epoch in MLflow."""
    problems = []
    if row["trials_recorded"] != row["n"]:
        problems.append(f"{row['trials_recorded']} trials recorded, expected {row['n']}")
    if "child_runs" in row:
        if row["child_runs"] != row["n"]:
            problems.append(f"{row['child_runs']} MLflow child runs, expected {row['n']}")
        if row["metric_rows"] != row["reported_epochs"]:
            problems.append(f"{row['metric_rows']} MLflow {METRIC} rows, expected {row['reported_epochs']} (reported epochs)")
    return problems


def print_table(rows: list[dict]) -> None:
    head = f"{'system':<14} {'N':>6} {'ms/trial':>9} {'wall s':>8} {'start s':>8} {'drv CPU s':>9} {'drv RSS MB':>10} {'MLflow MB':>9}  check"
    print(head + "\n" + "-" * len(head))
    for row in rows:
        if "error" in row:
            print(f"{row['system']:<14} {row['n']:>6}  ERROR {row['error']}")
            continue
        problems = check(row)
        verdict = "ok" if not problems else "; ".join(problems)
        if "child_runs" in row and not problems:
            verdict = f"ok ({row['child_runs']} runs, {row['metric_rows']} rows)"
        if "cli_status_s" in row:
            verdict += f"; status {row['cli_status_s']} s, best {row['cli_best_s']} s, report {row['cli_report_s']} s"
        print(f"{row['system']:<14} {row['n']:>6} {row['ms_per_trial']:>9.1f} {row['wall_s']:>8.1f} {row['startup_s']:>8.1f} "
              f"{row['driver_cpu_s']:>9.1f} {row['driver_peak_rss_mb']:>10.1f} {row.get('db_mb', ''):>9}  {verdict}")


def runs_per_system(rows: list[dict]) -> dict[tuple[str, int], list[float]]:
    """The ms/trial of every successful run per (system, N), over the repeats (``--repeat``)."""
    runs: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        if "error" not in r:
            runs.setdefault((r["system"], r["n"]), []).append(r["ms_per_trial"])
    return runs


def ratios(rows: list[dict]) -> list[str]:
    """The figures the targets name: sweep vs bare Ray at each N (medians over repeats), and growth with N."""
    spread = runs_per_system(rows)
    ok = {key: statistics.median(values) for key, values in spread.items()}
    lines = []
    for n in sorted({r["n"] for r in rows}):
        for mine, theirs, target in (("sweep", "ray", 0.5), ("sweep_noop", "ray_noop", 1.5), ("sweep_rebuild", "ray", None)):
            if (mine, n) in ok and (theirs, n) in ok:
                goal = f" (target <= {target}x)" if target else ""
                runs = len(spread[(mine, n)])
                detail = "" if runs == 1 else (
                    f" [medians of {runs} runs; {mine} {min(spread[(mine, n)])}-{max(spread[(mine, n)])}, "
                    f"{theirs} {min(spread[(theirs, n)])}-{max(spread[(theirs, n)])} ms]"
                )
                lines.append(f"N={n}: {mine} / {theirs} = {ok[(mine, n)] / ok[(theirs, n)]:.2f}x{goal}{detail}")
    sizes = sorted({n for _, n in ok})
    if len(sizes) > 1:
        low, high = sizes[0], sizes[-1]
        for system in SYSTEMS:
            if (system, low) in ok and (system, high) in ok:
                lines.append(f"{system}: ms/trial at N={high} / N={low} = {ok[(system, high)] / ok[(system, low)]:.2f}x (target <= 1.2x)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated trial counts")
    parser.add_argument("--quick", action="store_true", help="N = 200")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds per system and size")
    parser.add_argument("--repeat", type=int, default=1, help="run every system this many times, interleaved; ratios use medians")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.n, Path(args.work))
        return 0
    sizes = [200] if args.quick else [int(s) for s in args.sizes.split(",")]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; expected some of {', '.join(SYSTEMS)}")
    rows = []
    for n in sizes:
        for repeat in range(max(1, args.repeat)):
            for system in systems:
                print(f"running {system} with N={n}" + (f" (run {repeat + 1} of {args.repeat})" if args.repeat > 1 else "") + " ...", flush=True)
                rows.append(launch(system, n, args.timeout))
                time.sleep(SETTLE_S)
    print()
    print_table(rows)
    lines = ratios(rows)
    print("\n".join(lines))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps({"rows": rows, "ratios": lines}, indent=2))
    failed = [r for r in rows if "error" in r or check(r)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
