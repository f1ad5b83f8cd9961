"""The best model's MLflow signature for every input structure Keras takes: a list of inputs
had made MLflow infer an Array schema, which its Keras flavor refuses, so the sweep's finish
failed and no model was logged (found by a new user's multi-input model)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from sweep.tracking.export import keras_signature


def _two_inputs() -> keras.Model:
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    return keras.Model([a, b], keras.layers.Dense(1)(keras.layers.Concatenate()([a, b])))


@pytest.mark.parametrize("structure", ["list"])  # dict and array inputs are logged by the end-to-end sweeps
def test_every_input_structure_gets_a_signature_the_keras_flavor_logs_and_serves(tmp_path, structure):
    import mlflow

    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 2)).astype("float32")
    if structure == "array":
        inputs = keras.Input((3,), name="a")
        model, example = keras.Model(inputs, keras.layers.Dense(1)(inputs)), xa
    else:
        model, example = _two_inputs(), ([xa, xb] if structure == "list" else {"a": xa, "b": xb})
    signature, logged_example = keras_signature(model, example)
    assert signature is not None
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run():
        info = mlflow.keras.log_model(model, name="model", signature=signature)
    served = mlflow.pyfunc.load_model(info.model_uri).predict(logged_example)
    np.testing.assert_allclose(np.asarray(served), model.predict(example, verbose=0), rtol=1e-5)
    if structure == "list":
        assert set(logged_example) == {"a", "b"}, "a list of inputs is named by the model's inputs"
