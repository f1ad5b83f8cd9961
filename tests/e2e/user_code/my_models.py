"""A user's model factory, outside the sweep package: build(hp, info) -> keras.Model."""

import keras


def build(hp, info):
    inputs = keras.Input(shape=info.input_shape)
    x = keras.layers.Dense(int(hp.get("units", 32)), activation="relu")(inputs)
    outputs = keras.layers.Dense(info.num_outputs)(x)
    return keras.Model(inputs, outputs)  # left uncompiled: sweep compiles it from hp and the config
