"""Training helpers the stages share: fit a model for a stage's epochs, fit a student to a
teacher (distillation), evaluate a model, and measure what a structural stage saved.

Each stage module imports what it trains with from here, never from another stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.datasets.loading import Dataset
from edgec.errors import InputError
from edgec.stages.base import EpochCallback
from edgec.stages.metrics import Shrink

if TYPE_CHECKING:
    from edgec.stages.plan import StagePlan

TEMPERATURE, ALPHA = 4.0, 0.1  # the distillation defaults (also prune_channels with a teacher)


def labels_of(data: Dataset) -> np.ndarray:
    """Labels of data that ``validate`` already required to be labelled."""
    if data.y is None:
        raise InputError(f"data {data.source} has no labels (y); training stages need them")
    return data.y


def evaluate_model(model, data: Dataset, task: str) -> dict[str, float]:
    """Loss and accuracy (classes, binary) or MSE (targets) on ``data``, in numpy."""
    from edgec.pipeline.outputs import model_outputs

    out = np.asarray(model_outputs(model, data.x), dtype=np.float64)
    if task == "binary":  # one output: a sigmoid's probability, or a logit
        y = labels_of(data).reshape(-1).astype(np.float64)
        z = out.reshape(-1)
        p = np.clip(z if outputs_sigmoid(model) else 1 / (1 + np.exp(-z)), 1e-7, 1 - 1e-7)
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        acc = float(np.mean((p > 0.5) == (y == 1)) * 100)
        return {"loss": round(loss, 5), "accuracy": round(acc, 2)}
    if task == "classes":
        y = labels_of(data).astype(np.int64)
        probs = out if outputs_probabilities(model) else _softmax(out)
        loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))))
        acc = float(np.mean(out.argmax(1) == y) * 100)
        return {"loss": round(loss, 5), "accuracy": round(acc, 2)}
    mse = float(np.mean((out.reshape(len(out), -1) - labels_of(data).reshape(len(out), -1)) ** 2))
    return {"loss": round(mse, 6), "mse": round(mse, 6)}


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def outputs_probabilities(model) -> bool:
    """True if the model ends in a softmax (its outputs are probabilities, not logits)."""
    return _final_activation(model) == "softmax"


def outputs_sigmoid(model) -> bool:
    """True if the model ends in a sigmoid (a binary classifier's probability, not a logit)."""
    return _final_activation(model) == "sigmoid"


def _final_activation(model) -> str:
    last = model.layers[-1]
    inner = getattr(last, "layer", last)  # QAT/prune wrappers
    # QAT replaces a layer's activation with a QuantizeAwareActivation that holds the
    # original function: without looking through it, a QAT'd softmax classifier was
    # compiled with from_logits=True (softmax applied to probabilities).
    activation = getattr(inner, "activation", None)
    activation = getattr(activation, "activation", activation)
    if type(inner).__name__ == "Softmax":
        return "softmax"
    return str(getattr(activation, "__name__", activation))


def _loss_and_metrics(model, task: str, keras):
    if task == "binary":
        sigmoid = outputs_sigmoid(model)
        return keras.losses.BinaryCrossentropy(from_logits=not sigmoid), [
            keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.5 if sigmoid else 0.0)
        ]
    if task == "classes":
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(model)
        )
        return loss, ["accuracy"]
    return keras.losses.MeanSquaredError(), []


class EpochLines:
    """A stage's epoch lines, sent to ``emit`` as they come, except a last line held back
    (``hold``) until ``run_stage`` has measured the model the stage returns (``finish``).

    A stage whose trained model is, once stripped of its training wrappers, the model it
    returns (``fit(..., last_from_result=True)``) shows that measurement in its last line:
    measuring the wrapped model instead traced its inference graph once more, the costliest
    trace of a one-epoch stage (TF-MOT's wrappers; the cluster wrapper builds its ops channel
    by channel). Measured, a one-epoch prune -> cluster -> PCQAT build of the example CNN
    in one process (``EDGEC_SANDBOX=off``): 9.1-10.2 CPU-s a build before, 6.9-8.0 after,
    with the same model.tflite. A stage that fails after training still shows its line,
    without the validation figure."""

    def __init__(self, emit: EpochCallback | None) -> None:
        self._emit = emit
        self._held: Callable[[dict[str, float] | None], str] | None = None

    def __call__(self, line: str) -> None:
        if self._emit is not None:
            self._emit(line)

    def hold(self, line: Callable[[dict[str, float] | None], str]) -> None:
        """Keep the last epoch's line, made later from the returned model's figures."""
        self._held = line

    def finish(self, figures: dict[str, float] | None) -> None:
        """Send the held line, with ``figures`` (``evaluate_model``'s) as its validation."""
        held, self._held = self._held, None
        if held is not None:
            self(held(figures))


