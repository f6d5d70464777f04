"""Per-channel or per-tensor weights per layer: splicing two quantizations of one model,
and the choice (``--per-channel``), on MLPs built directly (no converter, no TensorFlow).

The two forms of each MLP share their activation quantization, as the converter's two
quantizations of one calibration do; the e2e tests prove that on real conversions.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgec.artifact import Artifact, runtimes
from edgec.artifact.precision import PER_CHANNEL, PER_TENSOR, Incompatible, Variants
from edgec.artifact.repack import unaligned_buffers, unpack
from edgec.artifact.runtimes import _step_down
from edgec.datasets.loading import Dataset
from edgec.pipeline import precision
from edgec.pipeline.convert import Converted
from edgec.pipeline.verify import Scores
from edgec.targets.weights import Expectations, compression_checks
from tests.support.tflite_builder import mlp_int8

# TensorFlow-free, but most tests here start TFLM, LiteRT or Vela processes (arena searches,
# probes): guarded like the unit tier, too slow for it.
pytestmark = pytest.mark.no_tensorflow


@dataclasses.dataclass
class Mlp:
    """A 32 -> 16 (ReLU) -> 4 MLP in both forms, its data, and the float model's outputs.

    The first layer's rows differ 16x in size, so one scale for the whole kernel loses
    the small rows: per-channel weights pay there. The second layer's rows all have the
    same largest magnitude, so both forms quantize it identically.
    """

    per_channel: bytes
    per_tensor: bytes
    data: Dataset
    float_out: np.ndarray


def make_mlp(
    *, share_kernels: bool = False, scale_shift: float = 1.0, second_clusters: int = 0
) -> Mlp:
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(16, 32))
    w1[8:] /= 16
    w2 = rng.normal(size=(4, 16))
    w2 /= np.abs(w2).max(axis=1, keepdims=True)
    if second_clusters:  # clustered per channel: each row its own few values
        centroids = rng.normal(size=(4, second_clusters)) * np.arange(1, 5)[:, None]
        w2 = np.take_along_axis(centroids, rng.integers(0, second_clusters, (4, 16)), axis=1)
    if share_kernels:  # two identical square layers: the converter shares their buffer
        w1, w2 = w1[:, :16], w1[:, :16]
    biases = [np.zeros(len(w1)), np.zeros(len(w2))]
    x = rng.normal(size=(300, w1.shape[1])).astype(np.float32)
    hidden = np.maximum(x @ w1.T, 0)
    y = (hidden @ w2.T).astype(np.float32)
    scales = [np.abs(x).max() / 127, hidden.max() / 127, np.abs(y).max() / 127]

    def build(per_channel: bool, shift: float = 1.0) -> bytes:
        return mlp_int8(
            [w1, w2], biases, per_channel=per_channel, share_kernels=share_kernels,
            activation_scales=[scales[0], scales[1] * shift, scales[2]],
        )  # fmt: skip

    return Mlp(build(True), build(False, scale_shift), Dataset(x, y, "test"), y)


def variants(mlp: Mlp) -> Variants:
    return Variants(
        PER_CHANNEL,
        Artifact.from_bytes(mlp.per_channel),
        {PER_TENSOR: Artifact.from_bytes(mlp.per_tensor)},
    )


def stored(model: Artifact, index: int) -> tuple:
    t = model.model.tensors[index]
    return t.dtype, t.data, t.scales, t.zero_points, t.quantized_dimension


def test_each_layer_is_one_slot_of_its_kernel_and_bias():
    v = variants(make_mlp())
    assert [(s.op, s.op_name, len(s.tensors), s.options) for s in v.slots] == [
        (0, "FULLY_CONNECTED", 2, (PER_CHANNEL, PER_TENSOR)),
        (1, "FULLY_CONNECTED", 2, (PER_CHANNEL, PER_TENSOR)),
    ]


def test_splicing_every_layer_gives_the_per_tensor_model_exactly():
    mlp = make_mlp()
    v = variants(mlp)
    spliced = Artifact.from_bytes(v.splice(v.uniform(PER_TENSOR)))
    reference = Artifact.from_bytes(mlp.per_tensor)
    for t in reference.model.tensors:
        assert stored(spliced, t.index) == stored(reference, t.index), t.name
    assert unaligned_buffers(spliced.data) == []
    x_q = runtimes.quantize(mlp.data.x[:50], reference.model.input_tensor())
    for run in (runtimes.run_litert, lambda m, x: runtimes.run_tflm(m, x, 64 * 1024)):
        assert np.array_equal(run(spliced.data, x_q).raw, run(reference.data, x_q).raw)


def test_splicing_one_layer_changes_only_its_tensors():
    mlp = make_mlp()
    v = variants(mlp)
    first = v.slots[0]
    spliced = Artifact.from_bytes(v.splice({first.op: PER_TENSOR}))
    tensor, channel = Artifact.from_bytes(mlp.per_tensor), v.base
    for t in channel.model.tensors:
        source = tensor if t.index in first.tensors else channel
        assert stored(spliced, t.index) == stored(source, t.index), t.name


def test_a_shared_buffer_stays_with_the_layer_not_spliced():
    """Identical kernels share one buffer: splicing one layer must not rewrite the other's."""
    mlp = make_mlp(share_kernels=True)
    v = variants(mlp)
    tensors = unpack(mlp.per_channel).subgraphs[0].tensors
    assert tensors[1].buffer == tensors[4].buffer  # the two kernels, one buffer
    assert len(v.slots) == 2
    spliced = Artifact.from_bytes(v.splice({v.slots[0].op: PER_TENSOR}))
    second_kernel = max(v.slots[1].tensors, key=lambda i: len(v.base.model.tensors[i].shape))
    assert stored(spliced, second_kernel) == stored(v.base, second_kernel)
    first_kernel = max(v.slots[0].tensors, key=lambda i: len(v.base.model.tensors[i].shape))
    assert stored(spliced, first_kernel) == stored(Artifact.from_bytes(mlp.per_tensor),
                                                   first_kernel)  # fmt: skip


