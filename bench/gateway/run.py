"""Gateway overhead bench: the same mock upstream direct, through Keel, and through LiteLLM's proxy.

One invocation runs every target at concurrency 1, 16 and 64, streamed and not, with wrk as the
load generator, and prints requests/s, p50/p99 latency, added latency, CPU ms per request (and per
streamed chunk), and RSS. Keel runs its production path: API-key auth, tracing to SQLite, cost.

    python bench/gateway/run.py                 # everything (installs LiteLLM into bench/.venv-litellm)
    python bench/gateway/run.py --skip-litellm  # Keel vs direct only
    git worktree add /tmp/base REV && python bench/gateway/run.py --skip-litellm --baseline-src /tmp/base/src
                                                # and Keel at REV beside it, in the same run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
LITELLM_VERSION = "1.106.2"  # the version the issue measured; 1.107.0 was a compromised release
console = Console(width=170)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60, headers: dict[str, str] | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (LiteLLM's workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid, *children(pid)]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
    kids = [int(x) for x in out]
    return kids + [g for k in kids for g in children(k)]


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


@dataclass
class Target:
    name: str
    url: str
    pid: int | None
    headers: dict[str, str] = field(default_factory=dict)
    model: str = "m"
    idle_rss: float = 0.0


@dataclass
class Result:
    rps: float
    p50: float
    p99: float
    cpu_ms: float | None
    errors: int


LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
%s
"""


def run_wrk(target: Target, concurrency: int, stream: bool, duration: float) -> Result:
    body = json.dumps(
        {
            "model": target.model,
            "stream": stream,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Say something useful about gateways."}],
        }
    )
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in target.headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA % (body, headers))
        script = fh.name
    before = cpu_seconds(target.pid) if target.pid else None
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            script,
            f"{target.url}/chat/completions",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = cpu_seconds(target.pid) if target.pid else None
    os.unlink(script)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(errors_match.group(1)) if errors_match else 0
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    cpu = (after - before) * 1000 / total if before is not None and after is not None and total else None
    return Result(rps, percentile(out, "50%"), percentile(out, "99%"), cpu, errors)


def percentile(out: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)", out, re.M)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def ttft(target: Target, runs: int = 30) -> float:
    """Median time to first content chunk, sequential requests, in ms."""
    body = {
        "model": target.model,
        "stream": True,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say something useful about gateways."}],
    }
    samples = []
    with httpx.Client(timeout=30) as client:
        for _ in range(runs):
            start = time.perf_counter()
            with client.stream("POST", f"{target.url}/chat/completions", json=body, headers=target.headers) as r:
                first = None
                for line in r.iter_lines():
                    if first is None and '"content":"token' in line.replace(" ", ""):
                        first = (time.perf_counter() - start) * 1000
                if first is not None:
                    samples.append(first)
    return statistics.median(samples)


def start(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)


