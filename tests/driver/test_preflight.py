"""Bad input found by the preflight (preflight.prepare, no Ray): one line naming the file and the key,
before any trial. The file-level table (YAML, types, names) is in test_config.py."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from sweep.spec import config as config_module
from sweep.driver import preflight, runner
from sweep.driver.quiet import quiet_tensorflow
from sweep.errors import SweepConfigError

BASE = {
    "name": "bad",
    "data": {"source": "synthetic", "samples": 40, "features": 4, "classes": 3},
    "model": {"builder": "mlp", "args": {"units": [4]}},
    "fit": {"epochs": 1, "batch_size": 8},
    "objective": {"metric": "val_accuracy", "mode": "max"},
    "search": {"trials": 2, "space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}},
}
OPTIMIZERS = "adam, sgd, rmsprop, adamw, nadam, adagrad, adamax, adadelta, ftrl, lion"


def sweep(space: dict | None = None, **sections) -> dict:
    raw = {key: (dict(value) if isinstance(value, dict) else value) for key, value in BASE.items()}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    if space is not None:
        raw["search"] = {**raw["search"], "space": {**raw["search"]["space"], **space}}
    return raw


def cat(*choices) -> dict:
    return {"type": "categorical", "choices": list(choices)}


PREFLIGHT_BAD = [
    # choices checked against Keras' registries (rel-15)
    ("optimizer-typo", sweep({"optimizer": cat("adam", "adamm", "sgdd")}), f"search.space.optimizer.choices.1: expected one of {OPTIMIZERS}, got 'adamm'"),
    ("optimizer-not-a-name", sweep({"optimizer": cat("adam", 3)}), f"search.space.optimizer.choices.1: expected one of {OPTIMIZERS}, got 3"),
    ("activation-typo", sweep({"activation": cat("relu", "reluu")}), "search.space.activation.choices.1: expected a Keras activation name (relu, gelu, tanh, ...), got 'reluu'"),
    ("activation-in-args", sweep(model={"args": {"units": [4], "activation": "rleu"}}), "model.args.activation: expected a Keras activation name (relu, gelu, tanh, ...), got 'rleu'"),
    ("loss-choice-typo", sweep({"loss": cat("sparse_categorical_crossentropy", "sparse_crossentropy")}), "search.space.loss.choices.1: expected a Keras loss name (mse, huber, sparse_categorical_crossentropy, ...) or package.module:function, got 'sparse_crossentropy'"),
    # model.loss / model.metrics named, not blamed on the builder (rel-20)
    ("model-loss-unknown", sweep(model={"loss": "cross_entropy"}), "model.loss: expected a Keras loss name (mse, huber, sparse_categorical_crossentropy, ...) or package.module:function, got 'cross_entropy'"),
    ("model-loss-list-item", sweep(model={"loss": ["mse", "msee"]}), "model.loss.1: expected a Keras loss name (mse, huber, sparse_categorical_crossentropy, ...) or package.module:function, got 'msee'"),
    ("model-metric-unknown", sweep(model={"metrics": ["accuracy", "acc_score"]}), "model.metrics.1: expected a Keras metric name (accuracy, mae, auc, ...) or package.module:function, got 'acc_score'"),
    ("model-metric-by-head", sweep(model={"metrics": {"out": ["auc", "f2"]}}), "model.metrics.out.1: expected a Keras metric name (accuracy, mae, auc, ...) or package.module:function, got 'f2'"),
    # batch sizes against the training rows (rel-16): 40 rows, 32 train
    ("fixed-batch-over-rows", sweep(fit={"batch_size": 100000}), "fit.batch_size: expected at most 32 (the training rows), got 100000"),
    ("searched-batch-choice-over-rows", sweep({"batch_size": cat(8, 16, 64)}), "search.space.batch_size.choices.2: expected at most 32 (the training rows), got 64"),
    ("searched-batch-range-over-rows", sweep({"batch_size": {"type": "int", "low": 8, "high": 33}}), "search.space.batch_size.high: expected at most 32 (the training rows), got 33"),
    # a validation objective that no epoch would compute
    ("validation-freq-over-epochs", sweep(fit={"epochs": 2, "validation_freq": 3}), "fit.validation_freq: expected at most fit.epochs (2) since the objective val_accuracy is a validation metric, got 3: no epoch would be validated"),
    # targets and loss that do not fit each other: named on the loss, not blamed on model.builder
    ("sparse-labels-categorical-loss", sweep(model={"loss": "categorical_crossentropy"}),
     "model.loss: expected a loss for one class index per row (sparse_categorical_crossentropy), got 'categorical_crossentropy', which wants one-hot rows"),
    ("searched-loss-choice-for-wrong-targets", sweep({"loss": cat("sparse_categorical_crossentropy", "categorical_focal_crossentropy")}, objective={"metric": "val_accuracy"}),
     "search.space.loss.choices.1: expected a loss for one class index per row (sparse_categorical_crossentropy), got 'categorical_focal_crossentropy', which wants one-hot rows"),
    ("searched-epochs-under-validation-freq", sweep({"epochs": cat(1, 3)}, fit={"epochs": 3, "validation_freq": 2}),
     "search.space.epochs.choices.0: expected at least fit.validation_freq (2) since the objective val_accuracy is a validation metric, got 1: no epoch of such a trial would be validated"),
    # an objective Keras does not log, with the likely one (found by a helper: only a callback's monitor had it)
    ("objective-metric-typo", sweep(objective={"metric": "val_acc"}),
     "objective.metric: expected one of the metrics the model logs (accuracy, loss, val_accuracy, val_loss), got 'val_acc'; did you mean 'val_accuracy'?"),
    # a when: condition under which nothing reads the entry (found by a helper: sampled and logged, never used)
    ("when-where-nothing-reads", sweep({"optimizer": cat("adam", "sgd"), "momentum": {"type": "float", "low": 0.0, "high": 0.9, "when": {"optimizer": "adam"}}}),
     "search.space.momentum.when: expected a condition under which something reads 'momentum', but where it holds (optimizer='adam') nothing does: change the condition to where it is read, or remove the entry"),
    # a callback watching a metric that is never logged never fires (Keras warns in a worker's log)
    ("early-stopping-monitor-typo", sweep(fit={"callbacks": [{"early_stopping": {"monitor": "val_acc"}}]}),
     "fit.callbacks.0.early_stopping.monitor: expected one of the metrics the model logs (accuracy, loss, val_accuracy, val_loss), got 'val_acc'; did you mean 'val_accuracy'?"),
    ("callback-value-keras-refuses", sweep(fit={"callbacks": [{"reduce_lr_on_plateau": {"factor": 2}}]}),
     "fit.callbacks.0: expected valid arguments for reduce_lr_on_plateau: ReduceLROnPlateau does not support a factor >= 1.0. Received factor=2"),
    # a user's callback module that is not there (looked up beside the sweep file, like the builder's)
    ("callback-module-missing", sweep(fit={"callbacks": ["no_such_callbacks:Mine"]}), "fit.callbacks.0: expected an importable module 'no_such_callbacks', but import failed: ModuleNotFoundError: No module named 'no_such_callbacks'"),
    # a grid too big to list (rel-06)
    (
        "grid-too-big",
        {**sweep(), "search": {"sampler": "grid", "trials": 2, "space": {"units": {"type": "int", "low": 1, "high": 1_000_000_000}}}},
        "search.space: expected a grid of at most 100000 configurations with sampler: grid, got 1000000000: narrow the int ranges (step) or use sampler: random or tpe, which draw only search.trials points",
    ),
]


# the compile setting or argument at fault is named, not model.builder (rel-20); the output's
# auto-name (dense_1, dense_7) depends on what this process built before
BLAMED = [
    ("loss-dict-unknown-output", sweep(model={"loss": {"out9": "mse"}}),
     "model.loss: expected model.loss to match the model's outputs (dense_1), but Keras said: Expected keys ['dense_1'] in loss dict, but found loss.keys()=['out9']"),
    ("loss-weights-count", sweep(model={"loss_weights": [1.0, 2.0]}),
     "model.loss_weights: expected model.loss_weights to match the model's outputs (dense_1), but Keras said: `loss_weights` must match the number of losses, got 1 losses and 2 weights."),
    ("loss-weights-unknown-output", sweep(model={"loss_weights": {"foo": 1.0}}), "model.loss_weights.foo: expected an output name of the model (dense_1), got 'foo'"),
    ("metric-for-other-targets", sweep(model={"metrics": ["f1_score"]}),  # F1Score wants one-hot rows; the labels are indices
     "model.metrics: expected metrics that take targets for one output of 3 classes, got [f1_score], and evaluating them failed: "),
    ("binary-loss-for-three-classes", sweep(model={"loss": "binary_crossentropy"}),
     "model.loss: expected a loss that takes targets for one output of 3 classes, got 'binary_crossentropy', and evaluating it failed: "),
    ("builtin-argument", sweep(model={"args": {"units": [-4]}}),
     "model.args: expected 'mlp' to build a model, but it raised ValueError: Received an invalid value for `units`, expected a positive integer. Received: units=-4"),
]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in BLAMED], ids=[case[0] for case in BLAMED])
def test_a_compile_setting_or_argument_at_fault_is_blamed_not_the_builder(tmp_path, raw, expected):
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    said = re.sub(r"dense_\d+", "dense_1", str(info.value))
    assert said == f"sweep.yaml: {expected}" or (expected.endswith(": ") and said.startswith(f"sweep.yaml: {expected}")), said


@pytest.fixture(scope="module", autouse=True)
def _tensorflow_once():
    quiet_tensorflow()


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in PREFLIGHT_BAD], ids=[case[0] for case in PREFLIGHT_BAD])
def test_preflight_refuses_with_one_line(tmp_path, raw, expected):
    config = config_module.load(raw)
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config, "sweep.yaml", (tmp_path,))
    assert str(info.value) == f"sweep.yaml: {expected}"


def test_factory_that_compiles_itself_keeps_its_own_optimizer_words(tmp_path):
    """A factory that compiles its model reads ``optimizer`` its own way: not checked against ours."""
    (tmp_path / "own_compile.py").write_text(textwrap.dedent("""
        import keras

        def build(hp, info):
            model = keras.Sequential([keras.Input(info.input_shape), keras.layers.Dense(int(info.num_outputs), activation="softmax")])
            model.compile(optimizer={"fast": "adam", "slow": "sgd"}[hp["optimizer"]], loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
    """))
    raw = sweep(model={"builder": "own_compile:build", "args": {}})
    raw["search"] = {"trials": 2, "space": {"optimizer": cat("fast", "slow")}}
    config = config_module.load(raw)
    prepared = preflight.prepare(config, "sweep.yaml", (tmp_path,))
    assert prepared.builder.spec == "own_compile:build"


def test_output_width_mismatch_says_so_when_a_loss_is_given(tmp_path):
    (tmp_path / "narrow.py").write_text(textwrap.dedent("""
        import keras

        def build(hp, info):
            return keras.Sequential([keras.Input(info.input_shape), keras.layers.Dense(2, activation="softmax")])
    """))
    config = config_module.load(sweep(model={"builder": "narrow:build", "args": {}, "loss": "sparse_categorical_crossentropy"}))
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config, "sweep.yaml", (tmp_path,))
    assert str(info.value).startswith("sweep.yaml: model.builder: expected a final layer with 3 units, one per class")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sys\nsys.exit(3)\n", "import exited (SystemExit: 3)"),
        ("import argparse\np = argparse.ArgumentParser()\np.add_argument('--epochs', required=True)\np.parse_args([])\n",
         "import exited (SystemExit: 2): error: the following arguments are required: --epochs"),
        ("raise RuntimeError('no GPU here')\n", "import failed: RuntimeError: no GPU here"),
    ],
    ids=["sys-exit", "argparse", "raises"],
)
def test_user_module_that_exits_or_raises_at_import_is_one_line(tmp_path, capsys, source, expected):
    (tmp_path / "exiting.py").write_text(source + "def build(hp, info):\n    pass\n")
    config = config_module.load(sweep(model={"builder": "exiting:build", "args": {}}))
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config, "sweep.yaml", (tmp_path,))
    line = str(info.value).replace("__main__.py: ", "").replace("pytest: ", "").replace("sweep: ", "", 1) if "argparse" in source else str(info.value)
    assert line == f"sweep.yaml: model.builder: expected an importable module 'exiting', but {expected}"
    assert "usage:" not in capsys.readouterr().err  # argparse's own text is held back


def test_header_only_csv_says_no_rows(tmp_path):
    (tmp_path / "header.csv").write_text("a,b,label\n")
    raw = sweep(data={"source": f"csv:{tmp_path / 'header.csv'}", "target": "label"})
    raw["data"] = {"source": f"csv:{tmp_path / 'header.csv'}", "target": "label"}
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert str(info.value) == f"sweep.yaml: data.source: expected rows of data in csv:{tmp_path / 'header.csv'}, got 0 rows (only the header)"


def test_cli_tracking_uri_is_validated_like_the_file(tmp_path):
    with pytest.raises(SweepConfigError) as info:
        runner.run(sweep(), tracking_uri="mlflow.db")
    assert str(info.value) == "<dict> (override tracking_uri='mlflow.db'): tracking.uri: expected a URI with a scheme (sqlite:///FILE, http://HOST:PORT, ...), got 'mlflow.db': did you mean 'sqlite:///mlflow.db'?"


def test_a_data_function_that_requires_batch_size_gets_one_the_sweep_can_draw(tmp_path):
    """``def load(batch_size)`` (pipelines batched by the trial, no default) was called without
    it in the preflight and refused; it gets the space's first batch size, as a worker gets its trial's."""
    (tmp_path / "batched_data.py").write_text(textwrap.dedent("""
        import numpy as np
        import tensorflow as tf

        def load(batch_size):
            x = np.random.default_rng(0).random((64, 4)).astype("float32")
            y = (np.arange(64) % 3).astype("int64")
            full = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
            return full.take(4), full.skip(4)
    """))
    raw = sweep({"batch_size": cat(4, 16)}, data={"source": "batched_data:load", "num_outputs": 3})
    raw["data"].pop("samples"), raw["data"].pop("features"), raw["data"].pop("classes")
    prepared = preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert prepared.dataset.pipeline.takes_batch_size
    assert prepared.dataset.x_val.shape == (4, 4), "the peeked batch has the space's first batch size"


ENDLESS = """
import keras
import numpy as np
import tensorflow as tf

X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
Y = (np.arange(64) % 3).astype("int64")

def batches(part, repeat=False):
    d = tf.data.Dataset.from_tensor_slices((X[part], Y[part])).batch(8)
    return d.repeat() if repeat else d

def train_repeats():
    return batches(slice(0, 48), repeat=True), batches(slice(48, 64))

def both_repeat():
    return batches(slice(0, 48), repeat=True), batches(slice(48, 64), repeat=True)

def generators():
    def rows(lo, hi):
        while True:
            for i in range(lo, hi, 8):
                yield X[i:i + 8], Y[i:i + 8]
    return rows(0, 48), rows(48, 64)

class Stream(keras.utils.PyDataset):
    num_batches = None  # Keras' word for an endless PyDataset

    def __getitem__(self, index):
        return X[:8], Y[:8]

def endless_pydatasets():
    return Stream(), Stream()
"""


@pytest.mark.parametrize(("function", "fit", "key", "what"), [
    ("train_repeats", {}, "fit.steps_per_epoch", "the training pipeline of endless_data:train_repeats (it repeats without end: an epoch would never end)"),
    ("both_repeat", {"steps_per_epoch": 6}, "fit.validation_steps", "the validation pipeline of endless_data:both_repeat (it repeats without end: validation would never end)"),
    ("generators", {"steps_per_epoch": 6}, "fit.validation_steps", "the validation pipeline of endless_data:generators (generators have no length: validation would never end)"),
    ("endless_pydatasets", {"steps_per_epoch": 6}, "fit.validation_steps", "the validation pipeline of endless_data:endless_pydatasets (it repeats without end: validation would never end)"),
])
def test_a_pipeline_without_end_needs_its_step_count_before_any_trial(tmp_path, function, fit, key, what):
    """A repeated tf.data (or an endless PyDataset or validation generator) without
    steps_per_epoch / validation_steps passed the preflight and the sweep ran with no trial
    ever ending (a helper killed it after 105 s); only a training generator was refused."""
    (tmp_path / "endless_data.py").write_text(ENDLESS)
    raw = sweep(data={"source": f"endless_data:{function}", "num_outputs": 3}, fit=fit)
    raw["data"].pop("samples"), raw["data"].pop("features"), raw["data"].pop("classes")
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert str(info.value) == f"sweep.yaml: {key}: expected {key} for {what}, got none"
    raw["fit"].update(steps_per_epoch=6, validation_steps=2)
    assert preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,)).dataset.pipeline.endless[1] == (function != "train_repeats")


def test_a_helper_module_the_factory_imports_in_its_body_is_the_users_code(tmp_path):
    """``from my_losses import smooth_ce`` inside ``build``: the loss is found when the preflight
    loads the model back (it was "Could not locate function"), and its file ships to the workers."""
    (tmp_path / "lazy_losses.py").write_text(textwrap.dedent("""
        import keras

        def smooth_ce(y_true, y_pred):
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred) + 0.0
    """))
    (tmp_path / "lazy_factory.py").write_text(textwrap.dedent("""
        import keras

        def build(hp, info):
            from lazy_losses import smooth_ce

            inputs = keras.Input(info.input_shape)
            model = keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(inputs))
            model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]), loss=smooth_ce, metrics=["accuracy"])
            return model
    """))
    from sweep.inputs import imports

    prepared = preflight.prepare(config_module.load(sweep(model={"builder": "lazy_factory:build", "args": {}})), "sweep.yaml", (tmp_path,))
    assert prepared.builder is not None
    assert {"lazy_factory", "lazy_losses"} <= set(imports.user_code((tmp_path,)).modules)


def test_a_subclassed_model_the_factory_builds_before_returning_it_is_not_refused(tmp_path):
    """``m.build(shape)`` on a subclassed model leaves its layers unbuilt until a call: saving it
    then did not load back, so the preflight refused a model that trains and checkpoints fine."""
    (tmp_path / "subclassed_net.py").write_text(textwrap.dedent("""
        import keras

        @keras.saving.register_keras_serializable(package="subclassed_net")
        class Net(keras.Model):
            def __init__(self, width=8, classes=3, **kwargs):
                super().__init__(**kwargs)
                self.width, self.classes = width, classes
                self.hidden = keras.layers.Dense(width, activation="relu")
                self.out = keras.layers.Dense(classes, activation="softmax")

            def call(self, x):
                return self.out(self.hidden(x))

            def get_config(self):
                return {**super().get_config(), "width": self.width, "classes": self.classes}

        def build(hp, info):
            model = Net(8, info.num_outputs)
            model.build((None,) + tuple(info.input_shape))
            return model
    """))
    prepared = preflight.prepare(config_module.load(sweep(model={"builder": "subclassed_net:build", "args": {}})), "sweep.yaml", (tmp_path,))
    assert prepared.builder is not None


@pytest.mark.parametrize("where, key", [("model", "model.builder"), ("data", "data.source")])
def test_sys_exit_in_a_factory_or_data_function_is_one_line_naming_the_key(tmp_path, where, key):
    """A training script reused as the factory or data function calls sys.exit() (or argparse
    does): the command exited with that code and said nothing."""
    (tmp_path / "exiting.py").write_text(textwrap.dedent("""
        import sys

        def build(hp, info):
            sys.exit(5)

        def load():
            sys.exit(7)
    """))
    raw = sweep(model={"builder": "exiting:build", "args": {}}) if where == "model" else sweep(data={"source": "exiting:load"})
    if where == "data":
        for extra in ("samples", "features", "classes"):
            raw["data"].pop(extra)
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    code = 5 if where == "model" else 7
    assert str(info.value).startswith(f"sweep.yaml: {key}: expected ") and str(info.value).endswith(f"but it called sys.exit({code})")


SOMETIMES_EXITING = """
import sys

