"""The tiny real models the fixtures build (tests/conftest.py), and the values they hold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class UserModel:
    keras: Path
    h5: Path
    data: Path  # held-out digits: x, y
    folder: Path


@dataclass
class Denoiser:
    keras: Path
    data: Path  # x: noisy sine waves, y: the clean ones


@dataclass
class Clustered:
    """The example CNN with 16 clusters per Dense/Conv2D kernel (TF-MOT)."""

    keras: Path  # clustered, stripped: a plain Keras model (post-training quantized by edgec)
    data: Path  # held-out digits: x, y
    cqat_tflite: bytes  # clustered + cluster-preserving QAT, converted by edgec's convert_int8
    calibration_x: np.ndarray
    evaluation_x: np.ndarray


def make_clustered(folder: Path, trained: Path | None = None) -> Clustered:
    """Cluster (16, k-means++), fine-tune 1 epoch, strip; then CQAT 1 epoch, convert.

    CQAT (cluster-preserving QAT, facts.md section 3) is the TF-MOT flow for deploying a
    clustered model as int8: its Dense kernels are quantized per tensor, so all 16
    centroids share one scale and one 16-entry LUT table serves the whole kernel.
    """
    from edgec._tf import keras, tfmot
    from edgec.pipeline.convert import convert_int8
    from edgec.pipeline.example import SEED, build_example_model, example_data

    train, held_out = example_data()
    # The example CNN is deterministic: reuse a trained copy (the user_model fixture's)
    # instead of training it a second time in the same session.
    if trained is not None:
        model = keras.models.load_model(trained, compile=False)
    else:
        model = build_example_model(train)
    keras.utils.set_random_seed(SEED)
    clustering = tfmot.clustering.keras

    def cluster(layer):
        if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
            return clustering.cluster_weights(
                layer,
                number_of_clusters=16,
                cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
            )
        return layer

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    wrapped = keras.models.clone_model(model, clone_function=cluster)
    wrapped.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
    wrapped.fit(train.x, train.y, epochs=1, batch_size=32, verbose=0)
    stripped = clustering.strip_clustering(wrapped)
    stripped.save(folder / "clustered.keras")
    np.savez(folder / "digits.npz", x=held_out.x, y=held_out.y)

    quant = tfmot.quantization.keras
    cqat = quant.quantize_apply(
        quant.quantize_annotate_model(stripped),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(),
    )
    cqat.compile(optimizer=keras.optimizers.Adam(1e-5), loss=loss)
    cqat.fit(train.x, train.y, epochs=1, batch_size=32, verbose=0)
    calibration_x, evaluation_x = held_out.x[:300], held_out.x[300:]
    return Clustered(
        keras=folder / "clustered.keras",
        data=folder / "digits.npz",
        cqat_tflite=convert_int8(cqat, calibration_x),
        calibration_x=calibration_x,
        evaluation_x=evaluation_x,
    )
