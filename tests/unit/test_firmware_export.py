import re

import pytest

from edgec.errors import InputError
from edgec.firmware_export import c_identifier, model_data_sources, prepare_output_dir, write_outputs


@pytest.mark.parametrize(
    ("name", "expected"),
    [("digits_cnn", "digits_cnn"), ("My Model-v2", "my_model_v2"), ("2024 kws", "m_2024_kws"),
     ("café ünïcode", "cafe_unicode"), ("", "model"), ("日本", "model_cf2abf"), ("int", "int_model")],
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


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(TypeError):
        write_outputs(out, {"report.json": b"{}", "bad": "not bytes"})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == []
