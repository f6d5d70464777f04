"""The compression stages (distill, prune, cluster, QAT): checked together, then run in order.

``validate`` looks at the recipe, the model and the training data and raises the first
problem (naming the stage, the parameter or the layer, and the fix) before any training.
``run_stage`` then runs one stage and returns the new model plus its metrics.

TF-MOT traps handled here (see shared/reference/facts.md, section 3):
- PolynomialDecay's default frequency=100 silently never applies the mask on short runs:
  the end step is derived from epochs and data size, and the frequency divides
  ``end_step - begin_step``.
- Every wrapper is stripped (strip_pruning, strip_clustering, strip_clustering_cqat) so
  conversion sees plain kernels.
- Plain QAT destroys zeros and clusters: after prune/cluster the collaborative schemes
  (PQAT, CQAT, PCQAT) are chosen automatically.
- Per-channel clustering of a Conv2D with no more weights per channel than clusters is
  silently skipped by TF-MOT ("No clustering was implemented for this layer"): such a
  layer is clustered per tensor instead, and the report says so.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.datasets.loading import Dataset
from edgec.errors import InputError
from edgec.pipeline.recipe import Recipe, StageSpec
from edgec.targets.weights import Expectations

SEED = 0
PRUNABLE = ("Conv1D", "Conv2D", "Dense")
CLUSTERABLE = ("Conv2D", "Dense")
_QAT_UNSUPPORTED = {
    "LayerNormalization": "use BatchNormalization after a Conv/Dense, or skip QAT",
    "Rescaling": "QAT takes Rescaling only right after the input; scale the data instead",
    "Normalization": "QAT takes Normalization only right after the input; normalize the data "
    "before the model instead",
    "TFOpLambda": "replace the TensorFlow op with a Keras layer, or skip QAT",
    "Lambda": "replace the Lambda with a Keras layer, or skip QAT",
}


@dataclass
class StagePlan:
    spec: StageSpec
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # chosen layer -> settings
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why not


@dataclass
class CompressionPlan:
    recipe: Recipe
    stages: list[StagePlan]
    task: str  # "classes" | "targets"
    output_shape: tuple[int, ...] = ()
    student: Any = None  # distill: the (untrained) student model
    # Where training targets come from: "labels" (the data's y), "inputs" (an autoencoder
    # given x only reconstructs x) or "teacher" (x only, distill: the teacher's outputs).
    targets_from: str = "labels"
    teacher: Any = None  # targets_from == "teacher": the input model

    def labelled(self, data: Dataset) -> Dataset:
        """``data`` with the targets the training stages fit."""
        if self.targets_from == "inputs":
            return dataclasses.replace(data, y=data.x)
        if self.targets_from == "teacher":
            out = np.asarray(self.teacher.predict(data.x, batch_size=256, verbose=0))
            return dataclasses.replace(data, y=out.argmax(1) if self.task == "classes" else out)
        return data

    @property
    def targets_note(self) -> str:
        return {
            "labels": "the data's labels (y)",
            "inputs": "the inputs themselves (no y; the model reconstructs its input)",
            "teacher": "the teacher's outputs (no y)",
        }[self.targets_from]

    def expectations(self) -> Expectations:
        """What the int8 artifact must show: only the layers the last stages left intact."""
        sparsity: dict[str, float] = {}
        pattern: list[str] = []
        clusters: dict[str, int] = {}
        for sp in self.stages:
            if sp.spec.type == "prune":
                for name, cfg in sp.layers.items():
                    sparsity[name] = cfg["sparsity"]
                    if cfg["pattern"] == "2:4":
                        pattern.append(name)
            elif sp.spec.type == "cluster":
                for name in sp.layers:
                    clusters[name] = sp.spec["clusters"]
        return Expectations(sparsity=sparsity, pattern_2_4=tuple(pattern), clusters=clusters)


# ---------------------------------------------------------------------------- validation


def validate(recipe: Recipe, model, train: Dataset | None) -> CompressionPlan:
    """Check the whole recipe against the model and data; raise before any training."""
    from edgec._tf import keras

    _check_model_kind(model, keras)
    task, targets_from = _check_training_data(recipe, model, train)
    output_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
    plan = CompressionPlan(
        recipe=recipe,
        stages=[],
        task=task,
        output_shape=output_shape,
        targets_from=targets_from,
        teacher=model if targets_from == "teacher" else None,
    )
    target = model  # the model later stages apply to: the student after distill
    pruned: dict[str, float] = {}  # layer -> sparsity the prune stage leaves
    for spec in recipe.stages:
        sp = StagePlan(spec)
        if spec.type == "distill":
            plan.student = target = _plan_student(spec, model, keras)
            _check_model_kind(target, keras, what="the student")
        elif spec.type == "prune":
            _plan_prune(sp, target)
            pruned = {name: cfg["sparsity"] for name, cfg in sp.layers.items()}
        elif spec.type == "cluster":
            _plan_cluster(sp, target, pruned=pruned)
        elif spec.type == "qat":
            _check_qat(spec, target, train.x[:8] if train is not None else None)
        plan.stages.append(sp)
    return plan


def _y(data: Dataset) -> np.ndarray:
    """Labels of data that ``validate`` already required to be labelled."""
    if data.y is None:
        raise InputError(f"data {data.source} has no labels (y); training stages need them")
    return data.y


def _fail(spec: StageSpec, text: str, hint: str) -> InputError:
    return InputError(f"recipe {spec.label}: {text}", hint=hint)


def _check_model_kind(model, keras, what: str = "the model") -> None:
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
        raise _fail(first, "training needs data", "give --data an .npz with arrays x and y")
    out_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
    if train.labels == "none":
        if first.type == "distill":  # the teacher's outputs are the targets
            classifier = len(out_shape) == 1 and out_shape[0] > 1 and _outputs_probabilities(model)
            return ("classes" if classifier else "targets"), "teacher"
        if out_shape == tuple(train.x.shape[1:]):
            return "targets", "inputs"
        raise _fail(
            first,
            "training needs labelled data, and the data has no labels",
            "give --data an .npz with arrays x and y (class numbers or targets), or an "
            "image folder of class folders (x alone is enough for an autoencoder, whose "
            "output shape equals its input shape, and for distill)",
        )
    out_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
    if train.labels == "classes":
        classes = int(_y(train).max()) + 1
        if len(out_shape) != 1 or out_shape[0] < classes or out_shape[0] < 2:
            raise _fail(
                first,
                f"the labels have {classes} classes but the model output is {list(out_shape)}",
                "y must hold class numbers 0..N-1 for a model with N outputs",
            )
        return "classes", "labels"
    if int(np.prod(_y(train).shape[1:])) != int(np.prod(out_shape)):
        raise _fail(
            first,
            f"the targets y have shape {list(_y(train).shape[1:])} per sample but the model "
            f"output is {list(out_shape)}",
            "give y in the model's output shape, or integer class numbers",
        )
    return "targets", "labels"


def _select(sp: StagePlan, model, capable: Callable[[Any], str | None], kinds: tuple[str, ...]):
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
                raise _fail(
                    spec,
                    f"'layers' names '{entry}', which is neither a layer name nor a layer type "
                    "in the model",
                    "layers: " + ", ".join(layers),
                )
            for layer in matches:
                why = capable(layer)
                if why is not None:
                    raise _fail(
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
        raise _fail(
            spec,
            f"no layer of the model can take this stage (it handles {', '.join(kinds)})",
            "; ".join(f"{k}: {v}" for k, v in sp.skipped.items()) or "remove the stage",
        )
    return chosen


def _plan_prune(sp: StagePlan, model) -> None:
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

    chosen = _select(sp, model, capable, PRUNABLE)
    names = {layer.name for layer in chosen}
    for name in spec["layer_sparsity"]:
        if name not in names:
            raise _fail(
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


# After pruning, sparsity-preserving clustering runs k-means++ separately on the negative
# and the positive weights that are left; TF-MOT fails (InvalidArgumentError "Expected
# num_to_sample <= points.rows()", seen on MobileNetV1's 1x1 convs per channel) when one
# sign has fewer weights than its share of the centroids. Ask for this many surviving
# weights per cluster, per channel or per tensor, before choosing that granularity.
_SURVIVORS_PER_CLUSTER = 2


def _plan_cluster(sp: StagePlan, model, *, pruned: dict[str, float]) -> None:
    spec = sp.spec
    n = spec["clusters"]
    preserve_sparsity = bool(pruned)

    def mode(layer) -> tuple[str | None, bool]:
        kind = type(layer).__name__
        if kind not in CLUSTERABLE:
            return f"cannot be clustered (clusterable: {', '.join(CLUSTERABLE)})", False
        size = int(np.prod(layer.kernel.shape))
        per_channel_size = size // int(layer.kernel.shape[-1])
        kept = 1.0 - pruned.get(layer.name, 0.0)
        need = _SURVIVORS_PER_CLUSTER * n if layer.name in pruned else n + 1
        if spec["per_channel"] and kind == "Conv2D" and per_channel_size * kept >= need:
            return None, True
        if size <= n:
            return f"has only {size} weights, not more than {n} clusters", False
        if size * kept < need:
            return (
                f"keeps only {int(size * kept)} weights after pruning: too few for {n} "
                "sparsity-preserving clusters",
                False,
            )
        return None, False

    chosen = _select(sp, model, lambda layer: mode(layer)[0], CLUSTERABLE)
    for layer in chosen:
        per_channel = mode(layer)[1]
        note = ""
        if spec["per_channel"] and type(layer).__name__ == "Conv2D" and not per_channel:
            note = (
                "per tensor: too few weights per channel (after pruning) for per-channel clustering"
            )
        sp.layers[layer.name] = {
            "per_channel": per_channel,
            "preserve_sparsity": preserve_sparsity,
            **({"note": note} if note else {}),
        }


def _check_qat(spec: StageSpec, model, sample: np.ndarray | None) -> None:
    """QAT takes the model as ``prepare_for_qat`` rewrites it: every layer must be supported."""
    from edgec.pipeline.qat_prepare import prepare_for_qat

    if sample is None:  # _check_training_data already refused this
        return
    try:
        model = prepare_for_qat(model, sample).model
    except InputError as exc:
        raise _fail(spec, exc.message, exc.hint or "skip QAT") from None
    registry = _qat_registry()
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer" or kind in RECURRENT:
            continue
        if kind in _QAT_UNSUPPORTED:
            raise _fail(
                spec,
                f"layer '{layer.name}' ({kind}) cannot be quantization-aware trained",
                _QAT_UNSUPPORTED[kind],
            )
        if kind == "BatchNormalization":  # prepare_for_qat folded every foldable one
            raise _fail(
                spec,
                f"layer '{layer.name}' (BatchNormalization) does not directly follow a "
                "Dense, Conv1D, Conv2D or DepthwiseConv2D without activation (used only "
                "there); QAT cannot fold it",
                "move it right after a linear Conv/Dense, or remove it",
            )
        if not registry.supports(layer):
            raise _fail(
                spec,
                f"layer '{layer.name}' ({kind}) has no default 8-bit QAT configuration",
                "replace the layer with a supported one, or skip QAT",
            )


def _qat_registry():
    """What quantize_apply consults: the default 8-bit scheme's layer registry."""
    from edgec._tf import tfmot

    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme().get_quantize_registry()


