"""The QAT stage: quantization-aware training, last, on the model ``prepare_for_qat`` rewrote.

Plain QAT re-grows pruned zeros and splits clusters: after prune or cluster stages (read
from what the earlier stages promise to the int8 artifact) the collaborative schemes
(PQAT, CQAT, PCQAT) are chosen automatically.

``weight_bits = 4`` trains 4-bit weights: the weight quantizers of Conv2D,
DepthwiseConv2D and Dense take ``num_bits=4`` (TF-MOT's quantizers are symmetric and
narrow range: values in [-7, 7]; per channel for convolutions, per tensor for Dense, the
only int4 FULLY_CONNECTED TFLM runs). The converter then writes those filters as INT4
tensors itself (TF 2.21, measured here); the build proves them bit-identical in TFLM to
the same values stored as int8 (``artifact.int4``). ``int4_arena_growth`` bounds what
TFLM's reference kernels' unpack scratch adds to the arena: past it the largest int4
filters ship as int8 (``to_int4_verified``'s ``arena_growth``).
"""

from __future__ import annotations

import logging
from typing import Any

from edgec.errors import InputError
from edgec.stages.base import Param, ShortForm, Stage, register, training_params
from edgec.stages.metrics import QatMetrics
from edgec.stages.plan import CompressionPlan, StagePlan, StageResult, fail, scaled
from edgec.stages.recipe import StageSpec
from edgec.stages.training import fit
from edgec.targets.weights import Expectations

_QAT_UNSUPPORTED = {
    "TFOpLambda": "replace the TensorFlow op with a Keras layer, or skip QAT",
    "SlicingOpLambda": "slice with a Keras layer (Cropping1D/2D) or not at all, or skip QAT",
    "Lambda": "replace the Lambda with a Keras layer, or skip QAT",
}

# TF-MOT has no QuantizeConfig for recurrent layers, and a QAT model with a float LSTM
# inside converted (measured here) with a float DEQUANTIZE -> SPLIT -> QUANTIZE in the
# unrolled cell on some runs. A model with one skips QAT as a whole, says so in the
# stage's metrics and summary, and gets its int8 ranges from post-training calibration.
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")
WEIGHT_BITS = (8, 4)
# the layers whose weights become the filters of CONV_2D, DEPTHWISE_CONV_2D and
# FULLY_CONNECTED: the ops whose TFLM kernels take int4 filters
INT4_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


@register
class Qat(Stage):
    type = "qat"
    rank = 40
    last = True
    order_why = "QAT must be the last training stage (later training would undo it)"
    verb = "Quantization-aware training"
    params = {
        **training_params(2, 1e-4),
        "weight_bits": Param(
            int, 8, 4, 8,
            help="bits of the trained weights: 8, or 4 (int4 filters for Conv2D, "
            "DepthwiseConv2D and Dense: half the weight bytes)",
        ),
        "int4_arena_growth": Param(
            float, -1.0, -1, 10000,
            help="with weight_bits = 4: the most, in percent, the int4 filters may grow the "
            "measured TFLM arena over the same model's with int8 filters (TFLM's reference "
            "kernels unpack each int4 filter into arena scratch): beyond it the largest "
            "int4 filters are stored as int8 again, one at a time; negative (the "
            "default): no limit",
        ),
    }  # fmt: skip
    short_form = ShortForm(
        help="Short form: quantization-aware training (last).",
        kind=bool,
        to_params=lambda flag: {},
    )

    def check_params(self, params: dict[str, Any], raw: dict[str, Any], label: str) -> None:
        if params["weight_bits"] not in WEIGHT_BITS:
            raise InputError(
                f"{label}: weight_bits {params['weight_bits']} is not supported",
                hint="weight_bits = 8 (int8 weights) or 4 (int4 weights)",
            )
        if "int4_arena_growth" in raw and params["weight_bits"] != 4:
            raise InputError(
                f"{label}: int4_arena_growth applies to int4 weights only",
                hint="set weight_bits = 4, or drop int4_arena_growth",
            )

    def plan(self, sp: StagePlan, plan: CompressionPlan, model: Any, train: Any) -> Any:
        if sp.spec["weight_bits"] == 4 and plan.expectations(before=sp).clusters:
            raise fail(
                sp.spec,
                "weight_bits = 4 after a cluster stage is not supported (CQAT keeps 8-bit "
                "centroids)",
                "drop the cluster stage, or train 8-bit weights",
            )
        if train is not None:  # else _check_training_data already refused the recipe
            _check(sp.spec, model)
        return model

    def run(self, sp, plan, model, train, validation, on_epoch) -> StageResult:
        earlier = plan.expectations(before=sp)
        return _qat(sp, plan, model, train, validation, on_epoch, earlier)

    def summary_parts(self, m: dict[str, Any]) -> list[str]:
        return [f"scheme {m['scheme']}"] if "scheme" in m else []

    def summary_tail(self, m: dict[str, Any]) -> list[str]:
        parts = []
        if m.get("rewrites"):
            parts.append(f"rewritten for QAT: {len(m['rewrites'])} change(s), outputs equal")
        if m.get("kept_layers"):
            parts.append(f"kept as int8 MUL/ADD: {', '.join(m['kept_layers'])}")
        return parts


