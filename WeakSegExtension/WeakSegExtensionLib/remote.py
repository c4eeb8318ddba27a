"""Compute on a ``weakseg serve`` server instead of this computer (standard library only: urllib).

Slicer's Python has no HTTP framework, so this module speaks the server's small API with
``urllib``: a multipart upload to submit, JSON to poll, plain GETs to download.

:class:`RemoteRunner` has the interface of :class:`~WeakSegExtensionLib.runner.CliRunner`
(``start``, ``poll``, ``finished``, ``returncode``, ``cancel``, ``errorMessage``), so a
:class:`~WeakSegExtensionLib.jobs.WeakSegJob` drives a remote job exactly as a local one:
same progress, cancel, preview and apply. It takes the command line the logic built for
a local run (``segment IMAGE --scribbles S --out OUT ...``), uploads the files that command
names with their roles, and once the job is done downloads the results to the paths the
local command would have written.

Errors name the server and what to do: unreachable, 401 (token), 413 (too large), other 4xx
(the server's reason).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

from WeakSegExtensionLib.errors import WeakSegInputError, WeakSegProcessError
from WeakSegExtensionLib.library_contract import FORMER_COPY_MARK
from WeakSegExtensionLib.runner import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_OK, ProgressEvent

LOCAL = "local"
SERVER = "server"
REQUEST_TIMEOUT_SECONDS = 30.0
POLL_INTERVAL_SECONDS = 0.5
# How long a running job's server may stay unreachable (a network blip, a restart) before the
# job is given up as failed; the server keeps the job, so its result can still be fetched later.
LOST_CONTACT_SECONDS = 60.0
CHUNK_BYTES = 1 << 20
# Options of a local command line that a server run leaves out: the server sets them, or
# (warm start cache) they only make sense on this computer.
DROPPED_OPTIONS = {"--progress": 1, "--cache": 1, "--device": 1}
FILE_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".png", ".pt", ".csv")


@dataclass
class ComputeSettings:
    """Where the logic runs its jobs: ``mode`` ``"local"`` (this computer) or ``"server"`` (``url`` + ``token``)."""

    mode: str = LOCAL
    url: str = ""
    token: str = ""

    def check(self) -> None:
        """Raise :class:`WeakSegInputError` for an unusable server setting."""
        if self.mode not in (LOCAL, SERVER):
            raise WeakSegInputError(f"compute on {self.mode!r}: expected {LOCAL!r} or {SERVER!r}")
        if self.mode == SERVER:
            if not self.url.startswith(("http://", "https://")):
                raise WeakSegInputError(f"server address {self.url!r}: expected http://host:port or https://host:port")
            if not self.token.strip():
                raise WeakSegInputError("server token is empty: copy it from the server's token file")


class ServerClient:
    """The server's API: ``info``, ``methods``, ``submit``, ``job``, ``cancel``, ``download``."""

    def __init__(self, settings: ComputeSettings) -> None:
        settings.check()
        self.url = settings.url.rstrip("/")
        self._token = settings.token.strip()

    def _request(self, method: str, path: str, body=None, headers: Optional[dict] = None):
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Authorization": f"Bearer {self._token}", **(headers or {})})
        try:
            return urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS)
        except urllib.error.HTTPError as error:
            raise self._refusal(error) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise WeakSegProcessError(f"cannot reach the WeakSeg server at {self.url} ({reason}); check the address "
                                      "and that 'weakseg serve' runs there") from None

    def _refusal(self, error: urllib.error.HTTPError) -> Exception:
        try:
            detail = json.loads(error.read().decode("utf-8")).get("detail", "")
        except (ValueError, AttributeError, OSError):
            detail = ""
        if error.code == 401:
            return WeakSegInputError(f"the WeakSeg server at {self.url} refused the token (401): copy the token from "
                                     "the server's token file into WeakSeg's settings")
        if error.code == 413:
            return WeakSegInputError(f"the WeakSeg server at {self.url} refused the upload as too large (413): {detail}")
        if 400 <= error.code < 500:
            return WeakSegInputError(f"the WeakSeg server at {self.url} refused the request ({error.code}): {detail}")
        return WeakSegProcessError(f"the WeakSeg server at {self.url} failed ({error.code}): {detail}")

    def _json(self, method: str, path: str, body=None, headers: Optional[dict] = None) -> dict:
        with self._request(method, path, body, headers) as response:
            return json.loads(response.read().decode("utf-8"))

    def info(self) -> dict:
        return self._json("GET", "/info")

    def methods(self) -> list:
        """The server's methods, as ``weakseg methods --json`` describes them."""
        return self._json("GET", "/methods")["methods"]

    def submit(self, command: str, options: Sequence[str], files: Sequence[tuple[str, Path]],
               resultFormat: Optional[str] = None) -> dict:
        """Start a job: ``files`` are (role, local path); only each file's suffix reaches the server."""
        fields = [("command", command), ("arguments", json.dumps(list(options))),
                  ("roles", json.dumps([role for role, _ in files]))]
        if resultFormat:
            fields.append(("result_format", resultFormat))
        boundary = uuid.uuid4().hex
        length, chunks = _multipart(boundary, fields, files)
        return self._json("POST", "/jobs", _Body(chunks, length),
                          {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)})

    def job(self, jobId: str) -> dict:
        return self._json("GET", f"/jobs/{jobId}")

    def cancel(self, jobId: str) -> dict:
        return self._json("POST", f"/jobs/{jobId}/cancel", b"", {"Content-Length": "0"})

    def download(self, jobId: str, name: str, destination: Path) -> None:
        """Write result file ``name`` of a done job to ``destination`` (through a temporary file)."""
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name("." + destination.name + ".part")
        with self._request("GET", f"/jobs/{jobId}/files/{name}") as response, open(partial, "wb") as handle:
            while True:
                chunk = response.read(CHUNK_BYTES)
                if not chunk:
                    break
                handle.write(chunk)
        partial.replace(destination)


