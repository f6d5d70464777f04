"""The mixed_precision stage: how the converted model stores each layer, chosen by
measurement after every training stage.

It trains nothing: it sets the build's per-layer choice (``pipeline.precision``), which
measures each layer's filter stored int4 against int8 (flash, TFLM arena, the evaluation
metric in LiteRT) on the model the per-channel choice made, and ships

- ``objective = "smallest"``: int4 wherever the int4 layers together lose no more than
  ``--max-accuracy-drop`` leaves after int8's own drop (never less than the noise);
- ``objective = "most_accurate"``: int8, unless the first target's flash or RAM budget is
  missed, then int4 one layer at a time (the one losing least first) until it fits.

``activations = ["int8", "int16"]`` measures each layer with int16 activations too
(taken from a 16x8 conversion, QUANTIZE ops at its edges): ``smallest`` takes int16
layers, the most gaining first, only while int8 misses ``--max-accuracy-drop``;
``most_accurate`` wherever int16 gains more than the noise. ``--weights auto`` and
``--activations auto`` are the same with the smallest objective.
"""

from __future__ import annotations

from typing import Any

from edgec.errors import InputError
from edgec.stages.base import Param, ShortForm, Stage, register
from edgec.stages.metrics import MixedPrecisionMetrics
from edgec.stages.plan import CompressionPlan, StagePlan, StageResult
from edgec.stages.recipe import StageSpec

WEIGHT_BITS = ("int8", "int4")
ACTIVATION_WIDTHS = ("int8", "int16")
OBJECTIVES = ("smallest", "most_accurate")  # as pipeline.precision.OBJECTIVES


def _short_form(value: str) -> dict[str, Any]:
    if value not in OBJECTIVES:
        raise InputError(
            f"--mixed-precision '{value}' is not an objective",
            hint=f"use `--mixed-precision {OBJECTIVES[0]}` or `--mixed-precision {OBJECTIVES[1]}`",
        )
    return {"objective": value}


@register
class MixedPrecision(Stage):
    type = "mixed_precision"
    rank = 50
    last = True
    order_why = (
        "mixed_precision chooses how the converted model stores each layer: it comes after "
        "every training stage"
    )
    verb = "Mixed precision: chosen per layer after conversion"
    params = {
        "weights": Param(
            list, ["int8", "int4"], help="weight widths a layer may take (int8, int4)"
        ),
        "activations": Param(
            list, ["int8"], help="activation widths a layer may take (int8, int16)"
        ),
        "objective": Param(str, "smallest", choices=OBJECTIVES),
    }
    short_form = ShortForm(
        help="Short form: mixed_precision, int4 or int8 weights per layer by measurement; "
        "OBJECTIVE smallest (within --max-accuracy-drop) or most_accurate (within the "
        "budgets).",
        metavar="OBJECTIVE",
        to_params=_short_form,
    )

    def check_params(self, params: dict[str, Any], raw: dict[str, Any], label: str) -> None:
        weights = params["weights"]
        if not weights or any(w not in WEIGHT_BITS for w in weights) or "int8" not in weights:
            raise InputError(
                f"{label}: weights = {weights!r} is not a list of int8 and int4 with int8",
                hint='use weights = ["int8", "int4"] (or ["int8"] to keep int8 everywhere)',
            )
        acts = params["activations"]
        if not acts or any(a not in ACTIVATION_WIDTHS for a in acts) or "int8" not in acts:
            raise InputError(
                f"{label}: activations = {acts!r} is not a list of int8 and int16 with int8",
                hint='use activations = ["int8", "int16"] (or ["int8"]: int8 everywhere)',
            )

    def check_in_recipe(self, spec: StageSpec, earlier: tuple[StageSpec, ...], where: str) -> None:
        qat = next((s for s in earlier if s.type == "qat"), None)
        if qat is not None and qat["weight_bits"] == 4:
            raise InputError(
                f"{where}: {spec.label} cannot follow a qat stage with weight_bits = 4 (its "
                "layers keep the int4 weights they trained)",
                hint="drop the mixed_precision stage, or train weight_bits = 8",
            )

    def run(
        self,
        sp: StagePlan,
        plan: CompressionPlan,
        model: Any,
        train: Any,
        validation: Any,
        on_epoch: Any,
    ) -> StageResult:
        # nothing to train: the build's choose_precision phase reads the stage's parameters
        metrics = MixedPrecisionMetrics(tuple(sp.spec["weights"]), sp.spec["objective"])
        return StageResult(model, metrics)