import keras


def build(hp, info):
    if hp["units"] > 8:  # a guard a script had: exits where the space reaches past it
        sys.exit(0)
    return keras.Sequential([keras.Input(info.input_shape), keras.layers.Dense(hp["units"]), keras.layers.Dense(info.num_outputs, activation="softmax")])


class Quitter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        raise SystemExit(0)


def quitting_loss(y_true, y_pred):
    sys.exit(0)
"""


@pytest.mark.parametrize(("change", "expected"), [
    ({"search": {"space": {"units": {"type": "int", "low": 4, "high": 16}}}, "model": {"builder": "sometimes:build", "args": {}}},
     "model.builder: expected 'sometimes:build' to build a model at units=16, but it called sys.exit(0)"),
    ({"fit": {"callbacks": ["sometimes:Quitter"]}}, "fit.callbacks.0: expected sometimes:Quitter to make a callback, but it called sys.exit(0)"),
    ({"model": {"loss": "sometimes:quitting_loss"}}, "model.builder: expected the model, its loss and metrics to evaluate a batch, but one of them called sys.exit(0)"),
], ids=["factory-at-one-point", "callback", "loss"])
def test_sys_exit_anywhere_in_the_users_code_before_the_trials_is_one_line(tmp_path, change, expected):
    """sys.exit(0) in a factory at the space's high end, in a callback's __init__ or in a loss
    ended `sweep run` with exit 0 and no output (only the factory's first build caught it)."""
    (tmp_path / "sometimes.py").write_text(SOMETIMES_EXITING)
    raw = sweep()
    for section, value in change.items():
        if section == "search":
            raw["search"] = {**raw["search"], **value}
        else:
            raw[section] = {**raw[section], **value}
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert str(info.value) == f"sweep.yaml: {expected}"


def test_a_factory_whose_input_does_not_fit_the_data_says_what_keras_said(tmp_path):
    """Keras' message starts with a header ("Exception encountered when calling Sequential.call().")
    and bolds the cause with terminal codes: the cause is what the one line shows."""
    (tmp_path / "wrong_input.py").write_text(textwrap.dedent("""
        import keras

        def build(hp, info):
            return keras.Sequential([keras.Input((7,)), keras.layers.Dense(info.num_outputs, activation="softmax")])
    """))
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(sweep(model={"builder": "wrong_input:build", "args": {}})), "sweep.yaml", (tmp_path,))
    message = str(info.value)
    assert "expected axis -1 of input shape to have value 7, but received input with shape (None, 4)" in message, message
    assert "Exception encountered" not in message and "\x1b" not in message