def test_variants_that_differ_in_an_activation_are_refused():
    with pytest.raises(Incompatible, match="activation quantized differently"):
        variants(make_mlp(scale_shift=1.5))


def test_auto_keeps_per_channel_only_where_it_pays():
    mlp = make_mlp()
    choice = precision.choose(
        Converted(mlp.per_channel, mlp.per_tensor), mode="auto", evaluation=mlp.data,
        float_out=mlp.float_out, budget=precision.Budget(), runnable=True,
    )  # fmt: skip
    report = choice.report
    assert report.metric == "rmse" and report.samples == 300 and report.noise > 0
    first, second = report.layers
    assert first.choice == PER_CHANNEL and "more than the noise" in first.reason
    assert second.choice == PER_TENSOR and "within the noise" in second.reason
    pc, pt = first.option(PER_CHANNEL), first.option(PER_TENSOR)
    assert pc.metric < pt.metric - report.noise  # measured: per-channel's error is lower
    assert pc.flash_bytes > pt.flash_bytes and pc.arena_bytes >= pt.arena_bytes
    shipped = Artifact.from_bytes(choice.model).model
    assert [t.per_channel for t in shipped.tensors if t.is_constant] == [True, True, False, False]
    chosen = report.model("chosen")
    assert chosen.flash_bytes == len(choice.model) and chosen.metric == pc.metric


@pytest.mark.parametrize(("mode", "per_tensor"), [("always", 0), ("never", 2)])
def test_always_and_never_force_every_layer_and_still_show_the_trade(mode, per_tensor):
    mlp = make_mlp()
    choice = precision.choose(
        Converted(mlp.per_channel, mlp.per_tensor), mode=mode, evaluation=mlp.data,
        float_out=mlp.float_out, budget=precision.Budget(), runnable=True,
    )  # fmt: skip
    layers = choice.report.layers
    assert sum(layer.choice == PER_TENSOR for layer in layers) == per_tensor
    assert all(len(layer.options) == 2 and layer.reason == f"--per-channel {mode}"
               for layer in layers)  # fmt: skip
    assert (choice.model == mlp.per_channel) == (mode == "always")


def test_a_budget_auto_misses_sends_the_cheapest_loss_per_tensor():
    mlp = make_mlp()
    everywhere = len(variants(mlp).splice(variants(mlp).uniform(PER_TENSOR)))
    choice = precision.choose(
        Converted(mlp.per_channel, mlp.per_tensor), mode="auto", evaluation=mlp.data,
        float_out=mlp.float_out, budget=precision.Budget(flash_bytes=everywhere),
        runnable=True,
    )  # fmt: skip
    assert [layer.choice for layer in choice.report.layers] == [PER_TENSOR, PER_TENSOR]
    assert "to fit the flash budget" in choice.report.layers[0].reason
    assert len(choice.model) <= everywhere


