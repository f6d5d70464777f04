"""The low_rank stage: factorise Dense and Conv2D kernels by SVD
(``stages/structure/low_rank.py``), then fine-tune. A layer is factorised only where its
parameters and MACs go down; the others are listed with the figures that show why not.
"""

from __future__ import annotations

from typing import Any

from edgec.errors import InputError
from edgec.stages.base import Param, ShortForm, Stage, register, training_params
from edgec.stages.metrics import LowRankMetrics, shrink_parts
from edgec.stages.plan import CompressionPlan, StagePlan, StageResult
from edgec.stages.recipe import StageSpec
from edgec.stages.structure.low_rank import (
    CONV_METHODS,
    MIN_SAVING,
    SUFFIX,
    LowRankReport,
    factorise,
)
from edgec.stages.training import fit, shrink
from edgec.targets.weights import Expectations

_SAMPLES = 256  # validation samples the output error of each factorised layer is measured on


def _short_form(value: str) -> dict[str, Any]:
    try:
        return {"energy": float(value)}
    except ValueError:
        raise InputError(
            f"--low-rank '{value}' is not an energy fraction",
            hint="give the share of the squared singular values to keep, such as 0.9",
        ) from None


@register
class LowRank(Stage):
    type = "low_rank"
    rank = 17
    order_why = "low-rank factorisation must come before prune, cluster and qat (it adds layers)"
    verb = "Factorising (low rank)"
    params = {
        **training_params(2, 1e-3),
        "energy": Param(float, 0.9, 0, 1, open_low=True, help="squared singular values kept"),
        "rank_fraction": Param(
            float, 0.0, 0, 1, open_low=True, help="rank as a fraction of the full rank"
        ),
        "layers": Param(list, [], help="layer names; empty: every Dense and Conv2D"),
        "conv": Param(str, "channel", choices=CONV_METHODS),
        "min_saving": Param(
            float, MIN_SAVING, 0, 0.99, help="share of a layer's parameters and MACs to remove"
        ),
        "required": Param(
            bool, True, help="false: where no layer gets smaller, pass the model on unchanged"
        ),
    }
    short_form = ShortForm(
        help="Short form: low_rank, keep ENERGY of each kernel's singular values (e.g. 0.9).",
        metavar="ENERGY",
        to_params=_short_form,
    )

    def check_params(self, params: dict[str, Any], raw: dict[str, Any], label: str) -> None:
        if "energy" in raw and "rank_fraction" in raw:
            raise InputError(
                f"{label}: give either energy or rank_fraction, not both",
                hint="energy keeps a share of the singular values; rank_fraction a share of rank",
            )

    def plan(self, sp: StagePlan, plan: CompressionPlan, model: Any, train: Any) -> Any:
        factorised, report = _factorise(sp.spec, model)
        _record(sp, report)
        if not report.factorised and sp.spec["required"]:
            raise InputError(
                f"recipe {sp.spec.label}: no layer gets smaller by low-rank factorisation",
                hint=("; ".join(f"{k}: {v}" for k, v in sp.skipped.items()) or "remove the stage")
                + " (or set required = false to pass such a model on unchanged)",
            )
        return factorised if report.factorised else model  # later stages plan on this

    def run(self, sp, plan, model, train, validation, on_epoch) -> StageResult:
        factorised, report = _factorise(sp.spec, model, validation.x[:_SAMPLES])
        _record(sp, report)  # the trained weights decide the ranks, not the planned ones
        if report.factorised:
            fit(factorised, sp, plan, train, validation, on_epoch, last_from_result=True)
        else:  # required = false: nothing pays, so the model goes on as it came
            factorised = model
        metrics = LowRankMetrics(shrink(model, factorised), sp.spec["conv"], _layers(report))
        return StageResult(factorised, metrics)

    def expectations(self, sp: StagePlan) -> Expectations:
        """Proof in the int8 model: each factorised layer's first factor has its rank."""
        return Expectations(
            channels={name + SUFFIX: cfg["rank"] for name, cfg in sp.layers.items()}
        )

    def summary_parts(self, m: dict[str, Any]) -> list[str]:
        ranks = [f"{name} rank {row['rank']}" for name, row in m.get("factorised", {}).items()]
        if "factorised" in m and not ranks:
            return ["no layer gets smaller: the model is passed on unchanged"]
        return shrink_parts(m) + ranks


def _factorise(spec: StageSpec, model, x=None) -> tuple[Any, LowRankReport]:
    by_fraction = spec["rank_fraction"] > 0
    return factorise(
        model,
        energy=None if by_fraction else spec["energy"],
        rank_fraction=spec["rank_fraction"] if by_fraction else None,
        layers=spec["layers"] or None,
        conv=spec["conv"],
        x=x,
        min_saving=spec["min_saving"],
    )


def _record(sp: StagePlan, report: LowRankReport) -> None:
    """The factorised layers into ``sp.layers``, the others (and why) into ``sp.skipped``."""
    sp.layers = {row.name: {"rank": row.rank} for row in report.factorised}
    sp.skipped = {row.name: row.note for row in report.layers if not row.factorised}


def _layers(report: LowRankReport) -> dict[str, dict[str, Any]]:
    return {
        row.name: {
            "method": row.method,
            "rank": row.rank,
            "parameters": [row.params, row.new_params],
            "macs": [row.macs, row.new_macs],
            "energy_kept": round(row.energy_kept, 4),
            "output_error": None if row.output_error is None else round(row.output_error, 4),
        }
        for row in report.factorised
    }
