"""``edgec build``: named phases over one BuildContext, timed, nothing written until the end.

``run_build`` checks every input (``_validate``), then runs ``PHASES`` in order; each
phase reads what the earlier ones left in the context and adds its own. The report's
top-level checks are assembled by group name (``CHECK_ORDER``), not by position.

Not ``edgec/build.py``: importing a submodule sets it as an attribute of its package,
so ``edgec.build`` (the public API function) would become this module after the first
build and ``edgec.build(...)`` would fail with "module is not callable".
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.artifact import Artifact as ModelArtifact  # report.Artifact is a report entry
from edgec.artifact import runtimes
from edgec.artifact.breakdown import byte_breakdown
from edgec.artifact.int4 import CHECK as INT4_CHECK
from edgec.artifact.int4 import to_int4_verified
from edgec.artifact.layer_names import LayerNames
from edgec.artifact.lean import CHECK as LEAN_CHECK
from edgec.artifact.lean import LeanModel, make_lean_verified
from edgec.artifact.lut import compress_lut_verified
from edgec.artifact.sidecar import names_path
from edgec.artifact.stats import analyze_layers
from edgec.datasets import Dataset, load_dataset, split_calibration
from edgec.datasets.loading import check_data_file, sample_shape
from edgec.datasets.split import (
    calibration_cap,
    recipe_split_warning,
    split_holdout,
    split_validation,
)
from edgec.errors import ConversionError, EdgecError, InputError, ToolError, UsageError
from edgec.export import (
    ExportSpec,
    c_identifier,
    check_section,
    export_package,
    firmware_info,
    model_data_sources,
    prepare_output_dir,
    write_outputs,
)
from edgec.options import BuildOptions, check_values
from edgec.pipeline.convert import PHONE_VARIANTS, index_input, input_as, model_io_type
from edgec.pipeline.model_files import check_model_path
from edgec.pipeline.model_io import absolute_custom_objects
from edgec.report import (
    Artifact,
    BuildReport,
    Check,
    DataInfo,
    Firmware,
    Layer,
    ModelInfo,
    Stage,
    StageMetrics,
    TargetSection,
    from_plain,
    tool_versions,
)
from edgec.stages import get_stage, stage_types
from edgec.stages.recipe import Recipe, load_recipe, recipe_from_options
from edgec.targets import TargetProfile, TfliteModel, load_targets, parse_budget
from edgec.targets.analyzers import analyze_target
from edgec.targets.analyzers.mcu import tflm_target
from edgec.targets.arena import (
    KernelArena,
    firmware_arena,
    measured_budget,
)
from edgec.targets.profile import load_runtime
from edgec.targets.weights import compression_checks

if TYPE_CHECKING:  # TensorFlow-side modules: imported by the phases that need them
    from edgec.pipeline.convert import Converted
    from edgec.pipeline.precision import Bits, Budget, Choice
    from edgec.pipeline.verify import Evaluation
    from edgec.stages.plan import CompressionPlan

_BN = "BatchNormalization"
EVAL_RUNTIME_SAMPLES = 300  # LiteRT-vs-TFLM comparison: enough to catch kernel mismatches
EXAMPLE_SOURCE = "built-in example: digits CNN (scikit-learn digits)"


class Progress:
    """What the build tells its user while it runs; the CLI draws it, tests ignore it."""

    def stage(self, name: str, description: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def message(self, text: str) -> None:
        pass

    def warning(self, text: str) -> None:
        """Something the user must know that does not stop the build (it is not transient,
        unlike ``message``)."""


@dataclass
class BuildResult:
    report: BuildReport
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """Everything about the inputs that can be checked before TensorFlow starts."""

    profiles: list[TargetProfile]
    overrides: dict[str, int]
    recipe: Recipe | None
    io_type: str  # the model's I/O dtype (model_io_type)


@dataclass(eq=False, repr=False)
class BuildContext:
    """One build's state: each phase reads what earlier phases left and adds its own.

    A field without a default is set by the phase named beside it; reading it before that
    phase ran is an AttributeError (a phase out of order), not a silent None.
    """

    options: BuildOptions
    plan: _Plan
    progress: Progress = field(default_factory=Progress)
    stages: list[Stage] = field(default_factory=list)
    checks: dict[str, list[Check]] = field(default_factory=dict)  # by CHECK_ORDER name
    # the model and its data
    model: Any = field(init=False)  # load_model; replaced by translate_keras3, run_recipe
    custom_objects: dict = field(default_factory=dict)
    name: str = field(init=False)  # load_model: the C identifier stem
    source: str = field(init=False)
    data: Dataset = field(init=False)  # load_data (the example: load_model)
    calibration: Dataset = field(init=False)  # load_data
    evaluation: Dataset = field(init=False)
    # the example's training split (load_model); with a recipe, the user's (load_data)
    train: Dataset = field(init=False)
    fit_on: Dataset = field(init=False)  # load_data, with a recipe: what its stages fit on
    validation: Dataset = field(init=False)  # ... and validate on
    recipe_plan: CompressionPlan | None = None  # validate_recipe
    input_model_out: np.ndarray | None = None  # run_recipe: the input model's outputs
    input_parameters: int | None = None  # run_recipe: the input model's, before the stages
    parameters: int | None = None  # QAT adds quantizer variables: the stages count weights
    # the converted model and what ships
    tflite: bytes = field(init=False)  # convert; replaced by choose_precision
    names: LayerNames = field(init=False)  # convert: the Keras layer of each op
    conversion: Converted = field(init=False)  # convert: per-channel and per-tensor weights
    precision: Choice | None = None  # choose_precision: per layer, per channel or per tensor
    flat: TfliteModel = field(init=False)
    # the standard file (LiteRT, Vela, Edge TPU targets): convert; replaced by lut_compress
    shipped: bytes = field(init=False)
    converted: ModelArtifact = field(init=False)  # convert: the bytes, parsed once, its arena
    shipped_artifact: ModelArtifact = field(init=False)  # as shipped
    lean: LeanModel | None = None  # lean: what the TFLM targets ship instead
    tflm_ok: bool = False  # measure_arena: TFLM has every op
    arena: int | None = None
    x_q: np.ndarray = field(init=False)  # measure_arena: the evaluation inputs, quantized
    # tflm_outputs: TFLM's outputs of the standard file, with the arena and inputs they
    # ran with
    tflm_out: tuple[int, np.ndarray, np.ndarray] | None = None
    shipped_out: np.ndarray | None = None  # lut_compress: TFLM's of the compressed file
    lut_info: dict | None = None
    # measurements and outputs
    sections: list[TargetSection] = field(default_factory=list)  # check_targets
    float_out: np.ndarray | None = None  # float_outputs: the model on the evaluation set
    evaluation_result: Evaluation = field(init=False)
    layers: list[Layer] = field(default_factory=list)  # layer_error
    files: dict[str, bytes] = field(default_factory=dict)
    firmware: Firmware | None = None  # export
    warnings: list[str] = field(default_factory=list)  # load_data: what the data is too small for

    @contextlib.contextmanager
    def stage(self, name: str, description: str) -> Iterator[dict]:
        """Time one stage for the report; what the caller puts in the dict is its metrics."""
        start = time.perf_counter()
        metrics: dict = {}
        with self.progress.stage(name, description):
            yield metrics
        seconds = round(time.perf_counter() - start, 3)
        self.stages.append(Stage(name, seconds, from_plain(StageMetrics, metrics)))


# report.json's top-level checks, in this order: each name is the group a phase fills.
# "target_common" and "target" are the first target's checks (its section keeps them all).
CHECK_ORDER = (
    "target_common",  # ops, dtypes, static_shapes
    "accuracy",
    "litert_vs_tflm",
    INT4_CHECK,
    "lut_bit_identical",
    LEAN_CHECK,
    "compression",  # what the recipe's stages must leave in the int8 model
    "target",  # the kind's own checks, then flash and ram
)
TARGET_COMMON_CHECKS = ("ops", "dtypes", "static_shapes")


def run_build(
    options: BuildOptions,
    progress: Progress | None = None,
    phases: Sequence[Callable[[BuildContext], None]] = (),
) -> BuildResult:
    """The build, in this process (the model process of ``build_in_sandbox``): ``phases``,
    every phase of ``PHASES`` by default (an edgec fit trial leaves some out)."""
    ctx = new_context(options, progress)
    from edgec._tf import custom_gradients_dropped
    from edgec.pipeline.convert import start_converter

    start_converter()  # the conversion child imports TensorFlow while this process works
    with custom_gradients_dropped():  # a process may run many builds (the API, fit)
        for phase in phases or PHASES:
            phase(ctx)
    return BuildResult(report=build_report(ctx), files=ctx.files)


def build_in_sandbox(
    options: BuildOptions, progress: Progress | None = None, *, seed: int | None = None
) -> BuildResult:
    """``run_build`` in a confined model process (``edgec.sandbox``): the model, its data
    and TensorFlow stay there; this process checks the inputs first, relays the build's
    progress and gets its report and files (JSON: nothing from the child is executed).

    ``seed``: seeds Python, NumPy and TensorFlow in the child first (an edgec fit trial).
    """
    from edgec.sandbox.worker import ModelProcess, relayed_stages

    options = absolute_inputs(options)
    plan = _validate(options)  # before the child starts: profiles, recipe, output folder
    plugins = stage_plugins()
    payload = {
        "options": _options_payload(dataclasses.replace(options, out=None)),
        "seed": seed,
        "plugins": plugins,
    }
    readable = input_paths(options, plan.recipe)
    warm_up = ("converter", "tensorflow")  # TensorFlow, and the converter forked after it
    roots = plugin_roots(plugins)
    with (
        ModelProcess(readable, debug=options.debug, warm_up=warm_up, python_path=roots) as process,
        relayed_stages(progress or Progress()) as on_event,
    ):
        if options.model is not None:  # what its bytes decide, before TensorFlow starts
            process.call("examine", {"path": str(options.model), "trust": options.trust_model})
        reply = process.call("build", payload, on_event)
    try:
        files = {str(k): base64.b64decode(v, validate=True) for k, v in reply["files"].items()}
        return BuildResult(BuildReport.from_dict(reply["report"]), files)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ToolError(f"the model process returned a malformed build result ({exc})") from None


def sandboxed_build(payload: dict[str, Any], emit: Callable[[dict], None]) -> dict[str, Any]:
    """``build_in_sandbox``'s side in the model process."""
    register_plugins(payload["plugins"])
    if payload["seed"] is not None:
        seed_everything(payload["seed"])
    result = run_build(_options_from_payload(payload["options"]), _EventProgress(emit))
    return {
        "report": result.report.to_dict(),
        "files": {k: base64.b64encode(v).decode() for k, v in result.files.items()},
    }


