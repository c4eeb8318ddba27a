"""Helpers of the WeakSeg Slicer module.

``logic`` is what the Python console uses; ``mrml_bridge`` converts MRML nodes to arrays
and files with exact geometry; ``runner`` and ``jobs`` run the ``weakseg`` command line in a
separate process; ``results`` writes results as segments with undo; ``cohort`` holds image
labels and the training folder; ``install`` installs dependencies on first use.
None of these modules imports Qt, so all of them run under slicer-core without the application.
"""
