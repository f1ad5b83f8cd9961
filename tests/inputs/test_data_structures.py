"""sweep.data with a user's own structures: lists and dicts of arrays, weights, pipelines."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from sweep.inputs import data
from sweep.spec.config import DataConfig
from sweep.errors import InputError


@pytest.fixture()
def module(tmp_path, monkeypatch):
    """Write a user data module next to the (virtual) sweep file."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> tuple:
        name = f"user_data_{abs(hash(source)) % 10**8}"
        (tmp_path / f"{name}.py").write_text("import numpy as np\n" + textwrap.dedent(source))
        sys.modules.pop(name, None)
        return name, (tmp_path,)

    return write


def load(module_and_paths, function="load", **config):
    name, paths = module_and_paths
    return data.load(DataConfig(source=f"{name}:{function}", **config), paths)


def test_dict_inputs_and_dict_targets_reach_fit_as_given(module):
    ds = load(module("""
        def load():
            rng = np.random.default_rng(0)
            x = {"text": rng.integers(0, 30, size=(100, 6)), "num": rng.normal(size=(100, 3))}
            y = {"kind": np.arange(100) % 3, "size": rng.normal(size=100)}
            return x, y
    """))
    assert set(ds.x_train) == {"text", "num"} and set(ds.y_train) == {"kind", "size"}
    assert ds.x_train["text"].dtype == np.int64, "ids stay integers"
    assert ds.info.input_shapes == {"text": (6,), "num": (3,)}
    assert ds.info.output_sizes == {"kind": 3, "size": 1}
    assert ds.info.target_layout == {"kind": "sparse", "size": "values"}
    assert ds.info.n_train == 80 and len(ds.y_val["size"]) == 20
    # rows stay aligned across every array after the split
    np.testing.assert_array_equal(ds.y_train["kind"], ds.y_train["kind"])
    assert "kind: classification, 3 classes" in ds.info.summary() and "text: (6,)" in ds.info.summary()


def test_lists_of_inputs_and_targets_are_several_arrays_not_one_stacked_array(module):
    ds = load(module("""
        def load():
            x = np.arange(80.0).reshape(40, 2)
            return [x, x[:, :1]], [np.arange(40) % 2, np.linspace(0, 1, 40)]
    """))
    assert isinstance(ds.x_train, list) and len(ds.x_train) == 2
    assert ds.info.input_shapes == [(2,), (1,)] and ds.info.output_sizes == [2, 1]
    np.testing.assert_array_equal(ds.x_train[0][:, 0] / 2, ds.x_train[1][:, 0] / 2)  # same rows in both inputs