TWO_HEADS = """
import keras
import numpy as np

def load(rows=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 6)).astype("float32")
    return x, {"kind": (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0), "size": x[:, 2].astype("float32")}

def build(hp, info):
    inputs = keras.Input(info.input_shape)
    shared = keras.layers.Dense(4, activation="relu")(inputs)
    kind = keras.layers.Dense(3, activation="softmax", name="kind")(shared)
    size = keras.layers.Dense(1, name="size")(shared)
    return keras.Model(inputs, {"kind": kind, "size": size})
"""
HEADS_MODEL = {"builder": "two_heads_mod:build", "args": {}, "loss": {"kind": "sparse_categorical_crossentropy", "size": "mse"}}


def heads_sweep(**model) -> dict:
    raw = sweep(model={**HEADS_MODEL, **model}, objective={"metric": "val_kind_accuracy", "mode": "max"})
    raw["data"] = {"source": "two_heads_mod:load", "task": {"kind": "classification", "size": "regression"}}
    return raw


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"loss": {"kind": "sparse_categorical_crossentropy", "sizee": "mse"}},
         "model.loss.sizee: expected the name of one of the model's outputs (kind, size), got 'sizee' (did you mean 'size'?)"),
        ({"loss_weights": {"kind": 1.0, "Size": 0.5}}, "model.loss_weights.Size: expected the name of one of the model's outputs (kind, size), got 'Size' (did you mean 'size'?)"),
        ({"metrics": {"knd": ["accuracy"]}}, "model.metrics.knd: expected the name of one of the model's outputs (kind, size), got 'knd' (did you mean 'kind'?)"),
        ({"metrics": ["accuracy"]}, "model.metrics: expected one entry per output of the model (2: kind, size) or a dict by output name (e.g. {kind: ...}), got a list of 1"),
        ({"loss": ["sparse_categorical_crossentropy", "mse", "mae"]},
         "model.loss: expected one entry per output of the model (2: kind, size) or a dict by output name (e.g. {kind: ...}), got a list of 3"),
    ],
    ids=["loss-head-typo", "loss-weight-head-typo", "metrics-head-typo", "flat-metrics-two-heads", "loss-list-too-long"],
)
def test_per_output_settings_name_the_models_outputs(tmp_path, model, expected):
    """A mistyped head in model.loss / loss_weights / metrics was blamed on model.builder (Keras
    finds it only when evaluating, as "the path ... can't be found in y_pred")."""
    (tmp_path / "two_heads_mod.py").write_text(TWO_HEADS)
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(heads_sweep(**model)), "sweep.yaml", (tmp_path,))
    assert str(info.value) == f"sweep.yaml: {expected}"


