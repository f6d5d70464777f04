"""Derive the SavedModel op allowlist (``src/edgec/pipeline/savedmodel_ops.toml``) from the
SavedModels real converters write.

    PYTHONPATH=src python benchmarks/savedmodel_ops.py            # print the lists
    PYTHONPATH=src python benchmarks/savedmodel_ops.py --write    # and write the TOML

A zoo of models (every layer family edgec converts, the MLPerf Tiny reference models and
the built-in example) is saved the ways users save SavedModels: tf_keras ``model.save``
(compiled and trained a step, so optimizer and metric objects are in it),
``tf.saved_model.save`` of a tf_keras model, and Keras 3 ``model.export()`` (in a clean
process). Each SavedModel's ops are split as ``model_files.graph_ops`` splits them:
functions that can run computations (``computational``) and the checkpoint saver a load
does not run (``checkpoint``: the ops found there only). The script fails if an op that
touches files or runs Python turns up in ``computational``: the allowlist must never admit
one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOML = ROOT / "src" / "edgec" / "pipeline" / "savedmodel_ops.toml"
# ops that must never be allowed where a load runs them (the script checks its result)
NEVER = {
    "ReadFile",
    "WriteFile",
    "PyFunc",
    "PyFuncStateless",
    "EagerPyFunc",
    "SaveV2",
    "RestoreV2",
    "MergeV2Checkpoints",
    "Save",
    "Restore",
    "MatchingFiles",
    "InitializeTableFromTextFile",
    "InitializeTableFromTextFileV2",
    "WholeFileReader",
    "WholeFileReaderV2",
    "PrintV2",
    "Print",
    "ImmutableConst",
    "LoadAndRemapMatrix",
}

# Keras 3 zoo, saved with model.export() in a clean process (Keras 3 takes over tf.keras
# otherwise); the tf_keras zoo below is the same list of layers.
KERAS3 = r"""
import json, sys, keras, numpy as np
L = keras.layers
out = sys.argv[1]
zoo = json.loads(sys.argv[2])
exec(open(sys.argv[3]).read())  # defines layer_zoo(name, x, L, ops) -> the output
for name, shape in zoo:
    x = L.Input(shape)
    m = keras.Model(x, layer_zoo(name, x, L, keras.ops))
    m.export(f"{out}/k3_{name}", verbose=False)
    m.save(f"{out}/k3_{name}.keras")
