from edgec.export.names import *  # noqa: F403  # moved to edgec.export; re-export until the issue-12 merge