def test_metrics_as_one_list_per_output_reach_keras(tmp_path):
    """compile(metrics=[[...], [...]]) is how Keras takes per-output metrics of a list: accepted."""
    (tmp_path / "two_heads_mod.py").write_text(TWO_HEADS)
    config = config_module.load(heads_sweep(metrics=[["accuracy"], ["mae", "mse"]]))
    prepared = preflight.prepare(config, "sweep.yaml", (tmp_path,))
    from sweep.inputs import models

    model = models.build(prepared.builder, preflight.example_hyperparameters(config), prepared.dataset.info, config.model)
    logs = model.evaluate(prepared.dataset.x_val, prepared.dataset.y_val, verbose=0, return_dict=True)
    assert {"kind_accuracy", "size_mae", "size_mse"} <= set(logs), sorted(logs)
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(heads_sweep(metrics=[["accuracy"], ["mae", "maee"]])), "sweep.yaml", (tmp_path,))
    assert str(info.value).startswith("sweep.yaml: model.metrics.1.1: expected a Keras metric name")


def test_an_objective_with_one_value_per_class_is_refused_before_any_trial(tmp_path):
    """F1Score() (the "f1_score" name) logs one value per class: the sweep ran every trial and
    then failed them all as "never validated"."""
    (tmp_path / "onehot_mod.py").write_text(textwrap.dedent("""
        import numpy as np

        def load():
            x = np.random.default_rng(0).normal(size=(60, 4)).astype("float32")
            return x, np.eye(3, dtype="float32")[np.arange(60) % 3]
    """))
    raw = sweep(model={"loss": "categorical_crossentropy", "metrics": ["f1_score"]}, objective={"metric": "val_f1_score", "mode": "max"})
    raw["data"] = {"source": "onehot_mod:load"}
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert str(info.value) == ("sweep.yaml: objective.metric: expected a metric with one value per epoch, got 'val_f1_score', which has 3 (one per class): "
                               "compile it averaged in a factory of your own, e.g. keras.metrics.F1Score(average='macro')")


