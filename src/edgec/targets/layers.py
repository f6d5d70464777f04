from edgec.artifact.stats import *  # noqa: F403  # moved to edgec.artifact.stats; re-export until the issue-12 merge
