"""The levers ``edgec fit`` searches and the candidates they make, as recipes.

A candidate is one value per lever. Its recipe chains the stages the levers turn on, in
the registry's order (distill -> prune_channels -> low_rank -> cluster -> qat), each
trained for the rung's epochs; ``weights = 4`` is the qat stage's ``weight_bits = 4`` (int4
filters); ``compress`` and ``activations`` are build options.
Candidates are tried in order of a rough accuracy cost (a lever that removes more costs
more; ties broken by a hash of the search seed and the candidate), so the search reaches
the least compressed candidates that fit first. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass
from typing import Any

from edgec.errors import printable

DISTILL_EPOCHS = 5  # distillation trains longer than a fine-tune (the recipe: 30 vs 2-4 epochs)


@dataclass(frozen=True)
class Lever:
    name: str
    values: tuple[Any, ...]  # the first is "off" (the input model as it is)
    costs: tuple[float, ...]  # rough accuracy cost of each value: the order of the search
    help: str
    short: str = ""  # the live table's label ("" shows the value alone)


LEVERS = (
    Lever("distill_width", (None, 0.75, 0.5), (0, 2, 4), "train a student this wide", "student"),
    Lever(
        "channel_fraction", (0.0, 0.25, 0.5, 0.75), (0, 1, 2.5, 5), "channels removed", "channels-"
    ),
    Lever("low_rank_energy", (None, 0.95, 0.85), (0, 1, 2.5), "singular values kept (SVD)", "svd"),
    Lever("clusters", (None, 16, 8), (0, 1, 2), "values per kernel (then --compress)", "clusters"),
    # Clustering pays on the chip only through compression: without it the int8 model has
    # the same flash and arena, and less accuracy. A clustered candidate always compresses,
    # with --compress auto: only the kernels whose decoded copy fits the RAM budget (a
    # small per-channel kernel, e.g. DS-CNN's depthwise 3x3, saves nothing: its tables
    # cost more than its packed indices save, and `lut` would refuse the whole model).
    Lever("compress", (None, "auto"), (0, 0), "compression of clustered kernels"),
    Lever("qat", (False, True), (0.5, 0), "quantization-aware training", "qat"),
    # int4 filters: the qat stage trains 4-bit weights (weight_bits = 4), half the filter
    # bytes, on runtimes with int4 kernels only. Cheaper than removing channels: 4-bit QAT
    # cost DS-CNN 0.33 points against 8-bit QAT, the example none (docs/benchmarks.md,
    # "int4"); the reference kernels' unpack scratch grows the arena, which screens measure.
    Lever("weights", (8, 4), (0, 0.75), "weight bits (4: int4 filters, trained by QAT)", "w"),
    # int16 activations (16x8) are more accurate but double the activations' RAM and are
    # what regression and audio models need, rarely classifiers: tried after the cheap levers
    Lever("activations", ("int8", "int16"), (0, 3), "activation type (16x8 mode)"),
)
LEVER_NAMES = tuple(lever.name for lever in LEVERS)
# What changes the int8 model's structure (flash, arena, MACs): a screen's cache key.
STRUCTURAL = ("distill_width", "channel_fraction", "low_rank_energy", "clusters", "compress",
              "weights", "activations")  # fmt: skip


def supported_levers(
    activations: tuple[str, ...], per_channel: str = "auto", *, int4: bool = True
) -> tuple[Lever, ...]:
    """The levers this build supports: ``activations`` are the conversion's activation
    types; with ``--per-channel always`` or ``never`` no QAT (the build refuses it: QAT
    fixes each layer's weight quantization itself), so no int4 weights either (QAT trains
    them); ``int4``: every target's runtime has int4 kernels (``runtimes/*.toml``)."""
    levers = []
    for lever in LEVERS:
        if lever.name == "activations":
            lever = dataclasses.replace(
                lever, values=activations, costs=lever.costs[: len(activations)]
            )
        elif (lever.name == "qat" and per_channel != "auto") or (
            lever.name == "weights" and (per_channel != "auto" or not int4)
        ):
            lever = dataclasses.replace(lever, values=lever.values[:1], costs=lever.costs[:1])
        levers.append(lever)
    return tuple(levers)


def candidate_key(params: dict[str, Any]) -> str:
    """A stable, readable key: the levers that are on, e.g. ``channel_fraction=0.5,qat``."""
    parts = []
    for lever in LEVERS:
        value = params.get(lever.name, lever.values[0])
        if value == lever.values[0]:
            continue
        parts.append(lever.name if value is True else f"{lever.name}={value}")
    return ",".join(parts) or "plain"


