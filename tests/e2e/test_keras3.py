"""Keras 3 models (``import keras``) through ``edgec build`` and ``edgec inspect``.

The models are made as a Keras 3 user makes them: a separate process with a clean
environment (no TF_USE_LEGACY_KERAS), once per test run (``keras3_models.py``); each plain
build once per test run too, shared by the tests that read it.
"""

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.support.cache import shared_folder
from tests.support.cli import Run, assert_clean_failure, run_edgec
from tests.support.keras3 import keras3_models

HERE = Path(__file__).parent

# model file, data file, failed checks that are a true reason for exit 3
PLAIN = {
    # the CNN as .h5 (Keras 3's legacy reader); the same model's .keras file is read by the
    # tests below, and every other .keras model here is a plain build of a .keras file
    "cnn.h5": ("digits.npz", set()),
    "residual.keras": ("digits.npz", set()),
    "residual_export": ("digits.npz", set()),
    "conv1d.keras": ("counts.npz", set()),
    # unrolled LSTM: LiteRT's and TFLM's int8 LOGISTIC differ by a few steps by design and
    # the recurrence adds it up at the output (5 steps measured over 8 time steps, 21 over
    # 16), but every op agrees to one step where its inputs agree: litert_vs_tflm passes.
    # The converter is not deterministic on it: in some runs (2 of 3 here at 16 steps, same
    # model and data) it leaves the cell's gate SPLIT in float between DEQUANTIZE and
    # QUANTIZE, which the dtypes check failed; the build now makes it an int8 SPLIT where
    # proven (artifact/op_forms.py; seen in 2 of 10 builds of these two models, all PASS)
    "lstm.keras": ("waves.npz", set()),
    "ae.keras": ("ae.npz", set()),
    "mobilenet.keras": ("digits16.npz", set()),
    # LiteRT and TFLM differ by up to 7 steps at the unrolled GRU's output (measured, 300
    # samples), from LOGISTIC's by-design rounding added up over time; every op agrees to
    # one step where its inputs agree
    "gru_unrolled.keras": ("waves.npz", set()),
    "kws_bn.keras": ("digits.npz", set()),  # Conv2D(relu) -> BatchNormalization
    # UpSampling2D and LayerNormalization: through tf_keras (no TILE, no float NEG)
    "upsample_layernorm.keras": ("digits.npz", set()),
    # both directions' LSTMs unrolled (it crashed the calibrator, SIGSEGV); the converter
    # leaves a gate SPLIT in float in some runs, as with lstm.keras, made int8 likewise
    "bidirectional.keras": ("waves.npz", set()),
}
REBUILD = {"nested.keras": "flat.npz", "ops.keras": "flat.npz", "custom.keras": "digits.npz",
           "mha.keras": "rows.npz", "odd.keras": "rows.npz"}  # fmt: skip


@pytest.fixture(scope="session")
def keras3_dir(tmp_path_factory) -> Path:
    """The models, made once per test run for every xdist worker (tests/support/keras3.py)."""
    return keras3_models(tmp_path_factory)


def _build(keras3_dir: Path, tmp_path: Path, model: str, *extra: str):
    out = tmp_path / "out"
    data = PLAIN[model][0] if model in PLAIN else REBUILD[model]
    run = run_edgec("build", keras3_dir / model, "--data", keras3_dir / data,
                    "--target", "cortex-m", "--out", out, *extra)  # fmt: skip
    return run, out


@pytest.fixture(scope="session")
def plain_build(tmp_path_factory, keras3_dir) -> Callable[[str], tuple[Run, Path]]:
    """``edgec build MODEL --data DATA --target cortex-m`` of a PLAIN model, built once per
    test run: the tests that assert different things about the same build share it."""

    def build(model: str) -> tuple[Run, Path]:
        def make(folder: Path) -> None:
            run, _ = _build(keras3_dir, folder, model)
            (folder / "run.json").write_text(json.dumps(vars(run)))

        folder = shared_folder(tmp_path_factory, "keras3_plain", make, model=model)
        return Run(**json.loads((folder / "run.json").read_text())), folder / "out"

    return build


