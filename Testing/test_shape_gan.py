"""Method shape-gan: the ellipse shape model, the VAE critic, DGCC, the noise-weighted Dice loss,
head circumference, training/resume/predict end to end on tiny synthetic images, and its errors."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from weakseg.cli import main
from weakseg.errors import WeakSegInputError
from weakseg.head_circumference import ellipse_axes_mm, head_circumference_mm, pixel_size_from_csv, ramanujan_perimeter
from weakseg.models.shape_gan_nets import CalibratedUNet, VaeMaskCritic
from weakseg.noisy_labels import agreement_weights, confidence_weights, noise_weighted_dice_loss
from weakseg.shape_models import EllipseShapeModel, parse_shape_model

TINY = ["--image-size", "32", "--channels", "4,8,16", "--batch-size", "4"]


def _ellipse(height: int, width: int, centre: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
    rows, columns = np.mgrid[0:height, 0:width] + 0.5
    return ((rows - centre[0]) / axes[0]) ** 2 + ((columns - centre[1]) / axes[1]) ** 2 <= 1


def _write_heads(folder: Path, count: int, seed: int = 0, shape=(24, 32)) -> Path:
    """2D images of a bright elliptic ring (a skull) around a dim inside, its filled mask, a pixel-size CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        centre = (shape[0] / 2 + rng.uniform(-2, 2), shape[1] / 2 + rng.uniform(-3, 3))
        axes = (rng.uniform(6, 8), rng.uniform(9, 12))
        inside = _ellipse(*shape, centre, axes)
        ring = inside & ~_ellipse(*shape, centre, (axes[0] - 1.5, axes[1] - 1.5))
        image = np.where(ring, 200.0, np.where(inside, 60.0, 20.0)) + rng.normal(0, 10, shape)
        name = f"{index:03d}"
        sitk.WriteImage(sitk.GetImageFromArray(np.clip(image, 0, 255).astype(np.uint8)), str(folder / f"{name}_image.png"))
        sitk.WriteImage(sitk.GetImageFromArray(inside.astype(np.uint8) * 255), str(folder / f"{name}_mask.png"))
        rows.append({"case": name, "pixel_size_mm": "0.2",
                     "head_circumference_mm": f"{ramanujan_perimeter(axes[1] * 0.2, axes[0] * 0.2):.2f}"})
    with open(folder / "hc18_pixel_size.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_parse_shape_model_defaults_params_and_errors():
    assert parse_shape_model("ellipse") == EllipseShapeModel()
    model = parse_shape_model("ellipse:major=0.5-0.6,aspect=0.8,angle=0-10")
    assert model.major == (0.5, 0.6) and model.aspect == (0.8, 0.8) and model.angle == (0.0, 10.0)
    for bad, words in (("circle", "unknown shape model"), ("ellipse:size=0.1-0.2", "is not one of"),
                       ("ellipse:major=0.6-0.5", "LOW <= HIGH"), ("ellipse:aspect=abc", "not a number"),
                       ("ellipse:aspect=0.5-1.5", "LOW <= HIGH")):
        with pytest.raises(WeakSegInputError, match="--shape-model") as error:
            parse_shape_model(bad)
        assert words in str(error.value)


def test_ellipses_follow_their_ranges():
    generator = torch.Generator().manual_seed(0)
    model = EllipseShapeModel(major=(0.5, 0.5), aspect=(0.6, 0.6), x=(0.5, 0.5), y=(0.5, 0.5), angle=(0, 180))
    masks = model.draw(6, 96, 128, generator)
    for mask in masks.numpy() > 0:
        major, minor = ellipse_axes_mm(mask, (1.0, 1.0))
        assert major == pytest.approx(32, rel=0.03) and minor == pytest.approx(0.6 * 32, rel=0.03)
        rows, columns = np.nonzero(mask)
        assert rows.mean() == pytest.approx(48, abs=0.5) and columns.mean() == pytest.approx(64, abs=0.5)
    # on a grid whose pixels are twice as tall as wide, a circle spans half the rows it spans columns
    circle = EllipseShapeModel(major=(0.5, 0.5), aspect=(1, 1)).draw(1, 64, 64, generator, pixel_aspect=2.0)[0]
    rows, columns = np.nonzero(circle.numpy())
    assert np.ptp(rows) + 1 == pytest.approx((np.ptp(columns) + 1) / 2, abs=1)


def test_head_circumference_of_a_drawn_ellipse_and_pixel_size_csv(tmp_path):
    mask = _ellipse(300, 400, (150, 200), (60, 100))
    assert head_circumference_mm(mask, (0.1, 0.1)) == pytest.approx(ramanujan_perimeter(10, 6), rel=0.005)
    # anisotropic pixels: 60 rows of 0.2 mm and 100 columns of 0.1 mm make a 12 x 10 mm ellipse
    assert head_circumference_mm(mask, (0.2, 0.1)) == pytest.approx(ramanujan_perimeter(12, 10), rel=0.005)
    assert ramanujan_perimeter(5, 5) == pytest.approx(2 * math.pi * 5)
    assert head_circumference_mm(np.zeros((4, 4), bool), (1, 1)) == 0
    (tmp_path / "hc18_pixel_size.csv").write_text("case,pixel_size_mm,head_circumference_mm\n007,0.125,50\n")
    assert pixel_size_from_csv(tmp_path / "007_image.png") == 0.125
    assert pixel_size_from_csv(tmp_path / "008_image.png") is None
    table = tmp_path / "hc18_pixel_size.csv"
    table.write_text("case,pixel_size_mm\n007,0.25\n008,-1\n")
    os.utime(table, ns=(table.stat().st_atime_ns, table.stat().st_mtime_ns + 10**9))  # an edit within the clock's tick
    with pytest.raises(WeakSegInputError, match=r"hc18_pixel_size.csv, line 3: pixel_size_mm '-1' is not a positive"):
        pixel_size_from_csv(tmp_path / "007_image.png")  # the edited table is read again, and its bad row named


def test_noise_weighted_dice_ignores_zero_weight_pixels():
    truth = torch.zeros(1, 8, 8, dtype=torch.long)
    truth[0, 2:6, 2:6] = 1
    noisy = truth.clone()
    noisy[0, 0, :] = 1  # a wrong strip in the pseudo label
    perfect = torch.nn.functional.one_hot(truth, 2).permute(0, 3, 1, 2).float()
    trust = torch.ones(1, 8, 8)
    assert float(noise_weighted_dice_loss(perfect, noisy, trust)) > 0.05  # plain Dice punishes the right answer
    trust[0, 0, :] = 0
    assert float(noise_weighted_dice_loss(perfect, noisy, trust)) == pytest.approx(0, abs=1e-4)
    assert torch.allclose(confidence_weights(torch.tensor([0.0, 0.5, 0.9])), torch.tensor([1.0, 0.0, 0.8]))
    assert torch.allclose(agreement_weights(torch.tensor([0.9, 0.9]), torch.tensor([1, 0])), torch.tensor([0.9, 0.1]))


def test_dgcc_starts_as_identity_and_then_follows_the_judgement():
    torch.manual_seed(0)
    network = CalibratedUNet(1, (4, 8), judgement_size=5).eval()
    features, logits = network.forward_features(torch.randn(2, 1, 16, 16))
    assert torch.allclose(network.calibrated(features, torch.randn(2, 5)), logits, atol=1e-6)
    torch.nn.init.normal_(network.calibration[2].weight)
    first, second = torch.randn(2, 5), torch.randn(2, 5)
    assert not torch.allclose(network.calibrated(features, first), network.calibrated(features, second))


def test_vae_critic_learns_the_ellipse_manifold():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    critic = VaeMaskCritic(32, 32, width_channels=8)
    optimizer = torch.optim.Adam(critic.parameters(), lr=2e-3)
    model = EllipseShapeModel()
    for _ in range(150):
        loss = critic.energy(model.draw(16, 32, 32, generator)[:, None]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    critic.eval()
    with torch.no_grad():
        ellipses = critic.energy(model.draw(32, 32, 32, generator)[:, None]).mean()
        blobs = (torch.rand(32, 1, 32, 32, generator=generator) > 0.7).float()
        stripes = torch.zeros(32, 1, 32, 32)
        stripes[..., ::4] = 1
        assert float(ellipses) < 0.3 * float(critic.energy(blobs).mean())  # far from the manifold
        assert float(ellipses) < 0.5 * float(critic.energy(stripes).mean())


def _train(folder: Path, out: Path, *extra: str) -> int:
    return main(["train", str(folder), "--method", "shape-gan", "--out", str(out), "--progress", "none",
                 "--gan-steps", "6", "--steps", "4", "--rounds", "2", *TINY, *extra])


def test_train_predict_and_head_circumference_csv(tmp_path):
    folder = _write_heads(tmp_path / "heads", 6)
    model = tmp_path / "model.pt"
    assert _train(folder, model, "--split", "000-003", "--shape-model", "ellipse:major=0.5-0.8") == 0
    out = tmp_path / "pred"
    images = [str(folder / "004_image.png"), str(folder / "005_image.png")]
    assert main(["predict", str(model), *images, "--out", str(out), "--format", ".nii.gz", "--progress", "none"]) == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "004_image.nii.gz")))
    assert labels.shape == (24, 32) and set(np.unique(labels)) <= {0, 1}
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["image"] for row in rows] == ["004_image", "005_image"]
    assert {row["pixel_size_source"] for row in rows} == {"csv"} and rows[0]["pixel_size_mm"] == "0.2"
    expected = head_circumference_mm(labels > 0, (0.2, 0.2))
    assert float(rows[0]["head_circumference_mm"]) == pytest.approx(expected, abs=0.01)


