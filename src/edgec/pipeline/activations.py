"""Keras 3 activations that tf_keras lacks or defines otherwise, as tf_keras functions.

MobileNetV3 (``keras.applications`` and most hand-made copies) uses both:

- ``hard_silu`` (also saved as ``hard_swish``): ``x * relu6(x + 3) / 6``. tf_keras has none.
  The converter fuses it into one HARD_SWISH op, which TFLM has a kernel for.
- ``hard_sigmoid``: Keras 3's is ``relu6(x + 3) / 6``. tf_keras' function of that name
  is another one, ``clip(0.2 x + 0.5, 0, 1)``; a rebuild that took the name would not
  be output-equal.

And the activations Keras 3 added that tf_keras lacks: ``celu``, ``hard_shrink``,
``hard_tanh``, ``log_sigmoid``, ``soft_shrink``, ``sparse_plus``, ``sparse_sigmoid``,
``squareplus`` and ``tanh_shrink`` (with their default parameters, as a layer's
``activation="celu"`` saves them). Without them every recipe of a model that used one
stopped at the rebuild ("Unknown activation function 'celu'").

Each is Keras 3's TensorFlow code (``keras/src/backend/tensorflow/nn.py``) written again, so
the rebuild is equal to float32 rounding. They are registered with tf_keras' serialization
(``edgec>NAME``): TF-MOT clones a model through its config, and the clone must find them.
TF-MOT's QAT has no rule for them; ``stages/qat_prepare.annotate`` gives their layers one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

# Keras 3's names -> the name of the tf_keras function here
KERAS3_NAMES = {"hard_sigmoid": "keras3_hard_sigmoid", "hard_silu": "hard_silu",
                "hard_swish": "hard_silu", "celu": "celu", "hard_shrink": "hard_shrink",
                "hard_tanh": "hard_tanh", "log_sigmoid": "log_sigmoid",
                "soft_shrink": "soft_shrink", "sparse_plus": "sparse_plus",
                "sparse_sigmoid": "sparse_sigmoid", "squareplus": "squareplus",
                "tanh_shrink": "tanh_shrink"}  # fmt: skip


@functools.cache
def functions() -> dict[str, Callable]:
    """The tf_keras functions, by their own names (defined and registered once)."""
    from edgec._tf import keras, tf

    register = keras.saving.register_keras_serializable(package="edgec")

    @register
    def keras3_hard_sigmoid(x):
        x = tf.convert_to_tensor(x)
        return tf.nn.relu6(x + tf.constant(3.0, x.dtype)) / tf.constant(6.0, x.dtype)

    @register
    def hard_silu(x):
        return x * keras3_hard_sigmoid(x)

    def zeros(x):
        return tf.zeros_like(x)

    @register
    def celu(x):
        return tf.maximum(x, 0.0) + tf.math.expm1(tf.minimum(x, 0.0))

    @register
    def hard_shrink(x):
        return tf.where(tf.abs(x) > 0.5, x, zeros(x))

    @register
    def hard_tanh(x):
        return tf.clip_by_value(x, clip_value_min=-1.0, clip_value_max=1.0)

    @register
    def log_sigmoid(x):
        return tf.math.log_sigmoid(x)

    @register
    def soft_shrink(x):
        return tf.where(x > 0.5, x - 0.5, tf.where(x < -0.5, x + 0.5, zeros(x)))

    @register
    def sparse_plus(x):
        return tf.where(x <= -1, zeros(x), tf.where(x < 1, (1 / 4) * tf.pow(x + 1, 2), x))

    @register
    def sparse_sigmoid(x):
        x = tf.convert_to_tensor(x)
        one, zero = tf.constant(1.0, x.dtype), tf.constant(0.0, x.dtype)
        return tf.where(x <= -1, zero, tf.where(x >= 1, one, 0.5 * (x + 1)))

    @register
    def squareplus(x):
        x = tf.convert_to_tensor(x)
        return (x + tf.sqrt(tf.square(x) + tf.constant(4.0, x.dtype))) / 2

    @register
    def tanh_shrink(x):
        return x - tf.math.tanh(x)

    defined = (keras3_hard_sigmoid, hard_silu, celu, hard_shrink, hard_tanh, log_sigmoid,
               soft_shrink, sparse_plus, sparse_sigmoid, squareplus, tanh_shrink)  # fmt: skip
    return {f.__name__: f for f in defined}


def for_keras3(name: object) -> Callable | None:
    """The tf_keras function for the Keras 3 activation ``name``, where the name alone would
    not give it (None: tf_keras' own of that name is Keras 3's)."""
    own = KERAS3_NAMES.get(name) if isinstance(name, str) else None
    return functions()[own] if own else None


# The activations TF-MOT 0.8.1's QAT has a rule for (QuantizeAwareActivation's pre- and
# post-quantized names, Default8BitActivationQuantizeConfig's), and relu6, which
# ``stages/qat_prepare.annotate`` configures itself
TF_MOT_RULED = frozenset({"linear", "relu", "relu6", "swish", "gelu", "softmax", "sigmoid", "tanh"})


def is_unruled(activation: object) -> bool:
    """Whether ``activation`` (a function) is one TF-MOT's QAT has no rule for and refuses:
    these, tf_keras' hard_sigmoid, elu (an EEGNet's), selu, softplus, a user's own ..."""
    name = getattr(activation, "__name__", None)
    return callable(activation) and name is not None and name not in TF_MOT_RULED
