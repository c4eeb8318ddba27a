"""File suffixes WeakSeg reads and writes, each list once.

Suffixes are compared in lower case and include the double suffixes ``.nii.gz`` and
``.seg.nrrd`` (see :func:`weakseg.io.suffix_of`).
"""

from __future__ import annotations

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
SEGMENTATION_SUFFIX = ".seg.nrrd"
# Images of a cohort folder (<case>_image / _label): volumes and lossless 2D pictures.
COHORT_IMAGE_SUFFIXES = VOLUME_SUFFIXES + (".png",)
# Scribbles and masks may also be Slicer segmentations.
SCRIBBLE_SUFFIXES = COHORT_IMAGE_SUFFIXES + (SEGMENTATION_SUFFIX,)
MASK_SUFFIXES = SCRIBBLE_SUFFIXES
# Images an image-label CSV may name.
LABELLED_IMAGE_SUFFIXES = VOLUME_SUFFIXES + PICTURE_SUFFIXES
LABELMAP_SUFFIXES = VOLUME_SUFFIXES + (".mhd",) + PICTURE_SUFFIXES
RESULT_SUFFIXES = (SEGMENTATION_SUFFIX,) + LABELMAP_SUFFIXES
MODEL_SUFFIX = ".pt"
