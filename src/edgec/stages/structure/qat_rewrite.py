"""Rewrite a tf_keras model into layers TF-MOT's default 8-bit QAT scheme can take.

The rewrites of the QAT stage (``prepare_for_qat``), the cluster stage and a build without
QAT (the BatchNormalization folds), made with the one model rebuilder
(``pipeline/graph_rewrite.py``) and proven by its ``proven_equal``.

Every rewrite is exact (the same function, rearranged) and the result is checked against
the original on sample inputs before QAT trains it:

- BatchNormalization right after a linear Dense / Conv1D / Conv2D / DepthwiseConv1D/2D /
  SeparableConv1D/2D (its pointwise kernel) is folded into that layer's kernel and bias,
  and the BN layer is dropped. TF-MOT's own
  Dense+BN handling keeps BN as a separate float op with a fake-quant after it; the
  converter then cannot fold it into FULLY_CONNECTED and leaves a float MUL/ADD island.
- A BatchNormalization anywhere else (after an activation: ``Conv2D(activation="relu")``
  then BN) is y * s + t per channel, which the *next* Dense / Conv1D / Conv2D /
  DepthwiseConv2D takes in exactly (``_bn_forward_folds``): W (y s + t) + b =
  (W s) y + (W t + b), also through layers that act on each channel alone (Dropout,
  average pooling, Flatten; max pooling when every s >= 0). Not where that layer pads its
  input with zeros (padding "same" or "causal" that adds rows): the border would see t
  added to the padding. Such a BN stays, as the converter leaves it (int8 MUL and ADD),
  and ``Prepared.kept`` says why; QAT quantizes its output (``annotate``).
- Conv1D, SeparableConv1D, DepthwiseConv1D, MaxPooling1D, AveragePooling1D and UpSampling1D
  become Reshape -> their 2-D form on a (1, width) image -> Reshape: what the converter
  does with them anyway (CONV_2D on an expanded tensor), now visible to TF-MOT.
  SeparableConv2D becomes DepthwiseConv2D + 1x1 Conv2D (TF-MOT's own transform does the
  same; done here so the check before training sees supported layers only).
- A ReLU / ReLU(6.0) / Activation("relu"|"relu6") layer right after a linear Conv/Dense
  (or after its folded BN) becomes that layer's activation (see ``_relu_absorbs``); a
  ``relu6`` activation is then quantized by ``annotate`` (TF-MOT's QuantizeAwareActivation
  takes relu but not relu6).
- Keras' MobileNetV3 hard_sigmoid, ``ReLU(6.0)(x + 3.0) * (1.0 / 6.0)`` (TFOpLambda layers
  in tf_keras; ``keras.ops`` nodes in Keras 3, rebuilt as them), becomes one Activation
  layer of ``keras3_hard_sigmoid`` (or the activation of the linear Conv/Dense that feeds
  only it: a squeeze-and-excite's), and its hard_swish, ``Multiply()([x, hard_sigmoid(x)])``,
  one of ``hard_silu`` (``pipeline/activations.py``; see ``_hard_activations``). TF-MOT has
  no config for the TFOpLambda layers; ``annotate`` quantizes the Activation's output, and
  the converter makes hard_swish one HARD_SWISH op.
- Arithmetic written with Python operators on tensors (TFOpLambda layers in tf_keras; the
  Keras 3 rebuild's keras.ops nodes): ``h + shortcut`` of two tensors of one shape becomes
  Add (Subtract, Multiply), and a tensor with a number (``x * 0.5``, ``3.0 - x``, ``x / 4``)
  a Rescaling (``_arithmetic``); ``tf.nn.relu`` (relu6, sigmoid, tanh) an Activation,
  ``tf.concat`` a Concatenate, ``tf.reshape(x, [-1, ...])`` a Reshape and ``tf.reduce_mean``
  over the spatial axes a GlobalAveragePooling (``_tf_op``); ``tf.transpose``,
  ``tf.expand_dims``, ``tf.squeeze`` and slicing of steps, rows or columns a Permute,
  Reshape or Cropping1D/2D (``_MOVES``). TF-MOT has no config for TFOpLambda.
- A Rescaling right after the input is removed: the model then takes the rescaled values,
  the scale moves into the input quantization (``scale`` of the result; firmware applies
  it as ``<NAME>_INPUT_RAW_SCALE``). A Normalization there (per-channel mean and variance),
  or a Rescaling with an offset, is folded into the first Dense/Conv layer's kernel and bias
  when that is exact (no zero padding, or no offset); else it stays (``Prepared.kept``):
  trained in float (``qat_prepare.left_float``), it converts to int8 MUL/ADD ops.

- Layers that are the identity at inference (``INFERENCE_IDENTITY``: data augmentation
  and noise) are left out of QAT: its training then runs without them. An input
  Rescaling/Normalization after them counts as right after the input.
- A TimeDistributed(Dense) becomes that Dense, on the wrapper's input: a Dense acts on the
  last axis whatever the rank, and TF-MOT has no config for the wrapper.

Layer names are kept (a folded BN's output is its producer's), so recipes and reports keep
naming the user's layers. ``fold_batch_norms`` (the cluster stage) and
``fold_forward_batch_norms`` (a build without QAT, before conversion: the converter folds
a BN into a linear layer before it, never into the one after) do only the BN folds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgec.errors import InputError
from edgec.pipeline import activations
from edgec.pipeline.graph_rewrite import (
    IDENTITY,
    INFERENCE_IDENTITY,
    GraphNode,
    Replacement,
    call_tensors,
    calls,
    clone_layer,
    consumers,
    flat,
    layer_calls,
    producer,
    proven_equal,
    rebuild,
)

_LINEAR = ("linear", None)
BN_PRODUCERS = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D",
                "SeparableConv1D", "SeparableConv2D")  # fmt: skip
REWRITTEN_1D = (
    "Conv1D",
    "SeparableConv1D",
    "DepthwiseConv1D",
    "MaxPooling1D",
    "AveragePooling1D",
    "UpSampling1D",
    "Conv1DTranspose",  # a 1-D autoencoder's (denoiser's) decoder: TF-MOT has Conv2DTranspose
)
INPUT_SCALERS = ("Rescaling", "Normalization")
# What a BatchNormalization after an activation is folded into (its input side), and the
# layers its per-channel y * s + t passes through on the way: identities, and averages of
# one channel (weights summing to 1; "same" average pooling averages the valid inputs only).
BN_TAKERS = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D")
_BN_PASS = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "AveragePooling1D", "AveragePooling2D", "Flatten",
)  # fmt: skip
# max(y s + t) = max(y) s + t for s >= 0
_BN_PASS_IF_INCREASING = ("MaxPooling1D", "MaxPooling2D", "GlobalMaxPooling1D",
                          "GlobalMaxPooling2D")  # fmt: skip


@dataclass
class Prepared:
    model: Any
    input_scale: float = 1.0  # the model now takes x * input_scale (a removed Rescaling)
    rewrites: tuple[str, ...] = ()  # what changed, for the report
    max_difference: float = 0.0  # largest |rewritten - original| output on the check samples
    # BatchNormalization layers no fold takes exactly -> why (they convert to int8 MUL/ADD)
    kept: dict[str, str] = field(default_factory=dict)


def prepare_for_qat(model, sample: np.ndarray) -> Prepared:
    """The model rewritten for QAT, proven equal to ``model`` on ``sample``."""
    return _rewrite(model, sample, backward=True, forward=True, qat=True)


def fold_batch_norms(model, sample: np.ndarray) -> Prepared:
    """The BatchNormalization folds of ``prepare_for_qat``, and its fold of an input
    Rescaling/Normalization into the first layer (same input, same output).

    The cluster stage folds first: folding after clustering multiplies each output unit's
    kernel column by its own gamma / sqrt(variance), so 16 values per tensor become up to
    16 x units, and TF-MOT's CQAT skips a layer above 1,024 centroids with only a warning
    ("No clustering performed on layer ... Too many centroids to cluster"). The input
    fold multiplies each kernel row by its feature's scale: QAT's fold after clustering
    left a tabular model's first Dense with 17 values where 8 were clustered.
    """
    return _rewrite(model, sample, backward=True, forward=True, qat=False, input_fold=True)


def fold_forward_batch_norms(model, sample: np.ndarray) -> Prepared:
    """Only the folds of a BatchNormalization into the layer after it (``_bn_forward_folds``),
    for a build without QAT: the converter folds a BN into a linear layer before it by
    itself, but leaves one after an activation as int8 MUL and ADD ops."""
    return _rewrite(model, sample, backward=False, forward=True, qat=False)


def qat_layers(model) -> list[Any]:
    """The layers ``prepare_for_qat`` would give ``model``, decided without rebuilding it
    or proving the rebuild (what the QAT stage checks against TF-MOT's registry while the
    recipe is validated: the rebuild and its proof, two predict traces, are the stage's
    own when it runs). Raises the InputError ``prepare_for_qat`` would."""
    plan = _plan(model, backward=True, forward=True, qat=True)
    layers: dict[int, Any] = {}
    for gn in layer_calls(model):
        replacement = plan.calls[id(gn.node)]
        for layer in (gn.layer,) if replacement is None else replacement.layers:
            layers.setdefault(id(layer), layer)
    return list(layers.values())


@dataclass
class _Plan:
    """Every layer call's replacement (None: cloned as it is), before anything is rebuilt."""

    calls: dict[int, Replacement | None]
    rewrites: list[str]
    kept: dict[str, str]
    input_scale: float = 1.0


