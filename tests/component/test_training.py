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


def _planned(short_forms: dict, model, train: Dataset, epochs: int = 1):
    from edgec.stages import plan as compress
    from edgec.stages.recipe import recipe_from_options

    recipe = recipe_from_options(epochs=epochs, **short_forms)
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


def test_epoch_lines_show_validation_without_a_keras_validation_pass(train_validation):
    """Each epoch's progress line shows the validation figure, measured on the model's
    outputs as run_stage measures before and after (evaluate_model), not by a Keras
    validation pass that traced a test function in every fit."""
    from edgec.stages.training import evaluate_model, fit

    train, validation = train_validation
    model = _model(dropout=False)
    plan = _planned({"qat": True}, model, train)
    lines: list[str] = []
    fit(model, plan.stages[0], plan, train, validation, on_epoch=lines.append)
    accuracy = evaluate_model(model, validation, plan.task)["accuracy"]
    assert len(lines) == 1 and lines[0].startswith("qat epoch 1/1: loss "), lines
    assert lines[0].endswith(f", validation {accuracy:.1f}%"), lines
    assert model.test_function is None  # no Keras validation pass


def test_run_stage_takes_the_figures_the_stage_before_measured(train_validation):
    """run_recipe hands each stage the figures the stage before measured on the same model
    and data (``StageResult.after``) instead of predicting them again; run_stage reports
    those as "before" and its own "after" as the result's."""
    from edgec.stages.plan import run_stage

    train, validation = train_validation
    model = _model(dropout=False)
    plan = _planned({"prune": 0.5}, model, train)
    done = run_stage(
        plan.stages[0], plan, model, train, validation, before={"accuracy": 12.5, "loss": 3.0}
    )
    metrics = done.metrics.to_dict()
    assert (metrics["accuracy_before"], metrics["loss_before"]) == (12.5, 3.0)
    assert done.after is not None
    assert (metrics["accuracy_after"], metrics["loss_after"]) == (
        done.after["accuracy"],
        done.after["loss"],
    )


def test_the_last_epoch_line_shows_the_returned_model_s_figures(train_validation, monkeypatch):
    """A prune stage's last epoch line waits for run_stage's measurement of the stripped
    model it returns: the wrapped model is measured for the epochs before only (its
    inference graph traced once less per stage). A stage that fails after training still
    shows the line, without a validation figure."""
    from edgec.stages import plan as compress
    from edgec.stages import training

    train, validation = train_validation
    measured: list[object] = []
    evaluate = training.evaluate_model
    monkeypatch.setattr(
        training, "evaluate_model", lambda m, *a: measured.append(m) or evaluate(m, *a)
    )
    model = _model(dropout=False)
    plan = _planned({"prune": 0.5}, model, train, epochs=2)
    lines: list[str] = []
    done = compress.run_stage(plan.stages[0], plan, model, train, validation, on_epoch=lines.append)
    assert len(measured) == 1 and measured[0] is not done.model  # epoch 1's, the wrapped model
    assert [line.split(":")[0] for line in lines] == ["prune epoch 1/2", "prune epoch 2/2"]
    assert done.after is not None
    assert lines[1].endswith(f", validation {done.after['accuracy']:.1f}%"), lines

    def fails(*args):
        raise RuntimeError("after training")

    monkeypatch.setattr(compress, "evaluate_model", fails)
    lines.clear()
    plan = _planned({"prune": 0.5}, model, train)
    with pytest.raises(RuntimeError, match="after training"):
        compress.run_stage(
            plan.stages[0], plan, model, train, validation, on_epoch=lines.append,
            before={"accuracy": 50.0, "loss": 1.0},
        )  # fmt: skip
    assert len(lines) == 1 and lines[0].startswith("prune epoch 1/1: loss "), lines
    assert "validation" not in lines[0]


