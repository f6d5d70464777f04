"""The ``edgec`` command line. TensorFlow is imported only inside commands that need it."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgec import __version__
from edgec.errors import EdgecError, UsageError, printable, runnable_hint
from edgec.options import COMMON_HELP, NORMAL, QUIET, VERBOSE, Cli, cli_fields, short_form_types
from edgec.stages import get_stage

EXIT_OK, EXIT_ERROR, EXIT_CHECK_FAILED = 0, 1, 3
_F = TypeVar("_F", bound=Callable[..., Any])

_state: dict[str, Any] = {"debug": False, "verbosity": NORMAL, "argv": []}


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _state["debug"] = True


debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help=COMMON_HELP["debug"],
)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value:
        return
    level = QUIET if param.name == "quiet" else VERBOSE
    if _state["verbosity"] not in (NORMAL, level):
        raise click.UsageError("--quiet and --verbose contradict each other", ctx=ctx)
    _state["verbosity"] = level


def _ui() -> Any:
    """edgec.ui, set up for this command: its verbosity and the consoles' widths."""
    from edgec import ui

    ui.configure(int(_state["verbosity"]))
    return ui


def common_options(command: _F) -> _F:
    """--debug, --quiet and --verbose: every command takes them (``options.COMMON_HELP``)."""
    for name, flags in (("verbose", ("--verbose", "-v")), ("quiet", ("--quiet", "-q"))):
        command = click.option(
            *flags, name, is_flag=True, expose_value=False, is_eager=True,
            callback=_set_verbosity, help=COMMON_HELP[name],
        )(command)  # fmt: skip
    return debug_option(command)


def _click_param(f: dataclasses.Field, cli: Cli, command: str) -> Callable[[_F], _F]:
    """The click option (or argument) of one ``BuildOptions`` field, for ``command``."""
    kind: dict[str, Any] = {}
    if cli.parse is not None:
        kind["type"] = _Parsed(cli.parse, cli.metavar or "TEXT")
    elif cli.kind is Path:
        kind["type"] = click.Path(path_type=Path)
    elif cli.choices is not None:
        kind["type"] = click.Choice(cli.allowed())
    elif cli.kind is int:
        ranged = cli.low is not None or cli.high is not None
        kind["type"] = click.IntRange(min=cli.low, max=cli.high) if ranged else click.INT
    elif cli.kind is float:
        kind["type"] = click.FloatRange(min=cli.low, max=cli.high)
    if cli.argument:
        return click.argument(f.name, required=False, **kind)
    if cli.kind is bool:
        kind["is_flag"] = True
    value = f.default
    if value is dataclasses.MISSING:
        kind["required"] = True
    elif not (value is None or value is False or value == ()):  # 0 is a default (--seed)
        shown = value if cli.default_text is None else cli.default_text
        kind.update(default=shown, show_default=True)
    return click.option(
        f"--{f.name.replace('_', '-')}", *cli.flags, f.name, metavar=cli.metavar,
        help=cli.help_of(command), hidden=cli.hidden, **kind,
    )  # fmt: skip


class _Parsed(click.ParamType):
    """An option parsed by the options model's own function (``Cli.parse``): what it
    refuses is its UsageError, one ``error:`` line and exit 2 (``main``)."""

    def __init__(self, parse: Callable[[str], Any], name: str) -> None:
        self.parse, self.name = parse, name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return self.parse(value) if isinstance(value, str) else value


def options_of(command: str) -> Callable[[_F], _F]:
    """The options ``command`` takes from the options model (``edgec.options``), in its
    groups' order."""

    def decorate(function: _F) -> _F:
        for f, cli in reversed(list(cli_fields(command))):
            function = _click_param(f, cli, command)(function)
        return function

    return decorate


# the names' opt-in before they left by default: accepted, and changes nothing
strip_names_option = click.option("--strip-names", is_flag=True, hidden=True)


def _keep_names(keep_names: bool, strip_names: bool) -> bool:
    if keep_names and strip_names:
        raise UsageError(
            "--keep-names and --strip-names contradict each other",
            hint="names leave TFLM targets' model by default; give --keep-names to keep them",
        )
    return keep_names


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgec")
@common_options
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


