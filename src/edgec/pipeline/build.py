"""``edgec build``: every stage, in order, timed, with nothing written until the end."""

from __future__ import annotations

import contextlib
import hashlib
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from edgec.datasets import load_dataset, split_calibration
from edgec.datasets.split import (
    DEFAULT_CALIBRATION_SAMPLES,
    split_holdout,
    split_validation,
)
from edgec.errors import InputError
from edgec.firmware_export import (
    c_identifier,
    model_data_sources,
    prepare_output_dir,
    write_outputs,
)
from edgec.pipeline.convert import IO_TYPES
from edgec.pipeline.recipe import Recipe, load_recipe, recipe_from_options
from edgec.report import Artifact, BuildReport, Check, DataInfo, Memory, ModelInfo, Stage
from edgec.targets import TargetProfile, TfliteModel, load_target, parse_budget
from edgec.targets import checks as target_checks
from edgec.targets.arena import METHOD as ARENA_METHOD
from edgec.targets.arena import measure_arena
from edgec.targets.weights import compression_checks

EVAL_RUNTIME_SAMPLES = 300  # LiteRT-vs-TFLM comparison: enough to catch kernel mismatches


class Progress:
    """What the build tells its user while it runs; the CLI draws it, tests ignore it."""

    def stage(self, name: str, description: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def message(self, text: str) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    model: Path | None  # None: the built-in example
    target: str
    data: Path | None = None
    out: Path = Path("edgec-out")
    budget: str | None = None
    io_type: str = "int8"
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    max_accuracy_drop: float = 2.0
    name: str | None = None
    debug: bool = False
    # compression: a recipe (built-in name or TOML file), or the short forms
    recipe: str | None = None
    distill: str | None = None  # width multiplier ("0.5") or a student model file
    prune: str | None = None  # final sparsity ("0.75") or "2:4"
    cluster: int | None = None  # clusters per kernel
    qat: bool = False
    epochs: int | None = None  # overrides every short-form stage's epochs


@dataclass
class BuildResult:
    report: BuildReport
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """Everything about the inputs that can be checked before TensorFlow starts."""

    profile: TargetProfile
    overrides: dict[str, int]
    recipe: Recipe | None


def run_build(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress()
    plan = _validate(options)
    stages: list[Stage] = []

    @contextlib.contextmanager
    def stage(name: str, description: str) -> Iterator[dict]:
        start = time.perf_counter()
        metrics: dict = {}
        with progress.stage(name, description):
            yield metrics
        stages.append(Stage(name, round(time.perf_counter() - start, 3), metrics))

    recipe = plan.recipe
    if options.model is None:
        from edgec.pipeline.example import NAME, example_data, example_model

        train, data = example_data()
        model = example_model()  # trained below, after the recipe is validated
        name, source = options.name or NAME, "built-in example: digits CNN (scikit-learn digits)"
    else:
        from edgec.pipeline.model_io import load_keras_model

        with stage("load_model", f"Loading {options.model}"):
            model = load_keras_model(options.model)
        name, source = options.name or options.model.stem, str(options.model)
    name = c_identifier(name)
    input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])

    with stage("load_data", "Loading calibration and evaluation data"):
        if options.data is not None:  # a user model always has data (see _validate)
            data = load_dataset(options.data, input_shape)
        if recipe is not None and options.model is not None:
            train, data = split_holdout(data, 2 * options.calibration_samples)
        calibration, evaluation = split_calibration(data, options.calibration_samples)
        if recipe is not None:
            # The built-in example itself still trains on its whole training split (the
            # same model as without a recipe); the compression stages fit on fit_on.
            fit_on, validation = split_validation(train)

    compression = None
    if recipe is not None:
        from edgec.pipeline import stages as compress

        with stage("validate_recipe", f"Checking recipe {recipe.name} against the model"):
            compression = compress.validate(recipe, model, fit_on)

    if options.model is None:
        from edgec.pipeline.example import train_example_model

        with stage("train_example", "Training the built-in example (digits CNN)"):
            train_example_model(
                model,
                train,
                on_epoch=lambda e, n, logs: progress.message(
                    f"epoch {e}/{n}: loss {logs.get('loss', 0):.3f}, "
                    f"accuracy {logs.get('accuracy', 0) * 100:.1f}%"
                ),
            )

    input_model_out = None
    parameters = None  # QAT adds quantizer variables: the stages count the weights
    if compression is not None:
        input_model_out = model.predict(evaluation.x, batch_size=256, verbose=0)
        pruned = clustered = False
        for sp in compression.stages:
            with stage(sp.spec.type, _describe(sp.spec)) as metrics:
                done = compress.run_stage(
                    sp,
                    compression,
                    model,
                    fit_on,
                    validation,
                    pruned=pruned,
                    clustered=clustered,
                    on_epoch=progress.message,
                )
                metrics.update(done.metrics)
            model = done.model
            parameters = done.metrics.get("parameters", parameters)
            pruned |= sp.spec.type == "prune"
            clustered |= sp.spec.type == "cluster"

    from edgec.pipeline.convert import convert_int8

    with stage(
        "convert", f"Converting to full-integer int8 ({len(calibration)} calibration samples)"
    ):
        tflite = convert_int8(
            model, calibration.x, io_type=options.io_type, quiet=not options.debug
        )
    flat = TfliteModel.from_bytes(tflite, source="the converted model")

    profile = plan.profile
    with stage("check", f"Checking against {profile.name}"):
        checks = [
            target_checks.check_ops(flat, profile),
            target_checks.check_dtypes(flat, profile, options.io_type),
            target_checks.check_static_shapes(flat),
        ]
    runnable = checks[0].ok

    arena: int | None = None
    if runnable:
        with stage("measure_arena", "Measuring the exact TFLM arena"):
            sample = _model_input(flat, evaluation.x[:1])
            arena = measure_arena(tflite, [sample]).bytes

    from edgec.pipeline import verify

    with stage("evaluate", f"Evaluating float vs int8 on {len(evaluation)} samples"):
        float_out = model.predict(evaluation.x, batch_size=256, verbose=0)
        x_q = _model_input(flat, evaluation.x)
        litert_raw = verify.run_litert(tflite, x_q)
        result = verify.evaluate(
            float_out,
            verify.dequantize(litert_raw, flat.output_tensor()),
            evaluation,
            max_drop=options.max_accuracy_drop,
        )
        checks.append(result.check)
        if input_model_out is not None:
            result = _with_input_model_accuracy(result, input_model_out, evaluation)
        if arena is not None:
            n = min(len(x_q), EVAL_RUNTIME_SAMPLES)
            tflm_raw = verify.run_tflm(tflite, x_q[:n], arena)
            checks.append(verify.agreement_check(litert_raw[:n], tflm_raw))
        else:
            checks.append(Check("litert_vs_tflm", False, "not run: the model has ops TFLM lacks"))

    if compression is not None:
        checks.extend(compression_checks(flat, compression.expectations()))

    budget = profile.budget.overridden(plan.overrides)
    checks.append(target_checks.check_budget("flash", len(tflite), budget.flash_bytes, "model"))
    checks.append(target_checks.check_budget("ram", arena, budget.ram_bytes, "TFLM arena"))

    with stage("export", "Writing C arrays"):
        files = {"model.tflite": tflite, **model_data_sources(tflite, name, source=source)}

    report = BuildReport(
        ok=all(c.ok for c in checks),
        target=profile.name,
        model=ModelInfo(
            name=name,
            source=source,
            input_shape=list(flat.input_tensor().shape),
            output_shape=list(flat.output_tensor().shape),
            io_type=options.io_type,
            ops=list(flat.op_names),
            parameters=parameters if parameters is not None else int(model.count_params()),
        ),
        memory=Memory(
            flash_bytes=len(tflite),
            arena_bytes=arena,
            flash_budget_bytes=budget.flash_bytes,
            ram_budget_bytes=budget.ram_bytes,
            arena_method=ARENA_METHOD if arena is not None else "not measured",
        ),
        accuracy=result.accuracy,
        data=DataInfo(
            source=data.source,
            calibration_samples=len(calibration),
            evaluation_samples=len(evaluation),
            labels=data.labels,
            preprocessing=data.preprocessing,
        ),
        checks=checks,
        artifacts=[
            Artifact(path, len(content), hashlib.sha256(content).hexdigest())
            for path, content in files.items()
        ],
        stages=stages,
        versions=tool_versions(),
    )
    return BuildResult(report=report, files=files)


