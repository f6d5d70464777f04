"""Target kinds and export layouts are plug-ins: registered by name, looked up by name."""

from __future__ import annotations

from importlib import resources

import pytest

from edgec.artifact import Artifact
from edgec.artifact.tflite_model import Operator, Tensor, TfliteModel
from edgec.errors import InputError
from edgec.export.layouts import LAYOUTS
from edgec.registry import Registry
from edgec.report import Check
from edgec.targets import load_target
from edgec.targets.analyzers import Analysis, analyze_target, kinds, register_kind


def test_registry_refuses_a_duplicate_and_lists_choices_for_an_unknown_name():
    registry: Registry[int] = Registry("widget")
    registry.register("a")(1)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.register("a")(2)
    with pytest.raises(InputError, match=r"unknown widget 'b' \(use a\)"):
        registry.get("b")
    assert registry.get("a") == 1 and "a" in registry and registry.names() == ("a",)


def test_builtin_kinds_and_layouts_are_registered():
    assert set(kinds()) == {"mcu", "npu", "phone", "edgetpu"}
    assert LAYOUTS.names() == ("plain", "arduino", "cmake")
    with pytest.raises(ValueError, match="already registered"):
        register_kind("mcu")(lambda artifact, profile, runnable: None)


def _relu_model() -> Artifact:
    tensor = Tensor(0, "x", "int8", (1, 4), (1, 4), None, (0.1,), (0,), 0)
    op = Operator(0, "RELU", False, (0,), (0,), "relu")
    return Artifact(b"\0" * 100, TfliteModel(100, (tensor,), (op,), (0,), (0,), 1))


@pytest.fixture
def toaster():
    """A target kind defined here, in the test module, with no edit to src/."""

    @register_kind("toaster")
    def analyze(artifact: Artifact, profile, runnable: bool) -> Analysis:
        ops = len(artifact.model.operators)
        check = Check("slices", runnable, f"{ops} op(s) toasted", value=ops)
        return Analysis([check], flash_bytes=artifact.size_bytes, ram_bytes=7, ram_method="toast")

    yield analyze
    from edgec.targets.analyzers import ANALYZERS

    ANALYZERS.unregister("toaster")


def test_a_toy_kind_registered_from_the_test_loads_and_analyzes(tmp_path, toaster):
    text = (resources.files("edgec.targets") / "profiles" / "cortex-m.toml").read_text()
    path = tmp_path / "toaster.toml"
    path.write_text(
        text.replace('kind = "mcu"', 'kind = "toaster"').replace(
            'name = "cortex-m"', 'name = "toaster-1"'
        )
    )
    profile = load_target(str(path))
    assert profile.kind == "toaster"
    section, files = analyze_target(_relu_model(), profile)
    by_name = {c.name: c for c in section.checks}
    assert by_name["slices"].ok and by_name["slices"].detail == "1 op(s) toasted"
    assert section.memory.flash_bytes == 100 and section.memory.arena_bytes == 7
    assert by_name["ram"].ok and by_name["flash"].ok and section.ok and files == {}


def test_an_unregistered_kind_is_refused_with_the_registered_ones(tmp_path):
    text = (resources.files("edgec.targets") / "profiles" / "cortex-m.toml").read_text()
    path = tmp_path / "p.toml"
    path.write_text(text.replace('kind = "mcu"', 'kind = "toaster"'))
    with pytest.raises(InputError, match="'kind' must be one of") as info:
        load_target(str(path))
    assert all(kind in str(info.value) for kind in ("mcu", "npu", "phone", "edgetpu"))
