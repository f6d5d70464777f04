"""The exported C sources on real Cortex-M toolchains and emulated cores.

For each built-in CPU flag set (M0+, M3, M4, M7, M33, M55), the model array and settings
header are compiled with arm-none-eabi-gcc and linked into a bare-metal image (startup,
linker script and check program in tests/firmware/). Under QEMU the image checks the
array's 16-byte alignment, size and FNV-1a checksum against model.tflite and prints the
result through semihosting.
"""

from __future__ import annotations

import pytest

from edgec.export.toolchain import cpu_flags
from tests.support.firmware import MACHINES, build_image, firmware_line, fnv1a, run_qemu

pytestmark = pytest.mark.toolchain


def test_every_cpu_flag_set_has_a_qemu_machine():
    assert set(cpu_flags()) == set(MACHINES)


@pytest.mark.parametrize("cpu", sorted(MACHINES))
def test_model_array_runs_on_the_core(example_build, tmp_path, cpu):
    elf = build_image(example_build.out, "digits_cnn", cpu, tmp_path)
    done = run_qemu(cpu, elf)
    model = example_build.tflite
    line = firmware_line(done)
    assert f"size={len(model)} fnv1a={fnv1a(model):08x}" in line
    assert "aligned=yes" in line and line.endswith("result=PASS"), line
    arena = example_build.report["firmware"]["tensor_arena_bytes"]
    assert f"arena={arena} " in line
    assert done.returncode == 0


def test_the_image_reports_a_wrong_checksum(example_build, tmp_path):
    """The on-target check can fail: expect a checksum the array does not have."""
    wrong = fnv1a(example_build.tflite) ^ 1
    elf = build_image(example_build.out, "digits_cnn", "cortex-m4", tmp_path, expected_fnv=wrong)
    done = run_qemu("cortex-m4", elf)
    assert firmware_line(done).endswith("result=FAIL")
    assert done.returncode != 0


def test_the_package_check_writes_for_a_model_edgec_did_not_build_runs_on_the_core(tmp_path):
    """``edgec check --artifacts`` on a .tflite made elsewhere: its package's array (the
    lean form) and settings header link and check out on the core as a build's do."""
    from tests.support.cli import run_edgec
    from tests.support.tflite_builder import dense_int8

    model = tmp_path / "dense-8.tflite"
    model.write_bytes(dense_int8(per_channel=True))
    package = tmp_path / "fw"
    run = run_edgec("check", model, "-t", "cortex-m4", "--artifacts", package)
    assert run.code == 0, run.err
    done = run_qemu("cortex-m4", build_image(package, "dense_8", "cortex-m4", tmp_path / "w"))
    line = firmware_line(done)
    shipped = (package / "model.tflite").read_bytes()  # the lean form of the model
    assert len(shipped) < len(model.read_bytes())
    assert f"size={len(shipped)} fnv1a={fnv1a(shipped):08x}" in line
    assert "aligned=yes" in line and line.endswith("result=PASS"), line
