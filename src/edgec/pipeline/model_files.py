"""Model files are data: what a file is, and everything it names, checked before any
deserializer or TensorFlow loader sees it.

- **Which loader** follows from the file's verified structure, not from the version
  string it carries (``metadata.json``'s ``keras_version`` is the attacker's to write):
  a Keras 3 config has ``DTypePolicy`` objects, ``batch_shape`` and ``__keras_tensor__``
  node arguments; a tf_keras one has dtype strings, ``batch_input_shape`` and nested node
  lists. A file with both, or neither, is refused.
- **Every object a config names** (each ``class_name`` with its ``module`` and
  ``registered_name``, however deeply nested) must resolve to an allowlisted class: the
  layers, initializers, regularizers, constraints, dtype policies and models of Keras
  and tf_keras, or what ``--custom-objects`` registers. Nothing a file names is imported.
- **Code in a file** (a ``Lambda``'s marshalled bytecode, Keras 3's ``__lambda__``, a layer
  that unpickles or loads other files, TensorFlow's legacy Keras classes, which run code
  without Keras' safe-mode checks) is refused with one line naming the layer; with
  ``--trust-model`` it is loaded, and the caller says that it runs.
- **SavedModels** are read as protobuf first: every op of every function a load can run
  (resource initializers, restore functions, signatures and the functions they call) must
  be in the computational allowlist (``savedmodel_ops.toml``, derived from the
  SavedModels real converters write); the checkpoint ops only where a load does not run
  them. A TensorFlow 1 SavedModel (its init ops run on load) is refused.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from edgec import safeio
from edgec.errors import InputError, printable
from edgec.pipeline import savedmodel_wire
from edgec.pipeline.savedmodel_wire import Node, OpGraph

KERAS3, TF_KERAS, SIGNATURE = "keras3", "tf_keras", "signature"
SUFFIXES = (".keras", ".h5", ".hdf5")
TRUST_HINT = "only if you trust the file: --trust-model loads it, which runs that code"

# Classes of Keras and tf_keras that are not data: each runs code or reads other files
# when it is built from a config.
NOT_DATA = {
    "Lambda": "holds Python code (marshalled bytecode) that runs as the model loads",
    "__lambda__": "holds Python code (marshalled bytecode) that runs as the model loads",
    "TFSMLayer": "loads another SavedModel from a path it names",
    "TorchModuleWrapper": "holds a pickled PyTorch module (unpickling runs code)",
    "JaxLayer": "holds Python functions",
    "FlaxLayer": "holds Python functions",
    "StringLookup": "reads its vocabulary from a file it names",
    "IntegerLookup": "reads its vocabulary from a file it names",
    "TextVectorization": "reads its vocabulary from a file it names",
    "DenseFeatures": "builds feature columns, which read vocabulary files they name",
    "ClassMethod": "calls a method it names",
    "InstanceMethod": "calls a method it names",
    "InstanceProperty": "reads a property it names",
}
# tf_keras records a TensorFlow function called on Keras tensors (x * 2, tf.nn.relu(x)) as
# a TFOpLambda naming the function; it is data when the function computes. Prefixes and
# names of TensorFlow's API, as TFOpLambda stores them ("nn.relu", "__operators__.add").
_TF_FUNCTION_PREFIXES = ("math.", "nn.", "__operators__.", "linalg.", "signal.", "image.resize",
                         "compat.v1.math.", "compat.v1.nn.")  # fmt: skip
_TF_FUNCTIONS = frozenset(
    [
        "abs",
        "add",
        "argmax",
        "argmin",
        "broadcast_to",
        "cast",
        "clip_by_norm",
        "clip_by_value",
        "concat",
        "cumsum",
        "divide",
        "einsum",
        "equal",
        "exp",
        "expand_dims",
        "fill",
        "gather",
        "gather_nd",
        "greater",
        "identity",
        "less",
        "matmul",
        "maximum",
        "minimum",
        "multiply",
        "norm",
        "one_hot",
        "ones_like",
        "pad",
        "range",
        "reduce_all",
        "reduce_any",
        "reduce_logsumexp",
        "reduce_max",
        "reduce_mean",
        "reduce_min",
        "reduce_prod",
        "reduce_sum",
        "repeat",
        "reshape",
        "reverse",
        "round",
        "rank",
        "shape",
        "sigmoid",
        "sign",
        "size",
        "slice",
        "sort",
        "split",
        "sqrt",
        "square",
        "squeeze",
        "stack",
        "strided_slice",
        "subtract",
        "tanh",
        "tensordot",
        "tile",
        "transpose",
        "truediv",
        "unstack",
        "where",
        "zeros_like",
        "compat.v1.gather",
        "compat.v1.pad",
        "compat.v1.reduce_max",
        "compat.v1.reduce_mean",
        "compat.v1.reduce_min",
        "compat.v1.reduce_sum",
        "compat.v1.squeeze",
        "compat.v1.transpose",
    ]
)
_OP_LAYERS = ("TFOpLambda", "SlicingOpLambda")
# Plain data in configs: tensors in node arguments, tuples, shapes, constants.
_DATA_CLASSES = frozenset(
    [
        "__keras_tensor__",
        "__tensor__",
        "__numpy__",
        "__bytes__",
        "__tuple__",
        "__ellipsis__",
        "__slice__",
        "TensorShape",
    ]
)
_TYPE_SPECS = frozenset(("tf.TensorSpec",))  # tf_keras' saved input specs ("TypeSpec")
_KERAS_PACKAGES = ("keras", "tf_keras")
# TensorFlow's own initializers (tf.constant_initializer, tf.zeros_initializer, ...): a
# tf_keras layer given one saves it under this module, and tf_keras' loader builds it from
# its config of numbers (tf_keras' EfficientNetV2 gives its classifier
# tf.constant_initializer(0)). Only these classes of this one module; any other class a
# file names in a TensorFlow module is refused as code.
_TF_INITIALIZERS_MODULE = "tensorflow.python.ops.init_ops_v2"
_TF_INITIALIZERS = {  # class -> the public TensorFlow function that makes it
    "Constant": "constant_initializer",
    "Zeros": "zeros_initializer",
    "Ones": "ones_initializer",
    "RandomNormal": "random_normal_initializer",
    "RandomUniform": "random_uniform_initializer",
}


@dataclass(frozen=True)
class ModelFile:
    """What a model file is, once checked: ``kind`` (KERAS3, TF_KERAS or SIGNATURE: a
    SavedModel without Keras metadata) and the code it carries (loaded only with trust)."""

    path: Path
    kind: str
    code: tuple[str, ...] = ()


@dataclass(frozen=True)
class Allowlist:
    """The classes one framework may build from a config: name -> the modules it may be
    named under (its public namespaces and its defining module); functions by name."""

    classes: dict[str, frozenset[str]]
    functions: frozenset[str]
    custom: frozenset[str] = frozenset()  # --custom-objects (and their registered names)


def examine(path: Path, custom: frozenset[str] = frozenset(), *, trust: bool = False) -> ModelFile:
    """Check ``path`` (a .keras/.h5 file or a SavedModel folder) without loading it.

    ``custom``: the names ``--custom-objects`` defines (and their registered names).
    With ``trust``, code in the file is listed in the result instead of refused; classes
    and modules are not checked (the file is trusted like code).
    """
    check_model_path(path)
    if path.is_dir():
        return _examine_savedmodel(path, custom, trust)
    config = _keras_archive_config(path) if path.suffix.lower() == ".keras" else _h5_config(path)
    kind = keras_kind(config, path)
    checker = _Checker(path, allowlist(kind, custom), trust=trust)
    checker.top(config)
    return ModelFile(path, kind, tuple(checker.code))


def precheck(path: Path, *, trust: bool = False) -> None:
    """What ``examine`` can refuse from the file's bytes alone, without TensorFlow: the
    caps of a .keras archive, an .h5 file or a SavedModel folder, its config's JSON, kind
    and layer names, the modules it names and the code it holds (with ``trust``, code is
    not refused); a SavedModel's ops and Keras metadata, read by ``savedmodel_wire``.
    Classes and functions are checked against the Keras allowlists by ``examine``, which
    needs TensorFlow (and parses a SavedModel again with TensorFlow's protobuf): the model
    process runs this first, so a file refused here is refused before TensorFlow's import
    (seconds)."""
    check_model_path(path)
    if path.is_dir():
        _precheck_savedmodel(path, trust)
        return
    config = _keras_archive_config(path) if path.suffix.lower() == ".keras" else _h5_config(path)
    keras_kind(config, path)
    _Checker(path, None, trust=trust).top(config)


def sandboxed_examine(payload: dict[str, Any], emit: Any) -> dict[str, Any]:
    """The model process's first call (``edgec.sandbox.worker``): ``precheck``."""
    precheck(Path(payload["path"]), trust=bool(payload["trust"]))
    return {}


def check_model_path(path: Path) -> None:
    """What can be said of a model without reading it: it exists, and is a .keras/.h5
    file or a folder (a SavedModel)."""
    if not path.exists():
        raise InputError(f"model {path} does not exist")
    if not path.is_dir() and path.suffix.lower() not in SUFFIXES:
        converted = path.suffix.lower() == ".tflite"
        raise InputError(
            f"model {path} is "
            + ("a converted .tflite model, not a Keras model" if converted
               else "not a Keras model file"),
            hint="`edgec check MODEL.tflite --target T` checks a .tflite as it is; a build "
            "takes a Keras .keras or .h5 file, or a SavedModel folder" if converted
            else "give a Keras .keras or .h5 file, or a SavedModel folder",
        )  # fmt: skip


# ------------------------------------------------------------------ .keras and .h5


def _keras_archive_config(path: Path) -> dict:
    """config.json of a .keras archive, its members checked first (sizes, compression,
    its weights' datasets: ``safeio``) so no loader later extracts a bomb."""
    where = f"model {path}"
    with safeio.open_archive(path, "model", kind=".keras") as archive:
        names = set(archive.namelist())
        if "config.json" not in names:
            raise InputError(f"model {path} is not a Keras archive (no config.json)")
        text = safeio.read_member(archive, "config.json", where,
                                  limit=safeio.MAX_JSON_MEMBER_BYTES)  # fmt: skip
        for weights in sorted(n for n in names if n.endswith(".h5")):
            safeio.check_hdf5_member(archive, weights, f"{where}: {weights}",
                                     limit_bytes=safeio.MAX_ARCHIVE_BYTES)  # fmt: skip
    config = _json_object(text, path, "config.json")
    check_config_names(config, str(path))
    return config


def _h5_config(path: Path) -> dict:
    import h5py

    where = f"model {path}"
    # a regular file whose datasets are within the caps, read from their headers
    safeio.check_hdf5(safeio.regular_file(path, "model"), where,
                      limit_bytes=safeio.MAX_ARCHIVE_BYTES)  # fmt: skip
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"model {path} is not a readable HDF5 file ({exc})") from None
    if raw is None:
        raise InputError(
            f"model {path} holds weights only (no model_config)",
            hint="save the whole model with model.save(), not save_weights()",
        )
    if not isinstance(raw, bytes | str):  # an opaque, object or array attribute: not JSON
        raise InputError(f"model {path}: its model_config attribute is not JSON text")
    config = _json_object(raw, path, "model_config")
    check_config_names(config, str(path))
    return config


