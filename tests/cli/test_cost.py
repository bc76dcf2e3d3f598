"""keel cost report / model and keel prices, from traces the real gateway wrote."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from keel.features.pipeline import FeaturePipeline
from keel.gateway.runtime import build_service, close_service
from keel.store import Store, db_path
from keel.types import CallContext, ChatRequest
from tests.cli.test_cli import SCRIPTED, keel
from tests.conftest import make_settings


def traffic(home: Path, project: Path | None = None) -> None:
    async def go() -> None:
        service = build_service(make_settings(SCRIPTED), home)
        try:
            for user, calls in (("u1", 6), ("u2", 3), ("u3", 1)):
                for i in range(calls):
                    ctx = CallContext(tenant="acme", user=user, feature="chat")
                    words = " ".join(["word"] * (20 * (i + 1)))
                    await service.chat(
                        ChatRequest(model="fast", messages=[{"role": "user", "content": words}], ctx=ctx)
                    )
            if project is not None:
                pipe = FeaturePipeline(service, project, Store.at(db_path(home)))
                for name in ("Ada", "Bo"):
                    await pipe.run("hello", {"name": name}, user="u1")
        finally:
            await close_service(service)

    asyncio.run(go())


def test_cost_report_splits_and_charts(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "prompts").mkdir(parents=True)
    (project / "features").mkdir()
    (project / "prompts" / "hello.md").write_text("---\ninputs:\n  name: {type: str}\n---\nHello {{ name }}")
    (project / "features" / "hello.yaml").write_text("prompt: hello\nmodel: fast\n")
    traffic(home, project)
    (home / "keel.yaml").write_text(SCRIPTED)
    cfg = ("-c", str(home / "keel.yaml"))
    out = keel(home, "cost", "report", "--by", "user", "--html", str(tmp_path / "cost.html"), *cfg)
    assert out.returncode == 0, out.stderr
    assert "u1" in out.stdout and "reported" in out.stdout and "estimated" in out.stdout and "█" in out.stdout
    assert "per interaction" in out.stdout  # feature runs, one per interaction
    html = (tmp_path / "cost.html").read_text()
    assert "<svg" in html and "u1" in html and "<script" not in html
    over = keel(home, "cost", "report", "--by", "feature", "--target", "0.0000001", *cfg)
    assert "> $" in over.stdout, over.stdout  # the hello feature costs more than the target per run
    legacy = keel(home, "cost", "--by", "model", *cfg)
    assert legacy.returncode == 0 and "gpt-4o-mini" in legacy.stdout and "not in keel.yaml" not in legacy.stdout
    with Store.at(db_path(home)) as store:  # a call for a model this config does not serve, as a refused one is kept
        store.db.run(
            "INSERT INTO traces(id, ts, operation, status, tenant, model, alias, input_tokens, output_tokens) "
            "VALUES ('t-ghost', ?, 'chat', 'error', 'acme', 'gpt-5-turbo', 'gpt-5-turbo', 0, 0)",
            (time.time(),),
        )
    marked = keel(home, "cost", "--by", "model", *cfg)
    assert "gpt-5-turbo (not in keel.yaml)" in marked.stdout, marked.stdout


def test_cost_model_projects_from_traffic(home: Path) -> None:
    traffic(home)
    (home / "keel.yaml").write_text(SCRIPTED)
    cfg = ("-c", str(home / "keel.yaml"))
    out = keel(home, "cost", "model", "--users", "1000", "--budget", "0.5", *cfg)
    assert out.returncode == 0, out.stderr
    assert "3" in out.stdout and "1,000 ← target" in out.stdout and "pessimistic" in out.stdout
    assert "monthly budget is spent at" in out.stdout and "other models" in out.stdout
    data = json.loads(keel(home, "cost", "model", "--users", "1000", "--json", *cfg).stdout)
    p = data["projection"]
    assert p["calls"] == 10 and p["users"] == 3
    assert data["monthly_pessimistic"] >= data["monthly"] > 0
    # expected = users × calls/user/day × 30 × cost/call, from what was logged
    assert abs(data["monthly"] - 1000 * p["calls_per_user_day"] * 30 * p["cost_per_call"]) < 1e-9
    empty = keel(home, "cost", "model", "--feature", "nope", *cfg)
    assert empty.returncode == 2 and "nothing to project from" in empty.stderr


def test_prices_show_and_update(home: Path, tmp_path: Path) -> None:
    shown = keel(home, "prices", "show", "gpt-4o-mini")
    assert shown.returncode == 0 and "gpt-4o-mini" in shown.stdout and "USD per 1M tokens" in shown.stdout
    broken = tmp_path / "bad.yaml"
    broken.write_text("version: x\nmodels:\n  m: [{effective: 2026-01-01, input: -1, output: 1}]\n")
    bad = keel(home, "prices", "update", str(broken))
    assert bad.returncode == 2 and "bad.yaml:3" in bad.stderr
    good = tmp_path / "prices.yaml"
    good.write_text("version: ours-2026-12\nmodels:\n  our-model: [{effective: 2026-01-01, input: 1, output: 2}]\n")
    done = keel(home, "prices", "update", str(good))
    assert done.returncode == 0 and "installed price table ours-2026-12" in done.stdout
    assert "our-model" in keel(home, "prices", "show").stdout
