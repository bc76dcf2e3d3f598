"""The prompt registry: prompt files in git become immutable versions; labels point at versions.

Each distinct content of ``prompts/<name>.md`` is a version (v1, v2, … per prompt, identified by its
hash, with the git commit and author when the file is in a repository). Labels (``production``,
``staging``, anything) move between versions; every move is recorded, and ``rollback`` is a move back.
Serving resolves a label; if that version fails to render, the last good version serves and the
reason is kept on the result.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import ConfigError, UserError
from keel.features.templates import PromptSource, Rendered, load_prompt, parse_prompt, render

DEFAULT_LABEL = "production"


@dataclass(frozen=True, slots=True)
class Version:
    prompt: str
    version: int
    hash: str
    git_commit: str | None
    git_author: str | None
    created: float
    labels: tuple[str, ...] = ()


def _git_origin(path: Path) -> tuple[str | None, str | None]:
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%H%x00%an", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    commit, _, author = out.partition("\x00")
    return (commit or None), (author or None)


class PromptRegistry:
    def __init__(self, conn: sqlite3.Connection, directory: Path) -> None:
        self.conn = conn
        self.directory = directory
        self._cache: dict[tuple[str, str], tuple[int, PromptSource]] = {}
        self._recorded: dict[Path, tuple[tuple[int, int], int]] = {}

    # -- versions --------------------------------------------------------------------------------
    def sync(self) -> dict[str, int]:
        """Record the current content of every prompt file; returns prompt → its newest version."""
        if not self.directory.is_dir():
            raise UserError(f"no prompts folder at {self.directory}")
        out = {}
        for path in sorted(self.directory.glob("*.md")):
            out[path.stem] = self.record(load_prompt(path), path)
        return out

    def record_file(self, path: Path) -> int:
        """Record one prompt file (so a changed file is a new version before it is served)."""
        try:
            stat = path.stat()
        except OSError:
            raise UserError(f"no prompt file {path}") from None
        signature = (stat.st_mtime_ns, stat.st_size)
        known = self._recorded.get(path)
        if known is not None and known[0] == signature:
            return known[1]  # unchanged since we recorded it: no parse, no SQL
        version = self.record(load_prompt(path), path)
        self._recorded[path] = (signature, version)
        return version

    def record(self, source: PromptSource, path: Path | None = None) -> int:
        """The version number of this content, creating it (and ``production`` for a first version)."""
        conn = self.conn
        row = conn.execute(
            "SELECT version FROM prompt_versions WHERE prompt = ? AND hash = ?", (source.name, source.hash)
        ).fetchone()
        if row is not None:
            return int(row[0])
        commit, author = _git_origin(path) if path is not None else (None, None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            again = conn.execute(
                "SELECT version FROM prompt_versions WHERE prompt = ? AND hash = ?", (source.name, source.hash)
            ).fetchone()
            if again is not None:
                conn.execute("COMMIT")
                return int(again[0])
            version = int(
                conn.execute(
                    "SELECT coalesce(max(version), 0) + 1 FROM prompt_versions WHERE prompt = ?", (source.name,)
                ).fetchone()[0]
            )
            conn.execute(
                "INSERT INTO prompt_versions VALUES (?,?,?,?,?,?,?)",
                (source.name, version, source.hash, source.text, commit, author, time.time()),
            )
            if (
                conn.execute(
                    "SELECT 1 FROM prompt_labels WHERE prompt = ? AND label = ?", (source.name, DEFAULT_LABEL)
                ).fetchone()
                is None
            ):
                self._move(source.name, DEFAULT_LABEL, version, "first version")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return version

    def versions(self, name: str) -> list[Version]:
        labels: dict[int, list[str]] = {}
        for label, version in self.conn.execute("SELECT label, version FROM prompt_labels WHERE prompt = ?", (name,)):
            labels.setdefault(int(version), []).append(label)
        rows = self.conn.execute(
            "SELECT prompt, version, hash, git_commit, git_author, created FROM prompt_versions "
            "WHERE prompt = ? ORDER BY version",
            (name,),
        ).fetchall()
        if not rows:
            raise UserError(f"no prompt '{name}'; run `keel prompts sync` or check the prompts folder")
        return [
            Version(r[0], int(r[1]), r[2], r[3], r[4], float(r[5]), tuple(sorted(labels.get(int(r[1]), []))))
            for r in rows
        ]

    def source(self, name: str, version: int) -> PromptSource:
        row = self.conn.execute(
            "SELECT source FROM prompt_versions WHERE prompt = ? AND version = ?", (name, version)
        ).fetchone()
        if row is None:
            raise UserError(f"prompt '{name}' has no version {version}")
        return parse_prompt(str(row[0]), name, f"{name}@v{version}")

    # -- labels ----------------------------------------------------------------------------------
    def label_version(self, name: str, label: str = DEFAULT_LABEL) -> int:
        row = self.conn.execute(
            "SELECT version FROM prompt_labels WHERE prompt = ? AND label = ?", (name, label)
        ).fetchone()
        if row is None:
            known = [r[0] for r in self.conn.execute("SELECT label FROM prompt_labels WHERE prompt = ?", (name,))]
            raise UserError(
                f"prompt '{name}' has no label '{label}'" + (f" (labels: {', '.join(sorted(known))})" if known else "")
            )
        return int(row[0])

    def _move(self, name: str, label: str, version: int, reason: str) -> None:
        old = self.conn.execute(
            "SELECT version FROM prompt_labels WHERE prompt = ? AND label = ?", (name, label)
        ).fetchone()
        self.conn.execute("INSERT OR REPLACE INTO prompt_labels VALUES (?,?,?)", (name, label, version))
        self.conn.execute(
            "INSERT INTO prompt_label_moves VALUES (?,?,?,?,?,?)",
            (name, label, old[0] if old else None, version, reason, time.time()),
        )

    def set_label(self, name: str, label: str, version: int, reason: str = "set by hand") -> None:
        if not label or not label.replace("-", "").replace("_", "").isalnum():
            raise UserError(f"'{label}' is not a label: use letters, digits, '-' and '_'")
        self.conn.execute("BEGIN IMMEDIATE")  # concurrent moves serialise here
        try:
            if (
                self.conn.execute(
                    "SELECT 1 FROM prompt_versions WHERE prompt = ? AND version = ?", (name, version)
                ).fetchone()
                is None
            ):
                raise UserError(f"prompt '{name}' has no version {version}")
            self._move(name, label, version, reason)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self._cache.pop((name, label), None)

    def rollback(self, name: str, label: str = DEFAULT_LABEL) -> tuple[int, int]:
        """Move ``label`` back to the version it pointed at before its last move forward."""
        current = self.label_version(name, label)
        moves = self.conn.execute(
            "SELECT from_version, to_version FROM prompt_label_moves WHERE prompt = ? AND "
            "label = ? ORDER BY rowid DESC",
            (name, label),
        ).fetchall()
        target = next((int(f) for f, t in moves if int(t) == current and f is not None and int(f) != current), None)
        if target is None:
            raise UserError(f"'{label}' of prompt '{name}' has nothing to roll back to (it is at v{current})")
        self.set_label(name, label, target, f"rollback from v{current}")
        return current, target

    def history(self, name: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT label, from_version, to_version, reason, at FROM prompt_label_moves "
            "WHERE prompt = ? ORDER BY rowid",
            (name,),
        ).fetchall()
        return [dict(zip(("label", "from", "to", "reason", "at"), tuple(r), strict=True)) for r in rows]

    # -- serving ---------------------------------------------------------------------------------
    def render(
        self, name: str, variables: dict[str, Any], label: str = DEFAULT_LABEL, *, version: int | None = None
    ) -> Rendered:
        """Render the labelled version (or ``version`` when given, e.g. an experiment arm's); if it
        fails to render, the newest older version that renders serves instead and ``fallback_reason``
        says why. Input mistakes are the caller's and raise."""
        key = label if version is None else f"v{version}"
        wanted = self.label_version(name, label) if version is None else version
        cached = self._cache.get((name, key))
        if cached is None or cached[0] != wanted:
            cached = (wanted, self.source(name, wanted))
            self._cache[(name, key)] = cached
        version, source = cached
        try:
            rendered = render(source, variables)
            rendered.version = version
            return rendered
        except UserError as exc:
            if "input" in exc.message:
                raise
            failure = exc.message
        for older in range(version - 1, 0, -1):
            try:
                rendered = render(self.source(name, older), variables)
            except (UserError, ConfigError):
                continue
            rendered.version = older
            rendered.fallback_reason = f"v{version} failed to render ({failure}); served v{older}"
            return rendered
        raise UserError(f"prompt '{name}' v{version} failed to render and no earlier version renders: {failure}")