def _json_object(text: bytes | str, path: Path, what: str) -> dict:
    value = safeio.load_json(text, f"model {path}: {what}")  # strict, bounded depth
    if not isinstance(value, dict):
        raise InputError(f"model {path}: {what} is not a JSON object")
    return value


_KERAS3_POLICIES = frozenset(("DTypePolicy", "FloatDTypePolicy", "QuantizedDTypePolicy",
                              "QuantizedFloat8DTypePolicy", "DTypePolicyMap"))  # fmt: skip


def keras_kind(config: dict, path: Path) -> str:
    """KERAS3 or TF_KERAS, from marks only one of them leaves in a config: Keras 3's dtype
    policy objects, ``__keras_tensor__`` node arguments and ``batch_shape``; tf_keras'
    ``batch_input_shape``, ``Policy`` objects and nested node lists."""
    keras3 = tf_keras = 0
    for node in _dicts(config):
        cls, inner = node.get("class_name"), node.get("config")
        keras3 += cls in _KERAS3_POLICIES or cls == "__keras_tensor__"
        tf_keras += cls == "Policy"
        if isinstance(inner, dict):
            keras3 += "batch_shape" in inner
            tf_keras += "batch_input_shape" in inner
        nodes = node.get("inbound_nodes")
        tf_keras += isinstance(nodes, list) and bool(nodes) and isinstance(nodes[0], list)
    if keras3 and not tf_keras:
        return KERAS3
    if tf_keras and not keras3:
        return TF_KERAS
    what = "both Keras 3 and tf_keras structures" if keras3 else "no Keras layer structure"
    raise InputError(
        f"model {path} has {what}: it was not written by Keras",
        hint="save the model again with model.save()",
    )


