"""Issue 20: hostile inputs end quickly, within memory, with one clear line.

Every case is generated here (tests/support/hostile.py) and run as a real ``edgec``
process (``run_bounded``): it must end within 30 s with a peak resident memory under
2 GiB (the process and the children it waited for), write nothing outside its --out
and its private temporary folder (which must be gone), and fail with exactly one
``error:`` line, no traceback, no "internal error". Cases under the caps (the largest
model the reader accepts) must end the same way, with a verdict instead of an error.

The code-execution cases (model files that run code on load) are in
test_hostile_models.py.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgec.artifact import tflite_model as reader
from tests.support import hostile
from tests.support.hostile import Bounded, run_bounded
from tests.support.keras3 import KERAS3_BAD_NAMES, keras3_models
from tests.support.tflite_builder import TfliteBuilder, dense_int8, schema

SECONDS = 30.0
PEAK_BYTES = 2 << 30


def assert_bounded(run: Bounded, *needles: str, code: int | None = 1) -> None:
    """Quick, small, nothing written elsewhere; with ``code`` 1 one error line holding
    ``needles``; ``code`` None: a verdict (0 or 3), no error."""
    text = run.out + run.err
    assert run.seconds < SECONDS, (run.seconds, run.err[-2000:])
    assert run.peak_bytes < PEAK_BYTES, (run.peak_bytes, run.err[-2000:])
    assert run.written == [], run.written
    assert run.left_in_tmp == [], run.left_in_tmp
    assert "Traceback" not in text and "internal error" not in text, text[-3000:]
    if code is None:
        assert run.code in (0, 3) and not run.error_lines, (run.code, run.err[-2000:])
        return
    assert run.code == code, (run.code, run.out[-1000:], run.err[-2000:])
    assert len(run.error_lines) == 1, run.err[-2000:]
    for needle in needles:
        assert needle in run.error_lines[0], (needle, run.error_lines[0])


@pytest.fixture(scope="module")
def seed() -> bytes:
    return dense_int8()


@dataclass
class Inputs:
    keras: Path  # tf_keras: (8, 8, 1) -> Flatten -> Dense(3)
    data: Path  # 120 samples, 3 classes
    folder: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    from edgec._tf import keras

    folder = tmp_path_factory.mktemp("hostile-inputs")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.layers.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    model.save(folder / "m.keras")
    rng = np.random.default_rng(0)
    np.savez(folder / "d.npz", x=rng.random((120, 8, 8, 1), np.float32), y=rng.integers(0, 3, 120))
    return Inputs(folder / "m.keras", folder / "d.npz", folder)


def _copy(path: Path, work: Path) -> str:
    (work / path.name).write_bytes(path.read_bytes())
    return path.name


# --- .tflite amplification: counted before anything is built --------------------------------


def _many_tensors(seed: bytes, count: int) -> bytes:
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(seed), 0)
    for i in range(count):
        tensor = schema.TensorT()
        tensor.shape, tensor.type = np.array([1, 8], np.int32), schema.TensorType.INT8
        tensor.name = f"unused{i}".encode()
        model.subgraphs[0].tensors.append(tensor)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


REFUSED_FLATBUFFERS = {
    # a 44 KB file whose subgraphs were one table listed many times ran past 2.1 GB
    "shared-subgraphs": (lambda s: hostile.shared_tables(s, subgraph_uses=5_000), "subgraphs"),
    # a 1 MB buffer used by 6,000 tensors took about 6 GB; 3,000 stay under the tensor cap
    "shared-buffer": (lambda s: hostile.shared_buffer(s, uses=3_000), "constant data"),
    # 100,000 operators (one table, 400 KB): check 29-61 s, inspect 69-105 s
    "operators": (lambda s: hostile.shared_tables(s, operator_uses=100_000), "operators"),
    "tensors": (lambda s: _many_tensors(s, reader.MAX_TENSORS), "tensors"),
    "long-name": (lambda s: hostile.shared_tables(s, tensor_name_bytes=70_000), "name is 70,000"),
}


@pytest.mark.parametrize("case", REFUSED_FLATBUFFERS, ids=list(REFUSED_FLATBUFFERS))
@pytest.mark.parametrize("command", ["check", "inspect"])
def test_amplifying_flatbuffers_are_refused(tmp_path, seed, case, command):
    make, needle = REFUSED_FLATBUFFERS[case]
    (tmp_path / "m.tflite").write_bytes(make(seed))
    args = (
        ["check", "m.tflite", "-t", "cortex-m"] if command == "check" else ["inspect", "m.tflite"]
    )
    assert_bounded(run_bounded(args, tmp_path), "m.tflite is malformed", needle)


def _chain(operators: int, extra_tensors: int) -> bytes:
    """FULLY_CONNECTED ops in a chain, each writing its own tensor, plus unused tensors:
    the largest model the caps allow, as an attacker would make it."""
    b = TfliteBuilder()
    x = first = b.tensor("input", (1, 8), scale=0.05)
    w = b.constant("w", np.ones((8, 8), np.int8), scale=0.01)
    bias = b.constant("b", np.zeros(8, np.int32), scale=0.0005)
    for i in range(operators):
        y = b.tensor(f"t{i}", (1, 8), scale=0.05)
        b.op("FULLY_CONNECTED", [x, w, bias], [y], options=schema.FullyConnectedOptionsT())
        x = y
    for i in range(extra_tensors):
        b.tensor(f"u{i}", (1, 8), scale=0.05)
    return b.build(inputs=[first], outputs=[x])


UNDER_THE_CAPS = {
    "most-operators-and-tensors": lambda s: _chain(
        reader.MAX_OPERATORS, reader.MAX_TENSORS - reader.MAX_OPERATORS - 3
    ),
    "shared-operator-at-the-cap": lambda s: hostile.shared_tables(
        s, operator_uses=reader.MAX_OPERATORS
    ),
    "shared-subgraph-at-the-cap": lambda s: hostile.shared_tables(
        s, subgraph_uses=reader.MAX_SUBGRAPHS, operator_uses=reader.MAX_OPERATORS // 64
    ),
    "shared-names": lambda s: hostile.shared_tables(s, tensor_name_bytes=60_000),
}


@pytest.mark.parametrize("case", UNDER_THE_CAPS, ids=list(UNDER_THE_CAPS))
def test_the_largest_models_the_caps_allow_end_in_time(tmp_path, seed, case):
    (tmp_path / "m.tflite").write_bytes(UNDER_THE_CAPS[case](seed))
    assert_bounded(run_bounded(["check", "m.tflite", "-t", "cortex-m"], tmp_path), code=None)
    assert_bounded(run_bounded(["inspect", "m.tflite"], tmp_path), code=None)


# --- compressed bombs: declared and actual sizes before anything is read ---------------------


def _keras_with(inputs: Inputs, **members: bytes | tuple[bytes, int]) -> bytes:
    """The module's .keras archive with members replaced or added: bytes (deflate), or
    (bytes, method)."""
    original = zipfile.ZipFile(inputs.keras)
    data = {i.filename: original.read(i) for i in original.infolist()}
    out = __import__("io").BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in {**data, **members}.items():
            body, method = (
                content if isinstance(content, tuple) else (content, zipfile.ZIP_DEFLATED)
            )
            archive.writestr(zipfile.ZipInfo(name), body, compress_type=method)
    return out.getvalue()


def _h5_bomb(path: Path, *, elements: int = 1 << 30) -> None:
    """An HDF5 file with one gzip-compressed dataset of ``elements`` float32 zeros."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.21.0"
        f.attrs["model_config"] = "{}"
        f.create_dataset("w", shape=(elements,), dtype="f4", chunks=(1 << 20,),
                         compression="gzip")  # fmt: skip


