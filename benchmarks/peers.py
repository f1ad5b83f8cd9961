"""Side-by-side benchmark: the same Keras sweep through ``sweep`` and its peers.

    python benchmarks/peers.py            # default size: 16k x 64 rows, 24 trials, <= 9 epochs (< 10 min on 2 cores)
    python benchmarks/peers.py --quick    # 4k rows, 8 trials, <= 3 epochs (< 2 min)
    python benchmarks/peers.py --systems sweep,optuna --profile
    python benchmarks/peers.py --repeat 3 # every system 3 times, interleaved; medians (~15 min)
    python benchmarks/peers.py --workload images --quick   # the image-folder CNN workload (< 5 min)
    python benchmarks/peers.py --workload both             # the tabular workload, then the images
    python benchmarks/peers.py --workload images --long    # issue 21's long workload: 48 trials, <= 27 epochs

Systems, each run in its own subprocess, one after the other (so one's memory and threads do
not affect the next):

* ``sweep``       ``sweep.run(dict)``: warm workers, checkpoints on improvement, async MLflow.
* ``ray``         the Ray Tune docs recipe: function trainable + ``TuneReportCheckpointCallback``
                  + OptunaSearch + ASHA + ``MLflowLoggerCallback``, default settings (no actor reuse).
* ``ray_reuse``   the same with ``reuse_actors=True``.
* ``optuna``      Optuna alone, ``n_jobs`` = slots (threads), ``KerasPruningCallback``,
                  ``SuccessiveHalvingPruner``, ``MLflowCallback``.
* ``kerastuner``  KerasTuner Hyperband (one process: KerasTuner has no in-process parallelism,
                  so its slots are 1 and TensorFlow uses every core; no MLflow integration).

Same data (seeded synthetic classification, 64 features, 10 classes, via ``sweep.inputs.data``), same
model (256-256 MLP, softmax), same space (lr log 1e-4..1e-1, batch 16/32/64/128,
adam/sgd/rmsprop), same trial budget, same epoch budget (ASHA / halving with eta 3), 2 slots,
each system's MLflow in its own temporary sqlite store.

Every system's trial code uses the same tiny Keras callback (``sweep.worker.resources.EpochTimer``) to
time each epoch inside ``fit()`` and writes trial start/end and epoch events to JSON lines
(``SWEEP_TRACE_DIR``); the parent reads those and computes, identically for all systems:
wall time (process start to best printed), epochs trained, best val_accuracy, time to reach
the final best, utilization = seconds inside fit epochs / (sweep-phase wall x slots),
overhead per trial = (sweep-phase wall x slots - seconds inside fit) / trials, and start-up
time before the first trial. Results: a table on the terminal, ``benchmarks/out/peers.json``
and ``benchmarks/out/peers.png`` (best-so-far objective vs wall time).

Workloads (``--workload tabular|images|both``, default ``tabular``):

* ``tabular`` (above): arrays in memory; the peers get the arrays ``sweep`` loaded.
* ``images``: a folder of small grayscale PNGs (10 classes, a coarse pattern per class, shifted,
  in noise) that the benchmark writes once into a temporary folder, read with ``tf.data``
  (``keras.utils.image_dataset_from_directory``, 20 % validation) **where the trials run**, and a
  small CNN (``Rescaling(1/255)``, two conv blocks, dense 64): ``benchmarks/image_workload.py``.
  ``sweep`` gets its data function ``image_workload:load`` (the module next to the sweep, as a
  user's) and builds the pipelines on each worker at the trial's batch size; the Ray Tune docs
  recipe (with and without actor reuse) and Optuna call the same function in every trial, as
  their docs do; KerasTuner loads the folder once, unbatched, and batches it per trial at the
  searched batch size (``tuner.search(train_ds, validation_data=val_ds)``). Same space, trial
  and epoch budgets, ASHA / halving settings as ``tabular``. Default: 300 images per class at
  28x28, 24 trials, <= 9 epochs; ``--quick``: 200 per class at 16x16, 8 trials, <= 3 epochs.
  Its report: ``benchmarks/out/peers-images.json`` / ``.png``, logs ``images-SYSTEM.log``.

Timings depend on the machine and on what else runs on it; compare systems only within one
invocation. On 2 cores one run's figures move by several percent (which trial ASHA leaves
running alone at the end decides a second of idle slot), so ``--repeat N`` runs the systems
N times, interleaved, and reports each figure's median; the targets are checked on those.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = REPO / "benchmarks" / "out"
SYSTEMS = ("sweep", "ray", "ray_reuse", "optuna", "kerastuner")
LABELS = {
    "sweep": "sweep",
    "ray": "Ray Tune docs recipe",
    "ray_reuse": "Ray Tune + reuse_actors",
    "optuna": "Optuna n_jobs=2",
    "kerastuner": "KerasTuner Hyperband",
}
SIZES = {
    "default": {"rows": 16000, "trials": 24, "epochs": 9, "slots": 2},
    "quick": {"rows": 4000, "trials": 8, "epochs": 3, "slots": 2},
}
# the image workload: images per class, side in pixels, noise (std of the pixel noise, 0..255)
IMAGE_SIZES = {
    "default": {"images_per_class": 300, "side": 28, "noise": 140, "trials": 24, "epochs": 9, "slots": 2},
    "quick": {"images_per_class": 200, "side": 16, "noise": 55, "trials": 8, "epochs": 3, "slots": 2},
    # issue 21's long workload, where users spend their time: several minutes per system
    "long": {"images_per_class": 300, "side": 28, "noise": 140, "trials": 48, "epochs": 27, "slots": 2},
}
WORKLOADS = ("tabular", "images")
METRIC = "val_accuracy"
LR, BATCHES, OPTIMIZERS = (1e-4, 1e-1), [16, 32, 64, 128], ["adam", "sgd", "rmsprop"]
SEED, ETA = 0, 3


# =============================================================================================
# the shared workload


def data_config(size: dict) -> dict:
    return {"source": "synthetic", "samples": size["rows"], "features": 64, "classes": 10, "validation_split": 0.2, "seed": SEED}


def load_data(size: dict) -> Any:
    """The arrays every system trains on: exactly what ``sweep`` loads for the same keys."""
    from sweep.inputs import data
    from sweep.spec.config import DataConfig

    return data.load(DataConfig(**data_config(size)))


def build_model(lr: float, optimizer: str, info: Any) -> Any:
    """The 256-256 MLP every peer builds (sweep builds the same through its ``mlp`` builder)."""
    import keras

    inputs = keras.Input(shape=tuple(info.input_shape))
    x = keras.layers.Dense(256, activation="relu")(inputs)
    x = keras.layers.Dense(256, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(x))
    opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}[optimizer]
    model.compile(optimizer=opt(learning_rate=lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def timing_callbacks(trial: str) -> tuple[Any, list]:
    """The trace and the epoch timer every system's trial code uses (the same callback for all)."""
    from sweep.worker import resources

    trace = resources.Trace(str(trial))
    return trace, [resources.EpochTimer(trace, METRIC)]


