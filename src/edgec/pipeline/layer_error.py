"""Where int8 loses accuracy: float vs int8 error at every layer's output.

The int8 side comes from LiteRT with all intermediate tensors kept; the float side
from the Keras model itself (a sub-model returning each matched layer's output), so no
second conversion is needed. The error accumulates along the network, as it does on
the device: a layer's figure includes what earlier layers lost.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgec.artifact.layer_names import LayerNames
from edgec.artifact.tflite_model import TfliteModel
from edgec.report import Layer

SAMPLES = 64


def with_layer_errors(
    layers: list[Layer],
    keras_model,
    tflite: bytes,
    flat: TfliteModel,
    x: np.ndarray,
    names: LayerNames,
) -> list[Layer]:
    """``layers`` with ``error_rmse``/``error_steps`` filled where an op maps to a layer.

    ``names`` are the layers recorded when the model was traced for conversion;
    ``keras_model`` is that model, or one whose layers have the same names (a Keras 3
    model's tf_keras twin).

    Like is compared with like: an op that fused the layers after it (a ReLU, a folded
    BatchNormalization) is compared with the last of them; an op that left the layer's
    own activation to a separate op (FULLY_CONNECTED before SOFTMAX) with the layer's
    pre-activation value, and that activation op with the layer's output.
    """
    from edgec._tf import keras
    from edgec.artifact.runtimes import dequantize, quantize, run_litert
    from edgec.pipeline.outputs import model_outputs

    probes = _probes(keras_model, flat, names)
    if not probes:
        return layers
    x = x[:SAMPLES]
    wanted = sorted({(name, kind) for name, kind in probes.values()})
    try:
        tensors = [
            (_input_in if kind == PRE_ACTIVATION else _output_in)(
                keras_model, keras_model.get_layer(name)
            )
            for name, kind in wanted
        ]
        probe = keras.Model(keras_model.inputs, tensors)
    except ValueError:  # a layer this model does not reach from its input: no figures
        return layers
    outs = model_outputs(probe, x, batch_size=SAMPLES)
    outs = outs if len(wanted) > 1 else [outs]
    float_of = {}
    for (name, kind), out in zip(wanted, outs, strict=True):
        if kind == PRE_ACTIVATION:
            out = _pre_activation(keras_model.get_layer(name), out)
        if out is not None:
            float_of[(name, kind)] = np.asarray(out)

    outputs = {i: flat.operators[i].outputs[0] for i in probes}
    kept = run_litert(tflite, quantize(x, flat.input_tensor()), keep=list(outputs.values())).kept

    result = list(layers)
    for op_index, key in probes.items():
        tensor = flat.tensors[outputs[op_index]]
        if not tensor.scales or key not in float_of:
            continue
        q = dequantize(kept[outputs[op_index]][:, 0], tensor).reshape(len(x), -1)
        f = float_of[key].reshape(len(x), -1)
        if q.shape != f.shape:
            continue
        rmse = float(np.sqrt(np.mean((q - f) ** 2)))
        result[op_index] = dataclasses.replace(
            result[op_index],
            error_rmse=round(rmse, 6),
            error_steps=round(rmse / tensor.scales[0], 3),
        )
    return result


OUTPUT, PRE_ACTIVATION = "output", "pre-activation"
# Activations TFLite runs as their own op after FULLY_CONNECTED / CONV_2D (the others,
# RELU, RELU6 and RELU_N1_TO_1, it fuses into the op).
_SEPARATE_ACTIVATIONS = {"softmax": "SOFTMAX", "sigmoid": "LOGISTIC", "tanh": "TANH"}
# Keras layers an op absorbs when they directly follow the layer it belongs to.
_FUSABLE = ("ReLU", "Activation", "BatchNormalization")


def _inner(layer):
    return getattr(layer, "layer", layer)  # QAT / pruning wrappers


def _activation_name(layer) -> str:
    activation = getattr(_inner(layer), "activation", None)
    activation = getattr(activation, "activation", activation)  # QuantizeAwareActivation
    return str(getattr(activation, "__name__", activation or "linear"))


_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional")


def _is_recurrent(layer) -> bool:
    return type(_inner(layer)).__name__ in _RECURRENT


def _probes(keras_model, flat: TfliteModel, names: LayerNames) -> dict[int, tuple[str, str]]:
    """op index -> (Keras layer name, output | pre-activation) holding the same value."""
    matched = _match_layers(keras_model, flat, names)
    producer = {t: op.index for op in flat.operators for t in op.outputs}
    probes: dict[int, tuple[str, str]] = {}
    for op in flat.operators:
        if op.index in matched and _is_recurrent(keras_model.get_layer(matched[op.index])):
            continue  # an unrolled cell's inner ops hold no value the Keras layer outputs
        if op.index in matched:
            name = _absorbed(keras_model, matched[op.index], set(matched.values()))
            separate = _SEPARATE_ACTIVATIONS.get(_activation_name(keras_model.get_layer(name)))
            kind = PRE_ACTIVATION if separate is not None and op.name != separate else OUTPUT
            probes[op.index] = (name, kind)
        elif op.inputs and producer.get(op.inputs[0]) in probes:
            # the layer's own activation as a separate (unnamed) op: the layer's output
            name, kind = probes[producer[op.inputs[0]]]
            separate = _SEPARATE_ACTIVATIONS.get(_activation_name(keras_model.get_layer(name)))
            if kind == PRE_ACTIVATION and op.name == separate:
                probes[op.index] = (name, OUTPUT)
    return probes


def _absorbed(keras_model, name: str, named: set[str]) -> str:
    """The last layer of the chain an op fused: ReLU / BN layers right after ``name``."""
    layer = keras_model.get_layer(name)
    while True:
        nodes = [n for n in layer.outbound_nodes if n.layer in keras_model.layers]
        if len(nodes) != 1:
            return layer.name
        nxt = nodes[0].layer
        if type(_inner(nxt)).__name__ not in _FUSABLE or nxt.name in named:
            return layer.name
        if type(_inner(nxt)).__name__ == "Activation" and _activation_name(nxt) not in (
            "relu",
            "relu6",
        ):
            return layer.name
        layer = nxt


def _pre_activation(layer, inputs: np.ndarray) -> np.ndarray | None:
    """The layer's value before its own activation: a linear copy run on its input.

    A copy, because calling a QAT-wrapped layer's inner layer directly reads the fake-quant
    kernel tensor of another graph (TF "cannot be accessed from here").
    """
    inner = _inner(layer)
    try:
        config = {**inner.get_config(), "activation": "linear"}
        copy = type(inner).from_config(config)
        copy(inputs[:1])  # builds it
        copy.set_weights(inner.get_weights()[: len(copy.weights)])
        return np.asarray(copy(inputs))
    except (ValueError, TypeError):  # a layer that cannot be copied this way: no figure
        return None


def _input_in(model, layer):
    return layer.get_input_at(_node_index(model, layer))


def _output_in(model, layer):
    return layer.get_output_at(_node_index(model, layer))


def _node_index(model, layer) -> int:
    """The layer's call in ``model``'s own graph.

    A layer object reused in several models (TF-MOT stages and distillation re-wrap
    layers) has one inbound node per call, and ``layer.output`` is the first one's: a
    probe built on it is "graph disconnected". The model lists its own nodes.
    """
    nodes: set[str] = getattr(model, "_network_nodes", set())
    for index in range(len(layer.inbound_nodes)):
        if f"{layer.name}_ib-{index}" in nodes:
            return index
    return 0


def _match_layers(keras_model, flat: TfliteModel, names: LayerNames) -> dict[int, str]:
    """op index -> Keras layer name: the last layer (in call order) the op computes."""
    known = {layer.name for layer in keras_model.layers if not hasattr(layer, "layers")}
    producer = {t: op.index for op in flat.operators for t in op.outputs}
    matched: dict[int, str] = {}
    for op in flat.operators:
        if op.name in ("QUANTIZE", "DEQUANTIZE") and op.outputs[0] in flat.outputs:
            # --io-type's conversion of the model output (uint8, float32): the value of the
            # op before it, in another type. Matched to the last layer, it took the place of
            # its SOFTMAX and was compared with the logits (176 steps "RMSE", "try QAT")
            continue
        layers = [name for name in names.layers(flat, op) if name in known]
        if not layers:
            continue
        separate = op.inputs and op.name in _SEPARATE_ACTIVATIONS.values()
        if separate and matched.get(producer.get(op.inputs[0], -1)) == layers[-1]:
            continue  # the layer's own activation as a separate op: see _probes
        matched[op.index] = layers[-1]
    # Several ops of one layer (a Dense on a 3-D input, an unrolled LSTM): keep the last
    # one whose output leaves the layer (read by another layer's op, or the model output);
    # a FULLY_CONNECTED and its separate SOFTMAX both stay (see _probes).
    readers: dict[int, set[str]] = {}
    for op in flat.operators:
        for tensor in op.inputs:
            readers.setdefault(tensor, set()).add(matched.get(op.index, ""))
    last_op: dict[str, int] = {}
    for index, name in matched.items():
        out = flat.operators[index].outputs[0]
        if out in flat.outputs or readers.get(out, set()) - {name}:
            last_op[name] = index
    return {index: name for name, index in sorted(last_op.items(), key=lambda kv: kv[1])}
