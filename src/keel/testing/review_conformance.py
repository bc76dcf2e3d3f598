"""The conformance suite of review items in the store (keel.store.reviews): one item per trace, claims
that never double and run out, decisions that race to one winner and end a held job in the same
transaction, SLA sweeps, and tenant scoping. ``tests/store/test_reviews.py`` runs it on SQLite and on
a real Postgres, each reviewer on its own connection."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from keel.errors import ReviewConflict, ReviewItemNotFound
from keel.store import Store
from keel.store.reviews import Decision, NewItem
from keel.testing.jobs_conformance import Opener
from keel.testing.store_conformance import in_threads


def new_item(tenant: str = "acme", *, mode: str = "after", queue: str = "support", **kw: Any) -> NewItem:
    trace_id = kw.pop("trace_id", uuid.uuid4().hex)
    fields: dict[str, Any] = {
        "view": {"answer": "Refunds take 5 days [1]", "inputs": {"question": "refunds?"}},
        "due": time.time() + 600,
        "feature": "support_answer",
        "confidence": 0.42,
        "prompt_version": 3,
        "model": "local",
        **kw,
    }
    if mode == "hold":
        fields.setdefault(
            "held", {"serve": {"answer": "5 days"}, "fallback": {"answer": "sorry"}, "on_timeout": "serve"}
        )
    return NewItem(tenant=tenant, queue=queue, trace_id=trace_id, mode=mode, **fields)


class ReviewStoreConformance:
    @pytest.fixture
    def store(self, opener: Opener) -> Iterator[Store]:
        with Store(opener()) as store:
            yield store

    def test_a_trace_is_queued_once(self, store: Store) -> None:
        new = new_item()
        first, created = store.reviews.add(new)
        again, created_again = store.reviews.add(new)
        assert created and not created_again and again.id == first.id
        assert first.status == "pending" and first.view["answer"].startswith("Refunds") and first.confidence == 0.42
        assert store.reviews.get(first.id, tenant="globex") is None
        assert [i.id for i in store.reviews.find(tenant="acme", queue="support")] == [first.id]
        assert store.reviews.find(tenant="globex") == []

    def test_a_claim_is_one_reviewers_until_it_runs_out(self, store: Store) -> None:
        item, _ = store.reviews.add(new_item())
        held = store.reviews.claim(item.id, tenant="acme", who="ann", ttl_s=0.3)
        assert held.status == "claimed" and held.claimed_by == "ann"
        with pytest.raises(ReviewConflict, match="claimed by ann"):
            store.reviews.claim(item.id, tenant="acme", who="bob", ttl_s=60)
        with pytest.raises(ReviewConflict):
            store.reviews.decide(item.id, tenant="acme", who="bob", decision=Decision("approve"))
        assert [i.id for i in store.reviews.find(tenant="acme", status="claimed")] == [item.id]
        time.sleep(0.35)
        assert [i.id for i in store.reviews.find(tenant="acme", status="pending")] == [item.id]  # ran out
        with pytest.raises(ReviewConflict, match="ran out"):
            store.reviews.decide(item.id, tenant="acme", who="ann", decision=Decision("approve"))
        assert store.reviews.claim(item.id, tenant="acme", who="bob", ttl_s=60).claimed_by == "bob"
        with pytest.raises(ReviewItemNotFound):
            store.reviews.claim(item.id, tenant="globex", who="eve", ttl_s=60)

    def test_a_decision_ends_a_held_job_and_is_feedback(self, store: Store) -> None:
        trace = uuid.uuid4().hex
        item, _ = store.reviews.add(new_item(mode="hold", trace_id=trace, job_payload={"inputs": {"q": 1}}))
        assert item.job_id is not None
        job = store.jobs.get(item.job_id, tenant="acme")
        assert job is not None and job.status == "awaiting_review" and job.trace_id == trace
        assert job.result["review"]["item"] == item.id
        assert store.jobs.claim("w", 30) is None  # a held job is not work for a worker
        store.reviews.claim(item.id, tenant="acme", who="ann", ttl_s=60)
        decision = Decision("edit", "7 days", "it changed", {"topic": "refunds"}, "7 days", {"answer": "7 days"})
        decided = store.reviews.decide(item.id, tenant="acme", who="ann", decision=decision)
        assert decided.status == "decided" and decided.action == "edit" and decided.held is None
        assert decided.output == "7 days" and decided.labels == {"topic": "refunds"} and decided.reviewer == "ann"
        job = store.jobs.get(item.job_id, tenant="acme")
        assert job is not None and job.status == "succeeded" and job.result == {"answer": "7 days"}
        rows = store.db.all('SELECT name, label, value, correction, "user" FROM feedback WHERE trace_id = ?', (trace,))
        assert rows == [{"name": "review", "label": "edit", "value": 0.5, "correction": "7 days", "user": "ann"}]
        with pytest.raises(ReviewConflict, match="already decided"):
            store.reviews.decide(item.id, tenant="acme", who="ann", decision=Decision("approve"))

    def test_a_worker_holds_its_running_job_only_while_its_lease_is_its_own(self, store: Store) -> None:
        job, _ = store.jobs.enqueue("acme", "feature", {"inputs": {}}, feature="support_answer")
        running = store.jobs.claim("w1", 30)
        assert running is not None and running.id == job.id
        item, _ = store.reviews.add(new_item(mode="hold", trace_id=str(running.trace_id)), hold=running)
        assert item.job_id == job.id
        shown = store.jobs.get(job.id, tenant="acme")
        assert shown is not None and shown.status == "awaiting_review" and shown.lease_until is None
        store.jobs.enqueue("acme", "feature", {}, feature="support_answer")
        taken = store.jobs.claim("w2", 30)
        assert taken is not None
        store.db.run("UPDATE jobs SET worker = 'w3' WHERE id = ?", (taken.id,))  # another attempt took over
        with pytest.raises(ReviewConflict, match="lease"):
            store.reviews.add(new_item(mode="hold"), hold=taken)
        assert store.reviews.find(tenant="acme", status="pending")[-1].id == item.id  # nothing half-written

    def test_cancelling_a_held_job_closes_its_item(self, store: Store) -> None:
        item, _ = store.reviews.add(new_item(mode="hold"))
        assert item.job_id is not None
        assert store.jobs.cancel(item.job_id, tenant="acme").status == "cancelled"
        closed = store.reviews.get(item.id, tenant="acme")
        assert closed is not None and closed.status == "expired" and closed.held is None
        with pytest.raises(ReviewConflict, match="expired"):
            store.reviews.claim(item.id, tenant="acme", who="ann", ttl_s=60)

    def test_past_its_sla_a_held_item_serves_as_on_timeout_says_and_an_after_one_is_marked(self, store: Store) -> None:
        told: list[tuple[str, str]] = []
        store.reviews.on_event = lambda event, item: told.append((event, item.id))
        past = time.time() - 1
        fallback = {"serve": {"answer": "a"}, "fallback": {"answer": "sorry"}, "on_timeout": "fallback"}
        held, _ = store.reviews.add(new_item(mode="hold", due=past, held=fallback))
        after, _ = store.reviews.add(new_item(due=past))
        fresh, _ = store.reviews.add(new_item())
        assert store.reviews.sweep() == {"expired": 1, "breached": 1}
        assert store.reviews.sweep() == {"expired": 0, "breached": 0}  # each breach once
        assert held.job_id is not None
        job = store.jobs.get(held.job_id, tenant="acme")
        assert job is not None and job.status == "succeeded" and job.result == {"answer": "sorry"}
        swept = {i.id: i for i in store.reviews.find(tenant="acme")}
        assert swept[held.id].status == "expired" and swept[after.id].status == "pending" and swept[after.id].breached
        assert not swept[fresh.id].breached
        assert ("created", fresh.id) in told and {("sla_breached", held.id), ("sla_breached", after.id)} <= set(told)
        queues = {q["queue"]: q for q in store.reviews.queues(tenant="acme")}
        assert queues["support"]["breaches"] == 2 and queues["support"]["expired"] == 1

    def test_twenty_reviewers_claim_a_queue_without_a_double_claim_or_a_lost_decision(
        self, store: Store, opener: Opener
    ) -> None:
        ids = {store.reviews.add(new_item(queue="bulk"))[0].id for _ in range(60)}
        taken: list[list[str]] = [[] for _ in range(20)]

        def reviewer(i: int) -> None:
            with Store(opener()) as mine:
                while (item := mine.reviews.claim_next(tenant="acme", queue="bulk", who=f"r{i}", ttl_s=60)) is not None:
                    taken[i].append(item.id)
                    mine.reviews.decide(item.id, tenant="acme", who=f"r{i}", decision=Decision("approve"))

        in_threads(20, reviewer)
        claimed = [x for t in taken for x in t]
        assert len(claimed) == len(set(claimed)) == 60 and set(claimed) == ids  # no double claim, none missed
        decided = store.reviews.decisions(tenant="acme", queue="bulk")
        assert len(decided) == 60 and {d["action"] for d in decided} == {"approve"}  # no lost decision

    def test_paging_is_oldest_first_and_filters_check_their_values(self, store: Store) -> None:
        made = [store.reviews.add(new_item(queue="pages"))[0] for _ in range(5)]
        first = store.reviews.find(tenant="acme", queue="pages", limit=2)
        from keel.store.reviews import encode_cursor

        rest = store.reviews.find(tenant="acme", queue="pages", cursor=encode_cursor(first[-1]))
        assert [i.id for i in first + rest] == [i.id for i in made]
        with pytest.raises(Exception, match="status"):
            store.reviews.find(tenant="acme", status="done")