def test_a_searched_loss_for_outputs_of_different_kinds_names_the_space(tmp_path):
    (tmp_path / "two_heads_mod.py").write_text(TWO_HEADS)
    raw = heads_sweep(loss=None)
    raw["search"] = {**raw["search"], "space": {**raw["search"]["space"], "loss": cat("sparse_categorical_crossentropy", "mse")}}  # BASE's own dicts stay as they are
    raw["objective"] = {"metric": "val_kind_accuracy", "mode": "max"}
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert str(info.value) == ("sweep.yaml: search.space.loss: expected one loss that fits every output, got a searched loss for outputs whose targets "
                               "differ (kind: one class index per row, size: values): give model.loss per output instead")


def test_a_loss_and_a_metric_of_the_users_own_are_named_as_package_module_function(tmp_path):
    """compile(loss=focal) as a plain script writes it: model.loss "my_losses:focal" (it was
    refused as "expected a Keras loss name"); a name the module lacks is one line on its key."""
    (tmp_path / "my_losses.py").write_text(textwrap.dedent("""
        import keras

        def focal(y_true, y_pred):
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

        def hits(y_true, y_pred):
            return keras.ops.cast(keras.ops.equal(keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int64"), keras.ops.argmax(y_pred, axis=-1)), "float32")
    """))
    raw = sweep(model={"loss": "my_losses:focal", "metrics": ["my_losses:hits"]}, objective={"metric": "val_hits", "mode": "max"})
    config = config_module.load(raw)
    prepared = preflight.prepare(config, "sweep.yaml", (tmp_path,))
    from sweep.inputs import models

    model = models.build(prepared.builder, preflight.example_hyperparameters(config), prepared.dataset.info, config.model, search_paths=(tmp_path,))
    assert model.loss.__name__ == "focal"
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(sweep(model={"loss": "my_losses:focall"})), "sweep.yaml", (tmp_path,))
    assert str(info.value) == "sweep.yaml: model.loss: expected 'my_losses' to define 'focall', but it does not; did you mean 'focal'?"


def test_a_loss_or_metric_class_of_the_users_own_is_made_with_no_arguments(tmp_path):
    """``model.loss: "my_losses:FocalLoss"`` (a keras.losses.Loss subclass) went to compile()
    as the class: its save failed and the line blamed model.builder and asked for a get_config
    the class had. Now it is FocalLoss(), as a script writes it; a class that needs arguments
    is one line on its own key."""
    (tmp_path / "my_classes.py").write_text(textwrap.dedent("""
        import keras

        class FocalLoss(keras.losses.Loss):
            def __init__(self, gamma=2.0, **kwargs):
                super().__init__(**kwargs)
                self.gamma = gamma

            def call(self, y_true, y_pred):
                return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)

            def get_config(self):
                return {**super().get_config(), "gamma": self.gamma}

        class Hits(keras.metrics.MeanMetricWrapper):
            def __init__(self, name="hits", **kwargs):
                super().__init__(keras.metrics.sparse_categorical_accuracy, name=name, **kwargs)

        class Needy(keras.losses.Loss):
            def __init__(self, weight, **kwargs):
                super().__init__(**kwargs)
    """))
    raw = sweep(model={"loss": "my_classes:FocalLoss", "metrics": ["my_classes:Hits"]}, objective={"metric": "val_hits", "mode": "max"})
    config = config_module.load(raw)
    prepared = preflight.prepare(config, "sweep.yaml", (tmp_path,))
    from sweep.inputs import models

    model = models.build(prepared.builder, preflight.example_hyperparameters(config), prepared.dataset.info, config.model, search_paths=(tmp_path,))
    assert type(model.loss).__name__ == "FocalLoss" and model.loss.gamma == 2.0
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(sweep(model={"loss": "my_classes:Needy"})), "sweep.yaml", (tmp_path,))
    assert str(info.value).startswith("sweep.yaml: model.loss: expected a function, an instance, or a class that takes no arguments, "
                                      "got the class my_classes:Needy whose constructor needs some (")