def _dicts(value: Any) -> Iterator[dict]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# ------------------------------------------------------------------ the allowlists


def allowlist(kind: str, custom: frozenset[str] = frozenset()) -> Allowlist:
    base = _keras3_allowlist() if kind == KERAS3 else _tf_keras_allowlist()
    return Allowlist(base.classes, base.functions, custom)


@functools.cache
def _tf_keras_allowlist() -> Allowlist:
    from edgec._tf import keras, tf

    namespaces = {
        "keras.layers": keras.layers,
        "keras.layers.experimental": keras.layers.experimental,
        "keras.layers.experimental.preprocessing": keras.layers.experimental.preprocessing,
        "keras.initializers": keras.initializers,
        "keras.regularizers": keras.regularizers,
        "keras.constraints": keras.constraints,
        "keras.metrics": keras.metrics,  # tf_keras SavedModels revive compiled metrics
        "keras.mixed_precision": keras.mixed_precision,
        "keras.models": keras.models,
        "keras": keras,
    }
    classes = _public_classes(namespaces, "tf_keras")
    for name, function in _TF_INITIALIZERS.items():  # where this TensorFlow defines them
        made = getattr(tf, function, None)
        if made is not None and (made.__name__, made.__module__) == (name, _TF_INITIALIZERS_MODULE):
            classes.setdefault(name, set()).add(_TF_INITIALIZERS_MODULE)
    functional = next(c for c in keras.Sequential.__mro__ if c.__name__ == "Functional")
    classes.setdefault("Functional", set()).update(_defined_in(functional, "tf_keras"))
    functions = {
        n for m in (keras.activations, keras.metrics, keras.losses) for n in _public_functions(m)
    }
    return Allowlist({k: frozenset(v) for k, v in classes.items()}, frozenset(functions))