class _EventProgress(Progress):
    """The model process's progress, sent to the parent as events."""

    def __init__(self, emit: Callable[[dict], None]) -> None:
        self._emit = emit

    @contextlib.contextmanager
    def stage(self, name: str, description: str) -> Iterator[None]:
        self._emit({"event": "stage", "name": name, "description": description})
        yield
        self._emit({"event": "stage_end"})

    def message(self, text: str) -> None:
        self._emit({"event": "message", "text": text})

    def warning(self, text: str) -> None:
        self._emit({"event": "warning", "text": text})


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow (an edgec fit trial: the same seed, the same run)."""
    from edgec._tf import keras, tf

    keras.utils.set_random_seed(seed)  # the stages seed themselves too (stages.plan.SEED)
    # Many models predicted in one process make tf.function warn about retracing on every
    # trial ("5 out of the last 11 calls ... triggered tf.function retracing"): harmless.
    tf.get_logger().setLevel("ERROR")


def absolute_inputs(options: BuildOptions) -> BuildOptions:
    """``options`` with every input path absolute: the model process works in a private
    folder of its own, not in this process's current directory."""

    recipe, distill = options.recipe, options.stages.get("distill")
    stages = dict(options.stages)
    if isinstance(distill, str) and Path(distill).exists():
        stages["distill"] = os.path.abspath(distill)
    return dataclasses.replace(
        options,
        stages=stages,
        model=None if options.model is None else Path(os.path.abspath(options.model)),
        data=None if options.data is None else Path(os.path.abspath(options.data)),
        target=absolute_targets(options.target),
        recipe=os.path.abspath(recipe) if recipe and Path(recipe).exists() else recipe,
        custom_objects=absolute_custom_objects(options.custom_objects),
    )


def absolute_targets(target: str) -> str:
    """``--target``'s profile files made absolute (built-in names stay as they are)."""
    return ",".join(
        os.path.abspath(t) if t.strip().endswith(".toml") or Path(t).exists() else t
        for t in target.split(",")
    )


def input_paths(options: BuildOptions, recipe: Recipe | None) -> list[str]:
    """What the model process reads besides the Python installation: the (absolute) input
    files and folders, and the files a recipe names (a distill student)."""
    paths = [options.model, options.data, options.recipe, options.custom_objects]
    paths += [v for v in options.stages.values() if isinstance(v, str)]  # a student file
    paths += options.target.split(",")
    if recipe is not None:
        paths += [v for s in recipe.stages for v in s.params.values() if isinstance(v, str)]
    return [str(p) for p in paths if p is not None and os.path.isabs(p) and os.path.exists(p)]


def stage_plugins() -> list[list[str]]:
    """Stages registered from outside edgec (a plug-in, a test): module and class name, so
    the model process registers them too."""
    classes = [type(get_stage(t)) for t in stage_types()]
    return [
        [c.__module__, c.__qualname__] for c in classes if not c.__module__.startswith("edgec.")
    ]


def plugin_roots(plugins: list[list[str]]) -> list[str]:
    """The folders the plug-ins' top-level packages were imported from (the model process
    imports them from there)."""
    import sys

    roots = []
    for module, _ in plugins:
        top = sys.modules.get(module.split(".")[0])
        file = getattr(top, "__file__", None)
        if file is not None:
            folder = Path(file).parent
            roots.append(str(folder.parent if Path(file).name == "__init__.py" else folder))
    return roots


def register_plugins(plugins: list[list[str]]) -> None:
    import importlib

    from edgec.stages import register

    for module, qualname in plugins:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if cls.type not in stage_types():
            register(cls)


def _options_payload(options: BuildOptions) -> dict[str, Any]:
    payload = {
        f.name: str(v) if isinstance(v := getattr(options, f.name), Path) else v
        for f in dataclasses.fields(options)
    }
    return {**payload, "stages": dict(options.stages)}


def _options_from_payload(data: dict[str, Any]) -> BuildOptions:
    paths = {k: Path(data[k]) if data[k] is not None else None for k in ("model", "data", "out")}
    return BuildOptions(**{**data, **paths, "phone_variants": tuple(data["phone_variants"])})


def new_context(options: BuildOptions, progress: Progress | None = None) -> BuildContext:
    """The context of a build whose every input was checked (before TensorFlow starts)."""
    return BuildContext(options, _validate(options), progress or Progress())