def _build(work: Path, model: str, data: str, *extra: str) -> Bounded:
    return run_bounded(["build", model, "-t", "cortex-m", "-d", data, "--out", "out", *extra],
                       work, allowed=("out",))  # fmt: skip


def test_keras_metadata_compressed_with_bzip2_is_refused(tmp_path, inputs):
    """A 1.8 KB .keras whose metadata.json is a bzip2 bomb: edgec's own read reached 4.2 GB."""
    bomb = (b"{" + b" " * (8 << 20) + b"}", zipfile.ZIP_BZIP2)
    (tmp_path / "m.keras").write_bytes(_keras_with(inputs, **{"metadata.json": bomb}))
    assert_bounded(_build(tmp_path, "m.keras", _copy(inputs.data, tmp_path)),
                   "metadata.json", "compressed with method 12")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_keras_archive_extracted_whole_is_refused(tmp_path, inputs):
    """tf_keras extracts every member of an archive with more than 3: 2.8 GB of disk from
    4 KB. A member declaring more than the cap is refused before any loader runs."""
    archive = bytearray(_keras_with(inputs, **{"assets/a.bin": b"\0" * 1024}))
    central = archive.rindex(b"PK\x01\x02")  # the last member's central directory entry
    archive[central + 24 : central + 28] = (3 << 30).to_bytes(4, "little")  # 3 GiB declared
    (tmp_path / "m.keras").write_bytes(bytes(archive))
    assert_bounded(_build(tmp_path, "m.keras", _copy(inputs.data, tmp_path)),
                   "assets/a.bin", "declares 3,221,225,472 bytes")  # fmt: skip


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_keras_weights_with_a_gzip_dataset_bomb_are_refused(tmp_path, inputs, method):
    _h5_bomb(tmp_path / "w.h5")
    weights = ((tmp_path / "w.h5").read_bytes(), method)
    (tmp_path / "m.keras").write_bytes(_keras_with(inputs, **{"model.weights.h5": weights}))
    (tmp_path / "w.h5").unlink()
    assert_bounded(_build(tmp_path, "m.keras", _copy(inputs.data, tmp_path)),
                   "model.weights.h5", "datasets hold more than")  # fmt: skip


