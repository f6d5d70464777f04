"""Verdicts follow the runtime: what tflite-micro registers and runs, the fields it reads.

Each model here is a small generated reproduction of a real published model edgec used to
misjudge (tests/support/real_model_defects.py); the real files are checked in
tests/e2e/test_real_models.py when they are present.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest

from edgec.api import check
from edgec.artifact import Artifact, runtimes, tflm_ops
from edgec.artifact.tflite_model import TfliteModel
from edgec.errors import InputError
from edgec.report import json_text
from edgec.targets.analyzers.ethos_u import parse_vela
from edgec.targets.analyzers.vela_compiled import npu_config
from edgec.targets.profile import load_runtime
from tests.support import real_model_defects as defects
from tests.support.tflite_builder import TfliteBuilder, dense_int8, schema, while_loop_int8

# TensorFlow-free, but most tests here start TFLM, LiteRT or Vela processes (arena searches,
# probes): guarded like the unit tier, too slow for it.
pytestmark = pytest.mark.no_tensorflow


def _check(tmp_path, data: bytes, target: str = "cortex-m", name: str = "m.tflite"):
    path = tmp_path / name
    path.write_bytes(data)
    report = check(path, target=target)
    return report, {c.name: c for c in report.targets[0].checks}


def test_a_dynamic_batch_in_shape_signature_only_fails_the_edge_tpu(tmp_path):
    """TFLM reads `shape` (static); the MLCommons models' -1 sits in shape_signature."""
    data = dense_int8(batch_signature=-1)
    assert TfliteModel.from_bytes(data).input_tensor().shape_signature == (-1, 8)
    report, checks = _check(tmp_path, data)
    assert report.ok, [c for c in checks.values() if not c.ok]
    assert checks["static_shapes"].ok and "-1 in shape_signature" in checks["static_shapes"].detail
    _, tpu = _check(tmp_path, data, "edgetpu")
    assert not tpu["static_shapes"].ok and "dynamic dimensions (-1)" in tpu["static_shapes"].detail


def test_an_old_converters_bias_axis_is_read_as_tflm_reads_it(tmp_path):
    """person_detect.tflite's 1-D biases say quantized_dimension 3: TFLM never reads it."""
    flat = TfliteModel.from_bytes(defects.old_converter_bias())
    bias = next(t for t in flat.tensors if t.name == "dw/bias")
    assert bias.per_channel and bias.quantized_dimension == 0
    report, checks = _check(tmp_path, defects.old_converter_bias())
    assert report.ok and report.targets[0].memory.arena_bytes > 0, checks


def test_a_phone_says_litert_refuses_an_old_converters_bias_axis(tmp_path):
    """person_detect.tflite fails on phones: LiteRT's loader checks the axis TFLM ignores.
    That sat under "latency: not measured"; it is the litert check's, with what to do."""
    report, checks = _check(tmp_path, defects.old_converter_bias(), "android-arm64")
    assert not report.ok and not checks["litert"].ok
    assert "quantized_dimension must be in range" in checks["litert"].detail
    assert "convert the model again with a current TFLite converter" in checks["litert"].detail
    assert checks["latency"].detail == "not measured: the model does not run in LiteRT (see litert)"
    _, runs = _check(tmp_path, dense_int8(), "android-arm64")
    assert "litert" not in runs and runs["latency"].ok


