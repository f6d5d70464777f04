"""A model's outputs on many samples (pipeline/outputs.py): predict's, bit for bit (the
same graph, the same batches), without the tf.data pipeline and the predict function it
makes for every new model."""

from __future__ import annotations

import numpy as np


def _model():
    """Conv with a fused ReLU and a BatchNormalization (what graph optimisation could fuse
    differently from eager), two outputs."""
    from edgec._tf import keras

    keras.utils.set_random_seed(0)
    inputs = keras.layers.Input((8, 8, 1))
    h = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, [keras.layers.Dense(4)(h), keras.layers.Dense(1, "sigmoid")(h)])
    bn = model.layers[2]  # not the initial statistics: the fold would be trivial
    bn.set_weights([w + np.linspace(0.1, 0.6, w.size).astype(np.float32) for w in bn.get_weights()])
    return model


def test_the_outputs_are_predicts_bit_for_bit_without_a_predict_function():
    from edgec.pipeline.outputs import model_outputs

    x = np.random.default_rng(0).normal(size=(300, 8, 8, 1)).astype(np.float32)
    model = _model()
    got = model_outputs(model, x)
    assert model.predict_function is None  # nothing traced
    want = model.predict(x, batch_size=256, verbose=0)
    assert [a.shape for a in got] == [(300, 4), (300, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    single = _model()
    from edgec._tf import keras

    one = keras.Model(single.inputs, single.outputs[0])
    want = one.predict(x[:5], batch_size=2, verbose=0)  # batches of 2, 2 and 1, as predict's
    assert np.array_equal(model_outputs(one, x[:5], batch_size=2), want)
