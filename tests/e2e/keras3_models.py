"""Builds the Keras 3 test models exactly as a Keras 3 user does: ``import keras``.

Run in a subprocess with a clean environment (no TF_USE_LEGACY_KERAS), once per test run,
by ``tests/support/keras3.py``: ``python keras3_models.py OUT_DIR [BAD_NAME ...]``. Tiny,
seeded, trained briefly on deterministic data (scikit-learn digits, generated sine waves).
Every e2e test that needs a Keras 3 file reads it from here: one Keras 3 import per run.
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers
from sklearn.datasets import load_digits

out = Path(sys.argv[1])
keras.utils.set_random_seed(0)


def fit(model, x, y, epochs, loss="sparse_categorical_crossentropy"):
    # jit_compile=False: Keras 3's default ("auto") compiles each tiny model's training step
    # with XLA, which took longer than the training itself
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss, jit_compile=False)
    # The optimizer's variables made before fit: made in fit's first trace, TensorFlow
    # traces the training step a second time (measured: 2 traces and 0.76-1.03 s of CPU for
    # the CNN's fit, 1 trace and 0.52 s built ahead; the trained weights bit-identical)
    model.optimizer.build(model.trainable_variables)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


digits = load_digits()
x_img = (digits.images / 16.0).astype("float32")[..., None][:600]
y_img = digits.target[:600]
np.savez(out / "digits.npz", x=x_img, y=y_img)

# Sequential CNN with Dropout and softmax, saved as .keras and .h5
cnn = fit(keras.Sequential([
    keras.Input((8, 8, 1)),
    layers.Conv2D(8, 3, activation="relu"),
    layers.Dropout(0.2),
    layers.Flatten(),
    layers.Dense(10, activation="softmax"),
]), x_img, y_img, 6)  # fmt: skip
cnn.save(out / "cnn.keras")
cnn.save(out / "cnn.h5")

# Functional residual net: Add, BatchNormalization, relu6; also model.export()
inputs = keras.Input((8, 8, 1))
h = layers.Conv2D(16, 3, padding="same")(inputs)
h = layers.BatchNormalization()(h)
h = layers.Activation("relu6")(h)
branch = layers.Conv2D(16, 3, padding="same", activation="relu6")(h)
h = layers.Add()([h, branch])
h = layers.Flatten()(h)
residual = fit(keras.Model(inputs, layers.Dense(10, activation="softmax")(h)), x_img, y_img, 8)
residual.save(out / "residual.keras")
residual.export(str(out / "residual_export"), verbose=False)

# Keyword-spotting-like: Conv2D(activation="relu") then BatchNormalization, three times
# (the BN before the depthwise's zero padding cannot be folded exactly; the others can).
# Momentum 0.9: the moving statistics settle within the short training.
inputs = keras.Input((8, 8, 1))
h = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
h = layers.BatchNormalization(momentum=0.9)(h)
h = layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
h = layers.BatchNormalization(momentum=0.9)(h)
h = layers.Conv2D(16, 1, activation="relu")(h)
h = layers.BatchNormalization(momentum=0.9)(h)
kws_bn = keras.Model(inputs, layers.Dense(10)(layers.Flatten()(h)), name="kws_like")
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
fit(kws_bn, x_img, y_img, 8, loss=loss).save(out / "kws_bn.keras")

# Raw sensor counts (0..4095): three sine frequencies; Rescaling input, Conv1D, SeparableConv1D
rng = np.random.default_rng(0)
y_seq = rng.integers(0, 3, 600)
t = np.arange(32)
phase = rng.uniform(0, 2 * np.pi, 600)[:, None]
wave = np.sin((y_seq[:, None] + 1) * 2 * np.pi * t / 32 + phase)
counts = np.round(2048 + 1800 * wave + rng.normal(0, 60, wave.shape)).clip(0, 4095)
x_raw = counts.astype("float32")[..., None]
np.savez(out / "counts.npz", x=x_raw, y=y_seq)
conv1d = fit(keras.Sequential([
    keras.Input((32, 1)),
    layers.Rescaling(1 / 2048.0, offset=-1.0),
    layers.Conv1D(8, 5, activation="relu"),
    layers.SeparableConv1D(8, 5, activation="relu"),
    layers.GlobalAveragePooling1D(),
    layers.Dense(3, activation="softmax"),
]), x_raw, y_seq, 8)  # fmt: skip
conv1d.save(out / "conv1d.keras")

# LSTM classifier and a GRU (the GRU only has to fail clearly) on the scaled waves, every
# fourth sample: 8 steps (1, 2 or 3 periods, below Nyquist) keep the recurrent graphs,
# unrolled for conversion and QAT, a quarter as long (and the GRU trained in 3 epochs to
# 77% instead of 41% at 16 steps)
x_wave = (x_raw[:, ::4] / 2048.0 - 1.0).astype("float32")
np.savez(out / "waves.npz", x=x_wave, y=y_seq)
lstm = fit(keras.Sequential(
    [keras.Input((8, 1)), layers.LSTM(12), layers.Dense(3, activation="softmax")]
), x_wave, y_seq, 6)  # fmt: skip
lstm.save(out / "lstm.keras")
# The same in both directions: Bidirectional(LSTM) crashed the calibrator (SIGSEGV) until
# its two LSTMs were unrolled too
bidirectional = fit(keras.Sequential([
    keras.Input((8, 1)),
    layers.Bidirectional(layers.LSTM(6)),
    layers.Dense(3, activation="softmax"),
]), x_wave, y_seq, 6)  # fmt: skip
bidirectional.save(out / "bidirectional.keras")
keras.Sequential([keras.Input((8, 1)), layers.GRU(8), layers.Dense(3)]).save(out / "gru.keras")
keras.Sequential([keras.Input((8, 1)), layers.Bidirectional(layers.GRU(4)), layers.Dense(3)]).save(
    out / "bigru.keras"
)

# Dense + BN autoencoder, x-only data
basis = rng.normal(size=(4, 24)).astype("float32")
x_ae = (rng.normal(size=(600, 4)).astype("float32") @ basis) / 4
np.savez(out / "ae.npz", x=x_ae)
ae = keras.Sequential([keras.Input((24,))])
for units in (16, 8):
    ae.add(layers.Dense(units))
    ae.add(layers.BatchNormalization())
    ae.add(layers.ReLU())
ae.add(layers.Dense(24))
fit(ae, x_ae, x_ae, 10, loss="mse").save(out / "ae.keras")

# MobileNetV2's layer pattern, two blocks of it at 16x16x3 (keras.applications' smallest
# MobileNetV2, 32x32 and 17 blocks, made the slowest builds of the suite): a stride-2 stem,
# inverted residuals (1x1 expand, ZeroPadding2D + stride-2 depthwise, 1x1 linear project,
# Add where the shape stays), Conv2D without bias -> BatchNormalization -> ReLU(6.0),
# GlobalAveragePooling2D, Dropout, Dense softmax. relu6 in each of its Keras forms (QAT
# takes only the ReLU(6.0) layer): Activation("relu6") in the stem, a Conv2D's own
# activation="relu6" in the head. And MobileNetV3's, as keras.applications writes them:
# Rescaling(1 / 127.5, offset=-1) at the input (here x 2 - 1: the data is in [0, 1]) before
# a zero-padded conv, hard_swish (Activation("hard_silu")) and a squeeze-and-excite block
# whose hard_sigmoid is ReLU(6.0)(x + 3.0) * (1.0 / 6.0): keras.ops nodes, and Multiply
x_mb = np.repeat(np.kron(x_img, np.ones((1, 2, 2, 1), "float32")), 3, axis=-1)
np.savez(out / "digits16.npz", x=x_mb, y=y_img)


def conv_bn(h, filters, kernel=1, strides=1, relu6=True, depthwise=False, activation=None):
    if depthwise:
        h = layers.DepthwiseConv2D(kernel, strides, padding="valid" if strides == 2 else "same",
                                   use_bias=False)(h)  # fmt: skip
    else:
        h = layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False)(h)
    h = layers.BatchNormalization(epsilon=1e-3, momentum=0.9)(h)
    if activation:
        return layers.Activation(activation)(h)
    return layers.ReLU(6.0)(h) if relu6 else h


def squeeze_excite(h, channels):
    s = layers.GlobalAveragePooling2D(keepdims=True)(h)
    s = layers.Conv2D(channels, 1)(layers.Conv2D(8, 1, activation="relu")(s))
    return layers.Multiply()([h, layers.ReLU(6.0)(s + 3.0) * (1.0 / 6.0)])


inputs = keras.Input((16, 16, 3))
h = conv_bn(layers.Rescaling(2.0, offset=-1.0)(inputs), 8, 3, strides=2, relu6=False)  # stem
h = layers.Activation("relu6")(h)  # 8x8x8
expanded = conv_bn(h, 24)  # block 1: stride 2, 4x4x8
padded = layers.ZeroPadding2D(((0, 1), (0, 1)))(expanded)
h = conv_bn(conv_bn(padded, 0, 3, strides=2, depthwise=True), 8, relu6=False)
block = conv_bn(h, 24, activation="hard_silu")  # block 2
block = conv_bn(squeeze_excite(conv_bn(block, 0, 3, depthwise=True), 24), 8, relu6=False)
h = layers.Conv2D(32, 1, activation="relu6")(layers.Add()([h, block]))
h = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(h))
mobilenet = keras.Model(inputs, layers.Dense(10, activation="softmax")(h), name="mobilenet")
fit(mobilenet, x_mb, y_img, 10).save(out / "mobilenet.keras")

# A custom layer, registered the Keras 3 way (the same code is the --custom-objects file)
exec((Path(__file__).parent / "keras3_custom.py").read_text())
custom_inputs = keras.Input((8, 8, 1))
scaled = Scale(name="scale")(layers.Flatten()(custom_inputs))  # noqa: F821
custom = keras.Model(custom_inputs, layers.Dense(10, activation="softmax")(scaled))
fit(custom, x_img, y_img, 4).save(out / "custom.keras")

# For the rebuild: a nested Sequential (flattened), a keras.ops node (cumsum: cannot be rebuilt),
# and an unrolled GRU (converts to int8 builtin ops)
x_flat = x_img.reshape(len(x_img), 64)
np.savez(out / "flat.npz", x=x_flat, y=y_img)
flat_inputs = keras.Input((64,))
inner = keras.Sequential(
    [keras.Input((16,)), layers.Dense(16, activation="relu"), layers.Dense(10)]
)
nested = keras.Model(flat_inputs, inner(layers.Dense(16, activation="relu")(flat_inputs)))
fit(nested, x_flat, y_img, 3, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
nested.save(out / "nested.keras")
h = layers.Dense(16)(flat_inputs)
summed = keras.ops.cumsum(keras.ops.relu(h), axis=-1)
ops_model = keras.Model(flat_inputs, layers.Dense(10)(summed * 2.0))
ops_model.save(out / "ops.keras")
# trained rolled (the unrolled GRU's training cost twice as much here), then its weights
# in the unrolled GRU: the same cell, the same numbers
gru_trained = fit(keras.Sequential(
    [keras.Input((8, 1)), layers.GRU(8), layers.Dense(3, activation="softmax")]
), x_wave, y_seq, 3)  # fmt: skip
gru_unrolled = keras.Sequential(
    [keras.Input((8, 1)), layers.GRU(8, unroll=True), layers.Dense(3, activation="softmax")]
)
gru_unrolled.set_weights(gru_trained.get_weights())
gru_unrolled.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
gru_unrolled.save(out / "gru_unrolled.keras")

# Keras 3 layers whose direct conversion TFLM cannot run, where tf_keras' converts to its
# kernels, so the build converts the proven tf_keras rebuild: UpSampling2D (nearest: Keras
# 3's is TILE, tf_keras' RESIZE_NEAREST_NEIGHBOR) and LayerNormalization (Keras 3's
# negates the mean in float: DEQUANTIZE, NEG, QUANTIZE)
rebuilt_layers = fit(keras.Sequential([
    keras.Input((8, 8, 1)),
    layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
    layers.UpSampling2D(),
    layers.Conv2D(4, 3, activation="relu"),
    layers.LayerNormalization(),
    layers.Flatten(),
    layers.Dense(10, activation="softmax"),
]), x_img, y_img, 4)  # fmt: skip
rebuilt_layers.save(out / "upsample_layernorm.keras")

# Self-attention input: the digits' 8 rows
np.savez(out / "rows.npz", x=x_img[..., 0], y=y_img)

# Self-attention over the digits' 8 rows: rebuilt as tf_keras (its MultiHeadAttention from
# the shapes in Keras 3's build_config), which QAT leaves float (TF-MOT has none for it);
# then a transformer's feed-forward gelu, whose int8 GELU TFLM has no kernel for
rows_in = keras.Input((8, 8))
attended = layers.MultiHeadAttention(2, 4, name="mha")(rows_in, rows_in)
ffn = layers.Dense(8, activation="gelu", name="ffn")(attended)
mha = keras.Model(rows_in, layers.Dense(10, activation="softmax")(layers.Flatten()(ffn)))
fit(mha, x_img[..., 0], y_img, 5).save(out / "mha.keras")

# Each model's layer names as its model.summary() lists them (a functional model's
# operations: its layers and keras.ops nodes)
models = {"cnn": cnn, "residual": residual, "conv1d": conv1d, "lstm": lstm, "ae": ae,
          "mobilenet": mobilenet, "custom": custom, "nested": nested, "ops": ops_model,
          "gru_unrolled": gru_unrolled, "kws_bn": kws_bn, "bidirectional": bidirectional,
          "upsample_layernorm": rebuilt_layers, "mha": mha}  # fmt: skip
names = {f"{key}.keras": [op.name for op in getattr(m, "operations", m.layers)]
         for key, m in models.items()}  # fmt: skip
(out / "summary_names.json").write_text(json.dumps({**names, "cnn.h5": names["cnn.keras"]}))

# test_bad_input: the README's first command on a Keras 3 file (untrained: only accepted)
k3 = keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(10)])
k3.save(out / "k3.keras")

# test_hostile_inputs: one model per layer name TensorFlow refuses as a scope (argv[2:])
for index, bad_name in enumerate(sys.argv[2:]):
    bad_inputs = keras.Input((8, 8, 1))
    bad = layers.Dense(3, name=bad_name)(layers.Flatten()(bad_inputs))
    keras.Model(bad_inputs, bad).save(out / f"k3-{index}.keras")

# Token ids into an Embedding (a keyword or intent classifier over 12 tokens of 300): the
# int64 input becomes int32 (TFLM's GATHER takes int32 positions) and stays integer.
# Three classes, 40% of each sequence's tokens from its class's hundred ids, the rest
# from the first hundred.
tokens_rng = np.random.default_rng(1)
y_tok = tokens_rng.integers(0, 3, 600)
own = y_tok[:, None] * 100 + tokens_rng.integers(0, 100, (600, 12))
x_tok = np.where(tokens_rng.random((600, 12)) < 0.6, tokens_rng.integers(0, 100, (600, 12)), own)
np.savez(out / "tokens.npz", x=x_tok.astype("int64"), y=y_tok)
fit(keras.Sequential([
    keras.Input((12,), dtype="int64"),
    layers.Embedding(300, 16),
    layers.GlobalAveragePooling1D(),
    layers.Dense(16, activation="relu"),
    layers.Dense(3, activation="softmax"),
]), x_tok, y_tok, 6).save(out / "tokens.keras")  # fmt: skip

# An activation tf_keras does not have (sparsemax, along an axis: edgec rebuilds Keras 3's
# pointwise ones): its Dense cannot be rebuilt as tf_keras; a plain build converts the
# Keras 3 model as it is
rows_flat = layers.Flatten()(rows_in)
odd = layers.Dense(16, activation="sparsemax", name="odd")(rows_flat)
odd_model = keras.Model(rows_in, layers.Dense(10, activation="softmax")(odd))
fit(odd_model, x_img[..., 0], y_img, 2).save(out / "odd.keras")

# Both: an Embedding (converted through tf_keras where it can be) and a layer tf_keras
# cannot rebuild: a plain build converts the Keras 3 model as it is
ids_in = keras.Input((12,), dtype="int32")
embedded = layers.Embedding(300, 8)(ids_in)
pooled = layers.GlobalAveragePooling1D()(embedded)
odd_ids = layers.Dense(8, activation="sparsemax", name="odd")(pooled)
keras.Model(ids_in, layers.Dense(3, activation="softmax")(odd_ids)).save(out / "emb_odd.keras")

# The layers Keras defines inside its applications, in no public namespace (ConvNeXt's
# LayerScale and StochasticDepth, InceptionResNetV2's CustomScaleLayer): untrained, loaded
from keras.src.applications.convnext import LayerScale, StochasticDepth  # noqa: E402
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer  # noqa: E402

app_in = keras.Input((6, 8))
dense = layers.Dense(8)(app_in)
scaled = StochasticDepth(0.1)(LayerScale(0.5, 8)(dense))
mixed = CustomScaleLayer(0.2)([layers.Add()([dense, scaled]), dense])
keras.Model(app_in, layers.Dense(3)(layers.Flatten()(mixed))).save(out / "app_layers.keras")
