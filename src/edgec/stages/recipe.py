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

Built-in recipes live in ``stages/recipes/*.toml``. Parsing checks everything that does
not need the model (stage types, parameter names, types, ranges, order), reading each
stage's declaration from the registry (``stages/base.py``); the checks that need the model
and the data (layers a stage cannot handle, labels) are each stage's ``plan``, called by
``stages.plan.validate``. Both run before any training. No TensorFlow is imported here.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgec import safeio
from edgec.errors import InputError
from edgec.stages.base import Param, get_stage, stage_types


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
    folder = resources.files("edgec.stages") / "recipes"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_recipe(name_or_path: str) -> Recipe:
    """A built-in recipe name (``prune-qat``) or a recipe TOML file."""
    if name_or_path in builtin_recipe_names():
        text = (resources.files("edgec.stages") / "recipes" / f"{name_or_path}.toml").read_text()
        return parse_recipe(tomllib.loads(text), source=f"built-in recipe {name_or_path}")
    path = Path(name_or_path)
    if path.suffix != ".toml" or not (path.exists() or path.is_symlink()):
        names = builtin_recipe_names()
        near = difflib.get_close_matches(name_or_path.casefold(), names, n=2, cutoff=0.6)
        guess = f"did you mean {' or '.join(near)}? " if near else ""
        raise InputError(
            f"recipe '{name_or_path}' is neither a built-in recipe nor a .toml file",
            hint=f"{guess}use one of {', '.join(names)} or a recipe TOML file",
        )
    text = safeio.read_text(path, "recipe", limit=safeio.MAX_TOML_BYTES)
    data = safeio.load_toml(text, f"recipe {path}")
    recipe = parse_recipe(data, source=str(path))
    return _resolve_paths(recipe, path.parent)


def recipe_from_options(*, epochs: int | None = None, **short_forms: Any) -> Recipe | None:
    """The short CLI forms (``--distill 0.5 --prune 0.75 --cluster 16 --qat``) as a recipe.

    ``short_forms`` maps a stage type to its option's value (None or False: not given).
    Stages always come in the one valid order (the registry's).
    """
    given = {t: v for t, v in short_forms.items() if v is not None and v is not False}
    stages: list[dict[str, Any]] = []
    for type_ in stage_types():
        form = get_stage(type_).short_form
        if type_ in given and form is not None:
            stages.append({"type": type_, **form.to_params(given.pop(type_))})
    if given:
        raise InputError(
            f"stage '{sorted(given)[0]}' has no short form", hint="put it in a recipe file"
        )
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
            hint="add at least one [[stage]] with type = " + " | ".join(stage_types()),
        )
    if len(raw) > len(stage_types()):
        raise InputError(
            f"{where} has {len(raw):,} stages; each of the {len(stage_types())} stage types "
            "can appear once",
            hint="order the stages " + " -> ".join(stage_types()),
        )
    stages = tuple(_parse_stage(s, i, where) for i, s in enumerate(raw, start=1))
    _check_order(stages, where)
    for i, spec in enumerate(stages):
        get_stage(spec.type).check_in_recipe(spec, stages[:i], where)
    return Recipe(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        stages=stages,
        source=source,
    )


def _parse_stage(raw: dict[str, Any], index: int, where: str) -> StageSpec:
    type_ = raw.get("type")
    if not isinstance(type_, str) or type_ not in stage_types():
        got = f"type '{type_}'" if type_ is not None else "no type"
        raise InputError(
            f"{where}, stage {index}: unknown stage {got}",
            hint=f"use type = one of {', '.join(stage_types())}",
        )
    stage = get_stage(type_)
    schema = stage.params
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
    stage.check_params(params, raw, label)
    return StageSpec(type=type_, params=MappingProxyType(params), index=index)


def _checked_value(key: str, value: Any, spec: Param, label: str) -> Any:
    kind = spec.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(
            f"{label}: parameter '{key}' must be {spec.kind_name}, got {value!r}",
            hint=spec.help or spec.describe_range(),
        )
    # choices name the strings a parameter takes (for a bool-or-str one, its strings)
    if spec.choices and isinstance(value, str) and value not in spec.choices:
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


def _check_order(stages: tuple[StageSpec, ...], where: str) -> None:
    seen: dict[str, StageSpec] = {}
    for s in stages:
        if s.type in seen:
            raise InputError(
                f"{where}: {s.label} repeats stage type '{s.type}' (already {seen[s.type].label})",
                hint="use each stage type once",
            )
        seen[s.type] = s
    for before, after in zip(stages, stages[1:], strict=False):
        first, then = get_stage(before.type), get_stage(after.type)
        if then.rank < first.rank:
            why = first.order_why if first.last else then.order_why
            raise InputError(
                f"{where}: {after.label} comes after {before.label}; {why}".rstrip("; "),
                hint="order the stages " + " -> ".join(stage_types()),
            )


def _resolve_paths(recipe: Recipe, folder: Path) -> Recipe:
    """Files a recipe file names are relative to the recipe's folder."""
    stages = []
    for s in recipe.stages:
        params = get_stage(s.type).resolve_paths(dict(s.params), folder)
        stages.append(StageSpec(type=s.type, params=MappingProxyType(params), index=s.index))
    return Recipe(recipe.name, recipe.description, tuple(stages), recipe.source)
