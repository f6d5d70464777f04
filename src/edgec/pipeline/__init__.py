"""The build: load or train a model, convert it to int8, verify, check, export."""

from edgec.pipeline.build import BuildOptions, BuildResult, Progress, run_build

__all__ = ["BuildOptions", "BuildResult", "Progress", "run_build"]
