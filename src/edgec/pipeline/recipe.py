"""Compression recipes: an ordered list of training-time stages, read from TOML and checked.

A recipe is data::

    name = "prune-cluster-qat"
    [[stage]]
    type = "prune"
    sparsity = 0.75
    [[stage]]
    type = "cluster"
    clusters = 16
    [[stage]]
    type = "qat"

Built-in recipes live in ``pipeline/recipes/*.toml``. Parsing checks everything that does
not need the model (stage types, parameter names, types, ranges, order); the checks that
need the model and the data (layers a stage cannot handle, labels) are in
``stages.validate``. Both run before any training. No TensorFlow is imported here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgec.errors import InputError

TRAINING_STAGES = ("distill", "prune", "cluster", "qat")
PATTERNS = ("unstructured", "2:4")
SCHEDULES = ("polynomial", "constant")
CENTROID_INITS = ("kmeans++", "linear", "density", "random")


@dataclass(frozen=True, slots=True)
class Param:
    kind: type  # int, float, bool, str, list, dict
    default: Any
    low: float | None = None  # inclusive unless open_low
    high: float | None = None
    open_low: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    def describe_range(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low = "" if self.low is None else f"{'>' if self.open_low else '>='} {self.low:g}"
        high = "" if self.high is None else f"<= {self.high:g}"
        return " and ".join(p for p in (low, high) if p)


def _common(epochs: int, learning_rate: float) -> dict[str, Param]:
    return {
        "epochs": Param(int, epochs, 1, 1000, help="training epochs of this stage"),
        "learning_rate": Param(float, learning_rate, 0, 1, open_low=True, help="Adam rate"),
        "batch_size": Param(int, 32, 1, 65536, help="training batch size"),
    }


# stage type -> parameter name -> Param. The defaults are what the built-in recipes use.
STAGE_PARAMS: dict[str, dict[str, Param]] = {
    "distill": {
        **_common(30, 1e-3),
        "student": Param(str, "", help="student model file; empty: derive one with width"),
        "width": Param(float, 0.5, 0, 1, open_low=True, help="filter/unit multiplier"),
        "temperature": Param(float, 4.0, 0, 100, open_low=True, help="softening temperature"),
        "alpha": Param(float, 0.1, 0, 1, help="weight of the hard (label) loss"),
    },
    "prune": {
        **_common(6, 1e-3),
        "sparsity": Param(float, 0.75, 0, 0.99, open_low=True, help="final zero fraction"),
        "initial_sparsity": Param(float, 0.0, 0, 0.99, help="polynomial schedule start"),
        "schedule": Param(str, "polynomial", choices=SCHEDULES),
        "pattern": Param(str, "unstructured", choices=PATTERNS),
        "block": Param(list, [1, 1], help="block size [rows, cols], Dense kernels only"),
        "layers": Param(list, [], help="layer names or types; empty: every prunable layer"),
        "layer_sparsity": Param(dict, {}, help="per-layer final sparsity, by layer name"),
    },
    "cluster": {
        **_common(3, 2e-4),
        "clusters": Param(int, 16, 2, 256, help="values per kernel (per channel)"),
        "init": Param(str, "kmeans++", choices=CENTROID_INITS),
        "per_channel": Param(bool, True, help="cluster each Conv2D output channel separately"),
        "layers": Param(list, [], help="layer names or types; empty: every clusterable layer"),
    },
    "qat": {**_common(2, 1e-4)},
}


@dataclass(frozen=True, slots=True)
class StageSpec:
    type: str
    params: MappingProxyType  # every parameter of the type, defaults filled in
    index: int  # 1-based position in the recipe, for messages

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    @property
    def label(self) -> str:
        return f"stage {self.index} ({self.type})"

    @property
    def explicit_layers(self) -> bool:
        return bool(self.params.get("layers"))


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    description: str
    stages: tuple[StageSpec, ...]
    source: str  # "built-in" or the file path

    def stage(self, type_: str) -> StageSpec | None:
        return next((s for s in self.stages if s.type == type_), None)

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(s.type for s in self.stages)


def builtin_recipe_names() -> list[str]:
    folder = resources.files("edgec.pipeline") / "recipes"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_recipe(name_or_path: str) -> Recipe:
    """A built-in recipe name (``prune-qat``) or a recipe TOML file."""
    if name_or_path in builtin_recipe_names():
        text = (resources.files("edgec.pipeline") / "recipes" / f"{name_or_path}.toml").read_text()
        return parse_recipe(tomllib.loads(text), source=f"built-in recipe {name_or_path}")
    path = Path(name_or_path)
    if path.suffix != ".toml" or not path.is_file():
        raise InputError(
            f"recipe '{name_or_path}' is neither a built-in recipe nor a .toml file",
            hint=f"use one of {', '.join(builtin_recipe_names())} or a recipe TOML file",
        )
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"recipe {path} is not valid TOML: {exc}") from None
    recipe = parse_recipe(data, source=str(path))
    return _resolve_student_paths(recipe, path.parent)


def recipe_from_options(
    *,
    distill: str | None = None,
    prune: str | None = None,
    cluster: int | None = None,
    qat: bool = False,
    epochs: int | None = None,
) -> Recipe | None:
    """The short CLI forms (``--distill 0.5 --prune 0.75 --cluster 16 --qat``) as a recipe.

    Stages always come in the one valid order: distill, prune, cluster, qat.
    """
    stages: list[dict[str, Any]] = []
    if distill is not None:
        try:
            stages.append({"type": "distill", "width": float(distill)})
        except ValueError:
            stages.append({"type": "distill", "student": distill})
    if prune is not None:
        if prune == "2:4":
            stages.append({"type": "prune", "pattern": "2:4"})
        else:
            try:
                stages.append({"type": "prune", "sparsity": float(prune)})
            except ValueError:
                raise InputError(
                    f"--prune '{prune}' is not a sparsity",
                    hint="give a fraction of zeros such as 0.75, or 2:4",
                ) from None
    if cluster is not None:
        stages.append({"type": "cluster", "clusters": cluster})
    if qat:
        stages.append({"type": "qat"})
    if not stages:
        if epochs is not None:
            raise InputError("--epochs needs a stage that trains (--prune, --cluster, --qat, ...)")
        return None
    if epochs is not None:
        for s in stages:
            s["epochs"] = epochs
    name = "+".join(s["type"] for s in stages)
    return parse_recipe({"name": name, "stage": stages}, source="command line")


def parse_recipe(data: dict[str, Any], *, source: str) -> Recipe:
    """Check a recipe's structure, parameters and order; fill in defaults."""
    where = f"recipe {source}"
    unknown = sorted(set(data) - {"name", "description", "stage"})
    if unknown:
        raise InputError(
            f"{where}: unknown key '{unknown[0]}'",
            hint="a recipe has name, description and [[stage]] tables",
        )
    raw = data.get("stage")
    if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
        raise InputError(
            f"{where} has no [[stage]] tables",
            hint="add at least one [[stage]] with type = " + " | ".join(TRAINING_STAGES),
        )
    stages = tuple(_parse_stage(s, i, where) for i, s in enumerate(raw, start=1))
    _check_order(stages, where)
    types = [s.type for s in stages]
    if "prune" in types and "cluster" in types:
        cluster = stages[types.index("cluster")]
        if cluster["clusters"] < 3:
            raise InputError(
                f"{where}, {cluster.label}: clusters = {cluster['clusters']} after pruning",
                hint="keeping the zeros takes one cluster: use clusters >= 3",
            )
    return Recipe(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        stages=stages,
        source=source,
    )


