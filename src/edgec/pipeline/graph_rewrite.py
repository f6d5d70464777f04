"""Walk and rebuild a tf_keras graph model layer call by layer call.

The one way edgec rewrites a model's structure: channel pruning and low-rank
factorisation (``stages/structure/``), the QAT rewrites and BatchNormalization folds
(``stages/structure/qat_rewrite.py``) and the LSTM unrolling of a conversion
(``pipeline/recurrent.py``). Every layer call of a Sequential or Functional model is
visited in topological order, and each layer is either cloned with its weights or replaced
by a chain of new layers with new weights (none: the call's input passes on). The result
is a new functional model with the same inputs and outputs.

A rewrite meant to keep the model's function is proven by ``proven_equal``: the same
outputs on sample inputs, within ``TOLERANCE`` (the Keras 3 translation proves its rebuild
the same way). This module lives in ``pipeline/`` because pipeline code rewrites models
too and cannot import ``stages``; the stages import it from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgec.errors import InputError

# |rebuilt - original| allowed, relative to the largest output magnitude (at least 1):
# float32 re-association only. A quarter of an int8 step of the output range (1/256), so
# what a proven rewrite changes is below what int8 can represent.
TOLERANCE = 1e-3


@dataclass(frozen=True, slots=True)
class GraphNode:
    """One call of a layer in the model: the ids of the tensors it reads and writes."""

    layer: Any
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    node: Any  # the tf_keras Node
    shared: bool  # the layer is called more than once in this model


@dataclass(frozen=True, slots=True)
class Replacement:
    """New layers applied one after another in place of one layer, and their weights."""

    layers: tuple[Any, ...]  # none: the layer call is dropped, its input passes on
    weights: tuple[Sequence[np.ndarray] | None, ...]  # None: the layer's fresh weights
    # None: the new layers take the call's arguments. A number: they take only that one of
    # the call's input tensors (a Multiply([x, f(x)]) that becomes an activation of x)
    takes: int | None = None
    # the first new layer takes the call's input tensors as one list (``x + y`` that
    # becomes a Keras Add)
    merge: bool = False


IDENTITY = Replacement((), ())
# Layers that are the identity at inference, active only in training (data augmentation
# and noise, which Keras tutorials put inside the model; tf_keras has each), and Identity,
# the identity always (a model built from options keeps it for a block left out): TF-MOT has no
# QAT config for any of them and the converter drops them. QAT's rewrite leaves them out
# (stages/structure/qat_rewrite.py), and a Keras 3 Pipeline of them (or of Keras 3's own,
# pipeline/keras3.AUGMENTATION) is left out of the tf_keras rebuild. RandomCrop is not one:
# at inference it crops to its size.
INFERENCE_IDENTITY = (
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "RandomHeight", "RandomWidth", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "Identity",
)  # fmt: skip


def tensor_id(tensor) -> str:
    return str(id(tensor))


def check_graph_model(model, what: str) -> None:
    """A clear error unless ``model`` is a built tf_keras Sequential/Functional model."""
    from edgec._tf import keras

    if not isinstance(model, keras.Model):
        raise InputError(
            f"{what} needs a tf_keras model, got {type(model).__module__}.{type(model).__name__}",
            hint="load the model with tf_keras (Keras 2); Keras 3 models are not supported here",
        )
    if not getattr(model, "_is_graph_network", False):
        raise InputError(
            f"{what} needs a Sequential or Functional model with a known input shape; "
            f"'{model.name}' is subclassed or not built",
            hint="build the model from keras.Input(...) layers",
        )


def graph_nodes(model) -> list[GraphNode]:
    """The model's layer calls, inputs first, each after the calls it depends on."""
    nodes = [
        node
        for depth in sorted(model._nodes_by_depth, reverse=True)
        for node in model._nodes_by_depth[depth]
    ]
    calls: dict[int, int] = {}
    for node in nodes:
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
    return [
        GraphNode(
            layer=node.layer,
            inputs=tuple(node.flat_input_ids),
            outputs=tuple(node.flat_output_ids),
            node=node,
            shared=calls[id(node.layer)] > 1,
        )
        for node in nodes
    ]


def flat(value) -> list:
    """The tensors of a (nested) call argument or output, in order."""
    from edgec._tf import tf

    return tf.nest.flatten(value)


def layer_calls(model) -> list[GraphNode]:
    """``graph_nodes`` without the inputs: the calls ``rebuild`` hands to ``replace``."""
    return [gn for gn in graph_nodes(model) if not gn.node.is_input]


def calls(model, layer) -> list[GraphNode]:
    """The layer's calls in this model's graph (a layer reused by TF-MOT stages also has
    nodes in other models, so ``layer.inbound_nodes`` and ``layer.output`` mislead)."""
    return [gn for gn in layer_calls(model) if gn.layer is layer]


def consumers(model, layer) -> list[GraphNode]:
    """The layer calls of this model that take one of the layer's outputs here."""
    outputs = [t for gn in calls(model, layer) for t in flat(gn.node.outputs)]
    return [
        gn
        for gn in layer_calls(model)
        if any(inbound is out for inbound in flat(gn.node.call_args) for out in outputs)
    ]


def producer(gn: GraphNode):
    """The layer whose output is this call's one input (None: several inputs, or none)."""
    inbound = flat(gn.node.call_args)
    if len(inbound) != 1:
        return None
    history = getattr(inbound[0], "_keras_history", None)
    return None if history is None else history.layer


