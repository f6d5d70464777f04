"""Benchmark: an EEGNet (Lawhern et al., 2018) through edgec (not a test).

    PYTHONPATH=src python benchmarks/eegnet.py [--epochs 30] [--recipes prune-qat,cluster-qat]
        [--target cortex-m4]

EEGNet is the usual small network for EEG and other biosignals on a microcontroller: a
temporal Conv2D, a depthwise spatial filter, a separable convolution, BatchNormalization
after each and ELU activations. ELU is what the TFLite converter leaves float32 in an int8
model (between DEQUANTIZE and QUANTIZE): edgec joins each such island into one int8 ELU
(``artifact.op_forms``), QAT leaves its output to calibration, and the BN after the
separable convolution folds into it.

A clean Keras 3 process (``import keras``) makes the model at 8 channels x 128 samples
and trains it on deterministic synthetic trials: three classes, each a 10, 20 or 30 Hz
rhythm of random phase on its own pair of channels, in noise. It trains on the first
900 trials; edgec is given the other 300, which the float model never saw (edgec holds
half of them out for its evaluation; a recipe trains on the rest). Each row is one
``edgec build`` in this process: flash, the exact TFLM arena, top-1 on edgec's held-out
half, the ELU ops, the float32 tensors left, and the seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import keras3_builds  # noqa: E402

MAKE = """
import sys, keras, numpy as np
from keras import layers
folder, epochs = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
n, channels, samples = 1200, 8, 128
y = rng.integers(0, 3, n)
t = np.arange(samples) / 128.0
x = rng.normal(0, 1.0, (n, channels, samples))
for i in range(n):  # class k: a (10 + 10 k) Hz rhythm on channels 2k and 2k + 1
    for c in (2 * y[i], 2 * y[i] + 1):
        x[i, c] += 0.35 * np.sin(2 * np.pi * (10 + 10 * y[i]) * t + rng.uniform(0, 2 * np.pi))
x = x.astype("float32")[..., None]
inputs = keras.Input((channels, samples, 1))
h = layers.Conv2D(8, (1, 32), padding="same", use_bias=False)(inputs)
h = layers.BatchNormalization()(h)
h = layers.DepthwiseConv2D((channels, 1), depth_multiplier=2, use_bias=False)(h)
h = layers.BatchNormalization()(h)
h = layers.Activation("elu")(h)
h = layers.AveragePooling2D((1, 4))(h)
h = layers.Dropout(0.25)(h)
h = layers.SeparableConv2D(16, (1, 16), padding="same", use_bias=False)(h)
h = layers.BatchNormalization()(h)
h = layers.Activation("elu")(h)
h = layers.AveragePooling2D((1, 8))(h)
h = layers.Dropout(0.25)(h)
outputs = layers.Dense(3, activation="softmax")(layers.Flatten()(h))
model = keras.Model(inputs, outputs, name="eegnet")
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x[:900], y[:900], epochs=epochs, batch_size=32, verbose=0)
print(f"float top-1 on the 300 unseen trials: {model.evaluate(x[900:], y[900:], verbose=0)[1]:.2%}")
model.save(folder + "/eegnet.keras"); np.savez(folder + "/eeg.npz", x=x[900:], y=y[900:])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--recipes", default="prune-qat,cluster-qat")
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        said, seconds = keras3_builds.make(MAKE, tmp, str(args.epochs))
        print(f"EEGNet 8x128, {args.epochs} epochs on 900 synthetic trials: made in "
              f"{seconds:.0f} s; {said}")  # fmt: skip
        print("| build | flash B | arena B | top-1 float | top-1 int8 | ELU ops | "
              "float32 tensors | failed checks | s |\n"
              "|---|---:|---:|---:|---:|---:|---:|---|---:|")  # fmt: skip
        folder = Path(tmp)
        for name, result, flat, seconds in keras3_builds.builds(
            folder / "eegnet.keras", folder / "eeg.npz", args.target, args.recipes, folder
        ):
            ops = Counter(op.name for op in flat.operators)
            floats = sum(t.dtype == "float32" for t in flat.tensors)
            print(keras3_builds.row(name, result, seconds, ops["ELU"], floats))


if __name__ == "__main__":
    main()
