"""A recipe's stages checked together against the model and data, then run one by one.

``validate`` looks at the recipe, the model and the training data and raises the first
problem (naming the stage, the parameter or the layer, and the fix) before any training;
each stage's own checks are its ``Stage.plan``. ``run_stage`` then runs one stage and
returns the new model plus its typed metrics. The stages themselves are registered in
their modules (``stages/prune.py``, ...); nothing here names a stage type.

TF-MOT traps handled in the stage modules (see shared/reference/facts.md, section 3):
- PolynomialDecay's default frequency=100 silently never applies the mask on short runs
  (``prune.py``).
- Every wrapper is stripped (strip_pruning, strip_clustering, strip_clustering_cqat) so
  conversion sees plain kernels.
- Plain QAT destroys zeros and clusters: after prune/cluster the collaborative schemes
  (PQAT, CQAT, PCQAT) are chosen automatically (``qat.py``).
- Per-channel clustering of a Conv2D with no more weights per channel than clusters is
  silently skipped by TF-MOT: such a layer is clustered per tensor instead (``cluster.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgec.datasets.loading import Dataset, binary_labels
from edgec.errors import InputError
from edgec.stages.base import EpochCallback, Metrics, get_stage
from edgec.stages.metrics import KernelFigures, StageMetrics, TrainingFigures
from edgec.stages.recipe import Recipe, StageSpec
from edgec.stages.training import EpochLines, evaluate_model, labels_of, outputs_probabilities
from edgec.targets.weights import Expectations

SEED = 0


@dataclass
class StagePlan:
    spec: StageSpec
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # chosen layer -> settings
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why not


@dataclass
class CompressionPlan:
    recipe: Recipe
    stages: list[StagePlan]
    task: str  # "classes" | "binary" (one output, labels 0 and 1) | "targets"
    output_shape: tuple[int, ...] = ()
    student: Any = None  # distill: the (untrained) student model
    student_origin: str = ""  # distill: the student's file, or how it was derived
    # Where training targets come from: "labels" (the data's y), "inputs" (an autoencoder
    # given x only reconstructs x) or "teacher" (x only, distill: the teacher's outputs).
    targets_from: str = "labels"
    teacher: Any = None  # targets_from == "teacher": the input model
    planned: Any = None  # the model after every stage's plan, untrained (edgec fit screens it)
    trust_model: bool = False  # --trust-model: a model file a stage loads may carry code
    # --per-channel (auto | always | never): how the build will quantize the weights that
    # no qat stage fixes; the cluster stage makes its clusters match (stages.cluster)
    per_channel: str = "auto"
    # labelled(): data -> its teacher-labelled copy, made once for all the stages
    _taught: dict[int, tuple[Dataset, Dataset]] = field(default_factory=dict, repr=False)

    def labelled(self, data: Dataset) -> Dataset:
        """``data`` with the targets the training stages fit (the teacher's outputs are
        predicted once per data set, not again for every stage)."""
        if self.targets_from == "inputs":
            return dataclasses.replace(data, y=data.x)
        if self.targets_from == "teacher":
            if id(data) not in self._taught:
                from edgec.pipeline.outputs import model_outputs

                out = np.asarray(model_outputs(self.teacher, data.x))
                y = out.argmax(1) if self.task == "classes" else out
                self._taught[id(data)] = (data, dataclasses.replace(data, y=y))
            return self._taught[id(data)][1]
        return data

    @property
    def targets_note(self) -> str:
        return {
            "labels": "the data's labels (y)",
            "inputs": "the inputs themselves (no y; the model reconstructs its input)",
            "teacher": "the teacher's outputs (no y)",
        }[self.targets_from]

    def expectations(self, before: StagePlan | None = None) -> Expectations:
        """What the int8 artifact must show, as each stage promises it (its proof); with
        ``before``, only what the stages ahead of that one promised."""
        stages = self.stages if before is None else self.stages[: self.stages.index(before)]
        sparsity: dict[str, float] = {}
        pattern: list[str] = []
        clusters: dict[str, int] = {}
        channels: dict[str, int] = {}
        for sp in stages:
            own = get_stage(sp.spec.type).expectations(sp)
            sparsity.update(own.sparsity)
            pattern.extend(own.pattern_2_4)
            clusters.update(own.clusters)
            channels.update(own.channels)
        return Expectations(
            sparsity=sparsity, pattern_2_4=tuple(pattern), clusters=clusters, channels=channels
        )


# ---------------------------------------------------------------------------- validation


def validate(
    recipe: Recipe,
    model,
    train: Dataset | None,
    *,
    trust_model: bool = False,
    per_channel: str = "auto",
) -> CompressionPlan:
    """Check the whole recipe against the model and data; raise before any training.

    ``per_channel``: the build's ``--per-channel`` mode (what the int8 weights will be)."""
    from edgec._tf import keras

    check_model_kind(model, keras)
    task, targets_from = _check_training_data(recipe, model, train)
    output_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
    plan = CompressionPlan(
        recipe=recipe,
        stages=[],
        task=task,
        output_shape=output_shape,
        targets_from=targets_from,
        teacher=model if targets_from == "teacher" else None,
        trust_model=trust_model,
        per_channel=per_channel,
    )
    target = model  # the model later stages apply to: the student after distill
    for spec in recipe.stages:
        sp = StagePlan(spec)
        plan.stages.append(sp)  # before planning: a stage reads the earlier ones' promises
        target = get_stage(spec.type).plan(sp, plan, target, train)
    plan.planned = target
    return plan


