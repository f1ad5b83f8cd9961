"""End to end: the user's data reaches fit() as model.fit() takes it (issue 17).

Each sweep runs one trial on a real Ray worker and records its epochs in a real MLflow store;
the same arrays through a plain in-process ``model.fit()`` with the same seed must give the
same per-epoch metrics. Structures (dict inputs, dict targets), weights, pipelines built on
workers and ``epochs`` in the space run through the whole sweep too.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.slow

USER_CODE = Path(__file__).parent / "user_code"
SEED, LR, BATCH = 0, 0.01, 32


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    shutil.copy(USER_CODE / "fit_shapes.py", tmp_path / "fit_shapes.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fit_shapes", None)
    return tmp_path


def _sweep(name: str, data: dict, model: dict, objective: str, epochs: int = 3, space: dict | None = None, fit: dict | None = None) -> dict:
    return {
        "name": name,
        "data": data,
        "model": model,
        "fit": {"epochs": epochs, "batch_size": BATCH, **(fit or {})},
        "objective": {"metric": objective, "mode": "max" if "acc" in objective or "f1" in objective or "auc" in objective else "min"},
        "search": {"sampler": "grid", "seed": SEED, "trials": 8, "space": space or {"learning_rate": {"type": "categorical", "choices": [LR]}}},
        "scheduler": {"type": "fifo"},
        "failure": {"fail_fast": 1},
    }


def _run(folder: Path, config: dict):
    import sweep

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    result = sweep.run(config, storage=str(folder / "runs"), tracking_uri=uri, quiet=True)
    assert result.counts().get("completed", 0) >= 1, result.trials.to_dict("records")
    return result, uri


def _histories(uri: str, name: str) -> list[dict[str, list[float]]]:
    from sweep.tracking.client import client as tracking_client
    from sweep.tracking import store

    client = tracking_client(uri)
    parent = store.find_parent_run(uri, name)
    found = []
    for child in store.child_runs(uri, parent):
        names = [k for k in child.data.metrics if not k.startswith("worker/") and not k.startswith("best_")]
        found.append({k: [m.value for m in sorted(client.get_metric_history(child.info.run_id, k), key=lambda m: m.step)] for k in names})
    return found


def _plain_fit(model: keras.Model, train: tuple, val: tuple, epochs: int, **kwargs) -> dict[str, list[float]]:
    return model.fit(*train, batch_size=BATCH, epochs=epochs, validation_data=val, shuffle=True, verbose=0, **kwargs).history


def _assert_same(got: dict[str, list[float]], plain: dict[str, list[float]]) -> None:
    for name, values in plain.items():
        assert name in got, f"{name} missing from MLflow ({sorted(got)})"
        values = [float(np.ravel(v)[0]) for v in values]  # F1Score on one unit logs a one-element array
        np.testing.assert_allclose(got[name], values, rtol=0, atol=2e-4, err_msg=name)


def _info(x, y):
    from sweep.spec.config import DataConfig
    from sweep.inputs.data import load

    return load(DataConfig(source="fit_shapes:" + x, args=y)).info


def test_one_hot_targets_with_categorical_crossentropy_train_as_plain_fit(ray_session, folder):
    import fit_shapes

    config = _sweep("fit-onehot", {"source": "fit_shapes:onehot"},
                    {"builder": "mlp", "args": {"units": [16]}, "loss": "categorical_crossentropy", "metrics": ["categorical_accuracy"]},
                    "val_categorical_accuracy")
    _, uri = _run(folder, config)
    (got,) = _histories(uri, "fit-onehot")
    train, val = fit_shapes.onehot()
    from sweep.inputs import models

    keras.utils.set_random_seed(SEED)
    model = models.mlp({}, _info("onehot", {}), units=[16])
    model.compile(optimizer=keras.optimizers.Adam(LR), loss="categorical_crossentropy", metrics=["categorical_accuracy"])
    _assert_same(got, _plain_fit(model, train, val, 3))


def test_integer_token_ids_reach_the_embedding_as_ids(ray_session, folder):
    import fit_shapes

    config = _sweep("fit-tokens", {"source": "fit_shapes:tokens"}, {"builder": "fit_shapes:embedding_net"}, "val_accuracy",
                    space={"learning_rate": {"type": "categorical", "choices": [0.02]}, "dim": {"type": "categorical", "choices": [8]}})
    result, uri = _run(folder, config)
    (got,) = _histories(uri, "fit-tokens")
    train, val = fit_shapes.tokens()
    keras.utils.set_random_seed(SEED)
    model = fit_shapes.embedding_net({"dim": 8}, _info("tokens", {}))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _assert_same(got, _plain_fit(model, train, val, 3))
    assert result.best.value > 0.9, "ids standardized into {-1, 0, 1} would sit at the majority class (~0.73)"


def test_text_inputs_reach_a_string_model_as_plain_fit_takes_them(ray_session, folder):
    """Strings were refused ("expected numeric inputs"); a numpy unicode array (what np.array of
    str makes, which Keras' fit itself refuses as "Invalid dtype: str736") reaches fit as the
    object array Keras takes, and trains as a plain fit of that object array does."""
    import fit_shapes

    config = _sweep("fit-text", {"source": "fit_shapes:reviews"}, {"builder": "fit_shapes:text_net"}, "val_accuracy")
    result, uri = _run(folder, config)
    (got,) = _histories(uri, "fit-text")
    train, val = fit_shapes.reviews(as_unicode=False)
    keras.utils.set_random_seed(SEED)
    model = fit_shapes.text_net({}, _info("reviews", {}))
    model.compile(optimizer=keras.optimizers.Adam(LR), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _assert_same(got, _plain_fit(model, train, val, 3))
    import sweep

    best = sweep.load_best("fit-text", tracking_uri=uri)
    assert best.predict(np.array(["good great nice fine"], dtype=object), verbose=0).shape == (1, 2)


@pytest.mark.parametrize("how", ["class_weight", "balanced", "sample_weight"])
def test_weighted_trials_train_as_a_plain_weighted_fit(ray_session, folder, how):
    import fit_shapes

    data = {"source": "fit_shapes:skewed", "args": {"weights": how == "sample_weight"}}
    fit = {"class_weight": {0: 1.0, 1: 19.0}} if how == "class_weight" else ({"class_weight": "balanced"} if how == "balanced" else {})
    config = _sweep(f"fit-weights-{how.replace('_', '-')}", data, {"builder": "mlp", "args": {"units": [16]}, "metrics": ["accuracy", "auc"]},
                    "val_auc", fit=fit)
    _, uri = _run(folder, config)
    (got,) = _histories(uri, config["name"])
    train, val = fit_shapes.skewed(weights=how == "sample_weight")
    from sweep.inputs import models

    keras.utils.set_random_seed(SEED)
    model = models.mlp({}, _info("skewed", {}), units=[16])
    assert model.outputs[0].shape[-1] == 1, "two classes as labels: one sigmoid unit (binary cross-entropy)"
    model.compile(optimizer=keras.optimizers.Adam(LR), loss="binary_crossentropy", metrics=["accuracy", "auc"])
    if how == "sample_weight":
        plain = _plain_fit(model, train[:2], val, 3, sample_weight=train[2])
    else:
        labels = train[1]
        weights = {0: 1.0, 1: 19.0} if how == "class_weight" else {c: len(labels) / (2 * (labels == c).sum()) for c in (0, 1)}
        plain = _plain_fit(model, train, val, 3, class_weight=weights)
    _assert_same(got, plain)


def test_binary_column_targets_with_f1_train_as_plain_fit(ray_session, folder):
    import fit_shapes

    config = _sweep("fit-binary-column", {"source": "fit_shapes:binary_column"}, {"builder": "fit_shapes:sigmoid_f1"}, "val_f1",
                    space={"learning_rate": {"type": "categorical", "choices": [LR]}, "units": {"type": "categorical", "choices": [8]}})
    _, uri = _run(folder, config)
    (got,) = _histories(uri, "fit-binary-column")
    train, val = fit_shapes.binary_column()
    assert train[1].shape[1:] == (1,)
    keras.utils.set_random_seed(SEED)
    model = fit_shapes.sigmoid_f1({"learning_rate": LR, "units": 8}, _info("binary_column", {}))
    _assert_same(got, _plain_fit(model, train, val, 3))


def test_dict_inputs_and_two_heads_with_per_output_losses(ray_session, folder):
    model = {
        "builder": "fit_shapes:two_heads_net",
        "loss": {"kind": "sparse_categorical_crossentropy", "size": "mse"},
        "loss_weights": {"kind": 1.0, "size": 0.5},
        "metrics": {"kind": ["accuracy"], "size": "mae"},
    }
    space = {"learning_rate": {"type": "float", "low": 3e-3, "high": 3e-2, "log": True}, "units": {"type": "categorical", "choices": [8, 16]}}
    config = _sweep("fit-two-heads", {"source": "fit_shapes:two_inputs_two_heads"}, model, "val_kind_accuracy", epochs=2, space=space)
    config["search"] = {**config["search"], "sampler": "random", "trials": 2}
    result, uri = _run(folder, config)
    assert result.counts() == {"completed": 2}
    for history in _histories(uri, "fit-two-heads"):
        for name in ("loss", "kind_loss", "size_loss", "kind_accuracy", "size_mae", "val_kind_accuracy", "val_size_mae"):
            assert len(history.get(name, [])) == 2, f"{name}: {sorted(history)}"
    from sweep.tracking import store

    parent = store.find_parent_run(uri, "fit-two-heads")
    assert parent.data.tags["sweep.data.outputs"] == "{'kind': 3, 'size': 1}"
    assert "features" in parent.data.tags["sweep.data.inputs"] and "codes" in parent.data.tags["sweep.data.inputs"]


def test_per_output_validation_losses_are_a_plain_fits(ray_session, folder):
    """Keras averages a multi-output model's per-output validation losses over batches without
    weighting them by batch size, so validating in batches of 1024 (the sweep's speed-up) gave
    another val_kind_loss than a plain fit (1.2496 against 1.2366): such a model validates in the
    trial's batch size, and every per-output number matches a plain fit's."""
    import fit_shapes
    from sweep.inputs.data import load
    from sweep.spec.config import DataConfig

    model_cfg = {"builder": "fit_shapes:two_heads_net", "loss": {"kind": "sparse_categorical_crossentropy", "size": "mse"},
                 "loss_weights": {"kind": 1.0, "size": 0.5}, "metrics": {"kind": ["accuracy"], "size": "mae"}}
    space = {"learning_rate": {"type": "categorical", "choices": [LR]}, "units": {"type": "categorical", "choices": [8]}}
    data = {"source": "fit_shapes:two_inputs_two_heads", "args": {"rows": 500}}  # 100 validation rows: a short last batch of 32
    config = _sweep("fit-heads-val", data, model_cfg, "val_kind_loss", epochs=2, space=space)
    _, uri = _run(folder, config)
    (got,) = _histories(uri, "fit-heads-val")
    dataset = load(DataConfig(**data), (folder,))
    keras.utils.set_random_seed(SEED)
    model = fit_shapes.two_heads_net({"units": 8}, dataset.info)
    model.compile(optimizer=keras.optimizers.Adam(LR), loss=model_cfg["loss"], loss_weights=model_cfg["loss_weights"],
                  metrics={"kind": ["accuracy"], "size": ["mae"]})
    plain = _plain_fit(model, (dataset.x_train, dataset.y_train), (dataset.x_val, dataset.y_val), 2)
    assert {"val_kind_loss", "val_size_loss"} <= set(plain)
    _assert_same(got, plain)


def test_an_image_folder_is_read_on_the_workers_with_the_trials_batch_size(ray_session, folder):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("light", 200)):
        (folder / "images" / label).mkdir(parents=True)
        for index in range(24):
            pixels = np.clip(rng.normal(level, 30, size=(8, 8)), 0, 255).astype("uint8")
            Image.fromarray(pixels, mode="L").save(folder / "images" / label / f"{index}.png")
    space = {"learning_rate": {"type": "categorical", "choices": [0.05]}, "batch_size": {"type": "categorical", "choices": [8, 16]}}
    config = _sweep("fit-images", {"source": "fit_shapes:images_here"},  # "images", relative to the working directory
                    {"builder": "fit_shapes:tiny_cnn"}, "val_accuracy", epochs=2, space=space)
    result, uri = _run(folder, config)
    assert result.counts() == {"completed": 2}
    from sweep.tracking import store

    parent = store.find_parent_run(uri, "fit-images")
    assert "streamed on workers" in parent.data.tags["sweep.data"]
    assert parent.data.tags["sweep.data.outputs"] == "2"  # from the folder's class_names
    import cloudpickle

    from sweep.spec.config import DataConfig
    from sweep.inputs.data import load

    shipped = load(DataConfig(source="fit_shapes:image_folder", args={"folder": str(folder / "images")}))
    assert shipped.x_train is None and shipped.pipeline is not None
    assert len(cloudpickle.dumps(shipped)) < 20_000, "what goes to the object store is a recipe and one peeked batch, not the images"


def test_epochs_in_the_space_is_each_trials_epoch_budget(ray_session, folder):
    space = {"epochs": {"type": "categorical", "choices": [1, 2, 4]}}
    config = _sweep("fit-epochs", {"source": "digits"}, {"builder": "mlp", "args": {"units": [16]}}, "val_accuracy", epochs=4, space=space)
    result, uri = _run(folder, config)
    trained = sorted(len(h["val_accuracy"]) for h in _histories(uri, "fit-epochs"))
    assert trained == [1, 2, 4]
    by_epochs = {int(r["param.epochs"]): r["status"] for r in result.trials.to_dict("records")}
    assert by_epochs == {1: "completed", 2: "completed", 4: "completed"}