def test_qat_preparation_of_a_model_with_nothing_to_rewrite_makes_no_copy(monkeypatch):
    """prepare_for_qat rewrites only input scalers, foldable BatchNormalizations, ReLU
    layers it can absorb, 1-D and separable layers: a model with none of them is handed
    back as it is, without rebuilding a copy first (every QAT stage paid one)."""
    from edgec.stages.structure import qat_rewrite

    def no_rebuild(*args, **kwargs):
        raise AssertionError("prepare_for_qat rebuilt a model with nothing to rewrite")

    model = _model(dropout=True)
    monkeypatch.setattr(qat_rewrite, "rebuild", no_rebuild)
    prepared = qat_rewrite.prepare_for_qat(model, np.zeros((2, 6, 6, 1), np.float32))
    assert prepared.model is model and prepared.rewrites == () and prepared.input_scale == 1.0


def _traces(monkeypatch) -> list[str]:
    """The names of the functions TensorFlow traces from now on (tf.function and tf.data)."""
    from tensorflow.python.eager.polymorphic_function import tracing_compilation

    traced: list[str] = []
    create = tracing_compilation._create_concrete_function

    def counting(*args, **kwargs):
        function = create(*args, **kwargs)
        traced.append(str(function.name))
        return function

    monkeypatch.setattr(tracing_compilation, "_create_concrete_function", counting)
    return traced


def test_evaluating_a_model_again_traces_nothing_and_measures_the_same(
    train_validation, monkeypatch
):
    """evaluate_model (each stage's before/after and every epoch line), proven_equal and the
    QAT range probe predict through ``pipeline.outputs.model_outputs``: Keras's own
    ``predict`` of an array built an input pipeline and traced three tf.data functions on
    every call (a small CNN on 180 samples: 48 ms a call, 9 ms from a batched dataset). The
    model's call is traced once per model and given predict's batches: the outputs are
    bit-identical."""
    from edgec.pipeline.outputs import model_outputs
    from edgec.stages.training import evaluate_model

    _, validation = train_validation
    model = _model(dropout=False)
    first = evaluate_model(model, validation, "classes")  # traces the model's call
    traced = _traces(monkeypatch)
    assert evaluate_model(model, validation, "classes") == first
    assert traced == []
    big = np.concatenate([validation.x] * 14)  # 280 samples: a full and a partial batch
    np.testing.assert_array_equal(
        model_outputs(model, big), model.predict(big, batch_size=256, verbose=0)
    )


def test_the_qat_check_plans_the_rewrite_without_rebuilding_or_predicting(
    train_validation, monkeypatch
):
    """Validating a QAT recipe checks the layers ``prepare_for_qat`` would make (a Conv2D
    with its BatchNormalization folded in, here) against TF-MOT's registry without
    rebuilding the model or proving the rebuild: the stage rebuilds and proves the model
    it trains when it runs. The check used to pay a rebuild and two predict traces."""
    from edgec._tf import keras
    from edgec.errors import InputError
    from edgec.stages.structure import qat_rewrite

    def refused(*args, **kwargs):
        raise AssertionError("the QAT check rebuilt or predicted")

    train, _ = train_validation
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    monkeypatch.setattr(qat_rewrite, "rebuild", refused)
    monkeypatch.setattr(qat_rewrite, "proven_equal", refused)
    plan = _planned({"qat": True}, model, train)
    assert plan.stages[0].spec.type == "qat"
    kinds = [type(layer).__name__ for layer in qat_rewrite.qat_layers(model)]
    assert kinds == ["Conv2D", "Flatten", "Dense"]  # BN folded, ReLU taken in

    unsupported = keras.Sequential(
        [keras.layers.Input((6, 6, 1)), keras.layers.Lambda(lambda x: x * 2.0),
         keras.layers.Flatten(), keras.layers.Dense(3)]
    )  # fmt: skip
    with pytest.raises(InputError, match="cannot be quantization-aware trained"):
        _planned({"qat": True}, unsupported, train)


