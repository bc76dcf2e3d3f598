"""Dashboard sessions: sign in once with an API key, then a signed cookie.

The cookie holds the key's id, tenant and role, an expiry and a nonce, signed with HMAC-SHA256. It
never holds the key itself. Each page checks that the key is still live, so a revoked key ends its
sessions at once. The cookie is HttpOnly, SameSite=Strict and Path=/ui; Secure when served over
https. Every form carries a CSRF token derived from the session's nonce, and a POST without it is a
403.

The signing secret is ``server.session_secret`` (shared by every replica), else a random one kept in
``KEEL_HOME/ui_secret`` (sessions then belong to that host).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

COOKIE = "keel_session"
LIFETIME_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    key: str
    tenant: str
    role: str
    expires: float
    nonce: str


def load_secret(home: Path, configured: str | None) -> bytes:
    if configured:
        return configured.encode()
    path = home / "ui_secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self.secret, payload, hashlib.sha256).digest())

    def issue(self, key: str, tenant: str, role: str) -> str:
        payload = orjson.dumps(
            {"k": key, "t": tenant, "r": role, "e": time.time() + LIFETIME_S, "n": secrets.token_urlsafe(16)}
        )
        return f"{_b64(payload)}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries; None when missing, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        try:
            payload = _unb64(body)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            data = orjson.loads(payload)
            session = Session(str(data["k"]), str(data["t"]), str(data["r"]), float(data["e"]), str(data["n"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return session if session.expires > time.time() else None

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf:{session.nonce}".encode())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(session), token or "")