def fail(spec: StageSpec, text: str, hint: str) -> InputError:
    return InputError(f"recipe {spec.label}: {text}", hint=hint)


def check_model_kind(model, keras, what: str = "the model") -> None:
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise InputError(
            f"{what} is a subclassed Keras model; compression stages need a Sequential or "
            "functional model",
            hint="rebuild it with keras.Sequential or the functional API",
        )
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise InputError(
                f"{what} has a nested model '{layer.name}' as a layer; compression stages "
                "work on the layers of one model",
                hint="flatten it: build one functional model from the inner model's layers",
            )


def _check_training_data(recipe: Recipe, model, train: Dataset | None) -> tuple[str, str]:
    """(task, where the targets come from): labels, the inputs, or the teacher."""
    first = recipe.stages[0]
    if train is None:
        raise fail(first, "training needs data", "give --data an .npz with arrays x and y")
    out_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
    if train.labels == "none":
        if get_stage(first.type).learns_from_teacher:  # the teacher's outputs are targets
            classifier = len(out_shape) == 1 and out_shape[0] > 1 and outputs_probabilities(model)
            return ("classes" if classifier else "targets"), "teacher"
        if out_shape == tuple(train.x.shape[1:]):
            return "targets", "inputs"
        raise fail(
            first,
            "training needs labelled data, and the data has no labels",
            "give --data an .npz with arrays x and y (class numbers or targets), or an "
            "image folder of class folders (x alone is enough for an autoencoder, whose "
            "output shape equals its input shape, and for distill)",
        )
    out_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
    if train.labels == "classes":
        classes = int(labels_of(train).max()) + 1
        if out_shape == (1,) and binary_labels(labels_of(train)):
            return "binary", "labels"  # a sigmoid's probability, or a logit
        if len(out_shape) != 1 or out_shape[0] < classes or out_shape[0] < 2:
            raise fail(
                first,
                f"the labels have {classes} classes but the model output is {list(out_shape)}",
                "y must hold class numbers 0..N-1 for a model with N outputs",
            )
        return "classes", "labels"
    return "targets", "labels"  # of the output's size (datasets.loading.labels_for)