def _plan_student(spec: StageSpec, teacher, keras):
    from edgec.pipeline.model_io import load_keras_model

    if spec["student"]:
        path = Path(spec["student"])
        if not path.exists():
            raise _fail(spec, f"student model {path} does not exist", "give an existing file")
        student = load_keras_model(path)
    else:
        student = derive_student(teacher, spec["width"])
    for what, t, s in (
        ("input", teacher.inputs[0], student.inputs[0]),
        ("output", teacher.outputs[0], student.outputs[0]),
    ):
        if tuple(t.shape[1:]) != tuple(s.shape[1:]):
            raise _fail(
                spec,
                f"the student's {what} shape {list(s.shape[1:])} differs from the teacher's "
                f"{list(t.shape[1:])}",
                "the student must take the same inputs and give the same outputs",
            )
    return student


def derive_student(teacher, width: float):
    """The teacher's architecture with ``width`` times the filters/units (fresh weights).

    The last layer with filters/units keeps its size: it defines the model's output.
    """
    from edgec._tf import keras

    keras.utils.set_random_seed(SEED)
    sized = [
        lay
        for lay in teacher.layers
        if "units" in lay.get_config() or "filters" in lay.get_config()
    ]
    keep = sized[-1].name if sized else None

    def clone(layer):
        config = layer.get_config()
        if layer.name != keep:
            for key in ("filters", "units"):
                if key in config:
                    config[key] = max(1, int(round(config[key] * width)))
        return layer.__class__.from_config(config)

    return keras.models.clone_model(teacher, clone_function=clone)


