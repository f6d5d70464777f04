"""Moved to edgec.stages.recipe; re-export until the issue-12 merge (build.py imports it)."""

from edgec.stages.recipe import Recipe, load_recipe, recipe_from_options  # noqa: F401