def kernel_macs(model) -> int:
    """Multiply-accumulates per sample of the model's kernels (Conv, Dense, depthwise):
    each kernel weight is used once per output position of its layer call."""
    total = 0
    for gn in graph_nodes(model):
        size = sum(int(np.prod(w.shape)) for w in gn.layer.weights if "kernel" in w.name)
        if size:
            shape = gn.node.outputs.shape
            total += size * math.prod(int(d) for d in shape[1:-1])
    return total


def clone_layer(layer, config: dict | None = None):
    """A new layer of the same class from ``config`` (default: the layer's own)."""
    return layer.__class__.from_config(config if config is not None else layer.get_config())


def rebuild(
    model, replace: Callable[[GraphNode], Replacement | None], *, input_dtype: str | None = None
):
    """A new functional model: each layer cloned with its weights, or as ``replace`` says.

    ``replace`` sees every non-input layer call; it returns None to keep the layer as is.
    The new layers are called on the rebuilt inputs, then their weights are set; a
    replacement with no layers (``IDENTITY``) passes the call's first input on. The new
    inputs have ``input_dtype`` when given, else the old ones'.
    """
    from edgec._tf import keras, tf

    tensors: dict[str, Any] = {}
    for old in model.inputs:
        tensors[tensor_id(old)] = keras.Input(
            shape=old.shape[1:], dtype=input_dtype or old.dtype, name=old._keras_history.layer.name
        )
    clones: dict[int, Any] = {}  # a shared layer stays one (shared) layer
    for gn in layer_calls(model):
        args, kwargs = tf.nest.map_structure(
            lambda t: tensors[tensor_id(t)] if hasattr(t, "_keras_history") else t,
            (gn.node.call_args, gn.node.call_kwargs),
        )
        replacement = replace(gn)
        if replacement is None:
            if id(gn.layer) not in clones:
                clones[id(gn.layer)] = Replacement(
                    (clone_layer(gn.layer),), (gn.layer.get_weights(),)
                )
            replacement = clones[id(gn.layer)]
        outputs = _apply(replacement, args, kwargs)
        for key, value in zip(gn.outputs, tf.nest.flatten(outputs), strict=True):
            tensors[key] = value
    inputs = [tensors[tensor_id(t)] for t in model.inputs]
    outputs = [tensors[tensor_id(t)] for t in model.outputs]
    return keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=model.name,
    )


def per_layer(
    replace_layer: Callable[[Any], Replacement | None],
) -> Callable[[GraphNode], Replacement | None]:
    """A ``replace`` for ``rebuild`` decided per layer, not per call: a shared layer's
    replacement is made once, and stays one shared layer."""
    made: dict[int, Replacement | None] = {}

    def replace(gn: GraphNode) -> Replacement | None:
        if id(gn.layer) not in made:
            made[id(gn.layer)] = replace_layer(gn.layer)
        return made[id(gn.layer)]

    return replace


def _apply(replacement: Replacement, args, kwargs):
    # the call's tensors, keyword arguments' too (a TFOpLambda loaded from its config
    # takes its second operand as y=)
    if replacement.takes is not None:
        args, kwargs = (call_tensors((args, kwargs))[replacement.takes],), {}
    elif replacement.merge:
        args, kwargs = (call_tensors((args, kwargs)),), {}
    if not replacement.layers:
        return args[0]
    first, *rest = replacement.layers
    built = first.built
    out = first(*args, **kwargs)
    for layer in rest:
        out = layer(out)
    if not built:  # a shared clone gets its weights once, on its first call
        for layer, weights in zip(replacement.layers, replacement.weights, strict=True):
            if weights is not None:
                layer.set_weights(list(weights))
    return out


def call_tensors(args) -> list:
    """The Keras tensors among a call's (nested) arguments, in order."""
    return [t for t in flat(list(args)) if hasattr(t, "_keras_history")]


@dataclass(frozen=True, slots=True)
class Equality:
    """Two models' outputs compared on the same samples."""

    max_difference: float  # the largest |rebuilt - original| output
    equal: bool  # same shapes, and max_difference within TOLERANCE


def proven_equal(original, rebuilt, sample: np.ndarray, *, input_scale: float = 1.0) -> Equality:
    """``rebuilt`` against ``original`` on ``sample`` (``rebuilt`` takes ``sample *
    input_scale``: a removed input Rescaling): equal to float32 rounding, or not."""
    from edgec.pipeline.outputs import model_outputs

    want = np.asarray(model_outputs(original, sample), np.float64)
    if input_scale != 1.0:
        sample = (sample * input_scale).astype(np.float32)
    return equality(want, np.asarray(model_outputs(rebuilt, sample), np.float64))


def equality(want: np.ndarray, got: np.ndarray) -> Equality:
    """``got`` against ``want`` (outputs of the same samples): equal to float32 rounding
    (``TOLERANCE`` of their span), or not."""
    want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
    if want.shape != got.shape:
        return Equality(float("inf"), False)
    diff = float(np.max(np.abs(want - got))) if want.size else 0.0
    span = float(np.max(np.abs(want))) if want.size else 0.0
    return Equality(diff, diff <= TOLERANCE * max(span, 1.0))
