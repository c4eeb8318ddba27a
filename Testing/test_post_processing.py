"""Post-processing on and off: one switch for flip averaging and the largest-component filter.

A network that thresholds the intensity stands in for a trained one, so the test knows
exactly what the raw output is: two bright blobs, both true. The filter keeps one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic_data import CLASSES, write_case, write_volume
from weakseg.bench.scribbles import ScribbleBenchOptions, post_processing_modes, run_scribble_bench
from weakseg.errors import WeakSegInputError
from weakseg.io import read_image
from weakseg.methods.registry import method_named
from weakseg.methods.scribble_settings import CohortConfig
from weakseg.methods.scribble_training import train_cohort
from weakseg.methods.scribble_unet import CohortModel, predict_volume
from weakseg.cases import list_cases


class SharedLog(list):
    """A list that copies of its owner share: ``copy.deepcopy`` hands back the same list."""

    def __deepcopy__(self, memo: dict) -> "SharedLog":
        return self


class BrightIsForeground(torch.nn.Module):
    """Class 1 wherever the normalised intensity is positive; counts its calls.

    The count is a list shared with the copies prediction makes of the network (batch norm folding).
    """

    def __init__(self) -> None:
        super().__init__()
        self.config = {"in_channels": 1}
        self.call_log = SharedLog()

    @property
    def calls(self) -> int:
        return len(self.call_log)

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        self.call_log.append(len(slices))
        return torch.cat([-10 * slices[:, :1], 10 * slices[:, :1]], dim=1)


def two_true_blobs(folder):
    """A 2x32x32 volume whose class-1 truth is two separate blobs (a big one and a small one)."""
    volume = np.zeros((2, 32, 32), dtype=np.float32)
    volume[:, 4:16, 4:16] = 100.0
    volume[:, 22:27, 22:27] = 100.0
    return read_image(write_volume(volume, folder / "blobs.nii.gz")), volume > 0


def threshold_model() -> CohortModel:
    config = CohortConfig(image_size=32, channels=(4, 8), largest_component=True)
    return CohortModel(network=BrightIsForeground(), class_names=["background", "blob"], image_size=32, config=config,
                       device=torch.device("cpu"))


def test_the_largest_component_filter_drops_a_true_blob_that_the_raw_output_keeps(tmp_path):
    image, truth = two_true_blobs(tmp_path)
    model = threshold_model()
    processed, _ = predict_volume(model, image)
    raw, _ = predict_volume(model, image, post_processing=False)
    assert np.array_equal(raw == 1, truth)
    assert processed[:, 4:16, 4:16].all() and not processed[:, 22:27, 22:27].any()


def test_raw_output_runs_each_slice_once_and_post_processing_four_times(tmp_path):
    image, _ = two_true_blobs(tmp_path)
    model = threshold_model()
    predict_volume(model, image, post_processing=False)
    assert model.network.calls == 1
    predict_volume(model, image)
    assert model.network.calls == 1 + 4


def test_post_processing_option_values():
    assert post_processing_modes("on,off") == (True, False)
    assert post_processing_modes(" off ") == (False,)
    for bad in ("", "yes", "on,on"):
        with pytest.raises(WeakSegInputError, match="--post-processing"):
            post_processing_modes(bad)


def test_the_scribble_bench_scores_a_trained_model_with_and_without_post_processing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for index in range(2):
        write_case(data, f"case{index:02d}", seed=index)
    settings = method_named("pce").make_settings(image_size=32, channels=(4, 8, 16), steps=2, batch_size=2)
    train_cohort(list_cases(str(data), "case00"), tmp_path / "pce.pt", settings, CLASSES.split(","))
    options = ScribbleBenchOptions(data_dir=str(data), out=str(tmp_path / "out"), methods=("pce",),
                                   test_split="case01", models={"pce": str(tmp_path / "pce.pt")}, overlays=0)
    assert [entry["method"] for entry in run_scribble_bench(options).summary] == ["pce", "pce (raw)"]
    options.post_processing = (False,)
    assert [entry["method"] for entry in run_scribble_bench(options).summary] == ["pce (raw)"]


class ChannelIsClass(torch.nn.Module):
    """Class ``k`` (1, 2) wherever input channel ``k - 1`` is bright, background elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.config = {"in_channels": 2}

    def forward(self, slices: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(slices[:, :1]), 10 * slices], dim=1)


def test_prediction_applies_the_clean_up_the_model_file_records(tmp_path):
    import SimpleITK as sitk

    from weakseg.io import LoadedImage

    channels = np.zeros((2, 3, 32, 32), dtype=np.float32)
    channels[0, :, 4:20, 4:20] = 100.0  # class 1: the object
    channels[1, :, 8:12, 20:23] = 100.0  # class 2, true: touches class 1 (36 voxels)
    channels[1, :, 26:31, 25:31] = 100.0  # class 2, false and larger (90 voxels), apart
    image = LoadedImage(channels, sitk.GetImageFromArray(channels[0]), str(tmp_path / "two-channel"))

    def model(record: dict) -> CohortModel:
        return CohortModel(network=ChannelIsClass(), class_names=["background", "a", "b"], image_size=32,
                           config=CohortConfig(image_size=32, channels=(4, 8)), device=torch.device("cpu"),
                           metadata=record)

    per_class, _ = predict_volume(model({}), image)
    assert per_class[:, 26:31, 25:31].all() and not per_class[:, 8:12, 20:23].any()
    one_piece, _ = predict_volume(model({"components": {"one_piece": True}}), image)
    assert (one_piece[:, 8:12, 20:23] == 2).all() and not one_piece[:, 26:31, 25:31].any()
    assert (one_piece[:, 4:20, 4:20] == 1).all()