def test_keras_with_deflated_weights_is_still_read(inputs):
    """Keras stores its weights; a deflated copy is checked through a temporary file."""
    from edgec.pipeline.model_files import TF_KERAS, examine

    original = zipfile.ZipFile(inputs.keras)
    weights = (original.read("model.weights.h5"), zipfile.ZIP_DEFLATED)
    deflated = inputs.folder / "deflated.keras"
    deflated.write_bytes(_keras_with(inputs, **{"model.weights.h5": weights}))
    assert examine(deflated).kind == TF_KERAS


def test_h5_model_with_a_gzip_dataset_bomb_is_refused(tmp_path, inputs):
    _h5_bomb(tmp_path / "m.h5")
    assert_bounded(_build(tmp_path, "m.h5", _copy(inputs.data, tmp_path)),
                   "m.h5", "datasets hold more than")  # fmt: skip


def test_npz_bomb_is_refused_before_it_is_inflated(tmp_path, inputs):
    """A small .npz inflating to 400,000 samples (100 MB of zeros: 1,000x)."""
    (tmp_path / "d.npz").write_bytes(hostile.npz_bomb(400_000))
    assert (tmp_path / "d.npz").stat().st_size < 200_000
    assert_bounded(_build(tmp_path, _copy(inputs.keras, tmp_path), "d.npz"), "expands")


def test_large_deflated_npz_member_is_refused(tmp_path, inputs):
    """Sampling inflates a deflated member through to its last sampled row (about 80 MB/s
    here): a deflated member may declare at most 512 MiB (a stored one 2 GiB)."""
    x = hostile.npy_header((4, 8, 8, 1), payload=bytes(4 * 256))
    (tmp_path / "d.npz").write_bytes(hostile.zip_declaring("x.npy", x, 600 << 20))
    assert_bounded(_build(tmp_path, _copy(inputs.keras, tmp_path), "d.npz"),
                   "declares 629,145,600 bytes", "limit for it: 536,870,912")  # fmt: skip


def test_npz_compressed_with_bzip2_is_refused(tmp_path, inputs):
    """The 469-byte .npz expanding to 20M samples was bzip2: 220 s and 9.7 GB."""
    x = hostile.npy_header((20_000_000, 8, 8, 1)) + bytes(1 << 16)  # a header that lies, too
    (tmp_path / "d.npz").write_bytes(hostile.zip_bytes({"x.npy": x}, zipfile.ZIP_BZIP2))
    assert_bounded(_build(tmp_path, _copy(inputs.keras, tmp_path), "d.npz"),
                   "x.npy", "method 12")  # fmt: skip


def test_npy_header_larger_than_its_file_is_refused(tmp_path, inputs):
    """A header declaring shape (10^12, 4) over a few bytes: it was a MemoryError."""
    (tmp_path / "d.npy").write_bytes(hostile.npy_header((10**12, 4)))
    assert_bounded(_build(tmp_path, _copy(inputs.keras, tmp_path), "d.npy"),
                   "(1000000000000, 4)", "edgec reads arrays up to")  # fmt: skip
    (tmp_path / "d.npy").write_bytes(hostile.npy_header((1000, 8, 8, 1), payload=bytes(256)))
    assert_bounded(_build(tmp_path, "m.keras", "d.npy"), "256,000 bytes", "but 256 bytes follow")