class _Body:
    """A request body read in chunks (``urllib`` sends an iterable with the given Content-Length)."""

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self._chunks = chunks
        self.length = length

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks


def _suffix(path: Path) -> str:
    name = Path(path).name.lower()
    return next((suffix for suffix in FILE_SUFFIXES if name.endswith(suffix)), Path(name).suffix)


def keepFormerFile(path: Path) -> Optional[Path]:
    """Keep the file at ``path`` beside it before a download replaces it; returns the copy, or None.

    A local run of the library keeps the model file it is about to replace
    (``weakseg.atomic.keep_former_file``); a server run replaces it only here, on download,
    so the same rule applies here: the first free name of ``<stem><mark><suffix>``,
    ``<stem><mark>-2<suffix>``, ... with the contract's mark, a hard link where possible.
    This mirrors the library's function instead of importing it because computing on a
    server needs no library on this computer; ``Testing/extension/test_library_contract.py``
    checks that both name a kept file alike.
    """
    path = Path(path)
    if not path.is_file():
        return None
    suffix = _suffix(path)
    stem = path.name[:len(path.name) - len(suffix)] if suffix else path.name
    number = 1
    while True:
        kept = path.with_name(f"{stem}{FORMER_COPY_MARK}{'' if number == 1 else f'-{number}'}{suffix}")
        if not kept.exists():
            break
        number += 1
    try:
        os.link(path, kept)
    except OSError:
        shutil.copy2(path, kept)
    return kept


def _multipart(boundary: str, fields: Sequence[tuple[str, str]], files: Sequence[tuple[str, Path]]):
    """The length of a multipart body and an iterator over its bytes (files read in chunks)."""
    heads, sizes = [], []
    for name, value in fields:
        heads.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode(), None))
    for _, path in files:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="upload{_suffix(path)}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        heads.append((head, Path(path)))
        sizes.append(Path(path).stat().st_size)
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(head) for head, _ in heads) + sum(sizes) + 2 * len(sizes) + len(tail)

    def chunks() -> Iterator[bytes]:
        for head, path in heads:
            yield head
            if path is not None:
                with open(path, "rb") as handle:
                    while True:
                        chunk = handle.read(CHUNK_BYTES)
                        if not chunk:
                            break
                        yield chunk
                yield b"\r\n"
        yield tail

    return length, chunks()


