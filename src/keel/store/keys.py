"""API keys: shown once at creation, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass

from keel.errors import UserError

PREFIX = "keel-"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant: str
    name: str | None
    prefix: str
    created: float
    revoked: float | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(conn: sqlite3.Connection, tenant: str, name: str | None = None) -> tuple[str, KeyInfo]:
    tenant = tenant.strip()
    if not tenant or len(tenant) > 128 or not tenant.isprintable():
        raise UserError("a tenant is 1–128 printable characters")
    key = PREFIX + secrets.token_urlsafe(32)
    info = KeyInfo(uuid.uuid4().hex[:12], tenant, name, key[:12], time.time(), None)
    conn.execute(
        "INSERT INTO api_keys(id, tenant, name, prefix, hash, created) VALUES (?,?,?,?,?,?)",
        (info.id, tenant, name, info.prefix, hash_key(key), info.created),
    )
    return key, info


def list_keys(conn: sqlite3.Connection) -> list[KeyInfo]:
    rows = conn.execute("SELECT id, tenant, name, prefix, created, revoked FROM api_keys ORDER BY created")
    return [KeyInfo(*row) for row in rows]


def revoke_key(conn: sqlite3.Connection, key_id: str) -> bool:
    cur = conn.execute(
        "UPDATE api_keys SET revoked = ? WHERE (id = ? OR prefix = ?) AND revoked IS NULL",
        (time.time(), key_id, key_id),
    )
    return cur.rowcount > 0


def tenant_for(conn: sqlite3.Connection, key: str) -> str | None:
    """The tenant of a live key, or None for an unknown or revoked one."""
    found = owner_of(conn, key)
    return None if found is None else found[0]


def owner_of(conn: sqlite3.Connection, key: str) -> tuple[str, str] | None:
    """(tenant, key id) of a live key, or None for an unknown or revoked one."""
    row = conn.execute(
        "SELECT tenant, id FROM api_keys WHERE hash = ? AND revoked IS NULL", (hash_key(key),)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))