def test_the_cycle_check_script_scores_every_candidate_mask(tmp_path):
    import subprocess
    import sys

    folder = _write_heads(tmp_path / "heads", 4)
    model = tmp_path / "model.pt"
    assert _train(folder, model, "--split", "000-003", "--shape-model", "ellipse") == 0
    script = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "shapegan_cycle_check.py"
    result = subprocess.run([sys.executable, str(script), str(model), str(folder), "--images", "3"],
                            capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines()[2:]]
    assert rows == ["true masks", "true, eroded 3 px", "true, dilated 3 px", "true, dilated 6 px", "pseudo labels",
                    "empty"]
    empty = result.stdout.splitlines()[-1].split("|")
    assert float(empty[2]) == 0.0 and float(empty[3]) >= 0


def test_unpaired_masks_and_the_ablations_train(tmp_path):
    folder = _write_heads(tmp_path / "heads", 6)
    assert _train(folder, tmp_path / "unpaired.pt", "--split", "000-002", "--unpaired-split", "003-005",
                  "--no-vae-discriminator", "--no-dgcc", "--plain-dice") == 0
    payload = torch.load(tmp_path / "unpaired.pt", weights_only=True)
    config = payload["metadata"]["config"]
    assert config["plain_discriminator"] and config["no_dgcc"] and config["plain_dice"] and config["shape_model"] == ""
    assert payload["metadata"]["state"]["stage"] == "done"
    assert torch.all(payload["extra"]["weights"] == 1)


