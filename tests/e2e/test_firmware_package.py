"""The firmware package: op resolver, settings header, manifest, Arduino and CMake layouts."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess

import pytest

from edgec.targets import TfliteModel
from edgec.targets.profile import load_runtime
from tests.e2e.test_build_example import _runs_with_arena
from tests.support.cli import assert_clean_failure, run_edgec
from tests.support.firmware import build_image, firmware_line, need, run_qemu
from tests.support.resolver_stub import registered

IDENT = re.compile(r"[a-z_][a-z0-9_]*")


def test_model_ops_lists_exactly_the_flatbuffers_ops(example_build):
    header = (example_build.out / "model_ops.h").read_text()
    methods = re.findall(r"resolver\.(Add\w+)\(", header)
    runtime = load_runtime("tflite-micro")
    by_method = {m: op for op, m in {**runtime.builtin_ops, **runtime.custom_ops}.items()}
    flat = TfliteModel.from_bytes(example_build.tflite)
    # Op codes straight from the flatbuffer: the operator-code table of the model.
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(example_build.tflite), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = {names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes}
    assert sorted(by_method[m] for m in methods) == sorted(codes) == sorted(flat.op_names)
    assert len(methods) == len(set(methods))
    assert f"tflite::MicroMutableOpResolver<{len(codes)}>" in header
    assert f"kDigitsCnnOpCount = {len(codes)};" in header
    report = example_build.report["firmware"]
    assert report["resolver_methods"] == methods


def test_model_ops_registers_the_narrowest_kernel_each_op_takes(tmp_path):
    """Each op gets TFLM's variant for its dtypes (int8, int4 filters), an op whose instances
    differ or that has no variant the generic one; compiled and run against the stub, the
    CMSIS-NN build registers the variants and the reference build the generic kernels."""
    from edgec.export.ops import model_ops_header
    from tests.support.tflite_builder import Layers, TfliteBuilder

    b = TfliteBuilder()
    layers = Layers(b)
    x = b.tensor("input", (1, 6, 6, 2), scale=0.05, zero_point=-3)
    h = layers.conv(x, 4, 3)
    h = layers.conv(h, 4, 3, weights="int4")  # a second CONV_2D, int4: the two differ
    h = layers.conv(h, 4, 3, depthwise=True, weights="int4")
    h = layers.add(h, h)
    h = layers.mean(h, [1, 2])
    y = layers.dense(h, 3)
    flat = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))
    header = model_ops_header(flat, load_runtime("tflite-micro"), "m", source="s")
    text = header.decode()
    assert "// CONV_2D: generic: its instances differ" in text
    assert "resolver.AddDepthwiseConv2D(tflite::Register_DEPTHWISE_CONV_2D_INT4())" in text
    assert "// MEAN: generic: TFLM declares no narrower variant" in text
    assert registered(header, "m", tmp_path / "cmsis", defines=("CMSIS_NN",)) == [
        "Register_CONV_2D", "Register_DEPTHWISE_CONV_2D_INT4", "Register_ADD_INT8",
        "Register_MEAN", "Register_FULLY_CONNECTED_INT8",
    ]  # fmt: skip
    assert registered(header, "m", tmp_path / "reference") == [
        "Register_CONV_2D", "Register_DEPTHWISE_CONV_2D", "Register_ADD", "Register_MEAN",
        "Register_FULLY_CONNECTED",
    ]  # fmt: skip


def test_the_examples_model_ops_compiles_and_registers_int8_kernels(example_build, tmp_path):
    header = (example_build.out / "model_ops.h").read_bytes()
    name = example_build.report["model"]["name"]
    names = registered(header, name, tmp_path, defines=("CMSIS_NN",))
    flat = TfliteModel.from_bytes(example_build.tflite)
    assert len(names) == len(flat.op_names)
    # every kernel op of the int8 example gets its int8-only registration
    for op in ("CONV_2D", "FULLY_CONNECTED", "SOFTMAX"):
        if op in flat.op_names:
            assert f"Register_{op}_INT8" in names, names


def _tensor_arena_size(folder) -> int:
    settings = (folder / "model_settings.h").read_text()
    return int(re.search(r"#define DIGITS_CNN_TENSOR_ARENA_SIZE (\d+)", settings).group(1))


def test_tensor_arena_size_covers_the_measured_arena(example_build):
    settings = (example_build.out / "model_settings.h").read_text()
    size = _tensor_arena_size(example_build.out)
    memory = example_build.report["memory"]
    measured, scratch = memory["arena_bytes"], memory["kernel_scratch_bytes"]
    # cortex-m's Cortex-M4 links CMSIS-NN: the 3x3 convs' im2col buffers (DSP rules)
    assert memory["arena_kernels"] == "CMSIS-NN for cortex-m4 (DSP)" and scratch > 0
    assert size >= measured + scratch and size % 16 == 0
    assert size == math.ceil(math.ceil((measured + scratch) * 1.1) / 16) * 16  # 10% margin
    assert _runs_with_arena(example_build.out / "model.tflite", size)
    assert "constexpr unsigned kTensorArenaSize = DIGITS_CNN_TENSOR_ARENA_SIZE;" in settings
    assert f"{scratch} bytes of CMSIS-NN scratch for cortex-m4 (DSP)" in settings
    # header, firmware section, memory, the target section and the ram check agree
    ram = next(c for c in example_build.report["checks"] if c["name"] == "ram")
    section = example_build.report["targets"][0]["memory"]
    assert (
        size
        == example_build.report["firmware"]["tensor_arena_bytes"]
        == memory["tensor_arena_bytes"]
        == section["tensor_arena_bytes"]
        == ram["value"]
    )
    assert f"TENSOR_ARENA_SIZE {size:,} B of a" in ram["detail"]
    firmware = example_build.report["firmware"]
    assert (firmware["kernel_scratch_bytes"], firmware["arena_kernels"]) == (
        scratch,
        memory["arena_kernels"],
    )
    summary = " ".join(example_build.run.out.split())
    assert re.search(rf"RAM \(TENSOR_ARENA_SIZE\) [│|] {size:,} B", summary), summary
    assert f"kTensorArenaSize {size:,} B ({measured:,} B measured + {scratch:,} B" in summary


def test_a_build_whose_margin_breaks_the_ram_budget_fails_and_names_a_margin_that_fits(
    example_build, user_model, tmp_path
):
    """The arena fits the budget, TENSOR_ARENA_SIZE (with 10%) does not: not a PASS, and
    the --arena-margin the check names builds a package within the budget. The builds are
    of the example's CNN saved trained (user_model: the example's arena, no training)."""
    memory = example_build.report["memory"]
    arena = memory["arena_bytes"] + memory["kernel_scratch_bytes"]
    budget = arena + arena // 20  # 5% over the arena
    args = ("build", user_model.keras, "--data", user_model.data, "--name", "digits_cnn",
            "--target", "cortex-m", "--budget", f"ram={budget}B")  # fmt: skip
    run = run_edgec(*args, "--out", tmp_path / "over")
    assert run.code == 3, run.out + run.err
    report = json.loads((tmp_path / "over" / "report.json").read_text())
    built = report["memory"]
    assert built["arena_bytes"] + built["kernel_scratch_bytes"] == arena  # the same CNN
    ram = next(c for c in report["checks"] if c["name"] == "ram")
    assert not ram["ok"] and ram["value"] == _tensor_arena_size(tmp_path / "over") > budget
    margin = re.search(r"--arena-margin (\d+) fits", ram["detail"])
    assert margin is not None, ram["detail"]
    assert "FAIL" in run.out and "ram" in run.out
    run = run_edgec(*args, "--arena-margin", margin.group(1), "--out", tmp_path / "fits")
    assert run.code == 0, run.out + run.err
    assert _tensor_arena_size(tmp_path / "fits") <= budget


PRINT_SETTINGS = r"""#include <stdio.h>
#include "model_settings.h"
static const int in_shape[] = DIGITS_CNN_INPUT_SHAPE;
static const int out_shape[] = DIGITS_CNN_OUTPUT_SHAPE;
static const char *labels[] = DIGITS_CNN_LABELS;
int main(void) {
  int i;
  printf("in %.9g %d %d", DIGITS_CNN_INPUT_SCALE, DIGITS_CNN_INPUT_ZERO_POINT,
         DIGITS_CNN_INPUT_DIMS);
  for (i = 0; i < DIGITS_CNN_INPUT_DIMS; ++i) printf(" %d", in_shape[i]);
  printf("\nout %.9g %d %d", DIGITS_CNN_OUTPUT_SCALE, DIGITS_CNN_OUTPUT_ZERO_POINT,
         DIGITS_CNN_OUTPUT_DIMS);
  for (i = 0; i < DIGITS_CNN_OUTPUT_DIMS; ++i) printf(" %d", out_shape[i]);
  printf("\nraw %.9g\nlabels", DIGITS_CNN_INPUT_RAW_SCALE);
  for (i = 0; i < DIGITS_CNN_LABEL_COUNT; ++i) printf(" %s", labels[i]);
  printf("\n");
  return 0;
}
"""


def test_model_settings_match_the_flatbuffer(example_build, tmp_path):
    """Compile a C program against model_settings.h and compare what it prints."""
    gcc = need("gcc")
    (tmp_path / "main.c").write_text(PRINT_SETTINGS)
    exe = tmp_path / "settings"
    subprocess.run(
        [gcc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", example_build.out,
         tmp_path / "main.c", "-o", exe],
        check=True,
    )  # fmt: skip
    lines = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines()
    flat = TfliteModel.from_bytes(example_build.tflite)
    for line, tensor in zip(lines[:2], (flat.input_tensor(), flat.output_tensor()), strict=True):
        _, scale, zero_point, dims, *shape = line.split()
        assert math.isclose(float(scale), tensor.scales[0], rel_tol=1e-6)
        assert int(zero_point) == tensor.zero_points[0]
        assert int(dims) == len(tensor.shape) and tuple(map(int, shape)) == tensor.shape
    assert float(lines[2].split()[1]) == 1 / 16  # digits: pixel values 0..16 / 16
    assert lines[3].split()[1:] == [str(i) for i in range(10)]
    header = (example_build.out / "model_settings.h").read_text()
    assert "pixel values 0..16 divided by 16" in header  # the preprocessing, as a comment


def test_manifest_lists_every_file(example_build):
    manifest = json.loads((example_build.out / "manifest.json").read_text())
    files = {p.name for p in example_build.out.iterdir()} - {
        "manifest.json",
        "report.json",
        "report.html",
    }
    assert set(manifest["files"]) == files
    for path, entry in manifest["files"].items():
        content = (example_build.out / path).read_bytes()
        assert entry == {"size_bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    assert manifest["target"] == "cortex-m" and manifest["recipe"] is None
    assert manifest["layout"] == "plain"
    assert manifest["versions"]["tflite-micro"] != "not installed"


def test_object_size_is_measured_with_the_arm_toolchain(example_build):
    need("arm-none-eabi-size")
    size = example_build.report["firmware"]["object_size"]
    assert size["cpu"] == "cortex-m4"  # the cortex-m profile's part
    assert size["data"] == 0 and size["bss"] == 0  # const: nothing of the model in RAM
    model = len(example_build.tflite)
    assert model <= size["text"] < model + 64  # the array, its size constant, padding
    assert size["flash_bytes"] == size["text"] and size["ram_bytes"] == 0


@pytest.fixture(scope="module")
def layouts(user_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("layouts")
    common = ("build", user_model.keras, "--target", "cortex-m", "--data", user_model.data)
    arduino = run_edgec(
        *common, "--layout", "arduino", "--name", "2024 Café-KWS v2", "--out", folder / "arduino"
    )
    cmake = run_edgec(
        *common, "--layout", "cmake", "--c-lang", "c", "--section", ".rodata.model",
        "--name", "日本 model", "--out", folder / "cmake",
    )  # fmt: skip
    assert arduino.code == 0, arduino.err
    assert cmake.code == 0, cmake.err
    return folder


def test_arduino_library(layouts, tmp_path):
    out = layouts / "arduino"
    name = json.loads((out / "report.json").read_text())["model"]["name"]
    assert name == "m_2024_cafe_kws_v2" and IDENT.fullmatch(name)
    expected = {
        "library.properties", "model.tflite", "model_names.json", "manifest.json",
        "report.json", "report.html",
        f"src/{name}.h", "src/model_data.h", "src/model_data.cc", "src/model_settings.h",
        "src/model_ops.h",
    }  # fmt: skip
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == expected
    props = dict(
        line.split("=", 1) for line in (out / "library.properties").read_text().splitlines()
    )
    assert props["name"] == name and props["includes"] == f"{name}.h"
    for key in ("version", "author", "maintainer", "sentence", "paragraph", "category"):
        assert props[key], key
    assert props["architectures"] == "*"
    # The library compiles the way the Arduino IDE builds src/: C++ with the umbrella header.
    gxx = need("g++")
    (tmp_path / "sketch.cc").write_text(
        f'#include "{name}.h"\nint main() {{ return g_{name}_model_data_size > 0 ? 0 : 1; }}\n'
    )
    subprocess.run(
        [gxx, "-std=c++11", "-Wall", "-Werror", "-I", out / "src", tmp_path / "sketch.cc",
         out / "src" / "model_data.cc", "-o", tmp_path / "sketch"],
        check=True,
    )  # fmt: skip
    subprocess.run([tmp_path / "sketch"], check=True)


def test_cmake_target_configures_and_builds(layouts, tmp_path):
    cmake = need("cmake")
    out = layouts / "cmake"
    name = json.loads((out / "report.json").read_text())["model"]["name"]
    assert re.fullmatch(r"model_[0-9a-f]{6}", name)  # '日本 model': the kanji have no ASCII
    assert (out / "include" / "model_settings.h").is_file()
    assert (out / "src" / "model_data.c").is_file() and (out / "CMakeLists.txt").is_file()
    assert (
        f"add_library({name}_model STATIC src/model_data.c)" in (out / "CMakeLists.txt").read_text()
    )
    build = tmp_path / "build"
    subprocess.run([cmake, "-S", out, "-B", build], check=True, capture_output=True, timeout=300)
    subprocess.run([cmake, "--build", build], check=True, capture_output=True, timeout=300)
    library = build / f"lib{name}_model.a"
    assert library.is_file()
    readelf = shutil.which("readelf")
    if readelf:
        sections = subprocess.run(
            [readelf, "-SW", library], capture_output=True, text=True, check=True
        ).stdout
        assert ".rodata.model" in sections  # --section reached the object file


def test_plain_c_array_in_a_linker_section_on_cortex_m0plus(layouts, tmp_path):
    """The cmake package's C11 array (with --section) in a bare-metal image under QEMU."""
    out = layouts / "cmake"
    name = json.loads((out / "report.json").read_text())["model"]["name"]
    elf = build_image(out, name, "cortex-m0plus", tmp_path, lang="c", src="src", include="include")
    symbols = subprocess.run(
        [need("arm-none-eabi-nm"), elf], capture_output=True, text=True, check=True
    ).stdout
    assert f"g_{name}_model_data" in symbols
    done = run_qemu("cortex-m0plus", elf)
    assert firmware_line(done).endswith("result=PASS")