def _epoch_line(name: str, epoch: int, epochs: int, logs: dict, figures: dict | None) -> str:
    """``name epoch 2/5: loss ..., accuracy ..., validation ...``: Keras's training figures
    (``logs``) and the validation figures ``evaluate_model`` measured (None: Keras's own
    validation pass's, in ``logs``, if any)."""
    if figures is not None:
        accuracy = figures.get("accuracy")
        val_accuracy = None if accuracy is None else accuracy / 100
        val_loss = figures["loss"]
    else:
        val_accuracy, val_loss = logs.get("val_accuracy"), logs.get("val_loss")
    parts = [f"loss {logs.get('loss', 0):.4f}"]
    if "accuracy" in logs:
        parts.append(f"accuracy {logs['accuracy'] * 100:.1f}%")
    if val_accuracy is not None:
        parts.append(f"validation {val_accuracy * 100:.1f}%")
    elif val_loss is not None:
        parts.append(f"validation loss {val_loss:.4f}")
    return f"{name} epoch {epoch + 1}/{epochs}: " + ", ".join(parts)


def fit(
    model, sp: StagePlan, plan, train, validation, on_epoch, callbacks=(), compile_=True,
    measured=None, last_from_result=False,
):  # fmt: skip
    """Train ``model`` for the stage's epochs; each epoch's line goes to ``on_epoch``.

    ``compile_``: compile with the task's loss and Adam (False: ``model`` compiled itself, a
    Distiller). ``measured``: the model whose validation figures the lines show (default:
    ``model`` when compiled; None and not compiled: Keras's own validation pass, whose loss
    is the uncompiled model's own). ``last_from_result``: the stage returns ``model``, or
    ``model`` stripped of its training wrappers, so an ``EpochLines`` ``on_epoch`` holds the
    last line for the returned model's figures instead of measuring ``measured`` again."""
    from edgec._tf import keras

    if compile_ and measured is None:
        measured = model

    spec = sp.spec
    if compile_:
        loss, metrics = _loss_and_metrics(model, plan.task, keras)
        model.compile(
            optimizer=keras.optimizers.Adam(spec["learning_rate"]), loss=loss, metrics=metrics
        )
    epochs = spec["epochs"]

    def report(epoch: int, logs: dict | None) -> None:
        if on_epoch is None:
            return
        logs = dict(logs or {})
        if (
            last_from_result
            and measured is not None
            and epoch == epochs - 1
            and isinstance(on_epoch, EpochLines)
        ):
            on_epoch.hold(lambda figures: _epoch_line(spec.type, epoch, epochs, logs, figures))
            return
        # The validation figures only this line shows, from the model's outputs in numpy
        # (evaluate_model, as run_stage measures before and after): Keras's own validation
        # pass traced a test function per fit (with TF-MOT's wrappers, 0.5 to 1.3 s of a
        # one-epoch stage) to print the same figures.
        figures = None if measured is None else evaluate_model(measured, validation, plan.task)
        on_epoch(_epoch_line(spec.type, epoch, epochs, logs, figures))

    def labels(data: Dataset) -> np.ndarray:
        if plan.task == "classes":
            return labels_of(data)
        if plan.task == "binary":
            return labels_of(data).reshape(len(data), 1).astype(np.float32)
        return labels_of(data).reshape((len(data), *plan.output_shape)).astype(np.float32)

    y_train = labels(train)
    _create_training_variables(model, y_train[:1], compiled=compile_)
    model.fit(
        train.x,
        y_train,
        epochs=epochs,
        batch_size=spec["batch_size"],
        validation_data=None if measured is not None else (validation.x, labels(validation)),
        shuffle=True,
        verbose=0,
        callbacks=[*callbacks, keras.callbacks.LambdaCallback(on_epoch_end=report)],
    )


