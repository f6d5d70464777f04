"""Loading the user's model: tf_keras or Keras 3 files, SavedModel folders, custom objects."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgec.errors import InputError, first_line
from edgec.pipeline.model_files import check_layer_names


def load_keras_model(
    path: Path,
    custom_objects: dict | None = None,
    *,
    trust: bool = False,
    on_code: Callable[[tuple[str, ...]], None] | None = None,
    on_float32: Callable[[str, list[str]], None] | None = None,
    data_shape: tuple[int, ...] | None = None,
    on_input_shape: Callable[[list, list[int]], None] | None = None,
):
    """Load a tf_keras or Keras 3 model, or a SavedModel's signature (TensorFlow imported
    here), as data: ``model_files.examine`` checks the file first and chooses the loader
    from its structure. With ``trust``, code the file carries loads too, and ``on_code``
    is told what it is (the caller says that it runs). A model trained with mixed
    precision computes in float32 from here on (``compute_in_float32``); ``on_float32`` is
    told its policy and the layers that changed. A model whose input leaves dimensions
    unknown is rebuilt on ``data_shape`` (one sample's, from the data) where that fits it
    (``on_input_shape`` is told the two); one it does not fit is refused."""
    from edgec.pipeline.model_files import KERAS3, SIGNATURE, examine

    checked = examine(path, custom_names(custom_objects or {}), trust=trust)
    if checked.code and on_code is not None:
        on_code(checked.code)
    if checked.kind == SIGNATURE:
        model = SignatureModel.load(path)
        check_model_io(model, str(path))
        return model
    if checked.kind == KERAS3:
        from edgec.pipeline import keras3

        loader = keras3.load_model
    else:
        loader = _load_tf_keras
    try:
        model = loader(path, custom_objects, safe_mode=not trust)
    except Exception as exc:  # Keras raises many types for unreadable or custom models
        raise _load_failure(path, exc) from None
    if data_shape is not None and (fixed := _on_input(model, data_shape)) is not model:
        if on_input_shape is not None:
            on_input_shape([None, *model.inputs[0].shape[1:]], [1, *data_shape])
        model = fixed
    check_model_io(model, str(path))
    policy, changed = compute_in_float32(model)
    if changed and on_float32 is not None:
        on_float32(policy, changed)
    return model


def _on_input(model, shape: tuple[int, ...]):
    """``model`` rebuilt on an Input of ``shape`` (one sample's), its weights copied, when
    its own input leaves dimensions unknown (a fully convolutional net's ``(None, None,
    3)``, a keyword spotter's ``(None, 13)`` frames) and ``shape`` fills exactly those;
    else ``model`` itself. Microcontrollers need static shapes, and the data says which."""
    inputs = getattr(model, "inputs", None)
    if not getattr(model, "layers", None) or not inputs or len(inputs) != 1:
        return model  # a SavedModel signature, or several inputs: refused as they are
    own = tuple(inputs[0].shape[1:])
    if None not in own or len(own) != len(shape):
        return model
    if any(d is not None and d != s for d, s in zip(own, shape, strict=True)):
        return model
    from edgec.pipeline.convert import is_keras3

    if is_keras3(model):
        import keras
    else:
        from edgec._tf import keras
    # the input keeps its layer's name (a Sequential's InputLayer is not in its layers)
    name = inputs[0]._keras_history[0].name
    new_input = keras.Input(shape, dtype=inputs[0].dtype, name=name)
    try:
        rebuilt = keras.models.clone_model(model, input_tensors=new_input)
        rebuilt.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 (a layer clone_model cannot remake: refused as it is)
        return model
    return rebuilt


def compute_in_float32(model) -> tuple[str, list[str]]:
    """Set the layers of a model trained with mixed precision to compute in float32: its
    policy ("mixed_float16", a GPU's; "mixed_bfloat16", a TPU's) and the layers changed.

    Such a layer keeps float32 weights and computes in 16 bits. The converter took its
    float16 Conv2D for a TensorFlow op ("'tf.Conv2D' op is neither a custom op nor a flex
    op": every build failed) and TF-MOT's pruning wrapper failed on the casts. In float32
    the model is what its weights say (outputs within float16 rounding: 6e-5 to 1e-4 of a
    softmax measured here), which the int8 model is calibrated from.
    """
    from edgec.pipeline.convert import flat_layers

    policy, changed = "", []
    for layer in (model, *flat_layers(model)):
        name = str(getattr(getattr(layer, "dtype_policy", None), "name", ""))
        if not name.startswith("mixed_"):
            continue
        policy = name
        if hasattr(layer, "_set_dtype_policy"):  # tf_keras: no public setter (frozen 2.x)
            layer._set_dtype_policy("float32")
        else:  # Keras 3
            layer.dtype_policy = "float32"
        if layer is not model:
            changed.append(layer.name)
    return policy, changed


# Keras 3 wraps a layer's own error: "Error when deserializing class 'RandomShear' using
# config={...}.\n\nException encountered: <the layer's error>", once per level
_DESERIALIZING = re.compile(r"Error when deserializing class '([A-Za-z_][\w.]*)'")
_ENCOUNTERED = "Exception encountered: "


def _load_failure(path: Path, exc: Exception) -> InputError:
    """One line on why Keras could not load the model. A built-in Keras layer whose saved
    config its own constructor refuses (Keras 3.15's RandomShear saves x_factor [-0.1, 0.1]
    and then refuses -0.1) is named with its own error: it is no custom layer."""
    text = str(exc)
    classes = _DESERIALIZING.findall(text)
    layer = classes[-1] if classes else ""
    builtin = layer and re.search(
        r"'module': 'keras(\.src)?\.layers[\w.]*', 'class_name': '" + re.escape(layer) + "'",
        text,
    )
    if builtin and _ENCOUNTERED in text:
        reason = text.rsplit(_ENCOUNTERED, 1)[1].strip().split("\n")[0]
        return InputError(
            f"cannot load model {path}: Keras cannot rebuild its built-in {layer} layer from "
            f"the saved config: {reason[:200]}",
            hint=f"keras.saving.load_model fails the same way on this file; save the model "
            f"without the {layer} layer (or with a Keras version that loads it)",
        )
    first = first_line(exc)
    hint = None
    if any(s in first for s in ("Unknown layer", "custom", "Could not locate", "deserialized")):
        hint = "the model uses custom layers: give their code with --custom-objects FILE.py"
    return InputError(f"cannot load model {path}: {first[:300]}", hint=hint)


def _load_tf_keras(path: Path, custom_objects: dict | None = None, *, safe_mode: bool = True):
    from edgec._tf import keras

    return keras.models.load_model(
        path, compile=False, custom_objects=custom_objects, safe_mode=safe_mode
    )


def custom_names(custom_objects: dict) -> frozenset[str]:
    """The names a model file may use for ``--custom-objects``: theirs, and the names
    Keras 3 and tf_keras registered them under (``package>Name``)."""
    if not custom_objects:
        return frozenset()
    from edgec._tf import keras
    from edgec.pipeline import keras3

    names = set(custom_objects)
    for value in custom_objects.values():
        names.update(keras3.registered_names(value))
        with contextlib.suppress(Exception):  # not a Keras object (a helper of the file)
            names.add(keras.saving.get_registered_name(value))
    return frozenset(names)


def absolute_custom_objects(spec: str | None) -> str | None:
    """``--custom-objects``'s file made absolute (a module name stays as it is): the model
    process works in a folder of its own."""
    if spec is not None and (spec.endswith(".py") or Path(spec).exists()):
        return os.path.abspath(spec)
    return spec


def load_custom_objects(spec: str | None) -> dict:
    """The classes and functions of a Python file or importable module, by name.

    The file is executed: it is trusted code, like the model it belongs to.
    """
    if spec is None:
        return {}
    import importlib
    import importlib.util

    try:
        if spec.endswith(".py") or Path(spec).exists():
            path = Path(spec)
            if not path.is_file():
                raise InputError(f"--custom-objects file {spec} does not exist")
            loader_spec = importlib.util.spec_from_file_location(f"edgec_custom_{path.stem}", path)
            if loader_spec is None or loader_spec.loader is None:
                raise InputError(f"--custom-objects {spec} is not a Python file")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(spec)
    except InputError:
        raise
    except ModuleNotFoundError as exc:
        raise InputError(f"--custom-objects {spec}: no module named '{exc.name}'",
                         hint="give a .py file or a module on PYTHONPATH") from None  # fmt: skip
    except Exception as exc:  # the user's code raised while it was imported
        raise InputError(f"--custom-objects {spec} raised {type(exc).__name__} on import: {exc}",
                         hint="fix that file; it is run as Python code") from None  # fmt: skip
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and callable(value)
    }


class SignatureModel:
    """A SavedModel without Keras metadata, seen through its serving signature.

    It offers what a build uses of a Keras model: ``inputs``/``outputs`` shapes,
    ``__call__``, ``predict`` and ``count_params``; it has no layers (no per-layer error,
    no recipe).
    """

    layers: list = []

    def __init__(self, loaded, signature) -> None:
        self._loaded = loaded  # keeps the variables alive
        self._function = signature
        kwargs = signature.structured_input_signature[1]
        if len(kwargs) != 1 or len(signature.structured_outputs) != 1:
            self._input = ""
            self.inputs, self.outputs = list(kwargs.values()), list(signature.structured_outputs)
            return
        ((self._input, spec),) = kwargs.items()
        self.inputs = [spec]
        self.outputs = list(signature.structured_outputs.values())

    @classmethod
    def load(cls, path: Path) -> SignatureModel:
        from edgec._tf import tf

        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise InputError(f"cannot load SavedModel {path}: {str(exc).splitlines()[0]}") from None
        signature = loaded.signatures.get("serving_default")
        if signature is None:
            raise InputError(
                f"SavedModel {path} has no 'serving_default' signature",
                hint="export it with model.export() or a serving signature",
            )
        return cls(loaded, signature)

    def __call__(self, x, training: bool = False):
        return next(iter(self._function(**{self._input: x}).values()))

    def predict(self, x: np.ndarray, batch_size: int = 256, verbose: int = 0) -> np.ndarray:
        from edgec._tf import tf

        parts = [
            self(tf.constant(x[i : i + batch_size], self.inputs[0].dtype)).numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self._function.variables))


def check_model_io(model, source: str) -> None:
    check_layer_names(model, source)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InputError(
            f"model {source} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "edgec builds single-input, single-output models",
            hint="convert it to a full-integer .tflite yourself: edgec check takes a .tflite "
            "with any number of inputs and outputs",
        )
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise InputError(
            f"model {source} has input shape {list(shape)} with unknown dimensions",
            hint="give the Input layer a fixed shape, or data whose samples have the shape "
            "to build it at (microcontrollers need static shapes)",
        )
    _check_runs_on_this_cpu(model, source)


def _check_runs_on_this_cpu(model, source: str) -> None:
    """A model with channels_first (NCHW) layers, run once on a zero sample: TensorFlow's
    CPU kernels take NHWC convolutions only ("The Conv2D op currently only supports the
    NHWC tensor format on the CPU"), and every float figure of a build runs the model here
    (that error surfaced as an internal error from the first one). Measured, not assumed:
    a channels_first layer TensorFlow runs (Conv1D transposes) passes."""
    from edgec.pipeline.convert import flat_layers

    if not any(
        getattr(layer, "data_format", None) == "channels_first" for layer in flat_layers(model)
    ):
        return
    from edgec._tf import tf

    spec = model.inputs[0]
    zeros = np.zeros(
        (1, *(int(d) for d in spec.shape[1:])), dtype=str(getattr(spec.dtype, "name", spec.dtype))
    )
    try:
        model(zeros, training=False)
    except tf.errors.UnimplementedError as exc:
        said = re.search(r"The \w+ op currently only supports the NHWC tensor format on the CPU",
                         str(exc))  # fmt: skip
        raise InputError(
            f"model {source} has channels_first (NCHW) layers, which TensorFlow cannot run "
            f"on a CPU" + (f" ({said.group(0)})" if said else ""),
            hint="build it with data_format='channels_last' (Keras' default; "
            "keras.config.set_image_data_format('channels_last')) and save it again",
        ) from None
