"""WeakSeg: weakly-supervised medical image segmentation.

The data path, top to bottom: an image (:mod:`weakseg.io`) and its weak labels
(:mod:`weakseg.weak_labels`) go into a method (:mod:`weakseg.methods`), which trains
and predicts a class labelmap that is written back with the image's geometry.
"""

__version__ = "0.1.0"