def test_user_inputs_are_not_standardized_unless_asked_and_integers_never(module):
    source = module("""
        def load():
            rng = np.random.default_rng(1)
            return {"ids": rng.integers(0, 30, size=(50, 4)), "f": rng.normal(5.0, 3.0, size=(50, 2))}, np.arange(50) % 2
    """)
    raw = load(source)
    assert raw.x_train["f"].mean() > 3, "not standardized by default"
    scaled = load(source, normalize=True)
    np.testing.assert_allclose(scaled.x_train["f"].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_array_equal(scaled.x_train["ids"], raw.x_train["ids"])


def test_sample_weights_travel_with_their_rows(module):
    ds = load(module("""
        def load():
            x = np.arange(60.0)[:, None]
            return x, (np.arange(60) % 2), x[:, 0] * 10
    """))
    np.testing.assert_array_equal(ds.sample_weight, ds.x_train[:, 0] * 10)
    np.testing.assert_array_equal(ds.val_sample_weight, ds.x_val[:, 0] * 10)
    assert len(ds.validation_data()) == 3


def test_split_form_with_weights(module):
    ds = load(module("""
        def load():
            x = np.zeros((20, 2)); y = np.arange(20) % 2; w = np.ones(20)
            return (x, y, w), (x[:5], y[:5], w[:5])
    """))
    assert ds.info.n_train == 20 and ds.info.n_val == 5 and ds.sample_weight is not None


def test_balanced_class_weights_from_training_labels(module):
    ds = load(module("""
        def load():
            y = np.array([0] * 90 + [1] * 10)
            return (np.zeros((100, 1)), y), (np.zeros((4, 1)), np.array([0, 1, 0, 1]))
    """))
    weights = data.class_weights("balanced", ds)
    assert weights == pytest.approx({0: 100 / (2 * 90), 1: 100 / (2 * 10)})
    assert data.class_weights({0: 1, 1: 19}, ds) == {0: 1.0, 1: 19.0}
    with pytest.raises(InputError, match="class indices 0..1"):
        data.class_weights({5: 1.0}, ds)


def test_class_weights_for_multi_hot_rows_are_refused(module):
    """Keras weighs a multi-hot row by its argmax (its first label): a dict was accepted silently."""
    ds = load(module("""
        def load():
            y = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]] * 10)
            return np.zeros((40, 2), "float32"), y
    """))
    for setting in ({0: 1.0, 1: 5.0, 2: 1.0}, "balanced"):
        with pytest.raises(InputError) as err:
            data.class_weights(setting, ds)
        assert err.value.key == "fit.class_weight" and "got multi-hot rows" in err.value.expected


def test_class_weights_keyed_by_the_users_own_labels_when_labels_are_encoded(module):
    """With ``encode_labels`` a user knows its labels, not the indices the sweep gave them: a
    class_weight keyed by label was refused as "expected class indices" without saying how labels
    map to indices. Keys that are all labels are read as labels; indices still work."""
    source = module("""
        def load():
            y = np.array(["dog", "cat", "owl"] * 20)
            return (np.zeros((60, 1)), y), (np.zeros((6, 1)), np.array(["cat", "dog", "owl"] * 2))
    """)
    ds = load(source, encode_labels=True)
    assert ds.info.labels == ("cat", "dog", "owl")  # sorted: cat -> 0, dog -> 1, owl -> 2
    assert ds.info.inferred.endswith("encoded from the labels cat, dog, owl"), ds.info.inferred  # the start-up line says which
    assert data.class_weights({"owl": 5, "cat": 1}, ds) == {2: 5.0, 0: 1.0}
    assert data.class_weights({0: 1, 2: 5}, ds) == {0: 1.0, 2: 5.0}
    assert data.class_weights({"0": 1, "2": 5}, ds) == {0: 1.0, 2: 5.0}  # JSON keys are strings
    with pytest.raises(InputError) as err:
        data.class_weights({"owl": 5, "emu": 1}, ds)
    assert err.value.expected == "expected class indices 0..2 or the labels {cat, dog, owl}, all keys one kind, got ['emu']"
    numbers = load(module("""
        def load():
            y = np.array([3, 7] * 30)
            return (np.zeros((60, 1)), y), (np.zeros((4, 1)), np.array([3, 7, 3, 7]))
    """), encode_labels=True)
    assert data.class_weights({7: 4.0}, numbers) == {1: 4.0}  # label 7 is index 1
    assert data.class_weights({1: 4.0}, numbers) == {1: 4.0}  # not a label: an index
    plain = load(module("""
        def load():
            return (np.zeros((60, 1)), np.arange(60) % 2), (np.zeros((4, 1)), np.arange(4) % 2)
    """))
    with pytest.raises(InputError) as err:
        data.class_weights({"cat": 1.0}, plain)
    assert err.value.expected == "expected class indices 0..1 (labels are keys only with data.encode_labels: true), got ['cat']"


@pytest.mark.parametrize(
    "body,expected",
    [
        ("return (np.zeros((30, 2)), np.zeros(30)), np.zeros(3)", "expected"),
        ("import pandas as pd\n            f = pd.DataFrame({'a': np.arange(40.0)})\n            return f, f.iloc[:10]",
         "expected as many targets as inputs"),
        ("import tensorflow as tf\n            return tf.data.Dataset.from_tensor_slices((np.zeros((8, 2)), np.zeros(8))).batch(4)",
         "a pipeline needs both: return (train, validation) datasets"),
        ("x = {'a': np.zeros((10, 2)), 'b': np.zeros((9, 2))}\n            return x, np.zeros(10)", "expected as many rows in x.b"),
    ],
)
def test_wrong_shapes_get_one_line_that_says_what_came_back(module, body, expected):
    with pytest.raises(InputError) as err:
        load(module(f"def load():\n            {body}\n"))
    assert err.value.key == "data.source" and expected in err.value.expected


def test_text_inputs_are_kept_as_the_object_arrays_keras_takes(module):
    """Strings are inputs too (a string keras.Input); numpy's unicode and bytes arrays, which
    Keras' fit refuses, become object arrays; a column mixing types is refused, saying so."""
    ds = load(module("""
        def load():
            x = np.array(["a b", "b c", "c d", "d e"] * 5)
            return (x, np.arange(20) % 2), (x[:4].astype(bytes), np.arange(4) % 2)
    """))
    assert ds.x_train.dtype == object and ds.x_train[0] == "a b"
    assert ds.x_val.dtype == object and ds.x_val[0] == b"a b"
    with pytest.raises(InputError) as err:
        load(module("""
            def load():
                return np.array(["a", 1.5, None] * 10, dtype=object), np.arange(30) % 2
        """))
    assert "expected numeric or string inputs x" in err.value.expected and "(it holds NoneType, float, str" in err.value.expected


@pytest.mark.parametrize(("shape", "advice"), [((40, 1), "give x[:, 0] (one column)"), ((20, 2), "give one 1-D array per text field")])
def test_text_in_more_than_one_dimension_is_refused_naming_the_data(module, shape, advice):
    """Keras' fit() refuses string arrays of shape (N, 1) ("Invalid dtype: object", as a plain fit
    says too); the preflight blamed model.builder for it."""
    with pytest.raises(InputError) as err:
        load(module(f"""
            def load():
                x = np.array(["a b", "b c", "c d", "d e"] * 10).reshape({shape})
                return x, np.arange({shape[0]}) % 2
        """))
    assert err.value.key == "data.source"
    assert err.value.expected.startswith(f"expected text inputs x in ") and f"as one string per row (shape (N,)), got shape {shape}" in err.value.expected
    assert advice in err.value.expected


@pytest.mark.parametrize(
    "body,expected",
    [
        ("import scipy.sparse as sp\n            return sp.random(40, 5, density=0.2, format='csr'), np.arange(40) % 2",
         "expected dense arrays for x of {src}, got a sparse csr_matrix (pass .toarray(), or return (train, validation) tf.data datasets of it)"),
        ("import tensorflow as tf\n            return tf.ragged.constant([[1, 2], [3]] * 20), np.arange(40) % 2",
         "expected arrays of one shape for x of {src}, got a RaggedTensor (pad it, e.g. keras.utils.pad_sequences, or return (train, validation) tf.data datasets of it)"),
        ("import pandas as pd\n            return pd.DataFrame({'a': np.arange(40.0), 'kind': pd.Categorical(['x', 'y'] * 20)}), np.arange(40) % 2",
         "expected numeric x of {src}, got a DataFrame whose column(s) kind are not numbers (encode them, e.g. pd.get_dummies or .cat.codes, "
         "or return a dict of columns for a model with one input each)"),
    ],
    ids=["scipy-sparse", "ragged", "frame-with-a-category-column"],
)
def test_inputs_that_are_not_arrays_of_rows_say_what_came_and_what_to_return(module, body, expected):
    """np.asarray of these made a 0-d object array: the line said "got a scalar"."""
    written = module(f"def load():\n            {body}\n")
    with pytest.raises(InputError) as err:
        load(written)
    assert err.value.expected == expected.format(src=f"{written[0]}:load")


def test_rows_as_plain_python_lists_are_one_array():
    """``[[0.1, 2.0], ...]`` is one array of rows (each number was taken for an input: "got a scalar")."""
    x, y = data._arrays([[0.5, 1.0, 2.0]] * 6, "f:load", "x"), data._arrays([0, 1] * 3, "f:load", "y")
    assert x.shape == (6, 3) and x.dtype == np.float32 and y.shape == (6,)
    assert [a.shape for a in data._arrays([np.zeros((4, 2)), np.zeros((4, 3))], "f:load", "x")] == [(4, 2), (4, 3)]  # two inputs stay two


def test_sample_weights_name_every_output_and_exclude_class_weights(module):
    """Per-output weights missing a head were blamed on model.builder (Keras found it while
    evaluating); class_weight beside sample weights failed every trial ("You cannot class_weight
    and sample_weight at the same time"). Both are one line before any trial."""
    heads = module("""
        def load():
            y = {"kind": np.arange(40) % 3, "size": np.linspace(0, 1, 40)}
            return np.zeros((40, 2)), y, {"kind": np.ones(40)}
    """)
    with pytest.raises(InputError) as err:
        load(heads)
    assert (err.value.key, err.value.expected) == ("data.source", f"expected one sample_weight per output of {heads[0]}:load (kind, size), got kind")
    weighted = load(module("""
        def load():
            return np.zeros((40, 2)), np.arange(40) % 2, np.ones(40)
    """))
    with pytest.raises(InputError) as err:
        data.class_weights({0: 1.0, 1: 3.0}, weighted)
    assert err.value.key == "fit.class_weight" and err.value.expected.startswith("expected class weights or per-row sample weights, got both")


PIPELINES = """
    import keras
    import tensorflow as tf

    def rows(n=40):
        x = np.random.default_rng(0).normal(size=(n, 3)).astype("float32")
        return x, np.arange(n) % 3

    def unbatched():
        x, y = rows()
        return tf.data.Dataset.from_tensor_slices((x, y)), tf.data.Dataset.from_tensor_slices((x, y))

    def heads():
        x, y = rows()
        ds = tf.data.Dataset.from_tensor_slices((x, {"kind": y, "size": x[:, 0]})).batch(8)
        return ds, ds

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.x, self.y = rows()

        def __len__(self):
            return 5

        def __getitem__(self, i):
            return self.x[i * 8:(i + 1) * 8], self.y[i * 8:(i + 1) * 8]

    def pydataset():
        return Batches(), Batches()

    def batched():
        x, y = rows()
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        return ds, ds

    def weighted():
        x, y = rows()
        ds = tf.data.Dataset.from_tensor_slices((x, y, np.ones(len(y), "float32"))).batch(8)
        return ds, ds
"""


def test_pipelines_read_for_their_classes_or_refused_in_one_line(module):
    """An unbatched tf.data crashed deep in the label reading; a finite PyDataset and a
    multi-output tf.data were said to be "infinite, or over 200 batches" and needed
    data.num_outputs; balanced class weights for a pipeline crashed (AttributeError)."""
    written = module(PIPELINES)
    with pytest.raises(InputError) as err:
        load(written, "unbatched")
    assert err.value.key == "data.source" and "to yield batches (one leading batch dimension shared by x and y), got single rows" in err.value.expected
    assert "call .batch(batch_size)" in err.value.expected
    assert load(written, "pydataset").info.num_outputs == 3
    info = load(written, "heads").info
    assert info.output_sizes == {"kind": 3, "size": 1}
    with pytest.raises(InputError) as err:
        data.class_weights("balanced", load(written, "batched"))
    assert err.value.expected == "expected labels to count for balanced, got a pipeline (give a dict of weights)"
    with pytest.raises(InputError) as err:  # Keras refused it in every trial: "You cannot class_weight and sample_weight at the same time"
        data.class_weights({0: 1.0, 1: 2.0}, load(written, "weighted"))
    assert err.value.expected.startswith(f"expected class weights or per-row sample weights, got both ({written[0]}:weighted its training batches are (x, y, sample_weight))")


def test_a_pair_of_tf_data_pipelines_is_a_recipe_and_one_batch(module):
    ds = load(module("""
        def load(batch_size=16):
            import tensorflow as tf
            x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
            y = (np.arange(64) % 2).astype("int64")
            full = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
            return full.take(3), full.skip(3)
    """), num_outputs=2)
    assert ds.info.streamed and ds.x_train is None and ds.pipeline.takes_batch_size
    assert ds.info.input_shape == (8, 8, 1) and ds.info.num_outputs == 2
    assert ds.x_val.shape == (8, 8, 8, 1), "one peeked batch (at most 8 rows) for the preflight"
    train, val = ds.pipeline.build(4)
    assert next(iter(train))[0].shape[0] == 4, "a worker's build gets the trial's batch size"


def test_a_pipeline_without_class_names_reads_a_small_validation_pipelines_labels(module):
    ds = load(module("""
        def load():
            import tensorflow as tf
            x = np.zeros((64, 2), dtype="float32")
            full = tf.data.Dataset.from_tensor_slices((x, (np.arange(64) % 3).astype("int64"))).batch(8)
            return full.take(5), full.skip(5)
    """))
    assert (ds.info.task, ds.info.num_outputs) == ("classification", 3)
    assert "validation pipeline" in ds.info.inferred


def test_a_pipeline_with_a_dict_of_one_target_reads_its_labels_too(module):
    """``({"feat": x}, {"label": y})``: the labels were looked up as ``y`` (the leaf is
    ``y.label``), so a finite two-batch pipeline was asked for data.num_outputs."""
    ds = load(module("""
        def load():
            import tensorflow as tf
            x = np.zeros((64, 2), dtype="float32")
            full = tf.data.Dataset.from_tensor_slices(({"feat": x}, {"label": (np.arange(64) % 4).astype("int64")})).batch(16)
            return full.take(2), full.skip(2)
    """))
    assert (ds.info.task, ds.info.num_outputs) == ("classification", 4)


def test_an_endless_pipeline_without_class_names_needs_num_outputs(module):
    source = module("""
        def load():
            import tensorflow as tf
            d = tf.data.Dataset.from_tensor_slices((np.zeros((8, 2)), np.zeros(8, dtype="int64"))).batch(4).repeat()
            return d, d
    """)
    with pytest.raises(InputError) as err:
        load(source)
    assert err.value.key == "data.num_outputs"
    assert "this validation pipeline has no end, so it also needs fit.validation_steps" in err.value.expected


def test_a_pair_of_pydatasets_is_streamed_too(module):
    ds = load(module("""
        import keras

        class Batches(keras.utils.PyDataset):
            def __init__(self, rows):
                super().__init__()
                self.x = np.random.default_rng(0).random((rows, 3)).astype("float32")
                self.y = np.eye(4, dtype="float32")[np.arange(rows) % 4]

            def __len__(self):
                return len(self.x) // 8

            def __getitem__(self, index):
                part = slice(index * 8, index * 8 + 8)
                return self.x[part], self.y[part]

        def load():
            return Batches(64), Batches(16)
    """))
    assert ds.info.streamed and not ds.pipeline.takes_batch_size
    assert (ds.info.task, ds.info.num_outputs, ds.info.target_layout) == ("classification", 4, "onehot")


def test_encoded_labels_keep_their_original_names_for_decoding(module):
    ds = load(module("""
        def load():
            return np.zeros((40, 2)), np.array(["cat", "dog", "emu", "cat"] * 10)
    """), encode_labels=True)
    assert ds.info.labels == ("cat", "dog", "emu") and ds.info.num_outputs == 3


def test_ratings_asked_as_classes_say_why_there_is_one_more_output(module):
    ds = load(module("""
        def load():
            return np.zeros((50, 2)), np.arange(1, 6).repeat(10)
    """), task="classification")
    assert ds.info.num_outputs == 6 and "label 0" not in ds.info.inferred
    assert "labels 1..5, so 6 outputs" in ds.info.inferred and "data.encode_labels: true" in ds.info.inferred


def test_a_relative_path_in_data_args_is_the_sweep_files(tmp_path):
    from sweep.spec.config import load as load_sweep

    (tmp_path / "images").mkdir()
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text("name: s\ndata: {source: 'm:load', args: {folder: images, label: cats}}\nsearch: {space: {lr: {type: float, low: 0.1, high: 0.2}}}\n")
    config = load_sweep(sweep_file)
    assert config.data.args == {"folder": str((tmp_path / "images").resolve()), "label": "cats"}


TARGET_KINDS = """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")

    def pair(y):
        d = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
        return d.take(3), d.skip(3)

    def regression_columns():
        return pair(rng.normal(size=(64, 3)).astype("float32"))

    def multilabel():
        return pair((rng.random((64, 4)) > 0.5).astype("float32"))

    def float_binary_column():
        return pair((x[:, :1] > 0).astype("float32"))

    def onehot():
        return pair(np.eye(3, dtype="float32")[np.arange(64) % 3])
"""


@pytest.mark.parametrize(("function", "task", "size", "layout"), [
    ("regression_columns", "regression", 3, "values"),
    ("multilabel", "classification", 4, "multilabel"),
    ("float_binary_column", "classification", 2, "sparse"),
    ("onehot", "classification", 3, "onehot"),
])
def test_pipeline_targets_are_read_as_arrays_are(module, function, task, size, layout):
    """A pipeline's targets were judged by dtype and shape alone: 3 float regression columns
    trained as a 3-class softmax (best val_loss -0.21, exit 0), 0/1 multi-label rows as one-hot,
    float 0/1 labels as a regression. The same arrays given as numpy were read right."""
    info = load(module(TARGET_KINDS), function).info
    assert (info.task, info.num_outputs, info.target_layout) == (task, size, layout), info.inferred


def test_pipelines_yielding_tuples_of_inputs_and_outputs_read_them_as_keras_does(module):
    """``((x_a, x_b), y)`` batches from tf.data or a PyDataset are two inputs to Keras; the
    preflight stacked the tuple into one array and failed ("inhomogeneous shape"), and a
    tuple of targets is several outputs."""
    source = module("""
        import keras

        def rows(n=64):
            rng = np.random.default_rng(0)
            return rng.random((n, 4)).astype("float32"), rng.random((n, 2)).astype("float32"), (np.arange(n) % 3).astype("int64")

        def tuple_inputs(batch_size=16):
            import tensorflow as tf
            a, b, y = rows()
            full = tf.data.Dataset.from_tensor_slices(((a, b), (y, b[:, :1]))).batch(batch_size)
            return full.take(3), full.skip(3)

        class TwoIn(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.a, self.b, self.y = rows(32)

            def __len__(self):
                return 4

            def __getitem__(self, i):
                part = slice(i * 8, i * 8 + 8)
                return (self.a[part], self.b[part]), self.y[part]

        def pydatasets():
            return TwoIn(), TwoIn()
    """)
    ds = load(source, "tuple_inputs")
    assert ds.info.input_shapes == [(4,), (2,)] and ds.info.num_inputs == 2
    assert ds.info.output_sizes == [3, 1] and ds.info.task == "classification"
    assert [np.shape(x) for x in ds.x_val] == [(8, 4), (8, 2)]
    ds = load(source, "pydatasets")
    assert ds.info.input_shapes == [(4,), (2,)] and (ds.info.task, ds.info.num_outputs) == ("classification", 3)


def test_a_text_pipelines_peeked_batch_is_text_keras_evaluates(module):
    """A tf.data of strings was refused before any trial as "evaluating it failed: Invalid dtype:
    object": the peeked batch held bytes, which Keras' evaluate refuses where fit takes them."""
    import keras

    ds = load(module("""
        def load(batch_size=8):
            import tensorflow as tf
            texts = ["good movie", "bad plot", "great actor", "awful movie"] * 8
            y = np.array([1, 0, 1, 0] * 8, dtype="int64")
            full = tf.data.Dataset.from_tensor_slices((texts, y)).batch(batch_size)
            return full.take(3), full.skip(3)
    """))
    assert ds.x_val.dtype == object and isinstance(ds.x_val[0], str) and ds.x_val[0] == "good movie"
    inputs = keras.Input(shape=(), dtype="string")
    words = keras.layers.TextVectorization(output_mode="multi_hot", vocabulary=["good", "bad", "great", "awful"])(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(words))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    assert set(model.evaluate(ds.x_val, ds.y_val, verbose=0, return_dict=True)) == {"loss", "accuracy"}


def test_a_pair_of_tables_with_the_labels_inside_is_not_read_as_x_and_y(module):
    """(train_df, val_df) was read as (x, y): "240 inputs and 60 targets", or with equal halves a
    regression from training rows to validation rows that ran to its end."""
    source = module("""
        import pandas as pd

        def load():
            rng = np.random.default_rng(0)
            frame = pd.DataFrame(rng.normal(size=(300, 6)), columns=list("abcdef"))
            frame["label"] = (frame["a"] > 0).astype("int64")
            return frame.iloc[:150], frame.iloc[150:]
    """)
    with pytest.raises(InputError) as err:
        load(source)
    assert err.value.key == "data.source" and "got two DataFrames with the same columns (150 and 150 rows)" in err.value.expected


def test_a_validation_split_beside_a_pipeline_pair_is_refused(module):
    source = module("""
        def load():
            import tensorflow as tf
            full = tf.data.Dataset.from_tensor_slices((np.zeros((32, 2), "float32"), np.arange(32) % 2)).batch(8)
            return full.take(3), full.skip(3)
    """)
    with pytest.raises(InputError) as err:
        load(source, validation_split=0.5)
    assert err.value.key == "data.validation_split" and "returns its own validation tf.data pipeline" in err.value.expected
    assert load(source).info.streamed, "the default split is no setting of the user's"


WEIGHTS = """
def xy(n=40):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)).astype("float32"), (np.arange(n) % 2).astype("int64")

def nan_val():
    x, y = xy()
    w = np.ones(40, "float32"); w[35] = np.nan
    return (x[:30], y[:30], w[:30]), (x[30:], y[30:], w[30:])

def text():
    x, y = xy()
    return x, y, np.array(["1"] * 40)

def two_columns():
    x, y = xy()
    return x, y, np.ones((40, 2), "float32")

def negative():
    x, y = xy()
    w = np.ones(40); w[3] = -1.0
    return x, y, w

def zeros():
    x, y = xy()
    return x, y, np.zeros(40)

def column():
    x, y = xy()
    return x, y, np.ones((40, 1), "float32")

def empty_val():
    x, y = xy()
    return (x, y), (x[:0], y[:0])
"""


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("nan_val", "expected finite sample_weight in {source} (the validation part), got 1 NaN or infinite value(s)"),
        ("text", "expected numeric sample_weight in {source}, got text (e.g. '1')"),
        ("two_columns", "expected one sample_weight per row in {source} (shape (N,) or (N, 1)), got shape [40, 2]"),
        ("negative", "expected sample_weight of at least 0 in {source}, got 1 negative value(s)"),
        ("zeros", "expected some non-zero sample_weight in {source}, got all zeros (nothing would count)"),
        ("empty_val", "expected at least one row in {source} (the validation part), got none"),
    ],
)
def test_sample_weights_fit_cannot_use_are_refused_naming_the_part(module, function, expected):
    """A NaN validation weight made every val_loss NaN and the sweep said no trial produced a
    result; a NaN training weight failed every trial; strings and (N, 2) blamed model.builder."""
    written = module(WEIGHTS)
    with pytest.raises(InputError) as err:
        load(written, function)
    assert err.value.key == "data.source"
    assert err.value.expected == expected.format(source=f"{written[0]}:{function}")


