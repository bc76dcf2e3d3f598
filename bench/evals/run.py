"""How fast the eval runner is when the model is not the bottleneck: a 200-case suite (ticket triage →
JSON) on the scripted provider, with checks that need no model (equals, contains, regex, is-json,
json-schema, levenshtein, latency, cost, not-refusal). Target: ≤ 10 s on 2 cores.

    python bench/evals/run.py                 # in process and through the CLI, 3 runs each
    python bench/evals/run.py --cases 1000

Timed: ``run_suite`` in process (every case through the feature pipeline, checks, summary) with the
result cache off; the same with the cache warm (every case replayed); and ``keel eval`` as CI runs
it — a fresh process (imports, config, store, the run, the gate, JUnit) — cold and replayed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.evals.runner import ResultCache, run_suite
from keel.evals.suite import load_suite
from keel.features.pipeline import FeaturePipeline
from keel.gateway.runtime import build_service, close_service
from keel.store import Store, db_path
from keel.testing import Reply, ScriptedProvider
from keel.types import ChatRequest

console = Console(width=140)
CONFIG = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"
PROMPT = """---
description: Triage a support ticket
params: {max_tokens: 120}
inputs:
  ticket: {type: str}
---
[system]
Classify the ticket. Reply with JSON: {"team": billing|api|account|other, "urgent": bool}.
[user]
{{ ticket }}
"""
SCHEMA = {
    "type": "object",
    "properties": {"team": {"enum": ["billing", "api", "account", "other"]}, "urgent": {"type": "boolean"}},
    "required": ["team", "urgent"],
}
TOPICS = {
    "billing": ["I was charged twice for {x}", "Refund for invoice {x} please", "My card was declined on {x}"],
    "api": ["The API returns 429 on {x}", "Webhook {x} never arrives", "401 with key {x}"],
    "account": ["Cannot reset my password for {x}", "Please delete account {x}", "Add {x} to our team"],
}


def triage(ticket: str) -> dict[str, Any]:
    """The honest fake model: keyword rules (so some cases are wrong, as a model's would be)."""
    low = ticket.lower()
    team = next(
        (t for t, words in [("billing", ["charged", "refund", "card"]), ("api", ["api", "webhook", "401"]),
                            ("account", ["password", "delete", "team"])] if any(w in low for w in words)),
        "other",
    )  # fmt: skip
    return {"team": team, "urgent": "urgent" in low or "down" in low}


def write_project(root: Path, cases: int) -> None:
    for folder in ("features", "prompts", "evals"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "triage.md").write_text(PROMPT)
    (root / "features" / "triage.yaml").write_text("prompt: triage\nmodel: m\n")
    (root / "keel.yaml").write_text(CONFIG)
    rng = random.Random(7)
    lines = [
        "feature: triage",
        "checks:",
        "  - {type: is-json}",
        f"  - {{type: json-schema, value: {orjson.dumps(SCHEMA).decode()}}}",
        "  - {type: not-refusal}",
        "  - {type: latency, max_ms: 5000}",
        "  - {type: cost, max_usd: 0.01}",
        "cases:",
    ]
    for i in range(cases):
        team = rng.choice([*TOPICS, "account"])
        ticket = rng.choice(TOPICS[team]).format(x=f"order {rng.randint(1000, 9999)}")
        if team != "billing" and rng.random() < 0.15:
            ticket = "Following our refund last week: " + ticket  # the keyword model misroutes these
        if rng.random() < 0.2:
            ticket += " - urgent, production is down"
        team_check = f'{{type: contains, value: \'"team":"{team}"\'}}'
        lines += [
            f"  - id: t{i:04d}",
            f"    inputs: {{ticket: {orjson.dumps(ticket).decode()}}}",
            f"    tags: [{team}]",
            f"    checks: [{team_check}, {{type: regex, value: '\"urgent\":(true|false)'}},"
            f" {{type: levenshtein, value: '{orjson.dumps(triage(ticket)).decode()}', threshold: 0.5}}]",
        ]
    lines.append("gate: {min_pass_rate: 0.5}")
    (root / "evals" / "triage.yaml").write_text("\n".join(lines) + "\n")


async def in_process(root: Path, home: Path, repeats: int) -> dict[str, list[float]]:
    settings = settings_from_yaml(parse_yaml(CONFIG, "bench.yaml"))
    service = build_service(settings, home)
    provider = service.gateway.adapters["d"]
    assert isinstance(provider, ScriptedProvider)

    def respond(req: ChatRequest) -> Reply:
        ticket = str(req.messages[-1]["content"])
        return Reply(orjson.dumps(triage(ticket)).decode())

    provider.responder = respond
    store = Store.at(db_path(home))
    pipeline = FeaturePipeline(service, root, store)
    suite = load_suite(root / "evals" / "triage.yaml")
    times: dict[str, list[float]] = {"cold": [], "replayed": []}
    try:
        for _ in range(repeats):
            store.db.run("DELETE FROM eval_cache")
            cache = ResultCache(store.evals)
            for kind in ("cold", "replayed"):
                t0 = time.perf_counter()
                run = await run_suite(pipeline, suite, concurrency=8, cache=cache)
                times[kind].append(time.perf_counter() - t0)
                assert run.summary.cases == len(suite.spec.cases) and run.summary.errors == 0
                if kind == "replayed":
                    assert run.summary.cached == run.summary.cases
        times["pass rate"] = [run.summary.pass_rate]
    finally:
        await close_service(service)
    return times


def through_cli(root: Path, home: Path, repeats: int) -> dict[str, list[float]]:
    env = {**os.environ, "KEEL_HOME": str(home)}
    env.pop("KEEL_CONFIG", None)
    command = [sys.executable, "-m", "keel", "eval", "triage", "--root", str(root), "-c", str(root / "keel.yaml"),
               "--concurrency", "8", "--junit", str(root / "junit.xml")]  # fmt: skip
    times: dict[str, list[float]] = {"cold": [], "replayed": []}
    for _ in range(repeats):
        for kind, extra in (("cold", ["--no-cache"]), ("replayed", [])):
            t0 = time.perf_counter()
            done = subprocess.run([*command, *extra], capture_output=True, text=True, env=env, check=False)
            times[kind].append(time.perf_counter() - t0)
            if done.returncode not in (0, 100):
                raise SystemExit(f"keel eval failed ({done.returncode}): {done.stdout[-800:]}{done.stderr[-800:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "project", Path(tmp) / "home"
        write_project(root, args.cases)
        console.print(f"[bold]{args.cases}-case suite[/bold], 9 checks per case, scripted model, concurrency 8")
        inner = asyncio.run(in_process(root, home, args.repeats))
        outer = through_cli(root, home, args.repeats)
    table = Table("measure", "median s", "runs (s)", "cases/s", "target", title="eval runner speed")
    for label, values in (
        ("run_suite, cache off", inner["cold"]),
        ("run_suite, all replayed", inner["replayed"]),
        ("keel eval (new process), cache off", outer["cold"]),
        ("keel eval (new process), replayed", outer["replayed"]),
    ):
        median = statistics.median(values)
        target = "≤ 10 s" if "cache off" in label else ""
        shown = ", ".join(f"{v:.2f}" for v in values)
        table.add_row(label, f"{median:.2f}", shown, f"{args.cases / median:.0f}", target)
    console.print(table)
    rate = inner["pass rate"][0]
    console.print(f"pass rate of the fake triage model: {rate:.1%} (tickets mentioning a refund in passing go astray)")


if __name__ == "__main__":
    main()
