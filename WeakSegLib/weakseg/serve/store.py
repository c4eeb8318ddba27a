"""The job table: every job's request, state and progress in one SQLite file in the work folder.

SQLite (the standard library's ``sqlite3``) keeps jobs across a server restart: finished
results stay downloadable, and :meth:`JobStore.recover` decides what happens to jobs that
were running when the server stopped. Each call opens its own connection, so the web
threads and the queue's threads never share one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Optional

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL_STATES = (DONE, FAILED, CANCELLED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    arguments TEXT NOT NULL,
    state TEXT NOT NULL,
    percent REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    returncode INTEGER,
    pid INTEGER,
    slot TEXT NOT NULL DEFAULT '',
    resumable INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
)
"""

_PUBLIC = ("id", "command", "state", "percent", "message", "error", "returncode", "created", "started", "finished")


class JobStore:
    """Jobs in ``<workdir>/jobs.sqlite3``.

    Args:
        path: the SQLite file (made with its table when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with closing(self._connect()) as connection, connection:
            connection.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        return connection

    def _execute(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        with closing(self._connect()) as connection:
            return connection.execute(sql, parameters).fetchall()

    def add(self, job_id: str, command: str, arguments: list[str], resumable: bool) -> None:
        """Record a new queued job."""
        self._execute("INSERT INTO jobs (id, command, arguments, state, resumable, created) VALUES (?, ?, ?, ?, ?, ?)",
                      (job_id, command, json.dumps(arguments), QUEUED, int(resumable), time.time()))

    def get(self, job_id: str) -> Optional[dict[str, Any]]:
        """The job's row as a dict (``arguments`` decoded), or None."""
        rows = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            return None
        job = dict(rows[0])
        job["arguments"] = json.loads(job["arguments"])
        return job

    def public(self, job: dict[str, Any]) -> dict[str, Any]:
        """What a client is told about a job (no process ids, no server paths)."""
        return {key: job[key] for key in _PUBLIC}

    def list(self) -> list[dict[str, Any]]:
        """Every job, oldest first, as clients see them."""
        return [self.public(dict(row)) for row in self._execute("SELECT * FROM jobs ORDER BY created, id")]

    def claim_next(self, slot: str) -> Optional[dict[str, Any]]:
        """Mark the oldest queued job running on ``slot`` and return it (None when the queue is empty)."""
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                row = connection.execute("SELECT id FROM jobs WHERE state = ? ORDER BY created, id LIMIT 1",
                                         (QUEUED,)).fetchone()
                if row is None:
                    connection.execute("COMMIT")
                    return None
                connection.execute("UPDATE jobs SET state = ?, slot = ?, started = ?, percent = 0, message = ? "
                                   "WHERE id = ?", (RUNNING, slot, time.time(), "starting", row["id"]))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        return self.get(row["id"])

    def set_pid(self, job_id: str, pid: Optional[int]) -> None:
        self._execute("UPDATE jobs SET pid = ? WHERE id = ?", (pid, job_id))

    def set_progress(self, job_id: str, percent: float, message: str) -> None:
        self._execute("UPDATE jobs SET percent = ?, message = ? WHERE id = ? AND state = ?",
                      (percent, message, job_id, RUNNING))

    def finish(self, job_id: str, state: str, returncode: Optional[int], error: str = "") -> None:
        """Record how a job ended; ``done`` also sets the progress to 100 %."""
        percent_sql = ", percent = 100" if state == DONE else ""
        self._execute(f"UPDATE jobs SET state = ?, returncode = ?, error = ?, finished = ?, pid = NULL{percent_sql} "
                      "WHERE id = ?", (state, returncode, error, time.time(), job_id))

    def request_cancel(self, job_id: str) -> Optional[str]:
        """Cancel a queued job at once, or flag a running one for the queue to stop; returns the state after."""
        with closing(self._connect()) as connection:
            connection.execute("BEGIN IMMEDIATE")
            row = connection.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                connection.execute("COMMIT")
                return None
            if row["state"] == QUEUED:
                connection.execute("UPDATE jobs SET state = ?, error = ?, finished = ? WHERE id = ?",
                                   (CANCELLED, "cancelled before it started", time.time(), job_id))
            elif row["state"] == RUNNING:
                connection.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            connection.execute("COMMIT")
        job = self.get(job_id)
        return job["state"] if job else None

    def cancel_requested(self, job_id: str) -> bool:
        rows = self._execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0]["cancel_requested"])

    def running(self) -> list[dict[str, Any]]:
        """Jobs recorded as running (after a restart: those the stopped server was running)."""
        return [self.get(row["id"]) for row in self._execute("SELECT id FROM jobs WHERE state = ?", (RUNNING,))]

    def requeue(self, job_id: str, arguments: list[str]) -> None:
        """Put a job back in the queue with new arguments (a training that resumes)."""
        self._execute("UPDATE jobs SET state = ?, arguments = ?, pid = NULL, slot = '', message = ? WHERE id = ?",
                      (QUEUED, json.dumps(arguments), "queued again after a server restart; resumes", job_id))
