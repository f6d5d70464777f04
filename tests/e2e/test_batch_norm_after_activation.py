"""BatchNormalization after an activation (``Conv2D(activation="relu")`` then BN): folded
into the layer after it where that is exact, kept as int8 MUL/ADD (and its cost measured)
where not, in plain builds and QAT alike; and per-layer rows named as ``model.summary()``
names the layers (tf_keras here; Keras 3 in test_keras3.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.support.cache import shared_folder
from tests.support.cli import run_edgec

FOLDED = ""  # the case's BN is folded; otherwise a fragment of why it is kept


def _randomize_batch_norms(model, *, negative: bool = False, no_shift: bool = False) -> None:
    """Trained-looking BN statistics: scales far from 1, shifts far from 0."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if type(layer).__name__ != "BatchNormalization":
            continue
        channels = int(layer.moving_mean.shape[0])
        gamma = rng.uniform(0.5, 2.0, channels) * (-1.0 if negative else 1.0)
        mean, var = rng.normal(0, 0.5, channels), rng.uniform(0.5, 2.0, channels)
        beta = rng.normal(0, 0.5, channels)
        if no_shift:  # y * s + t with t = 0
            beta = mean * gamma / np.sqrt(var + layer.epsilon)
        layer.set_weights([gamma, beta, mean, var])


def _cases() -> dict[str, tuple[tuple[int, ...], Callable, dict, str]]:
    """name -> (input shape, what follows the BN, BN settings, expectation).

    Each model is input -> Dense/Conv1D/Conv2D(relu) = h -> BatchNormalization = y -> the
    case's ``tail(layers, h, y)``.
    """
    pool_dense = lambda L, h, y: L.Dense(5)(L.Flatten()(L.MaxPooling2D()(y)))  # noqa: E731
    return {
        "conv_valid": ((8, 8, 2), lambda L, h, y: L.Conv2D(6, 3)(y), {}, FOLDED),
        "conv_1x1_same": (
            (8, 8, 2),
            lambda L, h, y: L.Conv2D(6, 1, padding="same")(y),
            {},
            FOLDED,
        ),  # fmt: skip
        # 'same' with kernel 2, stride 2 on 8 columns adds no padding
        "conv_same_no_overhang": (
            (10, 10, 2),
            lambda L, h, y: L.Conv2D(6, 2, strides=2, padding="same")(y),
            {},
            FOLDED,
        ),  # fmt: skip
        "conv_same_pads": (
            (8, 8, 2),
            lambda L, h, y: L.Conv2D(6, 3, padding="same")(y),
            {},
            "pads its input",
        ),  # fmt: skip
        "conv_same_no_shift": (
            (8, 8, 2),
            lambda L, h, y: L.Conv2D(6, 3, padding="same")(y),
            {"no_shift": True},
            FOLDED,
        ),  # fmt: skip
        "depthwise_multiplier_2": (
            (8, 8, 2),
            lambda L, h, y: L.DepthwiseConv2D(3, depth_multiplier=2)(y),
            {},
            FOLDED,
        ),  # fmt: skip
        "maxpool_flatten_dense": ((8, 8, 2), pool_dense, {}, FOLDED),
        "maxpool_negative_scale": (
            (8, 8, 2),
            pool_dense,
            {"negative": True},
            "negative BN scale",
        ),  # fmt: skip
        "dropout_gap_dense": (
            (8, 8, 2),
            lambda L, h, y: L.Dense(5)(L.GlobalAveragePooling2D()(L.Dropout(0.5)(y))),
            {},
            FOLDED,
        ),  # fmt: skip
        "dense": ((12,), lambda L, h, y: L.Dense(5)(y), {}, FOLDED),
        "conv1d_valid": ((16, 2), lambda L, h, y: L.Conv1D(4, 3)(y), {}, FOLDED),
        "residual_add": ((8, 8, 2), lambda L, h, y: L.Add()([h, y]), {}, "other inputs"),
        "model_output": ((8, 8, 2), lambda L, h, y: y, {}, "model output"),
    }


