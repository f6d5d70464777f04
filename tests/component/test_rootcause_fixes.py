"""The fixes for the QAT recipes' failed checks (issue 13, item 6) that need TensorFlow:
per-op judging of a converted multi-output op, per-channel clustering of a bias-less
Conv2D, even per-channel cluster counts, TFLM keeping every tensor of a converted model."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.artifact.runtimes import Outputs
from edgec.pipeline import verify
from tests.support.agreement import litert_and_tflm
from tests.support.tflite_builder import split_int8

pytestmark = pytest.mark.slow  # converts Keras models, trains TF-MOT wrappers


def test_every_output_of_a_multi_output_op_is_judged():
    """A difference in SPLIT's second output is blamed on SPLIT, not on the op after it
    (the model built directly: what is judged is the runtimes' outputs, not a conversion)."""
    data = split_int8()
    flat, litert, tflm = litert_and_tflm(data, data)
    split = next(op for op in flat.operators if op.name == "SPLIT")
    second = split.outputs[1]
    assert verify.op_agreement(flat, litert, tflm)[0] <= 1
    shifted = tflm.kept[second].astype(np.int16) + 3
    kept = {**tflm.kept, second: np.clip(shifted, -128, 127).astype(np.int8)}
    worst, where, first = verify.op_agreement(flat, litert, Outputs(tflm.raw, kept))
    assert worst >= 2 and where == first == split.describe()


def test_per_channel_clustering_of_a_conv_without_bias():
    """TF-MOT 0.8.1's cluster_weights silently skips it; the wrapper itself works."""
    from edgec._tf import cluster_weights_wrapper, keras, tfmot

    layer = keras.layers.Conv2D(8, 3, use_bias=False)
    layer.build((None, 8, 8, 4))
    init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS
    with pytest.warns(UserWarning, match="not have enough weights"):
        skipped = tfmot.clustering.keras.cluster_weights(
            layer, number_of_clusters=4, cluster_centroids_init=init, cluster_per_channel=True
        )
    assert skipped is layer  # the TF-MOT trap the cluster stage works around
    wrapped = cluster_weights_wrapper(layer, 4, init, False, True)
    inputs = keras.Input((8, 8, 4))
    model = tfmot.clustering.keras.strip_clustering(keras.Model(inputs, wrapped(inputs)))
    kernel = model.layers[-1].kernel.numpy()
    assert max(len(np.unique(kernel[..., c])) for c in range(8)) <= 4


def test_even_channel_clusters_keeps_zeros_and_limits():
    from edgec._tf import keras
    from edgec.stages.cluster import _even_channel_clusters

    layer = keras.layers.Conv2D(3, 3)
    layer.build((None, 8, 8, 4))
    rng = np.random.default_rng(0)
    kernel = np.stack(
        [rng.choice(np.r_[0.0, rng.normal(size=n - 1)], size=(3, 3, 4)) for n in (16, 13, 11)],
        axis=-1,
    ).astype(np.float32)
    layer.kernel.assign(kernel)
    before = [len(np.unique(kernel[..., c])) for c in range(3)]
    assert max(before) - min(before) > 1
    moved = _even_channel_clusters(layer)
    after = layer.kernel.numpy()
    counts = [len(np.unique(after[..., c])) for c in range(3)]
    assert moved == sum(max(before) - 1 - b for b in before if b < max(before) - 1)
    assert max(counts) - min(counts) <= 1 and max(counts) == max(before)
    assert np.array_equal(after == 0, kernel == 0)
    assert np.count_nonzero(after != kernel) == moved
    assert np.allclose(after, kernel, rtol=0.01)


def test_tflm_keeps_every_tensor_of_a_model_with_a_tiny_arena():
    """kPreserveAllTensors needs far more than the planned arena (8,216 tail bytes for a
    1,488-byte arena here); too little SIGSEGVs tflite_micro instead of raising."""
    from edgec._tf import keras
    from edgec.pipeline.convert import convert_int8

    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    calibration = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32)
    data = convert_int8(model, calibration)
    flat, litert, tflm = litert_and_tflm(data, data)
    assert set(tflm.kept) == set(verify.op_outputs(flat))
    assert verify.agreement_check(litert, tflm, model=flat).ok