def test_resume_after_the_gan_stage_gives_the_uninterrupted_weights(tmp_path):
    from weakseg.engine import pick_device
    from weakseg.errors import CancelledError
    from weakseg.methods.registry import method_named
    from weakseg.methods.spec import TrainingRequest
    from weakseg.progress import Progress

    folder = _write_heads(tmp_path / "heads", 4)
    spec = method_named("shape-gan")
    settings = spec.make_settings(shape_model="ellipse", image_size=32, channels=(4, 8, 16), segmenter_channels=(4, 8, 16),
                                  batch_size=4, gan_steps=5, round_steps=4, rounds=2)

    def request(path: Path, progress: Progress, resume: bool = False) -> TrainingRequest:
        return TrainingRequest(str(folder), str(path), settings, None, pick_device("cpu"), progress, resume=resume)

    whole = tmp_path / "whole.pt"
    spec.function("train")(request(whole, Progress()))
    cut = tmp_path / "cut.pt"
    with pytest.raises(CancelledError):
        spec.function("train")(request(cut, Progress(lambda *_: None, lambda: cut.exists())))
    assert torch.load(cut, weights_only=True)["metadata"]["state"]["stage"] == "rounds"
    spec.function("train")(request(cut, Progress(), resume=True))
    expected, resumed = (torch.load(path, weights_only=True)["model"] for path in (whole, cut))
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)