@functools.cache
def _keras3_allowlist() -> Allowlist:
    from edgec.pipeline import keras3

    classes, functions = keras3.allowlist()
    return Allowlist({k: frozenset(v) for k, v in classes.items()}, frozenset(functions))


def _public_classes(namespaces: dict[str, Any], package: str) -> dict[str, set[str]]:
    """Name -> modules, for every class in ``namespaces`` (``{"keras.layers": module}``)."""
    classes: dict[str, set[str]] = {}
    for space, module in namespaces.items():
        for name in dir(module):
            obj = getattr(module, name, None)
            if isinstance(obj, type) and not name.startswith("_"):
                modules = classes.setdefault(name, set())
                modules.update({space, space.replace("keras", package, 1)})
                modules.update(_defined_in(obj, package))
    return classes


def _defined_in(cls: type, package: str) -> set[str]:
    """The module ``cls`` is defined in, as configs name it (tf_keras writes ``keras.``)."""
    module = cls.__module__
    return {module, module.replace(package, "keras", 1)}


def _public_functions(module: Any) -> set[str]:
    return {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))}


# ------------------------------------------------------------------ the config checker


@dataclass
class _Checker:
    path: Path
    allow: Allowlist | None  # None: classes and functions are left to a later check
    trust: bool = False
    revivable: bool = False  # SavedModel metadata: an unknown class is rebuilt from the graph
    code: list[str] = field(default_factory=list)

    def top(self, config: dict) -> None:
        # compile=False: the loaders drop the top-level compile_config unread
        self.check({k: v for k, v in config.items() if k != "compile_config"}, "")

    def check(self, value: Any, layer: str) -> None:
        stack: list[tuple[Any, str]] = [(value, layer)]
        while stack:
            item, where = stack.pop()
            if isinstance(item, list):
                stack.extend((v, where) for v in item)
                continue
            if not isinstance(item, dict):
                continue
            if "class_name" in item:
                where = self._node(item, where)
            elif item.get("function_type") == "lambda":  # a Lambda's marshalled code
                self._code(where, "Lambda", NOT_DATA["Lambda"])
            stack.extend((v, where) for v in item.values())

    def _node(self, node: dict, where: str) -> str:
        name = node["class_name"]
        if not isinstance(name, str):
            self._refuse(where, "has a class_name that is not a string")
        inner = node.get("config")
        if (
            isinstance(inner, dict)
            and isinstance(inner.get("name"), str)
            and name not in (_DATA_CLASSES)
        ):
            where = inner["name"]  # the layer (or object) this part of the config builds
        if name in _DATA_CLASSES:
            return where
        if name == "TypeSpec":
            if node.get("type_spec") not in _TYPE_SPECS:
                self._refuse(where, f"names type spec {str(node.get('type_spec'))[:80]!r}")
            return where
        module = node.get("module")
        if module is not None and not self.trust:
            self._check_module(str(module), name, where)
        if name == "function":
            self._function(node, where)
        elif name in NOT_DATA:
            self._code(where, name, NOT_DATA[name])
        elif name in _OP_LAYERS:
            self._tf_function(inner, where)
        elif not self.trust:
            self._class(node, name, module, where)
        return where

    def _check_module(self, module: str, name: str, where: str) -> None:
        if module == "builtins" and name == "function":
            return
        package = module.split(".", 1)[0]
        if package in _KERAS_PACKAGES:
            return
        if module == _TF_INITIALIZERS_MODULE and name in _TF_INITIALIZERS:
            return
        if package == "tensorflow":
            self._code(where, name, f"is TensorFlow's legacy Keras class {module}.{name}, which "
                                    "runs code without Keras' safe-mode checks")  # fmt: skip
            return
        self._refuse(
            where,
            f"names module '{module[:80]}' for class '{name[:80]}': a model file may name "
            "Keras and tf_keras classes only, and edgec imports nothing a file names",
            hint="give the code of your own layers with --custom-objects FILE.py",
        )

    def _class(self, node: dict, name: str, module: Any, where: str) -> None:
        if self.allow is None:
            return
        registered = node.get("registered_name")
        custom = self.allow.custom
        if name in custom or (isinstance(registered, str) and registered in custom):
            return
        modules = self.allow.classes.get(name)
        if modules is None:
            if self.revivable:
                return  # rebuilt from the SavedModel's (checked) functions, not from code
            self._refuse(
                where,
                f"is of class '{name[:80]}', which is not a Keras layer",
                hint="if it is your own layer, give its code with --custom-objects FILE.py",
            )
            return
        if module is not None and str(module) not in modules:
            self._refuse(where, f"names class '{name}' in module '{str(module)[:80]}', where "
                                "Keras does not define it")  # fmt: skip
        if registered is not None and registered != name:
            self._refuse(where, f"names class '{name}' under the registered name "
                                f"'{str(registered)[:80]}', which nothing registered")  # fmt: skip

    def _function(self, node: dict, where: str) -> None:
        fn = node.get("config")
        registered = node.get("registered_name")
        if self.allow is None:
            return
        if fn in self.allow.custom or registered in self.allow.custom:
            return
        if not isinstance(fn, str) or fn not in self.allow.functions:
            if self.trust:
                return
            self._refuse(where, f"names function {str(fn)[:80]!r}, which is not a Keras "
                                "activation, loss or metric")  # fmt: skip

    def _tf_function(self, inner: Any, where: str) -> None:
        fn = inner.get("function") if isinstance(inner, dict) else None
        if isinstance(fn, str) and (fn in _TF_FUNCTIONS or fn.startswith(_TF_FUNCTION_PREFIXES)):
            return
        self._code(where, "TFOpLambda", f"calls TensorFlow function {str(fn)[:80]!r}, which "
                                        "is not a computation edgec knows")  # fmt: skip

    def _code(self, where: str, name: str, why: str) -> None:
        what = f"layer '{where}'" if where else f"the model's {name}"
        if self.trust:
            if f"{what} ({name})" not in self.code:
                self.code.append(f"{what} ({name})")
            return
        raise InputError(f"model {self.path}: {what} is a {name}: it {why}", hint=TRUST_HINT)

    def _refuse(self, where: str, why: str, hint: str | None = None) -> None:
        what = f"layer '{where}'" if where else "the model"
        raise InputError(f"model {self.path}: {what} {why}", hint=hint)


