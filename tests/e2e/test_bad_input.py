"""Every bad input: one clear line, exit 1, no traceback, nothing written."""

import shutil

import numpy as np
import pytest

from tests.support.cli import assert_clean_failure
from tests.support.cli import run_edgec as _run_edgec
from tests.support.hints import hinted_commands, the_hint

# Issue 22: every command a hint of these tests prints is run by the test, as printed
_hints: dict[str, list[list[str]]] = {"printed": [], "ran": []}


def run_edgec(*args):
    run = _run_edgec(*args)
    _hints["ran"].append([str(a) for a in args])
    _hints["printed"].extend(hinted_commands(run.err + run.out))
    return run


@pytest.fixture(autouse=True)
def every_hinted_command_runs():
    _hints["printed"].clear()
    _hints["ran"].clear()
    yield
    not_run = [c for c in _hints["printed"] if c not in _hints["ran"]]
    assert not not_run, f"hinted commands the test did not run: {not_run}"


def build(tmp_path, *args):
    out = tmp_path / "out"
    run = run_edgec("build", *args, "--out", out)
    return run, out


def nothing_written(tmp_path, out):
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".edgec-" in p.name]


def test_missing_model(tmp_path):
    run, out = build(tmp_path, tmp_path / "nope.keras", "--target", "cortex-m", "--data", "x.npz")
    assert_clean_failure(run, "does not exist")
    nothing_written(tmp_path, out)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_corrupt_model(tmp_path, suffix, user_model):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(b"\x00garbage" * 100)
    run, out = build(tmp_path, bad, "--target", "cortex-m", "--data", user_model.data)
    assert_clean_failure(run, str(bad), "not a readable")
    nothing_written(tmp_path, out)


def test_truncated_keras_archive(tmp_path, user_model):
    bad = tmp_path / "cut.keras"
    bad.write_bytes(user_model.keras.read_bytes()[:2000])
    run, out = build(tmp_path, bad, "--target", "cortex-m", "--data", user_model.data)
    assert_clean_failure(run, "cut.keras")
    nothing_written(tmp_path, out)


def test_a_channels_first_model_tensorflow_cannot_run_here_is_one_clear_error(tmp_path):
    """NCHW convolutions do not run on TensorFlow's CPU kernels: every float figure of the
    build failed, first as "internal error: UnimplementedError" from the precision choice."""
    from edgec._tf import keras

    model = keras.Sequential([
        keras.Input((3, 8, 8)),
        keras.layers.Conv2D(4, 3, data_format="channels_first"),
        keras.layers.Flatten(),
        keras.layers.Dense(2),
    ])  # fmt: skip
    model.save(tmp_path / "nchw.keras")
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 3, 8, 8), np.float32))
    run, out = build(tmp_path, tmp_path / "nchw.keras", "--target", "cortex-m",
                     "--data", tmp_path / "d.npz")  # fmt: skip
    assert_clean_failure(run, "has channels_first (NCHW) layers", "data_format='channels_last'")
    nothing_written(tmp_path, out)


def test_a_model_with_two_outputs_is_refused_with_what_can_check_it(tmp_path, user_model):
    from edgec._tf import keras

    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2)(flat), keras.layers.Dense(1)(flat)])
    model.save(tmp_path / "heads.keras")
    run, out = build(tmp_path, tmp_path / "heads.keras", "--target", "cortex-m",
                     "--data", user_model.data)  # fmt: skip
    assert_clean_failure(run, "has 1 inputs and 2 outputs", "edgec check takes a .tflite")
    nothing_written(tmp_path, out)


def test_keras3_model_is_accepted(tmp_path, keras3_model, user_model):
    """The README's first command on a Keras 3 file: no refusal any more (issue 10)."""
    run, out = build(tmp_path, keras3_model, "--target", "cortex-m", "--data", user_model.data)
    assert run.code in (0, 3), run.err + run.out
    assert (out / "report.json").is_file() and "Keras 3" not in run.err


_X = np.full((20, 8, 8, 1), 0.5, np.float32)