def _parse_stage(raw: dict[str, Any], index: int, where: str) -> StageSpec:
    type_ = raw.get("type")
    if type_ not in STAGE_PARAMS:
        got = f"type '{type_}'" if type_ is not None else "no type"
        raise InputError(
            f"{where}, stage {index}: unknown stage {got}",
            hint=f"use type = one of {', '.join(TRAINING_STAGES)}",
        )
    schema = STAGE_PARAMS[type_]
    label = f"{where}, stage {index} ({type_})"
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "type":
            continue
        if key not in schema:
            raise InputError(
                f"{label}: unknown parameter '{key}'",
                hint=f"{type_} takes {', '.join(schema)}",
            )
        params[key] = _checked_value(key, value, schema[key], label)
    for key, spec in schema.items():
        params.setdefault(key, spec.default)
    _check_stage(type_, params, raw, label)
    return StageSpec(type=type_, params=MappingProxyType(params), index=index)


def _checked_value(key: str, value: Any, spec: Param, label: str) -> Any:
    kind = spec.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(
            f"{label}: parameter '{key}' must be {kind.__name__}, got {value!r}",
            hint=spec.help or spec.describe_range(),
        )
    if spec.choices and value not in spec.choices:
        raise InputError(
            f"{label}: parameter '{key}' is '{value}'", hint=f"use {spec.describe_range()}"
        )
    if isinstance(value, int | float):
        too_low = spec.low is not None and (
            value <= spec.low if spec.open_low else value < spec.low
        )
        too_high = spec.high is not None and value > spec.high
        if too_low or too_high:
            raise InputError(
                f"{label}: parameter '{key}' = {value:g} is out of range",
                hint=f"use a value {spec.describe_range()}",
            )
    if (
        key == "layers"
        and isinstance(value, list)
        and not all(isinstance(v, str) and v for v in value)
    ):
        raise InputError(f"{label}: 'layers' must be a list of layer names or layer types")
    return value


