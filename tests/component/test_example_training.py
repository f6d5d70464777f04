"""The built-in example is trained once per process (issue 21): a second example build
sets the weights the first training gave, which are those a new training gives."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.pipeline import example

pytestmark = pytest.mark.slow  # trains the example CNN (on a few samples)


def _weights(model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def test_the_example_is_trained_once_per_process_with_a_new_training_s_weights(monkeypatch):
    monkeypatch.setattr(example, "_TRAINED", {})
    train, _ = example.example_data()
    train = train.subset(np.arange(48))  # the same 20 epochs, on few samples
    epochs: list[int] = []
    first = _weights(example.train_example_model(
        example.example_model(), train, on_epoch=lambda e, n, logs: epochs.append(e)))  # fmt: skip
    assert len(epochs) == example.EPOCHS
    model = example.example_model()
    assert example.trained_before(model, train)
    again = _weights(example.train_example_model(
        model, train, on_epoch=lambda e, n, logs: epochs.append(e)))  # fmt: skip
    assert len(epochs) == example.EPOCHS  # not trained again
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    monkeypatch.setattr(example, "_TRAINED", {})  # a new training: the same weights
    fresh = _weights(example.train_example_model(example.example_model(), train))
    assert all(np.array_equal(a, b) for a, b in zip(first, fresh, strict=True))
    other = train.subset(np.arange(40))
    assert not example.trained_before(example.example_model(), other)
