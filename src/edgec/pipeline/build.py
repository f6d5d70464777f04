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
    LAYOUTS,
    ExportSpec,
    c_identifier,
    check_section,
    export_package,
    model_data_sources,
    prepare_output_dir,
    write_outputs,
)
from edgec.firmware_export.c_array import LANGUAGES
from edgec.firmware_export.toolchain import measure_model_object
from edgec.pipeline.convert import IO_TYPES, PHONE_VARIANTS
from edgec.pipeline.lut import compress_lut_verified
from edgec.report import (
    Artifact,
    BuildReport,
    Check,
    DataInfo,
    Firmware,
    ModelInfo,
    Stage,
    TargetSection,
)
from edgec.stages import get_stage, stage_types
from edgec.stages.recipe import Recipe, load_recipe, recipe_from_options
from edgec.targets import TargetProfile, TfliteModel, load_targets, parse_budget
from edgec.targets.analyzers import analyze_target
from edgec.targets.analyzers.mcu import tflm_arena
from edgec.targets.layers import analyze_layers
from edgec.targets.profile import load_runtime
from edgec.targets.weights import compression_checks

EVAL_RUNTIME_SAMPLES = 300  # LiteRT-vs-TFLM comparison: enough to catch kernel mismatches
COMPRESSIONS = ("lut",)


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
    out: Path | None = Path("edgec-out")  # None: nothing is written (the Python API)
    budget: str | None = None
    io_type: str = "int8"
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    max_accuracy_drop: float = 2.0
    name: str | None = None
    phone_variants: tuple[str, ...] = ()  # float16, dynamic-range (phone targets only)
    debug: bool = False
    # firmware package
    compress: str | None = None  # "lut": tflite-micro LUT compression of clustered weights
    layout: str = "plain"
    c_lang: str = "cc"
    section: str | None = None
    arena_margin: float = 10.0  # percent added to the measured arena for kTensorArenaSize
    # compression: a recipe (built-in name or TOML file), or the short forms
    recipe: str | None = None
    distill: str | None = None  # width multiplier ("0.5") or a student model file
    prune: str | None = None  # final sparsity ("0.75") or "2:4"
    cluster: int | None = None  # clusters per kernel
    qat: bool = False
    epochs: int | None = None  # overrides every short-form stage's epochs
    custom_objects: str | None = None  # a .py file or module with the model's own layers


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