def load_model(ctx: BuildContext) -> None:
    options = ctx.options
    if options.model is None:
        from edgec.pipeline.example import NAME, example_data, example_model

        ctx.train, ctx.data = example_data()
        ctx.model = example_model()  # trained later, after the recipe is validated
        name, ctx.source = options.name or NAME, EXAMPLE_SOURCE
    else:
        from edgec.pipeline.model_io import load_custom_objects, load_keras_model

        ctx.custom_objects = load_custom_objects(options.custom_objects)
        with ctx.stage("load_model", f"Loading {options.model}") as metrics:

            def trusted(code: tuple[str, ...]) -> None:
                metrics["trusted_code"] = list(code)
                ctx.progress.warning(f"--trust-model: the model file's own code runs: "
                                     f"{', '.join(code)}")  # fmt: skip

            def in_float32(policy: str, layers: list[str]) -> None:
                metrics["float32_from"] = policy
                ctx.warnings.append(
                    f"the model was trained with mixed precision ({policy}): its "
                    f"{len(layers)} layer(s) compute in float32 here, from their float32 "
                    "weights, and the int8 model is calibrated from that"
                )

            def fixed(own: list, shape: list[int]) -> None:
                metrics["input_shape_from_data"] = shape
                ctx.warnings.append(
                    f"the model's input {own} leaves dimensions open: built at {shape}, the "
                    f"shape of the samples in {options.data}"
                )

            ctx.model = load_keras_model(
                options.model, ctx.custom_objects, trust=options.trust_model,
                on_code=trusted, on_float32=in_float32,
                data_shape=sample_shape(options.data) if options.data else None,
                on_input_shape=fixed,
            )  # fmt: skip
        if ctx.plan.recipe is not None and not getattr(ctx.model, "layers", None):
            raise InputError(
                f"model {options.model} is a SavedModel without Keras metadata: a recipe "
                "needs the Keras model",
                hint="a plain build (no recipe) works; for a recipe give the .keras file",
            )
        name, ctx.source = options.name or options.model.stem, str(options.model)
    ctx.name = c_identifier(name)


def load_data(ctx: BuildContext) -> None:
    options, recipe = ctx.options, ctx.plan.recipe
    input_shape = tuple(int(d) for d in ctx.model.inputs[0].shape[1:])
    outputs = ctx.model.outputs
    output_shape = tuple(int(d) for d in outputs[0].shape[1:]) if len(outputs) == 1 else None
    with ctx.stage("load_data", "Loading calibration and evaluation data"):
        if options.data is not None:  # a user model always has data (see _validate)
            ctx.data = load_dataset(
                options.data, input_shape, output_shape=output_shape,
                max_samples=options.max_samples, indices=index_input(ctx.model),
                raw_pixels=(input_as(ctx.model) or ("", ""))[1] == "float32",
            )  # fmt: skip
        if recipe is not None and options.model is not None:
            given = ctx.data
            ctx.train, ctx.data = split_holdout(ctx.data, 2 * options.calibration_samples)
        ctx.calibration, ctx.evaluation = split_calibration(ctx.data, options.calibration_samples)
        capped = calibration_cap(options.calibration_samples, ctx.calibration, ctx.data)
        ctx.warnings += [capped] if capped else []
        if recipe is not None:
            # The built-in example itself still trains on its whole training split (the
            # same model as without a recipe); the compression stages fit on fit_on.
            ctx.fit_on, ctx.validation = split_validation(ctx.train)
            if options.model is not None:
                warning = recipe_split_warning(
                    given, ctx.train, ctx.validation, len(ctx.data), options.calibration_samples
                )
                ctx.warnings += [warning] if warning else []


def translate_keras3(ctx: BuildContext) -> None:
    from edgec.pipeline.convert import is_keras3, needs_tf_keras

    if not is_keras3(ctx.model):
        return
    if ctx.plan.recipe is None and not needs_tf_keras(ctx.model):
        return
    from edgec.pipeline.keras3 import TranslationError, translate

    with ctx.stage("translate_keras3", "Rebuilding the Keras 3 model as tf_keras") as metrics:
        try:
            translation = translate(ctx.model, ctx.calibration.x, ctx.custom_objects)
        except TranslationError as exc:
            if ctx.plan.recipe is not None:
                raise
            # a plain build converts the Keras 3 model as it is: its checks judge the ops
            # its Keras 3 layers convert to (a layer of needs_tf_keras' may be one TFLM lacks)
            ctx.warnings.append(f"the Keras 3 model is converted as it is, not through "
                                f"tf_keras: {exc.reason}")  # fmt: skip
            return
        metrics.update(max_abs_diff=translation.max_abs_diff, layers_rebuilt=translation.layers,
                       keras_version=translation.keras_version)  # fmt: skip
        if translation.left_out:
            metrics.update(layers_left_out=list(translation.left_out))
    ctx.model = translation.model


def input_dtype(ctx: BuildContext) -> None:
    """The model's input given the dtype the build converts it with (``convert.input_as``:
    float32 for an integer input the model casts, int32 for token ids), proven equal."""
    from edgec.pipeline.convert import retyped
    from edgec.pipeline.graph_rewrite import check_graph_model

    change = input_as(ctx.model)
    if change is None:
        return
    old, new = change
    try:
        check_graph_model(ctx.model, f"taking the input as {new}")
    except InputError:
        # no tf_keras graph to rebuild (a Keras 3 model tf_keras could not rebuild, a
        # subclassed model): converted as it is, its checks judge it
        ctx.warnings.append(f"the model's {old} input is converted as it is (its model "
                            f"cannot be rebuilt with a {new} input)")  # fmt: skip
        return
    with ctx.stage("input_dtype", f"Taking the model's {old} input as {new}") as metrics:
        rebuilt, equality = retyped(ctx.model, ctx.calibration.x, new)
        metrics.update(input_dtype=old, as_dtype=new,
                       rewrite_max_difference=equality.max_difference)  # fmt: skip
        if not equality.equal:
            raise InputError(
                f"the model casts its input to {old}, which changes the data's values "
                f"(outputs differ by up to {equality.max_difference:.3g})",
                hint=f"give x as whole numbers in {old}'s range, as the model takes them",
            )
    ctx.model = rebuilt


def validate_recipe(ctx: BuildContext) -> None:
    recipe = ctx.plan.recipe
    if recipe is None:
        return
    from edgec.stages import plan as compress

    with ctx.stage("validate_recipe", f"Checking recipe {recipe.name} against the model"):
        ctx.recipe_plan = compress.validate(
            recipe, ctx.model, ctx.fit_on, trust_model=ctx.options.trust_model,
            per_channel=ctx.options.per_channel,
        )  # fmt: skip


def train_example(ctx: BuildContext) -> None:
    if ctx.options.model is not None:
        return
    from edgec.pipeline.example import train_example_model, trained_before

    def on_epoch(epoch: int, epochs: int, logs: dict) -> None:
        ctx.progress.message(
            f"epoch {epoch}/{epochs}: loss {logs.get('loss', 0):.3f}, "
            f"accuracy {logs.get('accuracy', 0) * 100:.1f}%"
        )

    with ctx.stage("train_example", "Training the built-in example (digits CNN)"):
        if trained_before(ctx.model, ctx.train):
            ctx.progress.message("the same training ran earlier in this process: its weights")
        train_example_model(ctx.model, ctx.train, on_epoch=on_epoch)


