"""API keys and tenants: a key is shown once at creation and stored only as a SHA-256 hash; it
belongs to one tenant and has one role.

Roles: ``admin`` (any tenant's data, and keys), ``member`` (its own tenant's data and features),
``reviewer`` (reads and decides review items), ``ingest`` (documents only). Deleting a tenant
revokes its keys at once; its data stays until it is purged.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

from keel.errors import UserError
from keel.store.db import Database, Where

PREFIX = "keel-"
ROLES = ("admin", "member", "reviewer", "ingest")
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as the edge authenticated them once: passed down to every repository call."""

    tenant: str
    key: str | None = None  # the API key's id; None for the CLI and no-auth mode
    role: str = "admin"

    @property
    def admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant: str
    name: str | None
    prefix: str
    created: float
    revoked: float | None
    role: str = "member"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_tenant(tenant: object) -> str:
    """A tenant name: 1–128 printable characters, no surrounding spaces (any script is fine)."""
    if not isinstance(tenant, str) or not tenant.strip() or len(tenant.strip()) > 128 or not tenant.isprintable():
        raise UserError(f"{tenant!r} is not a tenant name: use 1–128 printable characters")
    return tenant.strip()


_KEY_COLUMNS = "id, tenant, name, prefix, created, revoked, role"


class Keys:
    """The key and tenant repository."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, tenant: str, name: str | None = None, *, role: str = "member") -> tuple[str, KeyInfo]:
        tenant = check_tenant(tenant)
        if role not in ROLES:
            raise UserError(f"unknown role '{role}': use one of {', '.join(ROLES)}")
        key = PREFIX + secrets.token_urlsafe(32)
        info = KeyInfo(uuid.uuid4().hex[:12], tenant, name, key[:12], time.time(), None, role)
        with self.db.transaction():
            deleted = self.db.scalar("SELECT deleted FROM tenants WHERE name = ?", (tenant,))
            if deleted is not None:
                raise UserError(f"tenant '{tenant}' was deleted; it takes no new keys")
            self.db.run(
                "INSERT INTO tenants(name, created) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (tenant, info.created)
            )
            self.db.run(
                "INSERT INTO api_keys(id, tenant, name, prefix, hash, created, role) VALUES (?,?,?,?,?,?,?)",
                (info.id, tenant, name, info.prefix, hash_key(key), info.created, role),
            )
        return key, info

    def find(self, tenant: str | None = None) -> list[KeyInfo]:
        """Every key (``tenant`` None: all tenants'), oldest first."""
        where = Where().eq("tenant", tenant)
        rows = self.db.all(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE {where} ORDER BY created", where.args)
        return [KeyInfo(**r) for r in rows]

    def revoke(self, key_id: str, tenant: str | None = None) -> bool:
        """Revoke by id or prefix; scoped to ``tenant`` when given (another tenant's key: False)."""
        where = Where("revoked IS NULL").add("(id = ? OR prefix = ?)", key_id, key_id).eq("tenant", tenant)
        return self.db.run(f"UPDATE api_keys SET revoked = ? WHERE {where}", (time.time(), *where.args)) > 0

    def caller(self, key: str) -> Caller | None:
        """Who a live key belongs to; None for an unknown or revoked key, or a deleted tenant's."""
        row = self.db.one(
            "SELECT k.tenant, k.id, k.role FROM api_keys k LEFT JOIN tenants t ON t.name = k.tenant "
            "WHERE k.hash = ? AND k.revoked IS NULL AND t.deleted IS NULL",
            (hash_key(key),),
        )
        return None if row is None else Caller(str(row["tenant"]), str(row["id"]), str(row["role"]))

    def live(self, key_id: str) -> Caller | None:
        """Who a key id belongs to while the key is live (a dashboard session checks it each page)."""
        row = self.db.one(
            "SELECT k.tenant, k.id, k.role FROM api_keys k LEFT JOIN tenants t ON t.name = k.tenant "
            "WHERE k.id = ? AND k.revoked IS NULL AND t.deleted IS NULL",
            (key_id,),
        )
        return None if row is None else Caller(str(row["tenant"]), str(row["id"]), str(row["role"]))

    # -- tenants -----------------------------------------------------------------------------------
    def tenants(self) -> list[dict[str, object]]:
        return self.db.all(
            "SELECT t.name, t.created, t.deleted, "
            "(SELECT count(*) FROM api_keys k WHERE k.tenant = t.name AND k.revoked IS NULL) AS live_keys "
            "FROM tenants t ORDER BY t.name"
        )

    def delete_tenant(self, tenant: str) -> int:
        """Mark a tenant deleted and revoke its keys; returns how many keys were live."""
        tenant = check_tenant(tenant)
        now = time.time()
        with self.db.transaction():
            if self.db.scalar("SELECT 1 FROM tenants WHERE name = ?", (tenant,)) is None:
                raise UserError(f"no tenant '{tenant}'")
            self.db.run("UPDATE tenants SET deleted = ? WHERE name = ? AND deleted IS NULL", (now, tenant))
            return self.db.run("UPDATE api_keys SET revoked = ? WHERE tenant = ? AND revoked IS NULL", (now, tenant))