def test_no_per_tensor_twin_ships_the_conversion_and_lists_its_layers():
    mlp = make_mlp()
    choice = precision.choose(
        Converted(mlp.per_channel, None, "RuntimeError: boom"), mode="auto",
        evaluation=mlp.data, float_out=mlp.float_out, budget=precision.Budget(), runnable=True,
    )  # fmt: skip
    assert choice.model == mlp.per_channel and not choice.report.models
    assert [layer.choice for layer in choice.report.layers] == [PER_CHANNEL, PER_CHANNEL]
    assert "boom" in choice.report.note


def test_the_prober_finds_the_arena_the_full_search_finds():
    mlp = make_mlp()
    model = Artifact.from_bytes(mlp.per_channel)
    exact = runtimes.tflm_arena(model.data, model.model)
    job = runtimes.arena_job(model.data, model.model)
    with runtimes.ArenaProber() as prober:
        assert prober.measure(job) == exact
        # from a size that runs, stepping down, and from a wrong guess (ignored)
        assert prober.measure(dataclasses.replace(job, below=exact + 4096, above=0)) == exact
        assert prober.measure(dataclasses.replace(job, below=exact - 512)) == exact
        # a guess is an answer only where it runs and 16 bytes less does not
        for guess in (exact, exact + 64, exact - 64):
            assert prober.measure(dataclasses.replace(job, guesses=(guess,))) == exact


def test_a_known_arena_is_confirmed_not_searched_again():
    model = Artifact.from_bytes(make_mlp().per_channel)
    job = runtimes.arena_job(model.data, model.model)
    exact = runtimes.measure_arena(model.data, job.inputs)
    assert exact.probes > 2
    confirmed = runtimes.measure_arena(model.data, job.inputs, known=exact.bytes)
    assert (confirmed.bytes, confirmed.probes) == (exact.bytes, 2)
    wrong = runtimes.measure_arena(model.data, job.inputs, known=exact.bytes + 16)
    assert wrong.bytes == exact.bytes and wrong.probes > 2  # not confirmed: searched


def test_step_down_finds_the_boundary_from_any_start():
    rng = np.random.default_rng(0)
    for _ in range(500):
        answer = int(rng.integers(1, 400)) * 16
        high = answer + int(rng.integers(0, 300)) * 16
        above = int(rng.choice([0, max(0, answer - 160), min(high, answer + 64)]))
        probes: list[int] = []

        def probe(size: int, answer: int = answer, probes: list[int] = probes) -> bool:
            probes.append(size)
            return size >= answer

        assert _step_down(probe, high, above) == answer
        assert all(p > 0 and p % 16 == 0 for p in probes) and len(probes) < 40


def test_scores_noise_and_gain():
    top1 = Scores("top1", np.array([1.0] * 97 + [0.0] * 3))
    assert top1.value == pytest.approx(97.0) and top1.noise == pytest.approx(1.706, abs=1e-3)
    perfect = Scores("top1", np.ones(300))
    assert perfect.noise == pytest.approx(100 / 300)  # at least one sample's worth
    low, high = Scores("rmse", np.full(10, 1.0)), Scores("rmse", np.full(10, 4.0))
    assert low.gain_over(high) == pytest.approx(1.0) and high.gain_over(low) < 0


def test_auto_keeps_per_channel_where_per_tensor_breaks_the_recipes_clusters():
    """Clusters made per channel stay few per channel in a per-channel kernel only; one
    scale for the kernel counts them together (the clusters check would fail)."""
    mlp = make_mlp(second_clusters=4)
    expected = Expectations(clusters={"dense_1": 4})
    converted = Converted(mlp.per_channel, mlp.per_tensor)
    choice = precision.choose(
        converted, mode="auto", evaluation=mlp.data, float_out=mlp.float_out,
        budget=precision.Budget(), runnable=True, expectations=expected,
    )  # fmt: skip
    second = choice.report.layers[1]
    assert second.choice == PER_CHANNEL and "break" in second.reason, second.reason
    assert second.option(PER_TENSOR) is not None  # measured all the same
    shipped = Artifact.from_bytes(choice.model).model
    assert all(c.ok for c in compression_checks(shipped, expected))
    never = precision.choose(
        converted, mode="never", evaluation=mlp.data, float_out=mlp.float_out,
        budget=precision.Budget(), runnable=True, expectations=expected,
    )  # fmt: skip
    forced = Artifact.from_bytes(never.model).model
    assert not all(c.ok for c in compression_checks(forced, expected))  # what auto avoids
    cheapest = Artifact.from_bytes(precision.cheapest(converted, mode="auto",
                                                      expectations=expected)).model  # fmt: skip
    assert [t.per_channel for t in cheapest.tensors if t.is_constant] == [
        False, False, True, True
    ]  # fmt: skip


