"""Model factories used by tests/test_models.py (imported through a search path, not installed)."""

import keras

LAST_OPTIMIZER = {}


def uncompiled(hp, info):
    inputs = keras.Input(shape=info.input_shape)
    x = keras.layers.Dense(int(hp.get("units", 8)), activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(info.num_outputs)(x))


def compiled(hp, info):
    model = uncompiled(hp, info)
    optimizer = keras.optimizers.SGD(learning_rate=0.5)
    LAST_OPTIMIZER["value"] = optimizer
    model.compile(optimizer=optimizer, loss="mae", metrics=["mse"])
    return model


def returns_none(hp, info):
    return None


def raises(hp, info):
    raise RuntimeError("no GPU here\nsecond line")


def with_width(hp, info, width=4):
    inputs = keras.Input(shape=info.input_shape)
    x = keras.layers.Dense(width)(inputs)
    return keras.Model(inputs, keras.layers.Dense(info.num_outputs)(x))


def with_kwargs(hp, info, **kwargs):
    return with_width(hp, info, **kwargs)


def no_info(hp):
    return None


def needs_width(hp, info, width, *, depth):
    """A factory whose own parameters model.args fills (no defaults)."""
    import keras

    layers = [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
    return keras.Sequential([keras.Input(info.input_shape), *layers, keras.layers.Dense(info.num_outputs, activation="softmax")])
