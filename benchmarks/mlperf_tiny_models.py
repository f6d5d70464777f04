"""Keras 2 definitions of the four MLPerf Tiny reference models, and stand-in data.

Architectures follow the MLPerf Tiny reference training scripts (mlcommons/tiny):
DS-CNN keyword spotting, MobileNetV1-0.25 visual wake words, ResNet-8 on CIFAR-10 and
the FC autoencoder for anomaly detection. The data is generated, deterministic and of
the right shapes (no downloads): class-dependent templates plus noise for the
classifiers, low-rank signals plus noise for the autoencoder. Accuracy on it says only
that training and int8 conversion work, not how the models do on the real tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str
    task: str
    input_shape: tuple[int, ...]
    classes: int  # 0 for the autoencoder


WORKLOADS = (
    Workload("ds_cnn", "keyword spotting (49x10 MFCC)", (49, 10, 1), 12),
    Workload("mobilenet_v1_025", "visual wake words (96x96 RGB)", (96, 96, 3), 2),
    Workload("resnet8", "image classification (CIFAR-10 32x32 RGB)", (32, 32, 3), 10),
    Workload("fc_autoencoder", "anomaly detection (640 features)", (640,), 0),
)


def build_model(workload: Workload):
    """The workload's model, its BatchNormalization moving averages at momentum 0.9.

    The defaults (0.99; 0.999 in keras.applications' MobileNet) leave the moving mean and
    variance far behind the batch statistics after a short training like the one here:
    measured on DS-CNN, 100% top-1 in training mode and 8% in inference mode.
    """
    from edgec._tf import keras

    model = _architecture(workload)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def _architecture(workload: Workload):
    from edgec._tf import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    if workload.name == "ds_cnn":
        inputs = layers.Input(workload.input_shape)
        x = layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inputs)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        for _ in range(4):
            x = layers.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
            x = layers.Conv2D(64, (1, 1), padding="same", use_bias=False)(x)
            x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.AveragePooling2D(pool_size=(25, 5))(x)
        outputs = layers.Dense(workload.classes, activation="softmax")(layers.Flatten()(x))
        return keras.Model(inputs, outputs, name="ds_cnn")
    if workload.name == "mobilenet_v1_025":
        # weights=None: built from the architecture only, nothing is downloaded.
        return keras.applications.MobileNet(
            input_shape=workload.input_shape, alpha=0.25, weights=None, classes=workload.classes
        )
    if workload.name == "resnet8":
        inputs = layers.Input(workload.input_shape)
        x = layers.Conv2D(16, 3, padding="same")(inputs)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        for filters, stride in ((16, 1), (32, 2), (64, 2)):
            y = layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
            y = layers.ReLU()(layers.BatchNormalization()(y))
            y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same")(y))
            if stride != 1:
                x = layers.Conv2D(filters, 1, strides=stride, padding="same")(x)
            x = layers.ReLU()(layers.Add()([x, y]))
        x = layers.AveragePooling2D(pool_size=8)(x)
        outputs = layers.Dense(workload.classes, activation="softmax")(layers.Flatten()(x))
        return keras.Model(inputs, outputs, name="resnet8")
    if workload.name == "fc_autoencoder":
        inputs = layers.Input(workload.input_shape)
        x = inputs
        for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
            x = layers.ReLU()(layers.BatchNormalization()(layers.Dense(units)(x)))
        outputs = layers.Dense(workload.input_shape[0])(x)
        return keras.Model(inputs, outputs, name="fc_autoencoder")
    raise ValueError(workload.name)


# Noise level per classifier: chosen (measured, see docs/benchmarks.md) so that each float
# model scores roughly 80-97% after 10 epochs on 1,200 samples, so that losses show.
NOISE = {"ds_cnn": 2.0, "mobilenet_v1_025": 2.0, "resnet8": 5.0}


def stand_in_data(workload: Workload, samples: int, *, seed: int = 0, noise: float | None = None):
    """(x, y): y are class labels, or x itself for the autoencoder.

    Classifiers: each class is a smooth random pattern (a few low spatial frequencies
    per channel); a sample is its class's pattern at a random amplitude, circularly
    shifted by up to 1/8 of each spatial side, buried in white noise of ``noise`` (the
    per-workload default above). Telling classes apart needs the spatial structure,
    tolerance to shifts and averaging out the noise: what the reference models' filters do.
    """
    rng = np.random.default_rng(seed)
    if workload.classes == 0:
        basis = rng.normal(size=(16, workload.input_shape[0])).astype(np.float32)
        x = rng.normal(size=(samples, 16)).astype(np.float32) @ basis / 4
        x += rng.normal(scale=0.1, size=x.shape).astype(np.float32)
        return x, x
    height, width, channels = workload.input_shape
    patterns = _patterns(rng, workload.classes, height, width, channels)
    y = rng.integers(0, workload.classes, size=samples)
    amplitude = rng.uniform(0.7, 1.3, size=(samples, 1, 1, 1)).astype(np.float32)
    x = np.empty((samples, height, width, channels), np.float32)
    shifts = np.stack(
        [rng.integers(-(height // 8), height // 8 + 1, samples),
         rng.integers(-(width // 8), width // 8 + 1, samples)], axis=1
    )  # fmt: skip
    for i in range(samples):
        x[i] = np.roll(patterns[y[i]], tuple(shifts[i]), axis=(0, 1))
    x *= amplitude
    level = NOISE[workload.name] if noise is None else noise
    x += rng.normal(scale=level, size=x.shape).astype(np.float32)
    return x, y.astype(np.int64)


def _patterns(rng, classes: int, height: int, width: int, channels: int) -> np.ndarray:
    """(classes, height, width, channels): sums of 4 random low-frequency cosines, unit RMS."""
    rows = np.arange(height, dtype=np.float32)[:, None, None]
    cols = np.arange(width, dtype=np.float32)[None, :, None]
    out = np.zeros((classes, height, width, channels), np.float32)
    for c in range(classes):
        for _ in range(4):
            fy, fx = rng.uniform(0, 3, size=2) * 2 * np.pi
            phase = rng.uniform(0, 2 * np.pi, size=channels).astype(np.float32)
            out[c] += np.cos(fy * rows / height + fx * cols / width + phase)
        out[c] /= np.sqrt(np.mean(out[c] ** 2))
    return out


def train(model, workload: Workload, x, y, *, epochs: int = 10):
    from edgec._tf import keras

    if workload.classes:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = ["accuracy"]
    else:
        loss, metrics = "mse", []
    model.compile(keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model
