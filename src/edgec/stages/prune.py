"""The prune stage: TF-MOT magnitude pruning (unstructured, block or 2:4), then stripped.

TF-MOT trap (shared/reference/facts.md, section 3): PolynomialDecay's default
frequency=100 silently never applies the mask on short runs. The end step is derived from
epochs and data size, and the frequency divides ``end_step - begin_step``.
"""

from __future__ import annotations

import math
from typing import Any

from edgec.errors import InputError
from edgec.stages.base import Param, ShortForm, Stage, layer_parts, register, training_params
from edgec.stages.metrics import PrunedLayer, PruneMetrics
from edgec.stages.plan import (
    CompressionPlan,
    StagePlan,
    StageResult,
    fail,
    kernel_figures,
    select_layers,
)
from edgec.stages.training import fit
from edgec.targets.weights import Expectations

PRUNABLE = ("Conv1D", "Conv2D", "Dense")
PATTERNS = ("unstructured", "2:4")
SCHEDULES = ("polynomial", "constant")


def _short_form(value: str) -> dict[str, Any]:
    if value == "2:4":
        return {"pattern": "2:4"}
    try:
        return {"sparsity": float(value)}
    except ValueError:
        raise InputError(
            f"--prune '{value}' is not a sparsity",
            hint="give a fraction of zeros such as 0.75, or 2:4",
        ) from None


@register
class Prune(Stage):
    type = "prune"
    rank = 20
    order_why = "clustering before pruning: pruning would undo the clusters"
    verb = "Pruning"
    makes_zeros = True
    params = {
        **training_params(6, 1e-3),
        "sparsity": Param(float, 0.75, 0, 0.99, open_low=True, help="final zero fraction"),
        "initial_sparsity": Param(float, 0.0, 0, 0.99, help="polynomial schedule start"),
        "schedule": Param(str, "polynomial", choices=SCHEDULES),
        "pattern": Param(str, "unstructured", choices=PATTERNS),
        "block": Param(list, [1, 1], help="block size [rows, cols], Dense kernels only"),
        "layers": Param(list, [], help="layer names or types; empty: every prunable layer"),
        "layer_sparsity": Param(dict, {}, help="per-layer final sparsity, by layer name"),
    }
    short_form = ShortForm(
        help="Short form: prune, e.g. 0.75 or 2:4.",
        metavar="SPARSITY|2:4",
        to_params=_short_form,
    )

    def check_params(self, params: dict[str, Any], raw: dict[str, Any], label: str) -> None:
        _check_params(params, raw, label)

    def plan(self, sp: StagePlan, plan: CompressionPlan, model: Any, train: Any) -> Any:
        _plan(sp, model)
        return model

    def run(self, sp, plan, model, train, validation, on_epoch) -> StageResult:
        return _prune(sp, plan, model, train, validation, on_epoch)

    def expectations(self, sp: StagePlan) -> Expectations:
        return Expectations(
            sparsity={name: cfg["sparsity"] for name, cfg in sp.layers.items()},
            pattern_2_4=tuple(name for name, cfg in sp.layers.items() if cfg["pattern"] == "2:4"),
        )

    def summary_parts(self, m: dict[str, Any]) -> list[str]:
        return layer_parts(m)


def _check_params(params: dict[str, Any], raw: dict[str, Any], label: str) -> None:
    sparsity = params["sparsity"]
    if params["pattern"] == "2:4":
        for key in ("sparsity", "initial_sparsity", "schedule", "block", "layer_sparsity"):
            if key in raw:
                raise InputError(
                    f"{label}: '{key}' does not apply to pattern 2:4 (always 2 zeros in 4)",
                    hint=f"remove '{key}' or use pattern = 'unstructured'",
                )
    if params["initial_sparsity"] >= sparsity:
        raise InputError(
            f"{label}: initial_sparsity {params['initial_sparsity']:g} is not below "
            f"sparsity {sparsity:g}",
            hint="the schedule grows sparsity from initial_sparsity to sparsity",
        )
    if params["schedule"] == "constant" and "initial_sparsity" in raw:
        raise InputError(
            f"{label}: initial_sparsity does not apply to the constant schedule",
            hint="remove it, or use schedule = 'polynomial'",
        )
    block = params["block"]
    if (
        len(block) != 2
        or not all(isinstance(b, int) and not isinstance(b, bool) for b in block)
        or not all(1 <= b <= 64 for b in block)
    ):
        raise InputError(
            f"{label}: block must be two integers [rows, cols] from 1 to 64, got {block!r}"
        )
    for layer, value in params["layer_sparsity"].items():
        if not isinstance(value, float | int) or isinstance(value, bool) or not 0 < value <= 0.99:
            raise InputError(
                f"{label}: layer_sparsity for layer '{layer}' = {value!r} is out of range",
                hint="use a fraction of zeros > 0 and <= 0.99",
            )