@pytest.fixture
def own_tmpdir(tmp_path, monkeypatch) -> Path:
    """A private temporary folder for the build, so leftovers can be checked exactly."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("model", sorted(PLAIN))
def test_plain_build(keras3_dir, plain_build, model):
    run, out = plain_build(model)
    assert run.code in (0, 3), run.err + run.out
    report = json.loads((out / "report.json").read_text())
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert failed <= PLAIN[model][1], (failed, run.out)
    assert (run.code == 3) == bool(failed)
    acc = report["accuracy"]
    if acc["metric"] == "top1" and "accuracy" not in PLAIN[model][1]:
        assert abs(acc["float"] - acc["int8"]) <= 2.0, acc
        assert acc["float"] > 40.0, acc  # above chance (3 or 10 classes): a trained model
    if model == "ae.keras":  # x-only data, output shape = input shape: RMSE against x
        assert acc["metric"] == "rmse" and acc["detail"]["output_cosine"] > 0.98, acc
    if model != "residual_export":  # a SavedModel without Keras layers keeps tensor names
        _assert_named_as_summary(keras3_dir, model, report)
    if model == "upsample_layernorm.keras":  # TFLM has RESIZE_NEAREST_NEIGHBOR, not TILE
        assert "RESIZE_NEAREST_NEIGHBOR" in report["model"]["ops"], report["model"]["ops"]
    if model == "mobilenet.keras":  # its ZeroPadding2D's PAD is fused into the depthwise conv
        rows = [(row["op"], row["name"]) for row in report["layers"]]
        assert not [r for r in rows if r[0] != "PAD" and r[1].startswith("zero_padding")], rows
        # the keras.ops node "* (1.0 / 6.0)" named as the summary names it, not by its scope
        assert ("MUL", "multiply") in rows and "HARD_SWISH" in report["model"]["ops"], rows


# layers QAT's exact rewrite adds (qat_rewrite: a 1-D layer as its 2-D form), named after
# the user's layer they come from
QAT_HELPERS = ("to_2d", "to_1d", "causal_pad", "depthwise")


def _assert_named_as_summary(keras3_dir: Path, model: str, report: dict) -> None:
    """Every per-layer row names a layer of the model as its model.summary() does."""
    names = json.loads((keras3_dir / "summary_names.json").read_text())[model]
    helpers = {f"{name}_{role}" for name in names for role in QAT_HELPERS}
    rows = [(row["op"], row["name"]) for row in report["layers"]]
    assert all(name in names or name in helpers for _, name in rows), (rows, names)


def test_bn_after_relu_is_folded_and_compared_layer_by_layer(keras3_dir, plain_build):
    """Conv2D(relu) -> BN in a Keras 3 model: the plain build folds the BNs that the next
    layer takes in exactly (through its proven tf_keras twin) and measures the one kept.
    Each op's error is measured against its own layer: with the layers guessed from the
    scopes (conv2d_1_2 for layer conv2d_1) the depthwise conv was compared with another
    layer's output, 15 steps off."""
    run, out = plain_build("kws_bn.keras")
    assert run.code == 0, run.err + run.out
    report = json.loads((out / "report.json").read_text())
    # input, conv, bn, depthwise, bn, conv 1x1, bn, flatten, dense (Keras 3 numbers the
    # names per session: this model's first BN is not "batch_normalization")
    _, conv, bn, depthwise, _, pointwise, _, flatten, dense = json.loads(
        (keras3_dir / "summary_names.json").read_text()
    )["kws_bn.keras"]
    stages = {s["name"]: s["metrics"] for s in report["stages"]}
    assert len(stages["fold_batch_norms"]["rewrites"]) == 2
    assert "pads its input" in stages["fold_batch_norms"]["kept_layers"][bn]
    assert stages["batch_norm_cost"]["arena_bytes_with_ops"] == report["memory"]["arena_bytes"]
    assert report["model"]["ops"].count("MUL") == 1, report["model"]["ops"]
    rows = [(row["op"], row["name"]) for row in report["layers"]]
    assert rows == [("CONV_2D", conv), ("MUL", bn), ("ADD", bn),
                    ("DEPTHWISE_CONV_2D", depthwise), ("CONV_2D", pointwise),
                    ("RESHAPE", flatten), ("FULLY_CONNECTED", dense)], rows  # fmt: skip
    steps = [row["error_steps"] for row in report["layers"] if row["error_steps"] is not None]
    assert len(steps) >= 5 and max(steps) < 3, report["layers"]


