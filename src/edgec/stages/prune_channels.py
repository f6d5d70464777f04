"""The prune_channels stage: remove whole filters, channels and units (structured pruning),
in ``steps`` increments with fine-tuning after each, leaving a smaller dense model.

Unlike ``prune`` (zeros in kernels, which TFLM cannot skip), the int8 model really has
fewer weights and MACs. The transform is ``stages/structure/channel_prune.py``; the whole plan is
checked against the model before any training.
"""

from __future__ import annotations

from typing import Any

from edgec.errors import InputError
from edgec.stages.base import Param, ShortForm, Stage, register, training_params
from edgec.stages.metrics import ChannelPruneMetrics, shrink_parts
from edgec.stages.plan import CompressionPlan, StagePlan, StageResult
from edgec.stages.recipe import StageSpec
from edgec.stages.structure.channel_prune import (
    IMPORTANCE,
    ChannelPlan,
    apply_channel_pruning,
    plan_channel_pruning,
    prune_channels_iteratively,
)
from edgec.stages.training import fit, fit_to_teacher, shrink
from edgec.targets.weights import Expectations


def _short_form(value: str) -> dict[str, Any]:
    try:
        return {"fraction": float(value)}
    except ValueError:
        raise InputError(
            f"--prune-channels '{value}' is not a fraction",
            hint="give the fraction of channels to remove, such as 0.5",
        ) from None


@register
class PruneChannels(Stage):
    type = "prune_channels"
    rank = 15
    order_why = "channel pruning must come before prune, cluster and qat (it rebuilds layers)"
    verb = "Pruning channels"
    params = {
        **training_params(2, 1e-3),
        "fraction": Param(float, 0.5, 0, 0.9, open_low=True, help="channels removed per group"),
        "per_layer": Param(dict, {}, help="fraction by layer name (for that layer's group)"),
        "multiple": Param(int, 4, 1, 64, help="kept channel counts round to a multiple of it"),
        # A narrow layer is where pruning costs most and saves least: the FC autoencoder's
        # 8-unit bottleneck halved to 4 raised its RMSE 13% (docs/benchmarks.md, issue 23).
        "min_channels": Param(
            int, 8, 1, 4096, help="no group pruned below this many channels (narrower: left whole)"
        ),
        "importance": Param(str, "l1", choices=IMPORTANCE),
        "steps": Param(int, 2, 1, 10, help="pruning increments, fine-tuned after each"),
        "teacher": Param(
            bool,
            True,
            help="fine-tune against the input model's outputs (distillation), not the labels alone",
        ),
    }
    short_form = ShortForm(
        help="Short form: prune_channels, remove FRACTION of the channels (e.g. 0.5).",
        metavar="FRACTION",
        to_params=_short_form,
    )

    def check_params(self, params: dict[str, Any], raw: dict[str, Any], label: str) -> None:
        for layer, value in params["per_layer"].items():
            if not isinstance(value, float | int) or isinstance(value, bool) or not 0 <= value < 1:
                raise InputError(
                    f"{label}: per_layer fraction for layer '{layer}' = {value!r} is out of range",
                    hint="use a fraction of channels >= 0 and < 1",
                )

    def plan(self, sp: StagePlan, plan: CompressionPlan, model: Any, train: Any) -> Any:
        full = _channel_plan(sp.spec, model, sp.spec["fraction"])
        for group in full.groups:
            for name in group.layers:
                sp.layers[name] = {"channels": group.channels, "kept": len(group.kept)}
        for skipped in full.skipped:
            sp.skipped[", ".join(skipped.layers)] = skipped.reason
        return apply_channel_pruning(model, full)  # later stages plan on the smaller model

    def run(self, sp, plan, model, train, validation, on_epoch) -> StageResult:
        return _prune_channels(sp, plan, model, train, validation, on_epoch)

    def expectations(self, sp: StagePlan) -> Expectations:
        return Expectations(channels={name: cfg["kept"] for name, cfg in sp.layers.items()})

    def describe(self, spec: StageSpec) -> str:
        steps, epochs = spec["steps"], spec["epochs"]
        each = f"{epochs} epoch{'s' * (epochs != 1)} each"
        return f"{self.verb} ({steps} step{'s' * (steps != 1)}, {each})"

    def summary_parts(self, m: dict[str, Any]) -> list[str]:
        return shrink_parts(m) + [
            f"{name} {c['before']} → {c['after']}" for name, c in m.get("channels", {}).items()
        ]


def _channel_plan(spec: StageSpec, model, fraction: float) -> ChannelPlan:
    return plan_channel_pruning(
        model,
        fraction,
        per_layer=spec["per_layer"],
        multiple=spec["multiple"],
        importance=spec["importance"],
        min_channels=spec["min_channels"],
    )


def _prune_channels(sp, plan, model, train, validation, on_epoch) -> StageResult:
    spec = sp.spec

    def fine_tune(pruned):
        if spec["teacher"]:
            # The unpruned model's soft outputs carry more than a small fine-tuning set's
            # labels: on DS-CNN (benchmarks/mlperf_tiny.py) labels alone overfit 1,080
            # samples (train 98.9%, validation 90.8%, 5 points below the input model).
            fit_to_teacher(sp, plan, model, pruned, train, validation, on_epoch)
        else:
            fit(pruned, sp, plan, train, validation, on_epoch)
        return pruned

    pruned, plans = prune_channels_iteratively(
        model,
        spec["fraction"],
        spec["steps"],
        fine_tune,
        per_layer=spec["per_layer"],
        multiple=spec["multiple"],
        importance=spec["importance"],
        min_channels=spec["min_channels"],
    )
    channels = {}
    for name, cfg in sp.layers.items():
        kept = plans[-1].kept(name)
        cfg["kept"] = cfg["channels"] if kept is None else len(kept)  # steps round each time
        channels[name] = (cfg["channels"], cfg["kept"])
    metrics = ChannelPruneMetrics(
        shrink(model, pruned), spec["steps"], spec["importance"], spec["multiple"], channels
    )
    return StageResult(pruned, metrics)
