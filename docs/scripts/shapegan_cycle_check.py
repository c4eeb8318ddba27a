"""What the shape-gan game rewards: its losses for the true masks of training images and for other masks.

A trained ``shape-gan`` model's mask-to-image generator renders each candidate mask of the
first ``--images`` training images, and the script prints, per candidate, the mean area, the
image round trip's L1 distance to the real image (the cycle term the image-to-mask generator
lowers) and the mask critic's energy (the VAE critic's fakeness, lower is more "real").
Candidates: the true masks (read from ``<case>_mask`` beside the images, used for this check
only), the true masks eroded and dilated by a few pixels, the model's own pseudo labels, and
empty masks. When the game is aligned with segmentation, the true masks score best on both.

    python docs/scripts/shapegan_cycle_check.py bench-hc18/models/shape-gan.pt ../shared/data/hc18
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.nn import functional as F

from weakseg.cases import list_cases
from weakseg.data import resize_labels
from weakseg.engine import load_checkpoint
from weakseg.io import read_image
from weakseg.methods.shape_gan_cycle import ShapeGanNetworks
from weakseg.methods.shape_gan_data import Grid, binary_mask, image_slices


def grown(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """``(N, 1, H, W)`` 0/1 masks dilated (``pixels`` > 0) or eroded (< 0) by a square of that radius."""
    size = 2 * abs(pixels) + 1
    if pixels >= 0:
        return F.max_pool2d(masks, size, 1, pixels)
    return -F.max_pool2d(-masks, size, 1, -pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a finished shape-gan model file")
    parser.add_argument("data_dir", help="its training images, with <case>_mask files")
    parser.add_argument("--images", type=int, default=60, help="training images to check (the first N)")
    arguments = parser.parse_args()

    payload = load_checkpoint(arguments.model, torch.device("cpu"))
    metadata, config = payload["metadata"], payload["metadata"]["config"]
    grid = Grid(int(metadata["grid"][0]), int(metadata["grid"][1]), float(metadata["grid"][2]))
    networks = ShapeGanNetworks(int(metadata["in_channels"]), tuple(config["channels"]), grid,
                                not config["plain_discriminator"])
    prefix = "networks."
    networks.load_state_dict({key[len(prefix):]: value for key, value in payload["model"].items()
                              if key.startswith(prefix)})
    networks.eval()

    names = list(metadata["training_cases"])[: arguments.images]
    cases = {case.name: case for case in list_cases(arguments.data_dir, None, require_scribbles=False)}
    images = torch.cat([image_slices(read_image(cases[name].image_path), grid) for name in names])
    truth = torch.cat([resize_labels(torch.from_numpy(binary_mask(cases[name].label_path).astype(np.int64)),
                                     (grid.height, grid.width)) for name in names]).float()[:, None]
    pseudo = payload["extra"]["pseudo_labels"][: len(names)].float()[:, None]
    candidates = {"true masks": truth, "true, eroded 3 px": grown(truth, -3), "true, dilated 3 px": grown(truth, 3),
                  "true, dilated 6 px": grown(truth, 6), "pseudo labels": pseudo, "empty": torch.zeros_like(truth)}
    print("| masks | area | image round trip L1 | mask critic's fakeness |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for name, masks in candidates.items():
            round_trip = (networks.to_image(masks) - images).abs().mean().item()
            energy = networks.mask_fakeness(masks).item()
            print(f"| {name} | {masks.mean().item():.3f} | {round_trip:.3f} | {energy:.3f} |")


if __name__ == "__main__":
    main()