def _check_stage(type_: str, params: dict[str, Any], raw: dict[str, Any], label: str) -> None:
    if type_ == "prune":
        sparsity = params["sparsity"]
        if params["pattern"] == "2:4":
            for key in ("sparsity", "initial_sparsity", "schedule", "block", "layer_sparsity"):
                if key in raw:
                    raise InputError(
                        f"{label}: '{key}' does not apply to pattern 2:4 (always 2 zeros in 4)",
                        hint=f"remove '{key}' or use pattern = 'unstructured'",
                    )
        if params["initial_sparsity"] >= sparsity:
            raise InputError(
                f"{label}: initial_sparsity {params['initial_sparsity']:g} is not below "
                f"sparsity {sparsity:g}",
                hint="the schedule grows sparsity from initial_sparsity to sparsity",
            )
        if params["schedule"] == "constant" and "initial_sparsity" in raw:
            raise InputError(
                f"{label}: initial_sparsity does not apply to the constant schedule",
                hint="remove it, or use schedule = 'polynomial'",
            )
        block = params["block"]
        if (
            len(block) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in block)
            or not all(1 <= b <= 64 for b in block)
        ):
            raise InputError(
                f"{label}: block must be two integers [rows, cols] from 1 to 64, got {block!r}"
            )
        for layer, value in params["layer_sparsity"].items():
            if (
                not isinstance(value, float | int)
                or isinstance(value, bool)
                or not 0 < value <= 0.99
            ):
                raise InputError(
                    f"{label}: layer_sparsity for layer '{layer}' = {value!r} is out of range",
                    hint="use a fraction of zeros > 0 and <= 0.99",
                )
    if type_ == "distill" and raw.get("student") and "width" in raw:
        raise InputError(
            f"{label}: give either student (a model file) or width (derive one), not both"
        )


def _check_order(stages: tuple[StageSpec, ...], where: str) -> None:
    seen: dict[str, StageSpec] = {}
    for s in stages:
        if s.type in seen:
            raise InputError(
                f"{where}: {s.label} repeats stage type '{s.type}' (already {seen[s.type].label})",
                hint="use each stage type once",
            )
        seen[s.type] = s
    order = {t: i for i, t in enumerate(TRAINING_STAGES)}
    for before, after in zip(stages, stages[1:], strict=False):
        if order[after.type] < order[before.type]:
            why = {
                "qat": "QAT must be the last training stage (later training would undo it)",
                "distill": "distill must come first: later stages apply to the student",
                "prune": "clustering before pruning: pruning would undo the clusters",
            }
            key = before.type if before.type == "qat" else after.type
            raise InputError(
                f"{where}: {after.label} comes after {before.label}; {why.get(key, '')}".rstrip(
                    "; "
                ),
                hint="order the stages " + " -> ".join(TRAINING_STAGES),
            )


def _resolve_student_paths(recipe: Recipe, folder: Path) -> Recipe:
    """A student file in a recipe file is relative to the recipe's folder."""
    stages = []
    for s in recipe.stages:
        if s.type == "distill" and s["student"] and not Path(s["student"]).is_absolute():
            params = dict(s.params, student=str(folder / s["student"]))
            s = StageSpec(type=s.type, params=MappingProxyType(params), index=s.index)
        stages.append(s)
    return Recipe(recipe.name, recipe.description, tuple(stages), recipe.source)