def write_build(result: BuildResult, out: Path) -> None:
    write_outputs(out, {**result.files, "report.json": result.report.to_json().encode()})


def _validate(options: BuildOptions) -> _Plan:
    """Check every input that can be checked without TensorFlow, before any work."""
    profile = load_target(options.target)
    overrides = parse_budget(options.budget) if options.budget is not None else {}
    if options.io_type not in IO_TYPES:
        raise InputError(f"unknown --io-type '{options.io_type}' (use {', '.join(IO_TYPES)})")
    if options.calibration_samples < 1:
        raise InputError("--calibration-samples must be at least 1")
    recipe = _recipe(options)
    prepare_output_dir(options.out)
    if options.model is not None:
        from edgec.pipeline.model_io import inspect_model_file

        inspect_model_file(options.model)
        if options.data is None:
            raise InputError(
                f"no --data for {options.model}: int8 calibration needs real samples",
                hint="give --data samples.npz (arrays x and, for accuracy, y) or an .npy, "
                "about 300 or more samples in the model's input shape",
            )
    if options.data is not None and not options.data.exists():
        raise InputError(f"data {options.data} does not exist")
    return _Plan(profile=profile, overrides=overrides, recipe=recipe)


def _recipe(options: BuildOptions) -> Recipe | None:
    short = recipe_from_options(
        distill=options.distill,
        prune=options.prune,
        cluster=options.cluster,
        qat=options.qat,
        epochs=options.epochs if options.recipe is None else None,
    )
    if options.recipe is None:
        return short
    if short is not None or options.epochs is not None:
        raise InputError(
            "--recipe cannot be combined with --distill/--prune/--cluster/--qat/--epochs",
            hint="put every stage and its epochs in the recipe, or use only the short forms",
        )
    return load_recipe(options.recipe)


