"""The public Python API: what ``edgec build``, ``check``, ``inspect`` and ``targets`` do.

The command line is a thin layer over these functions, so a notebook gets exactly what a
CI job gets: the same checks, the same typed reports, the same errors (an
:class:`edgec.errors.EdgecError` with a one-line message, a hint and an exit code).
TensorFlow is imported only by :func:`build` (and by :func:`inspect` on a Keras model).

Example:
    Build the built-in example for a Cortex-M4 board, then check and inspect what
    shipped (``folder`` is any empty directory)::

        >>> import edgec
        >>> report = edgec.build(target="cortex-m", out=folder / "out")
        >>> report.ok, report.memory.arena_bytes > 0
        (True, True)
        >>> checked = edgec.check(folder / "out" / "model.tflite", target="cortex-m4")
        >>> checked.ok, checked.targets[0].target
        (True, 'cortex-m4')
        >>> edgec.inspect(folder / "out" / "model.tflite").layers[0].op
        'CONV_2D'
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import EdgecError, InputError, UsageError, first_line
from edgec.targets.arena import DEFAULT_ARENA_MARGIN

if TYPE_CHECKING:  # the runtime imports stay inside the functions (TensorFlow is slow)
    from edgec.builder import Progress
    from edgec.export.checked import PackageOptions
    from edgec.options import BuildOptions
    from edgec.pipeline.inspect import Inspection
    from edgec.report import BuildReport, CheckReport
    from edgec.targets import TargetProfile

__all__ = ["build", "check", "inspect", "target_profiles"]


def build(
    model: str | Path | Any = None,
    *,
    target: str,
    data: str | Path | Any = None,
    recipe: str | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> BuildReport:
    """Convert a Keras model to int8, check it against targets and export firmware files.

    Args:
        model: a Keras ``.keras``/``.h5`` file or SavedModel folder, or a Keras model
            object (Keras 3 or tf_keras; saved for the build as a ``.keras`` file in a
            temporary folder, which ``report.model.source`` names); ``None`` builds the
            built-in example (a small CNN trained on scikit-learn's digits).
        target: a built-in target name, a profile TOML file, or several comma-separated.
        data: calibration/evaluation data (``.npz``, ``.npy`` or an image folder), or
            arrays: ``x``, ``(x, y)`` or ``{"x": x, "y": y}`` (saved as an ``.npz`` for
            the build); required with ``model``.
        recipe: a built-in recipe name or a recipe TOML file.
        out: the output folder (replaced atomically); ``None`` writes nothing and only
            returns the report.
        progress: an :class:`edgec.builder.Progress` told about each stage.
        **options: the other ``edgec build`` options (``edgec.options.BuildOptions``),
            by their CLI names with underscores: ``budget="flash=256KiB"`` (sizes need
            their unit), ``io_type``, ``activations`` (``"int8"`` or ``"int16"``,
            TFLite's 16x8 mode), ``weights`` (``"int4"``: post-training int4
            filters), ``calibration_samples``, ``max_samples`` (a larger data
            set is sampled, seeded), ``max_accuracy_drop``, ``name``, ``phone_variants``
            (a sequence or a comma-separated string), ``compress``, ``keep_names``,
            ``layout``, ``c_lang``, ``section``, ``arena_margin``, ``per_channel``
            (``"auto"``, ``"always"`` or ``"never"``), ``epochs``, ``custom_objects`` (a
            ``.py`` file or module with the model's own layers; executed, so trusted code
            only), ``trust_model`` (load Lambda layers and other code the model file
            carries: it runs that code), ``debug``, ``verbosity`` (-1 quiet, 0, 1
            verbose); and each registered stage's short form by its stage type:
            ``distill``, ``prune_channels``, ``low_rank``, ``prune``, ``cluster``,
            ``qat``, a plug-in stage's.

    The model is loaded, trained and converted in a confined child process (no network,
    writes only to its private folder, resource limits); this process writes the outputs.

    Returns:
        The build report (also written as ``report.json`` when ``out`` is given);
        ``report.ok`` is False when a check failed.

    Raises:
        edgec.errors.EdgecError: bad input or a failed step; nothing is written.

    Example:
        Every input is checked before any work starts; a bad one is an ``EdgecError``::

            >>> import edgec
            >>> try:
            ...     edgec.build(target="no-such-chip")
            ... except edgec.errors.EdgecError as error:
            ...     print(error.exit_code, error.message)
            1 unknown target 'no-such-chip'
    """
    from edgec.builder import build_in_sandbox, write_build

    with _as_files(model, data) as (model_path, data_path):
        build_options = _build_options(model_path, target, data_path, recipe, out, options)
        result = build_in_sandbox(build_options, progress)
    if build_options.out is not None:
        write_build(result, build_options.out)
    return result.report


@contextlib.contextmanager
def _as_files(model: Any, data: Any) -> Iterator[tuple[Any, Any]]:
    """A Keras model object and arrays, as the files a build reads: saved into a private
    temporary folder (the ``model.save`` and ``np.savez`` a notebook would write), removed
    after the build. Paths pass through."""
    own_model = model is not None and not isinstance(model, str | os.PathLike)
    own_data = data is not None and not isinstance(data, str | os.PathLike)
    if not (own_model or own_data):
        yield model, data
        return
    with tempfile.TemporaryDirectory(prefix="edgec-api-") as tmp:
        saved = (
            _saved_model(model, Path(tmp)) if own_model else model,
            _saved_data(data, Path(tmp)) if own_data else data,
        )
        try:
            yield saved
        except EdgecError as exc:  # name what the caller gave, not the temporary files
            roles = (("model", "the model object"), ("data", "the data given as arrays"))
            for path, (role, given) in zip(saved, roles, strict=True):
                if isinstance(path, Path) and path.parent == Path(tmp):
                    exc.message = exc.message.replace(f"{role} {path}", given)
                    exc.message = exc.message.replace(str(path), given)
            if own_model and exc.hint:
                exc.hint = exc.hint.replace("--custom-objects FILE.py", "custom_objects='FILE.py'")
            raise


def _saved_model(model: Any, folder: Path) -> Path:
    if not (callable(getattr(model, "save", None)) and hasattr(model, "layers")):
        raise InputError(
            f"model is of type {type(model).__name__}: give a Keras model or its file",
            hint="a .keras/.h5 file, a SavedModel folder, or a keras.Model",
        )
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(getattr(model, "name", "") or "model"))[:64]
    path = folder / f"{name or 'model'}.keras"
    try:
        model.save(path)  # Keras 3 and tf_keras both write the .keras format
    except Exception as exc:  # Keras raises many types for models it cannot save
        raise InputError(
            f"cannot save the model for the build: {type(exc).__name__}: {first_line(exc)[:200]}",
            hint="save it yourself (model.save('model.keras')) and give the file",
        ) from None
    return path


def _saved_data(data: Any, folder: Path) -> Path:
    import numpy as np

    if isinstance(data, dict):
        arrays = {k: data[k] for k in ("x", "y") if k in data}
        if "x" not in arrays or set(data) - {"x", "y"}:
            raise InputError(f"data has keys {sorted(map(str, data))}: give 'x' and optionally 'y'")
    elif isinstance(data, tuple | list):
        if len(data) not in (1, 2):
            raise InputError(f"data has {len(data)} items: give x or (x, y)")
        arrays = dict(zip(("x", "y"), data, strict=False))
    else:
        arrays = {"x": data}
    path, x = folder / "data.npz", np.asarray(arrays["x"])
    if arrays.get("y") is None:
        np.savez(path, x=x)
    else:
        np.savez(path, x=x, y=np.asarray(arrays["y"]))
    return path


def check(
    path: str | Path,
    *,
    target: str,
    budget: str | None = None,
    arena_margin: float = DEFAULT_ARENA_MARGIN,
    artifacts: str | Path | None = None,
    layout: str = "plain",
    c_lang: str = "cc",
    section: str | None = None,
    keep_names: bool = False,
    progress: Callable[[TargetProfile], None] | None = None,
) -> CheckReport:
    """Check an existing ``.tflite`` against targets, without TensorFlow or data.

    Args:
        path: the model file.
        target: a built-in target name, a profile TOML file, or several comma-separated.
        budget: overrides every target's model budget, e.g. ``"flash=256KiB,ram=64KiB"``.
        arena_margin: percent added to the arena, as ``edgec build --arena-margin`` adds
            it to ``TENSOR_ARENA_SIZE``: an mcu target's ram check judges the arena with it.
        artifacts: a folder for ``report.json``, what the targets produce (the
            Vela-optimised model, ...) and the firmware package for the first TFLM target
            (C arrays, ``model_settings.h``, ``model_ops.h``), replaced atomically; ``None``
            writes nothing.
        layout, c_lang, section, keep_names: the firmware package's, as ``edgec build``
            takes them (the package ships the lean form of the model, proven in TFLM).
        progress: called with each target profile before it is checked.

    Returns:
        One section per target; ``report.ok`` is False when a check failed on any.

    Example:
        >>> import edgec
        >>> report = edgec.check(tflite_path, target="cortex-m4,cortex-m0plus")
        >>> [(s.target, s.ok) for s in report.targets]
        [('cortex-m4', True), ('cortex-m0plus', True)]
    """
    from edgec.export import prepare_output_dir, write_outputs

    folder = Path(artifacts) if artifacts is not None else None
    if folder is not None:
        prepare_output_dir(folder, inputs=(path, *target.split(",")), option="--artifacts")
    if not 0 <= arena_margin <= 1000:
        raise InputError(f"--arena-margin {arena_margin:g} is not a percentage (0-1000)")
    from edgec.export import check_section
    from edgec.export.checked import PackageOptions
    from edgec.options import BuildOptions, check_values

    package = PackageOptions(layout, c_lang, section, keep_names)
    if folder is None and package != PackageOptions():
        raise UsageError(
            "--layout, --c-lang, --section and --keep-names shape the firmware package that "
            "--artifacts writes, and no --artifacts was given",
            hint="add --artifacts DIR, or leave them out",
        )
    # the choices click checks on the command line, checked as a build's API values are
    check_values(BuildOptions(target=target, layout=layout, c_lang=c_lang, section=section))
    if section is not None:
        check_section(section)
    report, files = _check(Path(path), target, budget, arena_margin, progress,
                           package=package if folder is not None else None)  # fmt: skip
    if folder is not None:
        write_outputs(folder, {**files, "report.json": report.to_json().encode()})
    return report


def _check(
    path: Path,
    targets: str,
    budget: str | None,
    arena_margin: float,
    progress: Callable[[TargetProfile], None] | None,
    *,
    package: PackageOptions | None = None,
) -> tuple[CheckReport, dict[str, bytes]]:
    """The report of ``check`` and the files the targets produced; with ``package``, the
    firmware package for the first TFLM target too (``export.checked``)."""
    from edgec.artifact import Artifact
    from edgec.artifact.lean import collapsed_zero_points
    from edgec.artifact.sidecar import names_path, with_sidecar_names
    from edgec.report import CheckReport, tool_versions
    from edgec.targets import load_targets, parse_budget
    from edgec.targets.analyzers import analyze_target
    from edgec.targets.analyzers.mcu import tflm_target

    profiles = load_targets(targets)
    overrides = parse_budget(budget) if budget is not None else {}
    read = Artifact.read(path)
    artifact, _ = with_sidecar_names(read, path)  # names for the messages
    other = next((p for p in profiles if not tflm_target(p)), None)
    if other is not None and collapsed_zero_points(artifact.data):
        raise InputError(
            f"{path} is a lean TFLM file (per-channel tensors with one zero point), which "
            f"{other.name} ({other.kind}) cannot read: LiteRT, Vela and the Edge TPU compiler "
            "need one zero point per scale",
            hint="check it against TFLM targets only, or check the standard file: a build "
            "with such a target writes model.tflite in the standard form",
        )
    sections, files = [], {}
    for profile in profiles:
        if progress is not None:
            progress(profile)
        section, produced = analyze_target(artifact, profile, overrides, arena_margin=arena_margin)
        sections.append(section)
        files.update(produced)
    versions = tool_versions(packages=("edgec", "ai-edge-litert", "tflite-micro", "ethos-u-vela"))
    firmware = lean = None
    mcu = next((p for p in profiles if tflm_target(p)), None)
    if package is not None and mcu is not None:
        from edgec.export.checked import checked_model_package

        sidecar = names_path(path) if artifact is not read else None  # its names came from it
        made = checked_model_package(
            artifact, path, mcu, arena_margin, versions, replace(package, sidecar=sidecar)
        )
        files, firmware, lean = {**made.files, **files}, made.firmware, made.lean
    report = CheckReport(
        ok=all(s.ok for s in sections),
        model=str(path),
        size_bytes=artifact.size_bytes,
        sha256=artifact.sha256,
        ops=list(artifact.model.op_names),
        targets=sections,
        versions=versions,
        firmware=firmware,
        lean=lean,
    )
    return report, files


def inspect(
    path: str | Path | Any,
    *,
    custom_objects: str | None = None,
    names: str | Path | None = None,
    trust_model: bool = False,
    debug: bool = False,
) -> Inspection:
    """The per-layer table of a ``.tflite`` (no TensorFlow) or a Keras model (loaded and
    converted in a confined child process, as :func:`build` does), and where the model's
    bytes go (``model_bytes``).

    Args:
        path: a ``.tflite``, a Keras 2 or Keras 3 ``.keras``/``.h5`` file, a SavedModel,
            or a Keras model object (saved as a ``.keras`` file in a temporary folder).
        custom_objects: a ``.py`` file or module path defining the model's own layers
            (it is executed: trusted code only).
        names: the names sidecar of a lean ``.tflite`` (an error if it is another
            model's); by default ``X_names.json`` beside ``X.tflite`` is read if it is
            this model's.
        trust_model: load Lambda layers and other code the model file carries (it runs).
        debug: the child's log and the sandbox's notes on stderr.

    Example:
        >>> import edgec
        >>> table = edgec.inspect(tflite_path)
        >>> [layer.op for layer in table.layers][-2:]
        ['FULLY_CONNECTED', 'FULLY_CONNECTED']
    """
    from edgec.pipeline.inspect import inspect_in_sandbox

    with _as_files(path, None) as (model_path, _):
        return inspect_in_sandbox(
            Path(model_path),
            custom_objects,
            names=None if names is None else Path(names),
            trust_model=trust_model,
            debug=debug,
        )


def target_profiles() -> list[TargetProfile]:
    """The built-in target profiles.

    Example:
        >>> import edgec
        >>> "cortex-m4" in [p.name for p in edgec.target_profiles()]
        True
    """
    from edgec.targets import builtin_names, load_target

    return [load_target(name) for name in builtin_names()]


def target_summary(profile: TargetProfile) -> dict[str, Any]:
    """What ``edgec targets --format json`` lists for one profile."""
    return {
        "name": profile.name,
        "kind": profile.kind,
        "title": profile.title,
        "part": profile.part,
        "cpu": profile.cpu,
        "clock_hz": profile.clock_hz,
        "flash_bytes": profile.flash_bytes,
        "ram_bytes": profile.ram_bytes,
        "model_flash_budget_bytes": profile.budget.flash_bytes,
        "model_ram_budget_bytes": profile.budget.ram_bytes,
        "runtime": profile.runtime.name,
        "fallback_runtime": profile.runtime.fallback.name if profile.runtime.fallback else None,
        "source": profile.source,
    }


def _build_options(
    model: str | Path | None,
    target: str,
    data: str | Path | None,
    recipe: str | None,
    out: str | Path | None,
    options: dict[str, Any],
) -> BuildOptions:
    from edgec.options import from_keywords

    base = {
        "model": Path(model) if model is not None else None,
        "target": target,
        "data": Path(data) if data is not None else None,
        "recipe": recipe,
        "out": Path(out) if out is not None else None,
    }
    return from_keywords(base, options)