def test_an_entry_read_only_at_some_choices_gets_one_warning_naming_the_condition(tmp_path, caplog):
    """``momentum`` beside ``optimizer: [adam, sgd]`` without ``when:`` was accepted in silence:
    the adam trials drew, logged and ranked a momentum that changed nothing (three trials with
    different momentum scored exactly the same)."""
    raw = sweep({"optimizer": cat("adam", "sgd"), "momentum": {"type": "float", "low": 0.0, "high": 0.9}})
    with caplog.at_level("WARNING", logger="sweep"):
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert [r.getMessage() for r in caplog.records if "search.space" in r.getMessage()] == [
        "sweep.yaml: search.space.momentum is read only when optimizer is 'sgd' (not 'adam'): trials with another optimizer "
        "sample and log it with no effect; give it when: {optimizer: 'sgd'}"
    ]
    caplog.clear()
    raw["search"]["space"]["momentum"]["when"] = {"optimizer": "sgd"}
    with caplog.at_level("WARNING", logger="sweep"):
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert not [r for r in caplog.records if "search.space" in r.getMessage()]


@pytest.mark.parametrize("conditional", [
    {"type": "categorical", "choices": [0.0, 0.9], "when": {"optimizer": "sgd"}},
    {"type": "categorical", "choices": [1, 2], "when": {"optimizer": "sgd"}},
])
def test_a_conditional_categorical_absent_at_the_first_choice_is_prepared(tmp_path, caplog, conditional):
    """A categorical with ``when:`` false at its parent's first choice (``search_spaces/conditional.yaml``)
    failed every ``sweep run`` with "KeyError: 'momentum'" in the partly-read check."""
    name = "momentum" if 0.9 in conditional["choices"] else "epochs"
    raw = sweep({"optimizer": cat("adam", "sgd"), name: conditional}, fit={"epochs": 2})
    with caplog.at_level("WARNING", logger="sweep"):
        prepared = preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert prepared.dataset is not None
    assert not [r for r in caplog.records if "search.space" in r.getMessage()]


def test_every_shipped_search_space_passes_the_preflight():
    """The files under search_spaces/ are what new users run first."""
    root = Path(__file__).resolve().parents[2] / "search_spaces"
    for path in sorted(root.glob("*.yaml")):
        config = config_module.load(path)
        if config.data.source.startswith(("keras:", "csv:", "npz:")):
            continue  # downloads, or files a user brings
        preflight.prepare(config, str(path), (path.parent,))


def test_a_space_whose_high_end_cannot_be_built_is_refused_before_any_trial(tmp_path):
    """units up to 1e30 passed the preflight (a point whose build raised was skipped) and every
    trial drawing a large width failed with "out-of-range integer"."""
    raw = sweep({"units": {"type": "int", "low": 4, "high": 10**30}})
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert str(info.value).startswith(f"sweep.yaml: search.space.units: expected the model to build at units={10**30}, but mlp raised "), str(info.value)


def test_a_fixed_compile_setting_beside_a_factory_that_compiles_is_refused(tmp_path):
    """model.loss / metrics / loss_weights with a factory that calls compile() itself changed
    nothing (its own compile wins; no auc metric appeared) while the parent run recorded them."""
    (tmp_path / "self_compiled.py").write_text(textwrap.dedent("""
        import keras

        def build(hp, info):
            model = keras.Sequential([keras.Input(info.input_shape), keras.layers.Dense(info.num_outputs, activation="softmax")])
            model.compile(optimizer=keras.optimizers.Adam(hp["learning_rate"]), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            return model
    """))
    raw = sweep(model={"builder": "self_compiled:build", "args": {}, "metrics": ["accuracy", "auc"]})
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert str(info.value) == ("sweep.yaml: model.metrics: expected no model.metrics for self_compiled:build, which compiles the model itself "
                               "(its compile() settings are the ones used): set it in that compile() call, or return the model uncompiled")
    raw["model"].pop("metrics")
    assert preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,)).builder is not None


def test_an_objective_a_callback_of_the_users_adds_to_the_logs_is_accepted_with_a_warning(tmp_path, caplog):
    """A user callback that puts ``custom`` into the epoch's logs: the objective val_custom was
    refused as "not a metric the model logs", though MLflow got it every epoch."""
    (tmp_path / "adds_metric.py").write_text(textwrap.dedent("""
        import keras

        class AddMetric(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs["val_custom"] = 1.0 - logs.get("val_loss", 0.0)
    """))
    raw = sweep(fit={"callbacks": ["adds_metric:AddMetric"]}, objective={"metric": "val_custom", "mode": "max"})
    with caplog.at_level("WARNING", logger="sweep"):
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert any("objective.metric 'val_custom' is not a metric the model computes" in r.getMessage() and "adds_metric:AddMetric" in r.getMessage()
               for r in caplog.records), caplog.messages
    with pytest.raises(SweepConfigError, match="objective.metric: expected one of the metrics the model logs"):
        preflight.prepare(config_module.load(sweep(objective={"metric": "val_custom", "mode": "max"})), "sweep.yaml", (tmp_path,))


def test_integer_counts_with_a_regression_loss_train_as_a_regression(tmp_path):
    (tmp_path / "counts.py").write_text(textwrap.dedent("""
        import numpy as np

        def load():
            rng = np.random.default_rng(0)
            x = rng.normal(size=(200, 4)).astype("float32")
            return x, np.minimum(rng.poisson(np.exp(0.5 * x[:, 0])), 5).astype("int64")
    """))
    raw = sweep(data={"source": "counts:load"}, model={"loss": "mse", "metrics": ["mae"]}, objective={"metric": "val_mae", "mode": "min"})
    prepared = preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert (prepared.dataset.info.task, prepared.dataset.info.num_outputs) == ("regression", 1)


