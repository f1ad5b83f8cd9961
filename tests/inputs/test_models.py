"""sweep.models: built-in builders, user factories, optimizers and compiling (real Keras, no Ray)."""

from __future__ import annotations

from pathlib import Path

import cloudpickle
import keras
import numpy as np
import pytest

from sweep.inputs import models
from sweep.spec.config import ModelConfig
from sweep.errors import InputError
from sweep.inputs.dataset import DataInfo

FIXTURES = Path(__file__).parents[1] / "model_fixtures"
SEARCH = (FIXTURES,)


def info(shape=(10,), task="classification", outputs=3) -> DataInfo:
    return DataInfo(
        input_shape=tuple(shape), num_outputs=outputs, task=task, n_train=32, n_val=8, source="test", fingerprint="0"
    )


def tiny_data(data_info: DataInfo, rows: int = 32):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, *data_info.input_shape)).astype("float32")
    if data_info.task == "classification":
        y = rng.integers(0, data_info.num_outputs, size=rows).astype("int32")
    else:
        y = rng.normal(size=(rows, data_info.num_outputs)).astype("float32")
    return x, y


def lr(optimizer) -> float:
    return float(optimizer.learning_rate.numpy())


def expect_error(key: str, expected: str, fn, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as caught:
        fn(*args, **kwargs)
    assert caught.value.key == key
    assert caught.value.expected == expected
    return caught.value


@pytest.fixture(autouse=True)
def _fresh_session():
    yield
    keras.backend.clear_session()


# ---------------------------------------------------------------------------------------------
# built-ins


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("task,outputs", [("classification", 3), ("regression", 1), ("regression", 2)])
def test_builtin_builds_compiles_and_fits(name, task, outputs):
    data_info = info(shape=(64,), task=task, outputs=outputs)
    cfg = ModelConfig(builder=name, args={"units": [8]} if name == "mlp" else {"filters": [4, 4], "dense": 8})
    model = models.build(models.resolve_builder(cfg), {"learning_rate": 0.01}, data_info, cfg)
    assert model.compiled and model.output_shape == (None, outputs)
    x, y = tiny_data(data_info)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, validation_data=(x[:8], y[:8]))
    expected_metric = "val_accuracy" if task == "classification" else "val_mae"
    assert expected_metric in history.history
    assert np.isfinite(history.history["loss"][0])
    if task == "classification":
        assert model.loss == "sparse_categorical_crossentropy"
        assert np.allclose(model.predict(x[:4], verbose=0).sum(axis=1), 1.0, atol=1e-5)  # softmax
    else:
        assert model.loss == "mse"


def dense_widths(model: keras.Model) -> list[int]:
    return [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def test_mlp_hp_beats_args_and_layers_repeat_units():
    data_info = info(shape=(5,), outputs=3)
    assert dense_widths(models.mlp({}, data_info)) == [128, 128, 3]
    assert dense_widths(models.mlp({}, data_info, units=[16, 8])) == [16, 8, 3]
    assert dense_widths(models.mlp({"units": 32}, data_info, units=[16, 8])) == [32, 32, 3]
    assert dense_widths(models.mlp({"units": 32, "layers": 3}, data_info, units=[16, 8])) == [32, 32, 32, 3]
    assert dense_widths(models.mlp({"layers": 1}, data_info, units=[16, 8])) == [16, 3]
    assert dense_widths(models.mlp({"layers": 0}, data_info)) == [3]
    with_dropout = models.mlp({"dropout": 0.25}, data_info, dropout=0.0, units=[4])
    rates = [layer.rate for layer in with_dropout.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25]
    tanh = models.mlp({"activation": "tanh"}, data_info, units=[4])
    assert tanh.layers[1].activation.__name__ == "tanh"


def test_mlp_flattens_image_input():
    model = models.mlp({}, info(shape=(8, 8, 1), outputs=10), units=[4])
    assert any(isinstance(layer, keras.layers.Flatten) for layer in model.layers)
    assert model.output_shape == (None, 10)


def test_mlp_bad_units_names_the_key():
    expect_error(
        "search.space.units", "expected an integer or a list of integers, got 'wide'", models.mlp, {"units": "wide"}, info()
    )


@pytest.mark.parametrize("shape", [(64,), (8, 8, 1), (8, 8)])
def test_cnn_accepts_flat_square_and_image_inputs(shape):
    data_info = info(shape=shape, outputs=10)
    model = models.cnn({}, data_info, filters=[4, 8], dense=8)
    reshaped = any(isinstance(layer, keras.layers.Reshape) for layer in model.layers)
    assert reshaped == (shape != (8, 8, 1))
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 2  # 8x8 -> 4x4 -> 2x2, never below 2x2
    assert model.output_shape == (None, 10)
    x, y = tiny_data(data_info)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)