def _describe(spec) -> str:
    what = {
        "distill": "Distilling into the student",
        "prune": "Pruning",
        "cluster": "Clustering",
        "qat": "Quantization-aware training",
    }[spec.type]
    return f"{what} ({spec['epochs']} epoch{'s' if spec['epochs'] != 1 else ''})"


def _with_input_model_accuracy(result, input_out: np.ndarray, evaluation):
    """Add the uncompressed input model's float figure to the accuracy detail."""
    from dataclasses import replace

    from edgec.pipeline.verify import Evaluation

    flat = input_out.reshape(len(input_out), -1)
    detail = dict(result.accuracy.detail)
    if result.accuracy.metric == "top1":
        detail["input_model_float"] = round(float(np.mean(flat.argmax(1) == evaluation.y) * 100), 2)
    elif result.accuracy.metric == "rmse":
        y = evaluation.y.reshape(len(flat), -1)
        detail["input_model_float"] = round(float(np.sqrt(np.mean((flat - y) ** 2))), 6)
    return Evaluation(replace(result.accuracy, detail=detail), result.check)


def _model_input(flat: TfliteModel, x: np.ndarray) -> np.ndarray:
    from edgec.pipeline.verify import quantize

    return quantize(x, flat.input_tensor())


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in (
        "edgec",
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "ai-edge-litert",
        "tflite-micro",
        "numpy",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