def ensure_litellm() -> Path | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    console.print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} …")
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    result = subprocess.run(
        [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=False
    )
    return exe if result.returncode == 0 and exe.exists() else None


def start_keel(name: str, src: Path | None, cfg: Path, work: Path) -> tuple[subprocess.Popen[bytes], Target]:
    """``keel serve`` on its production path; ``src``: another checkout's ``src`` (a baseline commit)."""
    port = free_port()
    env = {"KEEL_HOME": str(work / f"home-{name}")}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    keel_bin = str(Path(sys.executable).parent / "keel")
    key = subprocess.run(
        [keel_bin, "keys", "create", "--tenant", "bench"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    cmd = [keel_bin, "serve", "--port", str(port), "-c", str(cfg), "--no-warm"]
    keel = start(cmd, env=env, log=work / f"{name}.log")
    wait_http(f"http://127.0.0.1:{port}/healthz")
    time.sleep(1)
    target = Target(name, f"http://127.0.0.1:{port}/v1", keel.pid, {"Authorization": f"Bearer {key}"})
    target.idle_rss = rss_mb(keel.pid)
    return keel, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="a second Keel from another checkout's src/ (e.g. a worktree at the commit before a refactor)",
    )
    parser.add_argument("--words", type=int, default=40, help="words in the mock's reply (chunks per stream)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="keel-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_port = free_port()
        upstream = start(
            [sys.executable, str(HERE / "mock_upstream.py"), "--port", str(up_port), "--words", str(args.words)]
        )
        procs.append(upstream)
        up_url = f"http://127.0.0.1:{up_port}/v1"
        wait_http(f"{up_url}/models")
        targets = [Target("direct", up_url, upstream.pid)]

        cfg = work / "keel.yaml"
        cfg.write_text(
            f"deployments:\n  up: {{provider: openai, model: gpt-4o-mini, base_url: '{up_url}',"
            " max_concurrency: 1024, max_queue: 4096}\nmodels:\n  m: {deployments: [up]}\n"
        )
        keels = [("keel", None)]
        if args.baseline_src is not None:
            keels.append(("keel@base", args.baseline_src.resolve()))
        for name, src in keels:
            proc, target = start_keel(name, src, cfg, work)
            procs.append(proc)
            targets.append(target)

        if not args.skip_litellm:
            exe = ensure_litellm()
            if exe is None:
                console.print("[yellow]LiteLLM could not be installed; its rows are skipped[/yellow]")
            else:
                lite_port = free_port()
                master = "sk-" + os.urandom(24).hex()
                lcfg = work / "litellm.yaml"
                lcfg.write_text(
                    "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o-mini\n"
                    f"      api_base: {up_url}\n      api_key: sk-bench\n"
                    "litellm_settings:\n  callbacks: []\n  success_callback: []\n  failure_callback: []\n"
                    "  telemetry: false\n"
                    f"general_settings:\n  master_key: {master}\n"
                )
                lite = start(
                    [str(exe), "--config", str(lcfg), "--port", str(lite_port), "--num_workers", "1"],
                    env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                    log=work / "litellm.log",
                )
                procs.append(lite)
                wait_http(f"http://127.0.0.1:{lite_port}/health/liveliness", timeout=180)
                time.sleep(2)
                targets.append(
                    Target(
                        "litellm",
                        f"http://127.0.0.1:{lite_port}/v1",
                        lite.pid,
                        {"Authorization": f"Bearer {master}"},
                        idle_rss=rss_mb(lite.pid),
                    )
                )

        results: dict[tuple[str, bool, int], Result] = {}
        for target in targets:  # warm every path once
            run_wrk(target, 4, False, 2)
            run_wrk(target, 4, True, 2)
        for stream in (False, True):
            for c in levels:
                for target in targets:
                    results[(target.name, stream, c)] = run_wrk(target, c, stream, args.duration)
                    r = results[(target.name, stream, c)]
                    console.print(
                        f"  {target.name:8} stream={stream!s:5} c={c:<3} {r.rps:9.0f} req/s "
                        f"p50 {r.p50:7.2f} ms p99 {r.p99:7.2f} ms errors {r.errors}",
                        style="dim",
                    )
        ttfts = {t.name: ttft(t) for t in targets}
        report(targets, results, levels, ttfts, args.words)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def report(
    targets: list[Target],
    results: dict[tuple[str, bool, int], Result],
    levels: list[int],
    ttfts: dict[str, float],
    words: int,
) -> None:
    chunks = words + 3  # role chunk + one per word + finish chunk + usage chunk
    table = Table(title=f"gateway overhead on {os.cpu_count()} cores (wrk -t1; mock upstream; medians of one run)")
    for col in (
        "target",
        "stream",
        "conc.",
        "req/s",
        "p50 ms",
        "p99 ms",
        "added p50 ms",
        "CPU ms/req",
        "CPU ms/chunk",
        "errors",
    ):
        table.add_column(col, justify="right")
    for stream in (False, True):
        for c in levels:
            base = results[("direct", stream, c)]
            for t in targets:
                r = results[(t.name, stream, c)]
                added = "" if t.name == "direct" else f"{r.p50 - base.p50:+.2f}"
                cpu = f"{r.cpu_ms:.3f}" if r.cpu_ms is not None else "—"
                per_chunk = f"{r.cpu_ms / chunks:.4f}" if stream and r.cpu_ms is not None else ""
                table.add_row(
                    t.name,
                    "yes" if stream else "no",
                    str(c),
                    f"{r.rps:,.0f}",
                    f"{r.p50:.2f}",
                    f"{r.p99:.2f}",
                    added,
                    cpu,
                    per_chunk,
                    str(r.errors),
                )
        table.add_section()
    console.print(table)
    summary = Table(title="summary against the targets")
    for col in ("measure", "target", *[t.name for t in targets if t.name != "direct"]):
        summary.add_column(col, justify="right")
    gateways = [t for t in targets if t.name != "direct"]
    low = min(levels)  # the target is at concurrency 1; a run without it (--concurrency 16) says its lowest
    direct = results[("direct", False, low)].p50

    def row(label: str, goal: str, values: list[str]) -> None:
        summary.add_row(label, goal, *values)

    added = [f"{results[(t.name, False, low)].p50 - direct:+.2f} ms" for t in gateways]
    row(f"added p50 latency, c={low}", "≤ 0.5 ms" if low == 1 else "—", added)
    if 16 in levels:
        row("req/s at c=16, one worker", "≥ 2,000", [f"{results[(t.name, False, 16)].rps:,.0f}" for t in gateways])
        if any(t.name == "litellm" for t in gateways):
            ratio = results[("keel", False, 16)].rps / max(results[("litellm", False, 16)].rps, 1e-9)
            row("Keel ÷ LiteLLM req/s at c=16", "≥ 15×", [f"{ratio:.1f}×", ""][: len(gateways)])
    row(
        "CPU per streamed chunk (c=16)",
        "≤ 0.05 ms",
        [
            f"{(results[(t.name, True, 16 if 16 in levels else levels[0])].cpu_ms or 0) / chunks:.4f} ms"
            for t in gateways
        ],
    )
    row("added time to first token", "—", [f"{ttfts[t.name] - ttfts['direct']:+.2f} ms" for t in gateways])
    row("idle RSS (no local model)", "≤ 120 MB", [f"{t.idle_rss:.0f} MB" for t in gateways])
    console.print(summary)


if __name__ == "__main__":
    main()
