from edgec.artifact.lut import VerifiedLut, compress_lut_verified  # noqa: F401  # moved to edgec.artifact.lut; re-export until the issue-12 merge