@pytest.mark.parametrize(("declared", "needle"), [(500, "Bad CRC-32"), (2_000, "1,872 bytes")])
def test_npz_member_whose_declared_size_lies(tmp_path, inputs, declared, needle):
    x = hostile.npy_header((4, 8, 8, 1), payload=bytes(4 * 256))  # 1,152 bytes
    (tmp_path / "d.npz").write_bytes(hostile.zip_declaring("x.npy", x, declared))
    assert_bounded(_build(tmp_path, _copy(inputs.keras, tmp_path), "d.npz"), "d.npz", needle)


def test_truncated_npz_says_so(tmp_path, inputs):
    """It said the array 'holds Python objects'."""
    data = inputs.data.read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    run = _build(tmp_path, _copy(inputs.keras, tmp_path), "d.npz")
    assert_bounded(run, "d.npz", "truncated")
    assert "Python objects" not in run.err


def test_huge_image_is_refused_before_decoding(tmp_path, inputs):
    """A 400-megapixel PNG header (20,000 x 20,000): it was a DecompressionBombError."""
    (tmp_path / "images" / "cat").mkdir(parents=True)
    hostile.write_png_header(tmp_path / "images" / "cat" / "a.png", 20_000, 20_000)
    assert_bounded(_build(tmp_path, _copy(inputs.keras, tmp_path), "images"),
                   "a.png", "pixels")  # fmt: skip


def test_many_large_images_are_refused_before_decoding(tmp_path, inputs):
    """Found while attacking: a PNG of zeros is 1,000x smaller than its pixels and decodes
    at about 50 M pixels/s here, so 30 files of 60 KB kept a build busy for 36 s. The
    pixels of every image a build would read are counted from their headers first."""
    (tmp_path / "images" / "cat").mkdir(parents=True)
    for i in range(10):  # 8,000 x 8,000 each: at the per-image cap, 640 M pixels in all
        hostile.write_png_header(tmp_path / "images" / "cat" / f"{i}.png", 8_000, 8_000)
    assert_bounded(_build(tmp_path, _copy(inputs.keras, tmp_path), "images"),
                   "images hold more than 512,000,000 pixels")  # fmt: skip


# --- special files: devices, FIFOs, links out of the folder -----------------------------------


def test_model_linked_to_dev_zero(tmp_path, inputs):
    """It read until memory ran out (.keras), or said the model 'does not exist' (.tflite)."""
    (tmp_path / "m.keras").symlink_to("/dev/zero")
    (tmp_path / "m.tflite").symlink_to("/dev/zero")
    run = _build(tmp_path, "m.keras", _copy(inputs.data, tmp_path))
    assert_bounded(run, "m.keras is a symbolic link to /dev/zero", "/dev")
    for args in (["check", "m.tflite", "-t", "cortex-m"], ["inspect", "m.tflite"]):
        run = run_bounded(args, tmp_path)
        assert_bounded(run, "m.tflite is a symbolic link to /dev/zero")
        assert "does not exist" not in run.err


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/stdin", "/proc/self/environ"])
def test_report_linked_to_a_device_or_proc(tmp_path, target):
    good = tmp_path / "old.json"
    good.write_text('{"schema_version": 2, "target": "t", "memory": {"flash_bytes": 1}}')
    (tmp_path / "new.json").symlink_to(target)
    run = run_bounded(["diff", "old.json", "new.json"], tmp_path)  # stdin: /dev/null
    assert_bounded(run, "new.json is a symbolic link to", "not a regular file")


def test_fifos_never_block(tmp_path, inputs, seed):
    """An image a.png that is a FIFO blocked build forever; so did diff on a FIFO."""
    os.mkfifo(tmp_path / "m.tflite")
    os.mkfifo(tmp_path / "report.json")
    assert_bounded(run_bounded(["check", "m.tflite", "-t", "cortex-m"], tmp_path), "FIFO")
    assert_bounded(run_bounded(["diff", "report.json", "report.json"], tmp_path), "FIFO")
    (tmp_path / "images" / "cat").mkdir(parents=True)
    os.mkfifo(tmp_path / "images" / "cat" / "a.png")
    run = _build(tmp_path, _copy(inputs.keras, tmp_path), "images")
    assert_bounded(run, "a.png is a FIFO")