def test_layers_tf_mot_has_no_config_for_are_quantization_aware_trained_to_int8(
    train_validation,
):
    """TF-MOT has no QAT config for a LayerNormalization, a UnitNormalization, a Maximum, a
    Minimum or an Average, and the QAT check refused each ("use BatchNormalization after a
    Conv/Dense", "has no default 8-bit QAT configuration"). The normalizations are left
    float, as an Embedding is (``left_float``): the converter's calibration quantizes them
    (UnitNormalization: one int8 L2_NORMALIZATION). The others
    get the Add config (their output quantized): the converter gives a MAXIMUM's or
    MINIMUM's inputs and output one scale (they compare raw int8 values), requantizing
    what differs. Every op of the int8 model is int8. (No runtime runs it here: on one CI
    run LiteRT aborted in allocate_tensors on this model, in this worker; builds run
    LiteRT in the model process, where an abort is the build's error.)"""
    from edgec._tf import keras, tfmot
    from edgec.artifact.tflite_model import TfliteModel
    from edgec.pipeline.convert import convert_int8
    from edgec.stages.qat_prepare import annotate, init_activation_ranges, left_float

    train, _ = train_validation
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    a = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    b = keras.layers.Conv2D(4, 3)(inputs)
    low, high = keras.layers.Minimum()([a, b]), keras.layers.Maximum()([a, b])
    h = keras.layers.LayerNormalization(name="norm")(keras.layers.Average()([low, high]))
    h = keras.layers.UnitNormalization(name="unit")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    _planned({"qat": True}, model, train)  # the stage's check passes
    assert left_float(model) == ["norm", "unit"]
    annotated, scope = annotate(model)
    with tfmot.quantization.keras.quantize_scope(scope):
        qat_model = tfmot.quantization.keras.quantize_apply(annotated)
    init_activation_ranges(qat_model, model, train.x[:64])  # as the stage does
    data = convert_int8(qat_model, train.x[:16])
    flat = TfliteModel.from_bytes(data)
    assert {"MINIMUM", "MAXIMUM", "MEAN", "RSQRT", "L2_NORMALIZATION"} <= set(flat.op_names)
    assert {flat.tensors[t].dtype for op in flat.operators for t in op.outputs} == {"int8"}
    for op in (op for op in flat.operators if op.name in ("MINIMUM", "MAXIMUM")):
        assert len({flat.tensors[t].scales for t in (*op.inputs, *op.outputs)}) == 1


def test_qat_annotation_clones_the_model_once(monkeypatch):
    """``annotate`` wraps every layer in one clone (relu6 layers with their own config, the
    others as ``quantize_annotate_model`` wraps them) instead of cloning once for the relu6
    configs and again through ``quantize_annotate_model``."""
    from edgec._tf import keras
    from edgec.stages.qat_prepare import annotate

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu6"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    clones: list[object] = []
    clone = keras.models.clone_model

    def counting(*args, **kwargs):
        clones.append(args[0])
        return clone(*args, **kwargs)

    monkeypatch.setattr(keras.models, "clone_model", counting)
    annotated, scope = annotate(model)
    assert len(clones) == 1
    assert [type(layer).__name__ for layer in annotated.layers] == ["QuantizeAnnotate"] * 3
    conv, flatten, dense = annotated.layers
    assert type(conv.quantize_config).__name__ in scope  # the relu6 config
    assert flatten.quantize_config is None and dense.quantize_config is None
    assert [layer.layer for layer in annotated.layers] == model.layers  # the model's weights


def test_teacher_targets_are_predicted_once_for_all_stages(train_validation, monkeypatch):
    """With x-only data a recipe starting with distill trains on the teacher's outputs;
    each stage asked for them again (a prediction of all the training data per stage)."""
    import dataclasses

    from edgec.pipeline import outputs
    from edgec.stages import plan as compress

    train, validation = train_validation
    teacher = _model(dropout=False)
    plan = compress.CompressionPlan(
        recipe=None, stages=[], task="classes", targets_from="teacher", teacher=teacher
    )
    calls: list[int] = []
    model_outputs = outputs.model_outputs

    def counting(model, x, *args, **kwargs):
        calls.append(len(x))
        return model_outputs(model, x, *args, **kwargs)

    monkeypatch.setattr(outputs, "model_outputs", counting)
    x_only = dataclasses.replace(train, y=None)
    first = plan.labelled(x_only)
    again = plan.labelled(x_only)
    assert len(calls) == 1 and again is first
    assert plan.labelled(validation) is not first and len(calls) == 2
    want = teacher.predict(x_only.x, batch_size=256, verbose=0).argmax(1)
    np.testing.assert_array_equal(first.y, want)