def test_plain_dice_rerun_keeps_the_gan_and_changes_only_the_weights(tmp_path):
    from weakseg.methods.shape_gan import ShapeGanSettings
    from weakseg.methods.shape_gan_training import retrain_segmenter

    folder = _write_heads(tmp_path / "heads", 4)
    source = tmp_path / "source.pt"
    assert _train(folder, source, "--shape-model", "ellipse") == 0
    stored = torch.load(source, weights_only=True)
    settings = ShapeGanSettings.from_dict({**stored["metadata"]["config"], "plain_dice": True})
    retrain_segmenter(str(source), str(tmp_path / "plain.pt"), str(folder), settings, torch.device("cpu"))
    plain = torch.load(tmp_path / "plain.pt", weights_only=True)
    assert torch.equal(plain["extra"]["pseudo_labels"], stored["extra"]["pseudo_labels"])
    assert all(torch.equal(value, plain["model"][key]) for key, value in stored["model"].items()
               if key.startswith("networks."))
    assert torch.all(plain["extra"]["weights"] == 1) and not torch.all(stored["extra"]["weights"] == 1)
    with pytest.raises(WeakSegInputError, match="gan_steps"):
        retrain_segmenter(str(source), str(tmp_path / "other.pt"), str(folder),
                          ShapeGanSettings.from_dict({**stored["metadata"]["config"], "gan_steps": 7}), torch.device("cpu"))


def test_3d_volumes_train_and_predict_slice_by_slice(tmp_path):
    folder = tmp_path / "volumes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        inside = np.stack([_ellipse(24, 32, (12, 16), (5 + z, 8 + z)) for z in range(3)])
        volume = np.where(inside, 150.0, 20.0) + rng.normal(0, 10, inside.shape)
        image = sitk.GetImageFromArray(volume.astype(np.float32))
        image.SetSpacing((0.5, 0.25, 3.0))
        sitk.WriteImage(image, str(folder / f"{index:03d}_image.nii.gz"))
    model = tmp_path / "model.pt"
    assert _train(folder, model, "--shape-model", "ellipse") == 0
    payload = torch.load(model, weights_only=True)
    assert payload["extra"]["pseudo_labels"].shape == (6, 16, 32)  # 2 volumes x 3 slices; 6 x 16 mm -> a 16 x 32 grid
    out = tmp_path / "pred"
    assert main(["predict", str(model), str(folder / "000_image.nii.gz"), "--out", str(out), "--format", ".nii.gz",
                 "--progress", "none"]) == 0
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out / "000_image.nii.gz"))).shape == (3, 24, 32)
    assert not (out / "predictions.csv").exists()


@pytest.mark.parametrize("arguments, words", [
    (["--shape-model", "circle"], "--shape-model 'circle': unknown shape model"),
    ([], "exactly one source of auxiliary masks"),
    (["--shape-model", "ellipse", "--unpaired-split", "004-005"], "exactly one source of auxiliary masks"),
    (["--unpaired-split", "000-003"], "must not belong to the training images"),
    (["--shape-model", "ellipse", "--classes", "background,a,b"], "segments one structure"),
])
def test_bad_input_exits_2_naming_the_problem(tmp_path, capsys, arguments, words):
    folder = _write_heads(tmp_path / "heads", 6)
    assert _train(folder, tmp_path / "model.pt", "--split", "000-003", *arguments) == 2
    error = capsys.readouterr().err
    assert words in error and error.count("\n") == 1 and not (tmp_path / "model.pt").exists()


