"""HTTP in one place: pooled clients, SSE framing, and transport errors mapped to the error tree."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from keel.errors import BadUpstreamResponse, ProviderError, UpstreamTimeout, UpstreamUnavailable


def make_client(base_url: str, *, connect_timeout: float, headers: dict[str, str]) -> httpx.AsyncClient:
    """One pooled client per deployment. Read timeouts belong to the Timeout wrapper, not here."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(None, connect=connect_timeout),
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=30),
        http2=False,
    )


def transport_error(exc: httpx.HTTPError, provider: str) -> ProviderError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"{provider}: {type(exc).__name__}", provider=provider)
    return UpstreamUnavailable(f"{provider}: connection failed ({type(exc).__name__}: {exc})", provider=provider)


def require_content_type(response: httpx.Response, expected: str, provider: str) -> None:
    ctype = response.headers.get("content-type", "")
    if expected not in ctype:
        raise BadUpstreamResponse(
            f"{provider} answered with content type {ctype!r}, expected {expected!r}",
            provider=provider,
            status=response.status_code,
        )


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str | None, bytes]]:
    """Yield ``(event, data)`` per server-sent event. Handles \\n and \\r\\n framing."""
    buffer = b""
    async for raw in response.aiter_bytes():
        buffer += raw.replace(b"\r\n", b"\n") if b"\r" in raw else raw
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            block, buffer = buffer[:end], buffer[end + 2 :]
            event: str | None = None
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode("utf-8", "replace")
            if data:
                yield event, b"\n".join(data)
    if buffer.strip():
        raise BadUpstreamResponse("stream ended inside an unterminated event")
