"""The environment edgec gives TensorFlow, set before TensorFlow is first imported.

``edgec._tf`` applies it to its process at import; a worker child (the conversion
child, ``edgec._process.process_environment``) compares environments with it applied,
since the child applies it too: a parent that imported TensorFlow after starting the
child has not changed what the child converts with.
"""

from __future__ import annotations

from collections.abc import MutableMapping

FIXED = {"TF_USE_LEGACY_KERAS": "1"}  # TF-MOT takes Keras 2 only (facts.md section 2)
DEFAULTS = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # C++ INFO/WARNING noise off
    "TF_ENABLE_ONEDNN_OPTS": "0",  # bit-stable float results
}


def apply(environ: MutableMapping[str, str]) -> None:
    """Set edgec's TensorFlow variables in ``environ`` (the defaults only where unset)."""
    environ.update(FIXED)
    for name, value in DEFAULTS.items():
        environ.setdefault(name, value)
