"""Authentication: ``Authorization: Bearer <key>`` → tenant. Keys are looked up by hash."""

from __future__ import annotations

import sqlite3

from keel.errors import AuthError
from keel.store.keys import tenant_for

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authenticate(conn: sqlite3.Connection | None, header: str | None) -> str | None:
    """The tenant for a request, or None in no-auth mode (``conn`` is None)."""
    if conn is None:
        return None
    key = bearer(header)
    if key is None:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>' (create one with `keel keys create`)")
    tenant = tenant_for(conn, key)
    if tenant is None:
        raise AuthError("invalid or revoked API key")
    return tenant
