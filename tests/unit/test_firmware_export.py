import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgec.errors import InputError
from edgec.export import (
    c_identifier,
    model_data_sources,
    prepare_output_dir,
    write_outputs,
)
from edgec.export.writer import prepare_output_file


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("digits_cnn", "digits_cnn"),
        ("My Model-v2", "my_model_v2"),
        ("2024 kws", "m_2024_kws"),
        ("café ünïcode", "cafe_unicode"),
        ("", "model"),
        ("日本", "model_cf2abf"),
        ("int", "int_model"),
    ],
)
def test_c_identifier(name, expected):
    ident = c_identifier(name)
    assert ident == expected
    assert re.fullmatch(r"[a-z_][a-z0-9_]*", ident)


def test_model_data_sources_tflm_convention():
    data = bytes(range(30))
    files = model_data_sources(data, "kws", source="kws.keras")
    header, body = files["model_data.h"].decode(), files["model_data.cc"].decode()
    assert "#ifndef EDGEC_KWS_MODEL_DATA_H_" in header and "#endif" in header
    assert 'extern "C"' in header
    assert "extern const unsigned char g_kws_model_data[];" in header
    assert "extern const unsigned int g_kws_model_data_size;" in header
    assert "alignas(16) const unsigned char g_kws_model_data[] = {" in body
    assert "const unsigned int g_kws_model_data_size = 30;" in body
    values = [int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", body)]
    assert bytes(values) == data
    assert max(len(line.split(",")) - 1 for line in body.splitlines() if "0x" in line) == 12


def test_write_outputs_replaces_an_earlier_build(tmp_path):
    out = tmp_path / "out"
    write_outputs(out, {"report.json": b"{}", "a.bin": b"1"})
    write_outputs(out, {"report.json": b"{}", "b.bin": b"2"})
    assert sorted(p.name for p in out.iterdir()) == ["b.bin", "report.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging left behind


def test_write_outputs_refuses_file_and_foreign_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        prepare_output_dir(tmp_path / "file")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(InputError, match="not empty"):
        write_outputs(tmp_path / "mine", {"report.json": b"{}"})
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_an_output_folder_holding_an_input_or_the_current_directory_is_refused(
    tmp_path, monkeypatch
):
    """The folder is replaced whole: an input inside it would be deleted, and the current
    directory (or a folder above it) fails at the rename, after all the work."""
    out = tmp_path / "out"
    write_outputs(out, {"report.json": b"{}", "model.tflite": b"m"})
    data = tmp_path / "data"
    data.mkdir()
    prepare_output_dir(out, inputs=[None, data, "tiny", tmp_path / "missing.npz"])
    for given in (out / "model.tflite", out, str(out / ".." / "out" / "model.tflite")):
        with pytest.raises(InputError, match=f"holds {re.escape(str(given))}, which this"):
            prepare_output_dir(out, inputs=[data, given])
    with pytest.raises(InputError, match="is .*model.tflite, which this command reads"):
        prepare_output_file(out / "model.tflite", inputs=[out / "model.tflite"])
    prepare_output_file(tmp_path / "checks.xml", inputs=[out / "model.tflite"])
    monkeypatch.chdir(data)
    for here, what in ((".", "is"), ("..", "holds"), (str(data), "is")):
        with pytest.raises(InputError, match=f"{re.escape(here)} {what} the current directory"):
            prepare_output_dir(Path(here))
    prepare_output_dir(Path("edgec-out"))


def test_a_build_refuses_an_output_folder_holding_its_recipe_before_any_work(tmp_path):
    """``edgec fit`` writes recipe.toml into its folder; building that recipe into the same
    folder deleted it. Refused while the options are checked (no TensorFlow)."""
    import edgec

    out = tmp_path / "out"
    files = {"report.json": b"{}", "recipe.toml": b'[[stage]]\ntype = "qat"\n', "m.keras": b""}
    write_outputs(out, files)
    with pytest.raises(InputError, match="recipe.toml, which this command reads"):
        edgec.build(target="cortex-m", recipe=str(out / "recipe.toml"), out=out)
    with pytest.raises(InputError, match="m.keras, which this command reads"):
        edgec.build(out / "m.keras", data=tmp_path / "d.npz", target="cortex-m", out=out)


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TypeError):
        write_outputs(out, {"report.json": b"{}", "bad": "not bytes"})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []


_FILE_SIZE_LIMITED = """
import resource, signal, sys
from pathlib import Path
from edgec.export.writer import write_file_atomically, write_outputs
from edgec.errors import InputError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
out, report = map(Path, sys.argv[1:3])
for write in (lambda: write_outputs(out, {"report.json": b"{}", "model.tflite": bytes(8192)}),
              lambda: write_file_atomically(report, bytes(8192))):
    try:
        write()
    except InputError as exc:
        print(exc)
"""


def test_a_write_the_file_system_refuses_is_one_error_and_keeps_the_earlier_output(tmp_path):
    """A full disk, a quota or a file size limit: "internal error: OSError" before, as if
    edgec had a bug. Now one line naming the output, and the earlier build stays whole.
    (A real refusal: the child's file size limit, which fails the write with EFBIG.)"""
    out, report = tmp_path / "out", tmp_path / "checks.xml"
    write_outputs(out, {"report.json": b"{}", "model.tflite": b"earlier"})
    report.write_bytes(b"earlier")
    done = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMITED, str(out), str(report)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        f"cannot write {path}: File too large; nothing was written (write the output elsewhere)"
        for path in (out, report)
    ]
    assert (out / "model.tflite").read_bytes() == b"earlier" and report.read_bytes() == b"earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checks.xml", "out"]


