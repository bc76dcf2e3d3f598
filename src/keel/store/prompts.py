"""Prompt versions, labels and every label move, behind one repository.

Versions are the project's (its prompt files are in git), so they are shared by every tenant;
each label move records who made it (tenant and key, or the git author / OS user) and why. New
versions and moves serialise per prompt: on SQLite through the write lock, on Postgres through an
advisory lock, so 40 replicas moving one label at once lose no move.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from keel.store.db import Database, Where

DEFAULT_LABEL = "production"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who moved a label: a tenant and key over HTTP, an OS user or git author on the CLI."""

    tenant: str = "default"
    name: str | None = None


class PromptStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def version_of(self, prompt: str, content_hash: str) -> int | None:
        found = self.db.scalar(
            "SELECT version FROM prompt_versions WHERE prompt = ? AND hash = ?", (prompt, content_hash)
        )
        return None if found is None else int(found)

    def add_version(
        self,
        prompt: str,
        content_hash: str,
        text: str,
        *,
        commit: str | None,
        author: str | None,
        actor: Actor | None = None,
    ) -> int:
        """The version number of this content, creating it — and pointing ``production`` at it when
        the prompt has no ``production`` yet."""
        with self.db.transaction():
            self.db.lock(f"prompt:{prompt}")
            again = self.version_of(prompt, content_hash)
            if again is not None:
                return again
            version = int(
                self.db.scalar("SELECT coalesce(max(version), 0) + 1 FROM prompt_versions WHERE prompt = ?", (prompt,))
            )
            self.db.run(
                "INSERT INTO prompt_versions(prompt, version, hash, source, git_commit, git_author, created) "
                "VALUES (?,?,?,?,?,?,?)",
                (prompt, version, content_hash, text, commit, author, time.time()),
            )
            if self.label(prompt, DEFAULT_LABEL) is None:
                who = actor or Actor(name=author)
                self._move(prompt, DEFAULT_LABEL, version, "first version", who)
        return version

    def versions(self, prompt: str) -> list[dict[str, Any]]:
        """Every version, oldest first, each with the labels pointing at it."""
        labels: dict[int, list[str]] = {}
        for row in self.db.all("SELECT label, version FROM prompt_labels WHERE prompt = ?", (prompt,)):
            labels.setdefault(int(row["version"]), []).append(row["label"])
        rows = self.db.all(
            "SELECT prompt, version, hash, git_commit, git_author, created FROM prompt_versions "
            "WHERE prompt = ? ORDER BY version",
            (prompt,),
        )
        for row in rows:
            row["labels"] = tuple(sorted(labels.get(int(row["version"]), [])))
        return rows

    def source(self, prompt: str, version: int) -> str | None:
        found = self.db.scalar("SELECT source FROM prompt_versions WHERE prompt = ? AND version = ?", (prompt, version))
        return None if found is None else str(found)

    def label(self, prompt: str, label: str) -> int | None:
        found = self.db.scalar("SELECT version FROM prompt_labels WHERE prompt = ? AND label = ?", (prompt, label))
        return None if found is None else int(found)

    def labels(self, prompt: str) -> list[str]:
        return sorted(r["label"] for r in self.db.all("SELECT label FROM prompt_labels WHERE prompt = ?", (prompt,)))

    def move(self, prompt: str, label: str, version: int, reason: str, actor: Actor) -> bool:
        """Point ``label`` at ``version``; False when the prompt has no such version."""
        with self.db.transaction():
            self.db.lock(f"prompt:{prompt}")
            if self.source(prompt, version) is None:
                return False
            self._move(prompt, label, version, reason, actor)
        return True

    def _move(self, prompt: str, label: str, version: int, reason: str, actor: Actor) -> None:
        old = self.label(prompt, label)
        self.db.run(
            "INSERT INTO prompt_labels(prompt, label, version) VALUES (?,?,?) "
            "ON CONFLICT (prompt, label) DO UPDATE SET version = excluded.version",
            (prompt, label, version),
        )
        self.db.run(
            "INSERT INTO label_moves(prompt, label, from_version, to_version, reason, at, tenant, actor) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (prompt, label, old, version, reason, time.time(), actor.tenant, actor.name),
        )

    def moves(self, prompt: str, label: str | None = None) -> list[dict[str, Any]]:
        """Label moves in the order they happened."""
        where = Where().eq("prompt", prompt).eq("label", label)
        return self.db.all(
            "SELECT label, from_version, to_version, reason, at, tenant, actor FROM label_moves "
            f"WHERE {where} ORDER BY seq",
            where.args,
        )
