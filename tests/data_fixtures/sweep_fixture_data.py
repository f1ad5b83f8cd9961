"""User data functions for tests/test_data.py (loaded as ``sweep_fixture_data:NAME``)."""

import numpy as np


def xy(rows=50, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    y = (x[:, 0] > 0).astype(int)
    return x, y


def split(rows=40):
    rng = np.random.default_rng(1)
    x_train, x_val = rng.normal(size=(rows, 2)), rng.normal(size=(rows // 4, 2))
    return (x_train, x_train[:, 0] * 2.0), (x_val, x_val[:, 0] * 2.0)


def as_list(rows=20):
    x, y = xy(rows)
    return [x, y]


def bad_return():
    return {"x": [1, 2, 3]}


def three_items():
    return 1, 2, 3


def raises():
    raise RuntimeError("database unreachable\nsecond line")


def mismatched():
    return np.zeros((10, 2)), np.zeros(9)


def mixed_types_as_x():
    return np.array([["a", 1.5]] * 10, dtype=object), np.zeros(10)


NOT_CALLABLE = 3