def test_an_off_shape_axis_on_a_filter_is_still_refused():
    """A kernel indexes the filter's shape with that axis: TFLM would read out of bounds."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 2), scale=0.1)
    w = b.constant("w", np.ones((2, 2), np.int8), scale=[0.1, 0.2], zero_point=[0, 0], axis=3)
    y = b.tensor("output", (1, 2), scale=0.1)
    b.op("FULLY_CONNECTED", [x, w], [y], options=schema.FullyConnectedOptionsT())
    with pytest.raises(InputError, match="quantized dimension 3 is not in shape"):
        TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y]))


def test_one_zero_point_for_many_scales_is_read_as_tflm_does():
    b = TfliteBuilder()
    x = b.tensor("input", (1, 2), scale=0.1)
    w = b.constant("w", np.ones((3, 2), np.int8), scale=[0.1, 0.2, 0.3], zero_point=0, axis=0)
    y = b.tensor("output", (1, 3), scale=0.1)
    b.op("FULLY_CONNECTED", [x, w], [y], options=schema.FullyConnectedOptionsT())
    weights = TfliteModel.from_bytes(b.build(inputs=[x], outputs=[y])).tensors[1]
    assert len(weights.scales) == 3
    assert weights.zero_points == (0, 0, 0)  # every channel gets it, as in TFLM's allocator


def test_signal_ops_are_asked_of_the_installed_tflm(tmp_path):
    """micro_speech's audio preprocessor: TFLM registers the Signal ops."""
    report, checks = _check(tmp_path, defects.signal_window())
    assert report.ok, checks
    assert (
        "SignalWindow" in checks["ops"].detail and "installed tflite-micro" in checks["ops"].detail
    )


def test_an_int32_quantize_output_passes_because_tflm_runs_it(tmp_path):
    report, checks = _check(tmp_path, defects.quantize_int32())
    assert report.ok, checks
    assert "allocated and invoked" in checks["dtypes"].detail
    assert "int32 tensors are the kernels' types" in checks["dtypes"].detail


def test_a_kernel_that_refuses_int16_fails_dtypes_in_tflms_words(tmp_path):
    """TFLM's HARD_SWISH takes int8 and float only: it says so at Invoke, naming the op by
    kind and index ("Node HARD_SWISH (number 0)"), to which the check adds its place in
    the model (a layer's scope in a converted Keras model: a softplus's int8 EXP, which
    TFLM takes as float32 only, became "Node EXP (number 2, .../dense_1/Softplus1)")."""
    report, checks = _check(tmp_path, defects.hard_swish_int16())
    assert checks["ops"].ok and not checks["dtypes"].ok
    assert "INT16" in checks["dtypes"].detail
    assert "Node HARD_SWISH (number 0, output) failed" in checks["dtypes"].detail
    assert "not measured" in report.targets[0].memory.arena_method


def test_an_int8_only_profile_keeps_its_policy(tmp_path):
    """The profile's tensor_dtypes stay the policy: int16 fails a target that lists int8."""
    profile = tmp_path / "int8-only.toml"
    from edgec.targets import load_target

    text = (
        load_target("cortex-m")
        .to_toml()
        .replace('tensor_dtypes = ["int8", "int16"]', 'tensor_dtypes = ["int8"]')
    )
    profile.write_text(text.replace('name = "cortex-m"', 'name = "int8-only"'))
    _, checks = _check(tmp_path, defects.signal_window(), str(profile))
    assert not checks["dtypes"].ok and "int16" in checks["dtypes"].detail


def test_a_float_model_fails_only_on_dtypes(tmp_path):
    b = TfliteBuilder()
    x = b.tensor("input", (1, 4), "float32")
    w = b.constant("w", np.ones((2, 4), np.float32))
    y = b.tensor("output", (1, 2), "float32")
    b.op("FULLY_CONNECTED", [x, w, None], [y], options=schema.FullyConnectedOptionsT())
    report, checks = _check(tmp_path, b.build(inputs=[x], outputs=[y]))
    assert [name for name, c in checks.items() if not c.ok] == ["dtypes"]
    assert "not quantized" in checks["dtypes"].detail
    assert report.targets[0].memory.arena_bytes > 0  # TFLM runs float, the policy does not


def test_a_dynamic_range_model_is_named_as_such(tmp_path):
    """Float activations with int8 weights: TFLM refuses such hybrid models outright."""
    b = TfliteBuilder()
    x = b.tensor("input", (1, 4), "float32")
    w1 = b.constant("w1", np.ones((4, 4), np.int8), scale=0.1)
    hidden = b.tensor("hidden", (1, 4), "float32")
    w2 = b.constant("w2", np.ones((2, 4), np.int8), scale=0.1)
    y = b.tensor("output", (1, 2), "float32")
    options = schema.FullyConnectedOptionsT()
    b.op("FULLY_CONNECTED", [x, w1, None], [hidden], options=options)
    b.op("FULLY_CONNECTED", [hidden, w2, None], [y], options=options)
    report, checks = _check(tmp_path, b.build(inputs=[x], outputs=[y]))
    assert not checks["dtypes"].ok and "dynamic-range" in checks["dtypes"].detail
    assert report.targets[0].memory.arena_bytes is None  # TFLM refuses hybrid models
    assert "FLOAT32" in report.targets[0].memory.arena_method


