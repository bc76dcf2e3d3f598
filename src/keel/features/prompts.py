"""The prompt registry: prompt files in git become immutable versions; labels point at versions.

Each distinct content of ``prompts/<name>.md`` is a version (v1, v2, … per prompt, identified by its
hash, with the git commit and author when the file is in a repository). Labels (``production``,
``staging``, anything) move between versions; every move is recorded, and ``rollback`` is a move back.
Serving resolves a label; if that version fails to render, the last good version serves and the
reason is kept on the result.
"""

from __future__ import annotations

import getpass
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import ConfigError, UserError
from keel.features.templates import PromptSource, Rendered, load_prompt, parse_prompt, render
from keel.store.prompts import DEFAULT_LABEL, Actor, PromptStore

__all__ = ["DEFAULT_LABEL", "Actor", "PromptRegistry", "Version", "local_actor"]


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


def local_actor(tenant: str = "default") -> Actor:
    """The person at this terminal, for label moves made by the CLI."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = None
    return Actor(tenant, f"os:{name}" if name else None)


class PromptRegistry:
    def __init__(self, store: PromptStore, directory: Path) -> None:
        self.store = store
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
        known = self.store.version_of(source.name, source.hash)
        if known is not None:
            return known
        commit, author = _git_origin(path) if path is not None else (None, None)
        actor = Actor(name=f"git:{author}") if author else local_actor()
        return self.store.add_version(source.name, source.hash, source.text, commit=commit, author=author, actor=actor)

    def versions(self, name: str) -> list[Version]:
        rows = self.store.versions(name)
        if not rows:
            raise UserError(f"no prompt '{name}'; run `keel prompts sync` or check the prompts folder")
        return [
            Version(
                r["prompt"],
                int(r["version"]),
                r["hash"],
                r["git_commit"],
                r["git_author"],
                float(r["created"]),
                r["labels"],
            )
            for r in rows
        ]

    def source(self, name: str, version: int) -> PromptSource:
        text = self.store.source(name, version)
        if text is None:
            raise UserError(f"prompt '{name}' has no version {version}")
        return parse_prompt(text, name, f"{name}@v{version}")

    # -- labels ----------------------------------------------------------------------------------
    def label_version(self, name: str, label: str = DEFAULT_LABEL) -> int:
        version = self.store.label(name, label)
        if version is None:
            known = self.store.labels(name)
            raise UserError(
                f"prompt '{name}' has no label '{label}'" + (f" (labels: {', '.join(known)})" if known else "")
            )
        return version

    def set_label(
        self, name: str, label: str, version: int, reason: str = "set by hand", actor: Actor | None = None
    ) -> None:
        if not label or not label.replace("-", "").replace("_", "").isalnum():
            raise UserError(f"'{label}' is not a label: use letters, digits, '-' and '_'")
        if not self.store.move(name, label, version, reason, actor or local_actor()):
            raise UserError(f"prompt '{name}' has no version {version}")
        self._cache.pop((name, label), None)

    def rollback(self, name: str, label: str = DEFAULT_LABEL, actor: Actor | None = None) -> tuple[int, int]:
        """Move ``label`` back to the version it pointed at before its last move forward."""
        current = self.label_version(name, label)
        moves = reversed(self.store.moves(name, label))
        target = next(
            (
                int(m["from_version"])
                for m in moves
                if int(m["to_version"]) == current
                and m["from_version"] is not None
                and int(m["from_version"]) != current
            ),
            None,
        )
        if target is None:
            raise UserError(f"'{label}' of prompt '{name}' has nothing to roll back to (it is at v{current})")
        self.set_label(name, label, target, f"rollback from v{current}", actor)
        return current, target

    def history(self, name: str) -> list[dict[str, Any]]:
        return [
            {
                "label": m["label"],
                "from": m["from_version"],
                "to": m["to_version"],
                "reason": m["reason"],
                "at": m["at"],
                "who": m["actor"] or "-",
                "tenant": m["tenant"],
            }
            for m in self.store.moves(name)
        ]

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
