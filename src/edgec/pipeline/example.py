"""The built-in example: a small CNN trained, seeded and deterministic, on the digits.

Training it takes most of an example build (20 epochs, 5-7 s on one core): the trained
weights are kept for the process, keyed by everything the training reads (the initial
weights, the training data, the epochs, the thread settings), so a second example build
in one process (the test suite's, a notebook's, fit's trials) sets them instead of
training again. Training is deterministic (seeded, ``enable_op_determinism``): the
weights are the ones a new training gives, and so are the builds' bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import numpy as np

from edgec.datasets.digits import load_digits
from edgec.datasets.loading import Dataset

NAME = "digits_cnn"
SEED = 0
EPOCHS = 20
HOLDOUT = 600  # samples kept out of training: calibration (300) + evaluation (300)


def example_data() -> tuple[Dataset, Dataset]:
    """(training set, held-out set) of the digits, split the same way every time."""
    data = load_digits()
    order = np.random.default_rng(SEED).permutation(len(data))
    return data.subset(order[HOLDOUT:]), data.subset(order[:HOLDOUT])


def build_example_model(train: Dataset, on_epoch: Callable[[int, int, dict], None] | None = None):
    """Train the example CNN; same weights on every run on the same machine."""
    return train_example_model(example_model(), train, on_epoch)


def example_model():
    """The example CNN, compiled and untrained (seeded initial weights)."""
    from edgec._tf import keras, tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    layers = keras.layers
    model = keras.Sequential(
        [
            layers.Input((8, 8, 1), name="image"),
            # Fixed names: Keras numbers default names per process (conv2d_4 ...), and
            # recipes and the int8 weight checks refer to layers by name.
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2d"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2d_1"),
            layers.MaxPooling2D(name="max_pooling2d"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense"),
            layers.Dense(10, name="logits"),
        ],
        name=NAME,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


# training key -> the trained weights (read-only copies), for this process
_TRAINED: dict[str, list[np.ndarray]] = {}


def train_example_model(
    model, train: Dataset, on_epoch: Callable[[int, int, dict], None] | None = None
):
    """Train ``model`` (``example_model()``) on ``train``, or give it the weights the same
    training gave earlier in this process (``trained_before``)."""
    from edgec._tf import keras

    key = _training_key(model, train)
    if key in _TRAINED:
        model.set_weights(_TRAINED[key])
        return model

    callbacks = []
    if on_epoch is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch(epoch + 1, EPOCHS, dict(logs or {}))
            )
        )
    model.fit(
        train.x, train.y, epochs=EPOCHS, batch_size=32, verbose=0, shuffle=True, callbacks=callbacks
    )
    _TRAINED[key] = [_frozen(w) for w in model.get_weights()]
    return model


def trained_before(model, train: Dataset) -> bool:
    """``train_example_model`` would reuse weights trained earlier in this process."""
    return _training_key(model, train) in _TRAINED


def _training_key(model, train: Dataset) -> str:
    digest = hashlib.sha256(f"{EPOCHS}:{model.name}".encode())
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "TF_ENABLE_ONEDNN_OPTS"):
        digest.update(f"{name}={os.environ.get(name)};".encode())
    for w in model.get_weights():
        digest.update(f"{w.dtype}{w.shape}".encode())
        digest.update(np.ascontiguousarray(w).tobytes())
    for a in (train.x, train.y):
        assert a is not None  # the example's training set has labels
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def _frozen(w: np.ndarray) -> np.ndarray:
    w = np.array(w, copy=True)
    w.setflags(write=False)
    return w
