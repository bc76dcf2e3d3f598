"""Many concurrent calls through the real server: every one is answered and every one is traced."""

from __future__ import annotations

import asyncio
import sqlite3

import openai

from keel.store import db_path
from tests.server.conftest import Gateway


async def test_sixty_concurrent_calls_are_all_answered_and_traced(gateway: Gateway) -> None:
    client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0, timeout=30)

    async def call(i: int) -> str:
        messages = [{"role": "user", "content": f"request {i}"}]
        if i % 2:
            stream = await client.chat.completions.create(model="main", messages=messages, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        done = await client.chat.completions.create(model="main", messages=messages)
        return done.choices[0].message.content or ""

    answers = await asyncio.gather(*(call(i) for i in range(60)))
    assert answers == [f"You said: request {i}" for i in range(60)]  # no cross-talk between streams
    await client.close()
    assert gateway.server.app.service.writer.flush()
    with sqlite3.connect(db_path(gateway.home)) as conn:
        rows = conn.execute("SELECT stream, status, count(*) FROM traces GROUP BY stream, status").fetchall()
    assert sorted(rows) == [(0, "ok", 30), (1, "ok", 30)]
