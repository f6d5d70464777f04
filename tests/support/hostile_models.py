"""Model files that try to run code when they are loaded, each with a payload that creates
a marker file (its absence proves that nothing ran).

Each maker writes its file(s) under ``folder`` and returns the model path. They are made
the way an attacker would: by saving a real model and editing what the loaders trust
(``config.json``, ``metadata.json``, ``saved_model.pb``), so every case is a file the
real libraries read. Imports TensorFlow (e2e tests only).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def payload(marker: Path) -> str:
    """Python source of a function that creates ``marker`` (the path is a constant in its
    code, so marshalling the code object carries it)."""
    return f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]"


def _lambda_model(marker: Path, *, nested: str | None = None):
    """A tf_keras functional model with a Lambda that runs the payload; ``nested``:
    "sequential" puts it in a nested Sequential, "wrapper" in TimeDistributed."""
    from edgec._tf import keras

    fn = eval(payload(marker))  # noqa: S307  the test's own payload
    layers = keras.layers
    x_in = layers.Input((4,))
    y = layers.Dense(4, name="dense")(x_in)
    if nested == "sequential":
        y = keras.Sequential([layers.Lambda(fn, name="hidden_lambda")], name="inner")(y)
    elif nested == "wrapper":
        y = layers.Reshape((4, 1))(y)
        y = layers.TimeDistributed(layers.Lambda(fn), name="wrapped")(y)
        y = layers.Flatten()(y)
    else:
        y = layers.Lambda(fn, name="evil_lambda")(y)
    return keras.Model(x_in, layers.Dense(3, name="logits")(y))


def h5_lambda(folder: Path, marker: Path, *, nested: str | None = None) -> Path:
    path = folder / f"lambda{'_' + nested if nested else ''}.h5"
    _lambda_model(marker, nested=nested).save(path)
    _remove(marker)  # tracing the model to save it ran the payload once, here
    return path


def savedmodel_lambda(folder: Path, marker: Path) -> Path:
    """A tf_keras SavedModel whose Keras metadata holds the Lambda."""
    path = folder / "lambda_savedmodel"
    _lambda_model(marker).save(path, save_format="tf")
    _remove(marker)
    return path


def keras_steered_to_legacy(folder: Path, marker: Path) -> Path:
    """Issue 20's first case: a .keras whose metadata says Keras 2, whose config names
    TensorFlow's old built-in Keras ``Functional``, which rebuilds an old ``Lambda`` that
    runs marshalled bytecode with no safe-mode check."""
    path = folder / "steered.keras"
    _lambda_model(marker).save(path)
    _remove(marker)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    for layer in config["config"]["layers"]:
        layer["config"].pop("optional", None)  # a key the old InputLayer does not take
    config["module"] = "tensorflow.python.keras.engine.functional"
    _edit_keras(path, config=config, keras_version="2.21.0")
    return path


def keras_names_module(folder: Path, module: str) -> Path:
    """A .keras whose config names ``module`` for its model class: tf_keras imports it."""
    path = folder / f"module_{module}.keras"
    from edgec._tf import keras

    x_in = keras.layers.Input((4,))
    keras.Model(x_in, keras.layers.Dense(3)(x_in)).save(path)
    _edit_keras(path, module=module, keras_version="2.21.0")
    return path


def _edit_keras(path: Path, *, module: str | None = None, keras_version: str | None = None,
                config: dict | None = None) -> None:  # fmt: skip
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(files["config.json"]) if config is None else config
    if module is not None:
        data["module"] = module
    files["config.json"] = json.dumps(data).encode()
    if keras_version is not None:
        meta = json.loads(files["metadata.json"])
        meta["keras_version"] = keras_version
        files["metadata.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)


def keras_function_names_os_system(folder: Path) -> Path:
    """A tf_keras .keras whose Dense activation is ``{"class_name": "function", "module":
    "os", "config": "system"}``."""

    def edit(layer: dict) -> None:
        layer["config"]["activation"] = {
            "module": "os", "class_name": "function", "config": "system",
            "registered_name": "system",
        }  # fmt: skip

    return _dense_keras_edited(folder / "os_system.keras", edit)


def keras_registered_name(folder: Path) -> Path:
    """A .keras whose Dense claims a registered name nothing registered, under a module
    that is not Keras'."""

    def edit(layer: dict) -> None:
        layer["registered_name"] = "evil>Dense"
        layer["module"] = "evil_module"

    return _dense_keras_edited(folder / "registered.keras", edit)


def _dense_keras_edited(path: Path, edit) -> Path:
    """A tf_keras .keras of one Dense layer, its config's Dense entry changed by ``edit``."""
    from edgec._tf import keras

    x_in = keras.layers.Input((4,))
    keras.Model(x_in, keras.layers.Dense(3)(x_in)).save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Dense":
            edit(layer)
    _edit_keras(path, config=config)
    return path


