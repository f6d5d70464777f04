"""Loading the user's model: tf_keras or Keras 3 files, SavedModel folders, custom objects."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgec import safeio
from edgec.errors import InputError, printable

SUFFIXES = (".keras", ".h5", ".hdf5")
SAVEDMODEL = "savedmodel"  # a SavedModel without Keras metadata: built from its signature


def inspect_model_file(path: Path) -> str:
    """Check that ``path`` is a tf_keras model file before TensorFlow is imported.

    Returns the Keras version it was saved with (``"2.21.0"``, ``"3.15.1"``, ``"unknown"``),
    or ``SAVEDMODEL`` for a SavedModel folder without Keras metadata.
    """
    if not path.exists() and not path.is_symlink():
        raise InputError(f"model {path} does not exist")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise InputError(f"model {path} is a folder but not a SavedModel (no saved_model.pb)")
        safeio.regular_files(path, "SavedModel", limit_files=safeio.MAX_ARCHIVE_MEMBERS,
                             limit_bytes=safeio.MAX_ARCHIVE_BYTES)  # fmt: skip
        if not (path / "keras_metadata.pb").is_file():
            return SAVEDMODEL  # Keras 3 export() or tf.saved_model.save: its serving signature
        return "unknown"
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(
            f"model {path} is not a Keras model file",
            hint="give a Keras .keras or .h5 file, or a SavedModel folder",
        )
    return _saved_keras_version(path)


def _saved_keras_version(path: Path) -> str:
    if path.suffix.lower() == ".keras":
        return _keras_archive_version(path)
    import h5py

    safeio.check_hdf5(safeio.regular_file(path, "model"), f"model {path}",
                      limit_bytes=safeio.MAX_ARCHIVE_BYTES)  # fmt: skip
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", "unknown")
            has_config = "model_config" in f.attrs
            config = f.attrs.get("model_config") if has_config else None
    except OSError as exc:
        raise InputError(f"model {path} is not a readable HDF5 file ({exc})") from None
    if not has_config:
        raise InputError(
            f"model {path} holds weights only (no model_config)",
            hint="save the whole model with model.save(), not save_weights()",
        )
    if isinstance(config, bytes | str):
        _check_config_names(safeio.load_json(config, f"model {path}: model_config"), str(path))
    return version.decode() if isinstance(version, bytes) else str(version)


def _keras_archive_version(path: Path) -> str:
    """A .keras archive's Keras version, its members checked (sizes, methods, its weights'
    datasets) before any loader extracts or reads them."""
    where = f"model {path}"
    with safeio.open_archive(path, "model", kind=".keras") as archive:
        names = archive.namelist()
        if "metadata.json" not in names:
            raise InputError(f"model {path} is not a readable .keras archive (no metadata.json)")
        text = safeio.read_member(archive, "metadata.json", where, limit=1 << 20)
        meta = safeio.load_json(text, f"{where}: metadata.json")
        if "config.json" in names:  # layer names before TensorFlow starts
            limit = safeio.MAX_JSON_MEMBER_BYTES
            config = safeio.read_member(archive, "config.json", where, limit=limit)
            _check_config_names(safeio.load_json(config, f"{where}: config.json"), str(path))
        for weights in (n for n in names if n.endswith(".h5")):
            safeio.check_hdf5_member(archive, weights, f"{where}: {weights}",
                                     limit_bytes=safeio.MAX_ARCHIVE_BYTES)  # fmt: skip
    version = meta.get("keras_version", "unknown") if isinstance(meta, dict) else "unknown"
    return str(version)


def load_keras_model(path: Path, custom_objects: dict | None = None):
    """Load a tf_keras or Keras 3 model, or a SavedModel's signature (TensorFlow imported here)."""
    version = inspect_model_file(path)
    if version == SAVEDMODEL:
        model = SignatureModel.load(path)
        check_model_io(model, str(path))
        return model
    if version.startswith("3"):
        from edgec.pipeline import keras3

        loader = keras3.load_model
    else:
        loader = _load_tf_keras
    try:
        model = loader(path, custom_objects)
    except Exception as exc:  # Keras raises many types for unreadable or custom models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = None
        if any(s in first for s in ("Unknown layer", "custom", "Could not locate", "deserialized")):
            hint = "the model uses custom layers: give their code with --custom-objects FILE.py"
        raise InputError(f"cannot load model {path}: {first}", hint=hint) from None
    check_model_io(model, str(path))
    return model


def _load_tf_keras(path: Path, custom_objects: dict | None = None):
    from edgec._tf import keras

    return keras.models.load_model(path, compile=False, custom_objects=custom_objects)


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
            self(tf.constant(x[i : i + batch_size], tf.float32)).numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(parts)

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self._function.variables))


# TensorFlow's root name scopes (each layer's weights and ops are created under one):
# Keras 3 accepts other names ('dense one', 'ü', '_x'), which fail deep in the conversion
_SCOPE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*")


def check_layer_names(model, source: str) -> None:
    """Every layer (nested ones too) has a name TensorFlow can use as a name scope."""
    stack = list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        _check_name(layer.name, source)
        stack.extend(getattr(layer, "layers", []))


def _check_name(name: str, source: str) -> None:
    if not _SCOPE_NAME.fullmatch(name):
        raise InputError(
            f"model {source}: layer {printable(repr(name))[:80]} has a name TensorFlow "
            "cannot use (letters, digits and . _ - / > only, not starting with _ - / >)",
            hint="rename the layer when building the model (name=...) and save it again",
        )


def _check_config_names(config: object, source: str) -> None:
    """The layer names in a saved model's config (nested models' too), as
    check_layer_names checks a loaded model's: read before TensorFlow starts."""
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


def check_model_io(model, source: str) -> None:
    check_layer_names(model, source)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InputError(
            f"model {source} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "edgec builds single-input, single-output models"
        )
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise InputError(
            f"model {source} has input shape {list(shape)} with unknown dimensions",
            hint="give the Input layer a fixed shape (microcontrollers need static shapes)",
        )
