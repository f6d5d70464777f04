"""The ``edgec`` command line. TensorFlow is imported only inside commands that need it."""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import click

from edgec import __version__
from edgec.errors import EdgecError

EXIT_OK, EXIT_ERROR, EXIT_CHECK_FAILED = 0, 1, 3

_state = {"debug": False}


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgec")
@debug_option
def cli() -> None:
    """edgec: from a Keras model to firmware-ready int8 TFLite artifacts.

    \b
    edgec build --target cortex-m                    the built-in example
    edgec build model.keras --target cortex-m --data calib.npz
    edgec build --target cortex-m --recipe prune-cluster-qat
    edgec targets                                    list target profiles
    """


@cli.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option(
    "--target",
    "-t",
    required=True,
    metavar="NAME|PROFILE.toml",
    help="Built-in target name (see 'edgec targets') or a profile TOML file.",
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
    type=click.Choice(["int8", "uint8", "float32"]),
    default="int8",
    show_default=True,
    help="dtype of the model's input and output tensors.",
)
@click.option(
    "--calibration-samples",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="Samples used to calibrate int8 ranges; the rest evaluate the model.",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Largest allowed top-1 drop, in percentage points, from float to int8.",
)
@click.option("--name", help="Model name for C identifiers (default: the file name).")
@click.option(
    "--recipe",
    metavar="NAME|RECIPE.toml",
    help="Compression recipe run before int8 conversion: prune-qat, cluster-qat, "
    "prune-cluster-qat, distill, or a recipe TOML file. Training uses DATA's x and y "
    "(the built-in example uses its own training split).",
)
@click.option(
    "--distill",
    metavar="WIDTH|STUDENT",
    help="Short form: distil into a student WIDTH times as wide (e.g. 0.5) or a model file.",
)
@click.option("--prune", metavar="SPARSITY|2:4", help="Short form: prune, e.g. 0.75 or 2:4.")
@click.option(
    "--cluster", type=click.IntRange(min=2), metavar="N", help="Short form: N clusters per kernel."
)
@click.option("--qat", is_flag=True, help="Short form: quantization-aware training (last).")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="Epochs of each short-form stage (default: per stage).",
)
@debug_option
def build(
    model: Path | None,
    target: str,
    data: Path | None,
    out: Path,
    budget: str | None,
    io_type: str,
    calibration_samples: int,
    max_accuracy_drop: float,
    name: str | None,
    recipe: str | None,
    distill: str | None,
    prune: str | None,
    cluster: int | None,
    qat: bool,
    epochs: int | None,
) -> None:
    """Convert MODEL to int8, check it against a target, and write firmware artifacts.

    Without MODEL, a built-in example (a small CNN trained on scikit-learn's digits) is
    built. Exit codes: 0 all checks pass, 3 a check failed (over budget, unsupported op,
    accuracy), 1 error.
    """
    from edgec import ui
    from edgec._native_log import captured_native_stderr
    from edgec.pipeline.build import BuildOptions, run_build, write_build

    options = BuildOptions(
        model=model,
        target=target,
        data=data,
        out=out,
        budget=budget,
        io_type=io_type,
        calibration_samples=calibration_samples,
        max_accuracy_drop=max_accuracy_drop,
        name=name,
        debug=_state["debug"],
        recipe=recipe,
        distill=distill,
        prune=prune,
        cluster=cluster,
        qat=qat,
        epochs=epochs,
    )
    start = time.perf_counter()
    with captured_native_stderr(enabled=not _state["debug"]), ui.BuildProgress() as progress:
        result = run_build(options, progress)
    write_build(result, out)
    ui.print_summary(result.report, out, time.perf_counter() - start)
    sys.exit(EXIT_OK if result.report.ok else EXIT_CHECK_FAILED)


@cli.group(invoke_without_command=True)
@click.pass_context
@debug_option
def targets(ctx: click.Context) -> None:
    """List the built-in target profiles ('edgec targets show NAME' for one)."""
    if ctx.invoked_subcommand is None:
        from edgec import ui
        from edgec.targets import builtin_names, load_target

        ui.print_targets([load_target(n) for n in builtin_names()])


@targets.command("show")
@click.argument("name")
@debug_option
def targets_show(name: str) -> None:
    """Show one profile: a built-in NAME or a profile TOML file."""
    from edgec import ui
    from edgec.targets import load_target

    ui.print_target(load_target(name))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line and exit 1 for every expected error."""
    _state["debug"] = False
    try:
        code = cli.main(args=argv, prog_name="edgec", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.exit(code)
    except EdgecError as exc:
        _fail(f"error: {exc}", exc, exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_ERROR)
    except (click.Abort, KeyboardInterrupt) as exc:
        _fail("error: interrupted; nothing was written", exc, EXIT_ERROR)
    except Exception as exc:  # a bug: say so in one line, traceback with --debug
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            exc,
            EXIT_ERROR,
        )
    sys.exit(code if isinstance(code, int) else EXIT_OK)  # --help/--version return 0


def _fail(line: str, exc: BaseException, code: int) -> None:
    if _state["debug"]:
        traceback.print_exception(exc)
    click.echo(line, err=True)
    sys.exit(code)
