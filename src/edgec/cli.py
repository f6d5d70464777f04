"""The ``edgec`` command line. TensorFlow is imported only inside commands that need it."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgec import __version__
from edgec.datasets.loading import DEFAULT_MAX_SAMPLES
from edgec.datasets.split import DEFAULT_CALIBRATION_SAMPLES
from edgec.errors import EdgecError, UsageError, printable, runnable_hint
from edgec.export.layouts import LAYOUTS
from edgec.pipeline.convert import ACTIVATIONS, IO_TYPES, PER_CHANNEL_MODES
from edgec.stages import get_stage, stage_types
from edgec.targets.arena import DEFAULT_ARENA_MARGIN

EXIT_OK, EXIT_ERROR, EXIT_CHECK_FAILED = 0, 1, 3
_F = TypeVar("_F", bound=Callable[..., Any])

_state: dict[str, Any] = {"debug": False, "verbosity": 0, "argv": []}


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _state["debug"] = True


debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show tracebacks and the converter's log.",
)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value:
        return
    level = -1 if param.name == "quiet" else 1
    if _state["verbosity"] not in (0, level):
        raise click.UsageError("--quiet and --verbose contradict each other")
    _state["verbosity"] = level


def verbosity_options(command: _F) -> _F:
    """--quiet and --verbose, the same on every command (one verbosity: -1, 0, 1)."""
    for name, short, help_ in (
        ("quiet", "-q", "Only errors, warnings and the verdict: no progress, no tables."),
        ("verbose", "-v", "Every progress message as a line (each epoch, each trial)."),
    ):
        command = click.option(
            f"--{name}", short, name, is_flag=True, expose_value=False, is_eager=True,
            callback=_set_verbosity, help=help_,
        )(command)  # fmt: skip
    return command


def _ui() -> Any:
    """edgec.ui, set up for this command: its verbosity and the consoles' widths."""
    from edgec import ui

    ui.configure(int(_state["verbosity"]))
    return ui


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgec")
@debug_option
@verbosity_options
def cli() -> None:
    """edgec: from a Keras model to firmware-ready int8 TFLite artifacts.

    \b
    edgec build --target cortex-m                    the built-in example
    edgec build model.keras --target cortex-m --data calib.npz
    edgec inspect model.tflite                       per-layer table
    edgec build --target cortex-m --recipe prune-cluster-qat
    edgec targets                                    list target profiles
    edgec check model.tflite --target cortex-m4,edgetpu --format junit --out checks.xml
    edgec diff old/report.json new/report.json --max-growth 5% --max-accuracy-drop 1
    edgec fit model.keras --data d.npz --target cortex-m --budget flash=48KiB,ram=40KiB
    """


# build and fit (whose trials are builds) share these
calibration_samples_option = click.option(
    "--calibration-samples",
    type=click.IntRange(min=1),
    default=DEFAULT_CALIBRATION_SAMPLES,
    show_default=True,
    help="Samples used to calibrate int8 ranges; the rest evaluate the model.",
)
max_samples_option = click.option(
    "--max-samples",
    type=click.IntRange(min=2),
    default=DEFAULT_MAX_SAMPLES,
    show_default=True,
    help="Samples of DATA used at most; a larger data set is sampled (seeded) while it is "
    "read, and the summary says so.",
)
max_accuracy_drop_option = click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Largest allowed top-1 drop, in percentage points, from float to int8; for "
    "RMSE with a recipe, the largest rise in percent above the input model's float RMSE "
    "(edgec fit reports it; the search maximises accuracy).",
)
per_channel_option = click.option(
    "--per-channel",
    type=click.Choice(PER_CHANNEL_MODES),
    default="auto",
    show_default=True,
    help="Weights quantized per channel or per tensor, layer by layer. auto: both are "
    "measured (flash, TFLM arena, accuracy) and a layer keeps per-channel weights only "
    "where they gain more than noise and the budgets allow; always / never: every layer.",
)
custom_objects_option = click.option(
    "--custom-objects",
    metavar="FILE.py|MODULE",
    help="Python file or module defining the model's own layers (it is executed: trusted code).",
)
trust_model_option = click.option(
    "--trust-model",
    is_flag=True,
    help="Load Lambda layers and other code the model file carries: this runs the file's "
    "code (still inside the sandbox). Only for models you trust.",
)