# ------------------------------------------------------------------ SavedModels


def _savedmodel_files(path: Path) -> Path:
    """A SavedModel folder's saved_model.pb, its files checked (regular, within caps)."""
    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise InputError(f"model {path} is a folder but not a SavedModel (no saved_model.pb)")
    safeio.regular_files(path, "SavedModel", limit_files=safeio.MAX_ARCHIVE_MEMBERS,
                         limit_bytes=safeio.MAX_ARCHIVE_BYTES)  # fmt: skip
    return pb


def _examine_savedmodel(path: Path, custom: frozenset[str], trust: bool) -> ModelFile:
    """The SavedModel as TensorFlow's protobuf parses it: ``_check_savedmodel`` again (after
    ``precheck``'s wire reading) and its Keras metadata's classes against the allowlist."""
    from edgec._tf import saved_metadata_pb2, saved_model_pb2

    pb = _savedmodel_files(path)
    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(safeio.read_regular(pb, "SavedModel", limit=safeio.MAX_ARCHIVE_BYTES))
    except Exception as exc:  # google.protobuf.message.DecodeError, and what upb raises
        raise InputError(f"model {path}: saved_model.pb is not a SavedModel ({exc})") from None

    def parse_metadata(data: bytes) -> list[tuple[str, str]]:
        metadata = saved_metadata_pb2.SavedMetadata()
        metadata.ParseFromString(data)
        return [(n.node_path, n.metadata) for n in metadata.nodes if n.metadata]

    graphs = [op_graph(graph) for graph in proto.meta_graphs]
    checker = _Checker(path, allowlist(TF_KERAS, custom), trust=trust, revivable=True)
    code, keras = _check_savedmodel(path, graphs, parse_metadata, checker)
    return ModelFile(path, TF_KERAS if keras else SIGNATURE, tuple(code))


