"""edgec's options, declared once.

``BuildOptions`` is the typed model of a build; each of its fields carries its command
line (``Cli``: group, help, flags, choices, range) as dataclass metadata. From it come the
``edgec build`` / ``fit`` / ``check`` options with their help and defaults (``edgec.cli``
turns each field into a click option), the keyword arguments ``edgec.build()`` takes
(``edgec.api``), the build each ``edgec fit`` trial runs (``TRIAL_FIELDS``) and the
checks of values that did not come through click (``check_values``: the API's).

Choices come from the registries: recipes, layouts, target names and the stages' short
forms, which are keyed by stage type in ``BuildOptions.stages`` (a plug-in stage's short
form is an option like any built-in one's). No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.datasets.loading import DEFAULT_MAX_SAMPLES
from edgec.datasets.split import DEFAULT_CALIBRATION_SAMPLES
from edgec.errors import InputError, UsageError
from edgec.export.c_array import LANGUAGES
from edgec.export.layouts import LAYOUTS
from edgec.pipeline.convert import ACTIVATION_CHOICES, IO_TYPES, PER_CHANNEL_MODES, WEIGHTS
from edgec.stages import get_stage, stage_types
from edgec.stages.recipe import builtin_recipe_names
from edgec.targets.arena import DEFAULT_ARENA_MARGIN

GROUPS = ("inputs", "targets", "quantization", "compression", "firmware", "search", "common")
COMPRESSIONS = ("lut", "auto")  # all tensors that save flash | only if the RAM budget allows
DEFAULT_OUT = Path("edgec-out")  # build's and fit's
QUIET, NORMAL, VERBOSE = -1, 0, 1  # BuildOptions.verbosity (--quiet, --verbose)
# the options of every command (edgec.cli.common_options)
COMMON_HELP = {
    "debug": "Show tracebacks and the converter's log.",
    "quiet": "Print only the result and errors (no progress, no advice).",
    "verbose": "Print more: each stage's and each check's details.",
}


@dataclass(frozen=True, slots=True)
class Cli:
    """How one option is written on the command line.

    ``kind``: the value's type (bool makes a flag, Path a path); ``choices``: a function
    returning the allowed values (a registry's names, read when the CLI is built);
    ``low``/``high``: an inclusive range; ``commands``: the commands that take it, and
    ``help_for`` a command's own help where the common one would be wrong for it.
    """

    group: str
    help: str | Callable[[], str]  # a function: help listing a registry, read when shown
    kind: type = str
    flags: tuple[str, ...] = ()  # short forms, e.g. ("-t",)
    metavar: str | None = None
    choices: Callable[[], Sequence[str]] | None = None
    low: float | None = None
    high: float | None = None
    commands: tuple[str, ...] = ("build",)
    help_for: Mapping[str, str | Callable[[], str]] = field(default_factory=dict)
    hidden: bool = False
    argument: bool = False  # a positional argument (MODEL), not an option
    parse: Callable[[str], Any] | None = None  # text -> value (a UsageError if it is not one)
    default_text: str | None = None  # the default as the user writes it (help)

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"option group '{self.group}' is not one of {', '.join(GROUPS)}")

    def help_of(self, command: str) -> str:
        text = self.help_for.get(command, self.help)
        return text if isinstance(text, str) else text()

    def allowed(self) -> Sequence[str]:
        return () if self.choices is None else tuple(self.choices())


def _option(default: Any, **cli: Any) -> Any:
    return field(default=default, metadata={"cli": Cli(**cli)})


def recipes_help() -> str:
    return (
        "Compression recipe run before int8 conversion: "
        + ", ".join(builtin_recipe_names())
        + ", or a recipe TOML file. Training uses DATA's x and y (the built-in example uses "
        "its own training split)."
    )


def _targets_help(text: str) -> Callable[[], str]:
    """``text`` followed by the built-in target names (the profiles folder's)."""

    def help_text() -> str:
        from edgec.targets import builtin_names

        return f"{text} Built-in (any case): {', '.join(builtin_names())}."

    return help_text


_BUILD_FIT = ("build", "fit")
_BUILD_FIT_CHECK = ("build", "fit", "check")
_BUILD_CHECK = ("build", "check")


@dataclass(frozen=True, kw_only=True)
class BuildOptions:
    """One build's options, as ``edgec build`` and ``edgec.build()`` take them."""

    # inputs
    model: Path | None = _option(
        None, group="inputs", kind=Path, argument=True, commands=_BUILD_FIT,
        help="A Keras .keras/.h5 file or SavedModel folder; none: the built-in example.",
    )  # fmt: skip
    target: str = _option(  # a target group field, first in the help: it is required
        dataclasses.MISSING, group="targets", flags=("-t",), metavar="NAME|PROFILE.toml[,...]",
        commands=_BUILD_FIT_CHECK,
        help=_targets_help("A built-in target or a profile TOML file; several separated "
                           "by commas are checked against one converted model."),
        help_for={
            "fit": _targets_help("Target(s) the model must fit, comma-separated: it fits "
                                 "all of them."),
            "check": _targets_help("Target(s) to check against, comma-separated."),
        },
    )  # fmt: skip
    data: Path | None = _option(
        None, group="inputs", kind=Path, flags=("-d",), metavar="DATA", commands=_BUILD_FIT,
        help="Calibration/evaluation samples: .npz (x, optional y), .npy, or a folder of "
        "class folders of images. Required with MODEL.",
        help_for={"fit": "Training, calibration and evaluation samples (as for build). "
                  "Required with MODEL."},
    )  # fmt: skip
    max_samples: int = _option(
        DEFAULT_MAX_SAMPLES, group="inputs", kind=int, low=2, commands=_BUILD_FIT,
        help="Samples of DATA used at most; a larger data set is sampled (seeded) while it "
        "is read, and the summary and report.json say so.",
    )  # fmt: skip
    custom_objects: str | None = _option(
        None, group="inputs", metavar="FILE.py|MODULE", commands=(*_BUILD_FIT, "inspect"),
        help="Python file or module defining the model's own layers (it is executed: "
        "trusted code).",
    )  # fmt: skip
    trust_model: bool = _option(
        False, group="inputs", kind=bool, commands=(*_BUILD_FIT, "inspect"),
        help="Load Lambda layers and other code the model file carries: this runs the "
        "file's code (still inside the sandbox). Only for models you trust.",
    )  # fmt: skip
    name: str | None = _option(
        None, group="inputs", help="Model name for C identifiers (default: the file name)."
    )
    # targets
    budget: str | None = _option(
        None, group="targets", metavar="flash=SIZE,ram=SIZE", commands=_BUILD_FIT_CHECK,
        help="Override every target's model budget, e.g. flash=256KiB,ram=64KiB; a size "
        "needs its unit: B, KB=1000, KiB=1024, MB, MiB, GB, GiB.",
    )  # fmt: skip
    max_accuracy_drop: float = _option(
        2.0, group="targets", kind=float, low=0, commands=_BUILD_FIT,
        help="Largest allowed top-1 drop, in percentage points, from float to int8 (the "
        "accuracy check fails beyond it); for RMSE with a recipe, the largest rise in "
        "percent above the input model's float RMSE.",
        help_for={"fit": "Largest allowed top-1 drop, in percentage points, from float to "
                  "int8; for RMSE, the largest rise in percent (a trial beyond it does not "
                  "fit; the search maximises accuracy)."},
    )  # fmt: skip
    phone_variants: tuple[str, ...] = _option(
        (), group="targets", metavar="float16,dynamic-range",
        help="For phone targets, also convert float16 and/or dynamic-range models and "
        "report their size, host-measured LiteRT latency and accuracy.",
    )  # fmt: skip
    arena_margin: float = _option(
        DEFAULT_ARENA_MARGIN, group="targets", kind=float, low=0, high=1000,
        commands=("build", "check"),
        help="Percent added to the TFLM arena for TENSOR_ARENA_SIZE (kTensorArenaSize); "
        "the ram check judges the arena with it.",
    )  # fmt: skip
    # quantization
    io_type: str = _option(
        "int8", group="quantization", choices=lambda: IO_TYPES,
        help="dtype of the model's input and output tensors (integer I/O is int16 with "
        "--activations int16, where uint8 is refused).",
    )  # fmt: skip
    activations: str = _option(
        "int8", group="quantization", choices=lambda: ACTIVATION_CHOICES,
        help="int16: TFLite's 16x8 mode (int16 activations, int8 weights) for regression, "
        "audio and autoencoders where int8 loses too much; TFLM and Ethos-U targets. auto: "
        "int8, with int16 layers (from a 16x8 conversion, QUANTIZE ops at their edges) "
        "where int8 misses --max-accuracy-drop, each measured; TFLM targets.",
    )  # fmt: skip
    weights: str | None = _option(
        None, group="quantization", choices=lambda: WEIGHTS,
        help="int4: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED filters as packed int4 "
        "(half the weight bytes; TFLM and LiteRT targets), requantized after training, with "
        "its accuracy cost measured. A recipe's qat stage with weight_bits = 4 trains them "
        "instead. auto: int4 or int8 per layer, each measured (flash, TFLM arena, accuracy), "
        "int4 within --max-accuracy-drop. Default: as trained.",
    )  # fmt: skip
    calibration_samples: int = _option(
        DEFAULT_CALIBRATION_SAMPLES, group="quantization", kind=int, low=1,
        commands=_BUILD_FIT,
        help="Samples used to calibrate int8 ranges; the rest evaluate the model (fewer "
        "if DATA has too few: the summary and report.json say so).",
    )  # fmt: skip
    per_channel: str = _option(
        "auto", group="quantization", choices=lambda: PER_CHANNEL_MODES, commands=_BUILD_FIT,
        help="Weights quantized per channel or per tensor, layer by layer. auto: both are "
        "measured (flash, TFLM arena, accuracy) and a layer keeps per-channel weights only "
        "where they gain more than noise and the budgets allow; always / never: every layer.",
    )  # fmt: skip
    # compression: a recipe (built-in name or TOML file), or the stages' short forms
    recipe: str | None = _option(
        None, group="compression", metavar="NAME|RECIPE.toml", help=recipes_help
    )
    # stage type -> its short form's value (--prune 0.75: {"prune": "0.75"}); the options
    # are the registry's (stage_short_forms), not fields, so a plug-in stage has one too
    stages: Mapping[str, Any] = field(default_factory=dict)
    epochs: int | None = _option(
        None, group="compression", kind=int, low=1,
        help="Epochs of each short-form stage (default: per stage).",
    )  # fmt: skip
    compress: str | None = _option(
        None, group="compression", choices=lambda: COMPRESSIONS,
        help="lut: store clustered weights as packed indices + value tables (tflite-micro "
        "LUT compression, DECODE op); outputs must stay bit-identical in TFLM. auto: only "
        "the tensors whose decoded copy keeps the TFLM arena within the RAM budget (maybe "
        "none).",
    )  # fmt: skip
    # firmware
    out: Path | None = _option(
        DEFAULT_OUT,
        group="firmware",
        kind=Path,
        flags=("-o",),
        commands=_BUILD_FIT,
        help="Output directory (replaced atomically).",
        help_for={
            "fit": "Output directory: fit.json while searching, then the chosen "
            "build, recipe.toml and fit.json."
        },
    )  # fmt: skip  (None: nothing is written, the Python API's default)
    keep_names: bool = _option(
        False, group="firmware", kind=bool, commands=_BUILD_FIT_CHECK,
        help="TFLM targets: keep the tensor names in the shipped model (by default they go "
        "to model_names.json, which inspect and check read; TFLM reads none).",
    )  # fmt: skip
    layout: str = _option(
        "plain", group="firmware", choices=LAYOUTS.names, commands=_BUILD_CHECK,
        help="Firmware package layout: a plain folder, an Arduino library, or a CMake target.",
        help_for={"check": "Layout of the firmware package --artifacts writes: a plain folder, "
                  "an Arduino library, or a CMake target."},
    )  # fmt: skip
    c_lang: str = _option(
        "cc", group="firmware", choices=lambda: LANGUAGES, commands=_BUILD_CHECK,
        help="Model array source: C++ (model_data.cc, alignas) or C11 (model_data.c, "
        "_Alignas).",
    )  # fmt: skip
    section: str | None = _option(
        None, group="firmware", metavar="NAME", commands=_BUILD_CHECK,
        help="Place the model array in this linker section, e.g. .rodata.model.",
    )  # fmt: skip
    # common to every command (edgec.cli declares them on each)
    debug: bool = False  # --debug: tracebacks, the converter's and the model process's log
    verbosity: int = NORMAL  # --quiet -1, --verbose 1 (what they show: edgec.ui)

    def input_paths(self) -> tuple[str | Path | None, ...]:
        """What the build reads, by the names the user gave (model, data, custom-objects
        file, recipe and profile files; names that are no file are skipped by the caller):
        the output folder, which is replaced, must hold none of them."""
        return (self.model, self.data, self.custom_objects, self.recipe, *self.target.split(","))


def parse_duration(text: str) -> float:
    """``20m``, ``90s``, ``1.5h`` or plain seconds, in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text, re.ASCII)
    if match is None or float(match[1]) <= 0:
        raise UsageError(
            f"--time-budget '{text}' is not a duration",
            hint="use minutes, seconds or hours, e.g. `--time-budget 20m` (or 90s, 1.5h)",
        )
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def parse_rungs(text: str) -> tuple[int, ...]:
    """``1,2,4``: the epochs a stage trains at each successive-halving rung."""
    try:
        rungs = tuple(int(part) for part in text.split(","))
    except ValueError:
        rungs = ()
    if not rungs or any(r < 1 for r in rungs):
        raise UsageError(
            f"--rungs '{text}' is not a list of epochs", hint="use e.g. `--rungs 1,2,4`"
        )
    return rungs


_FIT = ("fit",)


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """``edgec fit``'s own options (the search's; ``FitOptions`` holds them)."""

    trials: int = _option(
        6, group="search", kind=int, low=1, commands=_FIT,
        help="Candidates trained (after the untrained screen rejected what cannot fit).",
    )  # fmt: skip
    max_screens: int = _option(
        48, group="search", kind=int, low=1, commands=_FIT,
        help="Structures screened untrained (converted and measured, no training) at most.",
    )  # fmt: skip
    time_budget: float | None = _option(
        None, group="search", metavar="DURATION", parse=parse_duration, commands=_FIT,
        help="Start no new trial after this long, e.g. 20m, 90s, 1.5h.",
    )  # fmt: skip
    seed: int = _option(
        0, group="search", kind=int, commands=_FIT,
        help="Search seed: orders candidates of equal cost and seeds each trial.",
    )  # fmt: skip
    rungs: tuple[int, ...] = _option(
        (1, 2, 4), group="search", metavar="EPOCHS,...", parse=parse_rungs, commands=_FIT,
        default_text="1,2,4",
        help="Successive halving: epochs a stage at each rung; half go on to the next.",
    )  # fmt: skip
    workers: int | None = _option(
        None, group="search", kind=int, low=1, commands=_FIT,
        help="Run trials in parallel on a local Ray instance (pip install "
        "edgec[distributed]).",
    )  # fmt: skip
    ray_address: str | None = _option(
        None, group="search", metavar="ADDR", commands=_FIT,
        help="Run trials on an existing Ray cluster.",
    )  # fmt: skip


# The build options every edgec fit trial takes from the search's own options (the rest
# are the candidate's: its recipe, compress, activations). FitOptions and TrialJob hold
# these fields with BuildOptions' defaults (tests/unit/test_options.py).
TRIAL_FIELDS = (
    "budget", "calibration_samples", "max_samples", "max_accuracy_drop", "custom_objects",
    "keep_names", "per_channel", "trust_model",
)  # fmt: skip
_RESERVED = ("model", "target", "data", "recipe", "out", "stages")


def cli_fields(command: str) -> Iterator[tuple[dataclasses.Field, Cli]]:
    """The fields ``command`` takes as options or arguments, in declaration order."""
    for f in (*dataclasses.fields(BuildOptions), *dataclasses.fields(SearchOptions)):
        cli = f.metadata.get("cli")
        if cli is not None and command in cli.commands:
            yield f, cli


def default(name: str) -> Any:
    """A field's default (the one place defaults are written): of ``BuildOptions`` or,
    for fit's own options, ``SearchOptions``."""
    fields = (*dataclasses.fields(BuildOptions), *dataclasses.fields(SearchOptions))
    f = next(f for f in fields if f.name == name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def short_form_types() -> list[str]:
    """The registered stages that have a short form, in the stages' order."""
    return [t for t in stage_types() if get_stage(t).short_form is not None]


def keyword_names() -> list[str]:
    """The keyword arguments ``edgec.build()`` takes besides model, target, data, recipe
    and out: every option, and each registered stage's short form by its stage type."""
    names = [f.name for f in dataclasses.fields(BuildOptions) if f.name not in _RESERVED]
    return sorted({*names, *short_form_types()})


def from_keywords(base: dict[str, Any], keywords: dict[str, Any]) -> BuildOptions:
    """``BuildOptions`` from ``edgec.build()``'s arguments: ``keywords`` are options by
    name and stage short forms by stage type (None or False: not given)."""
    stages = set(short_form_types())
    unknown = sorted(set(keywords) - set(keyword_names()))
    if unknown:
        raise InputError(
            f"unknown build option{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            hint=f"use {', '.join(keyword_names())}",
        )
    given = {k: v for k, v in keywords.items() if k in stages}
    options = {k: v for k, v in keywords.items() if k not in stages}
    variants = options.get("phone_variants", ())
    if isinstance(variants, str):
        variants = variants.split(",")
    options["phone_variants"] = tuple(s.strip() for s in variants if s.strip())
    for f in dataclasses.fields(BuildOptions):  # numpy's numbers as Python's: the model
        cli, value = f.metadata.get("cli"), options.get(f.name)  # process gets JSON
        if cli is not None and _is_number(value, cli.kind):
            options[f.name] = cli.kind(value)
    short = {k: v for k, v in given.items() if v is not None and v is not False}
    built = BuildOptions(**base, **options, stages=short)
    check_values(built)
    return built


def _is_number(value: Any, kind: type) -> bool:
    """``value`` is a number of ``kind`` (int or float; any type's, numpy's too)."""
    if kind not in (int, float) or isinstance(value, bool):
        return False
    return isinstance(value, numbers.Integral if kind is int else numbers.Real)


def check_values(options: BuildOptions) -> None:
    """The choices and ranges click checks on the command line, for values that came
    another way (the Python API, a fit trial): the same refusal, exit 2."""
    for f in dataclasses.fields(options):
        cli = f.metadata.get("cli")
        value = getattr(options, f.name)
        if cli is None or value is None:
            continue
        flag = f"--{f.name.replace('_', '-')}"
        allowed = cli.allowed()
        if allowed and value not in allowed:
            raise UsageError(f"unknown {flag} '{value}' (use {', '.join(allowed)})")
        if cli.kind in (int, float) and cli.parse is None:
            if not _is_number(value, cli.kind):
                raise UsageError(f"{flag} must be a number, not {type(value).__name__}")
            low = "" if cli.low is None else f"{cli.low:g}"
            high = "" if cli.high is None else f"{cli.high:g}"
            if (cli.low is not None and value < cli.low) or (
                cli.high is not None and value > cli.high
            ):
                span = f"{low}-{high}" if high else f"at least {low}"
                raise UsageError(f"{flag} {value:g} is out of range ({span})")
