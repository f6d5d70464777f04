"""A model's outputs on many samples, without ``Model.predict``'s cost per model.

tf_keras's ``predict`` makes a predict function for every model it first sees (a build
sees several: the compressed model, the input model before the stages, the per-layer
probe) and feeds the samples through a tf.data pipeline; for a small model that costs
3-4 times the graph itself. ``model_outputs`` traces the model's call once, batch size
left open as predict leaves it, and calls it on each batch: the same graph optimisation,
so predict's outputs bit for bit (eager calls are cheaper still but not bit-identical:
a graph fuses MatMul, BiasAdd and Sigmoid, which rounds in the last place differently).
Keras 3 models, models whose input is not float32 and SavedModel signatures keep their
own ``predict`` (``SignatureModel.predict`` calls the signature batch by batch).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

BATCH = 256

# each model's traced call, made on its first outputs and kept while the model lives: a
# stage's model is evaluated before, after and at every epoch line
_CALLS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def model_outputs(model: Any, x: np.ndarray, batch_size: int = BATCH) -> Any:
    """``model.predict(x, batch_size=batch_size)``'s result: an array, or for several
    outputs a list of them."""
    from edgec._tf import keras, tf

    inputs = getattr(model, "inputs", None) or []
    if not (
        isinstance(model, keras.Model)
        and len(inputs) == 1
        and inputs[0].dtype == tf.float32
        and x.dtype == np.float32
        and len(x) > 0
    ):
        return model.predict(x, batch_size=batch_size, verbose=0)
    call = _CALLS.get(model)
    if call is None:
        owner: Any = weakref.ref(model)  # the cache's value must not keep its key alive
        spec = tf.TensorSpec((None, *inputs[0].shape[1:]), tf.float32)
        call = tf.function(lambda batch: owner()(batch, training=False), input_signature=[spec])
        _CALLS[model] = call
    parts = [call(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return tf.nest.map_structure(lambda *p: np.concatenate([t.numpy() for t in p]), *parts)