def _precheck_savedmodel(path: Path, trust: bool) -> None:
    """``_check_savedmodel`` on the SavedModel read with ``savedmodel_wire`` (no
    TensorFlow); its Keras metadata's classes are left to ``examine``."""
    pb = _savedmodel_files(path)
    data = safeio.read_regular(pb, "SavedModel", limit=safeio.MAX_ARCHIVE_BYTES)
    try:
        graphs = savedmodel_wire.read_savedmodel(data)
    except savedmodel_wire.WireError as exc:
        raise InputError(f"model {path}: saved_model.pb is not a SavedModel ({exc})") from None
    checker = _Checker(path, None, trust=trust, revivable=True)
    _check_savedmodel(path, graphs, savedmodel_wire.read_keras_metadata, checker)


def _check_savedmodel(
    path: Path,
    graphs: list[OpGraph],
    parse: Callable[[bytes], list[tuple[str, str]]],
    checker: _Checker,
) -> tuple[list[str], bool]:
    """Refuse a TensorFlow 1 SavedModel, ops outside the allowlists and code in the Keras
    metadata (``keras_metadata``, read with ``parse``), or with trust, list them: (the
    code the SavedModel holds, whether it has Keras metadata)."""
    if not graphs or not any(graph.objects for graph in graphs):
        raise InputError(
            f"model {path} is a TensorFlow 1 SavedModel (no object graph): its init ops would "
            "run as it loads",
            hint="export it again with tf.saved_model.save or model.export()",
        )
    code: list[str] = []
    for graph in graphs:
        code += check_ops(graph, path, trust=checker.trust)
    metadata = keras_metadata(path, graphs, parse)
    for node_path, text in metadata:
        config = _json_object(text, path, f"the Keras metadata of {node_path}")
        checker.top(config)
    return code + checker.code, bool(metadata)


