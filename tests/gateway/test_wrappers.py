"""Each reliability wrapper around the scripted provider: retries, breaker, fallback, timeouts, limits."""

from __future__ import annotations

import asyncio

import pytest

from keel.config.settings import BreakerSettings, RetrySettings
from keel.errors import (
    CircuitOpen,
    ContextWindowExceeded,
    Overloaded,
    RateLimited,
    StreamInterrupted,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from keel.gateway.attempts import RecordAttempts
from keel.gateway.breaker import CircuitBreaker
from keel.gateway.fallback import Fallback
from keel.gateway.limit import ConcurrencyLimit
from keel.gateway.retry import Retry
from keel.gateway.timeout import Timeout
from keel.testing import Reply, ScriptedProvider
from keel.types import ChatRequest


def ask(stream: bool = False) -> ChatRequest:
    return ChatRequest(model="m", messages=[{"role": "user", "content": "hello"}], stream=stream)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def down(name: str = "p") -> UpstreamUnavailable:
    return UpstreamUnavailable("503", provider=name, status=503)


# -- retry -----------------------------------------------------------------------------------------
async def test_retry_recovers_from_transient_faults_with_backoff() -> None:
    provider = ScriptedProvider().enqueue(down(), down(), "finally")
    sleeps = Sleeps()
    retry = Retry(provider, RetrySettings(attempts=3, base_delay_s=0.1, max_delay_s=1), sleep=sleeps)
    assert (await retry.complete(ask())).text == "finally"
    assert len(provider.calls) == 3 and len(sleeps.waits) == 2
    assert all(0 <= w <= 0.2 for w in sleeps.waits)  # full jitter under the capped exponential


async def test_retry_honours_retry_after_and_gives_up_when_it_is_too_long() -> None:
    provider = ScriptedProvider().enqueue(RateLimited("429", retry_after=1.5), "ok")
    sleeps = Sleeps()
    assert (await Retry(provider, RetrySettings(), sleep=sleeps).complete(ask())).text == "ok"
    assert sleeps.waits == [1.5]
    provider.enqueue(RateLimited("429", retry_after=120))
    with pytest.raises(RateLimited):
        await Retry(provider, RetrySettings(max_retry_after_s=30), sleep=sleeps).complete(ask())


async def test_retry_is_bounded_by_attempts_and_deadline() -> None:
    provider = ScriptedProvider().enqueue(*[down() for _ in range(5)])
    with pytest.raises(UpstreamUnavailable):
        await Retry(provider, RetrySettings(attempts=3, base_delay_s=0), sleep=Sleeps()).complete(ask())
    assert len(provider.calls) == 3
    provider = ScriptedProvider().enqueue(RateLimited("429", retry_after=5), "never reached")
    with pytest.raises(RateLimited):  # waiting 5 s would pass the 2 s deadline
        await Retry(provider, RetrySettings(attempts=5, deadline_s=2), sleep=Sleeps()).complete(ask())
    assert len(provider.calls) == 1


@pytest.mark.parametrize(
    "error", [UpstreamRejected("400 bad tool"), ContextWindowExceeded("too long"), CircuitOpen("open")]
)
async def test_retry_never_repeats_what_cannot_succeed(error: Exception) -> None:
    provider = ScriptedProvider().enqueue(error, "unreachable")
    with pytest.raises(type(error)):
        await Retry(provider, RetrySettings(attempts=5), sleep=Sleeps()).complete(ask())
    assert len(provider.calls) == 1


async def test_retry_streams_only_before_the_first_token() -> None:
    provider = ScriptedProvider().enqueue(down(), Reply("one two three"))
    retry = Retry(provider, RetrySettings(base_delay_s=0), sleep=Sleeps())
    assert "".join([c.text async for c in retry.stream(ask(True))]) == "one two three"
    provider.enqueue(Reply("one two three four", fail_after=2, error=down()), "a clean second answer")
    seen: list[str] = []
    with pytest.raises(StreamInterrupted):
        async for chunk in retry.stream(ask(True)):
            seen.append(chunk.text)
    assert "".join(seen) == "one two "  # never spliced with a second answer
    assert len(provider.calls) == 3


# -- circuit breaker -------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_opens_fails_fast_then_probes_and_closes() -> None:
    clock = Clock()
    provider = ScriptedProvider().enqueue(down(), down(), down())
    breaker = CircuitBreaker(provider, BreakerSettings(failures=3, cooldown_s=10), clock=clock)
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable):
            await breaker.complete(ask())
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as info:
        await breaker.complete(ask())
    assert info.value.retry_after == pytest.approx(10)
    assert len(provider.calls) == 3  # failing fast: the upstream was not called
    clock.now += 10
    assert (await breaker.complete(ask())).text.startswith("echo")  # the half-open probe
    assert breaker.state == "closed"


async def test_a_failed_probe_reopens_and_rate_limits_do_not_trip() -> None:
    clock = Clock()
    provider = ScriptedProvider().enqueue(down(), down())
    breaker = CircuitBreaker(provider, BreakerSettings(failures=1, cooldown_s=5), clock=clock)
    with pytest.raises(UpstreamUnavailable):
        await breaker.complete(ask())
    clock.now += 5
    with pytest.raises(UpstreamUnavailable):
        await breaker.complete(ask())
    assert breaker.state == "open" and breaker.opened_at == clock.now
    healthy = CircuitBreaker(
        ScriptedProvider().enqueue(*[RateLimited("429") for _ in range(5)]), BreakerSettings(failures=2), clock=clock
    )
    for _ in range(5):
        with pytest.raises(RateLimited):
            await healthy.complete(ask())
    assert healthy.state == "closed"