def test_an_op_tflm_does_not_register_is_named(tmp_path):
    b = TfliteBuilder()
    x = b.tensor("input", (1, 4), scale=0.1)
    y = b.tensor("output", (1, 4), scale=0.1)
    b.op("RELU_N1_TO_1", [x], [y])
    report, checks = _check(tmp_path, b.build(inputs=[x], outputs=[y]))
    assert not checks["ops"].ok and "no kernel for RELU_N1_TO_1" in checks["ops"].detail
    assert report.targets[0].memory.arena_bytes is None


# A tf.while_loop (a GRU or an RNN the converter does not fuse) converts to a WHILE whose
# condition and body are subgraphs 1 and 2. TFLM prepares every subgraph: each op needs a
# kernel and each tensor a type the target takes. The checks used to see subgraph 0 only
# (ops "all 1 op types are provided: WHILE" for a body TFLM has no kernel for; dtypes
# passed a float body; the body's MACs were not counted).


def test_a_while_loop_body_is_judged_as_tflm_runs_it(tmp_path):
    report, checks = _check(tmp_path, while_loop_int8())
    assert report.ok, [c for c in checks.values() if not c.ok]
    assert checks["ops"].detail.endswith("WHILE, LESS, ADD, FULLY_CONNECTED"), checks["ops"]
    macs = checks["macs"]  # the body's 8x8 FULLY_CONNECTED, once: the turns are run-time
    assert macs.value == 64 and macs.method == "estimated" and "WHILE loop" in macs.detail
    assert report.targets[0].memory.arena_bytes > 0  # TFLM ran the loop


def test_an_op_tflm_lacks_in_a_loop_body_fails_ops(tmp_path):
    report, checks = _check(tmp_path, while_loop_int8(body_op="TILE"))
    assert not report.ok and not checks["ops"].ok
    assert "no kernel for TILE: op #1 TILE" in checks["ops"].detail
    assert "in subgraph 2 'while_body'" in checks["ops"].detail


def test_a_float_loop_body_fails_dtypes(tmp_path):
    _, checks = _check(tmp_path, while_loop_int8(body_op="FLOAT_FC"))
    assert not checks["dtypes"].ok
    assert "in subgraph 2 'while_body' input 'while_body/state' is float32" in (
        checks["dtypes"].detail
    )


def test_the_flash_check_says_which_bytes_tflm_never_reads(tmp_path):
    """A model with its labels zipped after the flatbuffer (TFLite's metadata writer):
    the flash figure is the file firmware would embed; the check says how much of it TFLM
    never reads and where the model ends."""
    import io
    import zipfile

    plain = dense_int8()
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as z:
        z.writestr("labels.txt", "cat\ndog\n" * 500)
    data = plain + packed.getvalue()
    report, checks = _check(tmp_path, data)
    assert report.ok and checks["flash"].value == len(data)
    zipped = len(data) - len(plain)
    assert f"{zipped:,} B of it are a zip appended after the flatbuffer" in checks["flash"].detail
    assert f"(head -c {len(plain)} FILE)" in checks["flash"].detail
    _, phone = _check(tmp_path, data, "android-arm64")  # LiteRT's task libraries read them
    assert "zip" not in phone["flash"].detail


def test_the_resolver_method_table_matches_the_installed_tflm():
    """Every op the installed tflite-micro registers has its MicroMutableOpResolver method
    in runtimes/tflite-micro.toml, and the table names no op TFLM lacks ('ethos-u' aside:
    TFLM registers it only when built with the Ethos-U driver)."""
    runtime = load_runtime("tflite-micro")
    assert runtime.installed_ops
    table = set(runtime.builtin_ops) | set(runtime.custom_ops)
    found = tflm_ops.registered(tflm_ops.candidates(runtime.custom_ops))
    assert found - table == set(), "registered by TFLM, no resolver method in the table"
    assert table - found == {"ethos-u"}, "in the table, not registered by the installed TFLM"
    assert {f"Signal{n}" for n in ("Window", "Energy", "Rfft", "PCAN")} <= found