def _plan(sp: StagePlan, model) -> None:
    spec = sp.spec
    pattern, block = spec["pattern"], list(spec["block"])

    def capable(layer) -> str | None:
        kind = type(layer).__name__
        if kind == "DepthwiseConv2D":
            return "is accepted by TF-MOT but never pruned"
        if kind not in PRUNABLE:
            return f"cannot be pruned (prunable: {', '.join(PRUNABLE)})"
        kernel = layer.kernel.shape
        if pattern == "2:4":
            if len(kernel) not in (2, 4):
                return "cannot take 2:4 sparsity (only rank-2/4 kernels: Dense, Conv2D)"
            inputs = int(kernel[-2]) if len(kernel) == 4 else int(kernel[0])
            if inputs % 4:
                return f"has {inputs} input channel(s); 2:4 needs a multiple of 4"
        if block != [1, 1] and kind != "Dense":
            return f"cannot take block sparsity {block} (Dense kernels only)"
        if block != [1, 1] and (kernel[0] % block[0] or kernel[1] % block[1]):
            # TF-MOT pads partial blocks and then misses the target (48% for 50% measured)
            return f"has a {kernel[0]}x{kernel[1]} kernel, not a multiple of block {block}"
        return None

    chosen = select_layers(sp, model, capable, PRUNABLE)
    names = {layer.name for layer in chosen}
    for name in spec["layer_sparsity"]:
        if name not in names:
            raise fail(
                spec,
                f"layer_sparsity names layer '{name}', which this stage does not prune",
                "pruned layers: " + ", ".join(sorted(names)),
            )
    for layer in chosen:
        target = 0.5 if pattern == "2:4" else spec["layer_sparsity"].get(layer.name)
        sp.layers[layer.name] = {
            "sparsity": float(target if target is not None else spec["sparsity"]),
            "pattern": pattern,
        }


def steps_per_epoch(samples: int, batch_size: int) -> int:
    return max(1, math.ceil(samples / batch_size))


def pruning_end_step(total_steps: int) -> int:
    """Reach the final sparsity after two thirds of the steps; the rest fine-tunes with the
    final mask (ending the schedule on the very last step leaves no time to recover)."""
    return max(1, (2 * total_steps) // 3) if total_steps > 2 else total_steps


def pruning_frequency(span: int) -> int:
    """The largest divisor of ``span`` up to span / 4: the mask is updated about 4 times and
    the final update lands exactly on the end step (TF-MOT's default frequency=100 would
    skip it on short runs and leave the model dense, without a warning)."""
    top = max(1, span // 4)
    return max(d for d in range(1, top + 1) if span % d == 0)


def _prune(sp, plan, model, train, validation, on_epoch) -> StageResult:
    from edgec._tf import keras, tfmot

    sparsity = tfmot.sparsity.keras
    spec = sp.spec
    end_step = pruning_end_step(spec["epochs"] * steps_per_epoch(len(train), spec["batch_size"]))
    frequency = pruning_frequency(end_step)

    def wrap(layer):
        cfg = sp.layers.get(layer.name)
        if cfg is None:
            return layer
        if cfg["pattern"] == "2:4":
            # the mask is fixed at the first step; the schedule is ignored for m-by-n
            return sparsity.prune_low_magnitude(
                layer,
                pruning_schedule=sparsity.ConstantSparsity(0.5, begin_step=0, frequency=1),
                sparsity_m_by_n=(2, 4),
            )
        if spec["schedule"] == "polynomial":
            schedule = sparsity.PolynomialDecay(
                initial_sparsity=spec["initial_sparsity"],
                final_sparsity=cfg["sparsity"],
                begin_step=0,
                end_step=end_step,
                frequency=frequency,
            )
        else:
            schedule = sparsity.ConstantSparsity(
                cfg["sparsity"], begin_step=0, end_step=end_step, frequency=frequency
            )
        return sparsity.prune_low_magnitude(
            layer, pruning_schedule=schedule, block_size=tuple(spec["block"])
        )

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    fit(
        wrapped, sp, plan, train, validation, on_epoch,
        callbacks=[sparsity.UpdatePruningStep()], last_from_result=True,
    )  # fmt: skip
    stripped = sparsity.strip_pruning(wrapped)
    metrics = PruneMetrics(
        schedule=(
            "2:4 (fixed mask)"
            if spec["pattern"] == "2:4"
            else f"{spec['schedule']}, end step {end_step}, frequency {frequency}"
        ),
        parameters=int(stripped.count_params()),
        layers={
            name: PrunedLayer(cfg["sparsity"], kernel_figures(stripped, name))
            for name, cfg in sp.layers.items()
        },
    )
    return StageResult(stripped, metrics)