def test_a_model_that_loads_back_but_cannot_run_is_refused_before_any_trial(tmp_path):
    """A Lambda reading its module's ``ops`` loaded back and then failed every prediction of the
    registered best model (NameError), after a sweep that exited 0."""
    (tmp_path / "lambda_globals.py").write_text(textwrap.dedent("""
        import keras
        from keras import ops

        def build(hp, info):
            inputs = keras.Input(info.input_shape)
            hidden = keras.layers.Lambda(lambda t: ops.relu(t) * 2.0, output_shape=info.input_shape)(inputs)
            return keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(hidden))
    """))
    raw = sweep(model={"builder": "lambda_globals:build", "safe_mode": False, "args": {}})
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert info.value.key == "model.builder"
    assert "calling it failed: NameError: name 'ops' is not defined; a Lambda's function runs without its module's globals" in info.value.expected


def test_keras_advice_reaches_the_line_whole(tmp_path):
    """Keras wraps its sentence over lines: the line said "Object Net was created by passing" and stopped."""
    (tmp_path / "unsaveable.py").write_text(textwrap.dedent("""
        import keras

        class Net(keras.Model):
            def __init__(self, blocks, **kwargs):
                super().__init__(**kwargs)
                self.blocks = blocks

            def call(self, x):
                for block in self.blocks:
                    x = block(x)
                return x

        def build(hp, info):
            return Net([keras.layers.Dense(4, activation="relu"), keras.layers.Dense(info.num_outputs, activation="softmax")])
    """))
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(sweep(model={"builder": "unsaveable:build", "args": {}})), "sweep.yaml", (tmp_path,))
    assert "must override `get_config()` in order to be serializable" in info.value.expected, info.value.expected


def test_an_argument_named_like_a_credential_is_said_to_be_recorded(tmp_path, caplog):
    (tmp_path / "keyed.py").write_text(textwrap.dedent("""
        import numpy as np

        def load(api_key, max_tokens=3):
            rng = np.random.default_rng(0)
            x = rng.normal(size=(60, 4)).astype("float32")
            return x, (x[:, 0] > 0).astype("int64")
    """))
    raw = sweep(data={"source": "keyed:load", "args": {"api_key": "sk-LIVE-S3cret", "max_tokens": 3}})
    with caplog.at_level("WARNING", logger="sweep"):
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    said = [r.getMessage() for r in caplog.records if "credential" in r.getMessage()]
    assert len(said) == 1 and "data.args.api_key looks like a credential" in said[0] and "S3cret" not in said[0]


def test_an_objective_on_an_auto_named_head_that_moves_with_the_space_is_refused(tmp_path):
    """val_dense_1_accuracy exists only where layers=1: the other trials failed as "never computed"."""
    (tmp_path / "unnamed_heads.py").write_text(textwrap.dedent("""
        import keras
        import numpy as np

        def two():
            rng = np.random.default_rng(0)
            x = rng.normal(size=(80, 5)).astype("float32")
            return x, [(x[:, 0] > 0).astype("int64"), x[:, 1:2]]

        def build(hp, info):
            inputs = keras.Input((5,))
            hidden = inputs
            for _ in range(hp["layers"]):
                hidden = keras.layers.Dense(4, activation="relu")(hidden)
            return keras.Model(inputs, [keras.layers.Dense(2, activation="softmax")(hidden), keras.layers.Dense(1)(hidden)])
    """))
    raw = sweep({"layers": {"type": "int", "low": 1, "high": 3}}, data={"source": "unnamed_heads:two"},
                model={"builder": "unnamed_heads:build", "args": {}, "loss": ["sparse_categorical_crossentropy", "mse"], "metrics": [["accuracy"], ["mae"]]},
                objective={"metric": "val_dense_1_accuracy", "mode": "max"})
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert info.value.key == "objective.metric" and "name the output layers" in info.value.expected, str(info.value)


def test_a_callback_argument_named_like_a_credential_is_said_too(caplog):
    """``fit.callbacks: [{mycb:Cb: {api_token: ...}}]`` reached MLflow in clear with no word."""
    config = config_module.load(sweep(fit={"callbacks": [{"early_stopping": {"patience": 2}}, {"mycb:Notify": {"hook": {"api_token": "tok-S3cret"}}}]}))
    with caplog.at_level("WARNING", logger="sweep"):
        preflight.warn_secret_arguments(config, "sweep.yaml")
    said = [r.getMessage() for r in caplog.records if "credential" in r.getMessage()]
    assert len(said) == 1 and "fit.callbacks.1.mycb:Notify.hook.api_token looks like a credential" in said[0] and "S3cret" not in said[0]



def test_credentials_in_header_names_and_in_uris_are_said_too(caplog):
    """X-Api-Key, Authorization, and a database URL's password or a URL's ?sig= went to MLflow in clear, unsaid."""
    config = config_module.load(sweep(data={"source": "my_data:load", "args": {"db_url": "postgresql://bob:HUNTERdb@db.example/x", "opts": {"Authorization": "Bearer HUNTERb"},
                                                     "plain": "https://example.com/data.csv", "headers": {"X-Api-Key": "HUNTERx"},
                                                     "signed": "https://store.example/f?sig=HUNTERsig"}}))
    with caplog.at_level("WARNING", logger="sweep"):
        preflight.warn_secret_arguments(config, "sweep.yaml")
    said = " ".join(r.getMessage() for r in caplog.records if "credential" in r.getMessage())
    for path in ("data.args.db_url", "data.args.opts.Authorization", "data.args.headers.X-Api-Key", "data.args.signed"):
        assert f"{path} looks like a credential" in said, (path, said)
    assert "data.args.plain" not in said and "HUNTER" not in said


@pytest.mark.parametrize(("metric", "mode", "warned"), [("val_accuracy", "min", True), ("val_loss", "max", True), ("val_accuracy", "max", False),
                                                      ("val_auc", "max", False), ("val_kind_mae", "min", False), ("val_score", "min", False)])
def test_an_objective_mode_against_its_metric_is_said(metric, mode, warned, caplog):
    """``val_accuracy`` with ``mode: min`` ranked the worst trial best, exit 0."""
    config = config_module.load(sweep(objective={"metric": metric, "mode": mode}))
    with caplog.at_level("WARNING", logger="sweep"):
        preflight.warn_unlikely_mode(config, "sweep.yaml")
    said = [r.getMessage() for r in caplog.records if "objective.mode" in r.getMessage()]
    assert len(said) == int(warned) and (not warned or f"did you mean mode: {'max' if mode == 'min' else 'min'}?" in said[0])