def _create_training_variables(model, y_true: np.ndarray, *, compiled: bool) -> None:
    """Create the variables ``model.fit``'s first step would create (the optimizer's slots,
    the compiled loss's and metrics' totals) before ``fit``, so its train function is traced
    once instead of twice.

    A ``tf.function`` whose first trace creates variables is traced a second time without
    creating them (``polymorphic_function._initialize``, then ``_no_variable_creation_config``):
    every stage's fit paid two traces of its whole training step (measured, a one-epoch
    ``--prune 2:4 --qat`` build of the example CNN: 4 train-function traces, 9.7 s of 28 s).
    The variables are zeros and are made in the order the step would make them, so training
    (and the built model's bytes) is unchanged. ``y_true``: one sample of the labels ``fit``
    gets (the metrics choose their kind from its shape); ``compiled``: the model was compiled
    with a loss and metrics (a Distiller computes its own)."""
    from edgec._tf import tf

    if compiled:
        y_pred = tf.zeros((1, *model.output_shape[1:]), model.outputs[0].dtype)
        model.compiled_loss.build(y_pred)
        model.compiled_metrics.build(y_pred, tf.constant(y_true))
    model.optimizer.build(model.trainable_variables)


def _distillation_loss(temperature: float, alpha: float, task: str, teacher, student):
    """loss(x, y, s): alpha * hard + (1 - alpha) * T^2 * KL(teacher || student) for
    classes, alpha * hard + (1 - alpha) * MSE(teacher, student) for targets, and for a
    binary classifier on the two models' probabilities (a logit through its sigmoid)."""
    from edgec._tf import keras, tf

    classes = task == "classes"
    teacher_probs, student_probs = outputs_probabilities(teacher), outputs_probabilities(student)
    if task == "binary":
        teacher_probs, student_probs = outputs_sigmoid(teacher), outputs_sigmoid(student)

    def logits(out, probs: bool):
        # log(p) differs from the logits by a per-sample constant, which softmax ignores.
        return tf.math.log(tf.clip_by_value(out, 1e-7, 1.0)) if probs else out

    hard = (
        keras.losses.SparseCategoricalCrossentropy(from_logits=not student_probs)
        if classes
        else keras.losses.BinaryCrossentropy(from_logits=not student_probs)
        if task == "binary"
        else keras.losses.MeanSquaredError()
    )

    def probability(out, probs: bool):
        return out if probs else tf.sigmoid(out)

    def loss(x, y, s):
        t = teacher(x, training=False)
        if classes:
            t_soft = tf.nn.softmax(logits(t, teacher_probs) / temperature)
            s_log = tf.nn.log_softmax(logits(s, student_probs) / temperature)
            kl = tf.reduce_mean(
                tf.reduce_sum(t_soft * (tf.math.log(t_soft + 1e-12) - s_log), axis=-1)
            )
            soft = kl * temperature**2
        elif task == "binary":
            t_p = probability(tf.cast(t, s.dtype), teacher_probs)
            soft = tf.reduce_mean(tf.square(t_p - probability(s, student_probs)))
        else:
            soft = tf.reduce_mean(tf.square(tf.cast(t, s.dtype) - s))
        return alpha * hard(y, s) + (1 - alpha) * soft

    return loss


