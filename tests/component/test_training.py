"""What a training stage's fit costs: each traced function traced once, the training and
the stage's measurements unchanged (stages/training.py, stages/plan.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.datasets.loading import Dataset


def _data(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6, 6, 1)).astype(np.float32)
    return Dataset(x=x, y=rng.integers(0, 3, n), source=f"random {seed}")


def _model(dropout: bool = True):
    """A tiny classifier with a Dropout (random ops in the training step: a change in what is
    traced or created would show in the trained weights)."""
    from edgec._tf import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.layers.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            *([keras.layers.Dropout(0.3)] if dropout else []),
            keras.layers.Dense(3),
        ]
    )


def _planned(short_forms: dict, model, train: Dataset):
    from edgec.stages import plan as compress
    from edgec.stages.recipe import recipe_from_options

    recipe = recipe_from_options(epochs=1, **short_forms)
    assert recipe is not None
    return compress.validate(recipe, model, train)


@pytest.fixture(scope="module")
def train_validation() -> tuple[Dataset, Dataset]:
    return _data(70, 1), _data(20, 2)  # 70: a last, partial batch of 6


def test_fit_traces_the_training_step_once_and_trains_as_keras_does(train_validation):
    """Each ``fit`` used to trace its whole training step twice (the first trace creates the
    optimizer's and metrics' variables, so tf.function traces again without creating them).
    The weights after one epoch are bit-identical to Keras's own ``fit`` of the same model,
    loss and seed: creating those variables first changes nothing but the tracing."""
    from edgec._tf import keras
    from edgec.stages.training import _loss_and_metrics, fit

    train, validation = train_validation
    model = _model()
    plan = _planned({"qat": True}, model, train)
    sp = plan.stages[0]
    keras.utils.set_random_seed(0)
    fit(model, sp, plan, train, validation, on_epoch=None)
    assert model.train_function.experimental_get_tracing_count() == 1

    expected = _model()
    loss, metrics = _loss_and_metrics(expected, plan.task, keras)
    expected.compile(
        optimizer=keras.optimizers.Adam(sp.spec["learning_rate"]), loss=loss, metrics=metrics
    )
    keras.utils.set_random_seed(0)
    expected.fit(
        train.x, train.y, epochs=1, batch_size=sp.spec["batch_size"],
        validation_data=(validation.x, validation.y), shuffle=True, verbose=0,
    )  # fmt: skip
    for got, want in zip(model.get_weights(), expected.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