def _case_model(shape: tuple[int, ...], tail: Callable, bn: dict):
    from edgec._tf import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    inp = layers.Input(shape)
    if len(shape) == 1:
        h = layers.Dense(8, activation="relu")(inp)
    else:
        conv = layers.Conv1D if len(shape) == 2 else layers.Conv2D
        h = conv(8, 3, activation="relu")(inp)
    model = keras.Model(inp, tail(layers, h, layers.BatchNormalization()(h)))
    _randomize_batch_norms(model, **bn)
    return model


def _outputs(model, x: np.ndarray) -> np.ndarray:
    """The model's inference outputs: a direct call (predict builds a tf.data pipeline and
    traces a function per model, ~0.15 s each; 39 calls here)."""
    return model(x, training=False).numpy()


@pytest.mark.parametrize("case", sorted(_cases()))
def test_forward_fold_is_exact_or_says_why_not(case):
    """Each fold is proven by the outputs; where none is exact the BN stays, with the reason,
    and QAT's preparation keeps it too (QAT quantizes its output) instead of refusing."""
    from edgec.stages.structure.qat_rewrite import fold_forward_batch_norms, prepare_for_qat

    shape, tail, bn, expected = _cases()[case]
    model = _case_model(shape, tail, bn)
    x = np.random.default_rng(2).normal(size=(32, *shape)).astype(np.float32)
    want = _outputs(model, x)
    for prepare in (fold_forward_batch_norms, prepare_for_qat):
        prepared = prepare(model, x)
        kinds = [type(layer).__name__ for layer in prepared.model.layers]
        got = _outputs(prepared.model, x)
        np.testing.assert_allclose(got, want, atol=1e-5 * max(1.0, float(np.abs(want).max())))
        if expected == FOLDED:
            assert "BatchNormalization" not in kinds, (case, kinds)
            assert any("folded into the input of" in r for r in prepared.rewrites), prepared
            assert not prepared.kept
        else:
            assert "BatchNormalization" in kinds, (case, kinds)
            (why,) = prepared.kept.values()
            assert why.startswith("kept as int8 MUL/ADD ops") and expected in why, why


# ---------------------------------------------------------------------------- builds


@dataclass
class BnModel:
    keras: Path
    data: Path
    layer_names: list[str]  # as model.summary() lists them


@pytest.fixture(scope="session")
def bn_model(tmp_path_factory) -> BnModel:
    """Keyword-spotting-like, on the digits: Conv2D(relu) -> BN, three times; the BN before
    the 3x3 'same' depthwise cannot be folded exactly (its zero padding), the other two
    can (into a 1x1 conv, and through Flatten into the Dense). Trained once per test run
    for every xdist worker."""

    def make(folder: Path) -> None:
        from edgec._tf import keras
        from edgec.pipeline.example import example_data

        train, held_out = example_data()
        layers = keras.layers
        keras.utils.set_random_seed(0)
        bn = lambda: layers.BatchNormalization(momentum=0.9)  # noqa: E731  settles in 6 epochs
        inp = layers.Input((8, 8, 1))
        h = bn()(layers.Conv2D(16, 3, padding="same", activation="relu")(inp))
        h = bn()(layers.DepthwiseConv2D(3, padding="same", activation="relu")(h))
        h = bn()(layers.Conv2D(16, 1, activation="relu")(h))
        model = keras.Model(inp, layers.Dense(10)(layers.Flatten()(h)), name="kws_like")
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
        model.fit(train.x, train.y, epochs=6, batch_size=32, verbose=0)
        model.save(folder / "kws_bn.keras")
        x, y = np.concatenate([train.x, held_out.x]), np.concatenate([train.y, held_out.y])
        np.savez(folder / "digits.npz", x=x, y=y)  # a recipe trains on what it does not hold out
        names = [layer.name for layer in model.layers]
        (folder / "layer_names.json").write_text(json.dumps(names))

    folder = shared_folder(tmp_path_factory, "bn_after_relu", make)
    names = json.loads((folder / "layer_names.json").read_text())
    return BnModel(folder / "kws_bn.keras", folder / "digits.npz", names)


