"""Where int8 loses accuracy: float vs int8 error at every layer's output.

The int8 side comes from LiteRT with all intermediate tensors kept; the float side
from the Keras model itself (a sub-model returning each matched layer's output), so no
second conversion is needed. The error accumulates along the network, as it does on
the device: a layer's figure includes what earlier layers lost.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgec.report import Layer
from edgec.targets.tflite_model import TfliteModel

SAMPLES = 64
NOTICEABLE_STEPS = 1.0  # below one quantization step, rounding explains the error


def with_layer_errors(
    layers: list[Layer], keras_model, tflite: bytes, flat: TfliteModel, x: np.ndarray
) -> list[Layer]:
    """``layers`` with ``error_rmse``/``error_steps`` filled where an op maps to a layer."""
    from edgec._tf import keras
    from edgec.pipeline.verify import dequantize, quantize, run_litert

    matched = _match_layers(keras_model, flat)
    if not matched:
        return layers
    x = x[:SAMPLES]
    try:
        outputs_of = [_output_in(keras_model, keras_model.get_layer(n)) for n in matched.values()]
        probe = keras.Model(keras_model.inputs, outputs_of)
    except ValueError:  # a layer this model does not reach from its input: no figures
        return layers
    float_outs = probe.predict(x, batch_size=64, verbose=0)
    if len(matched) == 1:
        float_outs = [float_outs]

    outputs = {i: flat.operators[i].outputs[0] for i in matched}
    kept = run_litert(tflite, quantize(x, flat.input_tensor()), keep=list(outputs.values())).kept

    result = list(layers)
    for (op_index, _), float_out in zip(matched.items(), float_outs, strict=True):
        tensor = flat.tensors[outputs[op_index]]
        if not tensor.scales:
            continue
        q = dequantize(kept[outputs[op_index]][:, 0], tensor).reshape(len(x), -1)
        f = np.asarray(float_out).reshape(len(x), -1)
        if q.shape != f.shape:
            continue
        rmse = float(np.sqrt(np.mean((q - f) ** 2)))
        result[op_index] = dataclasses.replace(
            result[op_index],
            error_rmse=round(rmse, 6),
            error_steps=round(rmse / tensor.scales[0], 3),
        )
    return result


def _output_in(model, layer):
    """The layer's output in ``model``'s own graph.

    A layer object reused in several models (TF-MOT stages and distillation re-wrap
    layers) has one inbound node per call, and ``layer.output`` is the first one's: a
    probe built on it is "graph disconnected". The model lists its own nodes.
    """
    nodes = getattr(model, "_network_nodes", set())
    for index in range(len(layer.inbound_nodes)):
        if f"{layer.name}_ib-{index}" in nodes:
            return layer.get_output_at(index)
    return layer.output


def _match_layers(keras_model, flat: TfliteModel) -> dict[int, str]:
    """op index -> Keras layer name, from the scope in each op's location."""
    names = {layer.name for layer in keras_model.layers if not hasattr(layer, "layers")}
    matched = {}
    for op in flat.operators:
        scope = [part for part in op.location.split("/") if part in names]
        if scope:
            matched[op.index] = scope[-1]
    # Several ops of one layer (e.g. a Dense on a 3-D input): keep the last, the layer's output.
    last_op = {name: index for index, name in matched.items()}
    return {index: name for name, index in sorted(last_op.items(), key=lambda kv: kv[1])}


def error_summary(layers: list[Layer], *, worst: int = 3) -> list[str]:
    """The layers that lose most, with what to try, for the terminal and the HTML report."""
    measured = [layer for layer in layers if layer.error_steps is not None]
    if not measured:
        return (
            ["per-layer float vs int8 error not measured: no op could be matched to a Keras "
             "layer output of this model"]
            if layers else []
        )  # fmt: skip
    ranked = sorted(measured, key=lambda layer: layer.error_steps or 0.0, reverse=True)[:worst]
    top = ranked[0]
    if (top.error_steps or 0.0) < NOTICEABLE_STEPS:
        return [
            f"every layer within one quantization step of float (worst: {top.name}, "
            f"{top.error_steps:.2f} steps RMSE): rounding only, nothing to do"
        ]
    lines = []
    for layer in ranked:
        steps = layer.error_steps or 0.0
        if steps < NOTICEABLE_STEPS:
            hint = "rounding only: nothing to do"
        elif layer.op in ("SOFTMAX", "LOGISTIC", "TANH"):
            hint = "a saturating activation: try 16x8 quantization or QAT"
        elif (
            layer.op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")
            and layer.parameters < 256
        ):
            hint = "few weights per channel: keep the layer wider or try QAT"
        else:
            hint = "try more calibration data (--calibration-samples), then QAT"
        lines.append(f"{layer.name} ({layer.op}): {steps:.2f} quantization steps RMSE; {hint}")
    return lines