def test_a_full_file_system_is_an_error_line_wherever_it_is_met():
    """Met outside edgec's own writes (TensorFlow saving the model for the converter, in
    the model process), a full file system was "internal error: ResourceExhaustedError"."""
    from edgec.cli import disk_full_line

    with pytest.raises(OSError) as real, open("/dev/full", "wb") as full:  # ENOSPC, always
        full.write(b"x")
        full.flush()
    line = disk_full_line(real.value)
    assert line is not None
    assert line.startswith("error: no space left on device; nothing was written (free space")
    saver = RuntimeError(
        "{{function_node SaveV2}} /t/variables_temp/part-0; No space left on device"
    )
    assert disk_full_line(saver) == line
    assert disk_full_line(ValueError("the data has 3 channels, the model 1")) is None


def test_model_data_plain_c_in_a_linker_section():
    files = model_data_sources(
        bytes(30), "kws", source="kws.keras", lang="c", section=".rodata.model"
    )
    assert set(files) == {"model_data.h", "model_data.c"}
    body = files["model_data.c"].decode()
    assert (
        '__attribute__((section(".rodata.model"))) _Alignas(16) const unsigned char '
        "g_kws_model_data[] = {" in body
    )
    assert "in linker section .rodata.model" in files["model_data.h"].decode()


@pytest.mark.parametrize("section", ["my section", '.x")))', "", "1abc"])
def test_bad_linker_section(section):
    with pytest.raises(InputError, match="linker section"):
        model_data_sources(b"x", "kws", source="s", section=section)


def test_bad_c_language():
    with pytest.raises(InputError, match="--c-lang"):
        model_data_sources(b"x", "kws", source="s", lang="rust")


def test_c_identifiers_stay_unique_and_valid():
    names = ["日本", "中文", "ß", "モデル", "a" * 80, "a" * 81, "kws-v1", "kws v1 ", "2024", "int"]
    idents = [c_identifier(n) for n in names]
    assert all(re.fullmatch(r"[a-z_][a-z0-9_]{0,39}", i) for i in idents), idents
    # 'kws-v1' and 'kws v1 ' are the same name to a C compiler; the rest must differ.
    assert len(set(idents)) == len(names) - 1
    assert c_identifier("日本") == c_identifier("日本")  # stable across runs


@pytest.mark.parametrize(("measured", "margin"), [(6096, 10), (6096, 0), (1, 10), (12345, 25)])
def test_arena_size_margin_rounded_to_16(measured, margin):
    from edgec.export.settings import ArenaSize

    size = ArenaSize(measured, margin).bytes
    assert size % 16 == 0
    assert size >= measured * (1 + margin / 100)
    assert size - 16 < measured * (1 + margin / 100)


def test_missing_kernel_is_a_build_time_error():
    from edgec.artifact.tflite_model import Operator, Tensor, TfliteModel
    from edgec.errors import ConversionError
    from edgec.export.ops import model_ops_header
    from edgec.targets.profile import load_runtime

    tensor = Tensor(0, "x", "int8", (1, 4), (1, 4), None, (0.1,), (0,), 0)
    ops = (
        Operator(0, "RELU", False, (0,), (0,), "relu"),
        Operator(1, "DENSIFY", False, (0,), (0,), "sparse/densify"),
    )
    model = TfliteModel(100, (tensor,), ops, (0,), (0,), 1)
    with pytest.raises(ConversionError, match=r"MicroMutableOpResolver method for op #1 DENSIFY"):
        model_ops_header(model, load_runtime("tflite-micro"), "m", source="s")
    ok = TfliteModel(100, (tensor,), ops[:1], (0,), (0,), 1)
    header = model_ops_header(ok, load_runtime("tflite-micro"), "m", source="s").decode()
    assert "MicroMutableOpResolver<1>" in header and "resolver.AddRelu()" in header


def test_report_with_firmware_round_trips():
    import json

    from edgec.report import (
        Accuracy,
        BuildReport,
        DataInfo,
        Firmware,
        LutCompression,
        Memory,
        ModelInfo,
        ObjectSize,
    )

    report = BuildReport(
        ok=True,
        target="cortex-m",
        model=ModelInfo("m", "m.keras"),
        memory=Memory(1000, 496, 2000, 400),
        accuracy=Accuracy("top1", 97.0, 96.5),
        data=DataInfo("d.npz", 300, 300, "classes"),
        firmware=Firmware(
            "cmake", "c", ".rodata.model", 560, 10.0, ["AddConv2D", "AddDecode"],
            LutCompression("lut", 2000, 1000, 50.0, 496, 560),
            ObjectSize("cortex-m4", 1016, 0, 0, 1016, 0),
        ),
    )  # fmt: skip
    data = json.loads(report.to_json())
    assert BuildReport.from_dict(data) == report
    del data["firmware"]  # a report written before the firmware section existed
    assert BuildReport.from_dict(data).firmware is None


def test_every_kernel_variant_is_declared_by_the_tflm_stub():
    """runtimes/tflite-micro.toml names only registrations that TFLM's kernel headers
    declare (the stub in tests/support/tflm_stub mirrors them), each in the header given,
    for an op of the builtin table."""
    from pathlib import Path

    from edgec.targets.profile import load_runtime

    stub = Path(__file__).parent.parent / "support" / "tflm_stub"
    runtime = load_runtime("tflite-micro")
    assert runtime.variants
    for op, variants in runtime.variants.items():
        assert op in runtime.builtin_ops, op
        for v in variants:
            text = (stub / v.header).read_text()
            assert f"EDGEC_STUB_REGISTRATION({v.registration})" in text, v