def run_recipe(ctx: BuildContext) -> None:
    """The recipe's stages, in order, each one timed with its metrics."""
    if ctx.recipe_plan is None:
        return
    from edgec.pipeline.outputs import model_outputs
    from edgec.stages import plan as compress
    from edgec.stages.training import WRAPPING_STAGES, without_activity_penalties

    ctx.input_model_out = model_outputs(ctx.model, ctx.evaluation.x)
    ctx.input_parameters = int(ctx.model.count_params())
    if any(sp.spec.type in WRAPPING_STAGES for sp in ctx.recipe_plan.stages):
        ctx.model, dropped = without_activity_penalties(ctx.model, ctx.fit_on.x[:256])
        if dropped:
            ctx.warnings.append(
                f"the activity regularizers of {len(dropped)} layer(s) ({', '.join(dropped[:5])}"
                f"{', ...' if len(dropped) > 5 else ''}) are left out of the recipe's training: "
                "TF-MOT's wrappers fail on them (a training loss only; the outputs are the same)"
            )
    before = None  # the model's validation figures, measured by the stage before
    for sp in ctx.recipe_plan.stages:
        with ctx.stage(sp.spec.type, get_stage(sp.spec.type).describe(sp.spec)) as metrics:
            done = compress.run_stage(
                sp, ctx.recipe_plan, ctx.model, ctx.fit_on, ctx.validation,
                on_epoch=ctx.progress.message, before=before,
            )  # fmt: skip
            metrics.update(done.metrics.to_dict())
        ctx.model = done.model
        # measured on the validation data as the next stage gets it (ctx.validation is
        # not scaled: after a folded Rescaling the next stage measures its own)
        before = done.after if done.input_scale == 1.0 else None
        # QAT moved an input Rescaling into the input quantization: the model now
        # takes scaled values, and firmware scales raw values (INPUT_RAW_SCALE).
        ctx.data, ctx.calibration, ctx.evaluation = (
            compress.scaled(d, done.input_scale)
            for d in (ctx.data, ctx.calibration, ctx.evaluation)
        )
        ctx.parameters = done.parameters if done.parameters is not None else ctx.parameters


def fold_batch_norms(ctx: BuildContext) -> None:
    """A BatchNormalization after an activation, folded into the layer after it where exact.

    The converter folds a BN into a linear layer before it; one after an activation
    (``Conv2D(activation="relu")`` then BN) it leaves as int8 MUL and ADD ops. The model
    converted is rewritten (``qat_rewrite.fold_forward_batch_norms``) and proven equal on
    the calibration data; a BN no exact fold takes stays (``kept_layers`` says why,
    ``batch_norm_cost`` measures its ops). After QAT the QAT stage did this already.
    """
    from edgec.pipeline.convert import flat_layers, is_keras3

    bns = [layer.name for layer in flat_layers(ctx.model) if type(layer).__name__ == _BN]
    if not bns:
        return
    from edgec.stages.structure.qat_rewrite import fold_forward_batch_norms

    with ctx.stage("fold_batch_norms", "Folding BatchNormalization after activations") as metrics:
        model = ctx.model
        try:
            if is_keras3(model):  # the rewrite is tf_keras's; the twin is proven equal
                from edgec.pipeline.keras3 import translate

                model = translate(model, ctx.calibration.x, ctx.custom_objects).model
            prepared = fold_forward_batch_norms(model, ctx.calibration.x)
        except InputError as exc:  # not rebuilt, or not proven equal: converted as it is
            why = (f"not folded ({exc.message}): left to the converter, which folds it into "
                   "a linear layer before it or keeps int8 MUL/ADD ops")  # fmt: skip
            metrics.update(kept_layers=dict.fromkeys(bns, why))
            return
        if prepared.rewrites:
            ctx.model = prepared.model
            metrics.update(rewrites=list(prepared.rewrites),
                           rewrite_max_difference=prepared.max_difference)  # fmt: skip
        if prepared.kept:
            metrics.update(kept_layers=dict(prepared.kept))


def convert(ctx: BuildContext) -> None:
    from edgec.pipeline.convert import convert_full_integer
    from edgec.pipeline.recurrent import unroll_recurrent

    calibration = ctx.calibration
    activations = "auto" if _int16_layers(ctx.options, ctx.plan.recipe) else ctx.options.activations
    width = {"int8": "int8", "auto": "int8 and 16x8 (int16 layers chosen next)"}.get(
        activations, "16x8 (int16 activations, int8 weights)"
    )
    with ctx.stage(
        "convert", f"Converting to full-integer {width} ({len(calibration)} calibration samples)"
    ) as metrics:
        model = unroll_recurrent(ctx.model, calibration.x[:16])
        ctx.conversion = convert_full_integer(
            model,
            calibration.x,
            io_type=ctx.plan.io_type,
            activations="int8" if activations == "auto" else activations,
            quiet=not ctx.options.debug,
            per_tensor=True,  # the per-layer choice's other option (choose_precision)
            for_tflm=_on_tflm(ctx),
        )
        if activations == "auto":  # the int16 layers' source: the same calibration, 16x8
            try:
                twin = convert_full_integer(
                    model, calibration.x, io_type="int16", activations="int16",
                    quiet=not ctx.options.debug,
                )  # fmt: skip
                ctx.conversion = dataclasses.replace(ctx.conversion, int16=twin.model)
            except ConversionError as exc:  # the int8 model stands; the report says why
                ctx.conversion = dataclasses.replace(ctx.conversion, int16_error=exc.message)
        if ctx.conversion.op_rewrites:
            metrics.update(op_rewrites=list(ctx.conversion.op_rewrites))
    assert ctx.conversion.names is not None  # convert_full_integer traced the model
    ctx.names = ctx.conversion.names
    _set_converted(ctx, ctx.conversion.model)
    # which of the model's ops the installed tflite-micro registers (asked of TFLM itself)
    ctx.tflm_ok = set(ctx.flat.op_names) <= ctx.converted.tflm_registered()


def _on_tflm(ctx: BuildContext) -> bool:
    """A target runs TFLM: an MCU, or an accelerator's CPU fallback."""
    return any(p.runtime.asks_tflm for p in ctx.plan.profiles)


def _set_converted(ctx: BuildContext, tflite: bytes) -> None:
    ctx.tflite = tflite
    ctx.tflm_out = None  # TFLM's outputs of the bytes before
    ctx.converted = ModelArtifact.from_bytes(ctx.tflite, source="the converted model")
    ctx.flat = ctx.converted.model
    # until lut_compress replaces it
    ctx.shipped, ctx.shipped_artifact = ctx.tflite, ctx.converted


def choose_precision(ctx: BuildContext) -> None:
    """Per-channel or per-tensor weights, layer by layer (``--per-channel``): measured,
    chosen, and what ships from here on (``pipeline.precision``)."""
    from edgec.pipeline import precision

    mode, recipe = ctx.options.per_channel, ctx.plan.recipe
    bits = _precision_bits(ctx)
    stage = ctx.plan.recipe.stage("mixed_precision") if ctx.plan.recipe is not None else None
    objective = "smallest" if stage is None else stage["objective"]
    activations = (
        precision.Bits(ctx.options.max_accuracy_drop, objective)
        if _int16_layers(ctx.options, ctx.plan.recipe)
        else None
    )
    description = f"Per-channel or per-tensor weights per layer (--per-channel {mode})"
    if activations is not None:
        description += ", int16 or int8 activations (--activations auto)"
    if bits is not None:
        description += ", int4 or int8 (--weights auto)"
    with ctx.stage("per_channel", description):
        ctx.precision = precision.choose(
            ctx.conversion, mode=mode, evaluation=ctx.evaluation, float_out=float_outputs(ctx),
            budget=_precision_budget(ctx), runnable=ctx.tflm_ok,
            trained=recipe is not None and "qat" in recipe.types,
            expectations=None if ctx.recipe_plan is None else ctx.recipe_plan.expectations(),
            bits=bits, activations=activations,
        )  # fmt: skip
    if ctx.precision.model != ctx.tflite:
        _set_converted(ctx, ctx.precision.model)


def cheapest_precision(ctx: BuildContext) -> None:
    """``choose_precision`` for a fit screen (an untrained model, nothing to score): the
    least flash and arena the build's choice can reach (``precision.cheapest``)."""
    from edgec.pipeline import precision

    plan = ctx.recipe_plan
    shipped = precision.cheapest(
        ctx.conversion, mode=ctx.options.per_channel,
        expectations=None if plan is None else plan.expectations(),
    )  # fmt: skip
    if shipped != ctx.tflite:
        _set_converted(ctx, shipped)


