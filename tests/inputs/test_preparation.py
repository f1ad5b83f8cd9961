"""sweep.inputs.preparation: the steps done to the inputs before fit(), and the same steps as
Keras layers in front of a trained model, so the best model takes the source's raw inputs
(real data, real Keras; no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep.inputs import data, preparation
from sweep.spec.config import DataConfig

RNG = np.random.default_rng(7)


def _train(model, x, y, epochs=2):
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, verbose=0)
    return model


def _saved_and_loaded(model, folder: Path):
    import keras

    model.save(folder / "model.keras")
    return keras.saving.load_model(folder / "model.keras", safe_mode=True)


def test_standardizing_uses_the_train_statistics_and_leaves_integers_alone():
    x = {"features": RNG.normal(4.0, 3.0, (300, 5)).astype("float32"), "ids": RNG.integers(0, 9, (300, 3))}
    steps = preparation.fit(x, standardize=True)
    prepared = steps.apply(x)
    np.testing.assert_allclose(prepared["features"].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(prepared["features"].std(axis=0), 1.0, atol=1e-5)
    assert prepared["ids"] is x["ids"], "token ids are never standardized"
    assert steps.summary() == "features: standardized"


def test_a_constant_feature_keeps_its_values_apart_from_the_mean():
    x = np.column_stack([np.full(50, 3.0), RNG.normal(size=50)]).astype("float32")
    prepared = preparation.fit(x, standardize=True).apply(x)
    assert np.all(prepared[:, 0] == 0.0) and np.all(np.isfinite(prepared))


def test_nothing_done_is_no_preparation_and_no_wrapper():
    import keras

    x = RNG.normal(size=(20, 4)).astype("float32")
    steps = preparation.fit(x)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert not steps.changes_anything and steps.front(model) is model and steps.apply(x) is x


def test_the_front_model_on_raw_rows_is_the_trained_model_on_prepared_rows(tmp_path):
    import keras

    keras.utils.set_random_seed(1)
    x = RNG.normal(50.0, 20.0, (400, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 100).astype("int64")
    steps = preparation.fit(x, standardize=True)
    model = _train(keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")]), steps.apply(x), y)
    wanted = model.evaluate(steps.apply(x), y, verbose=0, return_dict=True)
    served = _saved_and_loaded(steps.front(model), tmp_path)  # built-in layers only: safe_mode loads it
    np.testing.assert_allclose(served.predict(x, verbose=0), model.predict(steps.apply(x), verbose=0), atol=1e-5)
    got = served.evaluate(x, y, verbose=0, return_dict=True)  # compiled as the trial was
    assert got["accuracy"] == pytest.approx(wanted["accuracy"], abs=1e-6)
    assert got["loss"] == pytest.approx(wanted["loss"], rel=1e-4)
    alone = model.predict(x, verbose=0)  # the trained model on raw rows: the reason for the front
    assert np.abs(alone - served.predict(x, verbose=0)).max() > 0.1


def test_float16_inputs_keep_their_statistics_in_float32(tmp_path):
    """A float16 feature of std 400: its variance overflowed float16, the Normalization layer
    zeroed that feature, and the logged best model scored 0.73 where the sweep reported 0.93."""
    import keras

    keras.utils.set_random_seed(2)
    x = np.stack([RNG.normal(1000, 400, 300), RNG.normal(0, 1, 300), RNG.normal(0, 1e-4, 300)], 1).astype("float16")
    steps = preparation.fit(x, standardize=True)
    prepared = steps.apply(x)
    assert prepared.dtype == np.float32 and np.all(np.isfinite(prepared))
    np.testing.assert_allclose(prepared.std(axis=0), 1.0, atol=1e-2)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])
    served = _saved_and_loaded(steps.front(model), tmp_path)
    np.testing.assert_allclose(served.predict(x, verbose=0), model.predict(prepared, verbose=0), atol=1e-4)


def test_features_of_tiny_and_huge_spread_are_standardized_exactly_in_the_model(tmp_path):
    """A csv column of std 1e-9 carried the signal: Keras' Normalization divides by at least
    1e-7, and the logged model scored 0.46 where the sweep reported 0.975."""
    import keras

    x = np.stack([RNG.normal(0, 1e-9, 200), RNG.normal(1e5, 3.0, 200), RNG.normal(0, 1e20, 200)], 1).astype("float32")
    steps = preparation.fit(x, standardize=True)
    identity = keras.Sequential([keras.Input((3,)), keras.layers.Identity()])
    served = _saved_and_loaded(steps.front(identity), tmp_path)
    np.testing.assert_allclose(served.predict(x, verbose=0), steps.apply(x), atol=1e-5)


def test_images_are_rescaled_and_given_their_channel_axis(tmp_path):
    import keras

    pixels = RNG.integers(0, 256, (40, 8, 8)).astype("uint8")
    steps = preparation.fit(pixels[..., np.newaxis].astype("float32"), scale=preparation.IMAGE_SCALE, raw_shape=(8, 8))
    prepared = steps.apply(pixels.astype("float32"))
    assert prepared.shape == (40, 8, 8, 1) and prepared.max() <= 1.0
    conv = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(3)])
    served = _saved_and_loaded(steps.front(conv), tmp_path)
    np.testing.assert_allclose(served.predict(pixels, verbose=0), conv.predict(prepared, verbose=0), atol=1e-5)
    assert steps.summary() == "scaled by 0.00392157, reshaped (8, 8) -> (8, 8, 1)"


def test_a_dict_input_model_keeps_its_input_names(tmp_path):
    import keras

    x = {"a": RNG.normal(9.0, 4.0, (60, 3)).astype("float32"), "ids": RNG.integers(0, 10, (60, 2))}
    steps = preparation.fit(x, standardize=True)
    a, ids = keras.Input((3,), name="a"), keras.Input((2,), name="ids", dtype="int64")
    merged = keras.layers.Concatenate()([a, keras.layers.Flatten()(keras.layers.Embedding(10, 2)(ids))])
    model = keras.Model({"a": a, "ids": ids}, keras.layers.Dense(1)(merged))
    served = _saved_and_loaded(steps.front(model), tmp_path)
    assert sorted(t.name for t in served.inputs) == ["a", "ids"]
    np.testing.assert_allclose(served.predict(x, verbose=0), model.predict(steps.apply(x), verbose=0), atol=1e-5)


def test_data_reshape_runs_after_the_standardization():
    x = RNG.normal(2.0, 5.0, (30, 12)).astype("float32")
    steps = preparation.fit(x, standardize=True).reshaped((3, 4))
    assert steps.apply(x).shape == (30, 3, 4)
    np.testing.assert_allclose(steps.apply(x).reshape(30, 12).mean(axis=0), 0.0, atol=1e-5)


@pytest.mark.parametrize("source", ["digits", "diabetes", "synthetic"])
def test_built_in_sources_record_what_they_did_and_keep_the_raw_example(source):
    prepared = data.load(DataConfig(source=source))
    raw = data.load(DataConfig(source=source, normalize=False))  # the same split, untouched
    steps = prepared.preparation
    assert steps is not None and steps.changes_anything
    np.testing.assert_allclose(steps.apply(raw.x_val), prepared.x_val, atol=1e-5)
    np.testing.assert_array_equal(prepared.example(), raw.x_val[:5])  # the logged model's input example is raw rows
    assert raw.preparation is None and raw.example() is not None


def test_a_users_own_arrays_are_not_prepared_unless_asked(tmp_path):
    path = tmp_path / "rows.npz"
    np.savez(path, x=RNG.normal(size=(50, 4)).astype("float32"), y=RNG.integers(0, 2, 50))
    assert data.load(DataConfig(source=f"npz:{path}")).preparation is None
    asked = data.load(DataConfig(source=f"npz:{path}", normalize=True, reshape=[2, 2]))
    assert asked.preparation.summary() == "standardized, reshaped (4,) -> (2, 2)"
    assert asked.x_train.shape[1:] == (2, 2)


def test_the_front_compiles_with_the_users_unregistered_metric(tmp_path, monkeypatch):
    """An unregistered Metric subclass compiled by the factory: the copy of the compile settings
    could not find it, and the sweep logged and registered the model that takes prepared rows."""
    import importlib
    import keras

    (tmp_path / "hits_metric.py").write_text(
        "import keras\n\n"
        "class Hits(keras.metrics.Metric):\n"
        "    def __init__(self, name='hits', **kw):\n"
        "        super().__init__(name=name, **kw)\n"
        "        self.n = self.add_variable(shape=(), initializer='zeros', name='n')\n"
        "    def update_state(self, y_true, y_pred, sample_weight=None):\n"
        "        hit = keras.ops.equal(keras.ops.cast(keras.ops.argmax(y_pred, -1), 'int32'), keras.ops.cast(y_true, 'int32'))\n"
        "        self.n.assign_add(keras.ops.sum(keras.ops.cast(hit, 'float32')))\n"
        "    def result(self):\n"
        "        return self.n\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hits = importlib.import_module("hits_metric")
    x = RNG.normal(3.0, 2.0, (40, 3)).astype("float32")
    steps = preparation.fit(x, standardize=True)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=[hits.Hits()])
    y = np.arange(40) % 2
    wanted = model.evaluate(steps.apply(x), y, verbose=0, return_dict=True)["hits"]
    with pytest.raises(TypeError, match="Hits"):
        steps.front(model)
    assert model.compiled, "a failed front leaves the model as it came"
    fronted = steps.front(model, {"Hits": hits.Hits})
    assert fronted.evaluate(x, y, verbose=0, return_dict=True)["hits"] == wanted
    fronted.save(tmp_path / "served.keras")
    monkeypatch.delitem(__import__("sys").modules, "hits_metric")
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))
    plain = keras.saving.load_model(tmp_path / "served.keras", compile=False)  # no custom objects: the model itself still loads
    np.testing.assert_allclose(plain.predict(x, verbose=0), fronted.predict(x, verbose=0), atol=1e-6)