def test_recurrent_model_is_rebuilt_and_proven(plain_build):
    """A Keras 3 LSTM crashes TF's calibrator; its proven tf_keras rebuild converts.

    The LSTM is converted unrolled (the fused UNIDIRECTIONAL_SEQUENCE_LSTM gets no
    calibrated gate scales, tensorflow #73369): builtin int8 ops only.
    """
    _, out = plain_build("lstm.keras")
    report = json.loads((out / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["name"] == "translate_keras3")
    assert stage["metrics"]["max_abs_diff"] <= 1e-5
    assert stage["metrics"]["keras_version"].startswith("3.")
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in report["model"]["ops"]
    assert {"LOGISTIC", "TANH", "FULLY_CONNECTED"} <= set(report["model"]["ops"])
    assert report["data"]["labels"] == "classes" and report["accuracy"]["int8"] > 80, report


@pytest.mark.parametrize(
    "layer",
    ["LSTM", "GRU", "Embedding", "UpSampling2D", "LayerNormalization", "UnitNormalization",
     "Bidirectional"],
)  # fmt: skip
def test_each_layer_whose_keras3_conversion_tflm_cannot_run_goes_through_tf_keras(layer):
    """One model per layer type (upsample_layernorm.keras's build shows where it leads)."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.convert import is_keras3, needs_tf_keras

    made = {
        "Embedding": lambda: keras.layers.Embedding(10, 2),
        "UpSampling2D": lambda: keras.layers.UpSampling2D(),
        "Bidirectional": lambda: keras.layers.Bidirectional(keras.layers.LSTM(2)),
    }.get(layer, lambda: getattr(keras.layers, layer)(2))
    shape, dtype = {"Embedding": ((4,), "int32"), "UpSampling2D": ((2, 2, 1), "float32")}.get(
        layer, ((4, 2), "float32")
    )
    model = keras.Sequential([keras.Input(shape, dtype=dtype), made()])
    plain = keras.Sequential([keras.Input((4, 2)), keras.layers.Dense(2)])
    assert is_keras3(model) and needs_tf_keras(model) and not needs_tf_keras(plain)


@pytest.mark.parametrize("wrapper", ["TimeDistributed", "Bidirectional"])
def test_a_wrapped_layer_is_rebuilt_without_the_keys_tf_keras_rejects(wrapper):
    """Keras 3's Dense config has ``quantization_config``, which tf_keras' Dense rejects:
    inside a TimeDistributed the rebuild failed ("Keyword argument not understood")."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.keras3 import translate

    inner = keras.layers.Dense(3) if wrapper == "TimeDistributed" else keras.layers.LSTM(3)
    model = keras.Sequential([keras.Input((4, 2)), getattr(keras.layers, wrapper)(inner)])
    x = np.random.default_rng(0).normal(size=(8, 4, 2)).astype(np.float32)
    translation = translate(model, x)
    assert type(translation.model.layers[-1]).__name__ == wrapper
    assert translation.max_abs_diff <= 1e-5


def test_multi_head_attention_is_rebuilt_from_its_build_shapes():
    """tf_keras' MultiHeadAttention.from_config reads the input shapes Keras 2 saved in the
    config; Keras 3 keeps them in build_config. The rebuild failed (KeyError 'query_shape'):
    a transformer block's build went around tf_keras (its LayerNormalization stayed float
    for cortex-m, no recipe could run). Self-attention, and a key of its own shape."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.keras3 import translate

    x = keras.Input((6, 8))
    value, key = keras.layers.Dense(4)(x), keras.layers.Dense(3)(x)
    attended = keras.layers.MultiHeadAttention(2, 4)(x, x)  # self-attention
    crossed = keras.layers.MultiHeadAttention(2, 3)(x, value, key)
    model = keras.Model(x, keras.layers.Add()([attended, crossed]))
    samples = np.random.default_rng(0).normal(size=(8, 6, 8)).astype(np.float32)
    translation = translate(model, samples)
    kinds = [type(layer).__name__ for layer in translation.model.layers]
    assert kinds.count("MultiHeadAttention") == 2
    assert translation.max_abs_diff <= 1e-5


def test_a_keras3_mixed_precision_model_computes_in_float32(tmp_path):
    """Keras 3's mixed_float16 layers (tests/component/test_model_loading.py: tf_keras',
    which then convert to int8): set to float32 through Keras 3's own dtype_policy setter."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.model_io import load_keras_model

    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, name="conv", dtype="mixed_float16")(inputs)
    h = keras.layers.Dense(3, name="dense", dtype="mixed_float16")(keras.layers.Flatten()(h))
    keras.Model(inputs, h).save(tmp_path / "m.keras")
    told = []
    model = load_keras_model(tmp_path / "m.keras", on_float32=lambda *a: told.append(a))
    assert told == [("mixed_float16", ["conv", "dense"])], told
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    assert np.asarray(model(x)).dtype == np.float32


def test_a_keras3_model_with_open_time_steps_is_built_at_the_data_s_shape(tmp_path):
    """A keyword spotter over any number of frames, ``Input((None, 8))``: refused before
    ("unknown dimensions"); the build takes the data's frames and says so."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    inputs = keras.Input((None, 8), name="frames")
    h = keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(4, 3, activation="relu")(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h)).save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.random((40, 12, 8), dtype=np.float32),
             y=rng.integers(0, 3, 40))  # fmt: skip
    out = tmp_path / "out"
    run = run_edgec("build", tmp_path / "m.keras", "--data", tmp_path / "d.npz",
                    "--target", "cortex-m", "--out", out)  # fmt: skip
    assert run.code in (0, 3), run.err + run.out  # untrained: its accuracy may fail
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["input_shape"] == [1, 12, 8]
    stage = next(s for s in report["stages"] if s["name"] == "load_model")
    assert stage["metrics"]["input_shape_from_data"] == [1, 12, 8]
    assert "the model's input [None, None, 8] leaves dimensions open: built at [1, 12, 8]" in (
        " ".join(report["data"]["warnings"])
    )
    assert {c["name"] for c in report["checks"] if not c["ok"]} <= {"accuracy"}


def test_keys_keras3_renamed_or_tf_keras_takes_through_kwargs_are_kept():
    """Keras 3's LeakyReLU calls its slope ``negative_slope`` (tf_keras: ``alpha``), and
    tf_keras' GlobalAveragePooling1D takes ``keepdims`` through **kwargs, outside its
    signature: both keys were dropped as unknown, and the rebuild took the defaults
    (slope 0.3, keepdims False), failing its proof ("gives different outputs")."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.keras3 import translate

    model = keras.Sequential([
        keras.Input((6, 2)),
        keras.layers.Conv1D(4, 3),
        keras.layers.LeakyReLU(negative_slope=0.05),
        keras.layers.GlobalAveragePooling1D(keepdims=True),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])  # fmt: skip
    x = np.random.default_rng(0).normal(size=(32, 6, 2)).astype(np.float32)
    translation = translate(model, x)
    assert translation.max_abs_diff <= 1e-6
    leaky, pooled = translation.model.layers[1:3]
    assert np.isclose(leaky.alpha, 0.05) and pooled.keepdims