def keras_metadata(
    path: Path, graphs: list[OpGraph], parse: Callable[[bytes], list[tuple[str, str]]]
) -> list[tuple[str, str]]:
    """The Keras metadata of a SavedModel's objects, ``(node path, JSON)``: from
    ``keras_metadata.pb`` (tf_keras, TF >= 2.5; read by ``parse``), else from the object
    graph itself, where Keras 2.4 and earlier stored it (``SavedUserObject.metadata``)."""
    file = path / "keras_metadata.pb"
    if file.is_file():
        data = safeio.read_regular(file, "Keras metadata", limit=safeio.MAX_ARCHIVE_BYTES)
        try:
            return parse(data)
        except Exception as exc:  # WireError, DecodeError, and what upb raises
            raise InputError(f"model {path}: keras_metadata.pb cannot be read ({exc})") from None
    return [(f"node {i}", text) for graph in graphs for i, text in graph.keras_metadata]


def op_graph(graph: Any) -> OpGraph:
    """A MetaGraphDef as TensorFlow's protobuf parsed it, in ``savedmodel_wire``'s terms."""

    def node(n: Any) -> Node:
        funcs = []
        for value in n.attr.values():
            if value.HasField("func"):
                funcs.append(value.func.name)
            funcs.extend(f.name for f in value.list.func)
        return Node(n.op, tuple(funcs))

    result = OpGraph(
        functions={
            f.signature.name: [node(n) for n in f.node_def]
            for f in graph.graph_def.library.function
        },
        nodes=[node(n) for n in graph.graph_def.node],
        roots=set(graph.object_graph_def.concrete_functions),
        objects=len(graph.object_graph_def.nodes),
    )
    for i, saved in enumerate(graph.object_graph_def.nodes):
        kind = saved.WhichOneof("kind")
        if kind == "function":
            result.roots.update(saved.function.concrete_functions)
        elif kind == "bare_concrete_function":
            result.roots.add(saved.bare_concrete_function.concrete_function_name)
        elif kind == "user_object":
            user = saved.user_object
            if user.identifier.startswith("_tf_keras_") and user.metadata:
                result.keras_metadata.append((i, user.metadata))
    return result


@functools.cache
def op_allowlist() -> tuple[frozenset[str], frozenset[str]]:
    """The computational ops, and the checkpoint ops (``savedmodel_ops.toml``)."""
    text = (resources.files("edgec.pipeline") / "savedmodel_ops.toml").read_text()
    data = tomllib.loads(text)
    return frozenset(data["computational"]), frozenset(data["checkpoint"])


def graph_ops(graph: OpGraph) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """The ops of a MetaGraphDef: (functions that can run computations -> their ops, the
    checkpoint saver -> its ops).

    The saver is the graph's own nodes and the functions only they call (save and
    restore with a file name a loader gives; ``tf.saved_model.load`` does not run them).
    Every other function can run: what the object graph refers to (signatures, resource
    initializers, restore functions of saveables, the Keras call functions), what those
    call, and the functions nothing calls directly (Grappler's implementation selector
    can swap one in for a function of the same ``api_implements``).
    """
    library = graph.functions
    run = _reach([r for r in graph.roots if r in library], library)
    saver = _reach([c for n in graph.nodes for c in _called(n, library)], library)
    saver = {name: ops for name, ops in saver.items() if name not in run}
    saver["graph"] = {n.op for n in graph.nodes}
    for name, function in library.items():
        if name not in run and name not in saver:
            run[name] = {n.op for n in function}
    return run, saver