def text_or_json(help: str) -> Callable[[_F], _F]:
    """The ``--format text|json`` option of the listing commands (inspect, targets)."""
    return click.option(
        "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
        show_default=True, help=help,
    )  # fmt: skip


def _short_form_kind(type_: str) -> dict[str, Any]:
    """The click settings of a stage's short-form option, named by its stage type."""
    form = get_stage(type_).short_form
    assert form is not None  # short_form_types() lists only stages that have one
    kind: dict[str, Any] = {"is_flag": True} if form.kind is bool else {}
    if form.kind is int:
        kind["type"] = click.IntRange(min=form.low)
    return {"metavar": form.metavar, "help": form.help, **kind}


def _short_form_option(type_: str) -> click.Option:
    return click.Option([f"--{type_.replace('_', '-')}", type_], **_short_form_kind(type_))


def stage_short_forms(command: _F) -> _F:
    """The short-form options of the registered stages (``--prune 0.75``, ``--qat``, ...),
    in the stages' order, each passed to the command under its stage type."""
    for type_ in reversed(short_form_types()):
        name = f"--{type_.replace('_', '-')}"
        command = click.option(name, type_, **_short_form_kind(type_))(command)
    return command


class StageOptionsCommand(click.Command):
    """A command whose stage short forms are the registry's when it parses or shows help,
    not when this module was imported: a stage registered later (a plug-in, a test's toy
    stage) has its option too. They follow --recipe."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        at = next((i + 1 for i, p in enumerate(params) if p.name == "recipe"), len(params))
        # the same Option objects for the whole invocation (click matches them by identity)
        key = f"edgec.short_forms.{id(self)}"
        if key not in ctx.meta:
            ctx.meta[key] = [_short_form_option(t) for t in short_form_types()]
        forms = ctx.meta[key]
        return [*params[:at], *forms, *params[at:]]


def _short_forms(values: dict[str, Any]) -> dict[str, Any]:
    """The stage short forms given (their options are named by stage type)."""
    types = set(short_form_types())
    return {k: values.pop(k) for k in list(values) if k in types}


@cli.command(cls=StageOptionsCommand)
@options_of("build")
@strip_names_option
@common_options
def build(strip_names: bool, **values: Any) -> None:
    """Convert MODEL to int8, check it against a target, and write firmware artifacts.

    Without MODEL, a built-in example (a small CNN trained on scikit-learn's digits) is
    built. Exit codes: 0 all checks pass, 3 a check failed (over budget, unsupported op,
    accuracy), 1 error, 2 a bad option.
    """
    from edgec import api
    from edgec._native_log import captured_native_stderr

    ui = _ui()
    short_forms = _short_forms(values)
    values["keep_names"] = _keep_names(values["keep_names"], strip_names)
    options = {k: v for k, v in values.items() if v is not None}
    out = options["out"]
    start = time.perf_counter()
    with captured_native_stderr(enabled=not _state["debug"]), ui.BuildProgress() as progress:
        report = api.build(
            progress=progress,
            debug=_state["debug"],
            verbosity=_state["verbosity"],
            **options,
            # only the stages asked for
            **{k: v for k, v in short_forms.items() if v is not None and v is not False},
        )
    ui.print_summary(report, out, time.perf_counter() - start)
    sys.exit(EXIT_OK if report.ok else EXIT_CHECK_FAILED)


@cli.command()
@options_of("fit")
@strip_names_option
@common_options
def fit(workers: int | None, ray_address: str | None, strip_names: bool, **values: Any) -> None:
    """Search compression recipes for the most accurate int8 model that fits the target(s).

    Candidates (channel pruning, low rank, distillation width, clusters with LUT, QAT)
    are screened untrained first; those that fit are trained by successive halving.
    The winner is written as edgec build writes it, with fit.json and recipe.toml. The
    same command again continues an interrupted search. Without MODEL, the built-in
    example. Exit codes: 0 a model fits, 3 nothing fits (the misses are named), 1 error,
    2 a bad option.
    """
    from edgec._native_log import captured_native_stderr
    from edgec.fit.executor import select_executor
    from edgec.fit.search import FitOptions, run_fit

    ui = _ui()

    values["keep_names"] = _keep_names(values["keep_names"], strip_names)
    options = FitOptions(**values)
    out, trust_model = options.out, options.trust_model
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
@options_of("inspect")
@common_options
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
@options_of("check")
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
    help="Directory for report.json, the files the targets produce (e.g. the "
    "Vela-optimised .tflite) and, for the first TFLM target, the firmware package (C arrays, "
    "model_settings.h, model_ops.h); replaced atomically.",
)
@common_options
def check(
    model: Path,
    target: str,
    budget: str | None,
    fmt: str,
    out: Path | None,
    artifacts: Path | None,
    arena_margin: float,
    keep_names: bool,
    layout: str,
    c_lang: str,
    section: str | None,
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
        prepare_output_file(out, inputs=(model, *target.split(",")))
    with captured_native_stderr(enabled=not _state["debug"]):
        report = api.check(
            model,
            target=target,
            budget=budget,
            arena_margin=arena_margin,
            artifacts=artifacts,
            layout=layout,
            c_lang=c_lang,
            section=section,
            keep_names=keep_names,
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
        if artifacts is not None and _state["verbosity"] >= 0:
            ui.print_artifacts(artifacts, report)
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
@common_options
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
@common_options
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
@common_options
def targets_show(name: str) -> None:
    """Show one profile: a built-in NAME or a profile TOML file."""
    from edgec.targets import load_target

    ui = _ui()

    ui.print_target(load_target(name))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: exit 0 pass, 3 failed checks, 1 errors, 2 usage errors,
    130/143 on SIGINT/SIGTERM (temporary files removed in every case)."""
    from edgec._process import command_scope, exit_status

    _state.update(debug=False, verbosity=NORMAL, argv=list(sys.argv[1:] if argv is None else argv))
    try:
        os.getcwd()
    except FileNotFoundError:  # removed under the shell (rm -rf build && mkdir build)
        click.echo(
            "error: the current directory no longer exists (cd into an existing directory "
            "and run edgec again)",
            err=True,
        )
        sys.exit(EXIT_ERROR)
    with command_scope():
        try:
            code = cli.main(args=argv, prog_name="edgec", standalone_mode=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            sys.exit(code)
        except EdgecError as exc:
            hint = f" ({runnable_hint(exc.hint, _long_forms(_state['argv']))})" if exc.hint else ""
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
            full = disk_full_line(exc)
            if full:
                _fail(full, exc, EXIT_ERROR)
            name = getattr(exc, "remote_type", type(exc).__name__)  # the model process's
            _fail(
                f"internal error: {name}: {exc} (run with --debug for the traceback)",
                exc,
                EXIT_ERROR,
            )
    sys.exit(code if isinstance(code, int) else EXIT_OK)  # --help/--version return 0


def _long_forms(argv: list[str]) -> list[str]:
    """``argv`` with each option's short form (``-o``) written long (``--out``): a hint
    that changes ``--out`` then replaces what ``-o`` gave instead of adding to it."""
    from edgec.options import cli_fields

    long = {
        flag: f"--{f.name.replace('_', '-')}"
        for command in ("build", "fit", "check", "inspect")
        for f, option in cli_fields(command)
        for flag in option.flags
    }
    return [long.get(arg, arg) for arg in argv]


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def disk_full_line(exc: BaseException) -> str | None:
    """The error line for a full file system (or quota), wherever it was met: edgec's own
    writes, or a library's (TensorFlow saving the model for the converter says it in its
    ResourceExhaustedError's text, in the model process). Not a bug: the user's to fix."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        reason = os.strerror(exc.errno)
    else:
        text = str(exc)
        reason = next((os.strerror(e) for e in _NO_SPACE if os.strerror(e) in text), "")
        if not reason:
            return None
    from edgec._process import process_tempdir

    return (
        f"error: {reason.lower()}; nothing was written (free space where the output goes "
        f"or in the temporary folder {process_tempdir()}, or set TMPDIR to a folder with room)"
    )


def _fail(line: str, exc: BaseException, code: int) -> None:
    if _state["debug"]:
        traceback.print_exception(exc)
        remote = getattr(exc, "remote_traceback", "")  # raised in the model process
        if remote:
            click.echo(f"in the model process:\n{remote}", err=True)
    click.echo(printable(line), err=True)
    sys.exit(code)