def test_a_rebuild_that_differs_names_the_first_layer_that_differs():
    """The error named the model's last layer, wherever the difference began."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline import keras3

    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(4, name="first"),
        keras.layers.LeakyReLU(negative_slope=0.05, name="slope"),
        keras.layers.Dense(3, name="last"),
    ])  # fmt: skip
    x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
    # the rebuild of a Keras 3 key tf_keras reads otherwise (as negative_slope once was)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras3, "_RENAMED", {})
        with pytest.raises(keras3.TranslationError, match="layer 'slope' gives different"):
            keras3.translate(model, x)


def test_keras3_s_hard_activations_and_arithmetic_are_rebuilt_equal():
    """Keras 3's hard_sigmoid is relu6(x + 3) / 6, tf_keras' another function of that name
    (the rebuild refused it), and tf_keras has no hard_silu (alias hard_swish: "cannot be
    rebuilt"); keras.ops arithmetic (MobileNetV3's ``ReLU(6.0)(x + 3.0) * (1.0 / 6.0)``)
    and activations (``keras.ops.relu(x)``) were "a keras.ops node, which has no tf_keras
    layer". Every recipe on a MobileNetV3 stopped there. Each is now rebuilt, proven equal
    where the functions bend (|x| <= 4)."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.keras3 import translate

    inputs = keras.Input((6,))
    gate = keras.layers.Dense(6, activation="hard_sigmoid", name="gate")(inputs)
    swish = keras.layers.Activation("hard_silu")(keras.layers.Activation("hard_swish")(inputs))
    ops = keras.layers.ReLU(6.0)(inputs + 3.0) * (1.0 / 6.0) - gate / 2.0
    unary = [f(inputs) for f in (keras.ops.relu, keras.ops.relu6, keras.ops.sigmoid,
                                 keras.ops.tanh, keras.ops.silu, keras.ops.hard_sigmoid,
                                 keras.ops.hard_silu)]  # fmt: skip
    model = keras.Model(
        inputs, keras.layers.Concatenate()([gate, swish, ops, 1.0 - inputs, *unary])
    )
    x = np.random.default_rng(0).uniform(-5, 5, (256, 6)).astype(np.float32)
    translation = translate(model, x)
    assert translation.max_abs_diff <= 1e-6
    kinds = [type(layer).__name__ for layer in translation.model.layers]
    assert kinds.count("TFOpLambda") == 5, kinds  # + 3, * 1/6, / 2, the -, 1 - x
    functions = {getattr(layer.activation, "__name__", "") for layer in translation.model.layers
                 if hasattr(layer, "activation")}  # fmt: skip
    assert {
        "keras3_hard_sigmoid",
        "hard_silu",
        "relu",
        "relu6",
        "sigmoid",
        "tanh",
        "swish",
    } <= functions, functions  # fmt: skip (tf_keras' silu is named swish)


def test_keras3_ops_that_move_values_are_rebuilt_and_taken_by_qat():
    """``keras.ops.transpose``, ``expand_dims``, ``squeeze``, ``reshape`` and slicing in a
    Keras 3 model were "a keras.ops node other than arithmetic and activations": every
    recipe stopped at the rebuild. They are rebuilt as TensorFlow's ops on tf_keras
    tensors, proven equal, which QAT's rewrite makes Permute, Reshape and Cropping layers."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.keras3 import translate
    from edgec.stages.structure.qat_rewrite import prepare_for_qat

    ops = keras.ops
    inputs = keras.Input((8, 6))
    h = ops.transpose(keras.layers.Dense(4)(inputs), (0, 2, 1))[:, 1:]  # (3, 8)
    h = ops.squeeze(ops.expand_dims(h, 2), axis=2)
    image = ops.expand_dims(h, -1)[:, 1:, 2:-1]  # (2, 5, 1)
    model = keras.Model(inputs, keras.layers.Dense(3)(ops.reshape(image, (-1, 10))))
    x = np.random.default_rng(0).normal(size=(32, 8, 6)).astype(np.float32)
    translation = translate(model, x)
    assert translation.max_abs_diff == 0.0
    prepared = prepare_for_qat(translation.model, x)
    kinds = [type(layer).__name__ for layer in prepared.model.layers]
    assert "TFOpLambda" not in kinds and "SlicingOpLambda" not in kinds, kinds
    assert {"Permute", "Reshape", "Cropping1D", "Cropping2D"} <= set(kinds), kinds
    np.testing.assert_array_equal(prepared.model(x).numpy(), np.asarray(model(x)))


def test_keras3_ops_means_concatenations_and_activations_with_parameters_are_rebuilt():
    """``keras.ops.mean``, ``concatenate``, ``softmax``, ``gelu(approximate=False)``, ``elu``,
    ``leaky_relu``, ``softplus``, ``selu`` and ``softsign`` nodes stopped every recipe at the
    rebuild ("a keras.ops node ... which has no tf_keras layer"). They are rebuilt as tf_keras
    layers (the mean as TensorFlow's, which QAT makes a GlobalAveragePooling2D), proven
    equal. Keras 3's ops.gelu defaults to the tanh form, which tf_keras' gelu is not: that
    one stays refused."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.keras3 import TranslationError, translate
    from edgec.stages.structure.qat_rewrite import prepare_for_qat

    ops = keras.ops
    inputs = keras.Input((8, 8, 2))
    joined = ops.concatenate([keras.layers.Conv2D(4, 3, padding="same")(inputs), inputs], -1)
    h = keras.layers.Dense(6)(ops.mean(joined, axis=(1, 2)))
    activated = [ops.softmax(h, axis=-1), ops.gelu(h, approximate=False), ops.elu(h),
                 ops.leaky_relu(h, negative_slope=0.1), ops.softplus(h), ops.selu(h),
                 ops.softsign(h)]  # fmt: skip
    model = keras.Model(inputs, ops.concatenate(activated, axis=-1))
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 2)).astype(np.float32)
    translation = translate(model, x)
    assert translation.max_abs_diff <= 1e-6
    kinds = [type(layer).__name__ for layer in prepare_for_qat(translation.model, x).model.layers]
    assert "TFOpLambda" not in kinds and "GlobalAveragePooling2D" in kinds, kinds
    assert kinds.count("Activation") == 6 and "LeakyReLU" in kinds, kinds
    tanh_gelu = keras.Model(inputs, ops.gelu(keras.layers.Dense(3)(inputs)))
    with pytest.raises(TranslationError, match="keras.ops node"):
        translate(tanh_gelu, x)


