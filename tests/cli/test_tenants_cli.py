"""The CLI acts for one tenant at a time (--tenant, KEEL_TENANT): another tenant's data is not there."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import SCRIPTED, keel


def test_the_cli_sees_one_tenants_data(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "refunds.md").write_text("# Refunds\n\nRefunds take five business days.\n")
    config = tmp_path / "keel.yaml"
    config.write_text(SCRIPTED + "default_model: fast\n")
    (tmp_path / "features").mkdir()
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "hi.md").write_text("---\ninputs:\n  name: {type: str}\n---\nHi {{ name }}")
    (tmp_path / "features" / "hi.yaml").write_text("prompt: hi\nmodel: fast\ntenants: [acme]\n")
    c = ["-c", str(config)]
    assert keel(tmp_path, "ingest", "docs", str(docs), "--tenant", "acme", *c).returncode == 0

    found = keel(tmp_path, "search", "docs", "refund time", "--json", *c, env={"KEEL_TENANT": "acme"})
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["doc_id"] == "refunds.md"
    other = keel(tmp_path, "search", "docs", "refund time", "--tenant", "globex", *c)
    assert other.returncode != 0 and "no collection 'docs'" in other.stderr and "Traceback" not in other.stderr
    listed = keel(tmp_path, "collections", "--tenant", "globex", *c)
    assert "no collections yet" in listed.stdout
    everyone = keel(tmp_path, "collections", *c)  # the operator's view: every tenant's, with its tenant
    assert "docs" in everyone.stdout and "acme" in everyone.stdout

    ran = keel(tmp_path, "run", "hi", "-i", "name=Ada", "--tenant", "acme", "--json", "--root", str(tmp_path), *c)
    assert ran.returncode == 0, ran.stderr
    refused = keel(tmp_path, "run", "hi", "-i", "name=Ada", "--tenant", "globex", "--root", str(tmp_path), *c)
    assert refused.returncode != 0 and "no feature 'hi'" in refused.stderr
    mine = keel(tmp_path, "traces", "list", "--tenant", "acme", "--json", *c).stdout.strip().splitlines()
    assert mine and all(json.loads(line)["tenant"] == "acme" for line in mine)
    theirs = keel(tmp_path, "traces", "list", "--tenant", "globex", "--feature", "hi", "--json", *c).stdout
    assert all(json.loads(line)["status"] == "error" for line in theirs.strip().splitlines())  # only its refusal


def test_search_by_document_shows_each_document_once_with_its_chunks(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    sections = [
        "## Cards\nCard refunds take five to ten business days to reach your statement.",
        "## Annual plans\nAn annual plan can be refunded within thirty days of purchase, in full.",
        "## Credits\nAfter thirty days, unused months of a plan become account credit instead of a refund.",
    ]
    (docs / "refunds.md").write_text("# Refunds\n\n" + "\n\n".join(sections) + "\n")
    (docs / "keys.md").write_text("# Keys\n\nRotate API keys from the Settings page.\n")
    config = tmp_path / "keel.yaml"
    config.write_text(SCRIPTED)
    c = ["-c", str(config)]
    assert keel(tmp_path, "ingest", "docs", str(docs), *c).returncode == 0
    found = keel(tmp_path, "search", "docs", "refund", "--group-by", "document", "--per-document", "2", "--json", *c)
    assert found.returncode == 0, found.stderr
    data = json.loads(found.stdout)
    assert [d["doc_id"] for d in data][:1] == ["refunds.md"] and len({d["doc_id"] for d in data}) == len(data)
    assert len(data[0]["chunks"]) == 2 and data[0]["rank"] == 1 and data[0]["chunks"][0]["heading_path"]
    shown = keel(tmp_path, "search", "docs", "refund", "--group-by", "document", *c)
    assert shown.stdout.count("refunds.md") == 1 and "[1] refunds.md — Refunds" in shown.stdout
    for args, message in (
        (["--group-by", "page"], "'page' is not one of"),
        (["--per-document", "0"], "greater than or equal to 1"),
    ):
        bad = keel(tmp_path, "search", "docs", "refund", *args, *c)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
