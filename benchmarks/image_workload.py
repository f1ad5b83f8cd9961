"""The image workload of ``benchmarks/peers.py``: a folder of small PNGs, a small CNN, tf.data.

* :func:`generate` writes ``folder/class_K/K_NNNN.png``: 10 classes of grayscale images, each
  class a fixed coarse random pattern, shifted by a few pixels and buried in noise, so a small
  CNN learns most but not all of it in a few epochs (seeded: the same folder every time).
* :func:`load` is the data function every system calls **where its trials run**: Keras'
  ``image_dataset_from_directory`` with a 20 % validation split, batched at the trial's batch
  size (``sweep`` passes it since the function has a ``batch_size`` parameter; the peers pass it
  themselves).
* :func:`build_cnn` is the model every system trains (``Rescaling(1/255)`` first); :func:`build`
  is the same as a ``sweep`` model factory ``build(hp, info)``.

This module is imported by name (``image_workload``) in every system's processes: the benchmark
puts its folder on ``sys.path`` (``sweep`` finds it next to the sweep, as a user's module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CLASSES = 10
SEED = 0


def generate(folder: str | Path, per_class: int, side: int = 16, seed: int = SEED, noise: float = 55) -> Path:
    """Write ``per_class`` PNGs of ``side`` x ``side`` pixels for each of the 10 classes."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    coarse = 4
    cell = -(-side // coarse)  # ceil: the coarse pattern covers the image
    templates = rng.random((CLASSES, coarse, coarse))
    for label in range(CLASSES):
        pattern = np.kron(templates[label], np.ones((cell, cell)))[:side, :side]
        target = folder / f"class_{label}"
        target.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            shift = rng.integers(-2, 3, size=2)
            image = np.roll(pattern, tuple(shift), axis=(0, 1))
            image = 128 + 110 * (image - 0.5) * rng.uniform(0.6, 1.0) + rng.normal(0, noise, size=(side, side))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="L").save(target / f"{label}_{index:04d}.png")
    return folder


def load(folder: str, side: int = 16, batch_size: int | None = 32) -> tuple[Any, Any]:
    """``(train, validation)`` tf.data datasets of the folder (``batch_size=None``: unbatched)."""
    import keras

    return keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="both", seed=SEED, batch_size=batch_size,
        image_size=(side, side), color_mode="grayscale", verbose=False,
    )


def build_cnn(lr: float, optimizer: str, input_shape: tuple, classes: int) -> Any:
    """The small CNN every system trains, compiled."""
    import keras

    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))
    opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}[optimizer]
    model.compile(optimizer=opt(learning_rate=lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build(hp: dict, info: Any) -> Any:
    """``sweep``'s model factory: the same CNN, with the trial's learning rate and optimizer."""
    return build_cnn(hp["learning_rate"], hp["optimizer"], tuple(info.input_shape), info.num_outputs)
