"""`keel store copy`: an embedded install's history moves into Postgres, every row counted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.errors import UserError
from keel.store import Store, db_path
from keel.store.budgets import Hold
from keel.store.copy import TABLES, copy_store
from keel.store.engines import open_postgres
from keel.store.prompts import Actor
from keel.testing.store_conformance import trace


def fill(store: Store) -> str:
    store.keys.create("acme", "ci")
    rec = trace("acme", user="ü-user", feature="support", request={"q": "ü"}, attempts=[{"deployment": "d"}])
    store.traces.write([rec, *(trace("globex", ts=time.time() - i) for i in range(250))])
    store.feedback.add(rec.id, "helpful", True, tenant="acme", correction="five days")
    store.prompts.add_version("support", "h1", "one", commit=None, author="ann")
    store.prompts.add_version("support", "h2", "two", commit=None, author="ann")
    store.prompts.move("support", "production", 2, "ship", Actor("acme", "os:ann"))
    store.experiments.insert("acme", "x", "support", "[]", time.time())
    store.evals.save_run("acme", {"id": "r1", "suite": "s", "feature": "support", "started": 1.0, "status": "done",
                                  "label": "main", "summary": "{}"}, [("c1", "{}")])  # fmt: skip
    store.evals.cache("acme", "k", "s", "c1", "{}")
    store.evals.mark_promoted("acme", "s", [(rec.id, "c9")])
    store.answers.put("a1", tenant="acme", scope="s", feature="support", text="q", vector=b"\x00\x00\x80?",
                      value="{}", trace_id=rec.id, ttl_s=60)  # fmt: skip
    store.budgets.reserve("r", [Hold("b|x|d", 5, 1)], 60, lambda *_: False)
    return rec.id


def test_copy_moves_every_row_and_keeps_ids(tmp_path: Path, pg_url: str) -> None:
    with Store.at(tmp_path / "keel.db") as source:
        trace_id = fill(source)
        with Store(open_postgres(pg_url)) as target:
            copied = copy_store(source.db, target.db, batch=100)
            assert {c.table for c in copied} == {t for t, _ in TABLES}
            assert all(c.source == c.target for c in copied) and sum(c.target for c in copied) > 260
            got = target.traces.get(trace_id, tenant="acme")
            assert got is not None and got.user == "ü-user" and got.request == {"q": "ü"}
            assert [m["actor"] for m in target.prompts.moves("support")][-1] == "os:ann"
            rolled = target.traces.dashboard(tenant=None, since=time.time() - 3600, by="tenant", bucket_s=0)
            assert [(r["value"], r["calls"]) for r in rolled] == [("acme", 1), ("globex", 250)]  # the dashboard's too
            assert target.answers.vectors("s", 5) == [("a1", b"\x00\x00\x80?")]
            again = target.feedback.add(trace_id, "rating", 4, tenant="acme")  # the id sequence moved past the copy
            assert again.id > source.feedback.for_trace(trace_id, tenant="acme")[0].id
            with pytest.raises(UserError, match="already holds data"):
                copy_store(source.db, target.db)


def test_the_cli_copies_and_never_prints_the_password(home: Path, pg_url: str) -> None:
    with Store.at(db_path(home)) as source:
        fill(source)
    env = {**os.environ, "KEEL_HOME": str(home), "TARGET_URL": pg_url}
    out = subprocess.run([sys.executable, "-m", "keel", "store", "copy", "--to-env", "TARGET_URL"],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "every row is there" in out.stdout and "traces" in out.stdout and "251" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "keel", "store", "copy", "--to", "postgresql://u:s3cret@127.0.0.1:1/x"],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert bad.returncode != 0 and "s3cret" not in bad.stdout + bad.stderr and "***" in bad.stderr