def test_a_model_too_large_for_memory_is_one_line_on_the_space():
    """units of 1e8: TensorFlow's OOM ("... name: ") blamed model.builder."""
    raw = sweep({"units": {"type": "int", "low": 100_000_000, "high": 100_000_001}}, data={"features": 100_000_000 // 10**6})
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", ())
    assert info.value.key == "search.space"
    assert info.value.expected.startswith("expected a model that fits in memory, but building it at ") and "narrow the searched sizes" in info.value.expected


FIXED_BATCH = """
import numpy as np, keras


def load(rows=320):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4, 5)).astype("float32")
    y = (x[:, :, 0].sum(axis=1) > 0).astype("int64")
    half = rows // 2
    return (x[:half], y[:half]), (x[half:], y[half:])


def build(hp, info):
    inputs = keras.Input(shape=info.input_shape, batch_size=16)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.LSTM(4, stateful=True)(inputs)))
"""


@pytest.mark.parametrize(("change", "expected"), [
    ({}, None),
    ({"fit": {"batch_size": 32}}, "fit.batch_size: expected 16, since the model takes batches of exactly 16 rows (its inputs' batch_size), got 32"),
    ({"space": {"batch_size": cat(16, 32)}}, "search.space.batch_size: expected no batch_size to search, since the model takes batches of exactly 16 rows (its inputs' batch_size): remove it and set fit.batch_size: 16"),
    ({"data": {"args": {"rows": 300}}}, "data: expected training rows in whole batches of 16, since the model takes batches of exactly 16 rows (its inputs' batch_size), got 150 rows: keep 144 of them (a last partial batch fails in fit())"),
])
def test_a_model_built_for_a_fixed_batch_size_is_checked_in_that_size(tmp_path, change, expected):
    """A stateful LSTM (keras.Input(batch_size=16)) that a plain fit(batch_size=16) trains was
    refused as "model.builder: ... Incompatible shapes: [8,32] vs. [16,32]" (an 8-row evaluation)."""
    (tmp_path / "fixed_batch.py").write_text(FIXED_BATCH)
    raw = sweep(change.get("space"), data={"source": "fixed_batch:load", **change.get("data", {})}, model={"builder": "fixed_batch:build", "args": {}},
                fit={"batch_size": 16, "shuffle": False, **change.get("fit", {})})
    raw["data"] = {"source": "fixed_batch:load", **change.get("data", {})}
    config = config_module.load(raw)
    if expected is None:
        assert preflight.prepare(config, "sweep.yaml", (tmp_path,)).builder.spec == "fixed_batch:build"
        return
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config, "sweep.yaml", (tmp_path,))
    assert str(info.value) == f"sweep.yaml: {expected}"


@pytest.mark.parametrize(("function", "refused"), [("generators", True), ("endless_pydatasets", False), ("both_repeat", False)])
def test_class_weight_with_generators_is_refused_before_any_trial(tmp_path, function, refused):
    """Keras takes no class_weight with Python generators: every trial failed with "Argument
    `class_weight` is not supported for Python generator inputs"; tf.data and PyDataset take it."""
    (tmp_path / "endless_data.py").write_text(ENDLESS)
    raw = sweep(data={"source": f"endless_data:{function}", "num_outputs": 3}, fit={"steps_per_epoch": 6, "validation_steps": 2, "class_weight": {0: 1.0, 1: 3.0, 2: 1.0}})
    raw["data"].pop("samples"), raw["data"].pop("features"), raw["data"].pop("classes")
    if not refused:
        assert preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,)).dataset.class_weight == {0: 1.0, 1: 3.0, 2: 1.0}
        return
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(raw), "sweep.yaml", (tmp_path,))
    assert str(info.value).startswith("sweep.yaml: fit.class_weight: expected arrays, tf.data or a keras.utils.PyDataset for class_weight (Keras' rule), got generators from endless_data:generators"), str(info.value)


OWN_COMPILE = """
import keras

def net(hp, info):
    return keras.Sequential([keras.Input(info.input_shape), keras.layers.Dense(int(info.num_outputs), activation="softmax")])

def bad_loss(hp, info):
    model = net(hp, info)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropyy", metrics=["accuracy"])
    return model

def bad_metric(hp, info):
    model = net(hp, info)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acuracy"])
    return model
"""


@pytest.mark.parametrize(("change", "expected"), [
    ({"model": {"builder": "own_compile_names:bad_loss", "args": {}}},
     "model.builder: expected the factory's compile() to name losses and metrics Keras knows, but Keras said: Could not interpret loss identifier: sparse_categorical_crossentropyy"),
    ({"model": {"builder": "own_compile_names:bad_metric", "args": {}}},
     "model.builder: expected the factory's compile() to name losses and metrics Keras knows, but Keras said: Could not interpret metric identifier: acuracy"),
    ({"fit": {"callbacks": ["own_compile_names:net"]}},  # the model factory named as a callback
     "fit.callbacks.0: expected own_compile_names:net to make a keras.callbacks.Callback, but it is a function whose call with no arguments failed: "),
])
def test_names_keras_does_not_know_in_a_factorys_own_compile_or_a_function_as_callback(tmp_path, change, expected):
    """Found by a helper: a factory's compile() with a misspelt loss was said as "expected a model
    that accepts inputs of shape ..."; a function as a callback as "expected valid arguments"."""
    (tmp_path / "own_compile_names.py").write_text(OWN_COMPILE)
    with pytest.raises(SweepConfigError) as info:
        preflight.prepare(config_module.load(sweep(**change)), "sweep.yaml", (tmp_path,))
    assert str(info.value).startswith(f"sweep.yaml: {expected}"), str(info.value)


def test_the_preflight_says_it_starts_before_its_seconds(tmp_path, monkeypatch):
    """Loading the data, importing TensorFlow and trying the model took 8-25 s with nothing
    printed, so the command looked hung; one line says what it waits for, at once."""
    import io

    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with pytest.raises(SweepConfigError) as info:
        runner.run(sweep(model={"builder": "no_such_module_here:build"}), address="127.0.0.1:1", stream=out,
                   tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", storage=str(tmp_path / "runs"))
    assert "model.builder" in str(info.value)
    first = out.getvalue().splitlines()[0]
    assert first.startswith("preflight: loading the data and trying the model") and "then joining Ray at 127.0.0.1:1" in first, out.getvalue()