@pytest.mark.parametrize("target", ["/proc/self/fd/1", "/dev/stdin", "../../secret.png"])
def test_image_links_out_of_the_data_folder(tmp_path, inputs, target):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"not yours")
    (tmp_path / "images" / "cat" / "a.png").symlink_to(target)
    run = _build(tmp_path, _copy(inputs.keras, tmp_path), "images")
    assert_bounded(run, "a.png is a symbolic link")


def test_a_link_inside_the_data_folder_is_read(tmp_path):
    """A symbolic link to a file in the same data folder is fine (git stores links)."""
    from PIL import Image

    from edgec.datasets import load_dataset

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.full((8, 8), 9, np.uint8)).save(tmp_path / label / "a.png")
    (tmp_path / "dog" / "b.png").symlink_to("../cat/a.png")
    assert len(load_dataset(tmp_path, (8, 8, 1)).x) == 3


# --- output others parse: JUnit, Markdown, terminal -------------------------------------------

HOSTILE_NAMES = [
    "esc\x1b[31mred\x1b]0;title\x07bel\x00nul",
    "x\n### edgec check: `m.tflite` ✅ pass\n\n| cortex-m | forged | ✅ pass | 1 B | 1 B | - |",
    "<img src=x onerror=alert(1)> [click](https://evil.example) www.evil.example @everyone",
    "rtl\u202egnp.exe \u2066hidden\u2069 \ufffe\uffff",
]


def _named_model(names: list[str]) -> bytes:
    """A model whose tensor names and a custom op's code are ``names``."""
    b = TfliteBuilder()
    x = b.tensor(names[0], (1, 8), scale=0.05)
    w = b.constant(names[1], np.ones((4, 8), np.int8), scale=0.01)
    y = b.tensor(names[2], (1, 4), scale=0.25)
    b.op("FULLY_CONNECTED", [x, w, None], [y], options=schema.FullyConnectedOptionsT())
    z = b.tensor(names[3], (1, 4), scale=0.25)
    b.op("CUSTOM", [y], [z], custom_code=names[0] + names[3])
    return b.build(inputs=[x], outputs=[z])


def _hostile_profile(tmp_path: Path) -> Path:
    from tests.e2e.test_fuzz import _profile

    part = json.dumps("Part\n### edgec check: x ✅ pass\n| a | b | c |\n<script>x</script>\x1b[2J")
    profile = tmp_path / "board.toml"
    profile.write_text(_profile(part__name=part))
    return profile


@dataclass
class NamedChecks:
    work: Path
    junit: Bounded  # check --format junit --out checks.xml (the text on stdout)
    markdown: Bounded  # check --format markdown --out comment.md (the text on stdout)
    inspect: Bounded


@pytest.fixture(scope="module")
def named_checks(tmp_path_factory) -> NamedChecks:
    """The model of HOSTILE_NAMES checked against cortex-m and the hostile profile, once
    per report format others parse (each written with --out: the terminal's text goes to
    stdout beside it), and inspected."""
    work = tmp_path_factory.mktemp("named")
    (work / "m.tflite").write_bytes(_named_model(HOSTILE_NAMES))
    _hostile_profile(work)
    runs = [
        run_bounded(
            ["check", "m.tflite", "-t", "cortex-m,board.toml", "--format", fmt, "--out", out],
            work,
            allowed=(out,),
        )  # fmt: skip
        for fmt, out in (("junit", "checks.xml"), ("markdown", "comment.md"))
    ]
    return NamedChecks(work, *runs, run_bounded(["inspect", "m.tflite"], work))


def test_junit_is_well_formed_xml(named_checks):
    """ESC, NUL and BEL from names were written raw: CI's JUnit reader rejected the file."""
    run = named_checks.junit
    assert_bounded(run, code=None)
    assert run.code == 3  # the custom op is not in TFLM
    text = (named_checks.work / "checks.xml").read_text()
    root = ET.fromstring(text.encode())  # expat: well-formed XML 1.0 or an exception
    assert root.tag == "testsuites" and len(root) == 2
    assert not any(c in text for c in "\x1b\x00\x07\u202e\ufffe\uffff")
    assert "esc?[31mred" in text  # the name is still there, its control characters are not


def _rendered(markdown: str) -> list:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")  # HTML on, as GitHub parses it
    return md.parse(markdown)