"""


def layer_zoo(name: str, x, layers, ops):  # noqa: C901  one branch per family
    """The layers of model ``name`` on input ``x`` (both Keras APIs have these names);
    ``ops``: keras.ops, or TensorFlow's functions under the same names (tf_keras records
    each call as a TFOpLambda layer)."""
    L = layers  # noqa: N806
    if name == "conv2d":
        y = L.Conv2D(4, 3, padding="same", activation="relu")(x)
        y = L.BatchNormalization()(y)
        y = L.DepthwiseConv2D(3, padding="same")(y)
        y = L.SeparableConv2D(4, 3, activation="relu6")(y)
        y = L.Conv2DTranspose(4, 3, strides=2)(y)
        y = L.MaxPooling2D(2)(y)
        y = L.AveragePooling2D(2, padding="same")(y)
        y = L.ZeroPadding2D(1)(y)
        y = L.Cropping2D(1)(y)
        y = L.UpSampling2D()(y)
        y = L.ReLU(6.0)(y)
        y = L.LeakyReLU()(y)
        y = L.PReLU()(y)
        y = L.SpatialDropout2D(0.1)(y)
        y = L.GlobalAveragePooling2D()(y)
        return L.Dense(3, activation="softmax")(y)
    if name == "conv1d":
        y = L.Conv1D(4, 3, activation="tanh")(x)
        y = L.SeparableConv1D(4, 3)(y)
        y = L.DepthwiseConv1D(3)(y)
        y = L.MaxPooling1D(2)(y)
        y = L.AveragePooling1D(2)(y)
        y = L.UpSampling1D()(y)
        y = L.ZeroPadding1D(1)(y)
        y = L.Cropping1D(1)(y)
        y = L.LayerNormalization()(y)
        y = L.GlobalMaxPooling1D()(y)
        return L.Dense(2, activation="sigmoid")(y)
    if name == "dense":
        y = L.Rescaling(1 / 255.0, offset=-0.5)(x)
        a = L.Dense(8, activation="gelu")(y)
        b = L.Dense(8, activation="swish")(y)
        y = L.Concatenate()([L.Add()([a, b]), L.Multiply()([a, b]), L.Subtract()([a, b])])
        y = L.Average()([L.Maximum()([y, y]), L.Minimum()([y, y])])
        y = L.Dropout(0.2)(y)
        y = L.GaussianNoise(0.1)(y)
        y = L.Activation("elu")(y)
        y = L.Activation("hard_sigmoid")(y)
        y = L.Activation("softplus")(y)
        y = L.Reshape((4, 6))(y)
        y = L.Permute((2, 1))(y)
        y = L.Flatten()(y)
        y = L.Softmax()(y)
        return L.Dense(4, kernel_regularizer="l2", kernel_constraint="max_norm")(y)
    if name == "recurrent":
        y = L.LSTM(4, return_sequences=True)(x)
        y = L.GRU(4, return_sequences=True, reset_after=True)(y)
        y = L.Bidirectional(L.SimpleRNN(4, return_sequences=True))(y)
        y = L.TimeDistributed(L.Dense(3))(y)
        y = L.LSTM(4, unroll=True)(y)
        return L.Dense(2)(y)
    if name == "activations":
        y = L.Dense(8)(x)
        for activation in ("selu", "exponential", "softsign", "silu", "linear", "relu"):
            y = L.Activation(activation)(L.Dense(8)(y))
        y = L.ReLU(negative_slope=0.1, threshold=0.5)(y)
        y = L.ELU()(y)
        return L.Softmax(axis=-1)(y)
    if name == "norm_resize":
        y = L.Normalization(mean=0.5, variance=0.25)(x)
        y = L.Conv2D(6, 3, padding="same")(y)
        y = L.GroupNormalization(groups=3)(y)
        y = L.UnitNormalization()(y)
        y = L.Resizing(12, 12, interpolation="bilinear")(y)
        y = L.UpSampling2D(interpolation="bilinear")(y)
        return L.GlobalMaxPooling2D()(y)
    if name == "conv3d":
        y = L.Conv3D(4, 3, padding="same")(x)
        y = L.MaxPooling3D(2)(y)
        y = L.UpSampling3D(2)(y)
        y = L.ZeroPadding3D(1)(y)
        y = L.Cropping3D(1)(y)
        y = L.AveragePooling3D(2)(y)
        return L.GlobalAveragePooling3D()(y)
    if name == "math":
        y = ops.sqrt(ops.abs(x) + 1.0)
        y = ops.exp(-ops.log(y + 1.0))
        y = ops.minimum(ops.maximum(ops.square(y), 0.1), 0.9)
        y = y - ops.mean(y, axis=-1, keepdims=True)
        return L.Dense(3)(y)
    if name == "attention":
        y = L.Dense(8)(x)
        y = L.MultiHeadAttention(2, 4)(y, y)
        y = L.Attention()([y, y])
        y = L.Dot(axes=2)([y, y])
        return L.GlobalAveragePooling1D()(y)
    raise ValueError(name)


ZOO = [("conv2d", (16, 16, 3)), ("conv1d", (32, 2)), ("dense", (24,)), ("recurrent", (6, 3)),
       ("attention", (5, 4)), ("activations", (6,)), ("norm_resize", (8, 8, 3)),
       ("conv3d", (4, 4, 4, 2)), ("math", (8,))]  # fmt: skip


def tf_keras_models():
    from edgec._tf import keras
    from edgec.pipeline.example import build_example_model, example_data

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mlperf_tiny_models import WORKLOADS, build_model

    for name, shape in ZOO:
        x = keras.layers.Input(shape)
        yield name, keras.Model(x, layer_zoo(name, x, keras.layers, tf_ops())), shape
    for workload in WORKLOADS:
        yield workload.name, build_model(workload), workload.input_shape
    train, _ = example_data()
    yield "example", build_example_model(train), (8, 8, 1)


def tf_ops():
    """TensorFlow's functions under keras.ops' names (the zoo's "math" model)."""
    from types import SimpleNamespace

    from edgec._tf import tf

    def mean(t, axis, keepdims):
        return tf.reduce_mean(t, axis=axis, keepdims=keepdims)

    m = tf.math
    return SimpleNamespace(abs=m.abs, sqrt=m.sqrt, exp=m.exp, log=m.log, square=m.square,
                           maximum=m.maximum, minimum=m.minimum, mean=mean)  # fmt: skip


def save_all(folder: Path) -> tuple[list[Path], list[Path]]:
    """Every model of the zoo, saved every way: the SavedModels, and the .keras/.h5 files."""
    from edgec._tf import tf

    saved, files = [], []
    for name, model, shape in tf_keras_models():
        x = np.random.default_rng(0).normal(size=(4, *shape)).astype(np.float32)
        out = model(x)
        model.compile("adam", "mse", metrics=["mae"])
        model.fit(x, np.zeros_like(np.asarray(out)), epochs=1, verbose=0)
        for how in ("keras", "tf"):
            path = folder / f"tk_{how}_{name}"
            if how == "keras":
                model.save(path, save_format="tf")
            else:
                tf.saved_model.save(model, str(path))
            saved.append(path)
        for suffix in (".keras", ".h5"):
            model.save(folder / f"tk_{name}{suffix}")
            files.append(folder / f"tk_{name}{suffix}")
    script = folder / "zoo.py"
    script.write_text(_source(layer_zoo))
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    zoo = json.dumps([[n, list(s)] for n, s in ZOO])
    done = subprocess.run([sys.executable, "-c", KERAS3, str(folder), zoo, str(script)],
                          env=env, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the Keras 3 zoo failed:\n{done.stderr[-3000:]}")
    saved += sorted(p for p in folder.glob("k3_*") if p.is_dir())
    files += sorted(folder.glob("k3_*.keras"))
    return saved, files


def _source(function) -> str:
    import inspect

    return inspect.getsource(function)


def collect(paths: list[Path]) -> tuple[set[str], set[str]]:
    from edgec._tf import saved_model_pb2
    from edgec.pipeline.model_files import graph_ops

    computational: set[str] = set()
    other: set[str] = set()
    for path in paths:
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
        for graph in proto.meta_graphs:
            library = {f.signature.name for f in graph.graph_def.library.function}
            run, saver = graph_ops(graph)
            computational |= {op for ops in run.values() for op in ops} - library
            other |= {op for ops in saver.values() for op in ops} - library
    return computational, other - computational


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {TOML.relative_to(ROOT)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, files = save_all(Path(tmp))
        computational, checkpoint = collect(paths)
        leaked = sorted(computational & NEVER)
        if leaked:
            raise SystemExit(f"ops that touch files or run Python where they can run: {leaked}")
        text = _toml(computational, checkpoint, len(paths))
        print(text)
        if args.write:
            TOML.write_text(text)
            refused = _refused(paths + files)  # every model of the zoo must pass as data
            if refused:
                raise SystemExit("refused:\n" + "\n".join(refused))
            print(f"# model_files.examine accepts all {len(paths) + len(files)} files")


def _refused(paths: list[Path]) -> list[str]:
    from edgec.errors import EdgecError
    from edgec.pipeline import model_files

    model_files.op_allowlist.cache_clear()
    refused = []
    for path in paths:
        try:
            model_files.examine(path)
        except EdgecError as exc:
            refused.append(str(exc))
    return refused


def _toml(computational: set[str], checkpoint: set[str], count: int) -> str:
    return (
        f"# SavedModel ops edgec loads (model_files.check_ops), from {count} SavedModels\n"
        "# written by tf_keras model.save, tf.saved_model.save and Keras 3 model.export().\n"
        "# Regenerate: PYTHONPATH=src python benchmarks/savedmodel_ops.py --write\n"
        "# computational: allowed in every function that can run computations.\n"
        f"computational = {json.dumps(sorted(computational), indent=1)}\n"
        "# checkpoint: the saver's ops, allowed only where tf.saved_model.load does not run them\n"
        f"checkpoint = {json.dumps(sorted(checkpoint), indent=1)}\n"
    )


if __name__ == "__main__":
    main()
