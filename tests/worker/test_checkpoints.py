"""The checkpoint format: a checkpoint folder holds what a plain ``model.save`` writes, and its meta."""

from __future__ import annotations

import numpy as np


def test_checkpoint_reuses_kerass_attribute_skipsets_and_saves_what_keras_saves(tmp_path):
    """save_checkpoint hands Keras' saver its per-kind attribute skipsets (see there) and
    writes the same model a plain ``model.save`` does: config, weights, optimizer state."""
    import threading

    import keras
    from keras.src.backend.common import global_state
    from keras.src.saving import saving_lib

    from sweep.worker import checkpoints

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(0.01), "mse", metrics=["mae"])
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    model.fit(x, x[:, :2], epochs=2, verbose=0)
    plain, ours = tmp_path / "plain", tmp_path / "ours"
    plain.mkdir(), ours.mkdir()
    model.save(plain / checkpoints.MODEL_FILE)

    seen: dict[str, object] = {}

    def save_in_a_trial_thread() -> None:  # Keras' global state is per thread, like a trial's
        checkpoints.save_checkpoint(model, ours, epoch=2)
        seen.update({kind: global_state.get_global_attribute(f"saving_attr_skiplist_{kind}") for kind in ("Layer", "Optimizer")})

    thread = threading.Thread(target=save_in_a_trial_thread)
    thread.start()
    thread.join()
    def public(names) -> set[str]:  # Keras' saver skips dunder names itself; '__annotations__' appears on a
        return {n for n in names if not n.startswith("__")}  # class once anything reads it, so it is no difference

    for kind in ("Layer", "Optimizer"):
        assert public(seen[kind]) == public(saving_lib.get_attr_skipset(kind)), kind

    a, b = checkpoints.load_checkpoint(plain), checkpoints.load_checkpoint(ours)
    assert a.to_json() == b.to_json()
    for left, right in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)
    assert len(a.optimizer.variables) == len(b.optimizer.variables) > 2  # iterations, learning rate, moments
    for left, right in zip(a.optimizer.variables, b.optimizer.variables, strict=True):
        np.testing.assert_array_equal(left.numpy(), right.numpy())
    np.testing.assert_array_equal(a.predict(x, verbose=0), model.predict(x, verbose=0))
    assert checkpoints.read_meta(ours) == {"epoch": 2}


def test_a_checkpoint_folder_holds_the_model_and_its_meta(tmp_path):
    """The on-disk format that retries, resumes, ``sweep resume`` and export read back."""
    import keras

    from sweep.worker import checkpoints

    assert (checkpoints.MODEL_FILE, checkpoints.META_FILE) == ("model.keras", "meta.json")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    checkpoints.save_checkpoint(model, tmp_path, epoch=4, metric="val_loss", value=0.25)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json", "model.keras"]
    assert checkpoints.read_meta(tmp_path) == {"epoch": 4, "metric": "val_loss", "value": 0.25}
    assert checkpoints.read_meta(tmp_path / "missing") == {}
    assert checkpoints.load_checkpoint(tmp_path).to_json() == model.to_json()