# build and check: the ram check judges the arena as model_settings.h declares it
arena_margin_option = click.option(
    "--arena-margin",
    type=click.FloatRange(min=0, max=1000),
    default=DEFAULT_ARENA_MARGIN,
    show_default=True,
    help="Percent added to the TFLM arena for TENSOR_ARENA_SIZE (kTensorArenaSize); the "
    "ram check judges the arena with it.",
)

keep_names_option = click.option(
    "--keep-names",
    is_flag=True,
    help="TFLM targets: keep the tensor names in the shipped model (by default they go to "
    "model_names.json, which inspect and check read; TFLM reads none).",
)
# the names' opt-in before they left by default: accepted, and changes nothing
strip_names_option = click.option("--strip-names", is_flag=True, hidden=True)


def _keep_names(keep_names: bool, strip_names: bool) -> bool:
    if keep_names and strip_names:
        raise UsageError(
            "--keep-names and --strip-names contradict each other",
            hint="names leave TFLM targets' model by default; give --keep-names to keep them",
        )
    return keep_names


def text_or_json(help: str) -> Callable[[_F], _F]:
    """The ``--format text|json`` option of the listing commands (inspect, targets)."""
    return click.option(
        "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
        show_default=True, help=help,
    )  # fmt: skip


def stage_short_forms(command: _F) -> _F:
    """The short-form options of the registered stages (``--prune 0.75``, ``--qat``, ...),
    in the stages' order, each passed to the command under its stage type."""
    for type_ in reversed(stage_types()):
        form = get_stage(type_).short_form
        if form is None:
            continue
        kind: dict[str, Any] = {"is_flag": True} if form.kind is bool else {}
        if form.kind is int:
            kind["type"] = click.IntRange(min=form.low)
        command = click.option(
            f"--{type_.replace('_', '-')}", type_, metavar=form.metavar, help=form.help, **kind
        )(command)
    return command