def _precision_bits(ctx: BuildContext) -> Bits | None:
    """int4 or int8 filters per layer: ``--weights auto`` or a ``mixed_precision`` stage
    (not after 4-bit QAT: its layers keep the int4 weights they trained)."""
    from edgec.pipeline import precision

    if _trained_bits(ctx) == 4:
        return None
    stage = ctx.plan.recipe.stage("mixed_precision") if ctx.plan.recipe is not None else None
    if stage is not None and "int4" in stage["weights"]:
        return precision.Bits(ctx.options.max_accuracy_drop, stage["objective"])
    if ctx.options.weights == "auto":
        return precision.Bits(ctx.options.max_accuracy_drop)
    return None


def _activations(ctx: BuildContext) -> str:
    """The activation width report.json names: the option's, or with int16 layers chosen
    per layer ``int8+int16``."""
    layers = ctx.precision.report.layers if ctx.precision is not None else []
    if not _int16_layers(ctx.options, ctx.plan.recipe):
        return ctx.options.activations
    return "int8+int16" if any(layer.activations == "int16" for layer in layers) else "int8"


def _int16_layers(options: BuildOptions, recipe: Recipe | None) -> bool:
    """int16 or int8 activations per layer: ``--activations auto`` or a mixed_precision
    stage whose ``activations`` take int16."""
    stage = recipe.stage("mixed_precision") if recipe is not None else None
    return options.activations == "auto" or (stage is not None and "int16" in stage["activations"])


def _trained_bits(ctx: BuildContext) -> int:
    """The weight bits a qat stage trained (8 without one)."""
    qat = ctx.plan.recipe.stage("qat") if ctx.plan.recipe is not None else None
    return 8 if qat is None else int(qat["weight_bits"])


def _precision_budget(ctx: BuildContext) -> Budget:
    """The first target's flash budget, and its RAM budget where that is the TFLM arena's."""
    from edgec.pipeline import precision

    profile = ctx.plan.profiles[0]
    budget = profile.budget.overridden(ctx.plan.overrides)
    ram = budget.ram_bytes if profile.kind == "mcu" else None
    return precision.Budget(budget.flash_bytes, ram)


def float_outputs(ctx: BuildContext) -> np.ndarray:
    """The (compressed) float model's outputs on the evaluation samples, computed once."""
    if ctx.float_out is None:
        from edgec.pipeline.outputs import model_outputs

        ctx.float_out = model_outputs(ctx.model, ctx.evaluation.x)
    return ctx.float_out


def int4_weights(ctx: BuildContext) -> None:
    """int4 filters (``artifact.int4``): after a qat stage with ``weight_bits = 4`` the
    converter wrote them; with ``--weights int4`` the int8 filters are requantized after
    training. Either way the int4 file must give TFLM's outputs of the same values stored
    as int8 on every evaluation sample, and it ships from here on (arena, LUT, lean)."""
    qat = ctx.plan.recipe.stage("qat") if ctx.plan.recipe is not None else None
    trained = qat is not None and qat["weight_bits"] == 4
    post = ctx.options.weights == "int4"
    # chosen per layer (--weights auto): the int4 filters are in the model already
    chosen = frozenset(
        layer.index for layer in ctx.precision.report.layers if layer.weight_bits == 4
    ) if ctx.precision is not None and not trained else frozenset()  # fmt: skip
    if not (trained or post or chosen):
        return
    how = (
        "trained 4-bit weights" if trained
        else "post-training, requantized from int8" if post
        else f"{len(chosen)} chosen per layer by measurement"
    )  # fmt: skip
    with ctx.stage("int4", f"Storing the filters as int4 ({how})") as metrics:
        if not ctx.tflm_ok:
            ctx.checks[INT4_CHECK] = [Check(INT4_CHECK, False, "not run: TFLM lacks ops")]
            return
        x_q = _model_input(ctx.flat, ctx.evaluation.x)
        growth = qat["int4_arena_growth"] if trained and qat is not None else -1.0
        proven = to_int4_verified(
            ctx.tflite, x_q, requantize=post and not trained,
            arena_growth=None if growth < 0 else growth,
            only=None if trained or post else chosen,
        )  # fmt: skip
        metrics.update(proven.metrics())
    ctx.checks[INT4_CHECK] = [proven.check]
    _set_converted(ctx, proven.result.model)
    # the int4 file parsed once, its arena measured: measure_arena reads it from here
    ctx.converted = ctx.shipped_artifact = proven.artifact
    if proven.outputs is not None:  # tflm_outputs' (the file, its arena, these inputs)
        ctx.tflm_out = proven.arena_bytes, x_q, proven.outputs


def measure_arena(ctx: BuildContext) -> None:
    """The TFLM arena of the converted model (measured once per model, cached)."""
    flat = ctx.flat
    # the per-layer choice searched the arena of what it ships, most often: confirmed here
    chosen = ctx.precision is not None and ctx.precision.model == ctx.tflite
    known = ctx.precision.arena_bytes if ctx.precision is not None and chosen else None
    with ctx.stage("measure_arena", "Measuring the exact TFLM arena"):
        ctx.arena, _ = ctx.converted.arena(runnable=ctx.tflm_ok, known=known)
    ctx.x_q = _model_input(flat, ctx.evaluation.x)
    if ctx.precision is not None:
        ctx.precision = ctx.precision.with_shipped_arena(ctx.arena)


def batch_norm_cost(ctx: BuildContext) -> None:
    """What the BatchNormalization ops left in the int8 model cost (no exact fold took them):
    the converted flatbuffer measured again without them (``artifact.bypass``)."""
    names, flat = ctx.names, ctx.flat
    ops = [
        op
        for op in flat.operators
        if (layers := names.layers(flat, op)) and all(names.kind(n) == _BN for n in layers)
    ]
    if not ops or ctx.arena is None:
        return
    from edgec.artifact.bypass import without_ops

    what = "Measuring what the BatchNormalization ops left in the model cost"
    with ctx.stage("batch_norm_cost", what) as metrics:
        kept = [f"op #{op.index} {op.name} ({names.name(flat, op)})" for op in ops]
        metrics.update(kept_ops=kept, arena_bytes_with_ops=ctx.arena)
        try:  # both repacked the same way, so the bytes differ by the ops' own
            whole = ModelArtifact.from_bytes(without_ops(ctx.tflite, []), source="repacked")
            cut = ModelArtifact.from_bytes(without_ops(ctx.tflite, [op.index for op in ops]),
                                           source="the model without them")  # fmt: skip
            arena, why = cut.arena()
        except EdgecError as exc:  # e.g. an op with two activation inputs: not measured
            metrics["kept_ops"].append(f"cost not measured: {exc.message}")
            return
        if arena is None:
            metrics["kept_ops"].append(f"cost not measured: {why}")
            return
        metrics.update(arena_bytes_without_ops=arena, flash_bytes_with_ops=whole.size_bytes,
                       flash_bytes_without_ops=cut.size_bytes)  # fmt: skip


def lut_compress(ctx: BuildContext) -> None:
    """What ships: the converted model, or its LUT-compressed form.

    Targets are checked against what ships, so flash and arena budgets see the compressed
    model.
    """
    if ctx.options.compress is None:
        return
    # auto: the first target's RAM budget (--budget ram=... overrides), what its ram check
    # compares the TFLM arena with on an mcu target (other kinds measure RAM their own way)
    profile = ctx.plan.profiles[0]
    budget = (
        profile.budget.overridden(ctx.plan.overrides).ram_bytes
        if ctx.options.compress == "auto"
        else None
    )
    what = "clustered weights" if budget is None else f"weights that fit {budget:,} B of RAM"
    with ctx.stage("compress", f"LUT-compressing {what} (tflite-micro compressor)"):
        if ctx.arena is None:
            check = Check("lut_bit_identical", False, "not run: TFLM lacks ops")
        else:
            arena_budget, note = _lut_arena_budget(ctx, budget)
            lut = compress_lut_verified(
                ctx.tflite, ctx.x_q, ctx.arena, ram_budget_bytes=arena_budget,
                reference=tflm_outputs(ctx),  # the lean proof's or the agreement's anyway
            )  # fmt: skip
            if lut.compressed:  # else the converted model ships (its arena already measured)
                ctx.shipped, ctx.shipped_artifact = lut.model, lut.artifact
                ctx.shipped_out = lut.outputs  # in its arena: the lean proof's reference
            ctx.lut_info, check = lut.info(), lut.check
            if budget is not None:  # the budget as the user gave it, and what it left
                ctx.lut_info |= {"ram_budget_bytes": budget, "note": ctx.lut_info["note"] + note}
    ctx.checks["lut_bit_identical"] = [check]