NEWER_ACTIVATIONS = ("celu", "hard_shrink", "hard_tanh", "log_sigmoid", "soft_shrink",
                     "sparse_plus", "sparse_sigmoid", "squareplus", "tanh_shrink")  # fmt: skip


def test_the_activations_keras3_added_are_rebuilt_equal():
    """tf_keras has none of these Keras 3 activations: every recipe of a model that used one
    stopped at the rebuild ("Unknown activation function 'celu' cannot be deserialized").
    Each is rebuilt as Keras 3's TensorFlow code, as a layer's activation and as an
    Activation layer, proven equal across the ranges where they bend."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.keras3 import translate

    inputs = keras.Input((6,))
    outputs = [keras.layers.Dense(6, activation=name, name=name)(inputs)
               for name in NEWER_ACTIVATIONS]  # fmt: skip
    outputs += [keras.layers.Activation(name)(inputs) for name in NEWER_ACTIVATIONS]
    model = keras.Model(inputs, keras.layers.Concatenate()(outputs))
    x = np.random.default_rng(0).uniform(-3, 3, (256, 6)).astype(np.float32)
    translation = translate(model, x)
    assert translation.max_abs_diff <= 1e-6
    functions = [getattr(layer.activation, "__name__", "") for layer in translation.model.layers
                 if hasattr(layer, "activation")]  # fmt: skip
    assert sorted(functions) == sorted(NEWER_ACTIVATIONS * 2), functions


@pytest.mark.parametrize("api", ["Sequential", "functional"])
def test_keras3_augmentation_layers_tf_keras_lacks_are_left_out_of_the_rebuild(api):
    """RandomGaussianBlur, RandomErasing, RandomInvert, ... exist in Keras 3 only: a recipe
    failed with "is of type RandomGaussianBlur, which tf_keras does not know", and a plain
    build fell back to converting the Keras 3 model as it is. At inference each is the
    identity: the rebuild leaves them out, proven equal, and says which."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    from edgec.pipeline.keras3 import translate

    keras.utils.set_random_seed(0)
    augment = [
        keras.layers.RandomGaussianBlur(name="blur"),
        keras.layers.RandomErasing(name="erase"),
        keras.layers.RandomInvert(value_range=(0, 1), name="invert"),
        keras.layers.RandomFlip(name="flip"),
        # Keras 3's own container for them (tf_keras has none)
        keras.layers.Pipeline(
            [keras.layers.RandomFlip(), keras.layers.RandomHue(0.1, (0, 1))], name="pipe"
        ),
    ]
    head = [keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(3)]
    if api == "Sequential":
        model = keras.Sequential([keras.Input((6, 6, 3)), *augment, *head])
    else:
        inputs = h = keras.Input((6, 6, 3))
        for layer in (*augment, *head):
            h = layer(h)
        model = keras.Model(inputs, h)
    x = np.random.default_rng(0).uniform(size=(8, 6, 6, 3)).astype(np.float32)
    translation = translate(model, x)
    assert translation.left_out == (
        "blur (RandomGaussianBlur)", "erase (RandomErasing)", "invert (RandomInvert)",
        "pipe (Pipeline)",
    )  # fmt: skip
    kinds = [type(layer).__name__ for layer in translation.model.layers]
    assert kinds[-4:] == ["RandomFlip", "Conv2D", "Flatten", "Dense"]  # tf_keras has it
    assert translation.max_abs_diff <= 1e-5


def test_token_ids_into_an_embedding_stay_whole(keras3_dir, tmp_path):
    """An int64 input read by an Embedding converts as int32 indices into one GATHER, and
    QAT trains the rest of the model.

    Traced as float32 like other inputs, the ids were quantized to int8 and truncated back
    (DEQUANTIZE, CAST: float tensors, which failed the MCU's dtypes check), Keras 3's
    negative-index SELECT had no TFLM kernel, and the phone variants' evaluation stopped
    with an internal error; kept int64, TFLM's GATHER refused the positions' type.
    """
    from edgec.artifact.tflite_model import TfliteModel

    out = tmp_path / "out"
    run = run_edgec("build", keras3_dir / "tokens.keras", "--data", keras3_dir / "tokens.npz",
                    "--target", "cortex-m,android-arm64", "--phone-variants", "float16",
                    "--qat", "--epochs", "1", "--out", out)  # fmt: skip
    assert run.code == 0, run.err + run.out
    report = json.loads((out / "report.json").read_text())
    assert not {"CAST", "DEQUANTIZE", "QUANTIZE", "SELECT"} & set(report["model"]["ops"])
    assert "GATHER" in report["model"]["ops"]
    stage = next(s for s in report["stages"] if s["name"] == "input_dtype")
    assert stage["metrics"]["input_dtype"] == "int64" and stage["metrics"]["as_dtype"] == "int32"
    # QAT leaves the Embedding float (TF-MOT has none for it; its QuantizeLayer would take
    # the int32 ids): "has no default 8-bit QAT configuration" refused every QAT recipe
    qat = next(s for s in report["stages"] if s["name"] == "qat")
    assert list(qat["metrics"]["skipped_layers"]) == ["embedding"], qat["metrics"]
    model = TfliteModel.from_bytes((out / "model.tflite").read_bytes())
    tensor = model.input_tensor()
    assert tensor.dtype == "int32" and not tensor.scales
    acc = report["accuracy"]
    assert acc["float"] > 60 and abs(acc["float"] - acc["int8"]) <= 2.0, acc
    phone = next(t for t in report["targets"] if t["target"] == "android-arm64")
    assert [c["ok"] for c in phone["checks"] if c["name"] == "variant_float16"] == [True]
    settings = (out / "model_settings.h").read_text()
    assert "#define TOKENS_INPUT_C_TYPE int32_t" in settings
    assert "the input takes whole numbers (indices) as they are" in settings


