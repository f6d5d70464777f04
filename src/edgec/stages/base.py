"""The Stage interface and the stage registry.

A compression stage is one class, registered under its recipe ``type``::

    @register
    class Scale(Stage):
        type = "scale"
        rank = 25                      # after prune (20), before cluster (30)
        params = {**training_params(2, 1e-3), "factor": Param(float, 1.0, 0, 10)}
        verb = "Scaling"

        def run(self, sp, plan, model, train, validation, on_epoch):
            ...
            return StageResult(new_model, ScaleMetrics(...))

Everything that lists or checks stages reads the registry: recipe parsing (parameters,
order), the CLI's short-form options, the progress line, the summary line and the proof in
the int8 artifact. An unknown type is an error naming the known ones. No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from edgec.errors import EdgecError, InputError
from edgec.targets.weights import Expectations

if TYPE_CHECKING:
    from edgec.datasets.loading import Dataset
    from edgec.stages.plan import CompressionPlan, StagePlan, StageResult
    from edgec.stages.recipe import StageSpec

EpochCallback = Callable[[str], None]
_S = TypeVar("_S", bound="type[Stage]")


@dataclass(frozen=True, slots=True)
class Param:
    kind: type | tuple[type, ...]  # int, float, bool, str, list, dict; or a union (bool, str)
    default: Any
    low: float | None = None  # inclusive unless open_low
    high: float | None = None
    open_low: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def kind_name(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        return " or ".join(k.__name__ for k in kinds)

    def describe_range(self) -> str:
        if self.choices and isinstance(self.kind, tuple) and bool in self.kind:
            return "true, false or " + " or ".join(f'"{c}"' for c in self.choices)
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low = "" if self.low is None else f"{'>' if self.open_low else '>='} {self.low:g}"
        high = "" if self.high is None else f"<= {self.high:g}"
        return " and ".join(p for p in (low, high) if p)


def training_params(epochs: int, learning_rate: float) -> dict[str, Param]:
    """The parameters every training stage takes, with this stage's defaults."""
    return {
        "epochs": Param(int, epochs, 1, 1000, help="training epochs of this stage"),
        "learning_rate": Param(float, learning_rate, 0, 1, open_low=True, help="Adam rate"),
        "batch_size": Param(int, 32, 1, 65536, help="training batch size"),
    }


@dataclass(frozen=True, slots=True)
class ShortForm:
    """A stage's command-line short form, e.g. ``--prune 0.75``.

    ``kind`` is the option's value type: bool makes a flag, int an integer >= ``low``, str
    a free string. ``to_params`` turns the value into the stage's recipe parameters.
    """

    help: str
    kind: type = str
    metavar: str | None = None
    low: int | None = None
    to_params: Callable[[Any], dict[str, Any]] = lambda value: {}


class Metrics(Protocol):
    """A stage's typed metrics; ``to_dict`` gives the report's ``Stage.metrics``."""

    def to_dict(self) -> dict[str, Any]: ...


class Stage:
    """One compression stage. Subclass it and decorate the class with ``@register``."""

    type: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    rank: ClassVar[int]  # stages run in increasing rank: the one valid order
    order_why: ClassVar[str] = ""  # why this stage cannot come after a higher rank
    last: ClassVar[bool] = False  # nothing may follow it (its reason is then the one given)
    verb: ClassVar[str] = ""  # progress line: "<verb> (N epochs)"
    short_form: ClassVar[ShortForm | None] = None
    makes_zeros: ClassVar[bool] = False  # later stages must keep its zeros (prune)
    # Data with x only: the first stage trains on the input model's outputs (distill).
    learns_from_teacher: ClassVar[bool] = False
    # The models compared before -> after, named in the metrics (distill: teacher, student).
    model_names: ClassVar[tuple[str, str] | None] = None

    def check_params(self, params: dict[str, Any], raw: dict[str, Any], label: str) -> None:
        """Model-free checks of one stage's parameters (``raw``: as written), at parse time."""

    def check_in_recipe(self, spec: StageSpec, earlier: tuple[StageSpec, ...], where: str) -> None:
        """Checks against the stages before this one in the recipe, at parse time."""

    def resolve_paths(self, params: dict[str, Any], folder: Path) -> dict[str, Any]:
        """Parameters naming files, made relative to a recipe file's ``folder`` (through
        ``file_in_recipe_folder``)."""
        return params

    def plan(self, sp: StagePlan, plan: CompressionPlan, model: Any, train: Dataset | None) -> Any:
        """Check the stage against ``model`` and the data before any training; choose its
        layers into ``sp``. Returns the model later stages apply to (usually ``model``)."""
        return model

    def run(
        self,
        sp: StagePlan,
        plan: CompressionPlan,
        model: Any,
        train: Dataset,
        validation: Dataset,
        on_epoch: EpochCallback | None,
    ) -> StageResult:
        raise NotImplementedError

    def expectations(self, sp: StagePlan) -> Expectations:
        """What must survive into the int8 artifact (checked on its kernels)."""
        return Expectations()

    def describe(self, spec: StageSpec) -> str:
        """The progress line while the stage runs."""
        epochs = spec.params.get("epochs")
        if epochs is None:
            return self.verb or self.type
        return f"{self.verb or self.type} ({epochs} epoch{'s' if epochs != 1 else ''})"

    def summary_parts(self, m: dict[str, Any]) -> list[str]:
        """This stage's own parts of the terminal's summary line, from its metrics."""
        return []

    def summary_tail(self, m: dict[str, Any]) -> list[str]:
        """Parts that close the summary line, after the common ones."""
        return []


