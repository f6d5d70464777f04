"""A user's custom Keras 3 layer: the ``--custom-objects`` file of the Keras 3 tests."""

import keras


@keras.saving.register_keras_serializable(package="edgec_tests")
class Scale(keras.layers.Layer):
    """Multiplies by one trained scalar."""

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(), initializer="ones", name="factor")

    def call(self, x):
        return x * self.factor
