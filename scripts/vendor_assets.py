"""Refresh the dashboard's browser assets from the npm registry, checked against their integrity.

    python scripts/vendor_assets.py            # re-fetch the pinned versions in assets.json, verify, copy
    python scripts/vendor_assets.py --latest   # move each to the newest release of its major version

Each asset comes from its npm package's tarball (``npm pack``), whose sha512 must match the registry's
``dist.integrity``; the file's own sha384 goes into assets.json and into the page's ``integrity``
attribute. Nothing is fetched at run time: the files ship inside the Python package.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

STATIC = Path(__file__).resolve().parents[1] / "src/keel/server/ui/static"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latest", action="store_true")
    args = parser.parse_args()
    manifest_path = STATIC / "assets.json"
    manifest = json.loads(manifest_path.read_text())
    for name, asset in manifest.items():
        spec = f"{asset['package']}@{asset['version'].split('.')[0] if args.latest else asset['version']}"
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(["npm", "pack", spec, "--json"], cwd=tmp, capture_output=True, text=True, check=True)
            packed = json.loads(out.stdout)[0]
            tarball = Path(tmp) / packed["filename"]
            digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
            if digest != packed["integrity"]:
                raise SystemExit(f"{spec}: the tarball does not match the registry's integrity")
            with tarfile.open(tarball) as tar:
                member = tar.extractfile(f"package/{asset['file']}")
                assert member is not None
                data = member.read()
        (STATIC / name).write_bytes(data)
        asset.update(
            version=packed["version"],
            tarball_integrity=digest,
            integrity="sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode(),
        )
        print(f"{name}: {asset['package']}@{asset['version']} {asset['integrity']}")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