def _lut_arena_budget(ctx: BuildContext, budget: int | None) -> tuple[int | None, str]:
    """The measured arena ``--compress auto`` may reach within ``budget``: on an mcu
    target the ram check judges TENSOR_ARENA_SIZE, which adds the kernels' scratch (as
    computed on the uncompressed model) and the margin to it."""
    profile = ctx.plan.profiles[0]
    if budget is None or profile.kind != "mcu" or ctx.arena is None:
        return budget, ""
    kernels = firmware_arena(ctx.converted, profile.cpu)
    extra = 0 if kernels is None else kernels.extra_bytes
    arena_budget = measured_budget(budget, ctx.options.arena_margin, extra)
    return arena_budget, (
        f" (of the {budget:,} B RAM budget, the measured arena may use {arena_budget:,} B: "
        f"TENSOR_ARENA_SIZE adds {extra:,} B of kernel scratch and the "
        f"{ctx.options.arena_margin:g}% margin)"
    )


def lean(ctx: BuildContext) -> None:
    """The TFLM targets ship the lean file (artifact.lean): one zero point per weight
    tensor, no names (they go to the sidecar), no metadata TFLM never reads, each constant
    buffer once. TFLM must compute the same outputs; the arena is measured again.

    The standard file (``ctx.tflite``, named) stays for what names layers: the report's
    per-layer error and the compression checks; other kinds of targets ship it.
    """
    if not any(tflm_target(p) for p in ctx.plan.profiles):
        return
    with ctx.stage("lean", "Making the lean TFLM file (what TFLM never reads left out)") as m:
        arena, why = ctx.shipped_artifact.arena(runnable=ctx.tflm_ok)
        if arena is None:  # nothing to prove: what ships is the standard file
            check = Check(LEAN_CHECK, True, f"the standard file ships (TFLM arena {why})")
        else:
            keep_names = ctx.options.keep_names
            ctx.lean = make_lean_verified(
                ctx.shipped,
                ctx.x_q,
                arena,
                keep_names=keep_names,
                reference=_shipped_outputs(ctx, arena),
            )
            files = model_files(ctx)
            m.update(ctx.lean.metrics(names_file=next(iter(files.names), "")))
            check = ctx.lean.check
    ctx.checks[LEAN_CHECK] = [check]


@dataclass(frozen=True)
class ModelFiles:
    """The model files a build writes (path -> bytes), and which the firmware embeds.

    Only TFLM targets: ``model.tflite`` is the lean file, its names in
    ``model_names.json``. No TFLM target: ``model.tflite`` is the standard file. Both
    kinds: ``model.tflite`` stays the standard file (LiteRT refuses the lean one, and
    phone apps load it) and the lean one, which the firmware package embeds, is
    ``model_tflm.tflite`` with ``model_tflm_names.json``.
    """

    firmware: str  # the path of the file the C arrays hold
    models: dict[str, bytes]
    names: dict[str, bytes]  # the sidecar, if the names left the lean file


def model_files(ctx: BuildContext) -> ModelFiles:
    if ctx.lean is None:
        return ModelFiles("model.tflite", {"model.tflite": ctx.shipped}, {})
    lean = ctx.lean.lean
    if all(tflm_target(p) for p in ctx.plan.profiles):
        path, models = "model.tflite", {}
    else:
        path, models = "model_tflm.tflite", {"model.tflite": ctx.shipped}
    models[path] = lean.data
    names = {} if lean.names is None else {names_path(Path(path)).name: lean.names.to_json()}
    return ModelFiles(path, models, names)


def firmware_artifact(ctx: BuildContext) -> ModelArtifact:
    """What the firmware package embeds: the lean file if there is one."""
    return ctx.lean.artifact if ctx.lean is not None else ctx.shipped_artifact


def check_targets(ctx: BuildContext) -> None:
    for profile in ctx.plan.profiles:
        description = f"Checking against {profile.name} ({profile.kind})"
        with ctx.stage(f"check:{profile.name}", description):
            artifact = firmware_artifact(ctx) if tflm_target(profile) else ctx.shipped_artifact
            section, produced = analyze_target(
                artifact, profile, ctx.plan.overrides, arena_margin=ctx.options.arena_margin
            )
        ctx.sections.append(section)
        ctx.files.update(produced)


def evaluate(ctx: BuildContext) -> None:
    """Float vs int8 accuracy (LiteRT), and LiteRT vs TFLM in the exact arena."""
    from edgec.pipeline import verify

    flat, evaluation, max_drop = ctx.flat, ctx.evaluation, ctx.options.max_accuracy_drop
    what = "16x8" if ctx.options.activations == "int16" else "int8"
    with ctx.stage("evaluate", f"Evaluating float vs {what} on {len(evaluation)} samples"):
        float_out = float_outputs(ctx)
        # Every op's outputs, for the samples TFLM runs too: the agreement check judges each
        # op on the samples where its inputs agreed in both runtimes (a legitimate 1-step
        # rounding difference, e.g. in MEAN, is not blamed on the ops after it).
        # Only where a target runs TFLM: a phone's LiteRT never meets TFLM's kernels, so
        # their verdict is not the phone's.
        on_tflm = _on_tflm(ctx)
        keep = verify.op_outputs(flat) if on_tflm and ctx.arena is not None else []
        n = min(len(ctx.x_q), EVAL_RUNTIME_SAMPLES)
        litert = runtimes.run_litert(ctx.tflite, ctx.x_q, keep=keep, keep_samples=n)
        output = runtimes.dequantize(litert.raw, flat.output_tensor())
        result = verify.evaluate(float_out, output, evaluation, max_drop=max_drop, label=what)
        if ctx.input_model_out is not None:
            result = verify.with_input_model(
                result, ctx.input_model_out, evaluation, max_drop=max_drop,
                float_out=float_out, int8_out=output, label=what,
            )  # fmt: skip
        agreement, tflm = (
            _runtime_agreement(ctx, litert.first(n), keep) if on_tflm else (None, None)
        )
        if tflm is not None:
            device_out = runtimes.dequantize(tflm.raw, flat.output_tensor())
            result = verify.with_device_accuracy(
                result, float_out, device_out, evaluation, max_drop=max_drop
            )
        ctx.evaluation_result = result
        ctx.checks["accuracy"] = [result.check]
        ctx.checks["litert_vs_tflm"] = [agreement] if agreement is not None else []


def _runtime_agreement(
    ctx: BuildContext, litert: Any, keep: list[int]
) -> tuple[Check, runtimes.Outputs | None]:
    """With the exact arena: every evaluation sample must run in it, as LiteRT ran it."""
    from edgec.pipeline import verify

    if ctx.arena is None:  # why: TFLM lacks an op, refused the model, or crashed on it
        why = ctx.converted.tflm_run(runnable=ctx.tflm_ok).detail.removeprefix("not measured: ")
        return Check("litert_vs_tflm", False, f"not run: {why}"), None
    x = ctx.x_q[: len(litert.raw)]
    # the exact arena cannot hold every tensor at once: a second run keeps them
    kept = runtimes.run_tflm(ctx.tflite, x, ctx.arena, keep).kept
    tflm = runtimes.Outputs(tflm_outputs(ctx, len(x)), kept)
    return verify.agreement_check(litert, tflm, model=ctx.flat), tflm


