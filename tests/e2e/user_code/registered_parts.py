"""Keras' documented way: every custom object registered. A subclassed keras.Model (with
get_config) holding a custom layer, compiled by the factory with a custom loss."""

import keras


@keras.saving.register_keras_serializable(package="sweep_tests")
class Shift(keras.layers.Layer):
    def __init__(self, offset=0.1, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def call(self, inputs):
        return inputs + self.offset

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@keras.saving.register_keras_serializable(package="sweep_tests")
def halved_crossentropy(y_true, y_pred):
    return 0.5 * keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


@keras.saving.register_keras_serializable(package="sweep_tests")
class TinyNet(keras.Model):
    def __init__(self, units=16, classes=10, **kwargs):
        super().__init__(**kwargs)
        self.units, self.classes = units, classes
        self.shift = Shift(0.1)
        self.hidden = keras.layers.Dense(units, activation="relu")
        self.scores = keras.layers.Dense(classes, activation="softmax")

    def call(self, inputs):
        return self.scores(self.hidden(self.shift(inputs)))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "classes": self.classes}


def build(hp, info):
    model = TinyNet(units=int(hp.get("units", 16)), classes=info.num_outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=halved_crossentropy, metrics=["accuracy"])
    return model
