"""The build's TensorFlow-side work: convert, verify, compress, inspect."""

from typing import Any

__all__ = ["BuildOptions", "BuildResult", "Progress", "run_build"]


def __getattr__(name: str) -> Any:
    # moved to edgec.builder; re-export until the issue-12 merge (lazily: edgec.builder
    # imports this package, so an eager import here would be circular)
    if name in __all__:
        from edgec import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'edgec.pipeline' has no attribute {name!r}")
