"""``python -m edgec``: the command line.

``python -m`` puts the current directory first on ``sys.path``. In CI that is a pull
request's checkout, where a ``numpy.py`` or ``tensorflow.py`` would shadow a module edgec
imports; it is dropped before anything else is imported (edgec itself is imported by then,
and its own modules are found through its package). ``python -P -m edgec`` (Python 3.11)
never adds it.
"""

import os
import sys

if sys.path and not sys.flags.safe_path:
    first = sys.path[0]
    if first == "" or os.path.realpath(first) == os.path.realpath(os.getcwd()):
        del sys.path[0]

from edgec.cli import main  # noqa: E402

main()