def test_tflm_messages_are_the_last_failed_probes_own_lines(tmp_path):
    log = tmp_path / "probe.log"
    log.write_text(
        "edgec-probe 4096: TFLM failed to allocate tensors\n"
        "Type INT16 (7) not supported.\nNode HARD_SWISH (number 0) failed to prepare\n"
        "Type INT16 (7) not supported.\n"
        "edgec-probe 8192: TFLM failed to allocate tensors\n"
    )
    assert runtimes.tflm_messages(log) == (
        "Type INT16 (7) not supported.",
        "Node HARD_SWISH (number 0) failed to prepare",
    )
    log.write_text("edgec-probe 4096: Interpreter invocation failed.\n")
    assert runtimes.tflm_messages(log) == ("Interpreter invocation failed.",)


def test_vela_compiled_model_on_its_npu_is_read_not_compiled_again(tmp_path):
    report, checks = _check(tmp_path, defects.vela_compiled(), "cortex-m55-ethos-u55")
    assert report.ok, checks
    assert "precompiled by Vela 3.11.0" in checks["vela"].detail
    assert "ethos-u55-128" in checks["vela"].detail
    section = report.targets[0]
    assert section.memory.arena_bytes == 1024  # scratch and scratch_fast share offset 0
    assert checks["ram"].method == "estimated"
    assert section.figures.vela["compiled_ops"][0]["command_stream_bytes"] == 32
    json.loads(report.to_json())  # no NaN anywhere


def test_vela_compiled_for_another_npu_fails_as_the_driver_would(tmp_path):
    report, checks = _check(
        tmp_path, defects.vela_compiled("ethos-u55-256"), "cortex-m55-ethos-u55"
    )
    assert not checks["vela"].ok and "NPU config mismatch" in checks["vela"].detail
    assert "compiled" in checks["vela"].detail and "ethos-u55-256" in checks["vela"].detail


def test_vela_compiled_without_an_offline_plan_counts_every_arena_tensor(tmp_path):
    data = defects.vela_compiled(offline_plan=False)
    report, _ = _check(tmp_path, data, "cortex-m55-ethos-u55")
    active = [t for t in TfliteModel.from_bytes(data).tensors if not t.is_constant]
    assert report.targets[0].memory.arena_bytes == sum(t.nbytes for t in active)


def test_vela_compiled_model_on_a_plain_cortex_m_says_it_needs_the_npu(tmp_path):
    report, checks = _check(tmp_path, defects.vela_compiled(), "cortex-m")
    assert not report.ok and not checks["ops"].ok
    assert "compiled by Arm's Vela" in checks["ops"].detail
    assert "--target cortex-m55-ethos-u55" in checks["ops"].detail
    assert "not counted" in checks["macs"].detail  # not "0 MACs"


def test_edgetpu_compiled_model(tmp_path):
    report, checks = _check(tmp_path, defects.edgetpu_compiled(), "edgetpu")
    assert report.ok, checks
    assert "precompiled by the Edge TPU compiler" in checks["edgetpu_mapping"].detail
    _, mcu = _check(tmp_path, defects.edgetpu_compiled(), "cortex-m")
    assert not mcu["ops"].ok and "Coral Edge TPU" in mcu["ops"].detail


def test_npu_config_of_a_command_stream():
    config = npu_config(defects.vela_command_stream("ethos-u55-256"))
    assert config is not None and config.accelerator == "ethos-u55-256"
    assert (config.macs_per_cycle, config.shram_kib) == (256, 48)
    assert npu_config(b"not a stream") is None
    unknown = defects.vela_command_stream()[:8] + struct.pack("<I", 0x70001807)
    assert npu_config(unknown + bytes(20)).accelerator is None