def test_augmentation_layers_are_left_out_of_qat_and_the_input_rescaling_behind_them_moves(
    train_validation,
):
    """Data augmentation inside the model (Keras tutorials put RandomFlip and friends
    there) is the identity at inference, and TF-MOT has no QAT config for it: every recipe
    with QAT failed on "layer 'random_flip' (RandomFlip) has no default 8-bit QAT
    configuration". QAT's rewrite now leaves it out, proven equal; the Rescaling behind
    it still moves into the input quantization."""
    from edgec._tf import keras
    from edgec.stages.structure import qat_rewrite

    train, _ = train_validation
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((6, 6, 1)),
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomRotation(0.1),
            keras.layers.GaussianNoise(0.1),
            keras.layers.Rescaling(0.5),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    plan = _planned({"qat": True}, model, train)  # the stage's check passes
    assert plan.stages[0].spec.type == "qat"
    kinds = [type(layer).__name__ for layer in qat_rewrite.qat_layers(model)]
    assert kinds == ["Conv2D", "Flatten", "Dense"]
    prepared = qat_rewrite.prepare_for_qat(model, train.x[:8])
    assert prepared.input_scale == 0.5
    assert [type(layer).__name__ for layer in prepared.model.layers] == ["InputLayer", *kinds]
    assert any("random_flip: RandomFlip left out of QAT" in r for r in prepared.rewrites)