@cli.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option(
    "--target",
    "-t",
    required=True,
    metavar="NAME|PROFILE.toml[,...]",
    help="Built-in target name (see 'edgec targets') or a profile TOML file; several "
    "separated by commas are checked against one converted model.",
)
@click.option(
    "--data",
    "-d",
    type=click.Path(path_type=Path),
    metavar="DATA",
    help="Calibration/evaluation samples: .npz (x, optional y), .npy, or a folder "
    "of class folders of images. Required with MODEL.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("edgec-out"),
    show_default=True,
    help="Output directory (replaced atomically).",
)
@click.option(
    "--budget",
    metavar="flash=SIZE,ram=SIZE",
    help="Override the target's model budget, e.g. flash=256KiB,ram=64KiB "
    "(units B, KB=1000, KiB=1024, MB, MiB).",
)
@click.option(
    "--io-type",
    type=click.Choice(IO_TYPES),
    default="int8",
    show_default=True,
    help="dtype of the model's input and output tensors (integer I/O is int16 with "
    "--activations int16, where uint8 is refused).",
)
@click.option(
    "--activations",
    type=click.Choice(ACTIVATIONS),
    default="int8",
    show_default=True,
    help="int16: TFLite's 16x8 mode (int16 activations, int8 weights) for regression, "
    "audio and autoencoders where int8 loses too much; TFLM and Ethos-U targets.",
)
@calibration_samples_option
@max_samples_option
@max_accuracy_drop_option
@per_channel_option
@click.option("--name", help="Model name for C identifiers (default: the file name).")
@click.option(
    "--phone-variants",
    metavar="float16,dynamic-range",
    default="",
    help="For phone targets, also convert float16 and/or dynamic-range models and report "
    "their size, host-measured LiteRT latency and accuracy.",
)
@click.option(
    "--compress",
    type=click.Choice(["lut", "auto"]),
    help="lut: store clustered weights as packed indices + value tables (tflite-micro "
    "LUT compression, DECODE op); outputs must stay bit-identical in TFLM. auto: only the "
    "tensors whose decoded copy keeps the TFLM arena within the RAM budget (maybe none).",
)
@keep_names_option
@strip_names_option
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS.names()),
    default="plain",
    show_default=True,
    help="Firmware package layout: a plain folder, an Arduino library, or a CMake target.",
)
@click.option(
    "--c-lang",
    type=click.Choice(["cc", "c"]),
    default="cc",
    show_default=True,
    help="Model array source: C++ (model_data.cc, alignas) or C11 (model_data.c, _Alignas).",
)
@click.option(
    "--section",
    metavar="NAME",
    help="Place the model array in this linker section, e.g. .rodata.model.",
)
@arena_margin_option
@click.option(
    "--recipe",
    metavar="NAME|RECIPE.toml",
    help="Compression recipe run before int8 conversion: prune-qat, cluster-qat, "
    "prune-cluster-qat, distill, or a recipe TOML file. Training uses DATA's x and y "
    "(the built-in example uses its own training split).",
)
@stage_short_forms
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="Epochs of each short-form stage (default: per stage).",
)
@custom_objects_option
@trust_model_option
@debug_option
@verbosity_options
def build(
    model: Path | None,
    target: str,
    data: Path | None,
    out: Path,
    budget: str | None,
    io_type: str,
    activations: str,
    calibration_samples: int,
    max_samples: int,
    max_accuracy_drop: float,
    per_channel: str,
    name: str | None,
    phone_variants: str,
    compress: str | None,
    keep_names: bool,
    strip_names: bool,
    layout: str,
    c_lang: str,
    section: str | None,
    arena_margin: float,
    recipe: str | None,
    epochs: int | None,
    custom_objects: str | None,
    trust_model: bool,
    **short_forms: Any,
) -> None:
    """Convert MODEL to int8, check it against a target, and write firmware artifacts.

    Without MODEL, a built-in example (a small CNN trained on scikit-learn's digits) is
    built. Exit codes: 0 all checks pass, 3 a check failed (over budget, unsupported op,
    accuracy), 1 error.
    """
    from edgec import api
    from edgec._native_log import captured_native_stderr

    ui = _ui()

    start = time.perf_counter()
    with captured_native_stderr(enabled=not _state["debug"]), ui.BuildProgress() as progress:
        report = api.build(
            model,
            target=target,
            data=data,
            recipe=recipe,
            out=out,
            progress=progress,
            budget=budget,
            io_type=io_type,
            activations=activations,
            calibration_samples=calibration_samples,
            max_samples=max_samples,
            max_accuracy_drop=max_accuracy_drop,
            per_channel=per_channel,
            name=name,
            phone_variants=phone_variants,
            debug=_state["debug"],
            compress=compress,
            keep_names=_keep_names(keep_names, strip_names),
            layout=layout,
            c_lang=c_lang,
            section=section,
            arena_margin=arena_margin,
            epochs=epochs,
            custom_objects=custom_objects,
            trust_model=trust_model,
            # only the stages asked for: an option of a stage registered after this module
            # was imported (a test's toy stage) must not reach the build unasked
            **{k: v for k, v in short_forms.items() if v is not None and v is not False},
        )
    ui.print_summary(report, out, time.perf_counter() - start)
    sys.exit(EXIT_OK if report.ok else EXIT_CHECK_FAILED)