def test_non_finite_vela_figures_are_not_measured_with_a_reason():
    """Vela writes nan inferences per second when no op reaches the NPU (1 / 0 cycles)."""
    stdout = "CPU operators = 1 (100.0%)\nNPU operators = 0 (0.0%)\n"
    row = {
        "accelerator_configuration": "Ethos_U55_128", "system_config": "S", "memory_mode": "M",
        "core_clock": "500000000.0", "sram_memory_used": "0.0",
        "off_chip_flash_memory_used": "0.0", "nn_macs": "0", "cycles_total": "0",
        "cycles_npu": "0", "inference_time": "0.0", "inferences_per_second": "nan",
    }  # fmt: skip
    result = parse_vela(stdout, row)
    assert result["inferences_per_second"] is None
    assert "nan" in result["not_measured"]["inferences_per_second"]
    assert "no operator runs on the NPU" in result["not_measured"]["inferences_per_second"]
    json_text(result)  # strict JSON: raises on a NaN
    assert all(not isinstance(v, float) or math.isfinite(v) for v in result.values())


def test_check_json_of_a_model_with_no_npu_op_is_valid(tmp_path):
    """`check --format json` on Ethos-U once died on Vela's nan: now a stated figure."""
    path = tmp_path / "signal.tflite"
    path.write_bytes(defects.signal_window())
    report = check(path, target="cortex-m55-ethos-u55")
    checks = {c.name: c for c in report.targets[0].checks}
    assert "not measured: no operator runs on the NPU" in checks["latency"].detail
    assert report.targets[0].memory.arena_bytes == Artifact.from_bytes(path.read_bytes()).arena()[0]
    json.loads(report.to_json())


def _dense_then(b: TfliteBuilder, units: int = 4):
    x = b.tensor("input", (1, 8), scale=0.05, zero_point=-3)
    w = b.constant("dense/weights", np.ones((units, 8), np.int8), scale=0.01)
    bias = b.constant("dense/bias", np.zeros(units, np.int32), scale=0.0005)
    h = b.tensor("dense/out", (1, units), scale=0.25)
    b.op("FULLY_CONNECTED", [x, w, bias], [h], options=schema.FullyConnectedOptionsT())
    return x, h


def test_vela_s_own_operation_count_is_not_given_as_the_model_s(tmp_path):
    """Vela lowers a SOFTMAX into tens of NPU operations: "30 operators on the NPU" was
    read as the model's, which has two ops."""
    b = TfliteBuilder()
    x, logits = _dense_then(b)
    y = b.tensor("output", (1, 4), scale=1 / 256, zero_point=-128)
    options = schema.SoftmaxOptionsT()
    options.beta = 1.0
    b.op("SOFTMAX", [logits], [y], options=options)
    _, checks = _check(tmp_path, b.build(inputs=[x], outputs=[y]), "cortex-m55-ethos-u55")
    vela = checks["vela"]
    assert vela.ok and "2 of the model's 2 ops on the NPU (as " in vela.detail, vela.detail
    assert vela.value > 2 and "NPU operations after Vela's lowering), 0 on the CPU" in vela.detail


def test_a_cpu_operation_vela_names_by_its_own_tensor_is_not_a_missing_kernel(tmp_path):
    """Vela passes an op with no outputs (ASSIGN_VARIABLE) to the CPU as "Passthrough
    (placeholder-for-2-OFM)": that is no op of the model, and TFLM has ASSIGN_VARIABLE;
    the check failed with "no CPU kernel for Passthrough"."""
    b = TfliteBuilder()
    x, y = _dense_then(b)
    state = b.tensor("state", (), "resource")
    options = schema.VarHandleOptionsT()
    options.sharedName = "state"
    b.op("VAR_HANDLE", [], [state], options=options)
    b.op("ASSIGN_VARIABLE", [state, y], [])
    _, checks = _check(tmp_path, b.build(inputs=[x], outputs=[y]), "cortex-m55-ethos-u55")
    assert checks["ops"].ok and checks["vela"].ok, checks["vela"].detail
    assert "no CPU kernel" not in checks["vela"].detail
    assert "Vela names by tensors the model lacks" in checks["vela"].detail