def _shipped_outputs(ctx: BuildContext, arena: int) -> np.ndarray | None:
    """TFLM's outputs of what ships in ``arena`` on every evaluation sample, where an
    earlier phase ran them (the standard file's are the agreement check's too)."""
    if ctx.shipped is ctx.tflite and arena == ctx.arena:
        return tflm_outputs(ctx)
    if ctx.shipped_out is not None and arena == ctx.shipped_artifact.arena()[0]:
        return ctx.shipped_out
    return None


def tflm_outputs(ctx: BuildContext, n: int | None = None) -> np.ndarray:
    """TFLM's raw outputs of the standard file (``ctx.tflite``) in its exact arena on the
    first ``n`` evaluation samples (all by default): run once per build for the lean
    proof and the agreement check (the same interpreter on the same bytes and inputs)."""
    assert ctx.arena is not None  # measure_arena found it: TFLM runs the model
    n = len(ctx.x_q) if n is None else n
    known = ctx.tflm_out
    if not (
        known is not None
        and known[0] == ctx.arena
        and len(known[1]) >= n
        and np.array_equal(known[1][:n], ctx.x_q[:n])
    ):
        x = ctx.x_q[:n]
        known = ctx.tflm_out = ctx.arena, x, runtimes.run_tflm(ctx.tflite, x, ctx.arena).raw
    return known[2][:n]


def phone_variants(ctx: BuildContext) -> None:
    options = ctx.options
    if not options.phone_variants:
        return
    from edgec.pipeline.variants import add_phone_variants

    with ctx.stage("phone_variants", f"Phone variants: {', '.join(options.phone_variants)}"):
        ctx.sections, variant_files = add_phone_variants(
            ctx.model, options.phone_variants, ctx.sections, ctx.plan.profiles, ctx.evaluation,
            float_outputs(ctx), max_drop=options.max_accuracy_drop, quiet=not options.debug,
        )  # fmt: skip
    ctx.files.update(variant_files)


def compression_proof(ctx: BuildContext) -> None:
    """Pruning, 2:4 and clusters must survive into the int8 model."""
    if ctx.recipe_plan is not None:
        ctx.checks["compression"] = compression_checks(
            ctx.flat, ctx.recipe_plan.expectations(), ctx.names
        )


def layer_error(ctx: BuildContext) -> None:
    from edgec.pipeline.convert import is_keras3
    from edgec.pipeline.layer_error import with_layer_errors

    flat = ctx.flat
    with ctx.stage("analyze_layers", "Measuring per-layer float vs int8 error"):
        ctx.layers, reference = analyze_layers(flat, ctx.names), ctx.model
        if is_keras3(ctx.model):  # compared through its proven tf_keras twin, if it has one
            from edgec.pipeline.keras3 import tf_keras_twin

            reference = tf_keras_twin(ctx.model, ctx.calibration.x, ctx.custom_objects)
        if reference is not None and reference.layers:  # a SavedModel signature has none
            ctx.layers = with_layer_errors(
                ctx.layers, reference, ctx.tflite, flat, ctx.calibration.x, ctx.names
            )


def export(ctx: BuildContext) -> None:
    artifact, files = firmware_artifact(ctx), model_files(ctx)
    # the first target's core: the arena of the kernels its firmware links (the same
    # figure its ram check judges), plus the margin
    kernels = firmware_arena(artifact, ctx.plan.profiles[0].cpu, runnable=ctx.tflm_ok)
    with ctx.stage("export", "Writing the firmware package"):
        if kernels is None:  # no op resolver and no arena for a model TFLM cannot run
            ctx.progress.message("firmware headers not written: the model has ops TFLM lacks")
            package = {
                **files.models,
                **model_data_sources(artifact.data, ctx.name, source=ctx.source),
            }
        else:
            spec = _export_spec(ctx, artifact, files, kernels)
            package = {**files.models, **export_package(spec)}
            ctx.firmware = firmware_info(spec, package, ctx.plan.profiles[0].cpu, ctx.lut_info)
        ctx.files = {**package, **ctx.files}  # the package first, then what the targets made


def _export_spec(
    ctx: BuildContext, artifact: ModelArtifact, files: ModelFiles, arena: KernelArena
) -> ExportSpec:
    options, recipe, data = ctx.options, ctx.plan.recipe, ctx.data
    return ExportSpec(
        model=artifact.data,
        model_file=files.firmware,
        extra_files=files.names,
        # the names (from the sidecar) for the headers' comments; the arrays hold none
        parsed=artifact.model,
        name=ctx.name,
        source=ctx.source,
        target=ctx.plan.profiles[0].name,
        runtime=load_runtime("tflite-micro"),
        arena_bytes=arena.measured_bytes,
        arena_margin_percent=options.arena_margin,
        arena_extra_bytes=arena.extra_bytes,
        arena_kernels=arena.kernels,
        class_names=data.class_names,
        preprocessing=data.preprocessing,
        raw_scale=data.raw_scale,
        recipe=None
        if recipe is None
        else f"{recipe.name} ({recipe.source}): {' -> '.join(recipe.types)}",
        versions=tool_versions(),
        lang=options.c_lang,
        section=options.section,
        layout=options.layout,
    )


def assemble_checks(ctx: BuildContext) -> list[Check]:
    """report.json's top-level checks: every group by its name, in CHECK_ORDER."""
    first = ctx.sections[0].checks
    groups = {
        **ctx.checks,
        "target_common": [c for c in first if c.name in TARGET_COMMON_CHECKS],
        "target": [c for c in first if c.name not in TARGET_COMMON_CHECKS],
    }
    unknown = set(groups) - set(CHECK_ORDER)
    if unknown:  # a phase's checks would be lost: a bug, not bad input
        raise ValueError(f"check groups {sorted(unknown)} are not in CHECK_ORDER")
    return [check for name in CHECK_ORDER for check in groups.get(name, [])]


def build_report(ctx: BuildContext) -> BuildReport:
    flat, checks, data = ctx.flat, assemble_checks(ctx), ctx.data
    first = ctx.sections[0]
    return BuildReport(
        ok=all(c.ok for c in checks) and all(s.ok for s in ctx.sections),
        target=first.target,
        model=ModelInfo(
            name=ctx.name,
            source=ctx.source,
            input_shape=list(flat.input_tensor().shape),
            output_shape=list(flat.output_tensor().shape),
            io_type=ctx.plan.io_type,
            activations=_activations(ctx),
            ops=list(flat.op_names),
            parameters=ctx.parameters
            if ctx.parameters is not None
            else int(ctx.model.count_params()),
            input_parameters=ctx.input_parameters,
        ),
        memory=first.memory,
        accuracy=ctx.evaluation_result.accuracy,
        data=DataInfo(
            source=data.source,
            calibration_samples=len(ctx.calibration),
            evaluation_samples=len(ctx.evaluation),
            labels=data.labels,
            preprocessing=data.preprocessing,
            warnings=list(ctx.warnings),
            max_samples=ctx.options.max_samples if ctx.options.data is not None else None,
            sampled_from=data.sampled_from,
        ),
        checks=checks,
        artifacts=[
            Artifact(path, len(content), hashlib.sha256(content).hexdigest())
            for path, content in ctx.files.items()
        ],
        stages=ctx.stages,
        versions=tool_versions(),
        layers=ctx.layers,
        targets=ctx.sections,
        firmware=ctx.firmware,
        model_bytes=[
            byte_breakdown(ctx.tflite, file="converted"),
            *(byte_breakdown(data, file=path) for path, data in model_files(ctx).models.items()),
        ],
        precision=None if ctx.precision is None else ctx.precision.report,
    )