def _plan(model, *, backward: bool, forward: bool, qat: bool, input_fold: bool = False) -> _Plan:
    rewrites: list[str] = []
    folds = _bn_folds(model)
    takes, kept = _bn_forward_folds(model, folds) if forward else ({}, {})
    taken = {fold.bn for fold in takes.values()}
    folds = folds if backward else {}
    relus = _relu_absorbs(model, folds) if qat else {}
    hards = _hard_activations(model) if qat else {}
    scaler: Any = None
    input_scale, first_fold = 1.0, None
    if qat:  # only QAT moves an input Rescaling/Normalization (or keeps it: kept_why)
        scaler, input_scale, first_fold, kept_why = _input_scaler(model)
        if kept_why:
            kept[scaler.name], scaler = kept_why, None
    elif input_fold:  # only its fold into the first layer, which changes no input
        scaler, _, first_fold, _ = _input_scaler(model)
        scaler = scaler if first_fold is not None else None
    if not (qat or folds or takes or scaler):  # nothing to rewrite
        return _Plan({}, rewrites, kept)
    # folded into its producer, or into a layer after it: its output is its input
    dropped = set(folds.values()) | set(relus.values()) | taken
    dropped |= {name for hard in hards.values() for name in hard.dropped}

    def replace(gn: GraphNode) -> Replacement | None:
        layer = gn.layer
        if layer is scaler:
            where = "its first layer" if first_fold else "the input quantization"
            rewrites.append(f"{layer.name}: {type(layer).__name__} folded into {where}")
            return IDENTITY
        hard = hards.get(layer.name)
        if hard is not None and not hard.into:
            rewrites.append(hard.describe())
            return hard.replacement()
        if layer.name in dropped:
            return IDENTITY
        tf_op = _tf_op(gn) if qat else None
        if tf_op is not None:
            made = type(tf_op.layers[0]).__name__
            rewrites.append(f"{layer.name}: TensorFlow op as a Keras {made} layer")
            return tf_op
        crop = _center_crop(gn) if qat else None
        if crop is not None:
            rewrites.append(f"{layer.name}: CenterCrop as a Keras Cropping2D layer")
            return crop
        if qat and type(layer).__name__ in INFERENCE_IDENTITY:
            rewrites.append(
                f"{layer.name}: {type(layer).__name__} left out of QAT (the identity at "
                "inference; QAT trains without it)"
            )
            return IDENTITY
        fold = folds.get(layer.name)
        pre = first_fold if first_fold and first_fold[0] == layer.name else None
        if layer.name in takes:
            pre = takes[layer.name].pre
            rewrites.append(takes[layer.name].describe())
        return _replacement(model, gn, (fold, pre, relus.get(layer.name), hard), rewrites)

    calls = {id(gn.node): replace(gn) for gn in layer_calls(model)}
    return _Plan(calls, rewrites, kept, input_scale)


