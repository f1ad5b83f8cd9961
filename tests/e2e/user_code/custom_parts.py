"""A factory whose model uses custom Keras objects of every kind, none of them registered:
a layer, an activation, an initializer, a regularizer, a loss and a metric (all with get_config
where Keras needs one). It compiles the model itself, with its own loss and metric."""

import keras
from keras import ops


class Rescale(keras.layers.Layer):
    def __init__(self, factor=0.5, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, inputs):
        return inputs * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def scaled_relu(x):
    return ops.relu(x) * 1.5


class SmallUniform(keras.initializers.Initializer):
    def __init__(self, scale=0.05):
        self.scale = scale

    def __call__(self, shape, dtype=None):
        return keras.random.uniform(shape, -self.scale, self.scale, dtype=dtype, seed=1)

    def get_config(self):
        return {"scale": self.scale}


class TinyL2(keras.regularizers.Regularizer):
    def __init__(self, rate=1e-5):
        self.rate = rate

    def __call__(self, weights):
        return self.rate * ops.sum(ops.square(weights))

    def get_config(self):
        return {"rate": self.rate}


def smooth_crossentropy(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


class Hits(keras.metrics.Metric):
    """Correct predictions counted over the epoch."""

    def __init__(self, name="hits", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        self.total.assign_add(ops.sum(ops.cast(ops.equal(y_true, predicted), "float32")))

    def result(self):
        return self.total

    def reset_state(self):
        self.total.assign(0.0)


def build(hp, info):
    inputs = keras.Input(shape=info.input_shape)
    h = Rescale(0.5)(inputs)
    h = keras.layers.Dense(
        int(hp.get("units", 16)), activation=scaled_relu, kernel_initializer=SmallUniform(), kernel_regularizer=TinyL2()
    )(h)
    model = keras.Model(inputs, keras.layers.Dense(info.num_outputs, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=smooth_crossentropy, metrics=["accuracy", Hits()])
    return model
