"""Assemble a running gateway from settings: adapters, wrappers, prices, trace writer, tracer."""

from __future__ import annotations

import asyncio
import logging
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
    chosen: Tracer = tracer or (OTelTracer() if tcfg.otel else NullTracer())
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


async def close_service(service: GatewayService) -> None:
    await service.gateway.aclose()
    if service.admission is not None:
        await service.admission.aclose()
    if service.writer is not None:
        service.writer.close()
    journal = service.recorder.journal
    if journal is not None:  # rows the writer could not store stay journaled for the next start
        journal.close(keep=service.writer is not None and service.writer.pending > 0)