def run_build(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    progress = progress or Progress()
    plan = _validate(options)
    stages: list[Stage] = []
    from edgec.pipeline.convert import start_converter

    start_converter()  # the conversion child imports TensorFlow while this process works

    @contextlib.contextmanager
    def stage(name: str, description: str) -> Iterator[dict]:
        start = time.perf_counter()
        metrics: dict = {}
        with progress.stage(name, description):
            yield metrics
        stages.append(Stage(name, round(time.perf_counter() - start, 3), metrics))

    recipe = plan.recipe
    custom_objects: dict = {}
    if options.model is None:
        from edgec.pipeline.example import NAME, example_data, example_model

        train, data = example_data()
        model = example_model()  # trained below, after the recipe is validated
        name, source = options.name or NAME, "built-in example: digits CNN (scikit-learn digits)"
    else:
        from edgec.pipeline.model_io import load_custom_objects, load_keras_model

        custom_objects = load_custom_objects(options.custom_objects)
        with stage("load_model", f"Loading {options.model}"):
            model = load_keras_model(options.model, custom_objects)
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

    from edgec.pipeline.convert import is_keras3, needs_tf_keras

    if is_keras3(model) and (recipe is not None or needs_tf_keras(model)):
        from edgec.pipeline.keras3 import translate

        with stage("translate_keras3", "Rebuilding the Keras 3 model as tf_keras") as metrics:
            translation = translate(model, calibration.x, custom_objects)
            metrics.update(max_abs_diff=translation.max_abs_diff, layers_rebuilt=translation.layers,
                           keras_version=translation.keras_version)  # fmt: skip
        model = translation.model

    recipe_plan = None
    if recipe is not None:
        from edgec.stages import plan as compress

        with stage("validate_recipe", f"Checking recipe {recipe.name} against the model"):
            recipe_plan = compress.validate(recipe, model, fit_on)

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
    if recipe_plan is not None:
        input_model_out = model.predict(evaluation.x, batch_size=256, verbose=0)
        for sp in recipe_plan.stages:
            with stage(sp.spec.type, get_stage(sp.spec.type).describe(sp.spec)) as metrics:
                done = compress.run_stage(
                    sp, recipe_plan, model, fit_on, validation, on_epoch=progress.message
                )
                metrics.update(done.metrics.to_dict())
            model = done.model
            # QAT moved an input Rescaling into the input quantization: the model now
            # takes scaled values, and firmware scales raw values (INPUT_RAW_SCALE).
            data, calibration, evaluation = (
                compress.scaled(d, done.input_scale) for d in (data, calibration, evaluation)
            )
            parameters = done.parameters if done.parameters is not None else parameters

    from edgec.pipeline.convert import convert_int8
    from edgec.pipeline.recurrent import unroll_recurrent

    with stage(
        "convert", f"Converting to full-integer int8 ({len(calibration)} calibration samples)"
    ):
        tflite = convert_int8(
            unroll_recurrent(model, calibration.x[:16]),
            calibration.x,
            io_type=options.io_type,
            quiet=not options.debug,
        )
    flat = TfliteModel.from_bytes(tflite, source="the converted model")

    # The TFLM arena of the converted model (measured once per model, cached).
    tflm_ok = all(name in load_runtime("tflite-micro").ops for name in flat.op_names)
    with stage("measure_arena", "Measuring the exact TFLM arena"):
        arena, _ = tflm_arena(tflite, flat, runnable=tflm_ok)
    x_q = _model_input(flat, evaluation.x)

    # What ships: the converted model, or its LUT-compressed form. Targets are checked
    # against what ships, so flash and arena budgets see the compressed model.
    shipped, lut_info = tflite, None
    model_checks: list[Check] = []
    if options.compress == "lut":
        with stage("compress", "LUT-compressing clustered weights (tflite-micro compressor)"):
            if arena is None:
                model_checks.append(Check("lut_bit_identical", False, "not run: TFLM lacks ops"))
            else:
                lut = compress_lut_verified(tflite, x_q, arena)
                shipped, lut_info = lut.model, lut.info()
                model_checks.append(lut.check)
    shipped_flat = TfliteModel.from_bytes(shipped, source="the shipped model")

    sections: list[TargetSection] = []
    target_files: dict[str, bytes] = {}
    for profile in plan.profiles:
        with stage(f"check:{profile.name}", f"Checking against {profile.name} ({profile.kind})"):
            section, produced = analyze_target(shipped, shipped_flat, profile, plan.overrides)
        sections.append(section)
        target_files.update(produced)

    from edgec.pipeline import verify

    with stage("evaluate", f"Evaluating float vs int8 on {len(evaluation)} samples"):
        float_out = model.predict(evaluation.x, batch_size=256, verbose=0)
        final = next(op for op in flat.operators if flat.outputs[0] in op.outputs)
        keep = [final.inputs[0]] if final.name in verify.AMPLIFYING else []
        n = min(len(x_q), EVAL_RUNTIME_SAMPLES)
        litert = verify.run_litert(tflite, x_q, keep=keep)
        result = verify.evaluate(
            float_out,
            verify.dequantize(litert.raw, flat.output_tensor()),
            evaluation,
            max_drop=options.max_accuracy_drop,
        )
        if input_model_out is not None:
            result = verify.with_input_model(
                result, input_model_out, evaluation, max_drop=options.max_accuracy_drop
            )
        model_checks.insert(0, result.check)
        if arena is not None:
            # With the exact arena: every evaluation sample must run in it.
            tflm = verify.run_tflm(tflite, x_q[:n], arena)
            if keep:
                tflm = verify.Outputs(tflm.raw, verify.run_tflm(tflite, x_q[:n], arena, keep).kept)
            model_checks.insert(
                1,
                verify.agreement_check(
                    litert.first(n), tflm, final_op=final.name, final_input=final.inputs[0]
                ),
            )
        else:
            model_checks.insert(
                1, Check("litert_vs_tflm", False, "not run: the model has ops TFLM lacks")
            )
    if options.phone_variants:
        from edgec.pipeline.variants import add_phone_variants

        with stage("phone_variants", f"Phone variants: {', '.join(options.phone_variants)}"):
            sections, variant_files = add_phone_variants(
                model,
                options.phone_variants,
                sections,
                plan.profiles,
                evaluation,
                float_out,
                max_drop=options.max_accuracy_drop,
                quiet=not options.debug,
            )
        target_files.update(variant_files)
    if recipe_plan is not None:  # pruning/2:4/clusters must survive into the int8 model
        model_checks.extend(compression_checks(flat, recipe_plan.expectations()))
    first, first_profile = sections[0], plan.profiles[0]
    # The first target's checks stay at the top level (report.json of one target is
    # unchanged); every target, the first included, also has its section in `targets`.
    checks = [*first.checks[:3], *model_checks, *first.checks[3:]]

    from edgec.pipeline.layer_error import with_layer_errors

    with stage("analyze_layers", "Measuring per-layer float vs int8 error"):
        layers, reference = analyze_layers(flat), model
        if is_keras3(model):  # compared through its proven tf_keras twin, if it has one
            from edgec.pipeline.keras3 import tf_keras_twin

            scopes = {part for op in flat.operators for part in op.location.split("/")}
            reference = tf_keras_twin(model, calibration.x, custom_objects, scopes)
        if reference is not None and reference.layers:  # a SavedModel signature has none
            layers = with_layer_errors(layers, reference, tflite, flat, calibration.x)

    shipped_arena, _ = tflm_arena(shipped, shipped_flat, runnable=tflm_ok)
    firmware: Firmware | None = None
    with stage("export", "Writing the firmware package"):
        if shipped_arena is None:  # no op resolver and no arena for a model TFLM cannot run
            progress.message("firmware headers not written: the model has ops TFLM lacks")
            files = {"model.tflite": shipped, **model_data_sources(shipped, name, source=source)}
        else:
            spec = ExportSpec(
                model=shipped,
                name=name,
                source=source,
                target=first_profile.name,
                runtime=load_runtime("tflite-micro"),
                arena_bytes=shipped_arena,
                arena_margin_percent=options.arena_margin,
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
            files = export_package(spec)
            firmware = _firmware_info(spec, files, first_profile.cpu, lut_info)
        files.update(target_files)

    report = BuildReport(
        ok=all(c.ok for c in checks) and all(s.ok for s in sections),
        target=first.target,
        model=ModelInfo(
            name=name,
            source=source,
            input_shape=list(flat.input_tensor().shape),
            output_shape=list(flat.output_tensor().shape),
            io_type=options.io_type,
            ops=list(flat.op_names),
            parameters=parameters if parameters is not None else int(model.count_params()),
        ),
        memory=first.memory,
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
        layers=layers,
        targets=sections,
        firmware=firmware,
    )
    return BuildResult(report=report, files=files)


def write_build(result: BuildResult, out: Path) -> None:
    from edgec.report_html import render_html

    report = result.report
    write_outputs(
        out,
        {
            **result.files,
            "report.json": report.to_json().encode(),
            "report.html": render_html(report).encode(),
        },
    )


def _validate(options: BuildOptions) -> _Plan:
    """Check every input that can be checked without TensorFlow, before any work."""
    profiles = load_targets(options.target)
    overrides = parse_budget(options.budget) if options.budget is not None else {}
    if options.io_type not in IO_TYPES:
        raise InputError(f"unknown --io-type '{options.io_type}' (use {', '.join(IO_TYPES)})")
    for variant in options.phone_variants:
        if variant not in PHONE_VARIANTS:
            raise InputError(
                f"unknown phone variant '{variant}'", hint=f"use {', '.join(PHONE_VARIANTS)}"
            )
    if options.phone_variants and not any(p.kind == "phone" for p in profiles):
        raise InputError(
            "--phone-variants needs a phone target",
            hint="add one, e.g. --target cortex-m4,android-arm64",
        )
    if options.calibration_samples < 1:
        raise InputError("--calibration-samples must be at least 1")
    if options.compress is not None and options.compress not in COMPRESSIONS:
        raise InputError(f"unknown --compress '{options.compress}' (use lut)")
    if options.layout not in LAYOUTS:
        raise InputError(f"unknown --layout '{options.layout}' (use {', '.join(LAYOUTS)})")
    if options.c_lang not in LANGUAGES:
        raise InputError(f"unknown --c-lang '{options.c_lang}' (use {', '.join(LANGUAGES)})")
    if options.section is not None:
        check_section(options.section)
    if not 0 <= options.arena_margin <= 1000:
        raise InputError(f"--arena-margin {options.arena_margin:g} is not a percentage (0-1000)")
    recipe = _recipe(options)
    if options.out is not None:
        prepare_output_dir(options.out)
    if options.model is not None:
        from edgec.pipeline.model_io import SAVEDMODEL, inspect_model_file

        if inspect_model_file(options.model) == SAVEDMODEL and recipe is not None:
            raise InputError(
                f"model {options.model} is a SavedModel without Keras metadata: a recipe "
                "needs the Keras model",
                hint="a plain build (no recipe) works; for a recipe give the .keras file",
            )
        if options.data is None:
            raise InputError(
                f"no --data for {options.model}: int8 calibration needs real samples",
                hint="give --data samples.npz (arrays x and, for accuracy, y) or an .npy, "
                "about 300 or more samples in the model's input shape",
            )
    if options.data is not None and not options.data.exists():
        raise InputError(f"data {options.data} does not exist")
    return _Plan(profiles=profiles, overrides=overrides, recipe=recipe)


def _firmware_info(
    spec: ExportSpec, files: dict[str, bytes], cpu: str, compression: dict | None
) -> Firmware:
    from edgec.firmware_export.ops import resolver_methods
    from edgec.firmware_export.settings import ArenaSize

    source = next(v for k, v in files.items() if k.endswith(f"model_data.{spec.lang}"))
    header = next(v for k, v in files.items() if k.endswith("model_data.h"))
    size = measure_model_object(source, header, lang=spec.lang, cpu=cpu)
    note = (
        f"measured: {size.command}"
        if size is not None
        else f"not measured: arm-none-eabi-gcc/-size not found or no flags for CPU '{cpu}'"
    )
    flat = TfliteModel.from_bytes(spec.model)
    return Firmware(
        layout=spec.layout,
        c_language=spec.lang,
        section=spec.section,
        tensor_arena_bytes=ArenaSize(spec.arena_bytes, spec.arena_margin_percent).bytes,
        arena_margin_percent=spec.arena_margin_percent,
        resolver_methods=[m for _, m in resolver_methods(flat, spec.runtime)],
        compression=compression,
        object_size=None
        if size is None
        else {
            "cpu": size.cpu,
            "text": size.text,
            "data": size.data,
            "bss": size.bss,
            "flash_bytes": size.flash_bytes,
            "ram_bytes": size.ram_bytes,
        },
        object_size_note=note,
    )


def _recipe(options: BuildOptions) -> Recipe | None:
    short = recipe_from_options(
        **{t: getattr(options, t, None) for t in stage_types()},
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


def _model_input(flat: TfliteModel, x: np.ndarray) -> np.ndarray:
    from edgec.pipeline.verify import quantize

    return quantize(x, flat.input_tensor())


_PACKAGES = (
    "edgec",
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "ai-edge-litert",
    "tflite-micro",
    "ethos-u-vela",
    "numpy",
)


def tool_versions(packages: tuple[str, ...] = _PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
