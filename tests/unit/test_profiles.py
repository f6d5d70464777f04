import pytest

from edgec.errors import InputError
from edgec.targets.profile import builtin_names, load_target

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
    assert {"CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D", "SOFTMAX"} <= profile.ops
    assert 0 < profile.budget.flash_bytes < profile.flash_bytes
    assert 0 < profile.budget.ram_bytes < profile.ram_bytes


def test_every_builtin_profile_names_only_real_tflite_ops():
    from ai_edge_litert import schema_py_generated as schema

    for name in builtin_names():
        profile = load_target(name)
        unknown = [
            op for op in profile.runtime.builtin_ops if not hasattr(schema.BuiltinOperator, op)
        ]
        assert not unknown, (name, unknown)
        assert all(m.startswith("Add") for m in profile.runtime.builtin_ops.values())


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
    ],
)
def test_bad_profiles_name_the_problem(tmp_path, change, needle):
    with pytest.raises(InputError) as info:
        load_target(write(tmp_path, change(GOOD)))
    assert needle in str(info.value)
