"""Twenty reviewers on one queue of 500 items, over real HTTP: no item claimed twice, no decision lost.

    python bench/review/claims.py                 # SQLite (one keel serve) and Postgres (two replicas)
    python bench/review/claims.py --items 2000 --reviewers 40

500 review items are queued in the store; then 20 reviewers (threads, each its own HTTP client and
name) loop ``POST /v1/review/queues/support/claim`` → ``POST /v1/review/items/{id}/decision`` until
the queue is empty. On Postgres they are spread over two ``keel serve`` replicas sharing the store.
Counted: items more than one reviewer was given (double claims, target 0), decisions answered 200
that the store does not hold, or items left undecided (lost decisions, target 0), 409s, and the
throughput. Then a hot item: all reviewers claim the same fresh item at once, 25 times — each time
exactly one may win.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from keel.store import Store
from keel.store.engines import open_postgres
from keel.store.reviews import NewItem
from keel.store.sqlite import db_path
from keel.testing.postgres_server import PostgresServer
from keel.testing.processes import serve_keel, stop_keel

console = Console(width=130)
CONFIG = "review: {{queues: {{support: {{}}, hot: {{}}}}, claim_minutes: 5}}\njobs: {{workers: 1}}\n{store}"


def item(i: int, queue: str = "support") -> NewItem:
    return NewItem(tenant="default", queue=queue, trace_id=uuid.uuid4().hex, mode="after",
                   view={"answer": f"answer {i}"}, due=time.time() + 3600, feature="support_answer",
                   confidence=(i % 10) / 10)  # fmt: skip


def run(engine: str, items: int, reviewers: int, tmp: Path, pg: PostgresServer | None) -> dict[str, Any]:
    home = tmp / engine
    home.mkdir()
    url = pg.database() if pg is not None else None
    store_line = 'store: {backend: postgres, url: {"$env": "KEEL_PG_URL"}}\n' if url else ""
    env = {**os.environ, "KEEL_PG_URL": url} if url else dict(os.environ)
    config = home / "keel.yaml"
    config.write_text(CONFIG.format(store=store_line))
    opener = (lambda: Store(open_postgres(url))) if url else (lambda: Store.at(db_path(home)))
    with opener() as store:
        for i in range(items):
            store.reviews.add(item(i))
        hot = [store.reviews.add(item(-1, "hot"))[0].id for _ in range(25)]
        key, _ = store.keys.create("default", "bench", role="reviewer")
    servers = [serve_keel(config, home, env) for _ in range(2 if url else 1)]
    given: list[tuple[str, str]] = []  # (item, reviewer) for every claim answered 200
    decided: list[str] = []
    conflicts = Counter[str]()
    lock = threading.Lock()

    def reviewer(n: int) -> None:
        base = servers[n % len(servers)][1]
        headers = {"authorization": f"Bearer {key}", "x-keel-user": f"reviewer-{n}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            while True:
                r = client.post("/review/queues/support/claim")
                if r.status_code == 404:
                    return
                if r.status_code != 200:
                    with lock:
                        conflicts[f"claim {r.status_code}"] += 1
                    continue
                got = r.json()["id"]
                with lock:
                    given.append((got, f"reviewer-{n}"))
                d = client.post(f"/review/items/{got}/decision", json={"action": "approve", "reason": f"r{n}"})
                with lock:
                    if d.status_code == 200:
                        decided.append(got)
                    else:
                        conflicts[f"decision {d.status_code}"] += 1

    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=reviewer, args=(n,)) for n in range(reviewers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        winners = []
        for hot_id in hot:  # every reviewer at one fresh item at once
            barrier, wins = threading.Barrier(reviewers), []

            def grab(n: int, target: str = hot_id, gate: threading.Barrier = barrier, out: list[int] = wins) -> None:
                base = servers[n % len(servers)][1]
                headers = {"authorization": f"Bearer {key}", "x-keel-user": f"hot-{n}"}
                with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                    gate.wait()
                    if client.post(f"/review/items/{target}/claim").status_code == 200:
                        out.append(n)

            racers = [threading.Thread(target=grab, args=(n,)) for n in range(reviewers)]
            for t in racers:
                t.start()
            for t in racers:
                t.join()
            winners.append(len(wins))
    finally:
        stop_keel(servers)
    with opener() as store:
        rows = store.db.all("SELECT id, status, reviewer FROM review_items WHERE breached = 0 AND queue = 'support'")
        feedback = int(
            store.db.scalar(
                "SELECT count(*) FROM feedback f JOIN review_items r ON r.trace_id = f.trace_id "
                "WHERE f.name = 'review' AND r.queue = 'support'"
            )
        )
    status = {r["id"]: r["status"] for r in rows}
    per_item = Counter(i for i, _ in given)
    lost = [i for i in decided if status.get(i) != "decided"] + [i for i, s in status.items() if s != "decided"]
    return {
        "engine": engine + (" (2 replicas)" if url else ""),
        "items": items,
        "claims": len(given),
        "double": sum(1 for n in per_item.values() if n > 1),
        "decided": len(decided),
        "lost": len(lost),
        "feedback": feedback,
        "conflicts": dict(conflicts),
        "per_s": len(decided) / seconds,
        "hot": winners,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--reviewers", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="keel-claims-"))
    columns = ("engine", "items", "claims", "double claims", "decided", "lost decisions", "feedback rows", "409s",
               "decisions/s", "hot item: winners per race")  # fmt: skip
    table = Table(*columns, title=f"{args.reviewers} reviewers, one queue")
    rows = [run("sqlite", args.items, args.reviewers, tmp, None)]
    with PostgresServer(tmp / "pg") as pg:
        rows.append(run("postgres", args.items, args.reviewers, tmp, pg))
    for r in rows:
        hot = Counter(r["hot"])
        table.add_row(r["engine"], str(r["items"]), str(r["claims"]), str(r["double"]), str(r["decided"]),
                      str(r["lost"]), str(r["feedback"]), str(sum(r["conflicts"].values())), f"{r['per_s']:.0f}",
                      ", ".join(f"{k} winner × {v}" for k, v in sorted(hot.items())))  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