def test_a_two_output_model_s_package_declares_both_and_ships_as_it_is(tmp_path):
    """edgec check takes a .tflite with two heads (a build refuses the Keras model):
    model_settings.h declared the first output only, and the lean proof, which compares
    one output, would have vouched for the second unseen."""
    import re

    b = TfliteBuilder()
    x = b.tensor("input", (1, 8), scale=0.05, zero_point=-3)
    heads = []
    for name, units in (("cls", 3), ("box", 4)):
        w = b.constant(f"{name}/weights", np.ones((units, 8), np.int8), scale=0.01)
        bias = b.constant(f"{name}/bias", np.zeros(units, np.int32), scale=0.0005)
        y = b.tensor(f"{name}/out", (1, units), scale=0.25)
        b.op("FULLY_CONNECTED", [x, w, bias], [y], options=schema.FullyConnectedOptionsT())
        heads.append(y)
    path = tmp_path / "heads.tflite"
    path.write_bytes(b.build(inputs=[x], outputs=heads))
    report = check(path, target="cortex-m4", artifacts=tmp_path / "fw")
    settings = (tmp_path / "fw" / "model_settings.h").read_text()
    assert re.search(r"#define HEADS_OUTPUT_SHAPE \{1, 3\}", settings)
    assert re.search(r"#define HEADS_OUTPUT1_SHAPE \{1, 4\}", settings)
    assert "#define HEADS_OUTPUT_COUNT 2" in settings and "INPUT_COUNT" not in settings
    assert report.lean.bytes_after == report.lean.bytes_before == path.stat().st_size
    why = report.lean.check.detail
    assert "compares one output; the model has 1 input(s) and 2 output(s)" in why
    assert (tmp_path / "fw" / "model.tflite").read_bytes() == path.read_bytes()


def _softmax(scale: float) -> bytes:
    b = TfliteBuilder()
    x = b.tensor("logits", (1, 4), "int8", scale=scale)
    y = b.tensor("probs", (1, 4), "int8", scale=1 / 256, zero_point=-128)
    options = schema.SoftmaxOptionsT()
    options.beta = 1.0
    b.op("SOFTMAX", [x], [y], options=options)
    return b.build(inputs=[x], outputs=[y])


def _binary(op: str, scale: float, out_scale: float | None) -> bytes:
    b = TfliteBuilder()
    x1, x2 = (b.tensor(n, (1, 4), "int8", scale=scale) for n in ("a", "b"))
    y = b.tensor("y", (1, 4), "bool" if out_scale is None else "int8", scale=out_scale)
    b.op(op, [x1, x2], [y])
    return b.build(inputs=[x1, x2], outputs=[y])


# Each model makes TFLM's Prepare abort (SIGABRT; a microcontroller stops in
# AllocateTensors), and its neighbour on the other side of the rule runs: the converter
# writes a softmax input scale of 2e-6 / 255 where a random-init MobileNet's logits are
# all but 0 on the calibration data, a comparison's int8 scale above 1 where its input
# spans more than 255.
@pytest.mark.parametrize(
    "aborts, runs, rule",
    [
        (_softmax(7.84e-9), _softmax(2e-8), "beta x input scale x 2^26 is 0.526"),
        (_binary("ADD", 1.0, 1e-6), _binary("ADD", 1.0, 1e-5), "output scale) is 1.91"),
        (_binary("SUB", 1.0, 1e-6), _binary("SUB", 1.0, 1e-5), "output scale) is 1.91"),
        (_binary("GREATER", 1.5, None), _binary("GREATER", 0.9, None), "has scale 1.5"),
    ],
    ids=["softmax", "add", "sub", "greater"],
)
def test_a_model_tflm_aborts_on_names_the_op_and_the_rule(tmp_path, aborts, runs, rule):
    _, checks = _check(tmp_path, aborts, "cortex-m4")
    ram = checks["ram"]
    assert not ram.ok and "crashed (SIGABRT) at every arena size" in ram.detail, ram.detail
    assert "op #0 " in ram.detail and "TFLM aborts in its Prepare" in ram.detail, ram.detail
    assert rule in ram.detail, ram.detail
    _, checks = _check(tmp_path, runs, "cortex-m4")
    assert checks["ram"].ok, checks["ram"].detail
