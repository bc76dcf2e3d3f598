"""In-process metrics rendered in the Prometheus text format (no client library needed)."""

from __future__ import annotations

import bisect
from collections import defaultdict

BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


class Metrics:
    def __init__(self) -> None:
        self.calls: dict[tuple[str, str, str], int] = defaultdict(int)  # (operation, alias, status)
        self.tokens: dict[tuple[str, str], int] = defaultdict(int)  # (alias, direction)
        self.cost: dict[str, float] = defaultdict(float)
        self.latency: dict[str, list[int]] = {}
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.attempt_errors: dict[tuple[str, str], int] = defaultdict(int)  # (deployment, error type)
        self.http_errors: dict[tuple[str, int], int] = defaultdict(int)  # (operation, status)

    def observe(
        self,
        operation: str,
        alias: str,
        status: str,
        latency_ms: float,
        input_tokens: int,
        output_tokens: int,
        cost: float | None,
    ) -> None:
        self.calls[(operation, alias, status)] += 1
        self.tokens[(alias, "input")] += input_tokens
        self.tokens[(alias, "output")] += output_tokens
        if cost:
            self.cost[alias] += cost
        buckets = self.latency.setdefault(alias, [0] * (len(BUCKETS_MS) + 1))
        buckets[bisect.bisect_left(BUCKETS_MS, latency_ms)] += 1
        self.latency_sum[alias] += latency_ms

    def render(
        self,
        gauges: dict[str, tuple[str, float]],
        series: dict[str, tuple[str, list[tuple[dict[str, str], float]]]] | None = None,
    ) -> str:
        """The counters above, then ``gauges`` (one value each) and ``series`` (gauges with labels)."""
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        head("keel_requests_total", "counter", "Calls served, by operation, model alias and status.")
        for (op, alias, status), n in sorted(self.calls.items()):
            out.append(f'keel_requests_total{{operation="{op}",model="{alias}",status="{status}"}} {n}')
        head("keel_tokens_total", "counter", "Tokens as reported by providers.")
        for (alias, direction), n in sorted(self.tokens.items()):
            out.append(f'keel_tokens_total{{model="{alias}",direction="{direction}"}} {n}')
        head("keel_cost_usd_total", "counter", "Cost in USD from the price table and provider usage.")
        for alias, usd in sorted(self.cost.items()):
            out.append(f'keel_cost_usd_total{{model="{alias}"}} {usd:.8f}')
        head("keel_attempt_errors_total", "counter", "Failed attempts by deployment and error class.")
        for (dep, err), n in sorted(self.attempt_errors.items()):
            out.append(f'keel_attempt_errors_total{{deployment="{dep}",error="{err}"}} {n}')
        head("keel_http_errors_total", "counter", "Error responses, by operation (chat, embeddings, http) and status.")
        for (op, code), n in sorted(self.http_errors.items()):
            out.append(f'keel_http_errors_total{{operation="{op}",status="{code}"}} {n}')
        head("keel_request_latency_ms", "histogram", "Call latency in milliseconds.")
        for alias, buckets in sorted(self.latency.items()):
            running = 0
            for bound, n in zip((*BUCKETS_MS, "+Inf"), buckets, strict=True):
                running += n
                out.append(f'keel_request_latency_ms_bucket{{model="{alias}",le="{bound}"}} {running}')
            out.append(f'keel_request_latency_ms_sum{{model="{alias}"}} {self.latency_sum[alias]:.3f}')
            out.append(f'keel_request_latency_ms_count{{model="{alias}"}} {running}')
        for name, (text, value) in sorted(gauges.items()):
            head(name, "gauge", text)
            out.append(f"{name} {value:g}")
        for name, (text, rows) in sorted((series or {}).items()):
            head(name, "gauge", text)
            for labels, value in rows:
                shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                out.append(f"{name}{{{shown}}} {value:g}")
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    """A label value as the exposition format wants it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