def test_markdown_comment_cannot_be_forged(named_checks):
    """Names and the profile's part.name could add a '### ... pass' heading, table rows,
    links and raw HTML to the pull-request comment."""
    run = named_checks.markdown
    assert_bounded(run, code=None)
    comment = (named_checks.work / "comment.md").read_text()
    tokens = _rendered(comment)
    kinds = [t.type for t in tokens]
    assert kinds.count("heading_open") == 1 and kinds.count("table_open") == 1
    assert kinds.count("tr_open") == 3  # the header row and one row per target
    inline = [child for t in tokens for child in (t.children or [])]
    assert not [c for c in inline if c.type in ("link_open", "html_inline", "image")]
    assert not [t for t in tokens if t.type == "html_block"]
    assert "\u202e" not in comment and "\x1b" not in comment
    heading = tokens[kinds.index("heading_open") + 1].content
    assert heading.startswith("edgec check:") and heading.endswith("❌ fail"), heading


def test_terminal_output_has_no_bidi_overrides(named_checks):
    """check's text (on stdout beside each --out report) and inspect's table."""
    for run in (named_checks.junit, named_checks.markdown, named_checks.inspect):
        assert_bounded(run, code=None)
        assert "checking cortex-m" in run.err or "FULLY_CONNECTED" in run.out
        for char in "\u202e\u2066\u2069\x1b\x07\x00":
            assert char not in run.out + run.err, (run.out[:200], repr(char))


def test_names_at_the_caps_do_not_stall_the_terminal(tmp_path):
    """250 custom ops with 60 KB codes (15 MB of names, within the reader's caps): rich
    took minutes to lay out the ops check's detail. Terminal and Markdown clip each
    value; JUnit keeps it whole and stays quick."""
    b = TfliteBuilder()
    x = first = b.tensor("input", (1, 8), scale=0.05)
    for i in range(250):
        y = b.tensor(f"t{i}", (1, 8), scale=0.05)
        b.op("CUSTOM", [x], [y], custom_code=f"{i:04d}" + "C" * 60_000)
        x = y
    (tmp_path / "m.tflite").write_bytes(b.build(inputs=[first], outputs=[x]))
    # with --out the text summary still goes to stdout: two runs give all three formats
    for fmt, out in (("markdown", "comment.md"), ("junit", "checks.xml")):
        run = run_bounded(["check", "m.tflite", "-t", "cortex-m", "--format", fmt, "--out", out],
                          tmp_path, allowed=(out,))  # fmt: skip
        assert_bounded(run, code=None)
        assert run.code == 3 and len(run.out) < 100_000  # the terminal's text
        report = (tmp_path / out).read_text()
        if fmt == "junit":
            assert "0249" + "C" * 60_000 in report
        else:
            assert len(report) < 100_000


# --- parsers and figures: messages, not internal errors ---------------------------------------

PROFILE_CASES = {
    # 1.7e308 cycles per MAC at 1 Hz: Infinity in report.json, an internal error
    "huge-cycles": (
        {"estimate__cycles_per_mac": "1.7e308", "part__clock_hz": "1"},
        "cycles_per_mac",
    ),  # fmt: skip
    "5000-digits": ({"part__flash_bytes": "9" * 5000}, "cannot read"),
    "nested": ({"title": "[" * 3000 + "]" * 3000}, "nested too deeply"),
}


@pytest.mark.parametrize("case", PROFILE_CASES, ids=list(PROFILE_CASES))
def test_profiles_that_broke_the_parser(tmp_path, seed, case):
    from tests.e2e.test_fuzz import _profile

    changes, needle = PROFILE_CASES[case]
    (tmp_path / "board.toml").write_text(_profile(**changes))
    (tmp_path / "m.tflite").write_bytes(seed)
    args = ["check", "m.tflite", "-t", "board.toml", "--format", "json", "--out", "r.json"]
    assert_bounded(run_bounded(args, tmp_path, allowed=("r.json",)), needle)
    assert not (tmp_path / "r.json").exists()


def test_deeply_nested_json_to_diff(tmp_path):
    (tmp_path / "a.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "b.json").write_text('{"schema_version": 1, "x": ' + "1" * 5000 + "}")
    assert_bounded(run_bounded(["diff", "a.json", "b.json"], tmp_path), "nested too deeply")
    assert_bounded(run_bounded(["diff", "b.json", "b.json"], tmp_path), "not valid JSON")


def test_deeply_nested_recipe(tmp_path, inputs):
    (tmp_path / "r.toml").write_text("name = " + "{a=" * 3000 + "1" + "}" * 3000)
    run = _build(tmp_path, _copy(inputs.keras, tmp_path), _copy(inputs.data, tmp_path),
                 "--recipe", "r.toml")  # fmt: skip
    assert_bounded(run, "r.toml", "nested too deeply")


