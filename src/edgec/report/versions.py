"""The versions a report records: Python and the packages that shaped the artifact."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "edgec",
    "tensorflow",
    "tf-keras",
    "tensorflow-model-optimization",
    "ai-edge-litert",
    "tflite-micro",
    "ethos-u-vela",
    "numpy",
)


def tool_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
