"""A model trained with mixed precision (layers computing in float16 over float32 weights,
a GPU's ``mixed_float16``): loaded, it computes in float32 (pipeline/model_io.py
``compute_in_float32``). Before, the converter took its float16 Conv2D for a TensorFlow op
("'tf.Conv2D' op is neither a custom op nor a flex op") and every build failed, and
TF-MOT's pruning wrapper failed on its casts."""

from __future__ import annotations

import numpy as np


def test_a_mixed_precision_model_computes_in_float32_and_converts_to_int8(tmp_path):
    from edgec._tf import keras
    from edgec.artifact.tflite_model import TfliteModel
    from edgec.pipeline.convert import convert_int8
    from edgec.pipeline.model_io import load_keras_model

    keras.utils.set_random_seed(0)
    mixed = {"dtype": "mixed_float16"}
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv", **mixed)(inputs)
    h = keras.layers.Dense(3, name="dense", **mixed)(keras.layers.Flatten(name="flat", **mixed)(h))
    # the float32 softmax mixed-precision guides put last
    model = keras.Model(inputs, keras.layers.Activation("softmax", dtype="float32")(h))
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    before = model(x).numpy()

    told = []
    loaded = load_keras_model(tmp_path / "m.keras", on_float32=lambda *a: told.append(a))
    assert told == [("mixed_float16", ["conv", "flat", "dense"])]
    assert {layer.compute_dtype for layer in loaded.layers} == {"float32"}
    np.testing.assert_allclose(loaded(x).numpy(), before, atol=1e-3)  # float16's rounding
    flat = TfliteModel.from_bytes(convert_int8(loaded, x))
    assert flat.op_names == ("CONV_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"), flat.op_names