def file_in_recipe_folder(folder: Path, name: str, what: str) -> Path:
    """A file a recipe names: relative to the recipe's folder, and inside it.

    A recipe comes from a pull request like the model: an absolute path, ``..`` or a
    symbolic link out of the folder would let it load any model file on the machine (one
    a CI that accepts only ``.keras`` models never checked).
    """
    path = Path(name)
    resolved = (folder / path).resolve()
    if path.is_absolute() or ".." in path.parts or not resolved.is_relative_to(folder.resolve()):
        raise InputError(
            f"recipe in {folder}: {what} '{name}' is not a file inside the recipe's folder",
            hint="put the file next to the recipe (or below it) and name it relative to the recipe",
        )
    return folder / path


_REGISTRY: dict[str, Stage] = {}


def register(cls: _S) -> _S:
    """Class decorator: add a stage under its ``type``. A taken type is an error."""
    name = getattr(cls, "type", None)
    if not isinstance(name, str) or not name:
        raise EdgecError(f"stage class {cls.__name__} has no type")
    if name in _REGISTRY:
        raise EdgecError(
            f"stage type '{name}' is already registered ({type(_REGISTRY[name]).__name__})"
        )
    _REGISTRY[name] = cls()
    return cls


def unregister(name: str) -> None:
    """Remove a registered stage (for tests and plug-ins that register temporarily)."""
    _REGISTRY.pop(name, None)


def stage_types() -> tuple[str, ...]:
    """Every registered type, in the one valid order."""
    return tuple(sorted(_REGISTRY, key=lambda t: _REGISTRY[t].rank))


def get_stage(name: str) -> Stage:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown stage type '{name}'", hint=f"use one of {', '.join(stage_types())}"
        ) from None


def find_stage(name: str) -> Stage | None:
    """The stage registered as ``name``, or None (e.g. for a build step's name)."""
    return _REGISTRY.get(name)


def summary_line(stage: Stage | None, m: dict[str, Any]) -> str:
    """One line per compression stage: validation figure before -> after, and what changed."""
    parts = []
    for key, unit in (("accuracy", "%"), ("mse", "")):
        if f"{key}_before" in m:
            parts.append(
                f"validation {key} {m[f'{key}_before']:g}{unit} → {m[f'{key}_after']:g}{unit}"
            )
    if stage is not None:
        parts.extend(stage.summary_parts(m))
    if m.get("skipped_layers"):
        parts.append("not applied: " + ", ".join(m["skipped_layers"]))
    if m.get("targets"):  # only when not the data's labels
        parts.append(f"trained on {m['targets']}")
    if stage is not None:
        parts.extend(stage.summary_tail(m))
    return "; ".join(parts)


def layer_parts(m: dict[str, Any]) -> list[str]:
    """Per-layer kernel figures (zeros, distinct values) of a prune or cluster stage."""
    parts = []
    for name, layer in m.get("layers", {}).items():
        bits = []
        if "sparsity" in layer:
            bits.append(f"{layer['sparsity']:.0%} zeros")
        if "per_channel" in layer:
            values = layer.get("unique_values_per_channel") if layer["per_channel"] else None
            values = values if values is not None else layer.get("unique_values")
            bits.append(f"{values} values{' per channel' if layer['per_channel'] else ''}")
        parts.append(f"{name} " + ", ".join(bits))
    return parts