def test_files_that_are_cheap_to_write_and_slow_to_process(tmp_path, inputs):
    """Found while attacking: 200,000 target sections in a 16 MB report (diff's table took
    minutes), 500,000 recipe stages (tomllib alone: 19 s on 11 MB), 10,001 .npz members."""
    sections = [{"target": f"t{i}", "memory": {"flash_bytes": i}} for i in range(200_000)]
    (tmp_path / "r.json").write_text(json.dumps({"schema_version": 2, "targets": sections}))
    assert_bounded(run_bounded(["diff", "r.json", "r.json"], tmp_path), "200,000 target sections")
    (tmp_path / "big.toml").write_text('name = "x"\n' + '[[stage]]\ntype = "qat"\n' * 60_000)
    (tmp_path / "many.toml").write_text('name = "x"\n' + '[[stage]]\ntype = "qat"\n' * 40_000)
    data = _copy(inputs.data, tmp_path)
    for recipe, needle in (("big.toml", "edgec reads at most"), ("many.toml", "40,000 stages")):
        run = _build(tmp_path, _copy(inputs.keras, tmp_path), data, "--recipe", recipe)
        assert_bounded(run, recipe, needle)
    members = {f"a{i}.npy": b"" for i in range(10_001)}
    (tmp_path / "d.npz").write_bytes(hostile.zip_bytes(members, zipfile.ZIP_STORED))
    assert_bounded(_build(tmp_path, "m.keras", "d.npz"), "10,001 members")


@pytest.fixture(scope="module")
def keras3_badly_named(tmp_path_factory) -> Path:
    """One Keras 3 file per name of KERAS3_BAD_NAMES (k3-0.keras, ...), saved by Keras 3
    itself in the one Keras 3 process of the run (each Keras 3 import costs seconds)."""
    return keras3_models(tmp_path_factory)


@pytest.mark.parametrize("index", range(len(KERAS3_BAD_NAMES)), ids=KERAS3_BAD_NAMES)
def test_keras3_layer_name_tensorflow_cannot_use(tmp_path, inputs, keras3_badly_named, index):
    """A Keras 3 layer name TensorFlow refuses as a scope: a ValueError deep in the
    conversion (an internal error)."""
    (tmp_path / "k3.keras").write_bytes((keras3_badly_named / f"k3-{index}.keras").read_bytes())
    run = _build(tmp_path, "k3.keras", _copy(inputs.data, tmp_path))
    assert_bounded(run, "k3.keras", "has a name TensorFlow cannot use")


# --- sampled data: --max-samples ----------------------------------------------------------


def test_more_data_than_max_samples_is_sampled_and_said(tmp_path, inputs):
    """A data set larger than --max-samples is sampled (seeded) while it is read; the
    report and the summary say so, as they say that --calibration-samples was capped to
    half the data (it was silently before)."""
    from tests.support.cli import run_edgec

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "big.npz", x=rng.random((5_000, 8, 8, 1), np.float32),
             y=rng.integers(0, 3, 5_000))  # fmt: skip
    run = run_edgec("build", inputs.keras, "-t", "cortex-m", "-d", tmp_path / "big.npz",
                    "--max-samples", "400", "--calibration-samples", "5000",
                    "--out", tmp_path / "out")  # fmt: skip
    assert run.code in (0, 3), run.err
    data = json.loads((tmp_path / "out" / "report.json").read_text())["data"]
    assert data["sampled_from"] == 5_000 and data["max_samples"] == 400
    assert data["calibration_samples"] == data["evaluation_samples"] == 200
    capped = "--calibration-samples 5,000: 200 calibrated the int8 model"
    assert [w for w in data["warnings"] if w.startswith(capped)]
    text = " ".join(run.out.split())  # rich wraps long lines
    assert "5,000 samples in" in text and "a seeded sample of 400 was used" in text
    assert text.count(capped) == 1


# --- a forged fit.json ------------------------------------------------------------------------