# =============================================================================================
# the systems (each runs in its own process)


def run_sweep(size: dict, work: Path, name: str = "bench-sweep") -> float:
    return _sweep_run(size, work, name, data_config(size), {"builder": "mlp", "args": {"units": [256, 256]}})


def sweep_config(size: dict, name: str, data: dict, model: dict) -> dict:
    """The sweep file of the workload (as a dict): the peers' space, schedulers and budget."""
    return {
        "name": name,
        "data": data,
        "model": model,
        "fit": {"epochs": size["epochs"]},
        "objective": {"metric": METRIC, "mode": "max"},
        "search": {
            "sampler": "tpe",
            "seed": SEED,
            "trials": size["trials"],
            "max_concurrent": size["slots"],
            "space": {
                "learning_rate": {"type": "float", "low": LR[0], "high": LR[1], "log": True},
                "batch_size": {"type": "categorical", "choices": BATCHES},
                "optimizer": {"type": "categorical", "choices": OPTIMIZERS},
            },
        },
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": ETA},
        "resources": {"cpus_per_trial": 1},
    }


def _sweep_run(size: dict, work: Path, name: str, data: dict, model: dict) -> float:
    import sweep
    from sweep.driver.session import ensure_ray

    config = sweep_config(size, name, data, model)
    if (os.cpu_count() or 1) != size["slots"]:  # else sweep.run starts Ray itself, as a user's run does (alongside its preflight)
        ensure_ray(num_cpus=size["slots"])
    result = sweep.run(config, storage=str(work / "runs"), tracking_uri=f"sqlite:///{work / 'mlflow.db'}", quiet=True)
    return float(result.best.value)


def _ray_trainable(config: dict, data: Any) -> None:
    """The docs recipe's function trainable (plus the shared epoch timer)."""
    from ray import tune
    from ray.tune.integration.keras import TuneReportCheckpointCallback

    trace, timers = timing_callbacks(tune.get_context().get_trial_id())
    trace.mark("trial_start")
    dataset = data  # tune.with_parameters: put in the object store once, fetched per trial
    model = build_model(config["lr"], config["optimizer"], dataset.info)
    model.fit(
        dataset.x_train, dataset.y_train, batch_size=config["batch_size"], epochs=config["epochs"],
        validation_data=(dataset.x_val, dataset.y_val), verbose=0,
        callbacks=[*timers, TuneReportCheckpointCallback(metrics=[METRIC, "accuracy", "loss", "val_loss"])],
    )
    trace.mark("trial_end")


