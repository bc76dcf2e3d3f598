"""Authentication: ``Authorization: Bearer <key>`` → tenant. Keys are looked up by hash.

Lookups are cached for ``auth_cache_s`` (1 s by default) so a request does not drop into SQLite
each time; a key revoked by another process (``keel keys revoke``) stops working within that.
"""

from __future__ import annotations

import sqlite3
import time

from keel.errors import AuthError
from keel.store.keys import owner_of

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
MAX_CACHED = 10_000


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Authenticator:
    def __init__(self, conn: sqlite3.Connection | None, *, cache_s: float = 1.0) -> None:
        self.conn = conn
        self.cache_s = cache_s
        self._cache: dict[str, tuple[tuple[str, str] | None, float]] = {}

    def __call__(self, header: str | None) -> str | None:
        """The tenant for a request, or None in no-auth mode (no connection)."""
        return self.identify(header)[0]

    def identify(self, header: str | None) -> tuple[str | None, str | None]:
        """(tenant, key id) for a request; (None, None) in no-auth mode (no connection)."""
        if self.conn is None:
            return None, None
        key = bearer(header)
        if key is None:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>' (create one with `keel keys create`)")
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            found = hit[0]
        else:
            found = owner_of(self.conn, key)
            if self.cache_s > 0:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[key] = (found, now + self.cache_s)
        if found is None:
            raise AuthError("invalid or revoked API key")
        return found