def test_mobilenet_v3_s_parts_are_quantization_aware_trained_and_ship_as_int8_ops(
    train_validation,
):
    """Keras' MobileNetV3 (tf_keras' keras.applications writes it so) failed every recipe
    with QAT: its hard_sigmoid ``ReLU(6.0)(x + 3.0) * (1.0 / 6.0)`` is TFOpLambda layers
    ("cannot be quantization-aware trained"), its hard_swish and squeeze-and-excite a
    Multiply ("no default 8-bit QAT configuration"), and its input Rescaling(1 / 127.5,
    offset=-1) before a zero-padded conv folds nowhere exactly ("QAT can only fold ...").
    Each Multiply([x, hard_sigmoid(x)]) becomes one hard_swish Activation, a hard_sigmoid
    after a linear conv that conv's activation, proven equal; the input Rescaling stays,
    trained in float. TF-MOT applies QAT to the result, and the converter ships it as int8
    ops TFLM runs: one HARD_SWISH, the Rescaling's MUL and ADD, the squeeze-and-excite's
    MULs."""
    from edgec._tf import keras, tfmot
    from edgec.artifact.tflite_model import TfliteModel
    from edgec.pipeline.convert import convert_int8
    from edgec.stages.qat_prepare import annotate
    from edgec.stages.structure import qat_rewrite

    def hard_sigmoid(x):
        return keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)

    train, _ = train_validation
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    scaled = keras.layers.Rescaling(0.5, offset=-1.0, name="to_unit")(inputs)
    h = keras.layers.Conv2D(4, 3, padding="same")(scaled)
    h = keras.layers.Multiply()([h, hard_sigmoid(h)])  # hard_swish
    s = keras.layers.Conv2D(4, 1)(keras.layers.GlobalAveragePooling2D(keepdims=True)(h))
    h = keras.layers.Multiply()([h, hard_sigmoid(s)])  # squeeze-and-excite
    # ELU, an EEGNet's activation, as a layer and as a conv's: TF-MOT has no rule for it
    # ("is not supported", "Activation elu not supported"); the converter leaves it float32
    # between DEQUANTIZE and QUANTIZE, which the conversion joins into int8 ELU ops
    h = keras.layers.Conv2D(4, 1, activation="elu")(h)
    h = keras.layers.ELU()(keras.layers.Conv2D(4, 1)(h))
    # a Rescaling inside the model ("QAT takes Rescaling only right after the input"):
    # its output quantized, as a kept BatchNormalization's
    h = keras.layers.Rescaling(0.5, name="halve")(keras.layers.Flatten()(h))
    # and a PReLU ("has no default 8-bit QAT configuration"): its output quantized too
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.PReLU()(h)))

    plan = _planned({"qat": True}, model, train)  # the stage's check passes
    assert plan.stages[0].spec.type == "qat"
    prepared = qat_rewrite.prepare_for_qat(model, train.x[:16])
    kinds = [type(layer).__name__ for layer in prepared.model.layers]
    assert "TFOpLambda" not in kinds and kinds.count("Activation") == 1, kinds
    functions = [layer.activation.__name__ for layer in prepared.model.layers
                 if hasattr(layer, "activation")]  # fmt: skip
    assert functions.count("hard_silu") == functions.count("keras3_hard_sigmoid") == 1
    # the squeeze-and-excite's hard_sigmoid taken into its 1x1 conv, as a plain build's
    # converter fuses it (+ 3 into the bias, relu6 into the op): no ADD of its own
    se_conv = prepared.model.layers[kinds.index("GlobalAveragePooling2D") + 1]
    assert se_conv.activation.__name__ == "keras3_hard_sigmoid", kinds
    assert list(prepared.kept) == ["to_unit"]
    annotated, scope = annotate(prepared.model)
    wrapped = {getattr(layer, "layer", layer).name for layer in annotated.layers
               if type(layer).__name__ == "QuantizeAnnotate"}  # fmt: skip
    assert "halve" in wrapped and "to_unit" not in wrapped  # the input's: trained in float
    with tfmot.quantization.keras.quantize_scope(scope):
        qat_model = tfmot.quantization.keras.quantize_apply(annotated)
    flat = TfliteModel.from_bytes(convert_int8(qat_model, train.x[:16]))
    ops = [op.name for op in flat.operators]
    assert ops.count("HARD_SWISH") == 1 and ops[:2] == ["MUL", "ADD"], ops
    assert ops.count("ELU") == 2 and "DEQUANTIZE" not in ops, ops
    assert ops.count("ADD") == 1, ops  # the input Rescaling's
    # "halve" and the Flatten (the converter orders them as it likes), the PReLU
    assert sorted(ops[-4:-2]) == ["MUL", "RESHAPE"], ops
    assert ops[-2:] == ["PRELU", "FULLY_CONNECTED"], ops
    assert {flat.tensors[t].dtype for op in flat.operators for t in op.outputs} == {"int8"}


def test_activity_regularizers_are_rebuilt_away_before_tf_mot_wraps_the_model():
    """TF-MOT's wrappers carry over the activity loss tf_keras made when the model was built:
    a pruning fit of a model with ``Dense(activity_regularizer=...)`` or an
    ActivityRegularization layer failed ("... is out of scope and cannot be used here"),
    an internal error in every prune, cluster or QAT recipe. The model is rebuilt without
    them first (a training loss only), its outputs proven the same, and the pruning fit
    runs."""
    from edgec._tf import keras, tfmot
    from edgec.stages.training import without_activity_penalties

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, activity_regularizer="l2", name="conv")(inputs)
    h = keras.layers.ActivityRegularization(l1=0.01, name="penalty")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(h))
    data = _data(32, 0)
    rebuilt, changed = without_activity_penalties(model, data.x)
    assert changed == ["conv", "penalty"]
    assert "penalty" not in [layer.name for layer in rebuilt.layers]
    np.testing.assert_array_equal(rebuilt(data.x).numpy(), model(data.x).numpy())
    pruned = tfmot.sparsity.keras.prune_low_magnitude(rebuilt)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    step = tfmot.sparsity.keras.UpdatePruningStep()
    pruned.fit(data.x, data.y, epochs=1, batch_size=16, verbose=0, callbacks=[step])
    assert without_activity_penalties(rebuilt, data.x) == (rebuilt, [])