def test_a_column_of_weights_is_one_per_row(module):
    assert load(module(WEIGHTS), "column").sample_weight.shape == (32, 1)  # 0.2 of the rows validate


def test_a_pipeline_whose_first_batch_holds_nan_is_refused(module):
    """The preflight read that very batch and passed; every trial's loss was then NaN."""
    written = module("""
        def load():
            import tensorflow as tf
            x = np.zeros((32, 2), dtype="float32"); x[5, 0] = np.nan
            full = tf.data.Dataset.from_tensor_slices((x, (np.arange(32) % 2).astype("int64"))).batch(8)
            return full, full
    """)
    with pytest.raises(InputError) as err:
        load(written, num_outputs=2)
    assert err.value.key == "data.source"
    assert err.value.expected == f"expected finite inputs in the training tf.data of {written[0]}:load, got 1 NaN or infinite value(s) in its first batch"


@pytest.mark.parametrize("frame", ["nullable", "mixed"])
def test_a_frame_of_numbers_without_one_dtype_gets_advice_that_fits(module, frame):
    """Float32 (nullable) columns, or bool beside float, said "it holds float: convert the
    column to one type", though every column held one type."""
    written = module("""
        import pandas as pd

        def load(frame):
            x = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3)))
            x = x.astype("Float32") if frame == "nullable" else x.assign(flag=[True, False] * 10)
            return x, np.arange(20) % 2
    """)
    with pytest.raises(InputError) as err:
        load(written, args={"frame": frame})
    assert err.value.key == "data.source"
    assert "of one numpy dtype, got a DataFrame of" in err.value.expected and "return df.to_numpy('float32')" in err.value.expected


