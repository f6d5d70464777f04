"""What BatchNormalization after an activation costs in int8, folded and not (not a test).

    PYTHONPATH=src python benchmarks/batch_norm_fold.py

A DS-CNN-shaped keyword-spotting model (49x10 input, Conv2D(64, 10x4, stride 2) then four
DepthwiseConv2D 3x3 + Conv2D 1x1 blocks, every conv ``activation="relu"`` followed by a
BatchNormalization, global average pooling, Dense(12)): its BN statistics seeded, not
trained (they change values, not sizes). Converted to int8 twice: as it is (what the
converter makes of it: a MUL and an ADD per BN) and after ``fold_forward_batch_norms``
(what ``edgec build`` converts). Flash is the .tflite size, arena the exact TFLM arena;
for the BNs no exact fold takes, the cost of their ops is measured as the build does
(``artifact.bypass``: the same flatbuffer without them).
"""

from __future__ import annotations

import numpy as np


def kws_model():
    from edgec._tf import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    inp = layers.Input((49, 10, 1))
    h = layers.Conv2D(64, (10, 4), strides=2, padding="same", activation="relu")(inp)
    h = layers.BatchNormalization()(h)
    for _ in range(4):
        h = layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
        h = layers.BatchNormalization()(h)
        h = layers.Conv2D(64, 1, activation="relu")(h)
        h = layers.BatchNormalization()(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, layers.Dense(12)(h), name="kws_like")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = int(layer.moving_mean.shape[0])
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n),
                               rng.normal(0, 0.5, n), rng.uniform(0.5, 2, n)])  # fmt: skip
    return model


def measure(model, x: np.ndarray) -> tuple[bytes, int, tuple[str, ...]]:
    from edgec.artifact import Artifact
    from edgec.pipeline.convert import convert_int8

    artifact = Artifact.from_bytes(convert_int8(model, x))
    arena, why = artifact.arena()
    if arena is None:
        raise SystemExit(f"arena not measured: {why}")
    return artifact.data, arena, tuple(op.name for op in artifact.model.operators)


def main() -> None:
    from edgec.artifact import Artifact
    from edgec.artifact.bypass import without_ops
    from edgec.pipeline.convert import convert_named
    from edgec.stages.structure.qat_rewrite import fold_forward_batch_norms

    model = kws_model()
    x = np.random.default_rng(1).normal(size=(300, 49, 10, 1)).astype(np.float32)
    prepared = fold_forward_batch_norms(model, x)
    rows = [("as converted (BN left to the converter)", *measure(model, x)),
            ("BN folded where exact (edgec build)", *measure(prepared.model, x))]  # fmt: skip
    print(f"{'model':42} {'flash B':>9} {'arena B':>9}  MUL/ADD ops")
    for label, data, arena, ops in rows:
        print(f"{label:42} {len(data):>9,} {arena:>9,}  {ops.count('MUL')}/{ops.count('ADD')}")
    print(f"{len(prepared.rewrites)} folded, largest output difference "
          f"{prepared.max_difference:.2g}; kept: {len(prepared.kept)}")  # fmt: skip
    for name, why in prepared.kept.items():
        print(f"  {name}: {why}")
    conversion = convert_named(prepared.model, mode="int8", calibration_x=x)
    flat = Artifact.from_bytes(conversion.tflite).model
    names = conversion.names
    kept_ops = [op.index for op in flat.operators
                if (layers := names.layers(flat, op))
                and all(names.kind(n) == "BatchNormalization" for n in layers)]  # fmt: skip
    if kept_ops:
        whole = Artifact.from_bytes(without_ops(conversion.tflite, []))
        cut = Artifact.from_bytes(without_ops(conversion.tflite, kept_ops))
        (arena_with, _), (arena_without, _) = whole.arena(), cut.arena()
        print(f"the kept BN ops ({len(kept_ops)}): arena {arena_with:,} -> {arena_without:,} B "
              f"without them, flash {whole.size_bytes:,} -> {cut.size_bytes:,} B")  # fmt: skip


if __name__ == "__main__":
    main()
