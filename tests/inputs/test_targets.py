"""sweep.targets: what a user's targets are, read without changing them."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.errors import InputError
from sweep.inputs.targets import LOSSES, MAX_AMBIGUOUS_INTEGERS, infer


def kind(y, task=None):
    found = infer(np.asarray(y), task, "y")
    return found.task, found.size, found.layout


@pytest.mark.parametrize(
    "y,expected",
    [
        (np.arange(200) % 12, ("classification", 12, "sparse")),  # fit-12: 12 classes in 200 rows
        ((np.arange(200) % 12)[:, None], ("classification", 12, "sparse")),  # (N, 1) stays a column, same kind
        (np.arange(100) % 2 == 0, ("classification", 2, "sparse")),
        (np.eye(3)[np.arange(30) % 3], ("classification", 3, "onehot")),
        (np.full((10, 4), 0.25), ("classification", 4, "onehot")),  # soft labels
        (np.array([[1, 0, 1], [0, 1, 1]] * 5), ("classification", 3, "multilabel")),
        (np.linspace(0, 1, 50), ("regression", 1, "values")),
        (np.arange(442) + 25, ("regression", 1, "values")),  # many distinct integers: a quantity
        (np.random.default_rng(0).normal(size=(20, 2)), ("regression", 2, "values")),
        (np.arange(300) % 100, ("classification", 100, "sparse")),  # CIFAR-100-style codes
        ((np.arange(40) % 2).astype("float32"), ("classification", 2, "sparse")),  # 0.0/1.0 labels: binary classes
        ((np.arange(400) % 60).astype("float32") * 3, ("regression", 1, "values")),  # 60 whole-number floats: a quantity
    ],
)
def test_inferred_kinds(y, expected):
    assert kind(y) == expected


def _one_class_absent(classes: int, rows: int) -> np.ndarray:
    y = np.arange(rows) % classes
    return np.where(y == classes // 2, 0, y)  # a rare class not in these rows (a small split)


@pytest.mark.parametrize("y", [
    np.arange(1, 6).repeat(20), np.where(np.arange(60) % 2, 3, 7), np.arange(3, 10).repeat(10),
    _one_class_absent(100, 600),  # 0..99 with one label absent: 100 classes, or a count 0..99?
    _one_class_absent(100, 600) + 1,  # the same labels 1..100
    (np.arange(300) % 7).astype("float64"),  # counts or scores stored as floats 0.0..6.0 were 7 classes, silently
    np.arange(300) % 200,  # 0..199 in 300 rows: 200 classes of one or two rows, or a rank? (was a regression, silently)
])
def test_integers_that_could_be_classes_or_a_quantity_ask_for_the_task(y):
    with pytest.raises(InputError) as err:
        kind(y)
    assert err.value.key == "data.task" and "could be class labels" in err.value.expected and "or a quantity" in err.value.expected
    assert kind(y, "regression") == ("regression", 1, "values")


def test_the_task_decides_when_given():
    assert kind(np.arange(1, 6).repeat(4), "classification") == ("classification", 6, "sparse")  # labels up to 5: 6 units, as Keras needs
    with pytest.raises(InputError, match="non-integer"):
        kind(np.linspace(0, 1, 10), "classification")


def test_strings_need_encoding_on_request():
    with pytest.raises(InputError) as err:
        kind(np.array(["a", "b"] * 5))
    assert err.value.key == "data.encode_labels"


def test_every_layout_has_a_default_loss():
    assert set(LOSSES) == {"sparse", "onehot", "multilabel", "values"}
    assert MAX_AMBIGUOUS_INTEGERS == 50


def test_text_labels_are_named_as_text_whatever_their_numpy_dtype():
    """Labels as a numpy '<U3' array were said to be "dtype object" (the sweep's own conversion)."""
    import numpy as np
    import pytest

    from sweep.errors import InputError
    from sweep.inputs import targets

    for labels in (np.array(["cat", "dog", "cat"]), np.array(["cat", "dog", "cat"], dtype=object)):
        with pytest.raises(InputError) as info:
            targets.infer(labels, None, "y")
        assert info.value.key == "data.encode_labels" and "got text labels (e.g. 'cat')" in info.value.expected
