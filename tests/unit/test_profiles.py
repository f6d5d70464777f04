from dataclasses import replace

import pytest

from edgec.errors import InputError
from edgec.targets.profile import builtin_names, load_target, load_target_text, load_targets

GOOD = """
schema_version = 1
name = "board"
title = "My board"
kind = "mcu"
[part]
name = "STM32F411"
cpu = "cortex-m4"
clock_hz = 100_000_000
flash_bytes = "512KiB"
ram_bytes = 131072
[reserved]
flash_bytes = 65536
ram_bytes = 16384
[runtime]
name = "tflite-micro"
tensor_dtypes = ["int8"]
"""


def write(tmp_path, text):
    path = tmp_path / "board.toml"
    path.write_text(text)
    return str(path)


def test_builtin_cortex_m_loads():
    profile = load_target("cortex-m")
    assert profile.kind == "mcu"
    # its ops are the installed tflite-micro's; the runtime table names their resolver methods
    assert profile.runtime.installed_ops and profile.runtime.asks_tflm
    assert {"CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D", "SOFTMAX"} <= set(
        profile.runtime.builtin_ops
    )
    assert 0 < profile.budget.flash_bytes < profile.flash_bytes
    assert 0 < profile.budget.ram_bytes < profile.ram_bytes


REQUIRED = {
    "cortex-m0plus",
    "cortex-m4",
    "cortex-m7",
    "cortex-m33",
    "cortex-m55",
    "cortex-m55-ethos-u55",
    "android-arm64",
    "edgetpu",
}


def test_the_eight_target_kinds_are_built_in():
    assert REQUIRED | {"cortex-m"} <= set(builtin_names())
    kinds = {load_target(n).kind for n in builtin_names()}
    assert kinds == {"mcu", "npu", "phone", "edgetpu"}


@pytest.mark.parametrize("name", builtin_names())
def test_profile_contract(name):
    """Loads, round-trips through TOML, names a part, and names only real TFLite ops."""
    from ai_edge_litert import schema_py_generated as schema

    profile = load_target(name)
    assert load_target_text(profile.to_toml(), source="round-trip") == replace(
        profile, source="round-trip"
    )
    assert profile.part and profile.clock_hz > 0 and profile.budget.ram_bytes > 0
    assert 0 <= profile.reserved_flash_bytes < profile.flash_bytes
    runtime = profile.runtime
    while runtime is not None:
        unknown = [op for op in runtime.builtin_ops if not hasattr(schema.BuiltinOperator, op)]
        assert not unknown, (name, runtime.name, unknown)
        if runtime.name == "tflite-micro":  # resolver methods
            assert all(m.startswith("Add") for m in runtime.builtin_ops.values())
        runtime = runtime.fallback
    if profile.kind == "mcu" and name in REQUIRED:
        assert profile.cycles_per_mac is not None and profile.estimate_note
    if profile.kind == "npu":
        assert profile.vela is not None and profile.vela.accelerator_config.startswith("ethos-u")
    if profile.kind == "phone":
        assert profile.phone is not None


def test_load_targets_splits_and_rejects_repeats():
    assert [p.name for p in load_targets("cortex-m4, edgetpu")] == ["cortex-m4", "edgetpu"]
    with pytest.raises(InputError, match="given twice"):
        load_targets("cortex-m4,cortex-m4")
    with pytest.raises(InputError, match="unknown target 'nope'"):
        load_targets("cortex-m4,nope")


def test_custom_profile_file(tmp_path):
    profile = load_target(write(tmp_path, GOOD))
    assert profile.flash_bytes == 512 * 1024  # sizes may carry units
    assert profile.budget.ram_bytes == 131072 - 16384


def test_unknown_target_lists_known():
    with pytest.raises(InputError, match="unknown target 'cortex-z'") as info:
        load_target("cortex-z")
    assert "cortex-m" in str(info.value)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda t: t.replace('kind = "mcu"', 'kind = "mcu"\nflash = 1'), "unknown key 'flash'"),
        (lambda t: t.replace("clock_hz = 100_000_000\n", ""), "missing key 'part.clock_hz'"),
        (lambda t: t.replace("ram_bytes = 131072", 'ram_bytes = "lots"'), "'lots' is not a size"),
        (
            lambda t: t.replace("clock_hz = 100_000_000", 'clock_hz = "fast"'),
            "'part.clock_hz' must be int",
        ),
        (lambda t: t.replace('name = "tflite-micro"', 'name = "tflite-nano"'), "unknown runtime"),
        (
            lambda t: t.replace("flash_bytes = 65536", "flash_bytes = 99999999"),
            "reserved.flash_bytes",
        ),
        (lambda t: t.replace("schema_version = 1", "schema_version = 9"), "schema_version 9"),
        (lambda t: t.replace('kind = "mcu"', 'kind = "toaster"'), "'kind' must be one of"),
        (lambda t: t.replace("[runtime]", "[runtime"), "not valid TOML"),
        (lambda t: t.replace('kind = "mcu"', 'kind = "npu"'), "kind 'npu' needs a [vela] table"),
        (lambda t: t + "[estimate]\ncycles_per_mac = 2\nmhz = 3\n", "unknown key 'estimate.mhz'"),
        (lambda t: t + "[estimate]\nnote = 'x'\n", "missing key 'estimate.cycles_per_mac'"),
        (lambda t: t + "[estimate]\ncycles_per_mac = -1\n", "must be positive"),
        (lambda t: t + "[vela]\naccelerator_config = 'ethos-u55-128'\n", "'vela.system_config'"),
    ],
)
def test_bad_profiles_name_the_problem(tmp_path, change, needle):
    with pytest.raises(InputError) as info:
        load_target(write(tmp_path, change(GOOD)))
    assert needle in str(info.value)