def test_a_pipelines_class_names_are_its_recorded_labels(module):
    """image_dataset_from_directory's folder names: recorded (sweep.data.labels), so the best
    model's class indices can be decoded; they were dropped."""
    ds = load(module("""
        def load():
            import tensorflow as tf
            full = tf.data.Dataset.from_tensor_slices((np.zeros((16, 2), "float32"), np.arange(16) % 2)).batch(4)
            full.class_names = ["cat", "dog"]
            return full, full
    """))
    assert ds.info.labels == ("cat", "dog") and (ds.info.task, ds.info.num_outputs) == ("classification", 2)


def test_a_task_for_an_output_the_targets_lack_is_refused(module):
    """``data.task: {kind: classification, sise: regression}``: the typo was ignored and the
    output's task guessed."""
    written = module("""
        def load():
            rng = np.random.default_rng(0)
            return rng.normal(size=(40, 3)).astype("float32"), {"kind": np.arange(40) % 2, "size": rng.normal(size=40)}

        def one():
            return np.zeros((40, 3), "float32"), np.arange(40) % 2
    """)
    with pytest.raises(InputError) as err:
        load(written, task={"kind": "classification", "sise": "regression"})
    assert (err.value.key, err.value.expected) == ("data.task.sise", f"expected an output name of {written[0]}:load (kind, size), got 'sise'; did you mean 'size'?")
    assert load(written, task={"size": "regression"}).info.output_sizes == {"kind": 2, "size": 1}
    with pytest.raises(InputError, match="for the one output of .*, got a dict"):
        load(written, "one", task={"y": "classification"})


