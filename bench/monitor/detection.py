"""Drift detection on a simulated week of traffic: how soon each injected change alerts, and how
often a stable week alerts for nothing.

    python bench/monitor/detection.py                  # ~4 min on 2 cores
    python bench/monitor/detection.py --weeks 3        # fewer stable weeks (quicker)

The runs are real: the demo project's ``support_answer`` (handbook retrieval, the ``grounded`` and
``citations`` output guards, and ``monitors: {quality: {sample: 0.1, checks: [grounded], window: 1h,
reference: 7d}}``) answered by the scripted provider, which quotes the sources it is given and
cites them. Three regimes, each a pool of runs through the pipeline (interleaved, so the machine's
load falls on all three alike), with their monitor jobs scored by the real job code and their
traces read by the sweeper's reader:

- **stable**: the golden set's questions, in paraphrase;
- **degraded**: a prompt change (version 2, pinned) after which 15% of answers make claims the
  sources do not hold;
- **shifted**: the same prompt, with 30% of the questions now on a topic the handbook does not
  cover (a silent input shift: nothing errors, the answers are still fluent).

A week at 1 request/s is replayed by drawing each second's run from its regime's pool (the
monitor's own hash sample decides which runs were judged), and compared the way the sweeper does —
``keel.monitor.compare.compare`` on windows read with the store's caps — every 5 minutes after the
change. Reported: the minutes until the first alert, the runs of the new regime in the window then
(and how many were judged), and which signals alerted. Then ``--weeks`` stable weeks, swept every
hour (the window is an hour, so each sweep is a fresh test), count the alerts opened for nothing.
Targets: both changes detected; ≤ 1 false alarm over 10 stable weeks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import shutil
import tempfile
import time
from collections import defaultdict
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import keel.testing  # noqa: F401  (offers the scripted provider to this process)
from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.features.monitoring import MonitorSpec, sampled
from keel.features.pipeline import open_pipeline
from keel.monitor.compare import Sample, compare
from keel.monitor.scoring import KIND, monitor_work
from keel.monitor.sweeper import Monitors
from keel.rag import ingest
from keel.rag.backends import Collections
from keel.store import Store
from keel.store.monitors import LIMIT

console = Console(width=130)
DEMO = Path(__file__).resolve().parents[2] / "src" / "keel" / "demo_project"
MONITOR = "quality"
WATCH = {"sample": 0.1, "checks": ["grounded"], "window": "1h", "reference": "7d", "alert": {"min_samples": 200}}
HOUR, DAY, WEEK = 3600, 86_400, 7 * 86_400
REGIMES = ("stable", "degraded", "shifted")
INPUTS_CAP = 2000  # the store's cap on input vectors per window (keel.store.monitors.inputs)
PARAPHRASES = ("{q}", "Hi, {q}", "{q} Thanks!", "Quick question: {q}", "{q} (asking for my team)", "hello - {q}")
NEW_TOPIC = [
    "How do I pair the Harbor smartwatch app with my phone?",
    "Does Harbor sell a hardware appliance for on-premise racks?",
    "Can I order Harbor branded merchandise for my office?",
    "What is the battery life of the Harbor field scanner?",
    "How do I book a seat at the Harbor annual conference dinner?",
    "Is there a Harbor podcast I can subscribe to?",
    "How do I repair a cracked screen on the Harbor tablet?",
    "Which Harbor coffee blend is served at the lounge?",
    "Can I bring my dog to the Harbor office tour?",
    "How do I return a damaged Harbor hoodie?",
    "What colours does the Harbor desk lamp come in?",
    "How do I calibrate the Harbor warehouse drone?",
]
FABRICATED = [
    "Our partner Zentrix handles this within 2 hours for a flat fee of $49",
    "You must fax a signed form to the compliance office in Geneva first",
    "This is only available to customers on the Platinum Ocean plan since 2019",
    "A regional manager approves it by phone every Thursday at 3pm",
]


def _h(text: str) -> float:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def responder(state: dict[str, Any]) -> Any:
    """The scripted model: quote the first source's opening sentence and cite it — or, in the
    degraded regime, one answer in seven gets a claim the sources do not hold."""

    def answer(req: Any) -> str:
        system = next((m["content"] for m in req.messages if m.get("role") == "system"), "")
        blocks = re.split(r"\n\[\d+\] ", "\n" + system)
        source = blocks[1].split("\n", 1)[1] if len(blocks) > 1 and "\n" in blocks[1] else ""
        lines = [s.strip() for s in re.split(r"(?<=[.!?])\s+", source.replace("\n", " ")) if len(s.split()) >= 5]
        quoted = lines[0] if lines else "Please see the handbook page for the details"
        state["n"] += 1
        if state["regime"] == "degraded" and _h(f"bad{state['n']}") < 0.15:
            return f"{FABRICATED[state['n'] % len(FABRICATED)]} [1]."
        return f"{quoted.rstrip('.')} [1]."

    return answer


def questions(n: int, regime: str, golden: list[str]) -> list[str]:
    out = []
    for i in range(n):
        if regime == "shifted" and _h(f"topic{i}") < 0.3:
            out.append(PARAPHRASES[i % len(PARAPHRASES)].format(q=NEW_TOPIC[i % len(NEW_TOPIC)]))
        else:
            out.append(PARAPHRASES[(i // len(golden)) % len(PARAPHRASES)].format(q=golden[i % len(golden)]))
    return out


@dataclass
class Pool:
    """One regime's runs as arrays: each signal's value per run (NaN where a run has none), the
    judged check per run, and each run's input vector."""

    signals: dict[str, np.ndarray]
    check: np.ndarray  # 1.0 / 0.0 grounded pass, NaN when not scored
    vectors: np.ndarray

    @property
    def size(self) -> int:
        return len(self.vectors)