def _check(spec: StageSpec, model) -> None:
    """QAT takes the model as ``prepare_for_qat`` rewrites it: every layer must be supported.

    The layers are the rewrite's plan (``qat_layers``), not a rebuilt and proven model: the
    stage rebuilds and proves the model it trains when it runs (an earlier stage changes
    the weights), and the check's own rebuild and proof cost every QAT recipe with a
    rewrite two more predict traces while it was validated."""
    from edgec.stages.qat_prepare import FLOAT_IN_QAT, OUTPUT_QUANTIZED
    from edgec.stages.structure.qat_rewrite import qat_layers

    try:
        layers = qat_layers(model)
    except InputError as exc:
        raise fail(spec, exc.message, exc.hint or "skip QAT") from None
    registry = _qat_registry()
    for layer in layers:
        kind = type(layer).__name__
        if kind == "InputLayer" or kind in RECURRENT:
            continue
        if kind in _QAT_UNSUPPORTED:
            raise fail(
                spec,
                f"layer '{layer.name}' ({kind}) cannot be quantization-aware trained",
                _QAT_UNSUPPORTED[kind],
            )
        if kind in OUTPUT_QUANTIZED or kind in FLOAT_IN_QAT:  # annotate's own handling
            continue
        if not registry.supports(layer):
            raise fail(
                spec,
                f"layer '{layer.name}' ({kind}) has no default 8-bit QAT configuration",
                "replace the layer with a supported one, or skip QAT",
            )


def _qat_registry():
    """What quantize_apply consults: the default 8-bit scheme's layer registry."""
    from edgec._tf import tfmot

    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()


def _qat(sp, plan, model, train, validation, on_epoch, earlier: Expectations) -> StageResult:
    recurrent = [layer.name for layer in model.layers if type(layer).__name__ in RECURRENT]
    if recurrent:
        why = "recurrent: TF-MOT has no QAT for it, so QAT was not run"
        metrics = QatMetrics(
            scheme="none: post-training calibration",
            parameters=int(model.count_params()),
            skipped_layers={name: why for name in recurrent},
        )
        return StageResult(model, metrics)
    return _qat_apply(sp, plan, model, train, validation, on_epoch, earlier)


