"""``weakseg serve`` on loopback: token on every endpoint, refused names and sizes, 50 concurrent jobs,
``kill -9`` of the server during a job.

The server runs as a subprocess on a free port; the jobs are tiny (a 3-level U-Net on 32 px
slices, a few voxels), so the whole file stays within a minute on two busy cores.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (test extra) is not installed")

from serve_helpers import start_server, wait_for  # noqa: E402
from synthetic_data import make_blob_volume, write_case, write_volume  # noqa: E402

CLASSES = ["background", "bright", "dim"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A cohort model of 2 training steps on one blob case (what it predicts does not matter, only that it is fixed)."""
    from weakseg.cases import list_cases
    from weakseg.methods.scribble_settings import CohortConfig
    from weakseg.methods.scribble_training import train_cohort

    folder = tmp_path_factory.mktemp("cohort")
    write_case(folder, "case01", seed=0)
    model = folder / "tiny.pt"
    train_cohort(list_cases(str(folder)), model, CohortConfig(steps=2, batch_size=2, image_size=32,
                                                              channels=(4, 8, 16)), CLASSES)
    return model


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: two CPU workers, 1 MiB uploads, 20,000-value images."""
    running = start_server(tmp_path_factory.mktemp("serve"), "--workers", "2", "--max-upload-mb", "1",
                           "--max-voxels", "20000")
    yield running
    running.stop()


def _submit(client, command: str, files: list[tuple[str, str, bytes]], arguments=(), **fields):
    """POST /jobs with ``files`` as (role, client file name, bytes)."""
    data = {"command": command, "arguments": json.dumps(list(arguments)),
            "roles": json.dumps([role for role, _, _ in files]), **fields}
    return client.post("/jobs", data=data, files=[("files", (name, content)) for _, name, content in files])


def _volume_bytes(tmp_path: Path, array: np.ndarray, name: str) -> bytes:
    return write_volume(array, tmp_path / name).read_bytes()


def test_every_endpoint_answers_401_without_or_with_a_wrong_token(server, tmp_path, tiny_model):
    image = _volume_bytes(tmp_path, make_blob_volume(1, (2, 24, 24))[0], "image.nrrd")
    with server.client() as client:
        created = _submit(client, "predict", [("model", "m.pt", tiny_model.read_bytes()), ("image", "i.nrrd", image)])
        assert created.status_code == 201, created.text
        job = created.json()["id"]
    endpoints = [("GET", "/info"), ("GET", "/jobs"), ("POST", "/jobs"), ("GET", f"/jobs/{job}"),
                 ("POST", f"/jobs/{job}/cancel"), ("GET", f"/jobs/{job}/files/image-1.seg.nrrd")]
    for token in (None, "wrong-token-0123456789", server.token + "x"):
        with server.client(token) as client:
            for method, path in endpoints:
                answer = client.request(method, path, data={"command": "predict"} if method == "POST" else None)
                assert answer.status_code == 401, (token, method, path, answer.status_code)
                assert answer.headers["www-authenticate"] == "Bearer"
    with server.client() as client:
        assert wait_for(client, job)["state"] == "done"
    assert (server.workdir / "token").stat().st_mode & 0o777 == 0o600


def test_client_file_names_never_become_paths(server, tmp_path):
    image = _volume_bytes(tmp_path, make_blob_volume(0, (2, 24, 24))[0], "image.nrrd")
    scribbles = _volume_bytes(tmp_path, make_blob_volume(0, (2, 24, 24))[2], "scribbles.nrrd")
    escape = server.workdir.parent / "escaped.nrrd"
    with server.client() as client:
        for role in ("data:../../escaped:image", "data:..:image", "unpaired:a/b", "data:/etc:image"):
            answer = _submit(client, "train", [(role, "x.nrrd", image)])
            assert answer.status_code == 400 and "case name" in answer.json()["detail"], (role, answer.text)
        for arguments in (["--out", "/tmp/x.seg.nrrd"], ["--cache", "../.."], ["--model", "../other/out/model.pt"],
                          ["../../etc/passwd"], ["--out=/tmp/x.nrrd"]):
            answer = _submit(client, "segment", [("image", "i.nrrd", image), ("scribbles", "s.nrrd", scribbles)],
                             arguments)
            assert answer.status_code == 400, (arguments, answer.text)
        accepted = _submit(client, "segment", [("image", "../../escaped.nrrd", image),
                                               ("scribbles", "/etc/passwd.nrrd", scribbles)],
                           ["--method", "growcut", "--classes", ",".join(CLASSES)])
        assert accepted.status_code == 201, accepted.text
        job = accepted.json()["id"]
        stored = sorted(path.relative_to(server.workdir / "jobs" / job).as_posix()
                        for path in (server.workdir / "jobs" / job / "in").iterdir())
        assert stored == ["in/image-1.nrrd", "in/scribbles.nrrd"]
        assert not escape.exists()
        done = wait_for(client, job)
        assert done["state"] == "done", done
        assert client.get(f"/jobs/{job}/files/..%2F..%2Ftoken").status_code == 404
        assert client.get(f"/jobs/{job}/files/result.seg.nrrd").status_code == 200


def test_oversized_uploads_are_refused(server, tmp_path):
    big_bytes = os.urandom(1024 * 1024 + 1)
    big_image = _volume_bytes(tmp_path, np.zeros((10, 50, 50), np.uint8), "big.nrrd")  # 25,000 values
    scribbles = _volume_bytes(tmp_path, make_blob_volume(0, (2, 24, 24))[2], "s.nrrd")
    with server.client() as client:
        answer = _submit(client, "segment", [("image", "i.nrrd", big_bytes), ("scribbles", "s.nrrd", scribbles)])
        assert answer.status_code == 413 and "upload too large" in answer.json()["detail"]
        answer = _submit(client, "segment", [("image", "i.nrrd", big_image), ("scribbles", "s.nrrd", scribbles)])
        assert answer.status_code == 413 and "10x50x50... " not in answer.json()["detail"]
        assert "50x50x10 = 25,000 values" in answer.json()["detail"]
        jobs_before = client.get("/jobs").json()["jobs"]
    assert all(job["state"] != "queued" or job["command"] != "segment" for job in jobs_before[-1:])


def test_fifty_concurrent_jobs_all_finish_with_their_own_results(server, tmp_path, tiny_model):
    from weakseg.apply import load_model, predict_image
    from weakseg.io import read_image

    model = load_model(str(tiny_model), "cpu")
    model_bytes = tiny_model.read_bytes()
    images, expected = [], []
    for index in range(50):
        path = write_volume(make_blob_volume(100 + index, (1, 20 + index % 7, 24))[0], tmp_path / f"v{index}.nrrd")
        images.append(path.read_bytes())
        expected.append(predict_image(model, read_image(path))[0])

    def run(index: int) -> np.ndarray:
        with server.client() as client:
            answer = _submit(client, "predict", [("model", "m.pt", model_bytes), ("image", f"v{index}.nrrd", images[index])],
                             ["--format", ".nrrd"])
            assert answer.status_code == 201, answer.text
            job = wait_for(client, answer.json()["id"], timeout=600)
            assert job["state"] == "done" and job["files"] == ["image-1.nrrd"], job
            result = tmp_path / f"result{index}.nrrd"
            result.write_bytes(client.get(f"/jobs/{job['id']}/files/image-1.nrrd").content)
            return sitk.GetArrayFromImage(sitk.ReadImage(str(result)))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(run, range(50)))
    for index, (result, labels) in enumerate(zip(results, expected)):
        assert np.array_equal(result, labels), f"job {index} returned another image's result"
    print(f"50 predict jobs on 2 workers: {time.monotonic() - started:.1f} s")


def test_kill_9_during_a_job_then_restart_reports_it_failed_serves_nothing_and_keeps_finished_results(tmp_path):
    image, _, scribbles = make_blob_volume(0, (2, 24, 24))
    files = [("image", "i.nrrd", _volume_bytes(tmp_path, image, "i.nrrd")),
             ("scribbles", "s.nrrd", _volume_bytes(tmp_path, scribbles, "s.nrrd"))]
    workdir = tmp_path / "serve"
    server = start_server(workdir)
    try:
        with server.client() as client:
            finished = _submit(client, "segment", files, ["--method", "growcut", "--classes", ",".join(CLASSES)]).json()
            assert wait_for(client, finished["id"])["state"] == "done"
            result = client.get(f"/jobs/{finished['id']}/files/result.seg.nrrd").content
            job = _submit(client, "segment", files, ["--steps", "100000", "--classes", ",".join(CLASSES)]).json()["id"]
            deadline = time.monotonic() + 120
            while client.get(f"/jobs/{job}").json()["message"] in ("", "starting") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.get(f"/jobs/{job}").json()["state"] == "running"
        server.stop(kill=True)
        folder = workdir / "jobs" / job
        server = start_server(workdir, port=int(server.url.rsplit(":", 1)[1]))
        with server.client() as client:
            state = client.get(f"/jobs/{job}").json()
            assert state["state"] == "failed" and "server stopped while the job was running" in state["error"], state
            assert state["files"] == []
            assert client.get(f"/jobs/{job}/files/result.seg.nrrd").status_code == 409
            assert client.get(f"/jobs/{finished['id']}/files/result.seg.nrrd").content == result
        time.sleep(1.0)
        assert not _processes_working_in(folder), "the job's process outlived the server"
    finally:
        server.stop()


def _processes_working_in(folder: Path) -> list[int]:
    """Ids of processes whose working directory is ``folder`` (Linux ``/proc``; empty elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.path.realpath(entry / "cwd") == os.path.realpath(folder):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_kill_9_during_a_training_then_restart_resumes_it_from_its_checkpoint(tmp_path):
    from learning_tasks import write_two_blob_cohort

    data = tmp_path / "data"
    data.mkdir()
    write_two_blob_cohort(data, 1, shape=(2, 32, 32))
    files = [(f"data:{path.name.split('_')[0]}:{path.name.split('_')[1].split('.')[0]}", path.name, path.read_bytes())
             for path in sorted(data.iterdir())]
    # Enough steps that the job process, which outlives the killed server, cannot finish the
    # training before the restarted server stops it (about 3 ms a step here: 400 steps were not).
    options = ["--steps", "3000", "--image-size", "16", "--channels", "4,8", "--batch-size", "2",
               "--classes", "background,disk,square"]
    workdir = tmp_path / "serve"
    server = start_server(workdir)
    try:
        with server.client() as client:
            answer = _submit(client, "train", files, options)
            assert answer.status_code == 201, answer.text
            job = answer.json()["id"]
            checkpoint = workdir / "jobs" / job / "out" / "model.pt"
            deadline = time.monotonic() + 120
            while not checkpoint.is_file() and time.monotonic() < deadline:  # written at step 100
                time.sleep(0.05)
            assert client.get(f"/jobs/{job}").json()["state"] == "running", "the training ended before the kill"
        server.stop(kill=True)
        server = start_server(workdir, port=int(server.url.rsplit(":", 1)[1]))
        with server.client() as client:
            assert client.get(f"/jobs/{job}").json()["state"] in ("queued", "running")
            done = wait_for(client, job, timeout=300)
            assert done["state"] == "done" and done["files"] == ["model.pt"], done
            model = tmp_path / "model.pt"
            model.write_bytes(client.get(f"/jobs/{job}/files/model.pt").content)
        import torch

        assert torch.load(model, weights_only=True)["step"] == 3000
        assert "--resume" in (workdir / "jobs.sqlite3").read_bytes().decode("latin-1")
    finally:
        server.stop()


def test_bad_server_options_are_refused_with_one_line(tmp_path, capsys):
    from weakseg.cli import main

    token = tmp_path / "token"
    token.write_text("a-shared-token-of-enough-length\n")
    token.chmod(0o644)
    cases = [(["--port", "0"], "--port 0: out of range"),
             (["--ssl-certfile", str(token)], "--ssl-certfile and --ssl-keyfile: give both or neither"),
             (["--token-file", str(token)], "token file is readable by other users (mode 644)"),
             (["--gpus", "0,1,2", "--train-processes", "2"], "3 GPU(s) do not split into groups of --train-processes 2")]
    for options, message in cases:
        assert main(["serve", "--workdir", str(tmp_path / "work"), *options]) == 2
        assert message in capsys.readouterr().err


def test_a_server_with_train_processes_trains_data_parallel_and_returns_the_single_process_model(tmp_path):
    import torch

    from learning_tasks import write_two_blob_cohort
    from weakseg.cli import main
    from weakseg.serve.queue import make_slots

    assert [(slot.name, slot.visible_devices) for slot in make_slots("0,1,2,3", 1, 2)] == [("gpu0-1", "0,1"),
                                                                                           ("gpu2-3", "2,3")]
    data = tmp_path / "data"
    data.mkdir()
    write_two_blob_cohort(data, 2)
    options = ["--steps", "10", "--batch-size", "4", "--image-size", "32", "--channels", "4,8,16",
               "--classes", "background,disk,square"]
    assert main(["train", str(data), "--out", str(tmp_path / "one.pt"), "--progress", "none", *options]) == 0
    files = [(f"data:{path.name.split('_')[0]}:{path.name.split('_')[1].split('.')[0]}", path.name, path.read_bytes())
             for path in sorted(data.iterdir())]
    server = start_server(tmp_path / "serve", "--train-processes", "2")
    try:
        with server.client() as client:
            job = wait_for(client, _submit(client, "train", files, options).json()["id"], timeout=300)
            assert job["state"] == "done", job
            (tmp_path / "two.pt").write_bytes(client.get(f"/jobs/{job['id']}/files/model.pt").content)
            odd = ["3" if item == "4" else item for item in options]  # --batch-size 3 over 2 processes
            refused = wait_for(client, _submit(client, "train", files, odd).json()["id"], timeout=300)
            assert refused["state"] == "failed" and "does not split evenly over 2 processes" in refused["error"], refused
    finally:
        server.stop()
    one = torch.load(tmp_path / "one.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "two.pt", weights_only=True)["model"]
    keys = [key for key, value in one.items() if value.is_floating_point() and "running" not in key]
    distance = sum(float((one[key] - two[key]).pow(2).sum()) for key in keys) ** 0.5
    assert distance <= 1e-5 * sum(float(one[key].pow(2).sum()) for key in keys) ** 0.5


def test_restart_settles_a_job_that_ended_while_the_server_was_down_by_the_status_it_left(tmp_path):
    """A job whose process finished after the server died is done (exit 0) or failed, never run again."""
    from weakseg.serve.job_process import STATUS_NAME
    from weakseg.serve.queue import recover
    from weakseg.serve.store import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    for job_id, status in (("ended", "0"), ("refused", "2"), ("killed", None)):
        store.add(job_id, "train", ["data", "--out", "model.pt"], resumable=True)
        store.claim_next("cpu0")
        out = tmp_path / "jobs" / job_id / "out"
        out.mkdir(parents=True)
        (out / "model.pt").write_bytes(b"checkpoint")
        if status is not None:
            (tmp_path / "jobs" / job_id / STATUS_NAME).write_text(status)
    recover(store, tmp_path / "jobs")
    assert store.get("ended")["state"] == "done"
    assert store.get("refused")["state"] == "failed" and "bad input" in store.get("refused")["error"]
    assert store.get("killed")["state"] == "queued" and "--resume" in store.get("killed")["arguments"]