@dataclass
class RemotePlan:
    """A local command line turned into a server job: what to upload, and where each result goes."""

    command: str
    options: list
    files: list  # (role, local path)
    downloads: dict  # server result name -> local path; "*" -> a local folder for every result
    resultFormat: Optional[str] = None


def planRemoteJob(arguments: Sequence[str]) -> RemotePlan:
    """Translate ``segment|train|predict ...`` (as the logic builds it for a local run) into a :class:`RemotePlan`.

    Raises:
        WeakSegInputError: what a server run cannot do (resume a training, transfer from a source cohort).
    """
    command, rest = arguments[0], list(arguments[1:])
    positional, named, options = [], {}, []
    index = 0
    while index < len(rest):
        item = rest[index]
        if item in DROPPED_OPTIONS:
            index += 1 + DROPPED_OPTIONS[item]
            continue
        if item in ("--scribbles", "--out", "--model", "--image-labels", "--unpaired-masks", "--source"):
            named[item] = rest[index + 1]
            index += 2
            continue
        if item == "--resume":
            raise WeakSegInputError("resuming a training is not available through a server; train again, or compute "
                                    "on this computer")
        if item.startswith("--"):
            options.append(item)
            if index + 1 < len(rest) and not rest[index + 1].startswith("--"):
                options.append(rest[index + 1])
                index += 1
        elif not options:
            positional.append(item)
        else:
            raise WeakSegInputError(f"cannot send {item!r} to the server: not an option value")
        index += 1
    if "--source" in named:
        raise WeakSegInputError("training from a source cohort (transfer) is not available through a server yet; "
                                "compute on this computer")
    if command == "segment":
        files = [("image", Path(positional[0])), ("scribbles", Path(named["--scribbles"]))]
        if "--model" in named:
            files.append(("model", Path(named["--model"])))
        out = Path(named["--out"])
        resultFormat = _suffix(out)
        return RemotePlan(command, options, files, {f"result{resultFormat}": out}, resultFormat)
    if command == "predict":
        images = [Path(path) for path in positional[1:]]
        files = [("model", Path(positional[0]))] + [("image", path) for path in images]
        folder = Path(named["--out"])
        fmt = options[options.index("--format") + 1] if "--format" in options else ".seg.nrrd"
        downloads = {f"image-{number}{fmt}": folder / (path.name[:-len(_suffix(path))] + fmt)
                     for number, path in enumerate(images, start=1)}
        return RemotePlan(command, options, files, downloads)
    if command == "train":
        files = []
        for path in sorted(Path(positional[0]).iterdir()):
            case, _, kind = path.name[:-len(_suffix(path))].rpartition("_")
            if kind in ("image", "scribble", "label") and case:
                files.append((f"data:{case}:{kind}", path))
        if "--image-labels" in named:
            files.append(("image-labels", Path(named["--image-labels"])))
        if "--unpaired-masks" in named:
            for path in sorted(Path(named["--unpaired-masks"]).iterdir()):
                files.append((f"unpaired:{path.name[:-len(_suffix(path))].rpartition('_')[0] or path.name}", path))
        return RemotePlan(command, options, files, {"model.pt": Path(named["--out"])})
    raise WeakSegInputError(f"weakseg {command} does not run on a server")