def run_ray(size: dict, work: Path, reuse: bool = False) -> float:
    from ray import tune

    _start_ray(size)
    dataset = load_data(size)
    return _fit_ray_tuner(tune.with_parameters(_ray_trainable, data=dataset), {}, size, work, reuse, "bench-ray")


def _start_ray(size: dict) -> None:
    import ray

    if not ray.is_initialized():  # benchmarks/warm_session.py fits again in the same process
        ray.init(num_cpus=size["slots"], include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)


def _fit_ray_tuner(trainable: Any, extra_space: dict, size: dict, work: Path, reuse: bool, experiment: str) -> float:
    """The Ray Tune docs recipe (OptunaSearch + ASHA + MLflowLoggerCallback), as both workloads run it."""
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    space = {
        "lr": tune.loguniform(*LR),
        "batch_size": tune.choice(BATCHES),
        "optimizer": tune.choice(OPTIMIZERS),
        "epochs": size["epochs"],
        **extra_space,
    }
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=size["trials"], max_concurrent_trials=size["slots"],
            search_alg=OptunaSearch(sampler=TPESampler(seed=SEED)),
            scheduler=ASHAScheduler(max_t=size["epochs"], grace_period=1, reduction_factor=ETA),
            reuse_actors=reuse,
        ),
        run_config=tune.RunConfig(
            storage_path=str(work / "ray"), verbose=0,
            callbacks=[MLflowLoggerCallback(tracking_uri=f"sqlite:///{work / 'mlflow.db'}", experiment_name=experiment)],
        ),
    )
    results = tuner.fit()
    return float(results.get_best_result(metric=METRIC, mode="max", scope="all").metrics_dataframe[METRIC].max())


def run_optuna(size: dict, work: Path) -> float:
    import optuna
    from optuna_integration import KerasPruningCallback

    dataset = load_data(size)

    def objective(trial: optuna.Trial) -> float:
        trace, timers = timing_callbacks(f"optuna-{trial.number}")
        trace.mark("trial_start")
        lr, batch, optimizer = _suggest(trial)
        model = build_model(lr, optimizer, dataset.info)
        try:
            history = model.fit(
                dataset.x_train, dataset.y_train, batch_size=batch, epochs=size["epochs"],
                validation_data=(dataset.x_val, dataset.y_val), verbose=0,
                callbacks=[*timers, KerasPruningCallback(trial, METRIC)],
            )
        finally:
            trace.mark("trial_end")
        return max(history.history[METRIC])

    return _optimize_with_optuna(objective, size, work)


def _suggest(trial: Any) -> tuple[float, int, str]:
    """The shared space (learning rate, batch size, optimizer), as Optuna alone samples it."""
    return (
        trial.suggest_float("lr", *LR, log=True),
        trial.suggest_categorical("batch_size", BATCHES),
        trial.suggest_categorical("optimizer", OPTIMIZERS),
    )


def _optimize_with_optuna(objective: Callable, size: dict, work: Path) -> float:
    """Optuna alone, as both workloads run it: TPE, successive halving, MLflowCallback, n_jobs = slots."""
    import optuna
    from optuna_integration import MLflowCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=ETA),
    )
    tracker = MLflowCallback(tracking_uri=f"sqlite:///{work / 'mlflow.db'}", metric_name=METRIC)
    study.optimize(objective, n_trials=size["trials"], n_jobs=size["slots"], callbacks=[tracker])
    return float(study.best_value)


def _timed_hyperband(kt: Any) -> type:
    """KerasTuner's Hyperband with every trial timed like the other systems' (both workloads)."""

    class Tuner(kt.Hyperband):
        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
            trace, timers = timing_callbacks(f"kt-{trial.trial_id}")
            trace.mark("trial_start")
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), *timers]
            try:
                return super().run_trial(trial, *args, **kwargs)
            finally:
                trace.mark("trial_end")

    return Tuner


