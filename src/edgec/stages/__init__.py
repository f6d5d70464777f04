"""Compression stages as plug-ins: one module per stage, registered by type.

Adding a stage is one module with a ``@register``-ed ``Stage`` subclass (see
``stages/base.py``), imported below; recipe parsing, the CLI's short forms, validation, the
progress and summary lines and the proof in the int8 artifact all read it from the
registry. No TensorFlow is imported here (the stages import it when they run).
"""

from edgec.stages import (  # noqa: F401  (registers the stages)
    cluster,
    distill,
    low_rank,
    mixed_precision,
    prune,
    prune_channels,
    qat,
)
from edgec.stages.base import (
    Param,
    ShortForm,
    Stage,
    find_stage,
    get_stage,
    register,
    stage_types,
    summary_line,
    training_params,
    unregister,
)

__all__ = [
    "Param",
    "ShortForm",
    "Stage",
    "find_stage",
    "get_stage",
    "register",
    "stage_types",
    "summary_line",
    "training_params",
    "unregister",
]