def _qat_apply(sp, plan, model, train, validation, on_epoch, earlier) -> StageResult:
    from edgec._tf import tfmot
    from edgec.stages.qat_prepare import (
        ClusterMask,
        SparsityMask,
        annotate,
        cluster_preserve_scheme,
        init_activation_ranges,
        left_float,
    )

    pruned, clustered = bool(earlier.sparsity), bool(earlier.clusters)
    quantize = tfmot.quantization.keras
    # Plain QAT would re-grow pruned zeros and split clusters: pick the collaborative scheme.
    if clustered:
        scheme_name = "PCQAT" if pruned else "CQAT"
        scheme = cluster_preserve_scheme(preserve_sparsity=pruned)
    elif pruned:
        # Not TF-MOT's PQAT scheme: it keeps zeros only in the layers its registry
        # configures, and with a relu6 Dense annotated by ``annotate`` the converter gave
        # a FULLY_CONNECTED whose bias scale was not input x weight scale (int8 accuracy
        # 47% -> 28% here). Default 8-bit QAT with the zeros put back after every batch
        # (SparsityMask) keeps them in every layer.
        scheme_name, scheme = "PQAT (default 8-bit QAT, sparsity mask kept)", None
    else:
        scheme_name, scheme = "QAT (default 8-bit)", None
    bits = sp.spec["weight_bits"]
    if bits != 8:  # TF-MOT's schemes are 8-bit: its weight quantizers are set to 4 below
        scheme_name = scheme_name.replace("default 8-bit", f"{bits}-bit weights, 8-bit activations")
    parameters = int(model.count_params())
    from edgec.stages.structure.qat_rewrite import prepare_for_qat

    prepared = prepare_for_qat(model, train.x[:256])
    train, validation = (
        scaled(train, prepared.input_scale),
        scaled(validation, prepared.input_scale),
    )
    annotated, scope = annotate(prepared.model, scheme)
    with quantize.quantize_scope(scope):
        qat_model = (
            quantize.quantize_apply(annotated, scheme)
            if scheme is not None
            else quantize.quantize_apply(annotated)
        )
    # CQAT/PCQAT train the cluster centroids, not the original kernels, so tf_keras warns
    # "Gradients do not exist for variables [...kernel:0]" every epoch. Expected, and it
    # reads like a bug to the user: filtered for this fit only.
    tf_logger = logging.getLogger("tensorflow")
    quiet = _DropMessage("Gradients do not exist for variables")
    tf_logger.addFilter(quiet)
    if bits != 8:
        _set_weight_bits(qat_model, bits)
    init_activation_ranges(qat_model, prepared.model, train.x[:512])
    callbacks = [SparsityMask(qat_model).callback()] if pruned else []
    if clustered:  # the relu6 layers annotate configured keep no clusters in CQAT/PCQAT
        callbacks.append(ClusterMask(qat_model, earlier.clusters).callback())
    try:
        fit(
            qat_model, sp, plan, train, validation, on_epoch, callbacks=callbacks,
            last_from_result=True,
        )  # fmt: skip
    finally:
        tf_logger.removeFilter(quiet)
    if clustered:
        qat_model = tfmot.experimental.combine.strip_clustering_cqat(qat_model)
    left = "no QAT in TF-MOT: trained in float, quantized by the converter's calibration"
    metrics = QatMetrics(
        scheme=scheme_name,
        parameters=parameters,
        skipped_layers=dict.fromkeys(left_float(prepared.model), left),
        rewrites=tuple(prepared.rewrites),
        rewrite_max_difference=prepared.max_difference if prepared.rewrites else None,
        input_scale=prepared.input_scale,
        kept_layers=dict(prepared.kept),
        weight_bits=bits,
    )
    return StageResult(qat_model, metrics, input_scale=prepared.input_scale)


def _set_weight_bits(qat_model, bits: int) -> None:
    """The weight quantizers of the Conv2D, DepthwiseConv2D and Dense layers quantize to
    ``bits``: set before training, so training and the converter's FakeQuant see them."""
    for layer in qat_model.layers:
        inner, config = getattr(layer, "layer", None), getattr(layer, "quantize_config", None)
        if inner is None or config is None or type(inner).__name__ not in INT4_LAYERS:
            continue
        for _, quantizer in config.get_weights_and_quantizers(inner):
            quantizer.num_bits = bits


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.msg)
