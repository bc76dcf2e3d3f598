"""Assemble a running gateway from settings: adapters, wrappers, prices, trace writer, tracer."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from keel.config.settings import KeelSettings
from keel.cost.prices import PriceTable
from keel.gateway.admission import Admission, build_admission
from keel.gateway.recording import Recorded
from keel.gateway.recovery import Recovered, recover
from keel.gateway.retry import Sleep
from keel.gateway.router import Gateway
from keel.gateway.service import GatewayService
from keel.providers.base import ProviderFactory
from keel.store import open_database
from keel.store.journal import Journal
from keel.store.writer import BatchWriter
from keel.tracing.otel import OTelTracer
from keel.tracing.tracer import NullTracer, Tracer

log = logging.getLogger("keel.gateway")


def build_service(
    settings: KeelSettings,
    home: Path,
    *,
    factories: dict[str, ProviderFactory] | None = None,
    sleep: Sleep = asyncio.sleep,
    tracer: Tracer | None = None,
) -> GatewayService:
    """The caller owns the result and must ``await close_service(...)`` it."""
    gateway = Gateway(settings, home, factories=factories, sleep=sleep)
    tcfg = settings.tracing
    writer = BatchWriter(
        lambda: open_database(settings, home),
        queue_size=tcfg.queue_size,
        batch_size=tcfg.batch_size,
        flush_interval=tcfg.flush_interval_s,
        retention_days=settings.store.retention_days,
    ).start()
    chosen: Tracer = tracer or tracer_for(settings)
    installed = home / "prices.yaml"  # `keel prices update` puts one here; keel.yaml's prices: wins
    prices = PriceTable.load(settings.prices or (installed if installed.is_file() else None))
    admission = build_admission(settings, home, gateway, prices)
    journal, recovered = _journal(settings, home, admission, writer) if tcfg.journal else (None, Recovered())
    recorder = Recorded(gateway, prices, writer=writer, tracer=chosen, capture_policy=tcfg.capture, journal=journal)
    service = GatewayService(recorder, admission=admission)
    service.recovered = recovered
    return service


def _journal(
    settings: KeelSettings, home: Path, admission: Admission, writer: BatchWriter
) -> tuple[Journal | None, Recovered]:
    """This process's crash journal, after settling what dead processes left in theirs."""
    root = home / "journal"
    try:
        journal = Journal(root, rounds=lambda: writer.rounds)
    except OSError as exc:
        log.warning("no crash journal (%s): calls in flight are not crash-safe", exc)
        return None, Recovered()
    return journal, recover(root, settings, home, admission, writer)


def tracer_for(settings: KeelSettings) -> Tracer:
    """What ``tracing:`` asks for: Keel's own OTLP export, an application's OTel provider, or none."""
    tcfg = settings.tracing
    if tcfg.otlp is not None:
        headers = {k: v.resolve() for k, v in tcfg.otlp.headers.items() if v is not None}
        return OTelTracer.exporting(
            tcfg.otlp.endpoint,
            headers=headers,
            capture_content=tcfg.otlp.capture_content,
            timeout_s=tcfg.otlp.timeout_s,
        )
    if not tcfg.otel:
        return NullTracer()
    from opentelemetry import trace as otel_trace

    if not isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider):
        return OTelTracer()  # the application installed an SDK provider: its exporters, its sampling
    if any(os.environ.get(v) for v in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) or (
        os.environ.get("OTEL_TRACES_EXPORTER", "").strip() == "console"
    ):
        return OTelTracer.exporting(None)
    log.warning(
        "tracing.otel is on but nothing exports: set tracing.otlp.endpoint, OTEL_EXPORTER_OTLP_ENDPOINT, "
        "or install an OpenTelemetry SDK TracerProvider in your application"
    )
    return OTelTracer()


async def close_service(service: GatewayService) -> None:
    await service.gateway.aclose()
    if service.admission is not None:
        await service.admission.aclose()
    if service.writer is not None:
        service.writer.close()
    shutdown = getattr(service.tracer, "shutdown", None)
    if shutdown is not None:  # flush the spans and metrics still queued for the collector
        await asyncio.to_thread(shutdown)
    journal = service.recorder.journal
    if journal is not None:  # rows the writer could not store stay journaled for the next start
        journal.close(keep=service.writer is not None and service.writer.pending > 0)
