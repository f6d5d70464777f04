"""What rebuilding a Keras 3 model as tf_keras (and proving it) adds to a build.

    PYTHONPATH=src python benchmarks/keras3_translate.py

A digits CNN of the built-in example's size is made with Keras 3 in a clean process
(``import keras``), then loaded here and translated with its proof on 300 calibration
samples (what ``edgec build --recipe ...`` does in its ``translate_keras3`` stage).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MAKE = """
import sys, keras, numpy as np
from sklearn.datasets import load_digits
keras.utils.set_random_seed(0)
d = load_digits(); x = (d.images / 16.0).astype("float32")[..., None]
m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
    keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.Flatten(),
    keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
m.fit(x, d.target, epochs=2, verbose=0)
m.save(sys.argv[1] + "/cnn.keras"); np.save(sys.argv[1] + "/x.npy", x[:300])
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        subprocess.run([sys.executable, "-c", MAKE, tmp], env=env, check=True,
                       capture_output=True)  # fmt: skip
        from edgec.pipeline import keras3

        start = time.perf_counter()
        model = keras3.load_model(Path(tmp) / "cnn.keras")
        loaded = time.perf_counter() - start
        x = np.load(Path(tmp) / "x.npy")
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = keras3.translate(model, x)
            times.append(time.perf_counter() - start)
        print(f"Keras {result.keras_version}: load {loaded:.2f} s (first Keras 3 import included)")
        print(f"translate + verify on {len(x)} samples, {result.layers} layers, "
              f"{model.count_params():,} parameters: first {times[0]:.2f} s, then "
              f"{min(times[1:]):.2f} s; max abs diff {result.max_abs_diff:.3g}")  # fmt: skip


if __name__ == "__main__":
    main()
