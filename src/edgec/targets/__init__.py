"""Target profiles and the checks a converted model must pass on them (no TensorFlow)."""

from edgec.artifact.tflite_model import TfliteModel
from edgec.targets.profile import (
    Budget,
    TargetProfile,
    builtin_names,
    load_target,
    load_targets,
    parse_budget,
)

__all__ = [
    "Budget",
    "TargetProfile",
    "TfliteModel",
    "builtin_names",
    "load_target",
    "load_targets",
    "parse_budget",
]
