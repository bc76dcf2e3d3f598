"""Jobs and a batch survive SIGKILL: nothing lost, nothing shown or charged twice.

One ``keel serve`` (the API, running no jobs) and two ``keel worker`` processes share the embedded
store; the upstream is the fault server answering each call after 300 ms. 1,000 feature jobs and a
1,000-line batch (through the official ``openai`` SDK) are queued, and every 5 s one worker —
alternately — is killed with SIGKILL and started again, until all are done. Then:

- **lost**: feature jobs that did not succeed; batch lines missing from the output file;
- **shown twice**: a job with more than one feature trace row, a custom_id twice in the output;
- **charged twice**: a batch whose settled cost differs from the sum of its lines' (each line
  counted once); for feature jobs, how many model calls a kill interrupted and were run again
  (each interrupted call is on its own trace row as ``interrupted``, priced at its worst case: the
  provider may have billed it — counted once, never twice);
- **recovery**: for each kill, the time until every job the killed worker held ran again on the
  other worker (target: the lease, 3 s here, plus 2 s).

    python bench/jobs/durability.py [--jobs 1000] [--lines 1000] [--kill-every 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from keel.store import Store
from keel.store.engines import open_sqlite
from keel.store.keys import Keys
from keel.store.sqlite import db_path
from keel.testing import FaultServer
from keel.testing.processes import serve_keel, stop_keel

LEASE = 3.0
CONFIG = """project_root: '{root}'
deployments:
  up: {{provider: openai, model: gpt-4o-mini, base_url: '{url}', batch: {{discount: 0.5, max_concurrency: 8}}}}
models:
  up: {{deployments: [up]}}
default_model: up
jobs: {{workers: {workers}, lease_s: {lease}, max_attempts: 5}}
budgets:
  daily: {{usd: 1000, period: day}}