def test_cnn_does_not_pool_below_two_by_two():
    model = models.cnn({}, info(shape=(64,)), filters=[2, 2, 2, 2], dense=0)
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 2
    assert not any(
        isinstance(layer, keras.layers.Dense) and layer.units != 3 for layer in model.layers
    )  # dense=0: no hidden Dense


def test_cnn_hp_overrides():
    model = models.cnn({"filters": 6, "kernel_size": 5, "dense": 7, "dropout": 0.5}, info(shape=(8, 8, 1)))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [6, 6] and convs[0].kernel_size == (5, 5)
    assert dense_widths(model) == [7, 3]
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.5]


def test_cnn_rejects_non_square_flat_input():
    expect_error(
        "model.builder",
        "expected cnn inputs of shape (H, W, C), (H, W) or a square length such as 64 "
        "(use data.reshape otherwise), got (10,)",
        models.cnn,
        {},
        info(shape=(10,)),
    )


# ---------------------------------------------------------------------------------------------
# optimizers


@pytest.mark.parametrize("name", sorted(models.OPTIMIZERS))
def test_every_optimizer_constructs_with_learning_rate(name):
    optimizer = models.make_optimizer({"optimizer": name, "learning_rate": 0.0123})
    assert isinstance(optimizer, models.OPTIMIZERS[name])
    assert lr(optimizer) == pytest.approx(0.0123)


def test_optimizer_names_and_defaults():
    assert set(models.OPTIMIZERS) == {
        "adam", "sgd", "rmsprop", "adamw", "nadam", "adagrad", "adamax", "adadelta", "ftrl", "lion"
    }
    default = models.make_optimizer({})
    assert isinstance(default, keras.optimizers.Adam)
    assert lr(default) == pytest.approx(0.001)
    assert isinstance(models.make_optimizer({"optimizer": "SGD"}), keras.optimizers.SGD)


def test_momentum_reaches_sgd_and_is_ignored_by_adam():
    sgd = models.make_optimizer({"optimizer": "sgd", "learning_rate": 0.1, "momentum": 0.9})
    assert sgd.momentum == pytest.approx(0.9)
    rms = models.make_optimizer({"optimizer": "rmsprop", "momentum": 0.5})
    assert rms.momentum == pytest.approx(0.5)
    adam = models.make_optimizer({"optimizer": "adam", "learning_rate": 0.1, "momentum": 0.9, "units": 4})
    assert isinstance(adam, keras.optimizers.Adam)
    assert not hasattr(adam, "momentum")


def test_weight_decay_and_clipnorm():
    adamw = models.make_optimizer({"optimizer": "adamw", "weight_decay": 0.01})
    assert adamw.weight_decay == pytest.approx(0.01)
    clipped = models.make_optimizer({"optimizer": "adam", "clipnorm": 1.0})
    assert clipped.clipnorm == pytest.approx(1.0)
    assert models.make_optimizer({"optimizer": "sgd", "momentum": None}).momentum == 0.0


def test_unknown_optimizer_error():
    expect_error(
        "search.space.optimizer",
        "expected one of adam, sgd, rmsprop, adamw, nadam, adagrad, adamax, adadelta, ftrl, lion, got 'foo'",
        models.make_optimizer,
        {"optimizer": "foo"},
    )


# ---------------------------------------------------------------------------------------------
# compiling and user factories


def test_build_compiles_with_config_loss_metrics_and_steps_per_execution():
    cfg = ModelConfig(builder="sweep_fixture_models:uncompiled", loss="mae", metrics=["mse"])
    data_info = info(task="regression", outputs=1)
    hp = {"optimizer": "sgd", "learning_rate": 0.05, "steps_per_execution": 4}
    model = models.build(models.resolve_builder(cfg, SEARCH), hp, data_info, cfg)
    assert model.compiled and model.loss == "mae"
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert lr(model.optimizer) == pytest.approx(0.05)
    assert model.steps_per_execution == 4
    x, y = tiny_data(data_info)
    history = model.fit(x, y, epochs=1, verbose=0)
    assert "mse" in history.history


def test_build_leaves_a_compiled_model_alone():
    import sweep_fixture_models  # noqa: F401  (importable once resolve added the search path)

    cfg = ModelConfig(builder="sweep_fixture_models:compiled", loss="mse", metrics=["mae"])
    builder = models.resolve_builder(cfg, SEARCH)
    model = models.build(builder, {"optimizer": "adam", "learning_rate": 0.1}, info(task="regression", outputs=1), cfg)
    assert model.optimizer is sweep_fixture_models.LAST_OPTIMIZER["value"]
    assert model.loss == "mae"