@pytest.mark.parametrize(
    "model",
    [
        # Functional: Conv2D without bias -> BN -> relu6 in its three forms (ReLU(6.0),
        # Activation("relu6"), Conv2D(activation="relu6")), ZeroPadding2D, stride-2
        # DepthwiseConv2D, Add, GlobalAveragePooling2D, Dropout, Dense softmax. Neither the
        # CNN (its Sequential, Dropout and softmax are in the models here; the rebuild starts
        # from the loaded model, the same for .keras and .h5, and the .h5's plain build
        # rebuilds it for the per-layer error) nor the residual net (its relu6 forms and Add
        # are in this model): each was a build of its own
        "mobilenet.keras",
        "conv1d.keras",  # Sequential: Conv1D, SeparableConv1D, Rescaling
        "lstm.keras",  # LSTM QAT
        "ae.keras",  # Dense+BN, x-only data
        "mha.keras",  # MultiHeadAttention: left float by QAT (TF-MOT has none for it)
        # not kws_bn.keras (BN after ReLU: folded into the next layer, or kept as MUL/ADD):
        # its layers' rebuild is proven by its plain build (fold_batch_norms rebuilds it)
        # and the other models here, and prune-qat on the same model is
        # test_batch_norm_after_activation's test_prune_qat_keeps_the_bn_it_cannot_fold
    ],
)
def test_recipe_prune_qat(keras3_dir, tmp_path, model):
    # prune-qat's stages, one epoch each: the rebuild and the recipe's path are under test
    run, out = _build(keras3_dir, tmp_path, model, "--prune", "0.75", "--qat", "--epochs", "1")
    assert run.code in (0, 3), run.err + run.out
    report = json.loads((out / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["name"] == "translate_keras3")
    assert stage["metrics"]["max_abs_diff"] <= 1e-5 * 10  # outputs up to ~10: relative 1e-5
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    acc = report["accuracy"]
    if "accuracy" in failed and acc["metric"] == "top1":
        # A true reason when the recipe itself lost it: the compressed float model is as
        # far below the input model, and int8's outputs match its. Not "int8 within 2
        # points of float": one epoch at 75% leaves MobileNet near chance (~15%), where
        # near-equal scores let top-1 move either way; that held by the seed's luck.
        assert acc["detail"]["input_model_float"] - acc["float"] > 2.0, acc
        assert acc["detail"]["output_cosine"] >= 0.98, acc
        failed -= {"accuracy"}
    if "accuracy" in failed and acc["metric"] == "rmse":
        # the same for an error (the autoencoder): the recipe itself raised it above the
        # allowed 2% of the input model's, and int8 stays close to the compressed float
        assert acc["float"] > 1.02 * acc["detail"]["input_model_float"], acc
        assert acc["int8"] <= 1.05 * acc["float"], acc
        failed -= {"accuracy"}
    assert failed <= (PLAIN[model][1] if model in PLAIN else set()), (failed, run.out)
    _assert_named_as_summary(keras3_dir, model, report)
    if model == "mha.keras":  # "has no default 8-bit QAT configuration" refused it
        qat = next(s for s in report["stages"] if s["name"] == "qat")
        assert list(qat["metrics"]["skipped_layers"]) == ["mha"], qat["metrics"]
        # rebuilt as tf_keras (KeyError 'query_shape' before): its per-layer error measured
        assert any(r["name"] == "mha" and r["error_rmse"] is not None for r in report["layers"])
        # the gelu: an int8 GELU, which TFLM has no kernel for (ops, ram and litert_vs_tflm
        # failed), looked up in a table of its 256 values instead (artifact/op_forms.py)
        convert = next(s for s in report["stages"] if s["name"] == "convert")
        assert any("GELU" in r and "int8 table" in r for r in convert["metrics"]["op_rewrites"]), (
            convert["metrics"]
        )
        assert "GELU" not in report["model"]["ops"], report["model"]["ops"]
    if model == "mobilenet.keras":
        # MobileNetV3's parts (every recipe stopped at the rebuild, then at QAT: "keras.ops
        # node", hard_silu unknown, Multiply and the padded input Rescaling refused): the
        # hard_swish ships as one HARD_SWISH, the hard_sigmoid's three layers trained as the
        # activation of the 1x1 conv before them, the Rescaling as int8 MUL and ADD (the
        # dtypes check passed above)
        qat = next(s for s in report["stages"] if s["name"] == "qat")["metrics"]
        assert any("hard_sigmoid (3 layers) taken into" in r for r in qat["rewrites"]), qat
        assert "kept as int8 MUL/ADD ops at the input" in " ".join(qat["kept_layers"].values())
        assert "HARD_SWISH" in report["model"]["ops"]


def test_recipe_on_savedmodel_without_keras_metadata(keras3_dir, tmp_path):
    run, out = _build(keras3_dir, tmp_path, "residual_export", "--recipe", "prune-qat")
    assert_clean_failure(run, "without Keras metadata", "plain build")
    assert not out.exists()


@pytest.mark.parametrize(
    "model,data,needle",
    [
        ("gru.keras", "waves.npz", "is a GRU"),
        ("bigru.keras", "waves.npz", "is a GRU"),
        ("cnn.keras", "huge.npz", "beyond what int8"),
    ],
)
def test_unconvertible_input_fails_cleanly(keras3_dir, tmp_path, own_tmpdir, model, data, needle):
    np.savez(tmp_path / "huge.npz", x=np.full((40, 8, 8, 1), 3e38, np.float32))
    out = tmp_path / "out"
    data_path = keras3_dir / data if data != "huge.npz" else tmp_path / data
    run = run_edgec("build", keras3_dir / model, "--data", data_path,
                    "--target", "cortex-m", "--out", out)  # fmt: skip
    assert_clean_failure(run, needle)
    assert not out.exists() and not list(own_tmpdir.iterdir())


def test_a_built_in_layer_keras_cannot_rebuild_is_named_not_called_custom(keras3_dir, tmp_path):
    """Keras 3.15 saves RandomShear's x_factor as [-0.1, 0.1] and its constructor then
    refuses -0.1: keras.saving.load_model fails on such a file. edgec said "the model uses
    custom layers: give their code with --custom-objects" for a model with none. The same
    failure is made here on any Keras version: a saved Dense config its constructor refuses."""
    import json
    import zipfile

    bad = tmp_path / "units.keras"
    with zipfile.ZipFile(keras3_dir / "cnn.keras") as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                dense = next(x for x in config["config"]["layers"] if x["class_name"] == "Dense")
                dense["config"]["units"] = -3
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    out = tmp_path / "out"
    run = run_edgec("build", bad, "--data", keras3_dir / "digits.npz", "--target", "cortex-m",
                    "--out", out)  # fmt: skip
    assert_clean_failure(run, "Keras cannot rebuild its built-in Dense layer", "units=-3")
    assert "custom" not in run.err and not out.exists()


def test_converter_crash_is_one_line(keras3_dir, own_tmpdir, monkeypatch):
    """With the GRU check off, TF's calibrator really segfaults: only the child dies."""
    from edgec.errors import ConversionError
    from edgec.pipeline import convert
    from edgec.pipeline.model_io import load_keras_model

    model = load_keras_model(keras3_dir / "gru.keras")
    monkeypatch.setattr(convert, "check_recurrent", lambda model: None)
    x = np.load(keras3_dir / "waves.npz")["x"][:8]
    with pytest.raises(ConversionError, match=r"crashed \(signal SIGSEGV\) while calibrating"):
        convert.convert_int8(model, x)
    # Tracing in this process writes autograph's modules to the temporary folder once per
    # process (the first test to trace here gets them; builds now trace in their model
    # process); the converter child's files are what must be gone.
    left = [p for p in own_tmpdir.iterdir() if not p.name.startswith("__autograph_generated")]
    assert not left
    digits = np.load(keras3_dir / "digits.npz")["x"][:8]  # the next job gets a new child
    assert convert.convert_int8(load_keras_model(keras3_dir / "cnn.keras"), digits)


def test_translation_is_made_once_per_model_and_data(keras3_dir, monkeypatch):
    """A plain build asks for the proven tf_keras twin twice when a BatchNormalization is
    not folded (fold_batch_norms, then layer_error): the second is the first rebuild,
    not a second rebuild and proof (each predicts with both models)."""
    from edgec.pipeline import keras3
    from edgec.pipeline.model_io import load_keras_model

    rebuilds = []
    rebuild = keras3._rebuild
    monkeypatch.setattr(keras3, "_rebuild", lambda *a: rebuilds.append(1) or rebuild(*a))
    model = load_keras_model(keras3_dir / "residual.keras")
    x = np.load(keras3_dir / "digits.npz")["x"][:40]
    first = keras3.translate(model, x)
    assert keras3.translate(model, x.copy()) is first and len(rebuilds) == 1
    # other data, another model object of the same file: rebuilt and proven again
    assert keras3.translate(model, x[:20]) is not first and len(rebuilds) == 2
    again = load_keras_model(keras3_dir / "residual.keras")
    assert keras3.translate(again, x).max_abs_diff == first.max_abs_diff and len(rebuilds) == 3


@pytest.mark.parametrize("model", ["cnn.keras", "cnn.h5", "residual_export"])
def test_inspect(keras3_dir, model):
    run = run_edgec("inspect", keras3_dir / model, "--format", "json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["layers"]


@pytest.mark.parametrize(
    ("model", "shown", "not_shown"),
    [("tokens.keras", "GATHER", {"SELECT", "CAST"}),
     ("upsample_layernorm.keras", "RESIZE_NEAREST_NEIGHBOR", {"TILE", "NEG"}),
     ("lstm.keras", "FULLY_CONNECTED", {"UNIDIRECTIONAL_SEQUENCE_LSTM", "WHILE"})],
)  # fmt: skip
def test_inspect_shows_the_ops_a_build_converts_to(keras3_dir, model, shown, not_shown):
    """Keras 3 layers a build converts through tf_keras (and an input it retypes): inspect
    showed their Keras 3 ops (SELECT, TILE), which TFLM lacks and the build never ships,
    and an LSTM as the fused op of the tf_keras rebuild, which a build unrolls."""
    run = run_edgec("inspect", keras3_dir / model, "--format", "json")
    assert run.code == 0, run.err
    ops = {layer["op"] for layer in json.loads(run.out)["layers"]}
    assert shown in ops and not ops & not_shown, ops


def test_custom_objects(keras3_dir, tmp_path):
    out = tmp_path / "out"
    args = ["build", keras3_dir / "custom.keras", "--data", keras3_dir / "digits.npz",
            "--target", "cortex-m", "--out", out]  # fmt: skip
    assert_clean_failure(run_edgec(*args), "--custom-objects")
    run = run_edgec(*args, "--custom-objects", HERE / "keras3_custom.py")
    assert run.code == 0, run.err + run.out


@pytest.mark.parametrize(
    "spec,needle",
    [("missing.py", "does not exist"), ("raises.py", "raised ZeroDivisionError"),
     ("no_such_module_xyz", "no module named")],
)  # fmt: skip
def test_bad_custom_objects(keras3_dir, tmp_path, spec, needle):
    (tmp_path / "raises.py").write_text("1 / 0\n")
    target = str(tmp_path / spec) if spec.endswith(".py") else spec
    run = run_edgec("inspect", keras3_dir / "cnn.keras", "--custom-objects", target)
    assert_clean_failure(run, needle)


def test_nested_sequential_is_flattened(keras3_dir, tmp_path):
    run, out = _build(keras3_dir, tmp_path, "nested.keras", "--prune", "0.5", "--epochs", "1")
    assert run.code in (0, 3), run.err + run.out
    report = json.loads((out / "report.json").read_text())
    stage = next(s for s in report["stages"] if s["name"] == "translate_keras3")
    # input, dense, and the inner Sequential's two Dense layers, flattened
    assert stage["metrics"]["layers_rebuilt"] == 4 and stage["metrics"]["max_abs_diff"] <= 1e-5


@pytest.mark.parametrize(
    "model,needles",
    [("ops.keras", ["layer 'cumsum' is a keras.ops node"]),
     ("custom.keras", ["layer 'scale' is of type Scale, which tf_keras does not know"]),
     # tf_keras' from_config raised (MultiHeadAttention's KeyError 'query_shape', before
     # its shapes were given): an internal error, in plain builds too
     ("odd.keras", ["layer 'odd' (Dense) cannot be rebuilt: Error when deserializing"])],
)  # fmt: skip
def test_model_that_cannot_be_rebuilt(keras3_dir, tmp_path, model, needles):
    custom = ["--custom-objects", str(HERE / "keras3_custom.py")]
    run, out = _build(keras3_dir, tmp_path, model, "--prune", "0.5", *custom)
    assert_clean_failure(run, *needles, "a plain build (no recipe) still works")
    assert not out.exists()


def test_a_plain_build_converts_as_it_is_what_tf_keras_cannot_rebuild(keras3_dir, tmp_path):
    """An Embedding sends a Keras 3 model through tf_keras, but its sparsemax Dense cannot
    be rebuilt there: a plain build stopped ("cannot rebuild ... for the recipe ...
    a plain build (no recipe) still works"); it converts the model as it is, says so, and
    its checks judge it (Keras 3's SELECT, which TFLM lacks)."""
    out = tmp_path / "out"
    run = run_edgec("build", keras3_dir / "emb_odd.keras", "--data", keras3_dir / "tokens.npz",
                    "--target", "cortex-m", "--out", out)  # fmt: skip
    assert run.code == 3, run.err + run.out
    report = json.loads((out / "report.json").read_text())
    assert "converted as it is, not through tf_keras: layer 'odd'" in " ".join(
        report["data"]["warnings"]
    )
    ops = next(c for c in report["checks"] if c["name"] == "ops")
    assert not ops["ok"] and "SELECT" in ops["detail"]


def test_a_plain_build_of_a_model_tf_keras_cannot_rebuild_goes_on_without_it(keras3_dir, tmp_path):
    """The per-layer error's tf_keras twin fails to rebuild: the build goes on without it,
    to its checks (sparsemax sorts: TOPK_V2, which TFLM lacks)."""
    run, out = _build(keras3_dir, tmp_path, "odd.keras")
    assert run.code == 3, run.err + run.out
    report = json.loads((out / "report.json").read_text())
    ops = next(c for c in report["checks"] if c["name"] == "ops")
    assert not ops["ok"] and "TOPK_V2" in ops["detail"], ops
    assert report["layers"] and all(row["error_rmse"] is None for row in report["layers"])


def test_the_layers_keras_defines_in_its_applications_load(keras3_dir):
    """keras.applications.ConvNeXtTiny and InceptionResNetV2 were refused: their LayerScale,
    StochasticDepth and CustomScaleLayer are Keras' own classes, in no public namespace."""
    from edgec.pipeline.model_io import load_keras_model

    model = load_keras_model(keras3_dir / "app_layers.keras")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"LayerScale", "StochasticDepth", "CustomScaleLayer"} <= kinds, kinds
