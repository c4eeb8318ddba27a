"""Benchmarks: every method on the same test cases, one table (``weakseg bench``).

:mod:`weakseg.bench.scribbles` runs the methods that learn from scribbles (the rows come
from the method registry), :mod:`weakseg.bench.imagelabel` the image-level label pipeline
and its baselines; :mod:`weakseg.bench.reports` writes what both produce. Both take a typed
options object, so they run from Python as well as from the command line.
"""