async def build_pools(tmp: Path, per_regime: int) -> dict[str, Pool]:
    root = tmp / "project"
    shutil.copytree(DEMO, root)
    feature = root / "features" / "support_answer.yaml"
    spec = yaml.safe_load(feature.read_text())
    spec["model"] = "m"
    spec["guards"] = {"output": ["grounded", "citations"]}
    spec["monitors"] = {MONITOR: {**WATCH, "sample": 1.0}}  # the pool scores every run; the replay samples
    feature.write_text(yaml.safe_dump(spec))
    home = tmp / "home"
    config = "deployments:\n  d: {provider: scripted, model: gpt-4o-mini}\nmodels:\n  m: {deployments: [d]}\n"
    settings = settings_from_yaml(parse_yaml(f"project_root: '{root}'\n{config}", "bench"))
    with closing(Collections(settings, home)) as collections:
        ingest(collections.get("handbook", create=True), [root / "handbook"])
    golden = [
        c["inputs"]["question"] for c in yaml.safe_load((root / "evals" / "support_answer.yaml").read_text())["cases"]
    ]
    ids: dict[str, set[str]] = {regime: set() for regime in REGIMES}
    async with open_pipeline(settings, home, root) as pipe:
        provider = pipe.service.gateway.adapters["d"]
        state: dict[str, Any] = {"regime": "stable", "n": 0}
        provider.responder = responder(state)
        store: Store = pipe.store
        prompt = root / "prompts" / "support_answer.md"  # the prompt change behind the degraded regime
        prompt.write_text(prompt.read_text() + "\nAdd anything else you know that may help.\n")
        changed = pipe.registry.record_file(prompt)
        asked = {regime: questions(per_regime, regime, golden) for regime in REGIMES}
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("runs through the pipeline", total=per_regime * len(REGIMES))
            for i in range(per_regime):  # interleaved, so the machine's load falls on every regime alike
                for regime in REGIMES:
                    state["regime"] = regime
                    version = changed if regime == "degraded" else 1
                    result = await pipe.run("support_answer", {"question": asked[regime][i]}, version=version)
                    ids[regime].add(result.trace_id)
                    bar.advance(task)
            assert pipe.service.writer.flush(10.0)
            work = monitor_work(pipe)
            task = bar.add_task("monitor jobs", total=per_regime * len(REGIMES))
            while (job := store.jobs.claim("bench", 60, kinds=[KIND])) is not None:
                result_, cost = await work(job)
                store.jobs.succeed(job, result_, cost_usd=cost)
                bar.advance(task)
        Monitors(store, settings, root).read_traces()
        return {regime: pool_of(store, ids[regime]) for regime in REGIMES}