def fit_to_teacher(
    sp, plan, teacher, student, train, validation, on_epoch, temperature=TEMPERATURE, alpha=ALPHA
) -> None:
    """Train ``student`` for the stage's epochs on the distillation loss against
    ``teacher`` (frozen): also the prune_channels fine-tune with ``teacher = true``."""
    from edgec._tf import keras, tf

    spec = sp.spec
    classes = plan.task in ("classes", "binary")  # an accuracy to track
    loss = _distillation_loss(temperature, alpha, plan.task, teacher, student)
    if plan.task == "binary":
        threshold = 0.5 if outputs_sigmoid(student) else 0.0

    class Distiller(keras.Model):
        """alpha * hard + (1 - alpha) * T^2 * KL(teacher || student); MSE for regression.

        tf_keras has no compute_loss hook that sees the teacher, so train_step is overridden.
        """

        def __init__(self):
            super().__init__()
            self.student = student
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.acc = (
                keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold)
                if plan.task == "binary"
                else keras.metrics.SparseCategoricalAccuracy(name="accuracy")
            )

        @property
        def metrics(self):
            return [self.loss_tracker, self.acc] if classes else [self.loss_tracker]

        def call(self, x, training=False):
            return self.student(x, training=training)

        def _loss(self, x, y, s):
            return loss(x, y, s)

        def _track(self, loss, y, s):
            self.loss_tracker.update_state(loss)
            if classes:
                self.acc.update_state(y, s)
            return {m.name: m.result() for m in self.metrics}

        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                s = self.student(x, training=True)
                loss = self._loss(x, y, s) + sum(self.student.losses)
            grads = tape.gradient(loss, self.student.trainable_variables)
            self.optimizer.apply_gradients(
                zip(grads, self.student.trainable_variables, strict=True)
            )
            return self._track(loss, y, s)

        def test_step(self, data):
            x, y = data
            s = self.student(x, training=False)
            return self._track(self._loss(x, y, s), y, s)

    distiller = Distiller()
    distiller.compile(optimizer=keras.optimizers.Adam(spec["learning_rate"]))
    # classes: the line's validation accuracy is the student's (evaluate_model); targets:
    # its validation loss is the distillation loss, which Keras's validation pass computes
    fit(
        distiller, sp, plan, train, validation, on_epoch, compile_=False,
        measured=student if classes else None,
    )  # fmt: skip


def shrink(before, after) -> Shrink:
    """Parameters and kernel MACs of two float models."""
    from edgec.pipeline.graph_rewrite import kernel_macs

    return Shrink(
        int(before.count_params()),
        int(after.count_params()),
        kernel_macs(before),
        kernel_macs(after),
    )


# The stages whose TF-MOT wrappers fail on a layer's activity regularizer
WRAPPING_STAGES = ("prune", "cluster", "qat")


def without_activity_penalties(model, sample: np.ndarray) -> tuple[Any, list[str]]:
    """``model`` rebuilt without activity regularizers (``Dense(activity_regularizer="l2")``;
    an ActivityRegularization layer, the identity at inference, left out), proven equal on
    ``sample``, and the layers changed; ``model`` itself when it has none.

    TF-MOT's wrappers (prune_low_magnitude, cluster_weights, quantize_apply) rebuild a layer
    and carry over the activity loss tf_keras made when the model was built: fit then
    failed ("... ActivityRegularizer/div_no_nan:0 is out of scope and cannot be used here";
    reproduced with tf_keras and TF-MOT alone), an internal error in every such recipe.
    Clearing the attribute is not enough: the loss made at construction stays. The penalty
    is a training loss only: the outputs are the same."""
    from edgec.pipeline.graph_rewrite import (
        IDENTITY,
        Replacement,
        layer_calls,
        proven_equal,
        rebuild,
    )

    def penalized(layer) -> bool:
        return type(layer).__name__ == "ActivityRegularization" or (
            getattr(layer, "activity_regularizer", None) is not None
        )

    changed = list(dict.fromkeys(gn.layer.name for gn in layer_calls(model) if penalized(gn.layer)))
    if not changed:
        return model, []

    def replace(gn):
        layer = gn.layer
        if type(layer).__name__ == "ActivityRegularization":
            return IDENTITY
        if not penalized(layer):
            return None
        config = {**layer.get_config(), "activity_regularizer": None}
        return Replacement((type(layer).from_config(config),), (layer.get_weights(),))

    rebuilt = rebuild(model, replace)
    proof = proven_equal(model, rebuilt, sample)
    if not proof.equal:  # a layer whose config does not rebuild it: its own error stands
        return model, []
    return rebuilt, changed