def test_a_mixed_precision_checkpoint_keeps_its_optimizer_state_in_a_float32_process(tmp_path):
    """A retried or resumed trial loads its checkpoint before the user's code sets any policy: the
    loss-scaling optimizer, its Adam moments and its step count come back as they were saved
    (Keras alone gave a plain Adam at step 0, with a warning)."""
    import warnings

    import keras

    from sweep.worker import checkpoints

    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype("int32")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax", dtype="float32")])
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        checkpoints.save_checkpoint(model, tmp_path, epoch=2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert checkpoints.saved_dtype_policy(tmp_path / checkpoints.MODEL_FILE) == "mixed_float16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Skipping variable loading for optimizer" is a warning
        loaded = checkpoints.load_checkpoint(tmp_path)
    assert type(loaded.optimizer).__name__ == "LossScaleOptimizer"
    assert int(loaded.optimizer.iterations.numpy()) == 8
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for variable, saved in zip(loaded.optimizer.variables, model.optimizer.variables):  # same order (layer names differ in one process)
        np.testing.assert_allclose(variable.numpy(), saved.numpy())
    assert keras.mixed_precision.global_policy().name == "float32", "the process's policy is put back"
    assert checkpoints.saved_dtype_policy(tmp_path / "meta.json") is None


def test_the_format_module_imports_without_keras():
    """``sweep export`` reads MODEL_FILE from here: importing it must not load Keras or Ray."""
    import subprocess
    import sys

    code = "import sys, sweep.worker.checkpoints; print(sorted(m for m in ('keras', 'tensorflow', 'ray') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


FUNCTIONS_ONLY = '''
import keras


def focal(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


def halve(x):
    return x * 0.5


def build():
    inputs = keras.Input((4,))
    hidden = keras.layers.Lambda(halve)(keras.layers.Dense(4)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile("adam", loss=focal)
    return model
'''

LOAD_FRESH = r"""
import sys
from pathlib import Path
from sweep.worker.checkpoints import load_model_file
model = load_model_file(sys.argv[1], None, (Path(sys.argv[2]),), safe_mode=False)
print("LOADED", model.loss.__name__, type(model.layers[2]).__name__)
"""


def test_a_fresh_process_finds_the_users_plain_functions_by_their_bare_names(tmp_path):
    """Keras records a plain function (a loss, a Lambda's function) by its bare name only: a
    process that had not imported the user's module (load_best, export, a registry load) failed
    with "Could not locate function 'focal'" although the sweep had finished and registered it.
    The user's module that defines the name is found in the sweep's folders and imported."""
    import subprocess
    import sys

    code = tmp_path / "code"
    code.mkdir()
    (code / "only_functions.py").write_text(FUNCTIONS_ONLY)
    (code / "train_script.py").write_text("raise SystemExit('a script that must not be imported')\n")
    saved = tmp_path / "model.keras"
    build = f"import sys; sys.path.insert(0, {str(code)!r}); import only_functions; only_functions.build().save({str(saved)!r})"
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True, timeout=300)
    run = subprocess.run([sys.executable, "-c", LOAD_FRESH, str(saved), str(code)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "LOADED focal Lambda" in run.stdout


SAME_NAMES_A = '''
import numpy as np
from keras import ops


def act(x):
    return ops.relu(x)


def swish(x):
    return x
'''

SAME_NAMES_B = '''
import keras
from keras import ops

import same_a  # noqa: F401 - the data lives there


def act(x):
    return -3.0 * ops.tanh(x)


def swish(x):  # the name of Keras' own swish, other math
    return x * 0.0 + 1.0


def build(hp, info):
    inputs = keras.Input(info.input_shape)
    hidden = keras.layers.Dense(4, activation=swish)(keras.layers.Dense(8, activation=act)(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
'''

LOAD_AND_SAY = r"""
import sys
from pathlib import Path
from sweep.worker.checkpoints import load_model_file
model = load_model_file(sys.argv[1], None, (Path(sys.argv[2]),))
print("FROM", model.layers[1].activation.__module__, model.layers[2].activation.__module__, "stray" in sys.modules)
"""


def test_a_users_function_is_loaded_from_its_own_module_not_one_with_the_same_name(tmp_path, monkeypatch):
    """Two modules of the sweep's folder defined ``act`` (and one redefined Keras' ``swish``):
    load_best and the registered model silently used the other module's, or Keras' own, and the
    search for it imported an unrelated script of the folder."""
    import subprocess
    import sys

    from sweep.inputs import models
    from sweep.inputs.dataset import DataInfo
    from sweep.spec.config import ModelConfig
    from sweep.worker.checkpoints import save_checkpoint

    code = tmp_path / "code"
    code.mkdir()
    (code / "same_a.py").write_text(SAME_NAMES_A)
    (code / "same_b.py").write_text(SAME_NAMES_B)
    (code / "stray.py").write_text("def act(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(code))
    cfg = ModelConfig(builder="same_b:build")
    info = DataInfo(input_shape=(6,), num_outputs=2, task="classification", n_train=8, n_val=8, source="test", fingerprint="0")
    model = models.build(models.resolve_builder(cfg, (code,)), {}, info, cfg, search_paths=(code,))
    save_checkpoint(model, tmp_path)
    run = subprocess.run([sys.executable, "-c", LOAD_AND_SAY, str(tmp_path / "model.keras"), str(code)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "FROM same_b same_b False" in run.stdout, run.stdout