@pytest.mark.parametrize(
    ("x", "y", "needle"),
    [
        (
            np.zeros((20, 28, 28, 1), np.float32),
            None,
            "has shape (20, 28, 28, 1) but the model takes (N, 8, 8, 1)",
        ),
        (np.zeros((0, 8, 8, 1), np.float32), None, "is empty"),
        (np.where(np.arange(20 * 64).reshape(20, 8, 8, 1) == 77, np.nan, 0.5), None, "NaN"),
        # before, a plain build judged its accuracy against them as they were
        (_X, np.arange(20) % 11, "y holds 11 classes (class 10 in sample 10) but the model "
         "output is [10]: class numbers are 0-9"),
        (_X, np.linspace(0, 1, 20), "the targets y have shape [] per sample but the model "
         "output is [10]"),
    ],
    ids=["shape", "empty", "nan", "class-beyond-the-outputs", "targets-not-the-output"],
)  # fmt: skip
def test_bad_data(tmp_path, user_model, x, y, needle):
    np.savez(tmp_path / "d.npz", x=x, **({} if y is None else {"y": y}))
    run, out = build(
        tmp_path, user_model.keras, "--target", "cortex-m", "--data", tmp_path / "d.npz"
    )
    assert_clean_failure(run, needle)
    nothing_written(tmp_path, out)


def test_user_model_without_data(tmp_path, user_model):
    run, out = build(tmp_path, user_model.keras, "--target", "cortex-m")
    assert_clean_failure(run, "no --data", "calibration needs real samples")
    nothing_written(tmp_path, out)


def test_unknown_target_lists_known(tmp_path):
    run, out = build(tmp_path, "--target", "cortex-z")
    assert_clean_failure(run, "unknown target 'cortex-z'", "cortex-m")
    nothing_written(tmp_path, out)


def test_malformed_profile_names_the_key(tmp_path):
    profile = tmp_path / "board.toml"
    profile.write_text(
        'schema_version = 1\nname = "b"\ntitle = "b"\nkind = "mcu"\n'
        '[part]\nname = "x"\ncpu = "cortex-m4"\nclock_hz = 1\n'
        'flash_bytes = 1024\nram_bytes = "big"\n'
    )
    run, out = build(tmp_path, "--target", profile)
    assert_clean_failure(run, "'big' is not a size")
    profile.write_text(
        profile.read_text().replace('ram_bytes = "big"', "ram_bytes = 1024\nfpu = true")
    )
    run, out = build(tmp_path, "--target", profile)
    assert_clean_failure(run, "unknown key 'part.fpu'")
    nothing_written(tmp_path, out)


def run_the_hint(run) -> tuple[list[str], object]:
    """The command the error line advises, run as printed (issue 22: every hint runs)."""
    command = the_hint(next(ln for ln in run.err.splitlines() if ln.startswith("error:")))
    return command, run_edgec(*command)


def test_output_path_is_a_file(tmp_path):
    target = tmp_path / "out"
    target.write_text("keep me")
    run = run_edgec("build", "--target", "cortex-m", "--out", target)
    assert_clean_failure(run, "is a file")
    assert target.read_text() == "keep me"
    command, hinted = run_the_hint(run)
    assert command == ["build", "--target", "cortex-m", "--out", f"{target}-2"]
    assert hinted.code == 0, hinted.err
    assert (tmp_path / "out-2" / "report.json").is_file() and target.read_text() == "keep me"


def test_bad_budget(tmp_path):
    """Each bad budget is a usage error before any work, with a hinted command; each
    distinct hinted command (two for the three budgets) is run once, as printed."""
    out = tmp_path / "out"
    hinted: list[list[str]] = []
    for budget in ["ram=1 potato", "rom=1KiB", "flash"]:
        run = run_edgec("build", "--target", "cortex-m", "--budget", budget, "--out", out)
        needle = "budget" if "=" not in budget or "rom" in budget else "is not a size"
        assert_clean_failure(run, needle, code=2)  # a usage error
        nothing_written(tmp_path, out)
        command = the_hint(next(ln for ln in run.err.splitlines() if ln.startswith("error:")))
        assert command[:5] == ["build", "--target", "cortex-m", "--out", str(out)]
        assert command[5] == "--budget" and command[6] in ("flash=256KiB,ram=64KiB", "ram=64KiB")
        if command not in hinted:
            hinted.append(command)
    assert len(hinted) == 2
    for command in hinted:
        shutil.rmtree(out, ignore_errors=True)
        done = run_edgec(*command)
        assert done.code == 0, done.err
        assert (out / "report.json").is_file()


def test_debug_shows_the_traceback(tmp_path):
    run = run_edgec("build", "--target", "cortex-z", "--debug", "--out", tmp_path / "o")
    assert run.code == 1 and "Traceback" in run.err