def test_bad_section_is_refused_before_any_work(tmp_path):
    run = run_edgec(
        "build", "--target", "cortex-m", "--section", "my section", "--out", tmp_path / "o"
    )
    assert_clean_failure(run, "--section 'my section'")
    assert not (tmp_path / "o").exists()


def test_compress_lut_on_an_unclustered_model_fails_cleanly(user_model, tmp_path):
    out = tmp_path / "out"
    run = run_edgec(
        "build", user_model.keras, "--target", "cortex-m", "--data", user_model.data,
        "--compress", "lut", "--out", out,
    )  # fmt: skip
    assert_clean_failure(run, "--compress lut", "cluster the model")
    assert not out.exists()


def test_settings_for_float_io_and_awkward_labels_compile(tmp_path):
    """Labels with quotes, backslashes and non-ASCII; a float32 input without scale."""
    from edgec.artifact.tflite_model import Operator, Tensor
    from edgec.export.settings import ArenaSize, model_settings_header

    inp = Tensor(0, "in", "float32", (1, 3), (1, 3), None, (), (), 0)
    out = Tensor(1, "out", "uint8", (1, 3), (1, 3), None, (0.5,), (128,), 0)
    model = TfliteModel(
        10, (inp, out), (Operator(0, "RELU", False, (0,), (1,), "r"),), (0,), (1,), 1
    )
    labels = ('say "hi"', "back\\slash", "café 猫")
    header = model_settings_header(
        model, "odd", source="s", arena=ArenaSize(100, 10), class_names=labels,
        preprocessing="multi\nline */ text", raw_scale=1 / 255,
    )  # fmt: skip
    (tmp_path / "model_settings.h").write_bytes(header)
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "model_settings.h"\n'
        "static const char *labels[] = ODD_LABELS;\n"
        "int main(void) { int i; for (i = 0; i < ODD_LABEL_COUNT; ++i) puts(labels[i]);\n"
        'printf("%g %d %u\\n", ODD_OUTPUT_SCALE, ODD_OUTPUT_ZERO_POINT, ODD_TENSOR_ARENA_SIZE);\n'
        "return 0; }\n"
    )
    (tmp_path / "main.cc").write_text(
        '#include "model_settings.h"\nint main() { return odd::kLabelCount == 3 ? 0 : 1; }\n'
    )
    gcc, gxx = need("gcc"), need("g++")
    subprocess.run(
        [gcc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", tmp_path, tmp_path / "main.c",
         "-o", tmp_path / "c"],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [gxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-I", tmp_path, tmp_path / "main.cc",
         "-o", tmp_path / "cc"],
        check=True,
    )  # fmt: skip
    printed = subprocess.run([tmp_path / "c"], capture_output=True, check=True).stdout.decode()
    assert printed.splitlines() == [*labels, "0.5 128 112"]
    subprocess.run([tmp_path / "cc"], check=True)


@pytest.fixture
def flat_upper():
    """An export layout defined here, in the test module, with no edit to src/."""
    from edgec.export.layouts import LAYOUTS, register_layout

    @register_layout("upper")
    def upper(spec, headers, sources):
        return {k.upper(): v for k, v in (headers | sources).items()}

    yield upper
    LAYOUTS.unregister("upper")


def test_a_toy_layout_registered_from_the_test_places_the_files(flat_upper, seed_tflite):
    import dataclasses

    from edgec.errors import InputError
    from edgec.export import ExportSpec, export_package
    from edgec.targets.profile import load_runtime

    spec = ExportSpec(
        model=seed_tflite,
        name="m",
        source="s",
        target="cortex-m",
        runtime=load_runtime("tflite-micro"),
        arena_bytes=4096,
        layout="upper",
    )
    files = export_package(spec)
    assert {"MODEL_DATA.H", "MODEL_DATA.CC", "MODEL_SETTINGS.H", "MODEL_OPS.H"} <= set(files)
    assert "model.tflite" in files and "manifest.json" in files
    with pytest.raises(InputError, match=r"unknown --layout 'nope' \(use plain, arduino, cmake"):
        export_package(dataclasses.replace(spec, layout="nope"))