async def test_half_open_admits_only_its_probes() -> None:
    clock = Clock()
    provider = ScriptedProvider().enqueue(down(), Reply("slow probe", delay=0.05))
    breaker = CircuitBreaker(provider, BreakerSettings(failures=1, cooldown_s=1, probes=1), clock=clock)
    with pytest.raises(UpstreamUnavailable):
        await breaker.complete(ask())
    clock.now += 1
    probe = asyncio.create_task(breaker.complete(ask()))
    await asyncio.sleep(0.01)
    with pytest.raises(CircuitOpen, match="probe in flight"):
        await breaker.complete(ask())
    assert (await probe).text == "slow probe" and breaker.state == "closed"


# -- fallback --------------------------------------------------------------------------------------
async def test_fallback_moves_down_the_chain_on_configured_classes() -> None:
    first = ScriptedProvider("first").enqueue(RateLimited("429"))
    second = ScriptedProvider("second").enqueue("from second")
    chain = Fallback([first, second], on=(RateLimited, UpstreamUnavailable))
    assert (await chain.complete(ask())).text == "from second"
    first.enqueue(UpstreamRejected("bad request"))
    with pytest.raises(UpstreamRejected):  # a request error is the caller's: no fallback
        await chain.complete(ask())
    assert len(second.calls) == 1


async def test_fallback_streams_before_the_first_token_only() -> None:
    first = ScriptedProvider("first").enqueue(down("first"))
    second = ScriptedProvider("second").enqueue(Reply("second answer"))
    chain = Fallback([first, second], on=(UpstreamUnavailable,))
    assert "".join([c.text async for c in chain.stream(ask(True))]) == "second answer"
    first.enqueue(Reply("partial answer here", fail_after=1, error=down("first")))
    with pytest.raises(StreamInterrupted, match="after it started"):
        async for _ in chain.stream(ask(True)):
            pass
    assert len(second.calls) == 1


# -- timeouts --------------------------------------------------------------------------------------
async def test_total_and_first_token_timeouts() -> None:
    slow = ScriptedProvider().enqueue(Reply("late", delay=0.5))
    with pytest.raises(UpstreamTimeout, match=r"within 0\.05s"):
        await Timeout(slow, first_token=5, total=0.05).complete(ask())
    stalled = ScriptedProvider().enqueue(Reply("late", delay=0.5))
    with pytest.raises(UpstreamTimeout, match="first token"):
        async for _ in Timeout(stalled, first_token=0.05, total=5).stream(ask(True)):
            pass
    dribble = ScriptedProvider().enqueue(Reply("a b c d e f g h", chunk_delay=0.03))
    with pytest.raises(UpstreamTimeout, match="end of stream"):
        async for _ in Timeout(dribble, first_token=1, total=0.1).stream(ask(True)):
            pass


# -- concurrency limit -----------------------------------------------------------------------------
async def test_concurrency_limit_queues_then_sheds() -> None:
    provider = ScriptedProvider().enqueue(*[Reply("ok", delay=0.05) for _ in range(4)])
    limit = ConcurrencyLimit(provider, max_concurrency=1, max_queue=2, queue_timeout=5)
    results = await asyncio.gather(*(limit.complete(ask()) for _ in range(4)), return_exceptions=True)
    assert sum(isinstance(r, Overloaded) for r in results) == 1
    assert sum(getattr(r, "text", None) == "ok" for r in results) == 3
    slow = ScriptedProvider().enqueue(Reply("hog", delay=0.2))
    tight = ConcurrencyLimit(slow, max_concurrency=1, max_queue=5, queue_timeout=0.02)
    hog = asyncio.create_task(tight.complete(ask()))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded, match="no free slot"):
        await tight.complete(ask())
    await hog


async def test_batch_lines_hold_at_most_their_share_and_yield_to_interactive_calls() -> None:
    provider = ScriptedProvider().enqueue(*[Reply("ok", delay=0.05) for _ in range(8)])
    limit = ConcurrencyLimit(provider, max_concurrency=2, max_queue=10, queue_timeout=5, batch_concurrency=1)
    order: list[str] = []

    async def call(name: str, batch: bool) -> None:
        req = ask()
        req.ctx.batch = "batch_1" if batch else None
        await limit.complete(req)
        order.append(name)

    lines = [asyncio.create_task(call(f"line{i}", True)) for i in range(3)]
    await asyncio.sleep(0.01)  # one line holds a slot; the other two wait for the batch share
    assert limit._batch.locked() and not limit._slots.locked()
    talk = [asyncio.create_task(call(f"chat{i}", False)) for i in range(2)]
    await asyncio.gather(*lines, *talk)
    assert order.index("chat1") < order.index("line2")  # interactive calls went ahead of waiting lines
    waiting = ScriptedProvider().enqueue(Reply("hog", delay=0.2))
    tight = ConcurrencyLimit(waiting, max_concurrency=1, max_queue=5, queue_timeout=5, batch_concurrency=1)
    hog = asyncio.create_task(tight.complete(ask()))
    await asyncio.sleep(0.01)
    stuck = ask()
    stuck.ctx.batch = "batch_2"
    line = asyncio.create_task(tight.complete(stuck))
    await asyncio.sleep(0.01)
    line.cancel()  # its job stopped while it waited: the batch share comes back
    with pytest.raises(asyncio.CancelledError):
        await line
    assert not tight._batch.locked()
    await hog


# -- attempts --------------------------------------------------------------------------------------
async def test_every_attempt_is_recorded() -> None:
    provider = ScriptedProvider().enqueue(down(), "ok")
    req = ask()
    await Retry(RecordAttempts(provider), RetrySettings(base_delay_s=0), sleep=Sleeps()).complete(req)
    assert [a.error_type for a in req.ctx.attempts] == ["UpstreamUnavailable", None]
    assert all(a.ended >= a.started for a in req.ctx.attempts)