def pool_of(store: Store, ids: set[str]) -> Pool:
    runs = [r for r in store.monitors.runs("default", "support_answer", 0, 1e12, limit=10**6) if r.trace_id in ids]
    scores = {s.trace_id: s for s in store.monitors.scores("default", "support_answer", 0, 1e12, limit=10**6)}
    names = sorted({k for r in runs for k, v in r.values.items() if isinstance(v, int | float | bool)})
    signals = {n: np.array([float(r.values[n]) if n in r.values else np.nan for r in runs]) for n in names}
    check = np.array([float(scores[r.trace_id].passed) if r.trace_id in scores and scores[r.trace_id].passed is not None
                      else np.nan for r in runs])  # fmt: skip
    vectors = store.db.all("SELECT trace_id, vector FROM monitor_inputs")
    by_id = {v["trace_id"]: np.frombuffer(bytes(v["vector"]), dtype=np.float16).astype(np.float32) for v in vectors}
    return Pool(signals, check, np.vstack([by_id[r.trace_id] for r in runs]))


class Replay(Sample):
    """A window of the simulated timeline, its series gathered straight from the pools' arrays."""

    def __init__(self, parts: list[tuple[Pool, np.ndarray, np.ndarray]]) -> None:
        super().__init__()
        self.parts = parts  # (pool, run indices into it, judged mask)
        vectors = [p.vectors[idx[judged]] for p, idx, judged in parts]
        stacked = np.vstack(vectors) if vectors else np.zeros((0, 384))
        if len(stacked) > INPUTS_CAP:
            stacked = stacked[np.random.default_rng(len(stacked)).choice(len(stacked), INPUTS_CAP, replace=False)]
        self.inputs = stacked if len(stacked) else None

    def series(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = defaultdict(list)
        for pool, idx, judged in self.parts:
            for name, values in pool.signals.items():
                got = values[idx]
                got = got[~np.isnan(got)]
                kind_bool = name in BOOLEAN
                out[name].extend(got.astype(bool).tolist() if kind_bool else got.tolist())
            checks = pool.check[idx[judged]]
            out["check:grounded"].extend((checks[~np.isnan(checks)] == 1.0).tolist())
        return dict(out)


BOOLEAN = {"refusal", "dont_know", "citations_invalid", "fallback", "reask", "found_nothing", "input_flagged",
           "pii_redacted", "error", "cache_hit"}  # fmt: skip


class Timeline:
    """Which regime served each second, and which pool run it drew."""

    def __init__(self, pools: dict[str, Pool], phases: list[tuple[float, str]], seed: int) -> None:
        self.pools, self.phases = pools, phases  # (start second, regime), in order
        self.rng = np.random.default_rng(seed)
        self.draws: dict[str, np.ndarray] = {}
        self.judged: dict[str, np.ndarray] = {}
        end = int(phases[-1][0]) + 2 * WEEK
        for regime in {r for _, r in phases}:
            size = pools[regime].size
            self.draws[regime] = self.rng.integers(0, size, end)
            ids = (f"{seed}:{t}" for t in range(end))
            self.judged[regime] = np.fromiter((sampled(i, WATCH["sample"], MONITOR) for i in ids), bool, end)

    def window(self, start: float, end: float, cap: int | None = None) -> Replay:
        parts = []
        for i, (at, regime) in enumerate(self.phases):
            until = self.phases[i + 1][0] if i + 1 < len(self.phases) else float("inf")
            lo, hi = int(max(start, at)), int(min(end, until))
            if hi <= lo:
                continue
            seconds = np.arange(lo, hi)
            if cap is not None and len(seconds) > cap:  # the store's even sample of a long span
                seconds = np.sort(self.rng.choice(seconds, cap, replace=False))
            parts.append((self.pools[regime], self.draws[regime][seconds], self.judged[regime][seconds]))
        return Replay(parts)


def verdicts(timeline: Timeline, now: float) -> list[Any]:
    window = timeline.window(now - HOUR, now, LIMIT)
    reference = timeline.window(now - HOUR - WEEK, now - HOUR, LIMIT)
    return compare(window, reference, min_samples=WATCH["alert"]["min_samples"], fdr=MonitorSpec().alert.fdr)


def detect(pools: dict[str, Pool], regime: str, seed: int, hours: int = 6) -> dict[str, Any]:
    """Sweep every 5 minutes after the change: when the first alert opened, and when each signal
    first alarmed."""
    change = float(WEEK + DAY)  # a week and a day of stable traffic, then the change
    timeline = Timeline(pools, [(0.0, "stable"), (change, regime)], seed)
    first: dict[str, int] = {}
    alert: dict[str, Any] = {"minutes": None, "runs": None, "judged": None}
    for step in range(1, hours * 12 + 1):
        now = change + step * 300
        for v in verdicts(timeline, now):
            if v.alarming and v.signal.name not in first:
                first[v.signal.name] = step * 5
                if alert["minutes"] is None:
                    judged = int(timeline.judged[regime][int(change) : int(now)].sum())
                    alert = {"minutes": step * 5, "runs": int(now - change), "judged": judged}
    return {**alert, "signals": first}


def false_alarms(pools: dict[str, Pool], weeks: int) -> tuple[int, dict[str, int], int]:
    opened: dict[str, int] = defaultdict(int)
    sweeps = 0
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("stable weeks", total=weeks * 168)
        for week in range(weeks):
            timeline = Timeline(pools, [(0.0, "stable")], 1000 + week)
            open_now: set[str] = set()
            for hour in range(168):
                now = float(WEEK + HOUR + hour * HOUR)
                alarming = {v.signal.name for v in verdicts(timeline, now) if v.alarming}
                for name in alarming - open_now:
                    opened[name] += 1
                open_now = alarming
                sweeps += 1
                bar.advance(task)
    return sum(opened.values()), dict(opened), sweeps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=10, help="stable weeks swept for false alarms")
    parser.add_argument("--pool", type=int, default=300, help="runs through the pipeline per regime")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        pools = asyncio.run(build_pools(Path(tmp), args.pool))
        built = time.perf_counter() - started
    table = Table(
        "regime", "grounded check pass", "grounded guard", "nothing found", "top retrieval", title="the pools"
    )
    for regime, pool in pools.items():
        s = pool.signals
        table.add_row(regime, f"{np.nanmean(pool.check):.1%}", f"{np.nanmean(s['guard:grounded']):.3f}",
                      f"{np.nanmean(s['found_nothing']):.1%}", f"{np.nanmean(s['retrieval_top']):.3f}")  # fmt: skip
    console.print(table)
    console.print(f"{sum(p.size for p in pools.values())} runs through the pipeline in {built:.0f} s")
    title = "detection at 1 request/s (swept every 5 minutes; window 1h against the 7 days before)"
    columns = ("change", "first alert", "new-regime runs then", "of them judged", "each signal's first alarm (median)")
    detected = Table(*columns, title=title)
    for regime, label in (("degraded", "prompt change: 15% ungrounded"), ("shifted", "input shift: 30% new topic")):
        runs = [detect(pools, regime, seed) for seed in range(3)]
        minutes = [r["minutes"] for r in runs if r["minutes"] is not None]
        shown = f"{np.median(minutes):.0f} min (median of {len(minutes)}/3)" if minutes else "not detected in 6 h"
        first = next((r for r in runs if r["minutes"] is not None), runs[0])
        by_signal: dict[str, list[int]] = defaultdict(list)
        for r in runs:
            for name, at in r["signals"].items():
                by_signal[name].append(at)
        signals = sorted(by_signal.items(), key=lambda kv: (-len(kv[1]), np.median(kv[1])))
        listed = ", ".join(f"{name} {np.median(at):.0f} min" + ("" if len(at) == 3 else f" ({len(at)}/3)")
                           for name, at in signals[:7])  # fmt: skip
        detected.add_row(label, shown, str(first["runs"]), str(first["judged"]), listed)
    console.print(detected)
    total, which, sweeps = false_alarms(pools, args.weeks)
    console.print(
        f"false alarms over {args.weeks} stable weeks ({sweeps} hourly sweeps): [bold]{total}[/bold]"
        + (f" — {which}" if which else "")
        + " (target ≤ 1 over 10 weeks)"
    )


if __name__ == "__main__":
    main()