def test_a_pipelines_classes_count_the_training_batchs_labels_too(module):
    """Labels 0..4 in training, the rare 4 absent from validation: 4 classes, and every trial
    failed on a label outside the output's range."""
    ds = load(module("""
        def load():
            import tensorflow as tf
            x = np.zeros((64, 2), dtype="float32")
            train = tf.data.Dataset.from_tensor_slices((x[:32], np.array([4] + [0, 1, 2, 3] * 7 + [0, 1, 2]))).batch(32)
            val = tf.data.Dataset.from_tensor_slices((x[32:], np.arange(32) % 4)).batch(16)
            return train, val
    """))
    assert (ds.info.task, ds.info.num_outputs) == ("classification", 5)


def test_negative_weights_in_a_pipeline_are_refused_as_arrays_are(module):
    written = module("""
        def load():
            import tensorflow as tf
            d = tf.data.Dataset.from_tensor_slices((np.zeros((32, 2), "float32"), np.arange(32) % 2, -np.ones(32, "float32"))).batch(8)
            return d, d
    """)
    with pytest.raises(InputError) as err:
        load(written, num_outputs=2)
    assert err.value.expected == f"expected sample weights of at least 0 in the training tf.data of {written[0]}:load, got 8 negative value(s) in its first batch"


@pytest.mark.parametrize(("function", "got"), [
    ("arrays_then_pipeline", "got training arrays and a tf.data validation pipeline (_BatchDataset)"),
    ("pipeline_then_arrays", "got validation arrays and a tf.data training pipeline (_BatchDataset)"),
])
def test_arrays_beside_a_pipeline_say_that_both_parts_must_be_one_kind(module, function, got):
    """((x, y), val_ds) was read as (x, y) and refused as "expected arrays for y ... got a
    _BatchDataset (return (train, validation) datasets to stream them)": the pipeline called y."""
    written = module("""
        import tensorflow as tf
        X = np.zeros((40, 3), "float32"); Y = np.arange(40) % 2
        def arrays_then_pipeline():
            return (X, Y), tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
        def pipeline_then_arrays():
            return tf.data.Dataset.from_tensor_slices((X, Y)).batch(8), (X, Y)
    """)
    with pytest.raises(InputError) as err:
        load(written, function)
    assert err.value.key == "data.source"
    assert err.value.expected == f"expected {written[0]}:{function} to return both parts as arrays ((x, y), (x_val, y_val)) or both as pipelines (train, validation), {got}"
