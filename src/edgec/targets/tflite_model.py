from edgec.artifact.tflite_model import *  # noqa: F403  # moved to edgec.artifact.tflite_model; re-export until the issue-12 merge
