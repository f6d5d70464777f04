"""``edgec fit``: search compression recipes for the most accurate int8 model that fits.

One module per concern: ``space`` (the levers and the candidates), ``trial`` (one
candidate screened or trained and built), ``executor`` (where trials run: the seam for
parallel executors), ``search`` (screening, successive halving, the winner), ``store``
(``fit.json``: the resumable state) and ``plot`` (the Pareto plot of report.html).

The Python API is :func:`edgec.fit.search.run_fit` (``edgec.fit`` is this package, so it
cannot also be a function: the package attribute would shadow it after the first import).
"""
