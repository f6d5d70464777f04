"""Keras 3 models in: the one module that imports Keras 3 (the ``keras`` package).

A plain build converts a Keras 3 model directly (TensorFlow backend, batch-1 concrete
function). TF-MOT only takes tf_keras (Keras 2) objects, so a build with a recipe first
rebuilds the model as tf_keras, layer by layer: each layer's config translated
(facts.md section 2), weights copied, and the rebuild proven by comparing outputs.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import operator
import pkgutil
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import InputError, first_line
from edgec.pipeline import activations
from edgec.pipeline.graph_rewrite import call_tensors

_DROP = ("module", "registered_name", "build_config", "compile_config", "shared_object_id")
# Keras 3's random augmentation layers that tf_keras lacks. Each is the identity at
# inference (measured with Keras 3.15: layer(x, training=False) returned x for every one),
# so the rebuild leaves them out, proven as every rebuild is (equal outputs); a recipe then
# trains without them. The layers tf_keras has (RandomFlip, RandomRotation, ...) are
# rebuilt, and QAT leaves them out (graph_rewrite.INFERENCE_IDENTITY); a Keras 3 Pipeline of
# either kind is left out too.
AUGMENTATION = frozenset({
    "RandomColorDegeneration", "RandomColorJitter", "RandomElasticTransform",
    "RandomErasing", "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert",
    "RandomPerspective", "RandomPosterization", "RandomSaturation", "RandomSharpness",
    "RandomShear", "AugMix", "RandAugment", "MixUp", "CutMix",
})  # fmt: skip
# tf_keras Layer.__init__ accepts these through **kwargs; anything else it rejects.
_LAYER_KWARGS = {"trainable", "name", "dtype", "dynamic", "input_dim", "input_shape",
                 "batch_input_shape", "batch_size", "weights", "activity_regularizer",
                 "autocast", "implementation"}  # fmt: skip
# Keys Keras 3 renamed: left under the Keras 3 name, tf_keras dropped the key and took its
# default (LeakyReLU(negative_slope=0.1) became alpha=0.3: the rebuild failed its proof)
_RENAMED = {"LeakyReLU": {"negative_slope": "alpha"}}
# Keys a tf_keras layer takes through **kwargs for its base class, not in its signature
# (GlobalAveragePooling1D(keepdims=True) lost keepdims: another output shape). Of the keys
# Keras 3 configs have, the only one that changes inference: the others tf_keras' base
# classes take this way (seed, dropout, noise_shape) act in training only.
_FORWARDED = {"GlobalAveragePooling1D": {"keepdims"}}


class TranslationError(InputError):
    """The Keras 3 model cannot be rebuilt as tf_keras (a recipe needs it; plain builds don't)."""

    def __init__(self, layer: str, what: str, hint: str) -> None:
        super().__init__(
            f"cannot rebuild the Keras 3 model as tf_keras for the recipe: layer '{layer}' {what}",
            hint=f"{hint}; a plain build (no recipe) still works",
        )
        self.reason = f"layer '{layer}' {what}"


def load_model(path: Path, custom_objects: dict | None = None, *, safe_mode: bool = True):
    """Load a Keras 3 ``.keras`` / ``.h5`` file (TensorFlow backend), its config already
    checked (``model_files.examine``)."""
    import edgec._tf  # noqa: F401, I001  TensorFlow first, with TF_USE_LEGACY_KERAS set
    import keras

    return keras.saving.load_model(
        path, compile=False, custom_objects=custom_objects, safe_mode=safe_mode
    )


def allowlist() -> tuple[dict[str, set[str]], set[str]]:
    """What a Keras 3 config may name (``model_files``): the classes of Keras 3's layers,
    initializers, regularizers, constraints, dtype policies and models, and its ops
    (``keras.ops`` nodes of a functional model), each with the modules it may be named
    under; the activation functions by name."""
    import edgec._tf  # noqa: F401, I001
    import keras
    from keras.src.models.functional import Functional
    from keras.src.ops.operation import Operation

    from edgec.pipeline.model_files import _defined_in, _public_classes, _public_functions

    namespaces = {
        "keras.layers": keras.layers,
        "keras.initializers": keras.initializers,
        "keras.regularizers": keras.regularizers,
        "keras.constraints": keras.constraints,
        "keras.dtype_policies": keras.dtype_policies,
        "keras.models": keras.models,
        "keras": keras,
    }
    classes = _public_classes(namespaces, "keras")
    ops = [Functional]
    todo = list(Operation.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("keras.src.ops."):
            ops.append(cls)
    for cls in ops:
        classes.setdefault(cls.__name__, set()).update(_defined_in(cls, "keras"))
    # Layers Keras defines inside its applications, in no public namespace (ConvNeXt's
    # LayerScale and StochasticDepth, InceptionResNetV2's CustomScaleLayer): Keras' own
    # code, saved under their module, which Keras 3 loads (keras.applications.ConvNeXtTiny
    # was refused as "not a Keras layer")
    from keras.src import applications

    for info in pkgutil.iter_modules(applications.__path__):
        module = importlib.import_module(f"{applications.__name__}.{info.name}")
        for name, cls in vars(module).items():
            if (
                isinstance(cls, type)
                and issubclass(cls, keras.layers.Layer)
                and cls.__module__ == module.__name__
            ):
                classes.setdefault(name, set()).add(module.__name__)
    return classes, _public_functions(keras.activations)


def registered_names(obj: object) -> set[str]:
    """The name Keras 3 registered ``obj`` under (``package>Name``), if any."""
    import edgec._tf  # noqa: F401, I001
    import keras

    try:
        return {keras.saving.get_registered_name(obj)}
    except Exception:  # not a Keras object
        return set()


def version() -> str:
    import keras

    return str(keras.__version__)


@dataclass(frozen=True)
class Translation:
    model: Any  # the tf_keras model
    max_abs_diff: float
    layers: int
    keras_version: str
    left_out: tuple[str, ...] = ()  # "name (Class)" of the AUGMENTATION layers left out


# model -> (key of x and custom objects, its proven translation): a plain build asks twice
# for the same model and data (fold_batch_norms, then layer_error's twin when nothing was
# folded), and each rebuild and proof predicts with both models (a trace each). Weak: an
# entry goes with its Keras 3 model. Readers must not change the returned model.
_TRANSLATIONS: weakref.WeakKeyDictionary[Any, tuple[tuple, Translation]] = (
    weakref.WeakKeyDictionary()
)


def translate(model, x: np.ndarray, custom_objects: dict | None = None) -> Translation:
    """Rebuild ``model`` as tf_keras and prove it: equal outputs on ``x`` (once per model,
    data and custom objects: a second call returns the first proven rebuild)."""
    x = np.ascontiguousarray(x)
    key = (x.shape, x.dtype.str, hashlib.sha256(x.data).hexdigest(),
           sorted((name, id(obj)) for name, obj in (custom_objects or {}).items()))  # fmt: skip
    cached = _TRANSLATIONS.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    translation = _translate(model, x, custom_objects)
    _TRANSLATIONS[model] = (key, translation)
    return translation


def _translate(model, x: np.ndarray, custom_objects: dict | None) -> Translation:
    from edgec._tf import keras as tf_keras
    from edgec.pipeline.convert import flat_layers
    from edgec.pipeline.graph_rewrite import proven_equal

    left_out: list[str] = []
    rebuilt = _rebuild(model, tf_keras, custom_objects or {}, left_out)
    sources = {layer.name: layer for layer in flat_layers(model)}
    copied = 0
    for layer in rebuilt.layers:
        if layer.weights:
            layer.set_weights(sources[layer.name].get_weights())
            copied += 1
    proof = proven_equal(model, rebuilt, x)
    if not proof.equal:
        name, difference = _first_difference(model, rebuilt, x[:64]) or (
            rebuilt.layers[-1].name,
            proof.max_difference,
        )
        raise TranslationError(
            name,
            f"gives different outputs after the rebuild (max abs difference {difference:.3g})",
            "report this model to the edgec developers",
        )
    return Translation(
        rebuilt, proof.max_difference, len(rebuilt.layers), version(), tuple(left_out)
    )


def _first_difference(model, rebuilt, x: np.ndarray) -> tuple[str, float] | None:
    """The first layer of the rebuild whose output differs from the Keras 3 layer of its
    name, with the difference (what the error names: the layer to look at, not the last);
    None where the outputs cannot be compared layer by layer (a nested or shared layer)."""
    from edgec._tf import keras as tf_keras
    from edgec.pipeline.graph_rewrite import equality

    keras = sys.modules["keras"]  # Keras 3, imported already: ``model`` is one of its models
    names = [layer.name for layer in rebuilt.layers if layer.name not in rebuilt.input_names]
    try:
        want = keras.Model(model.inputs, [model.get_layer(n).output for n in names])(x)
        got = tf_keras.Model(rebuilt.inputs, [rebuilt.get_layer(n).output for n in names])(x)
    except Exception:  # noqa: BLE001 (a layer without one output of its own: not named)
        return None
    for name, a, b in zip(names, want, got, strict=True):
        layer = equality(np.asarray(a), np.asarray(b))
        if not layer.equal:
            return name, layer.max_difference
    return None


def tf_keras_twin(model, x: np.ndarray, custom_objects: dict):
    """The proven tf_keras rebuild of ``model`` (same layer names), or None if impossible.

    For the per-layer error of a plain build: the converted ops are mapped to the Keras 3
    model's layers by the scopes recorded in tracing (``LayerNames``), and the twin's
    layers of the same names give the float values.
    """
    try:
        return translate(model, x, custom_objects).model
    except TranslationError:
        return None


def _left_out(spec: dict, tf_keras, custom_objects: dict, left_out: list[str]) -> bool:
    """Whether the rebuild leaves the layer of ``spec`` out (``AUGMENTATION``, or a
    ``Pipeline`` of augmentation layers: the identity at inference, unknown to tf_keras);
    noted in ``left_out``."""
    from edgec.pipeline.graph_rewrite import INFERENCE_IDENTITY

    cls_name = spec["class_name"]
    if cls_name in custom_objects or hasattr(tf_keras.layers, cls_name):
        return False  # rebuilt as it is (a later tf_keras may have it)
    if cls_name == "Pipeline":
        inner = [str(layer.get("class_name")) for layer in spec["config"].get("layers", [])]
        if not inner or not set(inner) <= AUGMENTATION | set(INFERENCE_IDENTITY):
            return False
    elif cls_name not in AUGMENTATION:
        return False
    left_out.append(f"{spec.get('name') or spec['config'].get('name', '?')} ({cls_name})")
    return True


def _rebuild(model, tf_keras, custom_objects: dict, left_out: list[str]):
    config = model.get_config()
    kind = type(model).__name__
    if kind == "Sequential":
        layers = [
            _layer(spec, tf_keras, custom_objects)
            for spec in config["layers"]
            if not _left_out(spec, tf_keras, custom_objects, left_out)
        ]
        return tf_keras.Sequential(layers, name=config.get("name"))
    if kind != "Functional":
        raise TranslationError(model.name, f"is a subclassed model ({kind})",
                               "build it with the Sequential or functional API")  # fmt: skip
    tensors: dict[tuple[str, int], object] = {}
    for spec in config["layers"]:
        name = spec["name"]
        if spec["class_name"] == "InputLayer":
            layer = _layer(spec, tf_keras, custom_objects)
            tensors[(name, 0)] = layer.output
            continue
        if _left_out(spec, tf_keras, custom_objects, left_out):  # its output is its input
            for index, node in enumerate(spec["inbound_nodes"]):
                tensors[(name, index)] = _resolve(node.get("args", []), tensors, name)[0]
            continue
        for index, node in enumerate(spec["inbound_nodes"]):
            args = _resolve(node.get("args", []), tensors, name)
            kwargs = _resolve(node.get("kwargs", {}), tensors, name)
            # Keras 3 records the training flag a layer was called with when the model
            # was made (True for its augmentation layers) and overrides it with the
            # model's own at every call; tf_keras would keep it: RandomFlip would flip
            # at inference. The tf_keras model's call decides, as Keras 3's does.
            kwargs.pop("training", None)
            if (op := _op_node(spec, args, kwargs, tf_keras)) is not None:
                out = op(*args)
            elif spec["class_name"] == "Sequential":  # a nested Sequential: flattened
                out = args[0]
                for inner in spec["config"]["layers"]:
                    if inner["class_name"] != "InputLayer":
                        out = _layer(inner, tf_keras, custom_objects)(out)
            else:
                if index == 0:
                    layer = _layer(spec, tf_keras, custom_objects)
                try:
                    out = layer(*args, **kwargs)
                except Exception as exc:  # tf_keras' call differs from Keras 3's
                    raise TranslationError(
                        name, f"({spec['class_name']}) cannot be called as tf_keras: {_why(exc)}",
                        "use built-in layers, or report the model",
                    ) from None  # fmt: skip
            tensors[(name, index)] = out
    inputs = [tensors[(n, i)] for n, i, *_ in _node_list(config["input_layers"])]
    outputs = [_pick(tensors[(n, i)], t) for n, i, t in _node_list(config["output_layers"])]
    return tf_keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=config.get("name"),
    )


# keras.ops nodes of elementwise arithmetic (``x + 3.0``, ``x * y`` on Keras tensors; Keras'
# MobileNetV3 writes its hard_sigmoid so): the same arithmetic on tf_keras tensors, which
# tf_keras records as TFOpLambda layers (as a Keras 2 model written so has them). Keras 3
# computes each as TensorFlow's op on float32 (the proof checks it).
_ARITHMETIC = {"Add": operator.add, "Subtract": operator.sub, "Multiply": operator.mul,
               "Divide": operator.truediv, "TrueDivide": operator.truediv}  # fmt: skip
# keras.ops activations (``keras.ops.relu(x)``): a tf_keras Activation layer of the same
# function, named as the node (Keras 3 computes ``tf.nn.relu`` and the rest, as tf_keras)
_ACTIVATIONS = {"Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh",
                "Silu": "silu", "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu",
                "Softplus": "softplus", "Selu": "selu", "Softsign": "softsign"}  # fmt: skip
# keras.ops activations with parameters: the config that is the tf_keras function's own
# (ops.softmax over the last axis, ops.elu of alpha 1, ops.gelu exact: Keras 3's ops.gelu
# defaults to the tanh approximation, which tf_keras' "gelu" is not)
_ACTIVATIONS_IF: dict[str, tuple[str, dict[str, object]]] = {
    "Softmax": ("softmax", {"axis": -1}), "Elu": ("elu", {"alpha": 1.0}),
    "Gelu": ("gelu", {"approximate": False}),
}  # fmt: skip


def _op_node(spec: dict, args: list, kwargs: dict, tf_keras):
    """What computes a keras.ops node that has a tf_keras form: a Python operator for
    arithmetic on two operands (each a tensor or a number), an Activation layer for an
    activation of one tensor (None: the node is not one)."""
    module = str(spec.get("module") or "")
    if not module.startswith(("keras.src.ops", "keras.ops")) or kwargs:
        return None
    kind = spec["class_name"]
    tensors = call_tensors(args)
    config = spec.get("config") or {}
    if kind in _ACTIVATIONS_IF and len(args) == len(tensors) == 1:
        name, wanted = _ACTIVATIONS_IF[kind]
        if all(config.get(k, v) == v for k, v in wanted.items()):
            return tf_keras.layers.Activation(name, name=spec.get("name") or None)
    if kind == "LeakyRelu" and len(args) == len(tensors) == 1:
        slope = config.get("negative_slope", 0.2)
        return tf_keras.layers.LeakyReLU(alpha=slope, name=spec.get("name") or None)
    if kind == "Concatenate" and len(args) == 1 and len(tensors) >= 2:
        return tf_keras.layers.Concatenate(axis=config.get("axis", 0), name=spec.get("name"))
    if kind == "Mean" and len(args) == len(tensors) == 1:
        from edgec._tf import tf

        axis, keepdims = config.get("axis"), bool(config.get("keepdims", False))
        return lambda x: tf.reduce_mean(x, axis=axis, keepdims=keepdims)
    if kind in _ACTIVATIONS and len(args) == len(tensors) == 1:
        name = _ACTIVATIONS[kind]
        function = activations.for_keras3(name) or name
        return tf_keras.layers.Activation(function, name=spec.get("name") or None)
    numbers = [a for a in args if isinstance(a, int | float) and not isinstance(a, bool)]
    if kind in _ARITHMETIC and len(args) == 2 and tensors and len(numbers) + len(tensors) == 2:
        return _ARITHMETIC[kind]
    if kind in _MOVES and tensors and args[0] is tensors[0] and len(tensors) == 1:
        return _MOVES[kind](spec.get("config") or {}, args[1:])
    return None


def _moved(kind: str):
    """A keras.ops node that moves values (transpose, expand_dims, squeeze, reshape): the
    TensorFlow function Keras 3 calls, on tf_keras tensors (a TFOpLambda, which QAT's
    rewrite makes the Keras layer: stages/structure/qat_rewrite._MOVES)."""

    def make(config: dict, rest: list):
        from edgec._tf import tf

        if rest:
            return None
        if kind == "Transpose":
            return lambda x: tf.transpose(x, perm=config.get("axes"))
        if kind == "ExpandDims":
            return lambda x: tf.expand_dims(x, config["axis"])
        if kind == "Squeeze":
            return lambda x: tf.squeeze(x, config.get("axis"))
        shape = config.get("newshape", config.get("new_shape"))
        return None if shape is None else (lambda x: tf.reshape(x, shape))

    return make


def _sliced(config: dict, rest: list):
    """A keras.ops GetItem node (``x[:, 1:]``): the same slicing of the tf_keras tensor
    (a SlicingOpLambda), its key read from Keras 3's serialized slices."""

    def item(entry):
        if isinstance(entry, dict) and entry.get("class_name") == "__slice__":
            bounds = entry.get("config") or {}
            return slice(bounds.get("start"), bounds.get("stop"), bounds.get("step"))
        if isinstance(entry, dict) and entry.get("class_name") == "__ellipsis__":
            return Ellipsis
        if entry is None or (isinstance(entry, int) and not isinstance(entry, bool)):
            return entry
        raise TypeError(f"slice key {entry!r}")

    if len(rest) != 1:
        return None
    try:
        key = tuple(item(e) for e in rest[0]) if isinstance(rest[0], list) else item(rest[0])
    except TypeError:
        return None
    return lambda x, _key: x[key]


# keras.ops nodes that only move values, by Keras 3's class: their tf_keras form
_MOVES = {**{kind: _moved(kind) for kind in ("Transpose", "ExpandDims", "Squeeze", "Reshape")},
          "GetItem": _sliced}  # fmt: skip


def _node_list(entries: list) -> list:
    return [entries] if entries and isinstance(entries[0], str) else entries


def _pick(value, index: int):
    return value[index] if isinstance(value, list | tuple) else value


def _resolve(value, tensors: dict, layer: str):
    """Keras 3 ``__keras_tensor__`` references -> the tf_keras tensors built so far."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            name, node, index = value["config"]["keras_history"]
            if (name, node) not in tensors:
                raise TranslationError(layer, f"takes an input from '{name}' that was not rebuilt",
                                       "simplify the model's graph")  # fmt: skip
            return _pick(tensors[(name, node)], index)
        return {k: _resolve(v, tensors, layer) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(v, tensors, layer) for v in value]
    return value


def _layer(spec: dict, tf_keras, custom_objects: dict):
    """One tf_keras layer from a Keras 3 layer spec."""
    name, cls_name = spec.get("name") or spec["config"].get("name", "?"), spec["class_name"]
    module = str(spec.get("module") or "")
    if module.startswith(("keras.src.ops", "keras.ops")) or cls_name in ("Functional", "Model"):
        what = "is a keras.ops node" if "ops" in module else "is a nested functional sub-model"
        raise TranslationError(
            name,
            f"{what} ({cls_name}), which has no tf_keras layer",
            "use the matching keras.layers layer (ReLU, Add, Multiply, ...)",
        )
    cls = custom_objects.get(cls_name) or getattr(tf_keras.layers, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, tf_keras.layers.Layer)):  # Keras 3 class
        raise TranslationError(
            name, f"is of type {cls_name}, which tf_keras does not know",
            "give a tf_keras version of the layer with --custom-objects",
        )  # fmt: skip
    config = _config(spec["config"])
    if cls_name == "InputLayer":
        config.pop("optional", None)
        return tf_keras.layers.InputLayer(**config)
    config = _accepted(cls, config, tf_keras, custom_objects)
    if cls_name == "MultiHeadAttention":
        # tf_keras' from_config builds the layer from the input shapes Keras 2 saved in its
        # config (KeyError 'query_shape' without them); Keras 3 keeps them in the layer's
        # build_config. A key left out is the value (both Keras' call).
        shapes = (spec.get("build_config") or {}).get("shapes_dict") or {}
        value = shapes.get("value_shape")
        config |= {"query_shape": shapes.get("query_shape"), "value_shape": value,
                   "key_shape": shapes.get("key_shape") or value}  # fmt: skip
    # hard_silu, which tf_keras lacks, and hard_sigmoid, which it defines otherwise
    if (function := activations.for_keras3(config.get("activation"))) is not None:
        config["activation"] = function
    try:
        return tf_keras.layers.deserialize(
            {"class_name": cls_name, "config": config}, custom_objects=custom_objects
        )
    # Any exception: tf_keras' from_config methods read Keras 2's keys (MultiHeadAttention
    # raised KeyError 'query_shape' before _layer gave it its build shapes)
    except Exception as exc:
        raise TranslationError(name, f"({cls_name}) cannot be rebuilt: {_why(exc)}",
                               "use built-in layers, or report the model") from None  # fmt: skip


def _accepted(cls, config: dict, tf_keras, custom_objects: dict) -> dict:
    """``config`` without the keys tf_keras' ``cls`` rejects (Keras 3 adds some, such as
    Dense's ``quantization_config``), also in the layers a wrapper holds (TimeDistributed's
    and Bidirectional's ``layer``)."""
    accepted = set(inspect.signature(cls).parameters) | _LAYER_KWARGS
    accepted |= _FORWARDED.get(cls.__name__, set())
    renamed = _RENAMED.get(cls.__name__, {})
    out = {renamed.get(k, k): v for k, v in config.items() if renamed.get(k, k) in accepted}
    for key in ("layer", "backward_layer"):
        inner = out.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("config"), dict):
            inner_cls = custom_objects.get(inner.get("class_name")) or getattr(
                tf_keras.layers, str(inner.get("class_name")), None
            )
            if isinstance(inner_cls, type):
                filtered = _accepted(inner_cls, inner["config"], tf_keras, custom_objects)
                out[key] = {**inner, "config": filtered}
    return out


def _why(exc: Exception) -> str:
    """A KeyError's text is only the key: named with its type ("KeyError 'query_shape'")."""
    line = first_line(exc)[:200]
    return f"KeyError {line}" if isinstance(exc, KeyError) and str(exc) else line


def _config(value):
    """A Keras 3 config value in tf_keras form (recursively)."""
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy":
            return value["config"]["name"]
        out = {}
        for key, item in value.items():
            if key in _DROP or key == "input_axes" or key == "output_axes":
                continue
            out["batch_input_shape" if key == "batch_shape" else key] = _config(item)
        if "class_name" in out and "config" in out and isinstance(out["config"], dict):
            out = {"class_name": out["class_name"], "config": out["config"]}
        return out
    if isinstance(value, list):
        return [_config(v) for v in value]
    return value
