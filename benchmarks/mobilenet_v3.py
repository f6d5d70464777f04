"""Benchmark: Keras 3's ``keras.applications.MobileNetV3Small`` through edgec (not a test).

    PYTHONPATH=src python benchmarks/mobilenet_v3.py [--alpha 0.5] [--epochs 10]
        [--recipes prune-qat,tiny] [--target cortex-m7]

A clean Keras 3 process (``import keras``) makes the model as ``keras.applications`` writes
it (its Rescaling(1 / 127.5, offset=-1) input, hard_swish, squeeze-and-excite blocks whose
hard_sigmoid is ``keras.ops`` arithmetic; untrained weights: nothing is downloaded) at
32x32x3 and trains it on scikit-learn's digits (shipped inside scikit-learn), each 8x8
image scaled to 32x32 pixels of 0-255 in three channels. Then each row is one ``edgec
build`` in this process: a plain build and each recipe, with flash, the exact TFLM arena,
the accuracy on the held-out evaluation set, the HARD_SWISH and ADD ops and the seconds.
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
from sklearn.datasets import load_digits
folder, alpha, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
keras.utils.set_random_seed(0)
d = load_digits()
x = np.kron(d.images / 16.0 * 255.0, np.ones((4, 4)))[..., None].repeat(3, -1).astype("float32")
m = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), alpha=alpha, weights=None,
                                        classes=10, include_preprocessing=True)
for layer in m.layers:  # Keras' 0.999: too slow for a few hundred steps on 1,797 images
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = 0.9
m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
m.fit(x, d.target, epochs=epochs, batch_size=32, verbose=0)
m.save(folder + "/mobilenet_v3.keras"); np.savez(folder + "/digits32.npz", x=x, y=d.target)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--recipes", default="prune-qat,tiny")
    parser.add_argument("--target", default="cortex-m7")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        _, seconds = keras3_builds.make(MAKE, tmp, str(args.alpha), str(args.epochs))
        print(f"MobileNetV3Small alpha {args.alpha}, 32x32x3, {args.epochs} epochs on the "
              f"digits: made in {seconds:.0f} s")  # fmt: skip
        print("| build | flash B | arena B | top-1 float | top-1 int8 | HARD_SWISH | ADD | "
              "failed checks | s |\n|---|---:|---:|---:|---:|---:|---:|---|---:|")  # fmt: skip
        folder = Path(tmp)
        for name, result, flat, seconds in keras3_builds.builds(
            folder / "mobilenet_v3.keras", folder / "digits32.npz", args.target, args.recipes,
            folder,
        ):  # fmt: skip
            ops = Counter(op.name for op in flat.operators)
            print(keras3_builds.row(name, result, seconds, ops["HARD_SWISH"], ops["ADD"]))


if __name__ == "__main__":
    main()
