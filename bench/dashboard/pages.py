"""Dashboard page render time at volume: the store filled with 10k, 100k and 1M trace rows spread
over 30 days (the rows of bench/store/traces.py), then each page fetched 30 times over real HTTP by a
signed-in client. Prints p50/p95 per page and volume. Target: ≤ 300 ms p95 on every page at 1M rows.

    .venv/bin/python bench/dashboard/pages.py                    # embedded (SQLite), ~3 min
    .venv/bin/python bench/dashboard/pages.py --rows 10000,100000
    .venv/bin/python bench/dashboard/pages.py --postgres         # and Postgres (pgserver) beside it
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: bench.store and tests

from bench.store.traces import fill
from tests.conftest import RunningServer

from keel.config import settings_from_yaml
from keel.config.yamlfile import parse_yaml
from keel.server import build_app
from keel.store import Store, open_database

PAGES = [
    ("overview 1h", "/ui/overview?window=1h"),
    ("overview 24h", "/ui/overview"),
    ("overview 30d", "/ui/overview?window=30d"),
    ("overview 30d by model", "/ui/overview?window=30d&by=model"),
    ("overview 30d by user", "/ui/overview?window=30d&by=user"),
    ("overview 30d by tenant, all", "/ui/overview?window=30d&by=tenant&tenant=*"),
    ("traces", "/ui/traces"),
    ("traces, errors of one feature", "/ui/traces?status=error&feature=support"),
    ("traces, one user", "/ui/traces?user=u7"),
    ("traces, cost ≥ $0.0001", "/ui/traces?min_cost=0.0001"),
    ("traces, free text (no match)", "/ui/traces?text=no+such+words"),
    ("a trace", None),
    ("failures 7d", "/ui/failures"),
    ("failures 30d", "/ui/failures?window=30d"),
    ("budgets", "/ui/budgets"),
    ("features", "/ui/features"),
    ("evals", "/ui/evals"),
]
console = Console(width=140)


def measure(settings_text: str, home: Path, rows: int, label: str) -> list[tuple[str, str, float, float]]:
    settings = settings_from_yaml(parse_yaml(settings_text, "bench.yaml"))
    db = open_database(settings, home)
    fill(db, rows, label)
    store = Store(db)
    key, _ = store.keys.create("acme", role="admin")  # admin: the all-tenants split too
    trace_id = store.traces.find(tenant="acme", limit=1)[0].id
    store.close()
    app = build_app(settings, home)
    out = []
    with RunningServer(app) as server, httpx.Client(base_url=server.base_url.removesuffix("/v1"), timeout=60) as client:
        assert client.post("/ui/login", data={"key": key}).status_code in (200, 303)
        for name, path in PAGES:
            url = path or f"/ui/traces/{trace_id}"
            client.get(url)  # warm
            times = []
            for _ in range(30):
                t0 = time.perf_counter()
                r = client.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, (url, r.status_code, r.text[:200])
            out.append((label, name, statistics.median(times), statistics.quantiles(times, n=20)[18]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="10000,100000,1000000")
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        with tempfile.TemporaryDirectory() as t:
            results += measure("{}", Path(t), rows, f"embedded {rows:,}")
        if args.postgres:
            from keel.testing.postgres_server import PostgresServer

            with PostgresServer() as pg, tempfile.TemporaryDirectory() as t:
                import os

                os.environ["KEEL_BENCH_PG"] = pg.database()
                text = "store: {backend: postgres, url: {$env: KEEL_BENCH_PG}}\n"
                results += measure(text, Path(t), rows, f"postgres {rows:,}")
    table = Table(title="dashboard pages over real HTTP (ms; 30 fetches each)")
    for col in ("store · rows", "page", "p50", "p95", "≤ 300 ms"):
        table.add_column(col)
    for label, name, p50, p95 in results:
        table.add_row(label, name, f"{p50:.1f}", f"{p95:.1f}", "yes" if p95 <= 300 else "[red]no[/red]")
    console.print(table)


if __name__ == "__main__":
    main()