# ---------------------------------------------------------------------------- running


@dataclass
class StageResult:
    model: Any
    metrics: dict[str, Any]
    input_scale: float = 1.0  # the model now takes x * input_scale (QAT folded a Rescaling)


def scaled(data: Dataset, scale: float) -> Dataset:
    """``data`` as a model takes it whose input Rescaling moved into the input quantization:
    x * scale, and the raw-value scale firmware applies grows by the same factor."""
    if scale == 1.0:
        return data
    return dataclasses.replace(
        data, x=(data.x * scale).astype(np.float32), raw_scale=data.raw_scale * scale
    )


EpochCallback = Callable[[str], None]


def run_stage(
    sp: StagePlan,
    plan: CompressionPlan,
    model,
    train: Dataset,
    validation: Dataset,
    *,
    pruned: bool,
    clustered: bool,
    on_epoch: EpochCallback | None = None,
) -> StageResult:
    """Run one planned stage on ``model`` and measure it.

    For distill, ``model`` is the teacher and the result is the trained student
    (``plan.student``); "before" is then the teacher's figure, "after" the student's.
    """
    from edgec._tf import keras

    keras.utils.set_random_seed(SEED)
    kind = sp.spec.type
    train, validation = plan.labelled(train), plan.labelled(validation)
    before = evaluate_model(model, validation, plan.task)
    if kind == "distill":
        result = _distill(sp, plan, model, plan.student, train, validation, on_epoch)
    elif kind == "prune":
        result = _prune(sp, plan, model, train, validation, on_epoch)
    elif kind == "cluster":
        result = _cluster(sp, plan, model, train, validation, on_epoch)
    else:
        result = _qat(sp, plan, model, train, validation, on_epoch, pruned, clustered)
    after = evaluate_model(result.model, scaled(validation, result.input_scale), plan.task)
    metric = "accuracy" if plan.task == "classes" else "mse"
    result.metrics = {
        f"{metric}_before": before[metric],
        f"{metric}_after": after[metric],
        "loss_before": before["loss"],
        "loss_after": after["loss"],
        "validation_samples": len(validation),
        "training_samples": len(train),
        "epochs": sp.spec["epochs"],
        "learning_rate": sp.spec["learning_rate"],
        "batch_size": sp.spec["batch_size"],
        **({"targets": plan.targets_note} if plan.targets_from != "labels" else {}),
        **result.metrics,
    }
    if kind == "distill":  # both models' figures, by name
        result.metrics[f"teacher_{metric}"] = before[metric]
        result.metrics[f"student_{metric}"] = after[metric]
    if sp.skipped:
        result.metrics["skipped_layers"] = dict(sp.skipped)
    return result


