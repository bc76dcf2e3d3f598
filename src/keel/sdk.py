"""The Python SDK: run features on a Keel server.

    client = keel.Client(base_url="http://127.0.0.1:8080/v1", api_key="keel-…")
    result = client.run("support_answer", question="How do I rotate my API key?", user="u42")
    result = await client.arun(...)                         # the same, async
    for event in client.stream("support_answer", ...):      # started, delta…, done
        print(event.text, end="")
    async for event in client.astream(...): ...
    job = client.submit("summarise", document=text)         # a durable job: 202 at once
    job.progress()                                          # Progress(done=12, total=40, stage=...)
    result = job.wait(timeout=600)                          # the RunResult when it succeeds

One class, no sync/async twins: building requests and reading replies (JSON and SSE) are plain
functions shared by both transports; only the two httpx calls differ. Errors are ``KeelAPIError``
carrying the server's OpenAI-shaped error (status, type, code, param, message).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field, fields
from types import TracebackType
from typing import Any

import httpx
import orjson


class KeelAPIError(Exception):
    """The server said no: its status and OpenAI-shaped error."""

    def __init__(self, status: int, message: str, *, type: str = "", code: str | None = None, param: Any = None):
        super().__init__(f"{status} {code or type}: {message}")
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param


@dataclass(slots=True)
class RunResult:
    feature: str = ""
    answer: str = ""
    value: Any = None
    prompt_version: int = 0
    prompt_fallback: str | None = None
    model: str = ""
    experiment: str | None = None
    arm: str | None = None
    trace_id: str = ""
    cost_usd: float | None = None
    latency_ms: float = 0.0
    found_nothing: bool = False
    attempts: int = 1
    notes: list[str] = field(default_factory=list)
    cache: str | None = None  # "exact" / "semantic" when served from the answer cache, "miss" when it looked
    confidence: float | None = None  # the lowest output-guard score, when output guards ran
    guards: dict[str, float] = field(default_factory=dict)  # output guard → score
    sources: list[dict[str, Any]] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    review: dict[str, Any] | None = None  # the review route (queue, mode, reason) when the feature routed it
    held: bool = False  # a person checks the answer first: ``answer`` is the feature's message until then
    job_id: str | None = None  # held: the job that ends with the reviewed answer (``client.job(id).wait()``)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # newer servers may add fields

    @classmethod
    def from_response(cls, status: int, data: dict[str, Any]) -> RunResult:
        """A run's answer — or, for 202, the job holding it for review."""
        if status != 202:
            return cls.from_dict(data)
        review = (data.get("result") or {}).get("review") or {}
        return cls(
            feature=str(data.get("feature") or ""),
            answer=str(data.get("message") or ""),
            trace_id=str(data.get("trace_id") or ""),
            review=review,
            held=True,
            job_id=str(data["id"]),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One streamed event: ``started`` / ``done`` carry a ``result``; ``delta`` a ``text``; ``partial`` a ``value``."""

    type: str
    data: dict[str, Any]

    @property
    def text(self) -> str:
        return str(self.data.get("text", "")) if self.type == "delta" else ""

    @property
    def value(self) -> Any:
        return self.data.get("value")

    @property
    def result(self) -> RunResult | None:
        return RunResult.from_dict(self.data) if self.type in ("started", "done") else None


# -- sans-IO: shared by both transports -----------------------------------------------------------


def _body(inputs: dict[str, Any] | None, kwargs: dict[str, Any], user: str | None, label: str | None) -> dict[str, Any]:
    clash = set(kwargs) & set(inputs or {})
    if clash:
        raise ValueError(f"inputs given twice: {sorted(clash)}")
    body: dict[str, Any] = {"inputs": {**(inputs or {}), **kwargs}}
    if user is not None:
        body["user"] = user
    if label is not None:
        body["label"] = label
    return body


def _raise_for(status: int, content: bytes) -> None:
    if status < 400:
        return
    try:
        error = orjson.loads(content)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise KeelAPIError(status, content[:500].decode(errors="replace") or "no body") from None
    raise KeelAPIError(
        status,
        str(error.get("message")),
        type=str(error.get("type", "")),
        code=error.get("code"),
        param=error.get("param"),
    )


@dataclass(frozen=True, slots=True)
class Progress:
    done: int | None
    total: int | None
    stage: str | None
    status: str

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.done is not None and self.total else None


FINISHED = ("succeeded", "failed", "cancelled", "expired")


class JobFailed(KeelAPIError):
    """``job.wait()`` on a job that ended failed, cancelled or expired (its ``job`` is attached)."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(200, str(job.get("error") or job["status"]), type="job_" + str(job["status"]))
        self.job = job


class Job:
    """A durable job on the server (``Client.submit``): read its progress, wait for it, cancel it."""

    def __init__(self, client: Client, data: dict[str, Any]) -> None:
        self.client = client
        self.data = data

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    def refresh(self) -> Job:
        r = self.client.http.get(f"{self.client.base_url}/jobs/{self.id}")
        _raise_for(r.status_code, r.content)
        self.data = r.json()
        return self

    def progress(self) -> Progress:
        """The job's newest progress (read from the server now)."""
        p = self.refresh().data["progress"]
        return Progress(p.get("done"), p.get("total"), p.get("stage"), self.status)

    def wait(self, timeout: float | None = None, *, poll_s: float = 0.25) -> Any:
        """Block until the job ends: a feature job's RunResult (another kind's result as the server
        sent it: an ingest report, an eval summary), or JobFailed; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        while self.refresh().status not in FINISHED:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {self.status} after {timeout:g} s")
            time.sleep(poll_s)
        if self.status != "succeeded":
            raise JobFailed(self.data)
        result = self.data["result"]
        return RunResult.from_dict(result) if self.data.get("kind") == "feature" else result

    def events(self) -> Iterator[Event]:
        """The job's ``progress`` events as the server sends them, ending with ``done``."""
        with self.client.http.stream("GET", f"{self.client.base_url}/jobs/{self.id}/events") as r:
            if r.status_code >= 400:
                _raise_for(r.status_code, r.read())
            for event in _SSE().events(r.iter_lines()):
                self.data = event.data
                yield event

    def cancel(self) -> Job:
        r = self.client.http.post(f"{self.client.base_url}/jobs/{self.id}/cancel")
        _raise_for(r.status_code, r.content)
        self.data = r.json()
        return self


class _SSE:
    """Reads ``event:``/``data:`` lines into events; an ``error`` event raises."""

    def __init__(self) -> None:
        self.kind = "message"
        self.data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if line.startswith("event:"):
            self.kind = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].strip())
        elif not line.strip() and self.data:
            payload = orjson.loads("\n".join(self.data))
            kind, self.kind, self.data = self.kind, "message", []
            if kind == "error":
                error = payload.get("error", {})
                raise KeelAPIError(
                    200, str(error.get("message")), type=str(error.get("type", "")), code=error.get("code")
                )
            return Event(str(payload.get("type", kind)), payload)
        return None

    def events(self, lines: Iterable[str]) -> Iterator[Event]:
        for line in lines:
            event = self.feed(line)
            if event is not None:
                yield event


