"""The embedded demo case: a slab of the MNI ICBM152 brain template with synthetic scribbles.

The demo needs real anatomy but no download and no patient data. The ``nilearn`` wheel
ships the MNI ICBM152 2009a nonlinear symmetric template (1 mm T1 plus grey- and
white-matter probability maps) inside the package, so installing ``weakseg[demo]``
brings it along. The files are located through the package's import spec *without*
importing nilearn, which would pull in scikit-learn, pandas and more.

The case built from them (all three images on one grid, template geometry kept):

* **image**: the T1 template, averaged over 2x2x2 blocks to 2 mm voxels, cropped to
  the head plus a margin, and cut to a slab of :data:`SLAB_SLICES` axial slices
  centred at MNI z = :data:`SLAB_CENTRE_MM` (lateral ventricles, basal ganglia and
  cortex); float32 intensities 0..255.
* **truth**: 0 background (CSF and outside the brain), 1 grey matter, 2 white matter.
  A voxel is brain tissue when its grey- plus white-matter probability is at least
  0.5 (the probabilities are averaged to 2 mm like the image), and is then grey or
  white matter by the larger of the two probabilities.
* **scribbles**: what a person might paint: short thin strokes on every
  :data:`SCRIBBLE_EVERY`-th slice only, along the centre line of each class's eroded
  region (so they never touch a boundary and always agree with the truth), in a few
  places per slice chosen with a fixed random seed; about 2% of voxels, 255 elsewhere.

Template citation (cite it when publishing results on the demo case):

    V. S. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli, D. L. Collins. Unbiased
    nonlinear average age-appropriate brain templates from birth to adulthood.
    NeuroImage 47 (Supplement 1): S102, 2009.

    V. S. Fonov, A. C. Evans, K. Botteron, C. R. Almli, R. C. McKinstry, D. L. Collins
    and the Brain Development Cooperative Group. Unbiased average age-appropriate
    atlases for pediatric studies. NeuroImage 54(1): 313-327, 2011.

The ICBM 2009a templates are Copyright (C) 1993-2009 Louis Collins, McConnell Brain
Imaging Centre, Montreal Neurological Institute, McGill University, and may be used
and distributed with that notice.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from skimage.morphology import skeletonize

from weakseg.weak_labels import UNLABELLED

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
CLASS_NAMES = ["background", "grey matter", "white matter"]
SHRINK_FACTOR = 2
SLAB_CENTRE_MM = 20.0
SLAB_SLICES = 16
CROP_MARGIN_VOXELS = 4
TISSUE_THRESHOLD = 0.5
SCRIBBLE_EVERY = 4
STROKE_CELL_VOXELS = 8
STROKE_KEEP_FRACTION = 0.5
SCRIBBLE_SEED = 2009


@dataclass
class DemoCase:
    """A ready-to-segment case; the three images share one grid.

    Attributes:
        image: float32 T1 intensities.
        truth: uint8 reference labels, codes index ``class_names``.
        scribbles: uint8 sparse labels, same codes, 255 = unlabelled.
        class_names: ``["background", "grey matter", "white matter"]``.
        description: one paragraph saying what the case is and where it comes from.
    """

    image: sitk.Image
    truth: sitk.Image
    scribbles: sitk.Image
    class_names: list[str]
    description: str


def template_folder() -> Path:
    """The folder of nilearn's packaged data, found without importing nilearn.

    Raises:
        ImportError: nilearn is not installed, or its wheel lacks the ICBM152 files.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the demo case needs the MNI template shipped with nilearn: pip install 'weakseg[demo]'")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise ImportError(
            f"{folder}: nilearn is installed but lacks {', '.join(missing)}; "
            "reinstall it: pip install --force-reinstall 'weakseg[demo]'"
        )
    return folder


def load_demo_case() -> DemoCase:
    """Build the demo case from the packaged template (about a second; deterministic)."""
    folder = template_folder()
    shrunk = {key: _read_shrunk(folder / name) for key, name in TEMPLATE_FILES.items()}
    truth_full = truth_from_probabilities(
        sitk.GetArrayFromImage(shrunk["gm"]) / 255.0, sitk.GetArrayFromImage(shrunk["wm"]) / 255.0
    )
    crop = _demo_crop(shrunk["t1"], truth_full)
    image = shrunk["t1"][crop]
    truth = _on_grid(truth_full[crop[::-1]], image)
    scribbles = _on_grid(synthetic_scribbles(sitk.GetArrayFromImage(truth)), image)
    return DemoCase(
        image=image,
        truth=truth,
        scribbles=scribbles,
        class_names=list(CLASS_NAMES),
        description=_describe(image, sitk.GetArrayFromImage(scribbles)),
    )