def run_kerastuner(size: dict, work: Path) -> float:
    import keras_tuner as kt

    dataset = load_data(size)

    class MLP(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            lr = hp.Float("lr", *LR, sampling="log")
            return build_model(lr, hp.Choice("optimizer", OPTIMIZERS), dataset.info)

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            return model.fit(*args, batch_size=hp.Choice("batch_size", BATCHES), **kwargs)

    Tuner = _timed_hyperband(kt)

    # one Hyperband iteration at max_epochs=9, factor=3 runs ~25 trials; more iterations for smaller sizes
    tuner = Tuner(
        MLP(), objective=kt.Objective(METRIC, "max"), max_epochs=size["epochs"], factor=ETA, seed=SEED,
        hyperband_iterations=max(1, round(size["trials"] / kerastuner_trials_per_iteration(size["epochs"]))),
        directory=str(work / "kt"), project_name="bench", overwrite=True,
    )
    tuner.search(dataset.x_train, dataset.y_train, validation_data=(dataset.x_val, dataset.y_val), verbose=0)
    return float(tuner.oracle.get_best_trials(1)[0].score)


# =============================================================================================
# the image workload's systems (data: a PNG folder read with tf.data where the trials run)


def image_shape(size: dict) -> tuple[int, int, int]:
    return (size["side"], size["side"], 1)


def run_sweep_images(size: dict, work: Path) -> float:
    """``sweep.run(dict)`` with a data function returning a (train, validation) tf.data pair.

    ``image_workload.py`` is put next to the sweep (the working directory), as a user's module:
    the driver reads one batch of it, every worker builds the datasets at the trial's batch size.
    """
    import shutil

    shutil.copy(HERE / "image_workload.py", work / "image_workload.py")
    data = {"source": "image_workload:load", "args": {"folder": size["folder"], "side": size["side"]}}
    return _sweep_run(size, work, "bench-sweep-images", data, {"builder": "image_workload:build"})


def _ray_image_trainable(config: dict) -> None:
    """The docs recipe for files: the trainable reads the folder itself (plus the epoch timer)."""
    import image_workload
    from ray import tune
    from ray.tune.integration.keras import TuneReportCheckpointCallback

    trace, timers = timing_callbacks(tune.get_context().get_trial_id())
    trace.mark("trial_start")
    train, val = image_workload.load(config["folder"], config["side"], batch_size=config["batch_size"])
    side = config["side"]
    model = image_workload.build_cnn(config["lr"], config["optimizer"], (side, side, 1), len(train.class_names))
    model.fit(
        train, validation_data=val, epochs=config["epochs"], verbose=0,
        callbacks=[*timers, TuneReportCheckpointCallback(metrics=[METRIC, "accuracy", "loss", "val_loss"])],
    )
    trace.mark("trial_end")


def run_ray_images(size: dict, work: Path, reuse: bool = False) -> float:
    _start_ray(size)
    extra = {"folder": size["folder"], "side": size["side"]}
    return _fit_ray_tuner(_ray_image_trainable, extra, size, work, reuse, "bench-ray-images")


def run_optuna_images(size: dict, work: Path) -> float:
    import image_workload
    import optuna
    from optuna_integration import KerasPruningCallback

    def objective(trial: optuna.Trial) -> float:
        trace, timers = timing_callbacks(f"optuna-{trial.number}")
        trace.mark("trial_start")
        lr, batch, optimizer = _suggest(trial)
        try:
            train, val = image_workload.load(size["folder"], size["side"], batch_size=batch)
            model = image_workload.build_cnn(lr, optimizer, image_shape(size), len(train.class_names))
            history = model.fit(
                train, validation_data=val, epochs=size["epochs"], verbose=0,
                callbacks=[*timers, KerasPruningCallback(trial, METRIC)],
            )
        finally:
            trace.mark("trial_end")
        return max(history.history[METRIC])

    return _optimize_with_optuna(objective, size, work)


def run_kerastuner_images(size: dict, work: Path) -> float:
    """KerasTuner's way: load the folder once (unbatched), batch it per trial at the searched size."""
    import image_workload
    import keras_tuner as kt
    import tensorflow as tf

    train, val = image_workload.load(size["folder"], size["side"], batch_size=None)
    classes = len(train.class_names)

    class CNN(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            lr = hp.Float("lr", *LR, sampling="log")
            return image_workload.build_cnn(lr, hp.Choice("optimizer", OPTIMIZERS), image_shape(size), classes)

        def fit(self, hp: Any, model: Any, x: Any, *args: Any, validation_data: Any = None, **kwargs: Any) -> Any:
            batch = hp.Choice("batch_size", BATCHES)
            return model.fit(
                x.batch(batch).prefetch(tf.data.AUTOTUNE), *args,
                validation_data=validation_data.batch(batch).prefetch(tf.data.AUTOTUNE), **kwargs,
            )

    Tuner = _timed_hyperband(kt)

    tuner = Tuner(
        CNN(), objective=kt.Objective(METRIC, "max"), max_epochs=size["epochs"], factor=ETA, seed=SEED,
        hyperband_iterations=max(1, round(size["trials"] / kerastuner_trials_per_iteration(size["epochs"]))),
        directory=str(work / "kt"), project_name="bench-images", overwrite=True,
    )
    tuner.search(train, validation_data=val, verbose=0)
    return float(tuner.oracle.get_best_trials(1)[0].score)


def kerastuner_trials_per_iteration(max_epochs: int, factor: int = ETA) -> int:
    """Trials in one KerasTuner Hyperband iteration (its brackets: s_max..0)."""
    import math

    s_max = int(math.log(max_epochs, factor) + 1e-9)
    total = 0
    for s in range(s_max, -1, -1):
        n = math.ceil((s_max + 1) / (s + 1) * factor**s)
        for rung in range(s + 1):
            total += max(1, int(n / factor**rung))
    return total


RUNNERS: dict[str, Callable[[dict, Path], float]] = {
    "sweep": run_sweep,
    "ray": run_ray,
    "ray_reuse": lambda size, work: run_ray(size, work, reuse=True),
    "optuna": run_optuna,
    "kerastuner": run_kerastuner,
}
IMAGE_RUNNERS: dict[str, Callable[[dict, Path], float]] = {
    "sweep": run_sweep_images,
    "ray": run_ray_images,
    "ray_reuse": lambda size, work: run_ray_images(size, work, reuse=True),
    "optuna": run_optuna_images,
    "kerastuner": run_kerastuner_images,
}


def child(system: str, size: dict, result_path: Path, work: Path, workload: str = "tabular") -> None:
    """Run one system in this process; write its best value and the moment it was printed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    best = (IMAGE_RUNNERS if workload == "images" else RUNNERS)[system](size, work)
    print(f"{system}: best {METRIC} = {best:.4f}", flush=True)
    result_path.write_text(json.dumps({"best": best, "best_printed_at": time.time()}))


# =============================================================================================
# the parent: launch, read traces, compute, report


def launch(system: str, size: dict, out: Path, timeout: float, workload: str = "tabular") -> dict:
    """Run ``system`` in a fresh interpreter; return its raw result and trace events."""
    with tempfile.TemporaryDirectory(prefix=f"peers-{system}-") as tmp:
        work = Path(tmp)
        (work / "trace").mkdir()
        env = {**os.environ, "SWEEP_TRACE_DIR": str(work / "trace"), "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        command = [sys.executable, __file__, "--child", system, "--size-json", json.dumps(size), "--work", str(work)]
        prefix = ""
        if workload == "images":
            if system != "sweep":  # the peers import image_workload by name in their trials (Ray workers inherit PYTHONPATH);
                env["PYTHONPATH"] = f"{HERE}{os.pathsep}{env['PYTHONPATH']}"  # sweep finds it next to the sweep, as a user's module
            command += ["--workload", "images"]
            prefix = "images-"
        log = out / f"{prefix}{system}.log"
        launched = time.time()
        with open(log, "w") as handle:
            proc = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, cwd=work)
        finished = time.time()
        events = read_trace(work / "trace")
        (out / f"{prefix}{system}-trace.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        result_file = work / "result.json"
        raw = json.loads(result_file.read_text()) if result_file.exists() else {}
    if proc.returncode != 0 or not raw:
        tail = log.read_text().strip().splitlines()[-5:]
        return {"system": system, "error": f"exit {proc.returncode}: " + " | ".join(tail)[-600:], "launched": launched}
    return {"system": system, "launched": launched, "finished": finished, **raw, "events": events}


def read_trace(folder: Path) -> list[dict]:
    events = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a killed worker
    return sorted(events, key=lambda e: e["t"])


def summarize(run: dict, slots: int) -> dict:
    """The benchmark's figures for one system, from its trace (same code for every system)."""
    if "error" in run:
        return {"system": run["system"], "error": run["error"]}
    events, launched = run["events"], run["launched"]
    trials: dict[str, list[dict]] = defaultdict(list)
    for event in events:
        trials[event["trial"]].append(event)
    starts = [min(e["t"] for e in evs) for evs in trials.values()]
    epoch_begins = [e["t"] for e in events if e["event"] == "epoch_begin"]
    ends = [max(e["t"] for e in evs) for evs in trials.values()]
    fit_seconds, epochs, curve, best = 0.0, 0, [], None
    began: dict[tuple, float] = {}
    for event in events:
        key = (event["trial"], event.get("epoch"))
        if event["event"] == "epoch_begin":
            began[key] = event["t"]
        elif event["event"] == "epoch_end" and key in began:
            fit_seconds += event["t"] - began.pop(key)
            epochs += 1
            value = event.get("value")
            if value is not None and (best is None or value > best):
                best = value
                curve.append((event["t"] - launched, value))
    phase = max(ends) - min(starts) if starts else float("nan")
    slot_seconds = phase * slots
    final = run["best"]
    reached = next((t for t, v in curve if v >= final - 1e-9), curve[-1][0] if curve else float("nan"))
    return {
        "system": run["system"],
        "label": LABELS[run["system"]],
        "slots": slots,
        "wall_s": run["best_printed_at"] - launched,
        "trials": len(trials),
        "epochs": epochs,
        "best": final,
        "time_to_best_s": reached,
        "fit_s": fit_seconds,
        "sweep_phase_s": phase,
        "utilization": fit_seconds / slot_seconds if slot_seconds else float("nan"),
        "overhead_per_trial_s": (slot_seconds - fit_seconds) / max(1, len(trials)),
        "startup_s": min(starts) - launched if starts else float("nan"),
        # issue 21: the command's start to the first epoch's start; the last trial's end to the best printed
        "first_epoch_s": min(epoch_begins) - launched if epoch_begins else float("nan"),
        "finish_s": run["best_printed_at"] - max(ends) if ends else float("nan"),
        "curve": curve,
    }


MEDIAN_FIELDS = (
    "wall_s", "epochs", "best", "time_to_best_s", "fit_s", "sweep_phase_s", "utilization", "overhead_per_trial_s", "startup_s",
    "first_epoch_s", "finish_s",
)


def median_row(rows: list[dict]) -> dict:
    """One system's runs as one row: each figure's median; the curve of the median-wall run."""
    import statistics

    done = [r for r in rows if "error" not in r]
    if not done:
        return rows[-1]
    by_wall = sorted(done, key=lambda r: r["wall_s"])
    row = {**by_wall[(len(by_wall) - 1) // 2], "runs": len(done), "walls": [round(r["wall_s"], 1) for r in done]}
    row.update({field: statistics.median(r[field] for r in done) for field in MEDIAN_FIELDS})
    return row


# (peer, most sweep's wall may be as a fraction of the peer's): issue 4's targets
WALL_TARGETS = {"ray": 0.25, "ray_reuse": 0.6, "optuna": 0.5, "kerastuner": 0.5}
UTILIZATION_TARGET, OVERHEAD_TARGET, QUALITY_TOLERANCE = 0.90, 0.25, 0.005
# the image workload (issue 17): sweep's wall <= 0.5x each peer's, the same best within 0.005
IMAGE_WALL_TARGETS = {"ray": 0.5, "ray_reuse": 0.5, "optuna": 0.5, "kerastuner": 0.5}
# issue 21: sweep's first epoch within 6 s of the command, done 1 s after its last trial; the
# long workload keeps both slots busy (utilization >= 95 %)
FIRST_EPOCH_TARGET_S, FINISH_TARGET_S, LONG_UTILIZATION_TARGET = 6.0, 1.0, 0.95


def sweep_row(rows: list[dict]) -> dict | None:
    """The row of ``sweep`` itself, unless it failed: what every ratio is taken against."""
    return next((r for r in rows if r["system"] == "sweep" and "error" not in r), None)


def target_lines(rows: list[dict], workload: str = "tabular", size_name: str = "default") -> list[tuple[str, bool]]:
    """Each target as (what was measured, met?)."""
    base = sweep_row(rows)
    if base is None:
        return []
    lines = [
        (f"first epoch {base['first_epoch_s']:.1f} s after the command (<= {FIRST_EPOCH_TARGET_S:g} s)", base["first_epoch_s"] <= FIRST_EPOCH_TARGET_S),
        (f"finish {base['finish_s']:.1f} s after the last trial (<= {FINISH_TARGET_S:g} s)", base["finish_s"] <= FINISH_TARGET_S),
    ]
    if size_name == "long":
        lines.append((f"utilization {base['utilization']:.1%} (>= {LONG_UTILIZATION_TARGET:.0%})", base["utilization"] >= LONG_UTILIZATION_TARGET))
    wall_targets = IMAGE_WALL_TARGETS if workload == "images" else WALL_TARGETS
    if workload == "tabular":
        lines += [
            (f"utilization {base['utilization']:.1%} (>= {UTILIZATION_TARGET:.0%})", base["utilization"] >= UTILIZATION_TARGET),
            (f"overhead per trial {base['overhead_per_trial_s']:.3f} s (<= {OVERHEAD_TARGET} s)", base["overhead_per_trial_s"] <= OVERHEAD_TARGET),
        ]
    peers = [r for r in rows if r["system"] in wall_targets and "error" not in r]
    for peer in peers:
        ratio = base["wall_s"] / peer["wall_s"]
        limit = wall_targets[peer["system"]]
        lines.append((f"sweep / {peer['label']} wall {ratio:.3f}x (<= {limit}x)", ratio <= limit))
    if peers:
        best_peer = max(peers, key=lambda r: r["best"])
        gap = best_peer["best"] - base["best"]
        where = f"{gap:.4f} behind" if gap > 0 else f"{-gap:.4f} ahead of"
        lines.append((f"best {METRIC} {base['best']:.4f}, {where} {best_peer['label']} (behind by <= {QUALITY_TOLERANCE})", gap <= QUALITY_TOLERANCE))
    return lines


def add_ratios(rows: list[dict]) -> None:
    base = sweep_row(rows)
    for row in rows:
        if base and "error" not in row:
            row["wall_ratio_to_sweep"] = row["wall_s"] / base["wall_s"]


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("system", "wall s", "x sweep", "trials", "epochs", f"best {METRIC}", "to best s", "fit s", "util", "overhead/trial s", "start-up s", "1st epoch s", "finish s"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(LABELS[r["system"]], "[red]failed[/red]", "", "", "", "", "", "", "", "", "", "", r["error"][:60])
            continue
        table.add_row(
            r["label"], f"{r['wall_s']:.1f}", f"{r.get('wall_ratio_to_sweep', float('nan')):.2f}", str(r["trials"]), f"{r['epochs']:g}",
            f"{r['best']:.4f}", f"{r['time_to_best_s']:.1f}", f"{r['fit_s']:.1f}", f"{r['utilization']:.0%}",
            f"{r['overhead_per_trial_s']:.2f}", f"{r['startup_s']:.1f}", f"{r['first_epoch_s']:.1f}", f"{r['finish_s']:.1f}",
        )
    Console(width=200).print(table)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        if "error" in r or not r["curve"]:
            continue
        times, values = zip(*r["curve"])
        ax.step([*times, r["wall_s"]], [*values, values[-1]], where="post", label=f"{r['label']} ({r['wall_s']:.0f} s)")
    ax.set_xlabel("wall time since process start (s)")
    ax.set_ylabel(f"best {METRIC} so far")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# =============================================================================================
# --profile: where a sweep trial's non-fit time goes (from sweep's own trace)


def profile(run: dict) -> dict[str, float]:
    """Seconds per phase, summed over the sweep's trials (worker-side; tracking runs on the driver)."""
    events, launched = run["events"], run["launched"]
    by_trial: dict[str, dict[str, Any]] = defaultdict(lambda: {"epochs": {}})
    for e in events:
        slot = by_trial[e["trial"]]
        if e["event"] in ("epoch_begin", "epoch_end", "reported"):
            slot["epochs"].setdefault(e["epoch"], {})[e["event"]] = e["t"]
        else:
            slot[e["event"]] = e["t"]
        slot["pid"] = e["pid"]
    totals: dict[str, float] = defaultdict(float)
    first_on_pid: dict[int, float] = {}
    last_end_on_pid: dict[int, float] = {}
    for trial, s in sorted(by_trial.items(), key=lambda kv: kv[1].get("trial_start", 0)):
        start = s.get("trial_start")
        if start is None:
            continue
        pid = s["pid"]
        if pid not in first_on_pid:
            first_on_pid[pid] = start
            totals["worker start (launch -> first trial on a worker)"] += start - launched
        else:
            totals["between trials on a warm worker (Ray reset + scheduling)"] += start - last_end_on_pid[pid]
        totals["data fetch"] += s.get("data_ready", start) - start
        totals["reset (clear_session, gc, seed)"] += s.get("reset_done", start) - s.get("data_ready", start)
        totals["build + compile"] += s.get("model_ready", start) - s.get("reset_done", start)
        epochs = [s["epochs"][k] for k in sorted(s["epochs"])]
        seconds = [ep["epoch_end"] - ep["epoch_begin"] for ep in epochs if "epoch_begin" in ep and "epoch_end" in ep]
        if epochs and "epoch_begin" in epochs[0]:
            totals["fit start -> first epoch (fit set-up)"] += epochs[0]["epoch_begin"] - s.get("model_ready", start)
        if len(seconds) > 1:
            later = sorted(seconds[1:])[len(seconds[1:]) // 2]
            totals["first-epoch tracing (first epoch - median later)"] += max(0.0, seconds[0] - later)
        totals["report + checkpoint"] += sum(ep["reported"] - ep["epoch_end"] for ep in epochs if "reported" in ep and "epoch_end" in ep)
        between = [b["epoch_begin"] - a["reported"] for a, b in zip(epochs, epochs[1:]) if "reported" in a and "epoch_begin" in b]
        totals["between epochs (Keras)"] += sum(between)
        last = epochs[-1].get("reported") if epochs else None
        end = s.get("trial_end")
        if last and end:
            totals["teardown (clear_session, gc)"] += end - last
        last_end_on_pid[pid] = end or last or start
        totals["inside fit epochs"] += sum(seconds)
    if last_end_on_pid:
        totals["after last trial -> best printed (driver: tracking flush, result)"] = run["best_printed_at"] - max(last_end_on_pid.values())
    return dict(totals)


def print_profile(totals: dict[str, float], trials: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep: where the time goes ({trials} trials; worker-side phases summed over trials)")
    table.add_column("phase")
    table.add_column("total s", justify="right")
    table.add_column("per trial s", justify="right")
    for name, seconds in totals.items():
        table.add_row(name, f"{seconds:.2f}", f"{seconds / max(1, trials):.3f}")
    Console(width=200).print(table)


# =============================================================================================


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="images only: issue 21's long workload, 3000 28x28 PNGs, 48 trials, <= 27 epochs (several minutes per system)")
    parser.add_argument("--quick", action="store_true", help="tabular: 4k rows, 8 trials, 3 epochs (under 2 minutes); images: 2000 16x16 PNGs, 8 trials, 3 epochs (under 5 minutes)")
    parser.add_argument("--workload", default="tabular", choices=[*WORKLOADS, "both"], help="tabular (arrays, the default), images (a PNG folder read with tf.data on the workers) or both")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--profile", action="store_true", help="also break down sweep's non-fit time per phase")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--timeout", type=float, default=600, help="seconds per system")
    parser.add_argument("--repeat", type=int, default=1, help="run every system N times, interleaved, and report medians")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size-json", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        work = Path(args.work)
        child(args.child, json.loads(args.size_json), work / "result.json", work, args.workload)
        return 0
    size_name = "quick" if args.quick else "default"
    if args.long:
        if args.workload != "images" or args.quick:
            parser.error("--long: expected with --workload images and without --quick")
        size_name = "long"
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"--systems: expected names among {', '.join(SYSTEMS)}, got {', '.join(unknown)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workloads = list(WORKLOADS) if args.workload == "both" else [args.workload]
    ok = True
    for workload in workloads:
        if workload == "images":
            ok = run_images(args, size_name, systems, out) and ok
        else:
            ok = run_workload(args, size_name, SIZES[size_name], systems, out) and ok
    return 0 if ok else 1


def run_images(args: argparse.Namespace, size_name: str, systems: list[str], out: Path) -> bool:
    """The image workload: write the PNG folder once (not timed), then run the systems on it."""
    sys.path.insert(0, str(HERE))
    import image_workload

    size = IMAGE_SIZES[size_name]
    with tempfile.TemporaryDirectory(prefix="peers-images-data-") as folder:
        image_workload.generate(folder, size["images_per_class"], size["side"], noise=size["noise"])
        return run_workload(args, size_name, size, systems, out, workload="images", folder=folder)


def run_workload(
    args: argparse.Namespace, size_name: str, size: dict, systems: list[str], out: Path, workload: str = "tabular", folder: str | None = None,
) -> bool:
    """Run every system on one workload; print its table and targets, write its JSON and plot."""
    images = workload == "images"
    child_size = {**size, "folder": folder} if images else size
    runs: list[dict] = []
    every: dict[str, list[dict]] = defaultdict(list)
    for attempt in range(1, max(1, args.repeat) + 1):
        for system in systems:
            label = f"{LABELS[system]} (images)" if images else LABELS[system]
            print(f"running {label} ..." + (f" (run {attempt} of {args.repeat})" if args.repeat > 1 else ""), flush=True)
            run = launch(system, child_size, out, args.timeout, workload)
            runs.append(run)
            slots = 1 if system == "kerastuner" else size["slots"]
            every[system].append(summarize(run, slots))
    rows = [median_row(every[system]) for system in systems]
    add_ratios(rows)
    medians = f", medians of {args.repeat} runs" if args.repeat > 1 else ""
    print_table(rows, f"peers benchmark{', images workload' if images else ''} ({size_name}: {size}{medians})")
    if args.repeat > 1:
        for row in rows:
            print(f"  {row.get('label', row['system'])}: wall per run {row.get('walls', [])} s")
    targets = target_lines(rows, workload, size_name)
    print(f"targets (issues {'17, 21' if images else '4, 21'}):")
    for text, met in targets:
        print(f"  [{'met' if met else 'NOT met'}] {text}")
    report: dict[str, Any] = {"size": size_name, **size, "cpus": os.cpu_count(), "repeat": args.repeat, "systems": rows}
    if images:
        report = {"workload": "images", **report}
    if args.repeat > 1:
        report["runs"] = dict(every)
    report["targets"] = [{"target": text, "met": met} for text, met in targets]
    sweep_run = sweep_row(runs[::-1])  # the last sweep run that finished: its trace is profiled
    if args.profile and sweep_run:
        totals = profile(sweep_run)
        report["sweep_profile_s"] = totals
        print_profile(totals, sweep_row(rows)["trials"])
    stem = "peers-images" if images else "peers"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    plot(rows, out / f"{stem}.png")
    print(f"wrote {out / f'{stem}.json'} and {out / f'{stem}.png'}")
    return all("error" not in r for r in rows)


if __name__ == "__main__":
    sys.exit(main())
