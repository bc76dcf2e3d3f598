"""Files for the Batch API (``/v1/files``): an uploaded batch input, and the output and error files
Keel writes for a batch. The bytes live in the store, so a worker on any host reads the input its
batch names and writes the output its creator downloads; every read is scoped by the tenant."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from keel.store.db import Database, Where, decode_keyset, encode_keyset

PURPOSES = ("batch", "batch_output")


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    tenant: str
    purpose: str
    filename: str
    bytes: int
    created: float
    expires: float | None


def _file(row: dict[str, Any]) -> StoredFile:
    return StoredFile(
        row["id"], row["tenant"], row["purpose"], row["filename"], int(row["bytes"]), row["created"], row["expires"]
    )


META = "id, tenant, purpose, filename, bytes, created, expires"


class FileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, tenant: str, purpose: str, filename: str, content: bytes, *, keep_s: float | None = None
    ) -> StoredFile:
        now = time.time()
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        expires = now + keep_s if keep_s is not None else None
        with self.db.transaction():
            self.db.run(
                "INSERT INTO files(id, tenant, purpose, filename, bytes, content, created, expires) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (file_id, tenant, purpose, filename, len(content), content, now, expires),
            )
        return StoredFile(file_id, tenant, purpose, filename, len(content), now, expires)

    def get(self, file_id: str, *, tenant: str | None) -> StoredFile | None:
        where = Where().eq("id", file_id).eq("tenant", tenant)
        row = self.db.one(f"SELECT {META} FROM files WHERE {where}", where.args)
        return _file(row) if row is not None else None

    def content(self, file_id: str, *, tenant: str | None) -> bytes | None:
        where = Where().eq("id", file_id).eq("tenant", tenant)
        value = self.db.scalar(f"SELECT content FROM files WHERE {where}", where.args)
        return bytes(value) if value is not None else None

    def find(
        self, *, tenant: str | None, purpose: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> list[StoredFile]:
        where = Where().eq("tenant", tenant).eq("purpose", purpose)
        if cursor is not None:
            created, file_id = decode_keyset(cursor)
            where.add("(created < ? OR (created = ? AND id < ?))", created, created, file_id)
        rows = self.db.all(
            f"SELECT {META} FROM files WHERE {where} ORDER BY created DESC, id DESC LIMIT ?", (*where.args, limit)
        )
        return [_file(r) for r in rows]

    def delete(self, file_id: str, *, tenant: str | None) -> bool:
        where = Where().eq("id", file_id).eq("tenant", tenant)
        with self.db.transaction():
            return bool(self.db.run(f"DELETE FROM files WHERE {where}", where.args))

    def prune(self) -> int:
        """Files past their retention (outputs and inputs alike)."""
        with self.db.transaction():
            return self.db.run("DELETE FROM files WHERE expires IS NOT NULL AND expires < ?", (time.time(),))


def file_cursor(f: StoredFile) -> str:
    return encode_keyset(f.created, f.id)
