"""Recurrent layers in a form whose int8 conversion keeps the model's accuracy.

Trap (TF 2.21, measured here): a Keras LSTM converts to one fused
UNIDIRECTIONAL_SEQUENCE_LSTM op whose gate intermediates get no calibrated scales (the op
carries only its input, output and int16 cell-state parameters; tensorflow/tensorflow
#73369), so TFLM's integer LSTM runs with default gate scales: a 4-class sequence
classifier fell from 100% (float) to 32% (int8), and LiteRT and TFLM differed by 4 steps.
The same LSTM with ``unroll=True`` converts to FULLY_CONNECTED, SPLIT, LOGISTIC, TANH, MUL
and ADD per time step, every tensor calibrated: int8 100%, all tensors int8, all ops in
TFLM. The sequence length must be static (MCU models have it anyway).
"""

from __future__ import annotations

import numpy as np

from edgec.errors import ConversionError

UNROLLED = ("LSTM",)


def recurrent_type(layer) -> str:
    """The recurrent layer type of ``layer``, or of the layer a Bidirectional wraps."""
    inner = (
        getattr(layer, "forward_layer", None) if type(layer).__name__ == "Bidirectional" else None
    )
    return type(inner if inner is not None else layer).__name__


def unroll_recurrent(model, sample: np.ndarray):
    """``model`` with every LSTM unrolled (same weights; in a Bidirectional both
    directions'), checked equal on ``sample``."""
    from edgec._tf import keras
    from edgec.pipeline.graph_rewrite import (
        Replacement,
        clone_layer,
        per_layer,
        proven_equal,
        rebuild,
    )

    todo = [layer for layer in model.layers if recurrent_type(layer) in UNROLLED]
    if not todo or not (isinstance(model, keras.Sequential) or model._is_graph_network):
        return model
    for layer in todo:
        if layer.input_shape[1] is None:
            raise ConversionError(
                f"layer '{layer.name}' ({type(layer).__name__}) has no fixed sequence length",
                hint="give the model's Input a fixed number of time steps",
            )

    def unrolled_copy(layer) -> Replacement | None:
        if layer not in todo:
            return None
        config = layer.get_config()
        if type(layer).__name__ == "Bidirectional":  # both directions' layers unrolled
            for key in ("layer", "backward_layer"):
                if key in config:
                    inner = config[key]
                    config[key] = {**inner, "config": {**inner["config"], "unroll": True}}
        else:
            config = {**config, "unroll": True}
        return Replacement((clone_layer(layer, config),), (layer.get_weights(),))

    unrolled = rebuild(model, per_layer(unrolled_copy))
    if not proven_equal(model, unrolled, sample).equal:
        raise ConversionError(
            "unrolling the LSTM for int8 conversion changed the model's outputs",
            hint="report it with the model attached",
        )
    return unrolled
