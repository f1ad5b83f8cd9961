"""A user's data function, outside the sweep package: returns (x, y) for sweep to split."""

import numpy as np


def make(rows=400, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype("float32")
    y = (x @ np.arange(1, 7, dtype="float32") + 0.1 * rng.normal(size=rows)).astype("float32")
    return x, y