def _rewrite(
    model,
    sample: np.ndarray,
    *,
    backward: bool,
    forward: bool,
    qat: bool,
    input_fold: bool = False,
) -> Prepared:
    # Every call's replacement is decided before anything is rebuilt: with nothing to
    # rewrite the model is handed back as it is, not rebuilt as a copy only to be dropped
    # (that cost every QAT stage a clone of the model, 0.2 s on the example).
    plan = _plan(model, backward=backward, forward=forward, qat=qat, input_fold=input_fold)
    if not plan.rewrites:
        return Prepared(model, kept=plan.kept)
    rebuilt = rebuild(model, lambda gn: plan.calls[id(gn.node)])
    proof = proven_equal(model, rebuilt, sample, input_scale=plan.input_scale)
    if not proof.equal:
        raise InputError(
            f"rewriting the model (folding layers into others) changed its outputs (largest "
            f"difference {proof.max_difference:.3g})",
            hint="report it with the model attached",
        )
    return Prepared(
        rebuilt, plan.input_scale, tuple(plan.rewrites), proof.max_difference, plan.kept
    )


# ---------------------------------------------------------------------------- graph walk


def _single_call(model, layer) -> bool:
    """Called once here, and its output feeds exactly one layer (nothing else sees it)."""
    return len(calls(model, layer)) == 1 and len(consumers(model, layer)) == 1


def _bn_folds(model) -> dict[str, str]:
    """producer layer name -> the BatchNormalization folded into it."""
    folds: dict[str, str] = {}
    for gn in layer_calls(model):
        layer = gn.layer
        if type(layer).__name__ != "BatchNormalization":
            continue
        prev = producer(gn)
        if (
            prev is not None
            and type(prev).__name__ in BN_PRODUCERS
            and prev.get_config().get("activation") in _LINEAR
            and _last_axis(layer)
            and _single_call(model, prev)
        ):
            folds[prev.name] = layer.name
    return folds


@dataclass(frozen=True)
class _ForwardFold:
    """A BatchNormalization taken in by the layer after it (``consumer``) on its input side."""

    bn: str
    consumer: str
    through: tuple[str, ...]  # the per-channel layers between them
    scale: np.ndarray  # over the consumer's input units (tiled per position after Flatten)
    offset: np.ndarray

    @property
    def pre(self) -> tuple[str, np.ndarray, np.ndarray]:
        return self.consumer, self.scale, self.offset

    def describe(self) -> str:
        via = f" (through {', '.join(self.through)})" if self.through else ""
        return f"{self.bn}: BatchNormalization folded into the input of {self.consumer}{via}"


def _bn_forward_folds(
    model, folds: dict[str, str]
) -> tuple[dict[str, _ForwardFold], dict[str, str]]:
    """consumer layer name -> the BatchNormalization it takes in, and BN name -> why it stays,
    for every BN that ``_bn_folds`` does not fold into its producer."""
    takes: dict[str, _ForwardFold] = {}
    kept: dict[str, str] = {}
    for gn in layer_calls(model):
        bn = gn.layer
        if type(bn).__name__ != "BatchNormalization" or bn.name in folds.values():
            continue
        fold = _forward_fold(model, bn)
        if isinstance(fold, str):
            kept[bn.name] = f"kept as int8 MUL/ADD ops: {fold}"
        else:  # the consumer has one input: no other BN reaches it
            takes[fold.consumer] = fold
    return takes, kept