def _reach(roots: list[str], library: dict[str, list[Node]]) -> dict[str, set[str]]:
    """The functions ``roots`` call, transitively: name -> its ops."""
    reached: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        ops = reached[name] = set()
        for node in library[name]:
            ops.add(node.op)
            todo.extend(c for c in _called(node, library) if c not in reached)
    return reached


def _called(node: Node, library: dict[str, list[Node]]) -> list[str]:
    """Library functions a node calls: as its op, or in function-valued attributes."""
    return [c for c in (node.op, *node.funcs) if c in library]


def check_ops(graph: OpGraph, path: Path, *, trust: bool = False) -> list[str]:
    """Refuse (or, with ``trust``, list) ops outside the allowlists; see ``graph_ops``."""
    computational, checkpoint = op_allowlist()
    run, saver = graph_ops(graph)
    functions = set(graph.functions)  # calls, not ops
    bad: dict[str, list[str]] = {}  # op -> the functions that run it
    for parts, allowed in ((run, computational), (saver, computational | checkpoint)):
        for name, ops in sorted(parts.items()):
            for op in ops - allowed - functions:
                bad.setdefault(op, []).append(name if name != "graph" else "its graph")
    if not bad:
        return []
    listed = ", ".join(f"{op[:60]} (in {bad[op][0][:80]})" for op in sorted(bad)[:6])
    if trust:
        return [f"ops {listed}"]
    raise InputError(
        f"model {path} runs op{'s' if len(bad) > 1 else ''} {listed}: outside the "
        "computations a model needs (file, system or Python ops would run as it loads)",
        hint=TRUST_HINT,
    )


# TensorFlow's root name scopes (each layer's weights and ops are created under one):
# Keras 3 accepts other names ('dense one', 'ü', '_x'), which fail deep in the conversion
_SCOPE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*")


def check_layer_names(model, source: str) -> None:
    """Every layer (nested ones too), and the model itself, has a name TensorFlow can use as
    a name scope (the model's is the root scope of every trace: "'notebook model/' is not
    a valid root scope name" was an internal error of the conversion)."""
    if getattr(model, "layers", None):  # a Keras model (a SavedModel signature has none)
        _check_name(model.name, source, layer=False)
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        _check_name(layer.name, source)
        stack.extend(getattr(layer, "layers", []))


def _check_name(name: str, source: str, layer: bool = True) -> None:
    if not _SCOPE_NAME.fullmatch(name):
        shown = printable(repr(name))[:80]
        subject = f"layer {shown} has a name" if layer else f"the model's name {shown} is one"
        raise InputError(
            f"model {source}: {subject} TensorFlow cannot use (letters, digits and "
            ". _ - / > only, not starting with _ - / >)",
            hint=f"rename the {'layer' if layer else 'model'} when building it (name=...) "
            "and save it again",
        )


def check_config_names(config: object, source: str) -> None:
    """The layer names in a saved model's config (nested models' too), as
    check_layer_names checks a loaded model's: read before TensorFlow starts."""
    root = config.get("config") if isinstance(config, dict) else None
    name = root.get("name") if isinstance(root, dict) else None
    if isinstance(name, str) and isinstance(root, dict) and isinstance(root.get("layers"), list):
        _check_name(name, source, layer=False)
    stack = [config]
    while stack:
        item = stack.pop()
        inner = item.get("config") if isinstance(item, dict) else None
        layers = inner.get("layers") if isinstance(inner, dict) else None
        for layer in layers if isinstance(layers, list) else []:
            layer_config = layer.get("config") if isinstance(layer, dict) else None
            name = layer_config.get("name") if isinstance(layer_config, dict) else None
            if isinstance(name, str):
                _check_name(name, source)
            stack.append(layer)
