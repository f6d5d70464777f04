"""Loading the user's Keras model: tf_keras (Keras 2) files only, with clear refusals."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from edgec.errors import InputError

SUFFIXES = (".keras", ".h5", ".hdf5")


def inspect_model_file(path: Path) -> str:
    """Check that ``path`` is a tf_keras model file before TensorFlow is imported.

    Returns the Keras version it was saved with (``"2.21.0"``, or ``"unknown"``).
    """
    if not path.exists():
        raise InputError(f"model {path} does not exist")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise InputError(f"model {path} is a folder but not a SavedModel (no saved_model.pb)")
        if not (path / "keras_metadata.pb").is_file():
            raise InputError(
                f"model {path} is a SavedModel without Keras metadata (Keras 3 export() or "
                "tf.saved_model.save)",
                hint="save the model with tf_keras (model.save('model.keras')) and pass that file",
            )
        return "unknown"
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(
            f"model {path} is not a Keras model file",
            hint="give a tf_keras .keras or .h5 file, or a SavedModel folder",
        )
    version = _saved_keras_version(path)
    if version.startswith("3"):
        raise InputError(
            f"model {path} was saved with Keras {version}; "
            "edgec (and TF-MOT) need Keras 2 (tf_keras)",
            hint="rebuild the model with 'import tf_keras as keras' and save it again, "
            "or load its weights into a tf_keras copy of the architecture",
        )
    return version


def _saved_keras_version(path: Path) -> str:
    if path.suffix.lower() == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read("metadata.json"))
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
            raise InputError(f"model {path} is not a readable .keras archive ({exc})") from None
        return str(meta.get("keras_version", "unknown"))
    import h5py

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", "unknown")
            has_config = "model_config" in f.attrs
    except OSError as exc:
        raise InputError(f"model {path} is not a readable HDF5 file ({exc})") from None
    if not has_config:
        raise InputError(
            f"model {path} holds weights only (no model_config)",
            hint="save the whole model with model.save(), not save_weights()",
        )
    return version.decode() if isinstance(version, bytes) else str(version)


def load_keras_model(path: Path):
    """Load a tf_keras model (TensorFlow is imported here)."""
    inspect_model_file(path)
    from edgec._tf import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable or custom models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = None
        if "Unknown layer" in first or "custom" in first.lower():
            hint = "the model uses custom layers; edgec needs built-in Keras layers"
        raise InputError(f"cannot load model {path}: {first}", hint=hint) from None
    check_model_io(model, str(path))
    return model


def check_model_io(model, source: str) -> None:
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