@cli.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option(
    "--target",
    "-t",
    required=True,
    metavar="NAME|PROFILE.toml[,...]",
    help="Target(s) the model must fit, comma-separated: it fits all of them.",
)
@click.option(
    "--data",
    "-d",
    type=click.Path(path_type=Path),
    metavar="DATA",
    help="Training, calibration and evaluation samples (as for build). Required with MODEL.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("edgec-out"),
    show_default=True,
    help="Output directory: fit.json while searching, then the "
    "chosen build, recipe.toml and fit.json.",
)
@click.option(
    "--budget",
    metavar="flash=SIZE,ram=SIZE",
    help="Override every target's model budget, e.g. flash=48KiB,ram=40KiB.",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=6,
    show_default=True,
    help="Candidates trained (after the untrained screen rejected what cannot fit).",
)
@click.option(
    "--max-screens",
    type=click.IntRange(min=1),
    default=48,
    show_default=True,
    help="Structures screened untrained (converted and measured, no training) at most.",
)
@click.option(
    "--time-budget",
    metavar="DURATION",
    help="Start no new trial after this long, e.g. 20m, 90s, 1.5h.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Search seed: orders candidates of equal cost and seeds each trial.",
)
@click.option(
    "--rungs",
    default="1,2,4",
    show_default=True,
    metavar="EPOCHS,...",
    help="Successive halving: epochs a stage at each rung; half go on to the next.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Run trials in parallel on a local Ray instance (pip install edgec[distributed]).",
)
@click.option("--ray-address", metavar="ADDR", help="Run trials on an existing Ray cluster.")
@keep_names_option
@strip_names_option
@calibration_samples_option
@max_samples_option
@max_accuracy_drop_option
@per_channel_option
@custom_objects_option
@trust_model_option
@debug_option
@verbosity_options
def fit(
    model: Path | None, target: str, data: Path | None, out: Path, budget: str | None,
    trials: int, max_screens: int, time_budget: str | None, seed: int, rungs: str,
    workers: int | None, ray_address: str | None, calibration_samples: int, max_samples: int,
    max_accuracy_drop: float, per_channel: str, custom_objects: str | None, keep_names: bool,
    strip_names: bool, trust_model: bool,
) -> None:  # fmt: skip
    """Search compression recipes for the most accurate int8 model that fits the target(s).

    Candidates (channel pruning, low rank, distillation width, clusters with LUT, QAT)
    are screened untrained first; those that fit are trained by successive halving.
    The winner is written as edgec build writes it, with fit.json and recipe.toml. The
    same command again continues an interrupted search. Without MODEL, the built-in
    example. Exit codes: 0 a model fits, 3 nothing fits (the misses are named), 1 error.
    """
    from edgec._native_log import captured_native_stderr
    from edgec.fit.executor import select_executor
    from edgec.fit.search import FitOptions, parse_duration, parse_rungs, run_fit

    ui = _ui()

    options = FitOptions(
        model=model, target=target, data=data, out=out, budget=budget, trials=trials,
        max_screens=max_screens,
        time_budget=None if time_budget is None else parse_duration(time_budget), seed=seed,
        rungs=parse_rungs(rungs), calibration_samples=calibration_samples,
        max_samples=max_samples, max_accuracy_drop=max_accuracy_drop,
        custom_objects=custom_objects, keep_names=_keep_names(keep_names, strip_names),
        per_channel=per_channel, trust_model=trust_model,
    )  # fmt: skip
    executor = select_executor(workers, ray_address)
    if trust_model:  # a build says which of the file's code runs; a search's trials do not
        click.echo("warning: --trust-model: the model file's own code runs (in the sandbox)",
                   err=True)  # fmt: skip
    start = time.perf_counter()
    table = ui.FitTable()
    try:
        with captured_native_stderr(enabled=not _state["debug"]), contextlib.closing(executor):
            _ = executor.workers  # Ray starts or is joined before the live table is drawn
            with table:
                outcome = run_fit(options, executor, table)
    except (click.Abort, KeyboardInterrupt):
        state_file = getattr(table, "state_path", None) or out / "fit.json"
        if state_file.is_file():  # the state is kept: say so before main's line
            state = printable(str(state_file))
            click.echo(f"{state} keeps the finished trials: run the same command to continue",
                       err=True)  # fmt: skip
        raise
    ui.print_fit_summary(outcome, time.perf_counter() - start, _state["argv"])
    sys.exit(EXIT_OK if outcome.winner is not None else EXIT_CHECK_FAILED)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@text_or_json("A table for people, or JSON for scripts.")
