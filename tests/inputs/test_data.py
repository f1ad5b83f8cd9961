"""sweep.inputs.data: named sources, splitting, encoding, normalization, the DataInfo they make (real data, no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweep.inputs import data
from sweep.inputs.dataset import Dataset
from sweep.spec.config import DataConfig
from sweep.errors import InputError, SweepConfigError
from sweep.spec.config import load as load_sweep

FIXTURES = Path(__file__).parents[1] / "data_fixtures"
SEARCH = (FIXTURES,)


def cfg(**kwargs) -> DataConfig:
    return DataConfig(**kwargs)


def expect_error(key: str, expected: str, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        data.load(cfg(**kwargs), SEARCH)
    assert info.value.key == key
    assert info.value.expected == expected
    return info.value


def assert_dtypes(ds: Dataset) -> None:
    assert ds.x_train.dtype == ds.x_val.dtype == np.float32
    wanted = np.int64 if ds.info.task == "classification" else np.float32
    assert ds.y_train.dtype == ds.y_val.dtype == wanted


# ---------------------------------------------------------------------------------------------
# built-in sources


def test_digits_shapes_task_and_outputs():
    ds = data.load(cfg(source="digits"))
    info = ds.info
    assert info.task == "classification" and info.num_outputs == 10
    assert info.input_shape == (64,)
    assert info.n_train + info.n_val == 1797
    assert info.n_val == 360  # 20% of 1797, rounded up by sklearn
    assert ds.x_train.shape == (info.n_train, 64) and ds.y_val.shape == (info.n_val,)
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert info.source == "digits"
    assert_dtypes(ds)


def test_digits_split_is_stratified():
    ds = data.load(cfg(source="digits", validation_split=0.5))
    train_share = np.bincount(ds.y_train) / ds.info.n_train
    val_share = np.bincount(ds.y_val) / ds.info.n_val
    assert np.abs(train_share - val_share).max() < 0.01


def test_diabetes_is_regression_with_one_output():
    ds = data.load(cfg(source="diabetes"))
    assert ds.info.task == "regression" and ds.info.num_outputs == 1
    assert ds.info.input_shape == (10,)
    assert ds.info.n_train + ds.info.n_val == 442
    assert ds.y_train.ndim == 1
    assert_dtypes(ds)


def test_synthetic_is_seeded():
    a = data.load(cfg(source="synthetic", seed=3))
    b = data.load(cfg(source="synthetic", seed=3))
    c = data.load(cfg(source="synthetic", seed=4))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert a.info.fingerprint == b.info.fingerprint
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.info.fingerprint != c.info.fingerprint


def test_synthetic_size_options():
    ds = data.load(cfg(source="synthetic", samples=300, features=7, classes=4, validation_split=0.25))
    assert ds.info.input_shape == (7,)
    assert (ds.info.n_train, ds.info.n_val) == (225, 75)
    assert ds.info.task == "classification" and ds.info.num_outputs == 4
    assert set(np.unique(ds.y_train)) == {0, 1, 2, 3}
    assert_dtypes(ds)


@pytest.mark.parametrize("features,classes", [(1, 2), (2, 4), (3, 8), (20, 50)])
def test_synthetic_accepts_small_feature_counts(features, classes):
    ds = data.load(cfg(source="synthetic", samples=200, features=features, classes=classes))
    assert ds.info.input_shape == (features,) and ds.info.num_outputs == classes


def test_synthetic_too_few_features_for_classes():
    expect_error(
        "data.features", "expected at least 2 features for 3 synthetic classes, got 1",
        source="synthetic", features=1, classes=3,
    )


def test_synthetic_regression():
    ds = data.load(cfg(source="synthetic", task="regression", samples=100, features=4))
    assert ds.info.task == "regression" and ds.info.num_outputs == 1
    assert ds.info.input_shape == (4,) and ds.info.n_train == 80
    assert_dtypes(ds)


# ---------------------------------------------------------------------------------------------
# npz and csv


def test_npz_split_layout_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_val = rng.normal(size=(30, 4)), rng.normal(size=(10, 4))
    y_train, y_val = np.arange(30) % 3, np.arange(10) % 3
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    ds = data.load(cfg(source=f"npz:{path}", normalize=False))
    np.testing.assert_allclose(ds.x_train, x_train.astype(np.float32))
    np.testing.assert_array_equal(ds.y_val, y_val)
    assert (ds.info.n_train, ds.info.n_val, ds.info.num_outputs) == (30, 10, 3)
    assert_dtypes(ds)


def test_npz_xy_layout_is_split(tmp_path):
    x = np.random.default_rng(0).normal(size=(100, 2))
    y = x[:, 0] * 3.5 + 0.25  # real-valued: regression
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    ds = data.load(cfg(source=f"npz:{path}", validation_split=0.3, normalize=False))
    assert (ds.info.n_train, ds.info.n_val) == (70, 30)
    assert ds.info.task == "regression"
    rows = {tuple(r) for r in np.concatenate([ds.x_train, ds.x_val])}
    assert rows == {tuple(r) for r in x.astype(np.float32)}


def test_npz_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    expect_error("data.source", f"expected an existing .npz file, got '{path}' (no such file)", source=f"npz:{path}")


def test_npz_missing_keys(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, inputs=np.zeros((3, 2)), labels=np.zeros(3))
    expect_error(
        "data.source", f"expected arrays x_train, y_train, x_val, y_val or x, y in {path}, got inputs, labels",
        source=f"npz:{path}",
    )


def test_npz_that_is_not_an_archive(tmp_path):
    path = tmp_path / "d.npz"
    path.write_text("x,y\n1,2\n")
    expect_error("data.source", f"expected a .npz archive (numpy.savez), got '{path}' (not a numpy file)", source=f"npz:{path}")
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(path)
    expect_error(
        "data.source", f"expected arrays x_train, y_train, x_val, y_val or x, y in {path}, got a single array", source=f"npz:{path}"
    )


def test_npz_never_unpickles(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([object(), object()], dtype=object), y=np.zeros(2))
    error = expect_error(
        "data.source", f"expected numeric arrays in {path}, got object arrays (pickled data is never loaded)",
        source=f"npz:{path}",
    )
    assert "pickle" in str(error)


def test_csv_round_trip_with_string_labels(tmp_path):
    path = tmp_path / "d.csv"
    rows = ["a,b,label"] + [f"{i},{i * 2 % 7},{'cat' if i % 2 else 'dog'}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    ds = data.load(cfg(source=f"csv:{path}", target="label", normalize=False))
    assert ds.info.task == "classification" and ds.info.num_outputs == 2
    assert ds.info.input_shape == (2,)
    # sorted mapping: cat -> 0, dog -> 1; 'a' odd means cat
    x = np.concatenate([ds.x_train, ds.x_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    np.testing.assert_array_equal(y, (x[:, 0] % 2 == 0).astype(np.int64))
    assert_dtypes(ds)


def test_csv_regression_target(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x1,x2,price\n" + "".join(f"{i},{i % 3},{i * 1.5 + 0.1}\n" for i in range(50)))
    ds = data.load(cfg(source=f"csv:{path}", target="price"))
    assert ds.info.task == "regression" and ds.info.num_outputs == 1
    assert ds.info.n_train + ds.info.n_val == 50


def test_csv_needs_target(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n")
    expect_error("data.target", f"expected the name of the target column of csv:{path}, got none", source=f"csv:{path}")


def test_csv_unknown_target_lists_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n")
    expect_error(
        "data.target", f"expected one of the columns of csv:{path} (a, b), got 'y'", source=f"csv:{path}", target="y"
    )


def test_csv_non_numeric_features(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,city,y\n1,paris,0\n2,rome,1\n")
    expect_error(
        "data.source",
        f"expected numeric feature columns in csv:{path}, got non-numeric column(s) 'city' (encode or drop them)",
        source=f"csv:{path}", target="y",
    )


def test_csv_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    expect_error("data.source", f"expected an existing .csv file, got '{path}' (no such file)", source=f"csv:{path}", target="y")


def test_relative_paths_resolve_against_the_sweep_file(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 2)), y=np.arange(20) % 2)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: t\ndata: {source: 'npz:d.npz'}\nsearch: {space: {lr: {type: float, low: 0.1, high: 1}}}\n"
    )
    config = load_sweep(sweep)
    assert config.data.source == f"npz:{tmp_path / 'd.npz'}"
    assert data.load(config.data).info.n_train == 16


# ---------------------------------------------------------------------------------------------
# keras


def test_keras_unknown_name_lists_known_ones():
    expect_error(
        "data.source",
        "expected keras:NAME with NAME one of boston_housing, california_housing, cifar10, cifar100, "
        "fashion_mnist, mnist, got 'imagenet'",
        source="keras:imagenet",
    )


@pytest.mark.parametrize("name", data.KERAS_DATASETS)
def test_keras_loaders_resolve(name):
    assert callable(data._keras_loader(name))


def test_keras_images_get_a_channel_and_are_scaled(monkeypatch):
    rng = np.random.default_rng(0)
    fake = lambda: (  # noqa: E731  what keras.datasets.mnist.load_data() returns, in small
        (rng.integers(0, 256, (50, 6, 6), dtype=np.uint8), rng.integers(0, 10, 50, dtype=np.uint8)),
        (rng.integers(0, 256, (20, 6, 6), dtype=np.uint8), np.arange(20, dtype=np.uint8)[:, None] % 10),
    )
    monkeypatch.setattr(data, "_keras_loader", lambda name: fake)
    ds = data.load(cfg(source="keras:mnist"))
    assert ds.info.input_shape == (6, 6, 1) and ds.info.num_outputs == 10
    assert (ds.info.n_train, ds.info.n_val) == (50, 20)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.9
    assert ds.y_val.shape == (20,)
    assert_dtypes(ds)


def test_keras_tabular_is_standardized(monkeypatch):
    rng = np.random.default_rng(0)
    fake = lambda: ((rng.normal(5, 3, (40, 3)), rng.normal(size=40)), (rng.normal(5, 3, (10, 3)), rng.normal(size=10)))  # noqa: E731
    monkeypatch.setattr(data, "_keras_loader", lambda name: fake)
    ds = data.load(cfg(source="keras:boston_housing"))
    assert ds.info.task == "regression" and ds.info.input_shape == (3,)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)


def test_keras_load_failure_is_an_input_error(monkeypatch):
    def offline():
        raise OSError("no network")

    monkeypatch.setattr(data, "_keras_loader", lambda name: offline)
    expect_error(
        "data.source", "expected keras.datasets.cifar10.load_data() to succeed, but it raised OSError: no network",
        source="keras:cifar10",
    )


def test_module_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, sweep; heavy = ('sklearn', 'pandas', 'keras', 'tensorflow'); "
        "before = {m for m in heavy if m in sys.modules}; import sweep.inputs.data; "
        "print(sorted(m for m in heavy if m in sys.modules and m not in before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(
    not (Path.home() / ".keras" / "datasets" / "mnist.npz").is_file(), reason="mnist not cached (no downloads in tests)"
)
def test_keras_mnist_from_cache():
    ds = data.load(cfg(source="keras:mnist"))
    assert ds.info.input_shape == (28, 28, 1) and ds.info.num_outputs == 10
    assert (ds.info.n_train, ds.info.n_val) == (60000, 10000)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0


# ---------------------------------------------------------------------------------------------
# user functions


def test_user_function_xy_with_args():
    ds = data.load(cfg(source="sweep_fixture_data:xy", args={"rows": 80, "features": 5}), SEARCH)
    assert ds.info.input_shape == (5,)
    assert (ds.info.n_train, ds.info.n_val) == (64, 16)
    assert ds.info.task == "classification" and ds.info.num_outputs == 2
    assert_dtypes(ds)


def test_user_function_split_form():
    ds = data.load(cfg(source="sweep_fixture_data:split", args={"rows": 40}), SEARCH)
    assert (ds.info.n_train, ds.info.n_val) == (40, 10)
    assert ds.info.task == "regression"
    assert_dtypes(ds)


def test_user_function_list_return():
    assert data.load(cfg(source="sweep_fixture_data:as_list"), SEARCH).info.n_train == 16


def test_user_function_bad_return():
    spec = "sweep_fixture_data:bad_return"
    expect_error(
        "data.source",
        f"expected {spec} to return (x, y), (x, y, sample_weight) or ((x_train, y_train), (x_val, y_val)), got dict",
        source=spec,
    )
    expect_error("data.source", "expected x of sweep_fixture_data:three_items to have one row per sample, got a scalar (int)", source="sweep_fixture_data:three_items")


def test_user_function_raises():
    expect_error(
        "data.source",
        "expected sweep_fixture_data:raises to return data, but it raised RuntimeError: database unreachable (sweep_fixture_data.py:33)",  # where in the function
        source="sweep_fixture_data:raises",
    )


def test_user_function_bad_args():
    error = expect_error_prefix("sweep_fixture_data:xy", args={"colour": "red"})
    assert "TypeError" in error.expected and "colour" in error.expected


def expect_error_prefix(source: str, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        data.load(cfg(source=source, **kwargs), SEARCH)
    assert info.value.key == "data.source"
    return info.value


def test_user_function_length_mismatch():
    expect_error(
        "data.source",
        "expected as many targets as inputs in sweep_fixture_data:mismatched, got 10 inputs and 9 targets",
        source="sweep_fixture_data:mismatched",
    )


def test_user_function_mixed_type_x():
    """Strings alone are inputs (a string keras.Input); a column mixing types is not."""
    error = expect_error_prefix("sweep_fixture_data:mixed_types_as_x")
    assert error.expected == "expected numeric or string inputs x in sweep_fixture_data:mixed_types_as_x, got dtype object (it holds float, str: convert the column to one type)"


def test_user_function_missing_module_and_attribute():
    assert "import failed" in expect_error_prefix("no_such_module_xyz:f").expected
    assert "to define" in expect_error_prefix("sweep_fixture_data:nothing").expected
    assert "callable" in expect_error_prefix("sweep_fixture_data:NOT_CALLABLE").expected


# ---------------------------------------------------------------------------------------------
# reshape, labels, outputs, normalization, fingerprints


def test_reshape_digits_to_images():
    ds = data.load(cfg(source="digits", reshape=[8, 8, 1]))
    assert ds.info.input_shape == (8, 8, 1)
    assert ds.x_train.shape == (ds.info.n_train, 8, 8, 1) and ds.x_val.shape == (ds.info.n_val, 8, 8, 1)
    flat = data.load(cfg(source="digits"))
    np.testing.assert_array_equal(ds.x_train.reshape(len(ds.x_train), -1), flat.x_train)


def test_reshape_with_minus_one():
    assert data.load(cfg(source="digits", reshape=[-1, 8])).info.input_shape == (8, 8)


def test_reshape_mismatch():
    expect_error("data.reshape", "expected a shape with 64 values per sample, got [8, 8, 2] (128)", source="digits", reshape=[8, 8, 2])


def test_non_contiguous_labels_ask_for_the_task_or_are_encoded_on_request(tmp_path):
    path = tmp_path / "d.npz"
    y = np.where(np.arange(60) % 2 == 0, 3, 7)
    np.savez(path, x=np.arange(60.0)[:, None], y=y)
    expect_error(
        "data.task",
        "expected data.task (classification or regression): the targets y are 2 distinct integers 3..7, which could be class labels or a quantity",
        source=f"npz:{path}",
    )
    ds = data.load(cfg(source=f"npz:{path}", encode_labels=True))
    assert ds.info.task == "classification" and ds.info.num_outputs == 2
    x = np.concatenate([ds.x_train, ds.x_val])[:, 0]
    labels = np.concatenate([ds.y_train, ds.y_val])
    np.testing.assert_array_equal(labels, (x % 2 == 1).astype(np.int64))  # 3 -> 0, 7 -> 1


def test_negative_and_float_labels_are_encoded_when_asked(tmp_path):
    path = tmp_path / "d.npz"
    y = np.tile([-1.0, 0.5, 2.0], 10)
    np.savez(path, x=np.zeros((30, 1)), y=y)
    error = expect_error_prefix_key(f"npz:{path}", "data.task", task="classification")
    assert "data.encode_labels: true" in error.expected
    ds = data.load(cfg(source=f"npz:{path}", task="classification", encode_labels=True))
    assert ds.info.num_outputs == 3
    assert set(np.concatenate([ds.y_train, ds.y_val])) == {0, 1, 2}


def expect_error_prefix_key(source: str, key: str, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        data.load(cfg(source=source, **kwargs), SEARCH)
    assert info.value.key == key
    return info.value


def test_one_hot_targets_stay_one_hot_and_column_labels_stay_columns(tmp_path):
    path = tmp_path / "d.npz"
    labels = np.arange(30) % 3
    np.savez(path, x=np.zeros((30, 2)), y=np.eye(3)[labels])
    ds = data.load(cfg(source=f"npz:{path}"))
    assert ds.info.task == "classification" and ds.info.num_outputs == 3 and ds.info.target_layout == "onehot"
    assert ds.y_train.shape == (24, 3)  # never made indices: categorical_crossentropy gets what the user gave
    np.savez(path, x=np.zeros((30, 2)), y=labels[:, None])
    ds = data.load(cfg(source=f"npz:{path}"))
    assert ds.y_train.shape == (24, 1) and ds.info.num_outputs == 3 and ds.info.target_layout == "sparse"


def test_num_outputs_given_and_checked():
    assert data.load(cfg(source="digits", num_outputs=12)).info.num_outputs == 12
    expect_error("data.num_outputs", "expected at least 10 (the number of classes), got 3", source="digits", num_outputs=3)
    expect_error("data.num_outputs", "expected 1 (the number of target columns), got 2", source="diabetes", num_outputs=2)


def test_task_can_be_forced():
    ds = data.load(cfg(source="digits", task="regression"))
    assert ds.info.task == "regression" and ds.y_train.dtype == np.float32 and ds.info.num_outputs == 1


def test_normalization_uses_train_statistics():
    raw = data.load(cfg(source="diabetes", normalize=False))
    ds = data.load(cfg(source="diabetes"))
    mean, std = raw.x_train.mean(axis=0), raw.x_train.std(axis=0)
    np.testing.assert_allclose(ds.x_train, (raw.x_train - mean) / std, atol=1e-4)
    np.testing.assert_allclose(ds.x_val, (raw.x_val - mean) / std, atol=1e-4)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    assert np.abs(ds.x_val.mean(axis=0)).max() > 1e-3  # validation is not re-centred on itself


def test_normalization_keeps_constant_features_finite():
    ds = data.load(cfg(source="digits"))  # digits has always-zero pixels
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_val).all()


def test_non_finite_inputs_are_rejected(tmp_path):
    path = tmp_path / "d.npz"
    x = np.zeros((20, 2))
    x[3, 1] = np.nan
    np.savez(path, x=x, y=np.arange(20) % 2)
    expect_error("data.source", f"expected finite inputs x in npz:{path}, got 1 NaN or infinite value(s)", source=f"npz:{path}")


def test_fingerprints():
    a = data.load(cfg(source="digits"))
    b = data.load(cfg(source="digits"))
    assert a.info.fingerprint == b.info.fingerprint
    assert len(a.info.fingerprint) == 16 and int(a.info.fingerprint, 16) >= 0
    assert data.load(cfg(source="digits", seed=1)).info.fingerprint != a.info.fingerprint
    assert data.load(cfg(source="digits", reshape=[8, 8])).info.fingerprint != a.info.fingerprint
    x = np.zeros((2, 2), np.float32)
    assert data.fingerprint(x) != data.fingerprint(x.astype(np.float64))
    assert data.fingerprint(x) != data.fingerprint(x.reshape(4))


# ---------------------------------------------------------------------------------------------
# check_source and the config validator


@pytest.mark.parametrize(
    "source",
    ["digits", "diabetes", "synthetic", "npz:data.npz", "csv:/tmp/x.csv", "keras:mnist", "my_pkg.loaders:load", "m:f"],
)
def test_check_source_accepts(source):
    data.check_source(source)


@pytest.mark.parametrize(
    "source", ["xyz", "npz:", "csv:", "keras:", "keras", "npz", "", "my module:f", "mod:", ":f", "mod:f()"]
)
def test_check_source_rejects(source):
    with pytest.raises(ValueError) as info:
        data.check_source(source)
    assert str(info.value) == (
        "expected one of digits, diabetes, synthetic, npz:PATH, csv:PATH, keras:NAME or package.module:function, "
        f"got {source!r}"
    )


def test_config_validation_uses_check_source():
    with pytest.raises(SweepConfigError) as info:
        load_sweep({"name": "t", "data": {"source": "xyz"}, "search": {"space": {"a": {"type": "int", "low": 1, "high": 2}}}})
    assert str(info.value) == (
        "<dict>: data.source: expected one of digits, diabetes, synthetic, npz:PATH, csv:PATH, keras:NAME "
        "or package.module:function, got 'xyz'"
    )


def test_sources_registry():
    assert set(data.SOURCES) == {"digits", "diabetes", "synthetic", "npz", "csv", "keras"}


def test_csv_class_codes_0_to_k_minus_1_are_classes_even_when_many(tmp_path):
    """12 classes in 200 rows, 100 classes in 300 rows: never a silent regression (case fit-12)."""
    for classes, rows in ((12, 200), (100, 300)):
        path = tmp_path / f"c{classes}.csv"
        labels = np.arange(rows) % classes
        lines = ["a,b,label"] + [f"{i * 0.5},{(i % 7) * 1.0},{label}" for i, label in enumerate(labels)]
        path.write_text("\n".join(lines) + "\n")
        ds = data.load(cfg(source=f"csv:{path}", target="label"))
        assert ds.info.task == "classification" and ds.info.num_outputs == classes


def test_a_task_the_loss_decided_is_credited_to_the_loss_on_the_start_up_line(tmp_path):
    """``model.loss: mse`` over counts: the line said "(data.task)", a key the file never set."""
    path = tmp_path / "counts.npz"
    rng = np.random.default_rng(3)
    np.savez(path, x=rng.normal(size=(120, 3)).astype("float32"), y=rng.integers(0, 6, 120))
    sweep_file = tmp_path / "counts.yaml"
    sweep_file.write_text(
        f"name: counts\ndata: {{source: 'npz:{path}'}}\nmodel: {{builder: mlp, loss: mse}}\n"
        "search: {space: {learning_rate: {type: float, low: 0.001, high: 0.1}}}\n"
    )
    info = data.load(load_sweep(sweep_file).data).info
    assert info.task == "regression" and "(model.loss: mse)" in info.inferred and "data.task" not in info.inferred, info.inferred


@pytest.mark.parametrize("split", [0.99, 0.95])
def test_a_split_that_leaves_one_side_empty_names_data_validation_split(split):
    """10 synthetic rows with validation_split 0.99: "failed unexpectedly" with scikit-learn's ValueError."""
    with pytest.raises(InputError) as err:
        data.load(cfg(source="synthetic", samples=10, features=3, validation_split=split))
    assert err.value.key == "data.validation_split" and err.value.expected.startswith(f"expected a split that leaves rows on both sides, got {split} of 10 rows")


def test_a_csv_column_of_whole_number_floats_asks_for_the_task(tmp_path):
    """A count written 2.0, 0.0, ... (13 values) silently became 13 classes; the same values from
    a data function were asked about, as the README says."""
    path = tmp_path / "counts.csv"
    rows = ["a,count"] + [f"{i * 0.1:.1f},{float(i % 13):.1f}" for i in range(200)]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as err:
        data.load(cfg(source=f"csv:{path}", target="count"))
    assert err.value.key == "data.task" and "13 distinct whole numbers 0..12 stored as float64" in err.value.expected
    assert data.load(cfg(source=f"csv:{path}", target="count", task="regression")).info.task == "regression"