def h5_tf_op_writes_file(folder: Path, marker: Path) -> Path:
    """An .h5 whose TFOpLambda names ``io.write_file`` (a TensorFlow function by name)."""
    import h5py

    from edgec._tf import keras, tf

    x_in = keras.layers.Input((4,))
    model = keras.Model(x_in, tf.nn.relu(keras.layers.Dense(3)(x_in)))
    path = folder / "tf_op.h5"
    model.save(path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "TFOpLambda":
                layer["config"]["function"] = "io.write_file"
                node = layer["inbound_nodes"][0]  # [layer, node, tensor, kwargs]
                node[3] = {"contents": "ran", "filename": str(marker)}
        f.attrs["model_config"] = json.dumps(config)
    return path


def h5_pickled_attribute(folder: Path, marker: Path) -> Path:
    """An .h5 whose model_config is an opaque blob holding a pickle with ``__reduce__``."""
    import pickle

    import h5py

    class Payload:
        def __reduce__(self):
            return (eval, (payload(marker) + "(0)",))

    path = folder / "pickled.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = np.void(pickle.dumps(Payload()))
        f.attrs["keras_version"] = "2.21.0"
    return path


def keras3_lambda_claiming_keras2(folder: Path, marker: Path) -> Path:
    """A Keras 3 .keras with a Lambda (``__lambda__``) whose metadata claims Keras 2."""
    import keras  # Keras 3, beside tf_keras (edgec.pipeline.keras3 imports it so too)

    path = folder / "k3_lambda.keras"
    fn = eval(payload(marker))  # noqa: S307  the test's own payload
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(fn), keras.layers.Dense(3)])
    model.save(path)
    _remove(marker)
    _edit_keras(path, keras_version="2.15.0")
    return path


def savedmodel_initializer_copies(folder: Path, source: Path, target: Path) -> Path:
    """A SavedModel with no Python in it whose resource initializer copies ``source`` to
    ``target`` (ReadFile + WriteFile) inside ``tf.saved_model.load``."""
    from edgec._tf import tf

    class Copier(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self):
            tf.io.write_file(str(target), tf.io.read_file(str(source)))

    class Module(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.copier = Copier()
            self.w = tf.Variable(tf.ones([4, 3]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            return {"y": tf.matmul(x, self.w)}

    module = Module()
    path = folder / "copier_savedmodel"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    _remove(target)  # saving ran the initializer once, here
    return path


def savedmodel_serving_reads_lazily(folder: Path, marker: Path) -> Path:
    """A SavedModel whose serving function itself writes a file (at the first call)."""
    from edgec._tf import tf

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(marker), tf.strings.as_string(tf.reduce_sum(x)))
            return {"y": x * 2.0}

    module = Module()
    path = folder / "lazy_savedmodel"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def savedmodel_py_function(folder: Path, marker: Path) -> Path:
    """A SavedModel whose serving function calls Python (``tf.numpy_function``)."""
    from edgec._tf import tf

    def touch(x):
        Path(marker).touch()
        return x

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            return {"y": tf.numpy_function(touch, [x], tf.float32)}

    module = Module()
    path = folder / "pyfunc_savedmodel"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    _remove(marker)
    return path


def keras24_embedded_lambda(folder: Path, marker: Path, source: Path | None = None) -> Path:
    """A tf_keras SavedModel with a Lambda whose Keras metadata sits where Keras 2.4 kept
    it (``saved_model.pb``'s object graph), ``keras_metadata.pb`` removed: a copy of
    ``source`` (a ``savedmodel_lambda``) if given, else saved anew."""
    if source is None:
        path = savedmodel_lambda(folder, marker)
    else:
        path = folder / source.name
        copy_tree(source, path)
    embed_keras_metadata(path)
    return path


def embed_keras_metadata(path: Path) -> None:
    """Move ``keras_metadata.pb`` into ``saved_model.pb``'s ``SavedUserObject.metadata``
    fields, as Keras 2.4 saved them (MLCommons' keyword-spotting model is one)."""
    from edgec._tf import saved_metadata_pb2, saved_model_pb2

    metadata = saved_metadata_pb2.SavedMetadata()
    metadata.ParseFromString((path / "keras_metadata.pb").read_bytes())
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    nodes = proto.meta_graphs[0].object_graph_def.nodes
    for node in metadata.nodes:
        nodes[node.node_id].user_object.metadata = node.metadata
    (path / "saved_model.pb").write_bytes(proto.SerializeToString())
    (path / "keras_metadata.pb").unlink()


def keras_memory_bomb(folder: Path) -> Path:
    """A tf_keras .keras whose Dense asks for a kernel of 2**31 units (32 GiB of float32)."""
    path = folder / "bomb.keras"
    from edgec._tf import keras

    x_in = keras.layers.Input((4,))
    keras.Model(x_in, keras.layers.Dense(3)(x_in)).save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer["config"]["units"] = 2**31
    _edit_keras(path, config=config)
    return path


def huge_config(folder: Path) -> Path:
    """A .keras whose config.json claims 100 MiB (a zip bomb of JSON whitespace)."""
    path = folder / "huge.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", " " * (100 * 2**20))
    return path


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target) if source.is_dir() else shutil.copy(source, target)


def _remove(path: Path) -> None:
    if path.exists():
        path.unlink()
