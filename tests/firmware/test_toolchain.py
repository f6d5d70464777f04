"""model_data.cc compiles for the host and for Cortex-M4, and holds model.tflite exactly."""

import subprocess

import pytest

from tests.support.cli import need_tool

pytestmark = pytest.mark.toolchain


def need(tool: str) -> str:
    return need_tool(tool, package="gcc-arm-none-eabi")


MAIN = """#include <stdio.h>
#include "model_data.h"
int main(void) {
  if (((unsigned long)g_digits_cnn_model_data) % 16 != 0) return 2;
  fwrite(g_digits_cnn_model_data, 1, g_digits_cnn_model_data_size, stdout);
  return 0;
}
"""


def test_host_gcc_and_gxx(example_build, tmp_path):
    gcc, gxx = need("gcc"), need("g++")
    (tmp_path / "main.c").write_text(MAIN)
    src = example_build.out
    # The header is C-compatible; the array itself is C++ (alignas), as in TFLM.
    subprocess.run(
        [
            gcc,
            "-std=c11",
            "-Wall",
            "-Werror",
            "-c",
            "-I",
            src,
            tmp_path / "main.c",
            "-o",
            tmp_path / "main.o",
        ],
        check=True,
    )
    subprocess.run(
        [
            gxx,
            "-std=c++11",
            "-Wall",
            "-Werror",
            "-c",
            src / "model_data.cc",
            "-o",
            tmp_path / "model_data.o",
        ],
        check=True,
    )
    subprocess.run(
        [gxx, tmp_path / "main.o", tmp_path / "model_data.o", "-o", tmp_path / "dump"], check=True
    )
    done = subprocess.run([tmp_path / "dump"], capture_output=True, check=True)
    assert done.stdout == example_build.tflite


def test_arm_none_eabi_cortex_m4(example_build, tmp_path):
    cc = need("arm-none-eabi-gcc")
    objcopy, readelf = need("arm-none-eabi-objcopy"), need("arm-none-eabi-readelf")
    obj = tmp_path / "model_data.o"
    subprocess.run(
        [
            cc,
            "-mcpu=cortex-m4",
            "-mthumb",
            "-Os",
            "-fdata-sections",
            "-std=c++11",
            "-Wall",
            "-Werror",
            "-c",
            example_build.out / "model_data.cc",
            "-o",
            obj,
        ],
        check=True,
    )
    section = ".rodata.g_digits_cnn_model_data"
    raw = tmp_path / "array.bin"
    subprocess.run([objcopy, "-O", "binary", f"--only-section={section}", obj, raw], check=True)
    assert raw.read_bytes() == example_build.tflite  # const: in .rodata, i.e. flash
    sections = subprocess.run([readelf, "-SW", obj], capture_output=True, text=True, check=True)
    rows = [ln.split("]", 1)[1].split() for ln in sections.stdout.splitlines() if "]" in ln]
    row = next(r for r in rows if r[0] == section)
    assert int(row[-1]) >= 16  # alignas(16) reached the object file