class Client:
    """A Keel server. ``base_url`` and ``api_key`` default to ``KEEL_URL`` and ``KEEL_API_KEY``."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 120.0) -> None:
        url = base_url or os.environ.get("KEEL_URL")
        if not url:
            raise ValueError("give base_url (e.g. http://127.0.0.1:8080/v1) or set KEEL_URL")
        self.base_url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("KEEL_API_KEY")
        self.headers = {"authorization": f"Bearer {key}"} if key else {}
        self.timeout = timeout
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None

    def _url(self, feature: str) -> str:
        return f"{self.base_url}/features/{feature}/run"

    @property
    def http(self) -> httpx.Client:
        if self._sync is None:
            self._sync = httpx.Client(headers=self.headers, timeout=self.timeout)
        return self._sync

    @property
    def ahttp(self) -> httpx.AsyncClient:
        if self._async is None:
            self._async = httpx.AsyncClient(headers=self.headers, timeout=self.timeout)
        return self._async

    # -- runs ------------------------------------------------------------------------------------
    def run(
        self,
        feature: str,
        /,
        *,
        user: str | None = None,
        label: str | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Run a feature; keyword arguments are its inputs (or pass ``inputs={…}``)."""
        r = self.http.post(self._url(feature), json=_body(inputs, kwargs, user, label))
        _raise_for(r.status_code, r.content)
        return RunResult.from_response(r.status_code, r.json())

    async def arun(
        self,
        feature: str,
        /,
        *,
        user: str | None = None,
        label: str | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> RunResult:
        r = await self.ahttp.post(self._url(feature), json=_body(inputs, kwargs, user, label))
        _raise_for(r.status_code, r.content)
        return RunResult.from_response(r.status_code, r.json())

    def stream(
        self,
        feature: str,
        /,
        *,
        user: str | None = None,
        label: str | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Iterator[Event]:
        """Events as the server sends them: ``started``, ``delta`` (or ``partial``)…, ``done``."""
        body = {**_body(inputs, kwargs, user, label), "stream": True}
        with self.http.stream("POST", self._url(feature), json=body) as r:
            if r.status_code >= 400:
                _raise_for(r.status_code, r.read())
            yield from _SSE().events(r.iter_lines())

    async def astream(
        self,
        feature: str,
        /,
        *,
        user: str | None = None,
        label: str | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[Event]:
        body = {**_body(inputs, kwargs, user, label), "stream": True}
        async with self.ahttp.stream("POST", self._url(feature), json=body) as r:
            if r.status_code >= 400:
                _raise_for(r.status_code, await r.aread())
            parser = _SSE()
            async for line in r.aiter_lines():
                event = parser.feed(line)
                if event is not None:
                    yield event

    # -- jobs ------------------------------------------------------------------------------------
    def submit(
        self,
        feature: str,
        /,
        *,
        user: str | None = None,
        label: str | None = None,
        inputs: dict[str, Any] | None = None,
        webhook: str | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> Job:
        """Queue a feature run as a durable job; the server answers at once (202). The same
        ``idempotency_key`` again returns the job it made the first time."""
        body = _body(inputs, kwargs, user, label)
        if webhook is not None:
            body["webhook"] = webhook
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        r = self.http.post(f"{self.base_url}/features/{feature}/jobs", json=body, headers=headers)
        _raise_for(r.status_code, r.content)
        return Job(self, r.json())

    def job(self, job_id: str) -> Job:
        """A job submitted before (by id)."""
        return Job(self, {"id": job_id, "status": "queued"}).refresh()

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        self.close()
        if self._async is not None:
            await self._async.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