def short_key(params: dict[str, Any]) -> str:
    """The candidate in a few characters, for the live table: ``channels-0.5 svd0.9 qat``."""
    parts = []
    for lever in LEVERS:
        value = params.get(lever.name, lever.values[0])
        if value != lever.values[0]:
            parts.append(lever.short if value is True else f"{lever.short}{value}")
    return " ".join(parts) or "plain"


def structure_key(params: dict[str, Any]) -> str:
    return candidate_key({k: v for k, v in params.items() if k in STRUCTURAL})


def structural(params: dict[str, Any]) -> dict[str, Any]:
    """The candidate with only its structural levers on: what its screen converts (int4
    weights untrained: the screen's int8 filters requantized to 4 bits)."""
    return {**params, "qat": False}


def cost(params: dict[str, Any], levers: tuple[Lever, ...]) -> float:
    return sum(lever.costs[lever.values.index(params[lever.name])] for lever in levers)


def trial_seed(seed: int, key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def candidates(levers: tuple[Lever, ...], seed: int) -> list[dict[str, Any]]:
    """Every valid candidate, cheapest (least compression) first."""
    found = []
    for values in itertools.product(*(lever.values for lever in levers)):
        params = dict(zip((lever.name for lever in levers), values, strict=True))
        if (params["clusters"] is None) != (params["compress"] is None):
            continue  # compression needs clusters; clusters without it cannot shrink
        if params["qat"] and params["activations"] != "int8":
            continue  # TF-MOT's QAT trains int8 ranges: the build refuses QAT with int16
        if params.get("weights", 8) == 4 and not (
            params["qat"] and params["clusters"] is None and params["activations"] == "int8"
        ):
            # int4 filters are the qat stage's weight_bits = 4: refused after a cluster
            # stage (CQAT keeps 8-bit centroids) and with int16 activations (int8 x int4)
            continue
        found.append(params)
    return sorted(found, key=lambda p: (cost(p, levers), trial_seed(seed, candidate_key(p))))


def recipe_stages(params: dict[str, Any], epochs: int) -> list[dict[str, Any]]:
    """The recipe's [[stage]] tables for a candidate trained ``epochs`` per stage."""
    stages: list[dict[str, Any]] = []
    if params["distill_width"] is not None:
        stages.append({"type": "distill", "width": params["distill_width"],
                       "epochs": DISTILL_EPOCHS * epochs})  # fmt: skip
    if params["channel_fraction"]:
        stages.append({"type": "prune_channels", "fraction": params["channel_fraction"],
                       "epochs": epochs})  # fmt: skip
    if params["low_rank_energy"] is not None:
        stages.append({"type": "low_rank", "energy": params["low_rank_energy"], "epochs": epochs})
    if params["clusters"] is not None:
        stages.append({"type": "cluster", "clusters": params["clusters"], "epochs": epochs})
    if params["qat"]:
        stages.append({"type": "qat", "epochs": epochs})
        if params.get("weights", 8) == 4:
            stages[-1]["weight_bits"] = 4
    return stages


def recipe_toml(
    params: dict[str, Any],
    epochs: int,
    *,
    note: str = "",
    keep_names: bool = False,
    per_channel: str = "auto",
) -> str:
    """The candidate as a recipe TOML that ``edgec build --recipe`` takes."""
    key = candidate_key(params)
    options = build_options(params)
    if per_channel != "auto":
        options["per_channel"] = per_channel
    lines = [f"# {printable(note)}"] if note else []  # no line break can end the comment
    if options or keep_names:
        flags = " ".join(
            [f"--{k.replace('_', '-')} {v}" for k, v in options.items()]
            + (["--keep-names"] if keep_names else [])
        )
        lines.append(f"# build it with: edgec build ... --recipe recipe.toml {flags}")
    about = f"found by edgec fit: {key}, {epochs} epoch(s) a stage"
    lines += [f"name = {_toml(f'fit-{key}')}", f"description = {_toml(about)}"]
    for stage in recipe_stages(params, epochs):
        lines += ["", "[[stage]]", *(f"{k} = {_toml(v)}" for k, v in stage.items())]
    return "\n".join(lines) + "\n"


def build_options(params: dict[str, Any]) -> dict[str, Any]:
    """The build options (not recipe stages) a candidate sets."""
    options: dict[str, Any] = {}
    if params.get("compress") is not None:
        options["compress"] = params["compress"]
    if params.get("activations", "int8") != "int8":
        options["activations"] = params["activations"]
    return options


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return toml_string(str(value))


def toml_string(text: str) -> str:
    """A TOML basic string holding ``text``: quotes, backslashes and control characters
    escaped, so no value can end the string or the line (surrogates become U+FFFD)."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