class RemoteRunner:
    """One job on a ``weakseg serve`` server, with :class:`~WeakSegExtensionLib.runner.CliRunner`'s interface.

    Args:
        settings: the server's address and token.
        arguments: the command line after ``weakseg`` (``segment IMAGE --scribbles S --out OUT ...``).
    """

    def __init__(self, settings: ComputeSettings, arguments: Sequence[str]) -> None:
        self.client = ServerClient(settings)
        self.plan = planRemoteJob(list(arguments))
        self.command = [self.client.url, *arguments]
        self.cancelled = False
        self.jobId: Optional[str] = None
        self._state: dict = {}
        self._lastPoll = 0.0
        self._reported: tuple = ()
        self._finished = False
        self._error = ""
        self._unreachableSince: Optional[float] = None

    @property
    def pid(self) -> None:
        return None

    def start(self) -> None:
        """Upload the inputs and queue the job (raises WeakSegInputError/WeakSegProcessError when refused)."""
        job = self.client.submit(self.plan.command, self.plan.options, self.plan.files, self.plan.resultFormat)
        self.jobId, self._state = job["id"], job

    def _refresh(self, force: bool = False) -> None:
        if self._finished or self.jobId is None:
            return
        if not force and time.monotonic() - self._lastPoll < POLL_INTERVAL_SECONDS:
            return
        self._lastPoll = time.monotonic()
        try:
            self._state = self.client.job(self.jobId)
            if self._state["state"] == "done":
                self._downloadResults()
        except (WeakSegProcessError, WeakSegInputError) as error:
            self._lostContact(error)
            return
        self._unreachableSince = None
        if self._state["state"] in ("done", "failed", "cancelled"):
            self._finished = True

    def _lostContact(self, error: Exception) -> None:
        """Keep polling through a short outage; after :data:`LOST_CONTACT_SECONDS` end the job as failed."""
        now = time.monotonic()
        self._unreachableSince = self._unreachableSince or now
        if now - self._unreachableSince > LOST_CONTACT_SECONDS:
            self._error = f"lost contact with the server for {LOST_CONTACT_SECONDS:.0f} s (server job {self.jobId}): {error}"
            self._state = {**self._state, "state": "failed", "returncode": 1}
            self._finished = True

    def _downloadResults(self) -> None:
        available = self._state.get("files", [])
        for name, destination in self.plan.downloads.items():
            if name not in available:
                self._error = f"the server's job holds no result {name!r} (it has {available})"
                self._state["state"], self._state["returncode"] = "failed", 1
                return
            keepFormerFile(destination)
            self.client.download(self.jobId, name, destination)

    @property
    def finished(self) -> bool:
        self._refresh()
        return self._finished

    @property
    def returncode(self) -> Optional[int]:
        if not self._finished:
            return None
        state = self._state["state"]
        if state == "done":
            return EXIT_OK
        if state == "cancelled":
            return EXIT_CANCELLED
        return EXIT_BAD_INPUT if self._state.get("returncode") == EXIT_BAD_INPUT else 1

    def poll(self) -> list:
        """A progress event when the server's percent or message changed since the last one."""
        self._refresh()
        events: list = []
        current = (float(self._state.get("percent", 0.0)), self._state.get("message", ""))
        if current != self._reported and self._state.get("state") == "running":
            events.append(ProgressEvent(*current))
            self._reported = current
        return events

    def wait(self, timeout: Optional[float] = None, onEvent=None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.finished:
            for event in self.poll():
                if onEvent:
                    onEvent(event)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"server job {self.jobId} still running after {timeout} s")
            time.sleep(0.1)
        return int(self.returncode)

    def errorMessage(self) -> str:
        if self._error:
            return self._error
        error = self._state.get("error", "")
        return error[len("bad input: "):] if error.startswith("bad input: ") else error

    def cancel(self, gracePeriod: float = 0.0, wait: bool = True) -> None:
        """Ask the server to stop the job; with ``wait``, block until it has."""
        if self.jobId is None or self._finished:
            return
        if not self.cancelled:
            self.cancelled = True
            try:
                self._state = self.client.cancel(self.jobId)
            except (WeakSegProcessError, WeakSegInputError) as error:
                self._error = f"cancelled here, but the server could not be told ({error})"
                self._state = {**self._state, "state": "cancelled"}
                self._finished = True
        while wait and not self._finished:
            self._refresh(force=True)
            time.sleep(0.2)
