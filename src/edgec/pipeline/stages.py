"""Moved to edgec.stages.plan; re-export until the issue-12 merge (build.py imports it)."""

from edgec.stages.plan import run_stage, scaled, validate  # noqa: F401
