"""The HTTP API of ``weakseg serve`` (FastAPI).

Every request needs ``Authorization: Bearer <token>`` (401 otherwise, before any body is
read); a request body over the upload limit is refused with 413 from its
``Content-Length``, before it is read. Routes:

* ``GET /info``: version, slots and limits (a client's connection check);
* ``GET /methods``: the methods, as ``weakseg methods --json`` lists them;
* ``GET /jobs``: every job; ``POST /jobs``: submit one (multipart: ``command``, ``arguments``
  (JSON list of options), ``roles`` (JSON list, one per file), optional ``result_format``,
  and the ``files``); answers 201 with the job;
* ``GET /jobs/{id}``: state, percent, message, error, and ``files`` once done;
* ``POST /jobs/{id}/cancel``;
* ``GET /jobs/{id}/files/{name}``: one result file of a finished job (only names
  ``GET /jobs/{id}`` lists; nothing of a job that is not ``done``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, JSONResponse

from weakseg import __version__
from weakseg.serve.auth import authorised
from weakseg.serve.queue import JobQueue, Slot
from weakseg.serve.store import DONE, JobStore
from weakseg.serve.submission import OptionTables, SubmissionError, plan_job
from weakseg.serve.uploads import check_image_size, remove_folder, store_upload

JOB_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ServerLimits:
    """Upload limits: bytes of one request, and values (voxels x components) of one image."""

    max_upload_bytes: int
    max_voxels: int


class GuardMiddleware:
    """Refuses, before the body is read: a request without the bearer token (401), a body without a
    ``Content-Length`` (411) or over the upload limit (413)."""

    def __init__(self, app, token: str, max_upload_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        if not authorised(headers.get("authorization"), self.token):
            response = JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        elif scope["method"] in ("POST", "PUT", "PATCH") and "content-length" not in headers:
            response = JSONResponse({"detail": "a Content-Length header is required"}, status_code=411)
        elif int(headers.get("content-length") or 0) > self.max_upload_bytes:
            response = JSONResponse({"detail": f"upload too large: {int(headers['content-length']):,} bytes; this "
                                               f"server accepts at most {self.max_upload_bytes:,} per request"},
                                    status_code=413)
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def create_app(store: JobStore, queue: JobQueue, jobs_folder: Path, token: str, limits: ServerLimits,
               slots: List[Slot], tables: OptionTables) -> FastAPI:
    """The application: routes over ``store``, jobs run by ``queue`` in ``jobs_folder``; ``tables``: the
    options clients may give (:func:`weakseg.serve.submission.option_tables`)."""
    app = FastAPI(title="WeakSeg server", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(GuardMiddleware, token=token, max_upload_bytes=limits.max_upload_bytes)
    jobs_folder = Path(jobs_folder)

    @app.exception_handler(SubmissionError)
    def refused(_request, error: SubmissionError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    def job_or_404(job_id: str) -> dict:
        job = store.get(job_id) if JOB_ID.match(job_id) else None
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    def described(job: dict) -> dict:
        result = store.public(job)
        result["files"] = result_files(jobs_folder / job["id"]) if job["state"] == DONE else []
        return result

    @app.get("/info")
    def info() -> dict:
        return {"server": "weakseg", "version": __version__, "slots": [slot.name for slot in slots],
                "max_upload_bytes": limits.max_upload_bytes, "max_voxels": limits.max_voxels}

    @app.get("/methods")
    def methods() -> dict:
        from weakseg.methods.registry import describe_methods

        return {"methods": describe_methods()}

    @app.get("/jobs")
    def list_jobs() -> dict:
        return {"jobs": store.list()}

    @app.post("/jobs", status_code=201)
    def submit(command: str = Form(...), arguments: str = Form("[]"), roles: str = Form("[]"),
               result_format: Optional[str] = Form(None), files: List[UploadFile] = File(default=[])) -> dict:
        options, role_list = _json_list(arguments, "arguments"), _json_list(roles, "roles")
        plan = plan_job(tables, command, options, role_list, [item.filename or "" for item in files], result_format)
        job_id = uuid.uuid4().hex
        folder = jobs_folder / job_id
        folder.mkdir(mode=0o700, parents=True)
        (folder / "out").mkdir(mode=0o700)
        try:
            budget = limits.max_upload_bytes
            for item, upload, role in zip(files, plan.uploads, role_list):
                budget -= store_upload(item.file, folder, upload, budget)
                if upload.kind == "image":
                    check_image_size(folder / upload.relative_path, role, limits.max_voxels)
        except BaseException:
            remove_folder(folder)
            raise
        store.add(job_id, plan.command, plan.arguments, plan.resumable)
        queue.wake()
        return described(store.get(job_id))

    @app.get("/jobs/{job_id}")
    def job_state(job_id: str) -> dict:
        return described(job_or_404(job_id))

    @app.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict:
        job_or_404(job_id)
        store.request_cancel(job_id)
        return described(store.get(job_id))

    @app.get("/jobs/{job_id}/files/{name}")
    def download(job_id: str, name: str) -> FileResponse:
        job = job_or_404(job_id)
        if job["state"] != DONE:
            raise HTTPException(409, f"job {job_id} is {job['state']}; only a done job's results can be downloaded")
        files = result_files(jobs_folder / job_id)
        if name not in files:
            raise HTTPException(404, f"job {job_id} has no result file {name!r}; it has {files}")
        return FileResponse(str(jobs_folder / job_id / "out" / files[files.index(name)]),
                            media_type="application/octet-stream", filename=name)

    return app


def result_files(folder: Path) -> List[str]:
    """Names of the complete result files in a job's ``out`` folder (hidden temporary files left out)."""
    out = folder / "out"
    if not out.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(out) if entry.is_file() and not entry.name.startswith("."))


def _json_list(text: str, field: str) -> list:
    try:
        value = json.loads(text)
    except ValueError:
        raise SubmissionError(400, f"{field}: not valid JSON") from None
    if not isinstance(value, list):
        raise SubmissionError(400, f"{field}: expected a JSON list")
    return value