def test_shape_model_option_belongs_to_shape_gan_only(tmp_path, capsys):
    folder = _write_heads(tmp_path / "heads", 2)
    assert main(["train", str(folder), "--method", "cohort", "--shape-model", "ellipse", "--out",
                 str(tmp_path / "m.pt"), "--progress", "none"]) == 2
    assert "--shape-model: method cohort does not take it (taken by: shape-gan)" in capsys.readouterr().err


def test_bench_writes_table_csv_and_overlays(tmp_path):
    from weakseg.bench.shapegan import ShapeGanBenchOptions, run_shapegan_bench

    folder = _write_heads(tmp_path / "heads", 8)
    settings = {"image_size": 32, "channels": (4, 8, 16), "segmenter_channels": (4, 8, 16), "batch_size": 4,
                "gan_steps": 4, "round_steps": 3, "rounds": 1}
    options = ShapeGanBenchOptions(str(folder), str(tmp_path / "out"), rows=("supervised", "shape-gan", "plain-dice"),
                                   train_split="000-003", test_split="006-007", settings=settings, overlays=1,
                                   device="cpu")
    result = run_shapegan_bench(options)
    assert [entry["row"] for entry in result.summary] == ["supervised", "shape-gan", "plain-dice"]
    assert "| row | GAN steps | pseudo-label Dice (training) | Dice | HD95 (mm) | HC abs. error (mm)" in result.table
    assert result.summary[0]["pseudo_label_dice"] != result.summary[0]["pseudo_label_dice"]  # supervised: none
    assert 0 <= result.summary[1]["pseudo_label_dice"] <= 1
    with open(tmp_path / "out" / "cases.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6
    assert (tmp_path / "out" / "overlay_006_shape-gan.png").is_file()


def test_bench_over_seeds_writes_each_seed_and_the_spread_of_each_row(tmp_path, capsys):
    folder = _write_heads(tmp_path / "heads", 8)
    out = tmp_path / "out"
    assert main(["bench", "shapegan", str(folder), "--rows", "shape-gan,plain-dice", "--train-split", "000-003",
                 "--test-split", "006-007", *TINY, "--gan-steps", "3", "--steps", "2", "--rounds", "1",
                 "--seeds", "0,1", "--overlays", "0", "--out", str(out), "--device", "cpu", "--progress", "none"]) == 0
    printed = capsys.readouterr().out
    assert "seed 0:" in printed and "seed 1:" in printed and "| row | Dice mean | min | max | spread |" in printed
    per_seed = {}
    for seed in (0, 1):
        with open(out / f"seed-{seed}" / "summary.csv", newline="") as handle:
            per_seed[seed] = {row["row"]: float(row["dice"]) for row in csv.DictReader(handle)}
    with open(out / "spread.csv", newline="") as handle:
        spread = {row["row"]: row for row in csv.DictReader(handle)}
    assert list(spread) == ["shape-gan", "plain-dice"]
    for row, entry in spread.items():
        dice = [per_seed[0][row], per_seed[1][row]]
        assert entry["seeds"] == "2"
        assert float(entry["dice_mean"]) == pytest.approx(np.mean(dice), abs=1e-4)
        assert float(entry["dice_spread"]) == pytest.approx(max(dice) - min(dice), abs=1e-4)
        assert "hc_error_mm_mean" in entry


def test_bench_refuses_unknown_rows_and_a_folder_without_pixel_sizes(tmp_path, capsys):
    folder = _write_heads(tmp_path / "heads", 2)
    assert main(["bench", "shapegan", str(folder), "--rows", "shape-gan,magic", "--out", str(tmp_path / "out"),
                 "--progress", "none"]) == 2
    assert "--rows: unknown row(s) ['magic']" in capsys.readouterr().err
    (folder / "hc18_pixel_size.csv").unlink()
    assert main(["bench", "shapegan", str(folder), "--out", str(tmp_path / "out"), "--progress", "none"]) == 2
    assert "no hc18_pixel_size.csv" in capsys.readouterr().err