# The build, in order; each phase is a function of the context (and skips itself when
# its option or input is absent), so a test can run any prefix and look at the context.
PHASES: tuple[Callable[[BuildContext], None], ...] = (
    load_model,
    load_data,
    translate_keras3,
    input_dtype,
    validate_recipe,
    train_example,
    run_recipe,
    fold_batch_norms,
    convert,
    choose_precision,
    int4_weights,
    measure_arena,
    batch_norm_cost,
    lut_compress,
    lean,
    check_targets,
    evaluate,
    phone_variants,
    compression_proof,
    layer_error,
    export,
)


def write_build(
    result: BuildResult, out: Path, extra: dict[str, bytes] | None = None, html: str = ""
) -> None:
    """The build's files, report.json and report.html into ``out``, all at once; ``extra``
    files and ``html`` (a report.html section) are edgec fit's."""
    from edgec.report.html import render_html

    report = result.report
    write_outputs(
        out,
        {
            **result.files,
            "report.json": report.to_json().encode(),
            "report.html": render_html(report, html).encode(),
            **(extra or {}),
        },
    )


def _validate(options: BuildOptions) -> _Plan:
    """Check every input that can be checked without TensorFlow, before any work."""
    check_values(options)  # choices and ranges, as click checks them on the command line
    profiles = load_targets(options.target)
    overrides = parse_budget(options.budget) if options.budget is not None else {}
    io_type = model_io_type(options.io_type, options.activations)
    for variant in options.phone_variants:
        if variant not in PHONE_VARIANTS:
            raise InputError(
                f"unknown phone variant '{variant}'", hint=f"use {', '.join(PHONE_VARIANTS)}"
            )
    if options.phone_variants and not any(p.kind == "phone" for p in profiles):
        raise InputError(
            "--phone-variants needs a phone target",
            hint="add one, e.g. `--target cortex-m4,android-arm64`",
        )
    if options.section is not None:
        check_section(options.section)
    recipe = _recipe(options)
    _check_per_channel(options.per_channel, recipe)
    _check_int4(options, recipe, profiles)
    _check_int16_layers(options, recipe, profiles)
    if recipe is not None and options.activations == "int16" and "qat" in recipe.types:
        # TF-MOT's QAT (0.8.1) trains 8-bit fake quantization of the activations: the
        # ranges it learns are int8 ones, and TFLite's 16x8 mode has no QAT scheme to
        # take them. Refused before any training, rather than shipping a model whose
        # training optimised for a different quantization than the one it gets.
        raise UsageError(
            f"recipe '{recipe.name}' has a qat stage, which cannot be combined with "
            "--activations int16: TF-MOT's QAT trains int8 activation ranges only",
            hint="drop the qat stage (int16 post-training quantization is usually close "
            "to float), or build with --activations int8",
        )
    if options.out is not None:
        prepare_output_dir(options.out, inputs=options.input_paths())
    if options.model is not None:
        # only whether it is there, and its kind by name: the file itself is read in the
        # model process
        check_model_path(options.model)
        if options.data is None:
            raise InputError(
                f"no --data for {options.model}: int8 calibration needs real samples",
                hint="give --data samples.npz (arrays x and, for accuracy, y) or an .npy, "
                "about 300 or more samples in the model's input shape",
            )
    if options.data is not None:  # headers, members and images: before TensorFlow starts
        check_data_file(options.data, max_samples=options.max_samples)
    return _Plan(profiles=profiles, overrides=overrides, recipe=recipe, io_type=io_type)


def _check_int4(
    options: BuildOptions, recipe: Recipe | None, profiles: list[TargetProfile]
) -> None:
    """int4 weights (``--weights int4``, or a qat stage's ``weight_bits = 4``): refused
    before any training where the targets or the other options cannot take them."""
    qat = recipe.stage("qat") if recipe is not None else None
    trained = qat is not None and qat["weight_bits"] == 4
    if trained and options.weights == "int8":
        raise UsageError(
            "--weights int8 contradicts the recipe, whose qat stage trains weight_bits = 4",
            hint="drop --weights, or set weight_bits = 8 in the qat stage",
        )
    mixed = recipe.stage("mixed_precision") if recipe is not None else None
    if mixed is not None and options.weights is not None:
        raise UsageError(
            f"--weights {options.weights} contradicts the recipe's mixed_precision stage, "
            "which chooses the weights per layer",
            hint="drop --weights, or drop the mixed_precision stage",
        )
    chosen = options.weights == "auto" or (mixed is not None and "int4" in mixed["weights"])
    if not (trained or options.weights == "int4" or chosen):
        return
    if options.activations == "int16":
        raise UsageError(
            "int4 weights take int8 activations only (TFLM's int4 kernels are int8 x int4)",
            hint="build with --activations int8, or without int4 weights",
        )
    for profile in profiles:  # the runtime's fact (runtimes/*.toml: int4_weights)
        if not profile.runtime.int4_weights:
            raise UsageError(
                f"int4 weights do not run on {profile.name} ({profile.runtime.title}): "
                "only TFLM and LiteRT have int4 kernels (Vela compiles 8- and 16-bit "
                "operators, the Edge TPU compiler int8 ones)",
                hint=f"build {profile.name} with int8 weights (drop --weights int4 or "
                "auto, weight_bits = 4, or the mixed_precision stage's int4)",
            )


def _check_int16_layers(
    options: BuildOptions, recipe: Recipe | None, profiles: list[TargetProfile]
) -> None:
    """int16 layers chosen per layer (``--activations auto``, a mixed_precision stage's
    int16): refused before any training where the targets or the recipe cannot take them."""
    if not _int16_layers(options, recipe):
        return
    stage = recipe.stage("mixed_precision") if recipe is not None else None
    if stage is not None and options.activations != "int8":
        raise UsageError(
            f"--activations {options.activations} contradicts the recipe's mixed_precision "
            "stage, which chooses the activations per layer",
            hint="drop --activations, or drop the mixed_precision stage",
        )
    if recipe is not None and "qat" in recipe.types:
        raise UsageError(  # as for --activations int16 (see _validate)
            "int16 layers cannot follow a qat stage: TF-MOT's QAT trains int8 activation "
            "ranges only",
            hint="drop the qat stage, or keep int8 activations",
        )
    for profile in profiles:
        if "int16" not in profile.tensor_dtypes:
            raise UsageError(
                f"int16 activations do not run on {profile.name} ({profile.runtime.title})",
                hint=f"build {profile.name} with --activations int8",
            )


def _check_per_channel(mode: str, recipe: Recipe | None) -> None:
    if mode != "auto" and recipe is not None and "qat" in recipe.types:
        # TF-MOT's QAT trains Dense kernels per tensor and Conv kernels per channel, and
        # the converter keeps what training chose whatever its flags (measured here): a
        # qat stage cannot honour always or never, so the combination is refused before
        # any training rather than shipping something else than asked.
        raise UsageError(
            f"--per-channel {mode} cannot be combined with recipe '{recipe.name}', whose "
            "qat stage fixes each layer's weights in training (TF-MOT: Dense per tensor, "
            "Conv per channel) and the converter keeps them",
            hint="drop --per-channel (auto; the report lists what each layer has), or "
            "drop the qat stage",
        )


def _recipe(options: BuildOptions) -> Recipe | None:
    short = recipe_from_options(
        **options.stages,
        epochs=options.epochs if options.recipe is None else None,
    )
    if options.recipe is None:
        return short
    if short is not None or options.epochs is not None:
        raise InputError(
            "--recipe cannot be combined with a stage's short form (--prune, --qat, ...) "
            "or --epochs",
            hint="put every stage and its epochs in the recipe, or use only the short forms",
        )
    return load_recipe(options.recipe)


def _model_input(flat: TfliteModel, x: np.ndarray) -> np.ndarray:
    from edgec.artifact.runtimes import quantize

    return quantize(x, flat.input_tensor())
