"""Start ``weakseg serve`` as a subprocess on a free loopback port, for the server tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

READY_SECONDS = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningServer:
    """A started server: its process, address, token and work folder."""

    process: subprocess.Popen
    url: str
    token: str
    workdir: Path

    def client(self, token: str | None = "own") -> httpx.Client:
        """An HTTP client sending ``token`` ("own": the server's; None: no Authorization header)."""
        token = self.token if token == "own" else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout=30)


def start_server(workdir: Path, *options: str, port: int | None = None) -> RunningServer:
    """Start ``python -m weakseg serve --workdir workdir --port <free> options...`` and wait until it answers."""
    port = port or free_port()
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "weakseg", "serve", "--workdir", str(workdir), "--port", str(port),
                                *options], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + READY_SECONDS
    url = f"http://127.0.0.1:{port}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weakseg serve exited with {process.returncode}: {process.stderr.read().decode()}")
        token_file = workdir / "token"
        if token_file.is_file():
            token = token_file.read_text().strip()
            try:
                if httpx.get(f"{url}/info", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                    return RunningServer(process, url, token, workdir)
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("weakseg serve did not answer in time")


def wait_for(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict:
    """Poll a job until it is done, failed or cancelled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