def test_a_promise_failing_elsewhere_does_not_hide_the_layer_a_mix_breaks():
    """The clusters check is one check over every clustered layer. Where it failed in the
    per-channel model already (a layer whose kernel the lookup did not find: MobileNetV3's,
    looked up without the conversion's layer names), a mix that broke another layer's
    clusters was "not its doing", and auto shipped every layer per tensor. It is judged
    layer by layer now: the layer it breaks stays per channel."""
    mlp = make_mlp(second_clusters=4)
    expected = Expectations(clusters={"dense_1": 4, "no_such_layer": 4})
    choice = precision.choose(
        Converted(mlp.per_channel, mlp.per_tensor), mode="auto", evaluation=mlp.data,
        float_out=mlp.float_out, budget=precision.Budget(), runnable=True,
        expectations=expected,
    )  # fmt: skip
    second = choice.report.layers[1]
    assert second.choice == PER_CHANNEL and "break" in second.reason, second.reason
    shipped = Artifact.from_bytes(choice.model).model
    (clusters,) = compression_checks(shipped, Expectations(clusters={"dense_1": 4}))
    assert clusters.ok, clusters.detail


def test_a_crashing_probe_costs_no_new_process(tmp_path):
    """tflite-micro SIGSEGVs on this MLP below 464 B of arena ("Failed to allocate tail
    memory", then a null pointer): the probe's forked copy dies, the worker answers."""
    mlp = make_mlp()
    model = Artifact.from_bytes(mlp.per_channel)
    exact = runtimes.tflm_arena(model.data, model.model)
    (tmp_path / "m.tflite").write_bytes(model.data)
    np.savez(tmp_path / "i.npz", i000=np.zeros((1, 32), np.int8))
    worker = runtimes._Worker(None, None, tmp_path / "log", tmp_path)
    target = f"\t{tmp_path / 'm.tflite'}\t{tmp_path / 'i.npz'}"
    try:
        assert worker.probe(exact, target)
        pid = worker._proc.pid if worker._proc is not None else None
        assert not worker.probe(16, target) and worker.crashes == 1
        assert "crashed (signal 11)" in (tmp_path / "log").read_text()
        assert not worker.probe(exact - 16, target) and worker.probe(exact, target)
        assert worker._proc is not None and worker._proc.pid == pid  # the same process
    finally:
        worker.close()