def _build(bn_model: BnModel, out: Path, *args: str) -> dict:
    run = run_edgec("build", bn_model.keras, "--data", bn_model.data, "--target", "cortex-m",
                    "--out", out, *args)  # fmt: skip
    assert run.code == 0, run.err + run.out
    return json.loads((out / "report.json").read_text())


def _assert_bn_kept_and_measured(report: dict, bn: str) -> None:
    stages = {s["name"]: s["metrics"] for s in report["stages"]}
    assert report["model"]["ops"].count("MUL") == report["model"]["ops"].count("ADD") == 1
    cost = stages["batch_norm_cost"]
    assert cost["kept_ops"] == [f"op #1 MUL ({bn})", f"op #2 ADD ({bn})"]
    assert cost["arena_bytes_with_ops"] == report["memory"]["arena_bytes"]
    assert 0 < cost["arena_bytes_without_ops"] <= cost["arena_bytes_with_ops"]
    assert 0 < cost["flash_bytes_without_ops"] < cost["flash_bytes_with_ops"]


def test_plain_build_folds_what_is_exact_and_measures_what_stays(bn_model, tmp_path):
    report = _build(bn_model, tmp_path / "out")
    # Keras numbers layer names per session: the model's own names, in order
    _, conv, bn, depthwise, bn_1, pointwise, bn_2, flatten, dense = bn_model.layer_names
    stages = {s["name"]: s["metrics"] for s in report["stages"]}
    fold = stages["fold_batch_norms"]
    assert fold["rewrites"] == [
        f"{bn_1}: BatchNormalization folded into the input of {pointwise}",
        f"{bn_2}: BatchNormalization folded into the input of {dense} (through {flatten})",
    ]
    assert fold["rewrite_max_difference"] < 1e-4
    assert f"'{depthwise}' (DepthwiseConv2D), pads its input" in fold["kept_layers"][bn]
    _assert_bn_kept_and_measured(report, bn)
    rows = [(row["op"], row["name"]) for row in report["layers"]]
    assert rows == [("CONV_2D", conv), ("MUL", bn), ("ADD", bn),
                    ("DEPTHWISE_CONV_2D", depthwise), ("CONV_2D", pointwise),
                    ("RESHAPE", flatten), ("FULLY_CONNECTED", dense)], rows  # fmt: skip


def test_prune_qat_keeps_the_bn_it_cannot_fold(bn_model, tmp_path):
    """QAT trains the kept BN with its output quantized (int8 MUL/ADD) instead of refusing
    the model; the rows name the user's layers, not TF-MOT's quant_ wrappers."""
    recipe = tmp_path / "prune-qat.toml"  # prune-qat's stages, one epoch each, 50% zeros
    recipe.write_text(  # (75% in one epoch: 4 points below the input model, measured)
        '[[stage]]\ntype = "prune"\nsparsity = 0.5\nepochs = 1\n'
        '[[stage]]\ntype = "qat"\nepochs = 1\n'
    )
    report = _build(bn_model, tmp_path / "out", "--recipe", recipe)
    _, conv, bn, *_ = bn_model.layer_names
    stages = {s["name"]: s["metrics"] for s in report["stages"]}
    qat = stages["qat"]
    assert "pads its input" in qat["kept_layers"][bn]
    assert sum("folded into the input of" in r for r in qat["rewrites"]) == 2
    assert "fold_batch_norms" not in stages  # the QAT stage folded them
    _assert_bn_kept_and_measured(report, bn)
    assert {c["name"]: c["ok"] for c in report["checks"]}["sparsity"]
    names = [row["name"] for row in report["layers"]]
    assert set(names) <= set(bn_model.layer_names) and names[0] == conv, names