def _forward_fold(model, bn) -> _ForwardFold | str:
    """Where ``bn``'s y * s + t is taken in exactly, or why nowhere."""
    if not _last_axis(bn):
        return "it normalizes another axis than the last (channels)"
    factor, shift = _bn_affine(bn)
    layer, through = bn, []
    while True:
        after = consumers(model, layer)
        outputs = [t for gn in calls(model, layer) for t in flat(gn.node.outputs)]
        if (
            len(calls(model, layer)) != 1
            or len(after) != 1
            or any(t is out for t in outputs for out in flat(model.outputs))
        ):
            where = f"'{layer.name}'" if layer is not bn else "its"
            return f"{where} output is used more than once or is a model output"
        node = after[0].node
        nxt, kind = node.layer, type(node.layer).__name__
        inputs = flat(node.call_args)
        if len(inputs) != 1 or len(calls(model, nxt)) != 1:
            return f"the next layer, '{nxt.name}' ({kind}), has other inputs or calls"
        channels_last = nxt.get_config().get("data_format", "channels_last") == "channels_last"
        if kind in _BN_PASS + _BN_PASS_IF_INCREASING and channels_last:
            if kind in _BN_PASS_IF_INCREASING and np.any(factor < 0):
                return f"'{nxt.name}' ({kind}) follows it and a negative BN scale flips the max"
            if kind == "Flatten":  # channels last: unit i holds channel i % channels
                positions = int(np.prod([int(d) for d in inputs[0].shape[1:-1]]))
                factor, shift = np.tile(factor, positions), np.tile(shift, positions)
            through.append(nxt.name)
            layer = nxt
            continue
        if kind not in BN_TAKERS or not channels_last or nxt.get_config().get("groups", 1) != 1:
            return f"the next layer, '{nxt.name}' ({kind}), cannot take it in"
        padded = _zero_padding(nxt, tuple(inputs[0].shape))
        # a shift below float32 resolution of y (|t / s| <= 1e-6) is no shift
        if padded and np.any(np.abs(shift) > 1e-6 * np.abs(factor)):
            return f"the next layer, '{nxt.name}' ({kind}), {padded}: the BN's shift is not there"
        return _ForwardFold(bn.name, nxt.name, tuple(through), factor, shift)


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """The BatchNormalization at inference as y * scale + offset, per channel (float64)."""
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in _bn_weights(bn))
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def _zero_padding(layer, input_shape: tuple) -> str:
    """How ``layer`` pads its input with zeros ("" when it does not), from its config and
    input shape: "same" padding adds rows only where the kernel overhangs
    (TensorFlow's rule: (ceil(n / stride) - 1) * stride + (k - 1) * dilation + 1 - n).
    """
    config = layer.get_config()
    padding = config.get("padding", "valid")
    if padding == "valid" or type(layer).__name__ == "Dense":
        return ""
    sizes = [int(d) for d in input_shape[1:-1]]
    dims = len(sizes)
    kernel = _per_dim(config.get("kernel_size", 1), dims)
    strides = _per_dim(config.get("strides", 1), dims)
    dilation = _per_dim(config.get("dilation_rate", 1), dims)
    for n, k, s, d in zip(sizes, kernel, strides, dilation, strict=True):
        reach = (k - 1) * d
        pad = reach if padding == "causal" else max((-(-n // s) - 1) * s + reach + 1 - n, 0)
        if pad:
            k_text = "x".join(str(v) for v in kernel)
            return f"pads its input with zeros (padding='{padding}', kernel {k_text})"
    return ""


def _per_dim(value, dims: int) -> list[int]:
    values = list(value) if isinstance(value, list | tuple) else [value]
    return [int(v) for v in (values * dims if len(values) == 1 else values)]


def _relu_absorbs(model, folds: dict[str, str]) -> dict[str, str]:
    """producer layer name -> the ReLU layer (or BN + ReLU) it takes in as its activation.

    Trap (TF-MOT 0.8.1, default_8bit_transforms.LayerReLUQuantize): a Conv2D, Depthwise or
    Dense followed by a ReLU *layer* gets NoOpQuantizeConfig, so its kernel is trained
    without fake quantization (the converter then quantizes it after the fact) and PQAT's
    sparsity mask is never applied (a pruned Conv lost 19 of 75 points of zeros here).
    With the ReLU as the layer's own activation the kernel is fake-quantized as it should.
    """
    folded_into = {bn: producer for producer, bn in folds.items()}
    absorbs: dict[str, str] = {}
    for gn in layer_calls(model):
        layer = gn.layer
        if _relu_kind(layer) is None:
            continue
        prev = producer(gn)
        if prev is None:
            continue
        if prev.name in folded_into:  # producer -> BN (folded) -> ReLU
            prev = model.get_layer(folded_into[prev.name])
        elif prev.name in folds.values() or type(prev).__name__ == "BatchNormalization":
            continue
        producer_ok = (
            type(prev).__name__ in BN_PRODUCERS
            and prev.get_config().get("activation") in _LINEAR
            and len(calls(model, prev)) == 1
            and prev.name not in absorbs
        )
        tail = model.get_layer(folds[prev.name]) if prev.name in folds else prev
        if producer_ok and len(consumers(model, tail)) == 1:
            absorbs[prev.name] = layer.name
    return absorbs


@dataclass(frozen=True)
class _Hard:
    """One hard_sigmoid or hard_swish written as layers, to become one Activation layer."""

    name: str  # the Activation's: the ReLU's (hard_sigmoid), the Multiply's (hard_swish)
    function: str  # pipeline/activations.py's
    dropped: tuple[str, ...]  # the pattern's other layers (their calls pass x on)
    takes: int  # which input tensor of the call it replaces is x
    # the linear Conv/Dense that computes x and feeds only it, which takes the activation
    # in (no Activation layer then): as the converter fuses a plain model's, the + 3 goes
    # into its bias and the relu6 into its op (an Activation layer converted to its own ADD)
    into: str = ""

    def describe(self) -> str:
        what = "hard_sigmoid" if self.function == "keras3_hard_sigmoid" else "hard_swish"
        layers = len(self.dropped) + (0 if self.into else 1)
        if self.into:
            return f"{self.name}: {what} ({layers} layers) taken into {self.into} as its activation"
        return f"{self.name}: {what} ({layers} layers) as one Activation"

    def replacement(self) -> Replacement:
        from edgec._tf import keras

        layer = keras.layers.Activation(activations.functions()[self.function], name=self.name)
        return Replacement((layer,), (None,), takes=self.takes)


def _hard_activations(model) -> dict[str, _Hard]:
    """The layer whose call changes (it becomes the Activation, or takes it ``into``) ->
    its ``_Hard``, for every ``x + 3 -> ReLU(6) -> * (1/6)`` (or ``/ 6``) whose layers are
    called once and feed only the next, and for each ``Multiply([x, that])`` after one
    (either order)."""
    outputs = {id(t) for t in model.outputs}
    found: dict[str, _Hard] = {}
    for gn in layer_calls(model):
        add, relu = producer(gn), gn.layer
        if _relu_kind(relu) != "relu6" or add is None or len(calls(model, relu)) != 1:
            continue
        add_calls, after_relu = calls(model, add), consumers(model, relu)
        if len(add_calls) != 1 or len(after_relu) != 1:
            continue
        mul_gn = after_relu[0]
        if not (
            _scalar_op(add_calls[0], ("__operators__.add", "math.add"), 3.0)
            and (_scalar_op(mul_gn, ("math.multiply",), 1 / 6)
                 or _scalar_op(mul_gn, ("math.truediv",), 6.0))
            and len(consumers(model, add)) == 1
            and len(calls(model, mul_gn.layer)) == 1
            and not {id(t) for g in (add_calls[0], gn) for t in flat(g.node.outputs)} & outputs
        ):  # fmt: skip
            continue
        x = add_calls[0].inputs[0]
        after = consumers(model, mul_gn.layer)
        if (
            len(after) == 1
            and type(after[0].layer).__name__ == "Multiply"
            and len(calls(model, after[0].layer)) == 1
            and sorted(after[0].inputs) == sorted((x, mul_gn.outputs[0]))
            and id(flat(mul_gn.node.outputs)[0]) not in outputs
        ):
            swish = after[0]
            found[swish.layer.name] = _Hard(
                swish.layer.name, "hard_silu", (add.name, relu.name, mul_gn.layer.name),
                swish.inputs.index(x),
            )  # fmt: skip
        elif (into := _linear_producer(model, add_calls[0], outputs)) is not None:
            found[into] = _Hard(relu.name, "keras3_hard_sigmoid",
                                (add.name, relu.name, mul_gn.layer.name), 0, into)  # fmt: skip
        else:
            found[mul_gn.layer.name] = _Hard(
                relu.name, "keras3_hard_sigmoid", (add.name, relu.name), 0
            )
    return found


def _linear_producer(model, gn: GraphNode, outputs: set[int]) -> str | None:
    """The linear Dense / Conv2D / DepthwiseConv2D, called once, whose output only the call
    ``gn`` takes (and not the model), if one computes ``gn``'s input tensor."""
    source = call_tensors(gn.node.call_args)[0]
    layer = source._keras_history.layer
    if (
        type(layer).__name__ in ("Dense", "Conv2D", "DepthwiseConv2D")
        and layer.get_config().get("activation") in _LINEAR
        and len(calls(model, layer)) == 1
        and len(consumers(model, layer)) == 1
        and id(source) not in outputs
    ):
        return str(layer.name)
    return None


def _scalar_op(gn: GraphNode, symbols: tuple[str, ...], constant: float) -> bool:
    """Whether the call is a TFOpLambda of one of ``symbols`` on (a tensor, ``constant``)."""
    call = _tf_call(gn)
    if call is None or call[0] not in symbols:
        return False
    operands = _operands(*call[1:])
    return (
        operands is not None
        and not isinstance(operands[0], float)
        and isinstance(operands[1], float)
        and abs(operands[1] - constant) <= 1e-6 * constant
    )


def _tf_call(gn: GraphNode) -> tuple[str, list, dict] | None:
    """A TFOpLambda call's TensorFlow function, positional and keyword arguments (without
    the ``name=None`` tf_keras records), or None for any other layer."""
    if type(gn.layer).__name__ not in ("TFOpLambda", "SlicingOpLambda"):
        return None
    kwargs = {k: v for k, v in gn.node.call_kwargs.items() if k != "name" or v is not None}
    return str(getattr(gn.layer, "symbol", "")), list(gn.node.call_args), kwargs


# TFOpLambda arithmetic (``h + shortcut``, ``x * 0.5``): tf_keras records a Python operator
# on its tensors so, and the Keras 3 rebuild makes a keras.ops node so. TF-MOT has no config
# for TFOpLambda, and QAT refused every residual net written with ``+``. Two tensors of one
# shape (or one broadcast along dimensions of 1) become Add / Subtract / Multiply; a tensor
# and a number, a Rescaling (x * scale + offset). The converter makes the same ADD, SUB and
# MUL ops of either.
_MERGES = {"__operators__.add": "Add", "math.add": "Add", "math.subtract": "Subtract",
           "math.multiply": "Multiply"}  # fmt: skip


# TFOpLambda activations and concatenation (``tf.nn.relu(x)``, ``tf.concat([a, b], -1)``):
# the same Keras Activation and Concatenate layers
_TF_ACTIVATIONS = {"nn.relu": "relu", "nn.relu6": "relu6", "math.sigmoid": "sigmoid",
                   "math.tanh": "tanh"}  # fmt: skip


def _tf_op(gn: GraphNode) -> Replacement | None:
    """The Keras layer computing a TFOpLambda call (arithmetic, an activation, a concat),
    if it is one of those."""
    from edgec._tf import keras

    call = _tf_call(gn)
    if call is None:
        return None
    symbol, args, kwargs = call
    if symbol in _TF_ACTIVATIONS and not kwargs and len(args) == 1:
        if not hasattr(args[0], "_keras_history"):
            return None
        layer = keras.layers.Activation(_TF_ACTIVATIONS[symbol], name=gn.layer.name)
        return Replacement((layer,), (None,), takes=0)
    positional = len(args) == 2 and not kwargs  # tf.reshape(x, shape)
    if symbol == "reshape" and (positional or (len(args) == 1 and set(kwargs) == {"shape"})):
        given = args[1] if positional else kwargs["shape"]
        shape = list(given) if isinstance(given, list | tuple) else []
        if (
            len(shape) < 2
            or shape[0] not in (-1, None)
            or not all(isinstance(d, int) and d > 0 for d in shape[1:])
        ):
            return None
        layer = keras.layers.Reshape(tuple(shape[1:]), name=gn.layer.name)
        return Replacement((layer,), (None,), takes=0)
    if symbol == "math.reduce_mean" and len(args) == 1 and hasattr(args[0], "_keras_history"):
        return _spatial_mean(gn.layer.name, len(args[0].shape), kwargs)
    if symbol in _MOVES and args and hasattr(args[0], "_keras_history"):
        layer = _MOVES[symbol](gn, args, kwargs)
        return None if layer is None else Replacement((layer,), (None,), takes=0)
    if symbol == "concat":
        axis = kwargs.pop("axis", args[1] if len(args) == 2 else None)
        parts = args[0] if args and isinstance(args[0], list | tuple) else []
        if (
            kwargs
            or not isinstance(axis, int)
            or len(parts) < 2
            or not all(hasattr(t, "_keras_history") for t in parts)
        ):
            return None
        layer = keras.layers.Concatenate(axis=axis, name=gn.layer.name)
        return Replacement((layer,), (None,), merge=True)
    return _arithmetic(gn.layer.name, symbol, args, kwargs)


def _center_crop(gn: GraphNode) -> Replacement | None:
    """A CenterCrop of an image at least its size: the Cropping2D of the same rows and
    columns (its top and left margins the smaller halves, as Keras crops). TF-MOT has no
    config for CenterCrop (QAT refused it); it leaves Cropping2D unquantized. A CenterCrop
    to a larger size resizes instead, and stays."""
    from edgec._tf import keras

    layer = gn.layer
    if type(layer).__name__ != "CenterCrop" or len(gn.node.input_shapes) != 4:
        return None
    _, rows, columns, _ = gn.node.input_shapes
    height, width = layer.height, layer.width
    if not all(isinstance(d, int) for d in (rows, columns)) or rows < height or columns < width:
        return None
    top, left = (rows - height) // 2, (columns - width) // 2
    cropping = ((top, rows - height - top), (left, columns - width - left))
    return Replacement((keras.layers.Cropping2D(cropping, name=layer.name),), (None,))


def _permute(gn: GraphNode, args: list, kwargs: dict) -> Any:
    """``tf.transpose(x, perm)`` that keeps the batch axis first: a Permute."""
    from edgec._tf import keras

    perm = kwargs.get("perm", args[1] if len(args) > 1 else None)
    rank = len(args[0].shape)
    if (
        kwargs.get("conjugate", False)
        or not isinstance(perm, list | tuple)
        or sorted(perm) != list(range(rank))
        or perm[0] != 0
    ):
        return None
    return keras.layers.Permute(tuple(int(p) for p in perm[1:]), name=gn.layer.name)


def _reshaped(gn: GraphNode, args: list, kwargs: dict) -> Any:
    """``tf.expand_dims`` or ``tf.squeeze`` of axes other than the batch's: a Reshape to
    the call's output shape (the same values in the same order)."""
    from edgec._tf import keras

    before, after = tuple(args[0].shape), tuple(gn.node.outputs.shape)
    if (
        before[:1] != (None,) or after[:1] != (None,)
        or not all(isinstance(d, int) for d in before[1:] + after[1:])
        or math.prod(before[1:]) != math.prod(after[1:])
    ):  # fmt: skip
        return None
    return keras.layers.Reshape(after[1:], name=gn.layer.name)


def _cropped(gn: GraphNode, args: list, kwargs: dict) -> Any:
    """Slicing the steps of a sequence (``x[:, 2:-1]``) or the rows and columns of an image
    (``x[:, 1:7, 2:6]``), whole along the channels: a Cropping1D or Cropping2D."""
    from edgec._tf import keras

    shape = tuple(args[0].shape)
    # (x, items) as called; (x,) and slice_spec= as loaded from a file
    items = args[1] if len(args) == 2 and not kwargs else kwargs.get("slice_spec")
    items = tuple(items) if isinstance(items, tuple | list) else (items,)
    if len(shape) not in (3, 4) or not 2 <= len(items) <= len(shape):
        return None
    spatial = len(shape) - 2
    crops = []
    for axis, item in enumerate(items):
        if not isinstance(item, dict) or item.get("step") not in (None, 1):
            return None
        size = shape[axis]
        start, stop = item.get("start"), item.get("stop")
        if axis == 0 or axis > spatial:  # the batch and the channels: whole
            if (start, stop) != (None, None):
                return None
            continue
        if not isinstance(size, int) or not all(v is None or isinstance(v, int)
                                                for v in (start, stop)):  # fmt: skip
            return None
        first, end, _ = slice(start, stop).indices(size)
        if end <= first:
            return None
        crops.append((first, size - end))
    crops += [(0, 0)] * (spatial - len(crops))
    if spatial == 1:
        return keras.layers.Cropping1D(crops[0], name=gn.layer.name)
    return keras.layers.Cropping2D(tuple(crops), name=gn.layer.name)


# TFOpLambda and SlicingOpLambda calls that move values (``tf.transpose``,
# ``tf.expand_dims``, ``tf.squeeze``, ``x[:, 1:7]``; QAT refused each, "replace the
# TensorFlow op with a Keras layer"): the Keras layer moving the same values, which
# TF-MOT's registry leaves unquantized (Permute, Reshape, Cropping1D/2D)
_MOVES: dict[str, Callable[[GraphNode, list, dict], Any]] = {
    "transpose": _permute, "compat.v1.transpose": _permute,
    "expand_dims": _reshaped, "compat.v1.squeeze": _reshaped, "squeeze": _reshaped,
    "__operators__.getitem": _cropped,
}  # fmt: skip


def _spatial_mean(name: str, rank: int, kwargs: dict) -> Replacement | None:
    """``tf.reduce_mean`` over every spatial axis of a channels-last tensor (axis [1, 2] of
    a rank-4 one, [1] of a rank-3 one) as the GlobalAveragePooling layer of that rank."""
    from edgec._tf import keras

    keepdims = kwargs.get("keepdims", False)
    axis = kwargs.get("axis")
    axes = sorted(a % rank for a in axis) if isinstance(axis, list | tuple) else None
    if set(kwargs) - {"axis", "keepdims"} or not isinstance(keepdims, bool):
        return None
    if axes != list(range(1, rank - 1)) or rank not in (3, 4):
        return None
    pooling = (
        keras.layers.GlobalAveragePooling2D if rank == 4 else keras.layers.GlobalAveragePooling1D
    )
    return Replacement((pooling(keepdims=keepdims, name=name),), (None,), takes=0)


def _arithmetic(name: str, symbol: str, args: list, kwargs: dict) -> Replacement | None:
    """The Keras layer computing a TFOpLambda's elementwise arithmetic, if it is one."""
    from edgec._tf import keras

    if symbol not in (*_MERGES, "math.truediv"):
        return None
    operands = _operands(args, kwargs)
    if operands is None:
        return None
    tensors = [o for o in operands if not isinstance(o, float)]
    if len(tensors) == 2:
        if symbol not in _MERGES or not _broadcast(*(tuple(t.shape) for t in tensors)):
            return None
        merge = getattr(keras.layers, _MERGES[symbol])(name=name)
        return Replacement((merge,), (None,), merge=True)
    number, first = next(o for o in operands if isinstance(o, float)), operands[0] is tensors[0]
    scale, offset = {
        "__operators__.add": (1.0, number), "math.add": (1.0, number),
        "math.subtract": (1.0, -number) if first else (-1.0, number),
        "math.multiply": (number, 0.0),
        "math.truediv": (1.0 / number, 0.0) if first and number else (None, None),
    }[symbol]  # fmt: skip
    if scale is None:
        return None
    return Replacement((keras.layers.Rescaling(scale, offset, name=name),), (None,), takes=0)


def _broadcast(a: tuple, b: tuple) -> bool:
    """Shapes a Keras merge layer takes: one rank, each dimension equal or 1 in one
    (a squeeze-and-excite's ``x * se``, se of shape (1, 1, C))."""
    if len(a) != len(b):
        return False
    return all(x == y or 1 in (x, y) for x, y in zip(a[1:], b[1:], strict=True))


def _operands(args: list, kwargs: dict) -> list | None:
    """A TFOpLambda call's two operands, each a Keras tensor or a number (a Python one, or
    a TensorFlow constant of one value, as ``2.0 * x`` passes it), or None. The second is
    an argument, or (a model loaded from its config) the keyword y."""
    kwargs = dict(kwargs)
    args = args + ([kwargs.pop("y")] if "y" in kwargs else [])
    if kwargs or len(args) != 2:
        return None
    operands: list = []
    for arg in args:
        if hasattr(arg, "_keras_history"):
            operands.append(arg)
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            operands.append(float(arg))
        elif hasattr(arg, "numpy") and np.size(arg.numpy()) == 1:
            operands.append(float(np.asarray(arg.numpy()).reshape(())))
        else:
            return None
    return operands if any(not isinstance(o, float) for o in operands) else None


def _relu_kind(layer) -> str | None:
    """ "relu" or "relu6" for a ReLU / Activation layer that is exactly that, else None."""
    kind = type(layer).__name__
    config = layer.get_config()
    if kind == "Activation" and config.get("activation") in ("relu", "relu6"):
        return str(config["activation"])
    if kind != "ReLU" or config.get("negative_slope") or config.get("threshold"):
        return None
    max_value = config.get("max_value")
    return "relu" if max_value is None else "relu6" if float(max_value) == 6.0 else None


def _last_axis(bn) -> bool:
    rank = len(bn.input.shape)
    axes = bn.axis if isinstance(bn.axis, list | tuple) else [bn.axis]
    return [a % rank for a in axes] == [rank - 1]


def _input_scaler(model):
    """(the Rescaling/Normalization right after the input, or after the input's
    augmentation layers (``INFERENCE_IDENTITY``, left out), its scale, first-layer fold,
    why it stays where no fold is exact: then, trained in float (``qat_prepare.left_float``),
    it converts to int8 MUL/ADD ops at the input, as without QAT)."""
    leading = (gn for gn in layer_calls(model) if type(gn.layer).__name__ not in INFERENCE_IDENTITY)
    gn = next(leading, None)
    if gn is None or type(gn.layer).__name__ not in INPUT_SCALERS:
        return None, 1.0, None, ""
    layer = gn.layer
    if type(layer).__name__ == "Rescaling":
        scale = np.asarray(layer.scale, np.float64)
        offset = np.asarray(layer.offset, np.float64)
        if scale.size == 1 and not np.any(offset):
            return layer, float(scale), None, ""
    else:
        var = np.asarray(layer.variance.numpy(), np.float64).reshape(-1)
        scale = 1.0 / np.sqrt(np.maximum(var, 1e-7))
        offset = -np.asarray(layer.mean.numpy(), np.float64).reshape(-1) * scale
    fold = _first_layer_fold(model, layer, scale, offset)
    if fold is None:
        why = (
            "kept as int8 MUL/ADD ops at the input: its offset or per-channel scale folds "
            "only into a directly following Dense or Conv layer without zero padding"
        )
        return layer, 1.0, None, why
    return layer, 1.0, fold, ""


def _first_layer_fold(model, scaler, scale, offset):
    """(first layer name, per-input-channel scale, offset) for folding the input scaler,
    or None where the fold would not be exact."""
    nodes = consumers(model, scaler)
    first = nodes[0].layer if len(nodes) == 1 else None
    kind = type(first).__name__ if first is not None else ""
    padded = first is not None and _zero_padding(first, _input_shape(nodes[0]))
    if kind not in ("Dense", "Conv1D", "Conv2D") or (padded and np.any(offset)):
        return None
    return first.name, scale, offset


# ---------------------------------------------------------------------------- rewrites


def _input_shape(gn: GraphNode) -> tuple:
    """The shape of the layer call's (first) input."""
    return tuple(flat(gn.node.call_args)[0].shape)


def _replacement(model, gn: GraphNode, absorbed, rewrites: list[str]) -> Replacement | None:
    """The layer, fresh, with what it absorbs: (BN name, input scaler fold, ReLU name,
    ``_Hard`` taken in as its activation); None where it stays as it is (cloned with its
    weights)."""
    layer = gn.layer
    fold, pre, relu, hard = absorbed
    kind = type(layer).__name__
    changes: dict[str, Any] = {}
    weights = layer.get_weights()
    if fold is not None or pre is not None:
        weights = _folded_weights(layer, weights, model.get_layer(fold) if fold else None, pre)
        changes["use_bias"] = True  # the folded weights always have a bias
        if fold is not None:
            rewrites.append(f"{fold}: BatchNormalization folded into {layer.name}")
    if relu is not None:
        changes["activation"] = _relu_kind(model.get_layer(relu))
        rewrites.append(f"{relu}: taken into {layer.name} as its activation")
    if hard is not None:
        changes["activation"] = activations.functions()[hard.function]
        rewrites.append(hard.describe())
    if kind in REWRITTEN_1D:
        replacement = _as_2d(gn, changes, weights)
        rewrites.append(f"{layer.name}: {kind} as its 2-D form on a (1, width) input")
        return replacement
    if kind == "SeparableConv2D":
        rewrites.append(f"{layer.name}: SeparableConv2D as DepthwiseConv2D + 1x1 Conv2D")
        return _separable_2d({**layer.get_config(), **changes}, weights)
    if kind == "TimeDistributed" and type(layer.layer).__name__ == "Dense" and not changes:
        rewrites.append(f"{layer.name}: TimeDistributed(Dense) as a Dense on the last axis")
        config = {**layer.layer.get_config(), "name": layer.name}
        # the input alone: TimeDistributed's call takes a mask, which Dense does not
        return Replacement((clone_layer(layer.layer, config),), (weights,), takes=0)
    if not changes:
        return None
    return Replacement((clone_layer(layer, {**layer.get_config(), **changes}),), (weights,))


def _folded_weights(layer, weights, bn, pre) -> list[np.ndarray]:
    """Kernel and bias with a following BN and/or a preceding input scaler folded in (a
    separable convolution's: its depthwise kernel, then its pointwise kernel and bias,
    which a following BN scales)."""
    kind = type(layer).__name__
    if kind in ("SeparableConv1D", "SeparableConv2D"):
        assert pre is None  # an input scaler folds into a Dense or Conv only
        return [weights[0], *_folded_weights(_Pointwise(layer), weights[1:], bn, None)]
    kernel = weights[0].astype(np.float64)
    out_channels = kernel.shape[-1]
    depthwise = kind in ("DepthwiseConv1D", "DepthwiseConv2D")
    if depthwise:
        out_channels = kernel.shape[-2] * kernel.shape[-1]
    bias = (
        weights[1].astype(np.float64)
        if layer.get_config().get("use_bias", True) and len(weights) > 1
        else np.zeros(out_channels)
    )
    if pre is not None:  # y = W (s x + o) + b = (W s) x + (W o + b)
        _, scale, offset = pre
        in_axis = 0 if kernel.ndim == 2 else -2
        shape = [1] * kernel.ndim
        shape[in_axis] = -1
        s = np.broadcast_to(scale, (kernel.shape[in_axis],)).reshape(shape)
        o = np.broadcast_to(offset, (kernel.shape[in_axis],)).reshape(shape)
        if depthwise:  # output channel c * multiplier + m reads input channel c only
            bias = bias + (kernel * o).sum(axis=(0, 1)).reshape(-1)
        else:
            bias = bias + (kernel * o).reshape(-1, kernel.shape[-1]).sum(axis=0)
        kernel = kernel * s
    if bn is not None:
        factor, shift = _bn_affine(bn)
        if depthwise:
            kernel = kernel * factor.reshape(kernel.shape[-2], kernel.shape[-1])
        else:
            kernel = kernel * factor
        bias = bias * factor + shift
    return [kernel.astype(np.float32), bias.astype(np.float32)]


class _Pointwise:
    """A separable convolution's pointwise part, as ``_folded_weights`` reads a layer."""

    def __init__(self, layer) -> None:
        self._config = layer.get_config()

    def get_config(self) -> dict[str, Any]:
        return self._config


def _bn_weights(bn) -> list[np.ndarray]:
    channels = int(bn.moving_mean.shape[0])
    gamma = bn.gamma.numpy() if bn.gamma is not None else np.ones(channels)
    beta = bn.beta.numpy() if bn.beta is not None else np.zeros(channels)
    return [gamma, beta, bn.moving_mean.numpy(), bn.moving_variance.numpy()]


def _as_2d(gn: GraphNode, changes, weights) -> Replacement:
    """A 1-D layer as Reshape(1, w, c) -> its 2-D form -> Reshape(w', c')."""
    from edgec._tf import keras

    layer = gn.layer
    kind = type(layer).__name__
    config = {**layer.get_config(), **changes}
    if config.get("data_format", "channels_last") != "channels_last":
        raise InputError(
            f"layer '{layer.name}' ({kind}) uses data_format='channels_first'; QAT needs "
            "channels_last", hint="rebuild the model with channels_last, or skip QAT"
        )  # fmt: skip
    name = layer.name
    width, channels = (int(d) for d in _input_shape(gn)[1:])
    chain: list[Any] = [keras.layers.Reshape((1, width, channels), name=f"{name}_to_2d")]
    if config.get("padding") == "causal":
        dilation = _pair(config.get("dilation_rate", 1))[1]
        pad = dilation * (_pair(config["kernel_size"])[1] - 1)
        chain.append(keras.layers.ZeroPadding2D(((0, 0), (pad, 0)), name=f"{name}_causal_pad"))
        config["padding"] = "valid"
    chain_weights: list[Any] = [[] for _ in chain]
    if kind in ("Conv1D", "SeparableConv1D", "DepthwiseConv1D", "Conv1DTranspose"):
        weights = [w[None] if w.ndim >= 3 else w for w in weights]
    if kind == "SeparableConv1D":
        separable = _separable_2d(_two_d_config(config), weights)
        chain += separable.layers
        chain_weights += separable.weights
    else:
        chain.append(_two_d_layer(kind, config, keras))
        chain_weights.append(weights)
    # the 2-D form's output is (1, w', c'): the 1-D layer's own output shape, one row
    out_shape = tuple(int(d) for d in flat(gn.node.outputs)[0].shape[1:])
    chain.append(keras.layers.Reshape(out_shape, name=f"{name}_to_1d"))
    return Replacement(tuple(chain), (*chain_weights, []))


def _pair(value) -> tuple[int, int]:
    v = value[0] if isinstance(value, list | tuple) else value
    return 1, int(v)


def _two_d_layer(kind: str, config: dict, keras):
    layers = keras.layers
    name = config["name"]
    if kind == "UpSampling1D":
        return layers.UpSampling2D(size=(1, int(config["size"])), name=name)
    if kind in ("MaxPooling1D", "AveragePooling1D"):
        cls = layers.MaxPooling2D if kind == "MaxPooling1D" else layers.AveragePooling2D
        strides = config.get("strides") or config["pool_size"]
        return cls(
            pool_size=_pair(config["pool_size"]),
            strides=_pair(strides),
            padding=config["padding"],
            name=name,
        )
    common = _two_d_config(config)
    if kind == "Conv1DTranspose":
        extra = config.get("output_padding")
        extra = None if extra is None else (0, _pair(extra)[1])
        return layers.Conv2DTranspose(output_padding=extra, **common)
    if kind == "Conv1D":
        return layers.Conv2D(groups=config.get("groups", 1), **common)
    return layers.DepthwiseConv2D(**common)


def _two_d_config(config: dict) -> dict:
    """The 2-D arguments of a 1-D conv's config, acting along the width."""
    return {
        **{k: config[k] for k in ("filters", "depth_multiplier") if k in config},
        "kernel_size": _pair(config["kernel_size"]),
        "strides": _pair(config["strides"]),
        "padding": config["padding"],
        "dilation_rate": _pair(config.get("dilation_rate", 1)),
        "activation": config["activation"],
        "use_bias": config["use_bias"],
        "name": config["name"],
    }


def _separable_2d(config: dict, weights) -> Replacement:
    """DepthwiseConv2D (no bias) then a 1x1 Conv2D: a separable convolution, exactly."""
    from edgec._tf import keras

    depthwise = keras.layers.DepthwiseConv2D(
        config["kernel_size"],
        strides=config["strides"],
        padding=config["padding"],
        depth_multiplier=config["depth_multiplier"],
        dilation_rate=config["dilation_rate"],
        use_bias=False,
        name=f"{config['name']}_depthwise",
    )
    pointwise = keras.layers.Conv2D(
        config["filters"],
        1,
        activation=config["activation"],
        use_bias=config["use_bias"],
        name=config["name"],
    )
    return Replacement((depthwise, pointwise), ([weights[0]], list(weights[1:])))