"""


def project(root: Path) -> None:
    (root / "features").mkdir(parents=True)
    (root / "prompts").mkdir()
    (root / "prompts" / "greet.md").write_text("---\ninputs:\n  name: {type: str}\n---\nGreet {{ name }}")
    (root / "features" / "greet.yaml").write_text("prompt: greet\nmodel: up\n")


def start_worker(cfg: Path, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KEEL_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "keel", "worker", "-c", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--kill-every", type=float, default=5.0)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the upstream takes per call")
    args = parser.parse_args()
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as t, FaultServer(latency=args.latency) as upstream:
        tmp = Path(t)
        home, root = tmp / "home", tmp / "project"
        project(root)
        api_cfg, worker_cfg = tmp / "api.yaml", tmp / "worker.yaml"
        api_cfg.write_text(CONFIG.format(root=root, url=upstream.base_url, workers=0, lease=LEASE))
        worker_cfg.write_text(CONFIG.format(root=root, url=upstream.base_url, workers=8, lease=LEASE))
        home.mkdir()
        with Store(open_sqlite(db_path(home))) as setup:
            key = Keys(setup.db).create("acme", "bench")[0]
        api = serve_keel(api_cfg, home, dict(os.environ))
        store = Store(open_sqlite(db_path(home)))
        workers = [start_worker(worker_cfg, home), start_worker(worker_cfg, home)]
        kills: list[tuple[float, int, set[str]]] = []
        waiting: dict[str, tuple[int, float, int]] = {}  # a killed worker's job → (kill, when, its pid)
        back: list[float] = []  # seconds from a kill until each feature job it held ran again
        batch_back: list[float] = []  # the same for the batch's job (it yields to feature jobs)
        try:
            client = openai.OpenAI(base_url=api[1], api_key=key, max_retries=5)
            [
                store.jobs.enqueue("acme", "feature", {"inputs": {"name": f"n{i}"}}, feature="greet")[0].id
                for i in range(args.jobs)
            ]
            rows = [
                {"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions",
                 "body": {"model": "up", "messages": [{"role": "user", "content": f"line {i}"}], "max_tokens": 16}}
                for i in range(args.lines)
            ]  # fmt: skip
            data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
            upload = client.files.create(file=("bench.jsonl", io.BytesIO(data)), purpose="batch")
            batch = client.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            finished = "SELECT count(*) FROM jobs WHERE kind = 'feature' AND status IN ('succeeded', 'failed')"
            with Progress(*columns, console=console, transient=True) as bar:
                jobs_bar = bar.add_task("feature jobs", total=args.jobs)
                lines_bar = bar.add_task("batch lines", total=args.lines)
                last_kill, turn = time.monotonic(), 0
                while True:
                    done_jobs = int(store.db.scalar(finished))
                    b = client.batches.retrieve(batch.id)
                    bar.update(jobs_bar, completed=done_jobs)
                    bar.update(lines_bar, completed=b.request_counts.completed + b.request_counts.failed)
                    if done_jobs >= args.jobs and b.status in ("completed", "failed", "expired", "cancelled"):
                        break
                    if time.monotonic() - last_kill >= args.kill_every:
                        victim = workers[turn % 2]
                        held = {
                            r["id"] for r in store.db.all("SELECT id, worker FROM jobs WHERE status = 'running'")
                            if f":{victim.pid}:" in (r["worker"] or "")
                        }  # fmt: skip
                        victim.send_signal(signal.SIGKILL)
                        victim.wait()
                        kills.append((time.time(), victim.pid, held))
                        for job_id in held:
                            waiting[job_id] = (len(kills) - 1, time.time(), victim.pid)
                        workers[turn % 2] = start_worker(worker_cfg, home)
                        last_kill, turn = time.monotonic(), turn + 1
                    for job_id, (_, at, pid) in list(waiting.items()):
                        row = store.db.one("SELECT kind, status, worker FROM jobs WHERE id = ?", (job_id,))
                        if row is not None and (
                            row["status"] in ("succeeded", "failed")
                            or (row["status"] == "running" and f":{pid}:" not in (row["worker"] or ""))
                        ):
                            (batch_back if row["kind"] == "batch" else back).append(time.time() - at)
                            del waiting[job_id]
                    time.sleep(0.1)
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(timeout=30)
            time.sleep(1.0)
            feature = store.db.all("SELECT id, status, trace_id, attempts FROM jobs WHERE kind = 'feature'")
            lost_jobs = sum(1 for r in feature if r["status"] != "succeeded")
            retried = sum(1 for r in feature if int(r["attempts"]) > 1)
            traces = {r["id"]: int(r["n"]) for r in store.db.all(
                "SELECT id, count(*) AS n FROM traces WHERE operation = 'feature' GROUP BY id")}  # fmt: skip
            shown_twice = sum(1 for r in feature if traces.get(r["trace_id"], 0) > 1)
            missing_rows = sum(1 for r in feature if traces.get(r["trace_id"], 0) == 0)
            interrupted = int(store.db.scalar("SELECT count(*) FROM traces WHERE status = 'interrupted'") or 0)
            b = client.batches.retrieve(batch.id)
            out = (
                [json.loads(x) for x in client.files.content(b.output_file_id).text.splitlines()]
                if b.output_file_id
                else []
            )
            ids = [o["custom_id"] for o in out]
            lost_lines = args.lines - len(set(ids))
            twice = len(ids) - len(set(ids))
            raw = client.get(f"/batches/{batch.id}", cast_to=object)  # Keel's cost_usd beside the OpenAI fields
            kept = store.db.one(
                "SELECT sum(cost_usd) AS c, count(*) AS n FROM batch_lines WHERE batch_id = ?", (batch.id,)
            )
            line_cost = float(kept["c"] or 0) if kept else 0.0
            traced = sum(
                float(store.db.scalar("SELECT cost_usd FROM traces WHERE id = ?", (o["response"]["request_id"],)) or 0)
                for o in out
            )  # a line whose journal end record died with its worker stays `interrupted` at worst case here
            batch_job = store.jobs.get(b.job_id or "", tenant=None) if getattr(b, "job_id", None) else None  # type: ignore[attr-defined]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
            stop_keel([api])
        table = Table(title=f"SIGKILL every {args.kill_every:g} s: {len(kills)} kills, lease {LEASE:g} s")
        table.add_column("")
        table.add_column("figure", justify="right")
        table.add_column("target", justify="right")
        table.add_row("feature jobs lost (not succeeded)", f"{lost_jobs} of {args.jobs}", "0")
        table.add_row("feature jobs shown twice (two run rows)", str(shown_twice), "0")
        table.add_row("feature jobs without their run row", str(missing_rows), "0")
        table.add_row("feature jobs run again after a kill", str(retried), "—")
        table.add_row("calls a kill interrupted (priced once, worst case)", str(interrupted), "—")
        table.add_row("batch", f"{b.status}", "completed")
        table.add_row("batch lines lost", f"{lost_lines} of {args.lines}", "0")
        table.add_row("batch lines shown twice", str(twice), "0")
        cost = raw.get("cost_usd") if isinstance(raw, dict) else None  # type: ignore[union-attr]
        table.add_row("batch cost vs its kept lines' (each once)", f"${cost or 0:.6f} vs ${line_cost:.6f}", "equal")
        table.add_row("the same lines' trace rows (recovery's worst case)", f"${traced:.6f}", "≥ kept")
        table.add_row("batch job attempts", str(batch_job.attempts if batch_job else "?"), "—")
        if back:
            table.add_row(
                "a killed worker's feature jobs running again (median / max)",
                f"{statistics.median(back):.2f} s / {max(back):.2f} s",
                f"≤ {LEASE + 2:g} s",
            )
        if batch_back:
            table.add_row(
                "the batch's job running again (median / max)",
                f"{statistics.median(batch_back):.2f} s / {max(batch_back):.2f} s",
                "after feature jobs",
            )
        console.print(table)
        store.close()


if __name__ == "__main__":
    main()