def evaluate_model(model, data: Dataset, task: str) -> dict[str, float]:
    """Loss and accuracy (classes) or MSE (targets) on ``data``, in numpy."""
    out = np.asarray(model.predict(data.x, batch_size=256, verbose=0), dtype=np.float64)
    if task == "classes":
        y = _y(data).astype(np.int64)
        probs = out if _outputs_probabilities(model) else _softmax(out)
        loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))))
        acc = float(np.mean(out.argmax(1) == y) * 100)
        return {"loss": round(loss, 5), "accuracy": round(acc, 2)}
    mse = float(np.mean((out.reshape(len(out), -1) - _y(data).reshape(len(out), -1)) ** 2))
    return {"loss": round(mse, 6), "mse": round(mse, 6)}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _outputs_probabilities(model) -> bool:
    """True if the model ends in a softmax (its outputs are probabilities, not logits)."""
    last = model.layers[-1]
    inner = getattr(last, "layer", last)  # QAT/prune wrappers
    # QAT replaces a layer's activation with a QuantizeAwareActivation that holds the
    # original function: without looking through it, a QAT'd softmax classifier was
    # compiled with from_logits=True (softmax applied to probabilities).
    activation = getattr(inner, "activation", None)
    activation = getattr(activation, "activation", activation)
    name = getattr(activation, "__name__", activation)
    return type(inner).__name__ == "Softmax" or name == "softmax"


