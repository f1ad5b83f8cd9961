"""Data functions and factories as real projects write them, for tests/e2e/test_fit_data.py.

Every function returns exactly what ``model.fit()`` takes; the tests check that a sweep trains
on it exactly as a plain ``fit()`` of the same arrays does.
"""

from __future__ import annotations

import keras
import numpy as np


def _split(*arrays, val=0.25):
    rows = len(arrays[0])
    cut = int(rows * (1 - val))
    return tuple(a[:cut] for a in arrays), tuple(a[cut:] for a in arrays)


def onehot(rows=400, seed=0):
    """One-hot targets (N, 3) for categorical_crossentropy, already split."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8)).astype("float32")
    labels = np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5])
    return _split(x, np.eye(3, dtype="float32")[labels])


def tokens(rows=600, seed=0):
    """Token ids 0..29 (int64), label 1 when token 7 occurs: only the ids' identity matters."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 30, size=(rows, 10)).astype("int64")
    return _split(ids, (ids == 7).any(axis=1).astype("int64"))


def embedding_net(hp, info):
    inputs = keras.Input(shape=info.input_shape, dtype="int64")
    x = keras.layers.Embedding(30, int(hp.get("dim", 8)))(inputs)
    x = keras.layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(x))


def skewed(rows=600, seed=1, weights=False):
    """A binary problem with 5% positives; per-row weights 19:1 with ``weights``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)).astype("float32")
    score = x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=rows)
    y = (score > np.quantile(score, 0.95)).astype("int64")
    if not weights:
        return _split(x, y)
    w = np.where(y == 1, 19.0, 1.0).astype("float32")
    return _split(x, y, w)


def binary_column(rows=400, seed=2):
    """(N, 1) 0/1 targets, as a sigmoid output and F1Score want them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5)).astype("float32")
    return _split(x, (x[:, :1] + 0.3 * x[:, 1:2] > 0).astype("float32"))


def sigmoid_f1(hp, info):
    inputs = keras.Input(shape=info.input_shape)
    x = keras.layers.Dense(int(hp.get("units", 8)), activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(hp["learning_rate"]),
        loss="binary_crossentropy",
        metrics=[keras.metrics.F1Score(threshold=0.5, name="f1")],
    )
    return model


def two_inputs_two_heads(rows=480, seed=3):
    """Dict inputs (float features + int codes), dict targets (a class and a quantity)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 4)).astype("float32")
    codes = rng.integers(0, 5, size=(rows, 3)).astype("int64")
    kind = np.digitize(features[:, 0] + 0.3 * codes[:, 0], [0.2, 1.2]).astype("int64")
    size = (2.0 * features[:, 1] - features[:, 2]).astype("float32")
    x = {"features": features, "codes": codes}
    y = {"kind": kind, "size": size}
    return x, y


def two_heads_net(hp, info):
    features = keras.Input(shape=info.input_shapes["features"], name="features")
    codes = keras.Input(shape=info.input_shapes["codes"], name="codes", dtype="int64")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(5, 3)(codes))
    shared = keras.layers.Dense(int(hp.get("units", 16)), activation="relu")(keras.layers.Concatenate()([features, embedded]))
    kind = keras.layers.Dense(info.output_sizes["kind"], activation="softmax", name="kind")(shared)
    size = keras.layers.Dense(info.output_sizes["size"], name="size")(shared)
    return keras.Model({"features": features, "codes": codes}, {"kind": kind, "size": size})


def image_folder(folder, batch_size=32, seed=0):
    """An image folder read where the trial runs, batched by the trial's batch size."""
    train, val = keras.utils.image_dataset_from_directory(
        folder, image_size=(8, 8), color_mode="grayscale", batch_size=batch_size,
        validation_split=0.25, subset="both", seed=seed,
    )
    return train, val


def images_here(batch_size=32):
    """The same folder by a path relative to where the sweep was started, written in the code
    as users write it: the files are opened lazily, during fit() on the workers."""
    return image_folder("images", batch_size=batch_size)


def tiny_cnn(hp, info):
    inputs = keras.Input(shape=info.input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(x))


def branchy(hp, info):
    """Reads ``momentum_boost`` only on one branch of ``arch``."""
    inputs = keras.Input(shape=info.input_shape)
    width = 16 if hp["arch"] == "wide" else 4
    if hp["arch"] == "wide":
        width += int(hp["extra"])
    x = keras.layers.Dense(width, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(x))


class CountEpochs(keras.callbacks.Callback):
    """A user's own callback with an argument (fit.callbacks: [{fit_shapes:CountEpochs: {every: 1}}])."""

    seen: list[int] = []

    def __init__(self, every: int = 1):
        super().__init__()
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every == 0:
            CountEpochs.seen.append(epoch)


WORDS = ["good", "bad", "great", "awful", "fine", "poor", "nice", "sad"]


def reviews(rows=400, seed=0, as_unicode=True):
    """Short texts (a numpy unicode array, as ``np.array(list_of_str)`` makes) and 0/1 labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows).astype("int64")
    x = np.array([" ".join(rng.choice(WORDS[label::2], 4)) for label in y])
    return _split(x if as_unicode else x.astype(object), y)


def text_net(hp, info):
    """A string input read by TextVectorization (a fixed vocabulary: nothing to adapt)."""
    inputs = keras.Input(shape=info.input_shape, dtype="string")
    ids = keras.layers.TextVectorization(max_tokens=len(WORDS) + 2, output_sequence_length=4, vocabulary=WORDS)(inputs)
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(len(WORDS) + 2, 8)(ids))
    return keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(h))