@click.option(
    "--names",
    type=click.Path(path_type=Path),
    metavar="NAMES.json",
    help="The names of a lean .tflite (default: MODEL_names.json beside it, if it is "
    "this model's).",
)
@custom_objects_option
@trust_model_option
@debug_option
@verbosity_options
def inspect(
    model: Path, fmt: str, names: Path | None, custom_objects: str | None, trust_model: bool
) -> None:
    """Per-layer table of MODEL (.tflite, .keras, .h5 or SavedModel): op, shapes,
    parameters, weight bytes, sparsity, unique values, MACs and live activation bytes;
    then where the model's bytes go."""
    from edgec import api
    from edgec._native_log import captured_native_stderr

    ui = _ui()

    with captured_native_stderr(enabled=not _state["debug"]):
        result = api.inspect(
            model, custom_objects=custom_objects, names=names, trust_model=trust_model,
            debug=_state["debug"],
        )  # fmt: skip
    if fmt == "json":
        import dataclasses

        from edgec.report import json_text

        click.echo(json_text(dataclasses.asdict(result)), nl=False)
    else:
        ui.print_layers(result)


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--target",
    "-t",
    required=True,
    metavar="NAME|PROFILE.toml[,...]",
    help="Target(s) to check against, comma-separated (see 'edgec targets').",
)
@click.option(
    "--budget",
    metavar="flash=SIZE,ram=SIZE",
    help="Override every target's model budget, e.g. flash=256KiB,ram=64KiB.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "markdown"]),
    default="text",
    show_default=True,
    help="Report format: json is report.json's target sections, junit one testcase per "
    "check, markdown a pull-request comment.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    help="Write the report (in --format) to this file; the text summary still goes to stdout.",
)
@click.option(
    "--artifacts",
    type=click.Path(path_type=Path),
    help="Directory for report.json and the files the targets produce (e.g. the "
    "Vela-optimised .tflite); replaced atomically.",
)
@arena_margin_option
@debug_option
@verbosity_options
def check(
    model: Path,
    target: str,
    budget: str | None,
    fmt: str,
    out: Path | None,
    artifacts: Path | None,
    arena_margin: float,
) -> None:
    """Check an existing MODEL.tflite against target(s), without retraining.

    Exit codes: 0 every check passes on every target, 3 a check failed (over budget,
    unsupported op or dtype), 1 error.
    """
    from edgec import api
    from edgec._native_log import captured_native_stderr
    from edgec.export.writer import prepare_output_file, write_file_atomically
    from edgec.report.junit import junit_xml
    from edgec.report.markdown import markdown

    ui = _ui()

    if out is not None:
        prepare_output_file(out)
    with captured_native_stderr(enabled=not _state["debug"]):
        report = api.check(
            model,
            target=target,
            budget=budget,
            arena_margin=arena_margin,
            artifacts=artifacts,
            progress=lambda p: ui.line(f"checking {p.name}"),
        )
    rendered = {
        "json": report.to_json,
        "junit": lambda: junit_xml(report.targets, str(model)),
        "markdown": lambda: markdown(report.targets, str(model)),
        "text": lambda: ui.check_text(report),
    }[fmt]()
    if out is not None:
        write_file_atomically(out, rendered.encode())
    if out is not None or fmt == "text":
        ui.print_check(report, quiet=_state["verbosity"] < 0)
        if out is not None:
            ui.out.print(f"Wrote {ui.t(out)} ({fmt})")
    else:
        click.echo(rendered, nl=False)
    sys.exit(EXIT_OK if report.ok else EXIT_CHECK_FAILED)