def _fit_state(tmp_path: Path, inputs: Inputs, trial: dict) -> list[str]:
    """A fit.json for ``edgec fit m.keras -d d.npz -t cortex-m --rungs 1 --trials 1`` whose
    only trained trial is ``trial`` (forged), every screen before it recorded as fitting,
    and the command to resume it."""
    from edgec.fit.search import FitOptions, _command, _fingerprint_inputs
    from edgec.fit.space import candidate_key, candidates, structural, supported_levers
    from edgec.fit.store import fingerprint
    from edgec.fit.trial import activation_types

    model, data = _copy(inputs.keras, tmp_path), _copy(inputs.data, tmp_path)
    args = ["fit", model, "-d", data, "-t", "cortex-m", "--rungs", "1", "--trials", "1",
            "--out", "out", "--calibration-samples", "30"]  # fmt: skip
    # the options the command makes: paths as given, relative to its folder
    options = FitOptions(model=Path(model), data=Path(data), target="cortex-m",
                         out=Path("out"), rungs=(1,), trials=1, calibration_samples=30)  # fmt: skip
    levers = supported_levers(activation_types())
    cwd = Path.cwd()
    os.chdir(tmp_path)  # the fingerprint hashes the files the paths name
    try:
        digest = fingerprint(_fingerprint_inputs(options, levers))
    finally:
        os.chdir(cwd)
    first = candidates(levers, 0)[0]
    figures = {"target": "cortex-m", "flash_bytes": 1000, "flash_budget_bytes": 655360,
               "arena_bytes": 1000, "tensor_arena_bytes": 1120, "ram_budget_bytes": 196608,
               "macs": 192,
               "latency_ms": 0.01, "budgets": []}  # fmt: skip
    screen = {"kind": "screen", "params": structural(first), "cost": 0,
              "key": candidate_key(structural(first)), "rung": -1, "epochs": 0,
              "seconds": 1.0, "fits": True, "targets": [figures], "metric": None,
              "accuracy": None, "float_accuracy": None, "failed_checks": [],
              "error": None}  # fmt: skip
    trained = {**screen, "kind": "train", "params": first, "key": candidate_key(first),
               "rung": 0, "epochs": 1, **trial}  # fmt: skip
    state = {"version": 1, "fingerprint": digest, "command": _command(options), "summary": {},
             "winner": None, "rebuild": None, "trials": [screen, trained]}  # fmt: skip
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "fit.json").write_text(json.dumps(state))
    return args


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"key": "qat\n[[stage]]\ntype = 'prune'"}, "is not its parameters'"),
        ({"accuracy": float("nan")}, "not valid JSON"),
        ({"accuracy": 250.0}, "accuracy 250.0 is not a number in [0, 100]"),
        ({"params": {"qat": True}}, "params has"),
        ({"extra": 1}, "expected the keys"),
    ],
    ids=["newline-key", "nan", "out-of-range", "missing-levers", "unknown-key"],
)
def test_a_tampered_fit_json_is_refused(tmp_path, inputs, change, needle):
    args = _fit_state(tmp_path, inputs, {"metric": "top1", "accuracy": 90.0, **change})
    before = (tmp_path / "out" / "fit.json").read_bytes()
    run = run_bounded(args, tmp_path, allowed=("out",))
    assert_bounded(run, "fit.json", needle)
    assert (tmp_path / "out" / "fit.json").read_bytes() == before  # left for the user to see
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fit.json"]


def test_a_forged_winner_is_measured_before_it_is_written(tmp_path, inputs):
    """A schema-valid trial claiming 100% became the winner. Now the winner is built again
    and its record replaced by what the build measures, before anything is written.
    The fit runs in this process (its model work too: EDGEC_SANDBOX=off), which has
    TensorFlow loaded already; the sandbox's own tests cover the model process."""
    args = _fit_state(tmp_path, inputs, {"metric": "top1", "accuracy": 100.0,
                                         "float_accuracy": 100.0})  # fmt: skip
    run = run_bounded(args, tmp_path, allowed=("out",), timeout=300, how="in-process")
    assert run.code == 0, run.err[-3000:]
    assert run.peak_bytes < PEAK_BYTES and run.written == [] and run.left_in_tmp == []
    assert "not trusted:" in run.out and "fit.json said top1 100, fits" in run.out
    state = json.loads((tmp_path / "out" / "fit.json").read_text())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    trained = [t for t in state["trials"] if t["kind"] == "train"]
    assert len(trained) == 1 and trained[0]["accuracy"] == report["accuracy"]["int8"] != 100
    recipe = tmp_path / "out" / "recipe.toml"
    if recipe.exists():  # the comment is one line; the TOML is the candidate's
        import tomllib

        lines = recipe.read_text().splitlines()
        assert lines[0].startswith("# ") and not lines[1].startswith("[")
        assert tomllib.loads(recipe.read_text())["name"] == f"fit-{state['winner']}"