def test_user_factory_args_are_passed_when_accepted():
    data_info = info(task="regression", outputs=1)
    for spec in ("sweep_fixture_models:with_width", "sweep_fixture_models:with_kwargs"):
        cfg = ModelConfig(builder=spec, args={"width": 5})
        model = models.build(models.resolve_builder(cfg, SEARCH), {}, data_info, cfg)
        assert dense_widths(model) == [5, 1]


def test_user_factory_args_not_accepted_are_an_error():
    cfg = ModelConfig(builder="sweep_fixture_models:uncompiled", args={"width": 5})
    expect_error(
        "model.args.width",
        "expected an argument 'sweep_fixture_models:uncompiled' accepts (none), got 'width'",
        models.resolve_builder,
        cfg,
        SEARCH,
    )


def test_builtin_unknown_arg_is_an_error():
    expect_error(
        "model.args.colour",
        "expected an argument mlp accepts (units, dropout, activation, layers), got 'colour'",
        models.resolve_builder,
        ModelConfig(builder="mlp", args={"colour": "red"}),
    )


def test_factory_must_accept_hp_and_info():
    with pytest.raises(InputError) as caught:
        models.resolve_builder(ModelConfig(builder="sweep_fixture_models:no_info"), SEARCH)
    assert caught.value.key == "model.builder"
    assert caught.value.expected.startswith("expected 'sweep_fixture_models:no_info' to accept (hp, info)")


def test_a_factorys_own_parameters_without_defaults_are_filled_by_model_args():
    """def build(hp, info, width, *, depth) with model.args {width: 8, depth: 2} was refused as
    "expected ... to accept (hp, info)"; without the args it still is, naming them."""
    builder = models.resolve_builder(ModelConfig(builder="sweep_fixture_models:needs_width", args={"width": 8, "depth": 2}), SEARCH)
    assert builder.keywords == {"width": 8, "depth": 2}
    with pytest.raises(InputError) as caught:
        models.resolve_builder(ModelConfig(builder="sweep_fixture_models:needs_width", args={"width": 8}), SEARCH)
    assert caught.value.expected.startswith("expected 'sweep_fixture_models:needs_width' to accept (hp, info) and model.args (width), got a function with signature")


def test_factory_returning_none_error():
    cfg = ModelConfig(builder="sweep_fixture_models:returns_none")
    expect_error(
        "model.builder",
        "expected 'sweep_fixture_models:returns_none' to return a keras.Model, got NoneType",
        models.build,
        models.resolve_builder(cfg, SEARCH),
        {},
        info(),
        cfg,
    )


def test_factory_raising_becomes_input_error():
    cfg = ModelConfig(builder="sweep_fixture_models:raises")
    error = expect_error(
        "model.builder",
        "expected 'sweep_fixture_models:raises' to build a model, but it raised RuntimeError: no GPU here (sweep_fixture_models.py:27)",  # where in the factory
        models.build,
        models.resolve_builder(cfg, SEARCH),
        {},
        info(),
        cfg,
    )
    assert isinstance(error.__cause__, RuntimeError)


def test_unknown_builder_error():
    expect_error(
        "model.builder",
        "expected mlp, cnn or package.module:function, got 'foo'",
        models.resolve_builder,
        ModelConfig.model_construct(builder="foo", args={}),
    )


def test_output_width_mismatch_is_reported():
    cfg = ModelConfig(builder="sweep_fixture_models:uncompiled")
    builder = models.resolve_builder(cfg, SEARCH)
    wrong = DataInfo((10,), 3, "classification", 32, 8, "test", "0")
    model = models.build(builder, {}, wrong, cfg)  # Dense(num_outputs): fine
    assert model.output_shape == (None, 3)

    def one_unit(hp, data_info):
        inputs = keras.Input(shape=data_info.input_shape)
        return keras.Model(inputs, keras.layers.Dense(1)(inputs))

    expect_error(
        "model.builder",
        "expected a final layer with 3 units, one per class (softmax with sparse_categorical_crossentropy), "
        "got output shape (None, 1) (or set model.loss to a loss that fits your output)",
        models.build,
        one_unit,
        {},
        wrong,
        cfg,
    )
    models.check_model_output(one_unit({}, info(task="regression", outputs=1)), info(task="regression", outputs=1))
    # an explicit loss skips the check: the user knows their output
    models.build(one_unit, {}, info(outputs=2), ModelConfig(loss="binary_crossentropy"))