@cli.command()
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option(
    "--max-growth",
    default="5%",
    show_default=True,
    metavar="PERCENT",
    help="Largest allowed growth of flash or RAM per target, e.g. 5%.",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    metavar="POINTS",
    help="Largest allowed drop of the quantized model's top-1 accuracy, in percentage "
    "points (cosine similarity: x100).",
)
@click.option(
    "--max-error-rise",
    default="10%",
    show_default=True,
    metavar="PERCENT",
    help="Largest allowed relative rise of the quantized model's RMSE (regression models).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="A table for people, JSON for scripts, or a pull-request comment.",
)
@debug_option
@verbosity_options
def diff(
    old: Path, new: Path, max_growth: str, max_accuracy_drop: float, max_error_rise: str, fmt: str
) -> None:
    """Compare two reports (report.json of build or check): flash and RAM per target, and
    the quantized model's accuracy (build reports).

    Only targets in both reports are compared (the others are listed); reports with no
    target in common are an error. Exit codes: 0 nothing grew or dropped beyond the
    limits, 3 something did, 1 error (unreadable reports, nothing to compare).
    """
    from edgec.report import diff as ci

    ui = _ui()

    result = ci.diff_reports(
        old,
        new,
        max_growth=ci.parse_growth(max_growth),
        max_accuracy_drop=max_accuracy_drop,
        max_error_rise=ci.parse_growth(max_error_rise, "--max-error-rise"),
    )
    if fmt == "json":
        click.echo(result.to_json(), nl=False)
    elif fmt == "markdown":
        click.echo(ci.markdown_diff(result), nl=False)
    else:
        ui.print_diff(result)
    sys.exit(EXIT_OK if result.ok else EXIT_CHECK_FAILED)


@cli.group(invoke_without_command=True)
@text_or_json("A table for people, or JSON (name, kind, part, budgets) for scripts.")
@click.pass_context
@debug_option
@verbosity_options
def targets(ctx: click.Context, fmt: str) -> None:
    """List the built-in target profiles ('edgec targets show NAME' for one)."""
    if ctx.invoked_subcommand is None:
        from edgec import api

        ui = _ui()
        profiles = api.target_profiles()
        if fmt == "json":
            from edgec.report import json_text

            click.echo(json_text([api.target_summary(p) for p in profiles]), nl=False)
        else:
            ui.print_targets(profiles)


@targets.command("show")
@click.argument("name")
@debug_option
@verbosity_options
def targets_show(name: str) -> None:
    """Show one profile: a built-in NAME or a profile TOML file."""
    from edgec.targets import load_target

    ui = _ui()

    ui.print_target(load_target(name))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exit 0 pass, 3 failed checks, 1 errors, 2 usage errors,
    130/143 on SIGINT/SIGTERM (temporary files removed in every case)."""
    from edgec._process import command_scope, exit_status

    _state.update(debug=False, verbosity=0, argv=list(sys.argv[1:] if argv is None else argv))
    with command_scope():
        try:
            code = cli.main(args=argv, prog_name="edgec", standalone_mode=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            sys.exit(code)
        except EdgecError as exc:
            hint = f" ({runnable_hint(exc.hint, _state['argv'])})" if exc.hint else ""
            _fail(f"error: {exc.message}{hint}", exc, exc.exit_code)
        except click.ClickException as exc:  # UsageError and BadParameter carry exit code 2
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt) as exc:  # SIGINT, and SIGTERM (_process)
            _fail("error: interrupted; nothing was written", exc, exit_status(exc))
        except MemoryError as exc:  # the inputs are bounded; this machine was not enough
            _fail(
                "error: out of memory (MemoryError); nothing was written (try a smaller "
                "--max-samples, or a machine with more memory)",
                exc,
                EXIT_ERROR,
            )
        except Exception as exc:  # a bug: say so in one line, traceback with --debug
            name = getattr(exc, "remote_type", type(exc).__name__)  # the model process's
            _fail(
                f"internal error: {name}: {exc} (run with --debug for the traceback)",
                exc,
                EXIT_ERROR,
            )
    sys.exit(code if isinstance(code, int) else EXIT_OK)  # --help/--version return 0


def _fail(line: str, exc: BaseException, code: int) -> None:
    if _state["debug"]:
        traceback.print_exception(exc)
        remote = getattr(exc, "remote_traceback", "")  # raised in the model process
        if remote:
            click.echo(f"in the model process:\n{remote}", err=True)
    click.echo(printable(line), err=True)
    sys.exit(code)