def select_layers(
    sp: StagePlan, model, capable: Callable[[Any], str | None], kinds: tuple[str, ...]
):
    """Chosen layers: named ones must be capable (else an error); by default all capable ones.

    Layers left out by default are listed in ``sp.skipped`` and in the report.
    """
    spec = sp.spec
    wanted = list(spec["layers"])
    layers = {layer.name: layer for layer in model.layers}
    chosen = []
    if wanted:
        for entry in wanted:
            matches = [
                lay for lay in model.layers if lay.name == entry or type(lay).__name__ == entry
            ]
            if not matches:
                raise fail(
                    spec,
                    f"'layers' names '{entry}', which is neither a layer name nor a layer type "
                    "in the model",
                    "layers: " + ", ".join(layers),
                )
            for layer in matches:
                why = capable(layer)
                if why is not None:
                    raise fail(
                        spec,
                        f"layer '{layer.name}' ({type(layer).__name__}) {why}",
                        "remove it from 'layers'",
                    )
                chosen.append(layer)
    else:
        for layer in model.layers:
            if type(layer).__name__ not in kinds and not hasattr(layer, "kernel"):
                continue
            why = capable(layer)
            if why is None:
                chosen.append(layer)
            else:
                sp.skipped[layer.name] = why
    if not chosen:
        raise fail(
            spec,
            f"no layer of the model can take this stage (it handles {', '.join(kinds)})",
            "; ".join(f"{k}: {v}" for k, v in sp.skipped.items()) or "remove the stage",
        )
    return chosen


# ---------------------------------------------------------------------------- running


@dataclass
class StageResult:
    model: Any
    metrics: Metrics  # the stage's own; run_stage returns them as StageMetrics
    input_scale: float = 1.0  # the model now takes x * input_scale (QAT folded a Rescaling)
    # run_stage: evaluate_model's figures of ``model`` on the validation data (scaled by
    # input_scale); the next stage's "before" when the data stays as it was
    after: dict[str, float] | None = None

    @property
    def parameters(self) -> int | None:
        """The weights the model has after the stage, if the stage counted them."""
        return self.metrics.to_dict().get("parameters")


def scaled(data: Dataset, scale: float) -> Dataset:
    """``data`` as a model takes it whose input Rescaling moved into the input quantization:
    x * scale, and the raw-value scale firmware applies grows by the same factor."""
    if scale == 1.0:
        return data
    return dataclasses.replace(
        data, x=(data.x * scale).astype(np.float32), raw_scale=data.raw_scale * scale
    )


def run_stage(
    sp: StagePlan,
    plan: CompressionPlan,
    model,
    train: Dataset,
    validation: Dataset,
    *,
    on_epoch: EpochCallback | None = None,
    before: dict[str, float] | None = None,
) -> StageResult:
    """Run one planned stage on ``model`` and measure it.

    For distill, ``model`` is the teacher and the result is the trained student
    (``plan.student``); "before" is then the teacher's figure, "after" the student's.
    ``before``: ``model``'s figures on ``validation`` when measured already (the previous
    stage's ``StageResult.after``): each evaluation predicts every validation sample
    through the model's traced call (made on its first outputs).
    """
    from edgec._tf import keras

    keras.utils.set_random_seed(SEED)
    stage = get_stage(sp.spec.type)
    train, validation = plan.labelled(train), plan.labelled(validation)
    if before is None:
        before = evaluate_model(model, validation, plan.task)
    lines, after = EpochLines(on_epoch), None
    try:
        result = stage.run(sp, plan, model, train, validation, lines)
        after = evaluate_model(result.model, scaled(validation, result.input_scale), plan.task)
    finally:
        lines.finish(after)  # a last epoch line held for these figures
    result.after = after
    metric = "mse" if plan.task == "targets" else "accuracy"
    figures = TrainingFigures(
        metric=metric,
        before=before[metric],
        after=after[metric],
        loss_before=before["loss"],
        loss_after=after["loss"],
        validation_samples=len(validation),
        training_samples=len(train),
        epochs=sp.spec.params.get("epochs"),
        learning_rate=sp.spec.params.get("learning_rate"),
        batch_size=sp.spec.params.get("batch_size"),
        targets=plan.targets_note if plan.targets_from != "labels" else None,
    )
    result.metrics = StageMetrics(
        figures, result.metrics, model_names=stage.model_names, skipped_layers=dict(sp.skipped)
    )
    return result


def kernel_figures(model, name: str) -> KernelFigures:
    """Float sparsity and distinct values of one layer's kernel (after stripping)."""
    layer = model.get_layer(name)
    w = np.asarray(layer.kernel.numpy())
    return KernelFigures(
        sparsity=round(float(np.mean(w == 0)), 4),
        unique_values=len(np.unique(w)),
        unique_values_per_channel=(
            max(len(np.unique(w[..., c])) for c in range(w.shape[-1])) if w.ndim == 4 else None
        ),
    )