def test_a_layer_the_runtimes_cannot_run_per_tensor_stays_per_channel():
    """A per-tensor variant whose layer TFLM and LiteRT refuse (here a float32 kernel in
    an int8 FULLY_CONNECTED) is reported and never shipped; the build goes on."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    from edgec.artifact.repack import pack_aligned

    mlp = make_mlp()
    twin = unpack(mlp.per_tensor)
    kernel = twin.subgraphs[0].tensors[4]  # the second layer's kernel
    values = np.frombuffer(bytes(twin.buffers[kernel.buffer].data), np.int8).astype(np.float32)
    twin.buffers[kernel.buffer].data = np.frombuffer(values.tobytes(), np.uint8)
    kernel.type, kernel.quantization = schema.TensorType.FLOAT32, None
    broken = pack_aligned(twin, size_hint=len(mlp.per_tensor), what="test")
    choice = precision.choose(
        Converted(mlp.per_channel, broken), mode="auto", evaluation=mlp.data,
        float_out=mlp.float_out, budget=precision.Budget(), runnable=True,
    )  # fmt: skip
    second = choice.report.layers[1]
    assert second.choice == PER_CHANNEL and "does not run with it" in second.reason, second.reason
    assert second.option(PER_TENSOR).arena_bytes is None
    shipped = Artifact.from_bytes(choice.model)
    assert shipped.arena()[0] is not None  # what ships runs


def _classes(mlp: Mlp) -> Dataset:
    """The MLP's samples labelled with the float model's classes: top-1 is the metric."""
    return dataclasses.replace(mlp.data, y=mlp.float_out.argmax(1))


def _bits(mlp: Mlp, bits: precision.Bits, budget: precision.Budget | None = None):
    return precision.choose(
        Converted(mlp.per_channel, mlp.per_tensor), mode="auto", evaluation=_classes(mlp),
        float_out=mlp.float_out, budget=budget or precision.Budget(), runnable=True, bits=bits,
    )  # fmt: skip


def _int4_ops(model: bytes) -> list[int]:
    flat = Artifact.from_bytes(model).model
    return [op.index for op in flat.operators if flat.tensors[op.inputs[1]].dtype == "int4"]


@pytest.mark.parametrize(("max_drop", "int4"), [(2.0, []), (50.0, [0])])
def test_weights_auto_ships_int4_where_the_allowed_drop_takes_its_loss(max_drop, int4):
    """The first layer's int4 filter loses points of top-1 (measured): int4 only where
    --max-accuracy-drop leaves room. The second's saves 32 B of flash and grows the arena
    by its unpack scratch: int8 whatever the drop."""
    mlp = make_mlp()
    choice = _bits(mlp, precision.Bits(max_drop))
    report = choice.report
    first, second = report.layers
    assert report.weights == "auto" and report.allowed_loss is not None
    assert [layer.index for layer in report.layers if layer.weight_bits == 4] == int4
    assert _int4_ops(choice.model) == int4
    loss = first.option("int8").metric - first.option("int4").metric  # top-1 points
    assert loss > report.noise  # int4 costs accuracy here, measured
    assert (loss <= report.allowed_loss) == bool(int4)
    assert ("within" if int4 else "more than") + " the allowed loss" in first.bits_reason
    saved = second.option("int8").flash_bytes - second.option("int4").flash_bytes
    grown = second.option("int4").arena_bytes - second.option("int8").arena_bytes
    assert 0 < saved < grown and "grows the arena" in second.bits_reason
    assert second.weight_bits == 8
    chosen = report.model("chosen")
    assert chosen.flash_bytes == len(choice.model)
    assert all(layer.activations == "int8" for layer in report.layers)


def test_the_int4_mix_runs_bit_identical_to_its_int8_twin():
    from edgec.artifact.int4 import to_int4_verified

    mlp = make_mlp()
    choice = _bits(mlp, precision.Bits(50.0))
    flat = Artifact.from_bytes(choice.model).model
    x_q = runtimes.quantize(mlp.data.x[:100], flat.input_tensor())
    proven = to_int4_verified(choice.model, x_q, only=frozenset(_int4_ops(choice.model)))
    assert proven.check.ok, proven.check.detail
    assert proven.result.chosen and len(proven.result.packed) == 1
    assert proven.metrics()["chosen_per_layer"] == 1 and proven.metrics()["from_converter"] == 0
    assert _int4_ops(proven.result.model) == _int4_ops(choice.model)


def test_most_accurate_keeps_int8_unless_a_budget_is_missed():
    mlp = make_mlp()
    free = _bits(mlp, precision.Bits(50.0, "most_accurate"))
    assert _int4_ops(free.model) == []
    assert all("most_accurate" in layer.bits_reason for layer in free.report.layers[:1])
    smallest = len(_bits(mlp, precision.Bits(50.0)).model)
    tight = _bits(mlp, precision.Bits(2.0, "most_accurate"), precision.Budget(smallest))
    assert _int4_ops(tight.model) and len(tight.model) <= smallest
    for layer in tight.report.layers:  # the least loss first, each step measured
        assert (layer.weight_bits == 4) == ("int4 to fit the flash budget" in layer.bits_reason)


def _outlier_mlp(*, per_channel: bool = True) -> tuple[bytes, bytes, Dataset, np.ndarray]:
    """A 32 -> 16 (ReLU) -> 4 MLP whose first hidden unit is 60x the others (and read
    60x weaker): int8's one hidden scale leaves the other units a few steps, int16 ones
    hundreds. Its int8 form (weights per channel, or per tensor) and its 16x8 form (the
    same calibration, per channel as the converter's), data, outputs."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(16, 32)), rng.normal(size=(4, 16))
    w1[0] *= 60
    w2[:, 0] /= 60
    x = rng.normal(size=(300, 32)).astype(np.float32)
    hidden = np.maximum(x @ w1.T, 0)
    y = (hidden @ w2.T).astype(np.float32)
    scales = [np.abs(x).max() / 127, hidden.max() / 127, np.abs(y).max() / 127]
    forms = [
        mlp_int8([w1, w2], [np.zeros(16), np.zeros(4)], per_channel=channels,
                 activation_scales=scales, activations=width)
        for width, channels in (("int8", per_channel), ("int16", True))
    ]  # fmt: skip
    return forms[0], forms[1], Dataset(x, y, "test"), y


def test_int16_layers_are_spliced_with_quantize_ops_that_tflm_and_litert_run_alike():
    from edgec.artifact.precision import INT16, Int16Layers

    int8, int16, data, _ = _outlier_mlp()
    layers = Int16Layers(Artifact.from_bytes(int8), Artifact.from_bytes(int16))
    assert [s.op for s in layers.slots] == [0, 1]
    x_q = runtimes.quantize(data.x[:100], layers.base.model.input_tensor())
    for chosen, quantize in (((0,), 2), ((1,), 2), ((0, 1), 2)):  # a run shares int16
        mix = Artifact.from_bytes(layers.splice(dict.fromkeys(chosen, INT16)))
        names = [op.name for op in mix.model.operators]
        assert names.count("QUANTIZE") == quantize and names.count("FULLY_CONNECTED") == 2
        moved = layers.op_index(dict.fromkeys(chosen, INT16))
        for op in chosen:  # op_index finds each int16 layer in the mix
            assert mix.model.operators[moved[op]].name == "FULLY_CONNECTED"
            assert mix.model.tensors[mix.model.operators[moved[op]].outputs[0]].dtype == "int16"
        arena, why = mix.arena()
        assert arena is not None, why
        litert = runtimes.run_litert(mix.data, x_q).raw.astype(int)
        tflm = runtimes.run_tflm(mix.data, x_q, arena).raw.astype(int)
        assert np.abs(litert - tflm).max() <= 1


def test_activations_auto_takes_the_int16_run_that_pays_and_reports_it():
    int8, int16, data, y = _outlier_mlp(per_channel=False)
    choice = precision.choose(
        Converted(int8, None, "no per-tensor form", int16=int16), mode="auto",
        evaluation=data, float_out=y, budget=precision.Budget(), runnable=True,
        activations=precision.Bits(2.0, "most_accurate"),
    )  # fmt: skip
    report = choice.report
    assert report.activations_mode == "auto" and "2 of 2 layers int16" in report.activations_note
    shipped = Artifact.from_bytes(choice.model).model
    assert [op.name for op in shipped.operators] == [
        "QUANTIZE", "FULLY_CONNECTED", "FULLY_CONNECTED", "QUANTIZE"
    ]  # fmt: skip
    for layer in report.layers:  # indices of the shipped model, int16 measured alone
        assert shipped.operators[layer.index].name == "FULLY_CONNECTED"
        assert layer.choice == PER_CHANNEL  # the 16x8 form's weights, not the int8 form's
        assert "per channel weights" in layer.activations_reason
        assert layer.activations == "int16" and "without it" in layer.activations_reason
        assert layer.option("int16-activations") and layer.option("int8-activations")
    # the run of int16 layers beats int8 and each layer's int16 alone (its output goes
    # back to int8)
    int8_rmse = report.model("int8-activations").metric
    chosen = report.model("chosen").metric
    assert chosen < int8_rmse / 2
    assert all(chosen < layer.option("int16-activations").metric / 2 for layer in report.layers)


@pytest.mark.parametrize(("max_drop", "int16"), [(50.0, 0), (2.0, 2)])
def test_activations_auto_smallest_takes_int16_only_where_int8_misses_the_drop(max_drop, int16):
    """Targets 10 units of noise off the model: float's RMSE about 10, int8's about 11
    (a rise of about 13%), the int16 run's about 10.02."""
    int8, twin, data, y = _outlier_mlp()
    noisy = dataclasses.replace(data, y=y + 10 * np.random.default_rng(1).normal(size=y.shape))
    choice = precision.choose(
        Converted(int8, None, "no per-tensor form", int16=twin), mode="auto",
        evaluation=noisy, float_out=y, budget=precision.Budget(), runnable=True,
        activations=precision.Bits(max_drop),
    )  # fmt: skip
    layers = choice.report.layers
    assert sum(layer.activations == "int16" for layer in layers) == int16
    why = "int8 is within --max-accuracy-drop" if not int16 else "no longer within"
    assert all(why in layer.activations_reason for layer in layers)
    ops = [op.name for op in Artifact.from_bytes(choice.model).model.operators]
    assert ops.count("QUANTIZE") == (2 if int16 else 0)