def _read_shrunk(path: Path) -> sitk.Image:
    """Read one template file as float32 and average it over 2x2x2 blocks (1 mm -> 2 mm)."""
    image = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    return sitk.BinShrink(image, [SHRINK_FACTOR] * 3)


def truth_from_probabilities(grey: np.ndarray, white: np.ndarray) -> np.ndarray:
    """Labels from tissue probabilities in [0, 1]: 0 background, 1 grey, 2 white matter.

    Tissue where ``grey + white >= 0.5``; among tissue, the more probable of the two.
    """
    labels = np.where(white > grey, 2, 1).astype(np.uint8)
    labels[grey + white < TISSUE_THRESHOLD] = 0
    return labels


def _demo_crop(t1: sitk.Image, truth: np.ndarray) -> tuple[slice, slice, slice]:
    """Index ranges ``(x, y, z)`` of the demo slab: the head plus a margin, SLAB_SLICES slices."""
    centre = t1.TransformPhysicalPointToIndex((0.0, 0.0, SLAB_CENTRE_MM))[2]
    first_slice = max(0, centre - SLAB_SLICES // 2)
    z_range = slice(first_slice, min(t1.GetSize()[2], first_slice + SLAB_SLICES))
    in_plane = np.argwhere((sitk.GetArrayViewFromImage(t1)[z_range] > 0).any(axis=0))
    low = np.maximum(in_plane.min(axis=0) - CROP_MARGIN_VOXELS, 0)
    high = np.minimum(in_plane.max(axis=0) + CROP_MARGIN_VOXELS + 1, truth.shape[1:])
    return (slice(int(low[1]), int(high[1])), slice(int(low[0]), int(high[0])), z_range)


def _on_grid(labels: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A uint8 ``(Z, Y, X)`` array as an image with ``reference``'s geometry."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.uint8))
    image.CopyInformation(reference)
    return image


def synthetic_scribbles(truth: np.ndarray, seed: int = SCRIBBLE_SEED) -> np.ndarray:
    """Sparse strokes drawn from ``truth`` (uint8 ``(Z, Y, X)``), 255 where unlabelled.

    On slices ``1, 1 + SCRIBBLE_EVERY, ...`` each class's region is eroded by one voxel
    and thinned to its centre line; the slice is divided into cells of
    ``STROKE_CELL_VOXELS`` and the centre line is kept in a random half of the cells,
    giving short strokes spread over the slice. A class left without any stroke on a
    slice keeps its longest cell so that every class is scribbled on every such slice.
    """
    rng = np.random.default_rng(seed)
    scribbles = np.full(truth.shape, UNLABELLED, dtype=np.uint8)
    for z in range(1, truth.shape[0], SCRIBBLE_EVERY):
        for code in np.unique(truth[z]):
            strokes = _strokes(truth[z] == code, rng)
            scribbles[z][strokes] = code
    return scribbles


def _strokes(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bool mask of short centre-line strokes inside one class's 2D ``region``."""
    core = ndimage.binary_erosion(region, structure=ndimage.generate_binary_structure(2, 1))
    centre_line = skeletonize(core if core.any() else region)
    cells = _cell_ids(region.shape)
    occupied = np.unique(cells[centre_line])
    kept = occupied[rng.random(occupied.size) < STROKE_KEEP_FRACTION]
    if kept.size == 0 and occupied.size:
        kept = np.array([np.bincount(cells[centre_line]).argmax()])
    return centre_line & np.isin(cells, kept)


def _cell_ids(shape: tuple[int, int]) -> np.ndarray:
    """Integer id of the ``STROKE_CELL_VOXELS``-square cell each pixel of a slice falls in."""
    rows = np.arange(shape[0])[:, np.newaxis] // STROKE_CELL_VOXELS
    columns = np.arange(shape[1])[np.newaxis, :] // STROKE_CELL_VOXELS
    return rows * (shape[1] // STROKE_CELL_VOXELS + 1) + columns


def _describe(image: sitk.Image, scribbles: np.ndarray) -> str:
    size = "x".join(str(s) for s in image.GetSize())
    labelled = 100.0 * np.count_nonzero(scribbles != UNLABELLED) / scribbles.size
    return (
        f"MNI ICBM152 2009a symmetric T1 template (Fonov et al., NeuroImage 2009 and 2011), "
        f"averaged to {SHRINK_FACTOR} mm voxels, {size} voxels: {SLAB_SLICES} axial slices around "
        f"MNI z = {SLAB_CENTRE_MM:+.0f} mm. Truth: grey/white matter from the template's tissue "
        f"probability maps. Scribbles: synthetic strokes on every {SCRIBBLE_EVERY}th slice, "
        f"{labelled:.1f}% of voxels labelled."
    )
