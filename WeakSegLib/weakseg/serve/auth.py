"""The server's bearer token: made at first start into a file only its owner can read.

Every request must carry ``Authorization: Bearer <token>``; the comparison takes the same
time whatever the token, so it tells an attacker nothing.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from weakseg.errors import WeakSegInputError

TOKEN_FILE_NAME = "token"
MINIMUM_TOKEN_LENGTH = 16


def load_or_create_token(path: Path) -> str:
    """The token stored in ``path``; a new random one written there (mode 0600) when the file is missing.

    Raises:
        WeakSegInputError: the file is empty, too short, or readable by other users.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        descriptor = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(token + "\n")
        return token
    mode = stat.S_IMODE(path.stat().st_mode)
    if os.name == "posix" and mode & 0o077:
        raise WeakSegInputError(f"{path}: token file is readable by other users (mode {mode:o}); chmod 600 it")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < MINIMUM_TOKEN_LENGTH:
        raise WeakSegInputError(f"{path}: token must hold at least {MINIMUM_TOKEN_LENGTH} characters")
    return token


def authorised(header: str | None, token: str) -> bool:
    """True when an ``Authorization`` header value carries exactly ``Bearer <token>``."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())