def test_default_loss_and_metrics():
    assert models.default_loss(info()) == "sparse_categorical_crossentropy"
    assert models.default_metrics(info()) == ["accuracy"]
    assert models.default_loss(info(task="regression", outputs=1)) == "mse"
    assert models.default_metrics(info(task="regression", outputs=1)) == ["mae"]


# ---------------------------------------------------------------------------------------------
# shipping to Ray workers


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(builder="mlp", args={"units": [4]}),
        ModelConfig(builder="cnn", args={"filters": [2]}),
        ModelConfig(builder="sweep_fixture_models:with_width", args={"width": 3}),
    ],
    ids=["mlp", "cnn", "user"],
)
def test_resolved_builder_survives_cloudpickle(cfg):
    builder = models.resolve_builder(cfg, SEARCH)
    clone = cloudpickle.loads(cloudpickle.dumps(builder))
    assert clone.spec == cfg.builder
    data_info = info(shape=(16,), task="regression", outputs=1)
    model = models.build(clone, {}, data_info, cfg)
    assert model.output_shape == (None, 1)


def test_two_classes_as_labels_get_one_sigmoid_unit_and_binary_crossentropy():
    """Keras' binary convention, so AUC, Precision or F1Score work on the labels as given."""
    data_info = info(shape=(5,), outputs=2)
    model = models.build(models.resolve_builder(ModelConfig(args={"units": [4]})), {}, data_info, ModelConfig())
    assert model.output_shape == (None, 1)
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert model.loss == "binary_crossentropy"
    softmax_two = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2, activation="softmax")])
    assert models.default_loss(data_info, softmax_two) == "sparse_categorical_crossentropy"  # a factory's 2-unit softmax keeps its loss


def test_several_inputs_or_outputs_are_refused_by_the_builtins_in_one_line():
    several = DataInfo(input_shape=(4,), num_outputs=3, task="classification", n_train=8, n_val=2, source="t", fingerprint="0",
                       input_shapes={"a": (4,), "b": (2,)}, output_sizes=3)
    with pytest.raises(InputError) as err:
        models.mlp({}, several)
    assert err.value.key == "model.builder"
    assert "2 inputs" in err.value.expected and "package.module:function" in err.value.expected


def test_recording_hp_notes_every_key_read():
    hp = models.RecordingHP({"units": 8, "dropout": 0.1, "dropuot": 0.2})
    hp["units"], hp.get("dropout"), ("missing" in hp)
    assert hp.read == {"units", "dropout", "missing"}
    dict(hp)
    assert hp.read >= {"units", "dropout", "dropuot"}, "copying reads every key"


def test_a_binary_head_among_several_outputs_gets_binary_crossentropy():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, {"stars": keras.layers.Dense(5, name="stars")(hidden), "p": keras.layers.Dense(1, activation="sigmoid", name="p")(hidden)})
    info = DataInfo(input_shape=(3,), num_outputs=5, task="classification", n_train=8, n_val=2, source="t", fingerprint="0",
                    output_sizes={"stars": 5, "p": 2}, target_layout={"stars": "sparse", "p": "sparse"})
    assert models.default_loss(info, model) == {"stars": "sparse_categorical_crossentropy", "p": "binary_crossentropy"}


def test_the_default_accuracy_of_rows_of_several_labels_is_per_label():
    """Keras' "accuracy" on multi-label rows is the argmax's: the sweep ranked trials by it."""
    data_info = DataInfo(input_shape=(6,), num_outputs=4, task="classification", n_train=64, n_val=64, source="test",
                         fingerprint="0", target_layout="multilabel")
    cfg = ModelConfig(builder="mlp", args={"units": [8]})
    model = models.build(models.resolve_builder(cfg), {"learning_rate": 0.01}, data_info, cfg)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (rng.random((64, 4)) < 0.4).astype("float32")
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    per_label = float(np.mean((model.predict(x, verbose=0) > 0.5) == (y > 0.5)))
    assert logs["accuracy"] == pytest.approx(per_label, abs=1e-6)


class _FailsInCall(keras.layers.Layer):
    def call(self, x):
        return None.assign(x)  # a bug in the user's layer, hit while the functional model is built


def test_a_factory_error_inside_a_layer_call_names_the_cause_not_keras_header():
    """The line kept only "Exception encountered when calling Outer.call()."."""
    def build(hp, info):
        inputs = keras.Input(info.input_shape)
        return keras.Model(inputs, _FailsInCall()(inputs))

    info = DataInfo((3,), 2, "classification", 10, 2, "x", "f")
    with pytest.raises(InputError) as err:
        models.build(build, {}, info, ModelConfig(builder="x:y"))
    assert err.value.key == "model.builder"
    assert "raised AttributeError: 'NoneType' object has no attribute 'assign'" in err.value.expected
