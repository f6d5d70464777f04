"""edgec: from a Keras model to firmware-ready int8 TFLite artifacts.

The public API (see :mod:`edgec.api`) is re-exported here and imported on first use, so
``import edgec`` stays light (``edgec.check`` never imports TensorFlow)::

    import edgec
    report = edgec.build("model.keras", target="cortex-m", data="calib.npz", out="out")
    edgec.check("out/model.tflite", target="cortex-m4,edgetpu").ok
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
# (not "targets": that name is the edgec.targets package)
__all__ = ["__version__", "build", "check", "inspect", "target_profiles"]


def __getattr__(name: str) -> Any:
    # PEP 562 lazy re-export: edgec.api (and whatever it needs) loads on first use only,
    # so the low layers' `from edgec import __version__` pulls in nothing above them.
    if name in ("build", "check", "inspect", "target_profiles"):
        return getattr(importlib.import_module("edgec.api"), name)
    raise AttributeError(f"module 'edgec' has no attribute {name!r}")
