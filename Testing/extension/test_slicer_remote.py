"""WeakSegLogic computing on a ``weakseg serve`` server (loopback subprocess): same result as a local run,
progress, cancel, and a clear message when the server is unreachable or refuses."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")

from serve_helpers import free_port, start_server  # noqa: E402
from slicer_test_helpers import addScribbles, addVolume, phantom  # noqa: E402

from WeakSegExtensionLib.errors import (  # noqa: E402
    WeakSegCancelledError,
    WeakSegInputError,
    WeakSegProcessError,
)
from WeakSegExtensionLib.remote import ComputeSettings  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("serve"), "--workers", "2", "--max-voxels", "6000")
    yield running
    running.stop()


def _logic(scene, tmp_path, compute=None):
    from WeakSegExtensionLib.logic import WeakSegLogic

    return WeakSegLogic(scene=scene, cliCommand=[sys.executable, "-m", "weakseg"], temporaryDirectory=str(tmp_path),
                        compute=compute)


def test_the_logic_segments_through_the_server_as_it_does_locally(scene, tmp_path, server):
    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    scribbleNode = addScribbles(scene, volumeNode)
    local = _logic(scene, tmp_path).startSegmentation(volumeNode, scribbleNode, method="growcut").wait()
    remoteLogic = _logic(scene, tmp_path, ComputeSettings("server", server.url, server.token))
    reports = []
    remote = remoteLogic.startSegmentation(volumeNode, scribbleNode, method="growcut").wait(
        lambda percent, message: reports.append(percent))
    assert remote.classNames == local.classNames
    assert np.array_equal(remote.labels, local.labels)
    assert reports and reports[-1] <= 100
    preview = remoteLogic.showPreview(remote)
    output = remoteLogic.applyResult(remote)
    remoteLogic.removePreview(preview)
    assert output.GetSegmentation().GetNumberOfSegments() == len(local.classNames) - 1
    assert not list(tmp_path.glob("WeakSeg-segment-*")), "a working folder stayed behind"


def test_cancel_reaches_the_server_job(scene, tmp_path, server):
    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    scribbleNode = addScribbles(scene, volumeNode)
    logic = _logic(scene, tmp_path, ComputeSettings("server", server.url, server.token))
    logic.warmStartDirectory = None
    job = logic.startSegmentation(volumeNode, scribbleNode, method="interactive", extraArguments=["--steps", "100000"])
    deadline = time.monotonic() + 120
    while job.percent <= 0 and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.1)
    assert job.percent > 0, "the server job never reported progress"
    job.cancel()
    with pytest.raises(WeakSegCancelledError):
        job.result()
    assert job.runner.client.job(job.runner.jobId)["state"] == "cancelled"


def test_unreachable_server_wrong_token_too_large_and_refused_options_are_explained(scene, tmp_path, server):
    image, _ = phantom()
    volumeNode = addVolume(scene, image)
    scribbleNode = addScribbles(scene, volumeNode)
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(WeakSegProcessError, match=f"cannot reach the WeakSeg server at {nowhere}"):
        _logic(scene, tmp_path, ComputeSettings("server", nowhere, "x" * 20)).startSegmentation(
            volumeNode, scribbleNode, method="growcut")
    with pytest.raises(WeakSegInputError, match=r"refused the token \(401\)"):
        _logic(scene, tmp_path, ComputeSettings("server", server.url, "wrong" * 5)).startSegmentation(
            volumeNode, scribbleNode, method="growcut")
    logic = _logic(scene, tmp_path, ComputeSettings("server", server.url, server.token))
    big = addVolume(scene, np.zeros((8, 30, 30), np.float32) + np.arange(30, dtype=np.float32), name="Big")
    bigScribbles = addScribbles(scene, big, masks=_stripes((8, 30, 30)))
    with pytest.raises(WeakSegInputError, match=r"too large \(413\).*30x30x8 = 7,200 values"):
        logic.startSegmentation(big, bigScribbles, method="growcut")
    with pytest.raises(WeakSegInputError, match=r"refused the request \(400\).*'--bogus' is not an option"):
        logic.startSegmentation(volumeNode, scribbleNode, method="growcut", extraArguments=["--bogus"])
    with pytest.raises(WeakSegInputError, match="server address"):
        _logic(scene, tmp_path, ComputeSettings("server", "ftp://host", "x" * 20)).startSegmentation(
            volumeNode, scribbleNode, method="growcut")
    assert not list(tmp_path.glob("WeakSeg-segment-*")), "a refused job left its working folder"


def _stripes(shape):
    masks = {name: np.zeros(shape, bool) for name in ("background", "LV", "RV")}
    masks["background"][:, 1, :] = True
    masks["LV"][:, 10, 2:8] = True
    masks["RV"][:, 20, 20:28] = True
    return masks


def test_a_server_lost_during_a_job_ends_it_with_a_clear_error_instead_of_raising_from_poll(tmp_path, monkeypatch):
    from WeakSegExtensionLib import remote

    arguments = ["segment", str(tmp_path / "image.nrrd"), "--scribbles", str(tmp_path / "s.nrrd"), "--out",
                 str(tmp_path / "result.nrrd"), "--method", "growcut", "--progress", "lines"]
    runner = remote.RemoteRunner(ComputeSettings("server", f"http://127.0.0.1:{free_port()}", "x" * 20), arguments)
    assert runner.plan.files == [("image", tmp_path / "image.nrrd"), ("scribbles", tmp_path / "s.nrrd")]
    assert runner.plan.options == ["--method", "growcut"] and runner.plan.resultFormat == ".nrrd"
    runner.jobId, runner._state = "0" * 32, {"state": "running", "percent": 10.0, "message": "training"}
    monkeypatch.setattr(remote, "POLL_INTERVAL_SECONDS", 0.0)
    runner.poll()
    assert not runner.finished  # unreachable, but within the grace period
    monkeypatch.setattr(remote, "LOST_CONTACT_SECONDS", 0.0)
    time.sleep(0.01)
    assert runner.finished and runner.returncode == 1
    assert "lost contact with the server" in runner.errorMessage()


def test_a_server_training_into_an_existing_model_file_keeps_the_former_model(tmp_path):
    from WeakSegExtensionLib import remote

    data = tmp_path / "data"
    data.mkdir()
    (data / "case_image.nrrd").write_bytes(b"image")
    model = tmp_path / "model.pt"
    model.write_bytes(b"former model")
    (tmp_path / "model.previous.pt").write_bytes(b"older model")
    arguments = ["train", str(data), "--out", str(model), "--classes", "background,LV", "--progress", "lines"]
    runner = remote.RemoteRunner(ComputeSettings("server", f"http://127.0.0.1:{free_port()}", "x" * 20), arguments)
    assert runner.plan.downloads == {"model.pt": model}

    class Client:
        def download(self, jobId, name, destination):  # as ServerClient.download: a new file renamed over it
            partial = destination.with_name(".partial")
            partial.write_bytes(b"new model")
            partial.replace(destination)

    runner.client, runner.jobId, runner._state = Client(), "0" * 32, {"state": "done", "files": ["model.pt"]}
    runner._downloadResults()
    assert model.read_bytes() == b"new model"
    assert (tmp_path / "model.previous-2.pt").read_bytes() == b"former model"
    assert (tmp_path / "model.previous.pt").read_bytes() == b"older model"