def _loss_and_metrics(model, task: str, keras):
    if task == "classes":
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=not _outputs_probabilities(model)
        )
        return loss, ["accuracy"]
    return keras.losses.MeanSquaredError(), []


def _fit(model, sp: StagePlan, plan, train, validation, on_epoch, callbacks=(), compile_=True):
    from edgec._tf import keras

    spec = sp.spec
    if compile_:
        loss, metrics = _loss_and_metrics(model, plan.task, keras)
        model.compile(
            optimizer=keras.optimizers.Adam(spec["learning_rate"]), loss=loss, metrics=metrics
        )
    epochs = spec["epochs"]

    def report(epoch: int, logs: dict | None) -> None:
        if on_epoch is None:
            return
        logs = dict(logs or {})
        parts = [f"loss {logs.get('loss', 0):.4f}"]
        if "accuracy" in logs:
            parts.append(f"accuracy {logs['accuracy'] * 100:.1f}%")
        if "val_accuracy" in logs:
            parts.append(f"validation {logs['val_accuracy'] * 100:.1f}%")
        elif "val_loss" in logs:
            parts.append(f"validation loss {logs['val_loss']:.4f}")
        on_epoch(f"{spec.type} epoch {epoch + 1}/{epochs}: " + ", ".join(parts))

    def labels(data: Dataset) -> np.ndarray:
        if plan.task == "classes":
            return _y(data)
        return _y(data).reshape((len(data), *plan.output_shape)).astype(np.float32)

    model.fit(
        train.x,
        labels(train),
        epochs=epochs,
        batch_size=spec["batch_size"],
        validation_data=(validation.x, labels(validation)),
        shuffle=True,
        verbose=0,
        callbacks=[*callbacks, keras.callbacks.LambdaCallback(on_epoch_end=report)],
    )


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
    _fit(wrapped, sp, plan, train, validation, on_epoch, callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(wrapped)
    return StageResult(
        stripped,
        {
            "schedule": (
                "2:4 (fixed mask)"
                if spec["pattern"] == "2:4"
                else f"{spec['schedule']}, end step {end_step}, frequency {frequency}"
            ),
            "parameters": int(stripped.count_params()),
            "layers": {
                name: {"target": cfg["sparsity"], **kernel_summary(stripped, name)}
                for name, cfg in sp.layers.items()
            },
        },
    )


_INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


def _cluster(sp, plan, model, train, validation, on_epoch) -> StageResult:
    from edgec._tf import keras, tfmot

    clustering = tfmot.clustering.keras
    spec = sp.spec
    init = getattr(clustering.CentroidInitialization, _INITS[spec["init"]])

    def wrap(layer):
        cfg = sp.layers.get(layer.name)
        if cfg is None:
            return layer
        return clustering.cluster_weights(
            layer,
            number_of_clusters=spec["clusters"],
            cluster_centroids_init=init,
            preserve_sparsity=cfg["preserve_sparsity"],
            cluster_per_channel=cfg["per_channel"],
        )

    wrapped = keras.models.clone_model(model, clone_function=wrap)
    _fit(wrapped, sp, plan, train, validation, on_epoch)
    stripped = clustering.strip_clustering(wrapped)
    return StageResult(
        stripped,
        {
            "clusters": spec["clusters"],
            "init": spec["init"],
            "parameters": int(stripped.count_params()),
            "layers": {
                name: {**cfg, **kernel_summary(stripped, name)} for name, cfg in sp.layers.items()
            },
        },
    )


# TF-MOT has no QuantizeConfig for recurrent layers, and a QAT model with a float LSTM
# inside converted (measured here) with a float DEQUANTIZE -> SPLIT -> QUANTIZE in the
# unrolled cell on some runs. A model with one skips QAT as a whole, says so in the
# stage's metrics and summary, and gets its int8 ranges from post-training calibration.
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")


def _qat(sp, plan, model, train, validation, on_epoch, pruned, clustered) -> StageResult:
    recurrent = [layer.name for layer in model.layers if type(layer).__name__ in RECURRENT]
    if recurrent:
        return StageResult(
            model,
            {
                "scheme": "none: post-training calibration",
                "parameters": int(model.count_params()),
                "skipped_layers": {
                    name: "recurrent: TF-MOT has no QAT for it, so QAT was not run"
                    for name in recurrent
                },
            },
        )
    return _qat_apply(sp, plan, model, train, validation, on_epoch, pruned, clustered)


def _qat_apply(sp, plan, model, train, validation, on_epoch, pruned, clustered) -> StageResult:
    from edgec._tf import tfmot

    quantize = tfmot.quantization.keras
    combine = tfmot.experimental.combine
    # Plain QAT would re-grow pruned zeros and split clusters: pick the collaborative scheme.
    if clustered:
        scheme_name = "PCQAT" if pruned else "CQAT"
        scheme = combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=pruned)
    elif pruned:
        # Not TF-MOT's PQAT scheme: it keeps zeros only in the layers its registry
        # configures, and with a relu6 Dense annotated by ``annotate`` the converter gave
        # a FULLY_CONNECTED whose bias scale was not input x weight scale (int8 accuracy
        # 47% -> 28% here). Default 8-bit QAT with the zeros put back after every batch
        # (SparsityMask) keeps them in every layer.
        scheme_name, scheme = "PQAT (default 8-bit QAT, sparsity mask kept)", None
    else:
        scheme_name, scheme = "QAT (default 8-bit)", None
    parameters = int(model.count_params())
    from edgec.pipeline.qat_prepare import (
        SparsityMask,
        annotate,
        init_activation_ranges,
        prepare_for_qat,
    )

    prepared = prepare_for_qat(model, train.x[:256])
    train, validation = (
        scaled(train, prepared.input_scale),
        scaled(validation, prepared.input_scale),
    )
    annotated, scope = annotate(prepared.model)
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
    init_activation_ranges(qat_model, prepared.model, train.x[:512])
    callbacks = [SparsityMask(qat_model).callback()] if pruned else []
    try:
        _fit(qat_model, sp, plan, train, validation, on_epoch, callbacks=callbacks)
    finally:
        tf_logger.removeFilter(quiet)
    if clustered:
        qat_model = combine.strip_clustering_cqat(qat_model)
    metrics: dict[str, Any] = {"scheme": scheme_name, "parameters": parameters}
    if prepared.rewrites:
        metrics["rewrites"] = list(prepared.rewrites)
        metrics["rewrite_max_difference"] = prepared.max_difference
    if prepared.input_scale != 1.0:
        metrics["input_scale"] = prepared.input_scale
    return StageResult(qat_model, metrics, input_scale=prepared.input_scale)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in str(record.msg)


