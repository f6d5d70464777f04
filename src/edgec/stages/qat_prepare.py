"""What QAT needs beyond the model's rewrite: TF-MOT annotation and the training callbacks.

The model is first rewritten into layers TF-MOT's default 8-bit scheme can take
(``stages/structure/qat_rewrite.py``: BatchNormalization folds, 1-D layers as 2-D, ReLU
layers absorbed, the input Rescaling moved). Here: ``annotate`` (relu6 layers and kept
BatchNormalizations get QuantizeConfigs of TF-MOT's own classes), ``SparsityMask`` and
``ClusterMask`` (zeros and clusters that PQAT/CQAT would not keep, put back after each
batch) and ``init_activation_ranges`` (activation ranges started at the float model's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.pipeline import activations
from edgec.pipeline.graph_rewrite import calls, flat, layer_calls, tensor_id


def annotate(model, scheme=None):
    """``quantize_annotate_model``, with a QuantizeConfig of TF-MOT's own classes for layers
    whose activation is relu6 or one TF-MOT has no rule for (``activations.is_unruled``:
    hard_sigmoid, hard_silu, elu, ...): kernel fake-quantized, the activation left as it
    is, the output (after it) fake-quantized (not for ``ISLANDS``); the converter fuses
    RELU6 into the op, or makes the activation its own ops (HARD_SWISH). The
    ``OUTPUT_QUANTIZED`` layers, and an Activation layer of an unruled activation, get the
    config TF-MOT gives an Add: their output fake-quantized, nothing else. The
    ``left_float`` layers are not annotated.

    One clone makes every annotation: each other layer gets the plain ``QuantizeAnnotate``
    that ``quantize_annotate_model`` gives it (the stage's check refused the Lambda layers
    and nested models it treats otherwise); cloning once with the relu6 configs and again
    through ``quantize_annotate_model`` built the model's graph twice.

    ``scheme``: the scheme ``quantize_apply`` will be given (None: the default). A layer
    the default scheme configures and ``scheme``'s registry does not gets the default
    config: CQAT's registry knows Conv2D, Dense and DepthwiseConv2D only, and
    ``quantize_apply`` stopped at a Conv2DTranspose ("is not supported"), which the cluster
    stage does not cluster (nothing to preserve) and default QAT takes.

    Returns the annotated model and the ``quantize_scope`` that ``quantize_apply`` needs.
    The config classes are the default scheme's own (taken from its registry). Trap: a
    layer annotated with its own config never goes through the scheme's registry, so PQAT
    would not keep its zeros (and ``quantize_apply`` copies the model through its config,
    which drops a preserving quantizer set on the config): ``SparsityMask`` keeps them.
    """
    from edgec._tf import keras, tfmot

    quantize = tfmot.quantization.keras
    registry = quantize.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()
    own = registry if scheme is None else scheme.get_quantize_registry()
    scope: dict[str, type] = {}

    floats = set(left_float(model))

    def wrap(layer):
        kind = type(layer).__name__
        if layer.name in floats:
            return layer
        function = getattr(layer, "activation", None)
        unruled = activations.is_unruled(function)
        # the output quantized, unless the converter calibrates it (ISLANDS)
        output = kind != "ELU" and getattr(function, "__name__", None) not in ISLANDS
        relu6 = _is_relu6(layer.get_config().get("activation"))
        # an Activation layer of relu6 no linear layer took in (after an Add, a concat):
        # TF-MOT's config for it is the activation's own, which takes no weights
        if kind in OUTPUT_QUANTIZED or (kind == "Activation" and (unruled or relu6)):
            cls = type(registry.get_quantize_config(keras.layers.Add()))
            scope[cls.__name__] = cls
            return quantize.quantize_annotate_layer(layer, cls([], [], output))
        if not (relu6 or unruled) or not registry.supports(layer):
            if registry.supports(layer) and not own.supports(layer):
                config = registry.get_quantize_config(layer)
                scope[type(config).__name__] = type(config)
                return quantize.quantize_annotate_layer(layer, config)
            return quantize.quantize_annotate_layer(layer)
        cls = type(registry.get_quantize_config(layer))
        scope[cls.__name__] = cls
        weights = ["depthwise_kernel"] if hasattr(layer, "depthwise_kernel") else ["kernel"]
        return quantize.quantize_annotate_layer(layer, cls(weights, [], output))

    # the wrappers hold the model's own layers: the annotated model has their weights
    return keras.models.clone_model(model, clone_function=wrap), scope


def cluster_preserve_scheme(*, preserve_sparsity: bool):
    """TF-MOT's CQAT (PCQAT with ``preserve_sparsity``) scheme, whose registry supports no
    layer that the default 8-bit scheme's does not.

    Its own ``supports`` says yes to every layer without trainable weights, and its
    ``get_quantize_config`` then asks the default registry, which raises for a layer it
    does not support. ``quantize_apply`` asks so for the layer before each annotated one,
    when that layer itself is not annotated: a Rescaling left float at the input
    (MobileNetV3's) stopped CQAT with an internal error ("get_quantize_config() called on
    an unsupported layer ... Rescaling"), where default QAT leaves it as it is.
    """
    from edgec._tf import tfmot

    default = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    default_registry = default.get_quantize_registry()
    base = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme

    class Scheme(base):  # type: ignore[misc, valid-type]
        def get_quantize_registry(self):
            registry = super().get_quantize_registry()
            own = registry.supports
            registry.supports = lambda layer: own(layer) and default_registry.supports(layer)
            return registry

    return Scheme(preserve_sparsity=preserve_sparsity)


# Layers TF-MOT 0.8.1 has no config for, given the config it gives an Add (their output
# fake-quantized, nothing else): the converter makes them int8 ops TFLM runs, with or without
# QAT. BatchNormalization: one in ``Prepared.kept`` (no exact fold takes it), as MUL and
# ADD; Multiply (a squeeze-and-excitation block's) as MUL; Subtract as SUB; Rescaling and
# Normalization (``SCALERS``) as MUL and ADD; PReLU as PRELU (its slopes trained in float,
# quantized by the converter, as without QAT); ELU as ELU (int8: ``artifact.op_forms``);
# Resizing as RESIZE_BILINEAR or _NEAREST_NEIGHBOR (as TF-MOT configures UpSampling2D);
# Maximum and Minimum as MAXIMUM and MINIMUM, which compare raw int8 values: the converter
# gives both inputs one scale (their producers requantize to it; measured: outputs within
# two steps of the QAT model's), Average as ADD and MUL.
SCALERS = ("Rescaling", "Normalization")
# Activations the converter leaves float32 between DEQUANTIZE and QUANTIZE (elu; the ELU
# layer's too), which the conversion joins into one int8 op (``artifact.op_forms``). Their
# output is not fake-quantized: with it, the converter found two ranges for a same-scale op
# after them (Conv2D(activation="elu") -> Flatten: "'tfl.reshape' op quantization
# parameters violate the same scale constraint") and failed; without it, the output is
# calibrated, as without QAT, and every weight before it still trains quantized.
ISLANDS = ("elu",)
OUTPUT_QUANTIZED = ("BatchNormalization", "Multiply", "Subtract", "Maximum", "Minimum",
                    "Average", "PReLU", "ELU", "Resizing", *SCALERS)  # fmt: skip


FLOAT_IN_QAT = (
    "Embedding",
    "LayerNormalization",
    "MultiHeadAttention",
    "UnitNormalization",
    "Dot",
    "Attention",
    "AdditiveAttention",
    "RepeatVector",
    "GroupNormalization",
)  # left_float's kinds


def left_float(model) -> list[str]:
    """The layers ``annotate`` leaves out: trained in float, quantized by the converter's
    calibration.

    - An Embedding: TF-MOT has no config for it, and quantize_apply would put a
      QuantizeLayer on the model's int32 ids ("FakeQuantWithMinMaxVars ... int32").
    - A LayerNormalization: TF-MOT has no config for it either, and the converter's
      calibration makes it int8 ops TFLM runs (MEAN, SQUARED_DIFFERENCE, RSQRT, MUL, ADD:
      measured, as without QAT); the QAT check refused it.
    - A UnitNormalization: no config in TF-MOT; calibrated, one int8 L2_NORMALIZATION.
    - A MultiHeadAttention: no config in TF-MOT; calibrated, its EinsumDense projections,
      BATCH_MATMULs and SOFTMAX convert to int8 (measured: a transformer block's QAT
      build passed cortex-m7's dtypes check); the QAT check refused it.
    - A Dot, an Attention or an AdditiveAttention (attention written with Keras layers:
      ``Dot(axes=2)([q, k])``, a softmax, ``Dot(axes=(2, 1))([a, v])``): no config in
      TF-MOT, which refused them; calibrated, int8 BATCH_MATMULs (and SOFTMAX), as
      without QAT.
    - A RepeatVector (an autoencoder's): TF-MOT's registry has it commented out; it only
      copies values (BROADCAST_TO after ``artifact.op_forms``).
    - A GroupNormalization: no config in TF-MOT; calibrated, int8 (measured: a prune-QAT
      build of a Conv2D, GroupNormalization, ReLU model passes cortex-m4's checks).
    - A ``SCALERS`` layer that takes the model's input (one that ``Prepared.kept`` keeps:
      MobileNetV3's Rescaling before a zero-padded conv). Annotated, behind TF-MOT's input
      QuantizeLayer, it converted with a float DEQUANTIZE -> QUANTIZE pair before its MUL
      and ADD; left float, to int8 MUL and ADD alone (measured here).
    """
    inputs = {tensor_id(t) for t in model.inputs}
    return [
        gn.layer.name
        for gn in layer_calls(model)
        if type(gn.layer).__name__ in FLOAT_IN_QAT
        or (type(gn.layer).__name__ in SCALERS and inputs & set(gn.inputs))
    ]


def _is_relu6(activation) -> bool:
    return activation == "relu6" or getattr(activation, "__name__", "") == "relu6"


class SparsityMask:
    """Zeros of every kernel of a QAT model, put back after each training batch.

    What PQAT's quantizer does for the layers it configures, for all layers (those with
    a relu6 config from ``annotate`` included).
    """

    def __init__(self, qat_model) -> None:
        self.masks = [
            (var, (var.numpy() != 0).astype(np.float32))
            for var in qat_model.trainable_weights
            if var.name.split("/")[-1].startswith(("kernel", "depthwise_kernel"))
            and np.any(var.numpy() == 0)
        ]

    def callback(self):
        from edgec._tf import keras

        def apply(batch, logs=None) -> None:
            for var, mask in self.masks:
                var.assign(var * mask)

        return keras.callbacks.LambdaCallback(on_train_batch_end=apply)


class ClusterMask:
    """The clusters of every clustered kernel that CQAT does not keep, put back after each
    training batch: each cluster's weights set to their mean (a zero cluster stays zero),
    per output channel where the kernel was clustered per channel.

    Trap (TF-MOT 0.8.1): a layer annotated with its own QuantizeConfig (``annotate``'s relu6
    layers) never goes through the cluster-preserving scheme's registry, so CQAT gives it
    no cluster centroids and trains its kernel freely. Every conv of MobileNetV1 (ReLU6
    after each) lost its clusters that way: 16 values per channel after the cluster stage,
    22-38 distinct int8 values per channel after CQAT. What the scheme's quantizer does
    for the layers it configures (one trained value per cluster), for those it does not.
    """

    def __init__(self, qat_model, clusters: dict[str, int]) -> None:
        # (kernel variable, cluster label of each weight, zero weights, per channel)
        self.groups: list[tuple[Any, np.ndarray, np.ndarray, bool]] = []
        for layer in qat_model.layers:
            inner = getattr(layer, "layer", None)
            if inner is None or inner.name not in clusters:
                continue
            if any("cluster_centroids" in w.name for w in layer.weights):
                continue  # the scheme keeps these clusters itself
            # the variable: the wrapper puts the fake-quantized tensor at inner.kernel
            kernel = next(
                (v for v in layer.trainable_weights if v.name.split("/")[-1].startswith("kernel")),
                None,
            )
            if kernel is None:
                continue
            w = kernel.numpy()
            per_channel = w.ndim == 4 and len(np.unique(w)) > clusters[inner.name]
            rows = _channel_rows(w) if per_channel else w.reshape(1, -1)
            labels = [np.unique(row, return_inverse=True)[1] + i * row.size for i, row in
                      enumerate(rows)]  # fmt: skip
            self.groups.append((kernel, np.concatenate(labels), rows.ravel() == 0, per_channel))

    def snap(self) -> None:
        for var, labels, zero, per_channel in self.groups:
            w = var.numpy()
            flat = (_channel_rows(w) if per_channel else w).ravel()
            means = np.bincount(labels, weights=flat) / np.maximum(np.bincount(labels), 1)
            snapped = np.where(zero, 0.0, means[labels]).astype(w.dtype)
            if per_channel:  # back from (channels, rest) to the kernel's layout
                snapped = np.moveaxis(snapped.reshape(w.shape[-1], *w.shape[:-1]), 0, -1)
            var.assign(snapped.reshape(w.shape))

    def callback(self):
        from edgec._tf import keras

        return keras.callbacks.LambdaCallback(on_train_batch_end=lambda *_: self.snap())


def _channel_rows(w: np.ndarray) -> np.ndarray:
    """A kernel as one row per output channel (its last axis)."""
    return np.moveaxis(w, -1, 0).reshape(w.shape[-1], -1)


_RANGE_SUFFIXES = ("post_activation", "output", "quantize_layer")


def init_activation_ranges(qat_model, float_model, x: np.ndarray) -> int:
    """Start every activation range of a fresh QAT model at the float model's range on x.

    Trap (TF-MOT 0.8.1): MovingAverageQuantizer ranges start at [-6, 6] and move by an EMA
    with decay 0.999 per training step. A short QAT stage (2 epochs of ~40 steps here)
    leaves them near [-6, 6]: a ReLU output in [0, 1.5] got zero point -2 and a step of
    0.047, and LiteRT and TFLM then differed by 2-5 steps at a small classifier's logits.
    Returns the number of ranges set.
    """
    from edgec._tf import keras
    from edgec.pipeline.outputs import model_outputs

    # Each layer's output in this model's own graph: TF-MOT stages reuse layer objects,
    # whose ``.output`` may belong to another model ("Graph disconnected").
    output_of = {
        gn.layer.name: flat(gn.node.outputs)[0]
        for gn in layer_calls(float_model)
        if len(calls(float_model, gn.layer)) == 1
    }
    names = list(output_of)
    if not names:
        return 0
    probe = keras.Model(float_model.inputs, [output_of[n] for n in names])
    outs = model_outputs(probe, x)
    outs = outs if len(names) > 1 else [outs]
    ranges = {n: (float(np.min(o)), float(np.max(o))) for n, o in zip(names, outs, strict=True)}
    ranges[""] = (float(np.min(x)), float(np.max(x)))  # the QuantizeLayer after the input
    count = 0
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        key = "" if type(layer).__name__ == "QuantizeLayer" else getattr(inner, "name", None)
        if key not in ranges:
            continue
        low, high = min(ranges[key][0], 0.0), max(ranges[key][1], 0.0)
        for var in layer.weights:
            base = var.name.split("/")[-1].split(":")[0]
            for suffix in _RANGE_SUFFIXES:
                if base == f"{suffix}_min":
                    var.assign(low)
                    count += 1
                elif base == f"{suffix}_max":
                    var.assign(max(high, low + 1e-6))
    return count
