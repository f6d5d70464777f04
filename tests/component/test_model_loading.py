"""What loading a model adapts (pipeline/model_io.py), tf_keras models here (Keras 3's in
tests/e2e/test_keras3.py):

- A model trained with mixed precision (layers computing in float16 over float32 weights,
  a GPU's ``mixed_float16``) computes in float32 (``compute_in_float32``). Before, the
  converter took its float16 Conv2D for a TensorFlow op ("'tf.Conv2D' op is neither a
  custom op nor a flex op") and every build failed, and TF-MOT's pruning wrapper failed
  on its casts.
- A model whose input leaves dimensions open (a fully convolutional net's ``(None, None,
  1)``) is rebuilt at the data's sample shape. Before, it was refused ("unknown
  dimensions") although the data said the shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgec.errors import InputError


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


def test_an_open_input_is_built_at_the_data_s_shape_where_it_fits(tmp_path):
    from edgec._tf import keras
    from edgec.pipeline.model_io import load_keras_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((None, None, 1), name="image"), keras.layers.Conv2D(4, 3),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3),
    ])  # fmt: skip
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((8, 6, 5, 1), dtype=np.float32)
    told = []
    fixed = load_keras_model(tmp_path / "m.keras", data_shape=(6, 5, 1),
                             on_input_shape=lambda *a: told.append(a))  # fmt: skip
    assert told == [([None, None, None, 1], [1, 6, 5, 1])]
    assert tuple(fixed.inputs[0].shape) == (None, 6, 5, 1) and fixed.input_names == ["image"]
    np.testing.assert_array_equal(fixed(x).numpy(), model(x).numpy())
    # data of another rank fills nothing: refused as before, the hint naming the data
    with pytest.raises(InputError, match="unknown dimensions") as caught:
        load_keras_model(tmp_path / "m.keras", data_shape=(6, 5))
    assert "or data whose samples have the shape to build it at" in str(caught.value)


def test_an_open_input_clone_model_cannot_remake_is_refused_as_before(tmp_path, monkeypatch):
    """clone_model remakes each layer from its config; a custom layer whose config leaves an
    argument out loads (its own from_config) but cannot be remade. Simulated here by
    clone_model raising what Keras raises then: the build says "unknown dimensions", as it
    did, not an internal error."""
    from edgec._tf import keras
    from edgec.pipeline.model_io import load_keras_model

    inputs = keras.Input((None, 4))
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(tmp_path / "m.keras")

    def cannot(*args, **kwargs):
        raise TypeError("__init__() missing 1 required positional argument: 'factor'")

    monkeypatch.setattr(keras.models, "clone_model", cannot)
    with pytest.raises(InputError, match="unknown dimensions"):
        load_keras_model(tmp_path / "m.keras", data_shape=(6, 4))
