"""``python -m edgec``: the command line.

``python -m`` puts the current directory first on ``sys.path``. In CI that is a pull
request's checkout, where a ``numpy.py`` or ``tensorflow.py`` would shadow a module edgec
imports; it is dropped before anything else is imported (edgec itself is imported by then,
and its own modules are found through its package). ``python -P -m edgec`` (Python 3.11)
never adds it. A ``--custom-objects`` module in the current directory is then named by
its file (``--custom-objects ./layers.py``).
"""

import os
import sys

# ... and so is every other entry naming it: an empty PYTHONPATH element (a trailing or
# doubled ':', as "PYTHONPATH=$PYTHONPATH:..." writes when it was unset) means the cwd too.
try:
    _here = os.path.realpath(os.getcwd())
except FileNotFoundError:  # the current directory was removed: main() says so
    _here = ""
sys.path[:] = [p for p in sys.path if p != "" and os.path.realpath(p) != _here]

from edgec.cli import main  # noqa: E402

main()