def kernel_summary(model, name: str) -> dict[str, Any]:
    """Float sparsity and distinct values of one layer's kernel (after stripping)."""
    layer = model.get_layer(name)
    w = np.asarray(layer.kernel.numpy())
    summary: dict[str, Any] = {
        "sparsity": round(float(np.mean(w == 0)), 4),
        "unique_values": len(np.unique(w)),
    }
    if w.ndim == 4:
        summary["unique_values_per_channel"] = max(
            len(np.unique(w[..., c])) for c in range(w.shape[-1])
        )
    return summary


# ---------------------------------------------------------------------------- distillation


def _distill(sp, plan, teacher, student, train, validation, on_epoch) -> StageResult:
    from edgec._tf import keras, tf

    spec = sp.spec
    temperature, alpha = float(spec["temperature"]), float(spec["alpha"])
    classes = plan.task == "classes"
    teacher_probs, student_probs = _outputs_probabilities(teacher), _outputs_probabilities(student)

    def logits(out, probs: bool):
        # log(p) differs from the logits by a per-sample constant, which softmax ignores.
        return tf.math.log(tf.clip_by_value(out, 1e-7, 1.0)) if probs else out

    hard = (
        keras.losses.SparseCategoricalCrossentropy(from_logits=not student_probs)
        if classes
        else keras.losses.MeanSquaredError()
    )

    class Distiller(keras.Model):
        """alpha * hard + (1 - alpha) * T^2 * KL(teacher || student); MSE for regression.

        tf_keras has no compute_loss hook that sees the teacher, so train_step is overridden.
        """

        def __init__(self):
            super().__init__()
            self.student = student
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.acc = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

        @property
        def metrics(self):
            return [self.loss_tracker, self.acc] if classes else [self.loss_tracker]

        def call(self, x, training=False):
            return self.student(x, training=training)

        def _loss(self, x, y, s):
            t = teacher(x, training=False)
            if classes:
                t_soft = tf.nn.softmax(logits(t, teacher_probs) / temperature)
                s_log = tf.nn.log_softmax(logits(s, student_probs) / temperature)
                kl = tf.reduce_mean(
                    tf.reduce_sum(t_soft * (tf.math.log(t_soft + 1e-12) - s_log), axis=-1)
                )
                soft = kl * temperature**2
            else:
                soft = tf.reduce_mean(tf.square(tf.cast(t, s.dtype) - s))
            return alpha * hard(y, s) + (1 - alpha) * soft

        def _track(self, loss, y, s):
            self.loss_tracker.update_state(loss)
            if classes:
                self.acc.update_state(y, s)
            return {m.name: m.result() for m in self.metrics}

        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                s = self.student(x, training=True)
                loss = self._loss(x, y, s) + sum(self.student.losses)
            grads = tape.gradient(loss, self.student.trainable_variables)
            self.optimizer.apply_gradients(
                zip(grads, self.student.trainable_variables, strict=True)
            )
            return self._track(loss, y, s)

        def test_step(self, data):
            x, y = data
            s = self.student(x, training=False)
            return self._track(self._loss(x, y, s), y, s)

    distiller = Distiller()
    distiller.compile(optimizer=keras.optimizers.Adam(spec["learning_rate"]))
    _fit(distiller, sp, plan, train, validation, on_epoch, compile_=False)
    return StageResult(
        student,
        {
            "teacher_parameters": int(teacher.count_params()),
            "student_parameters": int(student.count_params()),
            "student": spec["student"] or f"derived: width x{spec['width']:g}",
            "temperature": temperature,
            "alpha": alpha,
            "parameters": int(student.count_params()),
        },
    )
