"""The dashboard at /ui over real HTTP, and in a real headless browser (Debian's chromium driven by
Playwright, never a downloaded browser): sign-in, sessions, CSRF, tenants, escaping, and every page
rendering data that real requests made."""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keel.store import Store, db_path
from keel.store.monitors import MonitorRun
from keel.testing import Fault
from tests.cli.test_cli import keel
from tests.conftest import RunningServer, new_key
from tests.server.conftest import greet_server

SCRIPT = "<script>window.pwned = 1</script>"


@dataclass
class Dash:
    server: RunningServer
    base: str  # http://127.0.0.1:PORT
    keys: dict[str, str]
    home: Path
    traces: dict[str, str]  # name → a trace id made by a real request

    def signed_in(self, who: str, first: str = "/ui/traces") -> httpx.Client:
        client = httpx.Client(base_url=self.base, follow_redirects=False, timeout=30)
        r = client.post("/ui/login", data={"key": self.keys[who], "next": first})
        assert r.status_code == 303 and r.headers["location"] == first, r.text
        return client


ANSWER_PROMPT = "---\ninputs:\n  question: {type: str}\n---\n[user]\n{{ question }}\n"
ANSWER = (
    "prompt: answer\nmodel: up\nretrieval: {collection: handbook, top_k: 2}\n"
    "guards: {input: [injection], output: [citations]}\nbudget: {per_call_usd: 0.01}\n"
)
CHECKED = (
    "prompt: answer\nmodel: up\nretrieval: {collection: handbook, top_k: 2}\n"
    "guards: {output: [citations]}\nreview: {when: 'confidence < 0.6', mode: hold, queue: support}\n"
)
SUITE = """feature: greet
cases:
  - id: ada
    inputs: {name: Ada}
    checks: [{type: icontains, value: greet ada}]
  - id: bo
    inputs: {name: Bo}
    checks: [{type: icontains, value: greet bo}]
gate: {min_pass_rate: 1.0, max_pass_rate_drop: 0.0}
"""


def config(root: Path, url: str) -> str:
    return (
        f"project_root: '{root}'\ndeployments:\n  up: {{provider: openai, model: gpt-4o-mini, "
        f"base_url: '{url}'}}\nmodels:\n  up: {{deployments: [up]}}\n"
        "budgets:\n  daily: {per: user, usd: 0.0001, mode: soft, alerts: [0.5, 1.0]}\n"
        "limits:\n  keys: {per: key, rpm: 100000}\n"
    )


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    base = tmp_path_factory.mktemp("dash")
    with greet_server(base, config) as (server, home, upstream):
        root = base / "project"  # greet_server's
        (root / "prompts" / "answer.md").write_text(ANSWER_PROMPT)
        (root / "features" / "answer.yaml").write_text(ANSWER)
        (root / "features" / "checked.yaml").write_text(CHECKED)
        (root / "evals").mkdir()
        (root / "evals" / "greet.yaml").write_text(SUITE)
        (root / "keel.yaml").write_text(config(root, upstream.base_url))
        keys = {
            "acme": new_key(home, "acme")[0],
            "globex": new_key(home, "globex")[0],
            "admin": new_key(home, "ops", role="admin")[0],
            "reviewer": new_key(home, "acme", role="reviewer")[0],
        }
        api = server.base_url

        def post(path: str, body: dict[str, Any], who: str = "acme") -> httpx.Response:
            auth = {"authorization": f"Bearer {keys[who]}"}
            return httpx.post(f"{api}{path}", json=body, headers=auth, timeout=60)

        traces = {}
        for who, text in (("acme", f"hello {SCRIPT}"), ("globex", "globex secret plans")):
            r = post("/chat/completions", {"model": "up", "user": f"{who}-user", "messages": [
                {"role": "user", "content": text}]}, who)  # fmt: skip
            assert r.status_code == 200
            traces[who] = r.headers["x-keel-trace-id"]
        traces["run"] = post("/features/greet/run", {"inputs": {"name": "Ada"}, "user": "u1"}).json()["trace_id"]
        (root / "prompts" / "greet.md").write_text("---\ninputs:\n  name: {type: str}\n---\nGreet {{ name }}, warmly")
        assert post("/features/greet/run", {"inputs": {"name": "Bo"}}).status_code == 200  # prompt v2 recorded
        assert post("/collections", {"name": "handbook"}).status_code in (200, 201)
        docs = [{"id": "refunds.md", "text": "# Refunds\n\nRefunds take five business days."},
                {"id": "shipping.md", "text": "# Shipping\n\nParcels ship within two days."}]  # fmt: skip
        assert post("/collections/handbook/documents", {"documents": docs}).status_code in (200, 201, 202)
        broken = [{"id": "broken.pdf", "content_base64": base64.b64encode(b"not a pdf at all").decode()}]
        partial = post("/collections/handbook/documents", {"documents": broken})
        assert partial.status_code == 200 and partial.json()["skipped"], partial.text
        assert post("/collections/nope/documents", {"documents": docs}).status_code == 404
        answered = post("/features/answer/run", {"inputs": {"question": "How long do refunds take?"}})
        assert answered.status_code == 200, answered.text
        traces["answer"] = answered.json()["trace_id"]
        for name in ("Held Ada", "Held Bo"):
            held = post("/features/checked/run", {"inputs": {"question": f"Refunds for {name}?"}})
            assert held.status_code == 202, held.text
            traces[name] = held.json()["result"]["review"]["item"]
        upstream.inject(Fault.status_code(500), Fault.status_code(500), Fault.status_code(500))
        failed = post("/chat/completions", {"model": "up", "messages": [{"role": "user", "content": "x"}]})
        assert failed.status_code >= 500
        traces["failed"] = failed.headers["x-keel-trace-id"]
        cli = ("-c", str(root / "keel.yaml"), "--tenant", "acme")
        for args in (
            ("eval", "greet", "--root", str(root), "--label", "main", *cli),
            ("experiments", "start", "tone", "-f", "greet", "--arm", "control", "--arm", "warm:version=2",
             "--root", str(root), *cli),
        ):  # fmt: skip
            done = keel(home, *args)
            assert done.returncode == 0, done.stdout + done.stderr
        (root / "evals" / "greet.yaml").write_text(SUITE.replace("greet bo", "farewell bo"))
        assert keel(home, "eval", "greet", "--root", str(root), "--baseline", "main", *cli).returncode == 100
        for user in ("u1", "u2", "u3", "u4"):
            again = post("/features/greet/run", {"inputs": {"name": user}, "user": user})
            assert again.status_code == 200
            traces[user] = again.json()["trace_id"]
        assert server.app.service.writer is not None and server.app.service.writer.flush()
        seed_drift(server.app.store)
        yield Dash(server, api.removesuffix("/v1"), keys, home, traces)


def seed_drift(store: Store) -> None:
    """A week of acme's greet runs as the monitors keep them: steady, then prompt v2 refuses half the
    time for the last hour (what the sweeper would have read off their traces)."""
    now = time.time()
    runs = [MonitorRun("acme", f"ref{i:04d}", "greet", now - 6 * 86_400 + i * 1500, {"refusal": False,
                       "latency_ms": 40.0 + i % 7}, prompt_version=1) for i in range(330)]  # fmt: skip
    runs += [MonitorRun("acme", f"win{i:04d}", "greet", now - 3000 + i * 10, {"refusal": i % 2 == 0,
                        "latency_ms": 40.0 + i % 7}, prompt_version=2) for i in range(250)]  # fmt: skip
    store.monitors.add_runs(runs)


def test_pages_need_a_session_and_a_forged_or_expired_one_is_refused(dash: Dash) -> None:
    with httpx.Client(base_url=dash.base, follow_redirects=False) as anon:
        r = anon.get("/ui/traces?status=ok")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/traces%3Fstatus%3Dok"
        anon.cookies.set("keel_session", "eyJrIjoiYWRtaW4ifQ.forged", path="/ui")
        assert anon.get("/ui/overview").status_code == 303
        wrong = anon.post("/ui/login", data={"key": "keel-not-a-key"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
    client = dash.signed_in("acme")
    cookie = next(c for c in client.cookies.jar if c.name == "keel_session")
    assert cookie.path == "/ui" and cookie.has_nonstandard_attr("HttpOnly")
    assert dash.keys["acme"] not in cookie.value  # the session holds the key's id, never the key
    page = client.get("/ui/overview")
    assert page.status_code == 200 and "Requests" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_a_revoked_key_ends_its_sessions(dash: Dash) -> None:
    key, info = new_key(dash.home, "acme")
    client = httpx.Client(base_url=dash.base, follow_redirects=False)
    assert client.post("/ui/login", data={"key": key}).status_code == 303
    assert client.get("/ui/traces").status_code == 200
    with Store.at(db_path(dash.home)) as store:
        assert store.keys.revoke(info.id)
    assert client.get("/ui/traces").status_code == 303  # back to sign-in at once


def test_a_member_sees_only_their_tenant_and_an_admin_switches(dash: Dash) -> None:
    acme = dash.signed_in("acme")
    listing = acme.get("/ui/traces").text
    assert dash.traces["acme"][:12] in listing and dash.traces["globex"][:12] not in listing
    other = acme.get(f"/ui/traces/{dash.traces['globex']}")
    assert other.status_code == 404 and "globex secret" not in other.text
    assert acme.get("/ui/traces?tenant=globex").text.count(dash.traces["globex"][:12]) == 0  # members can't pick
    admin = dash.signed_in("admin")
    everyone = admin.get("/ui/traces?tenant=*").text
    assert dash.traces["acme"][:12] in everyone and dash.traces["globex"][:12] in everyone
    link = re.search(rf'href="(/ui/traces/{dash.traces["globex"]}[^"]*)"', everyone)
    assert link is not None and admin.get(link[1].replace("&amp;", "&")).status_code == 200  # the link opens it
    assert '<option value="globex"' in admin.get("/ui/overview").text  # the tenant switcher


def test_traced_html_is_escaped_and_filters_and_bad_values_are_pages(dash: Dash) -> None:
    client = dash.signed_in("acme")
    detail = client.get(f"/ui/traces/{dash.traces['acme']}")
    assert detail.status_code == 200
    assert SCRIPT not in detail.text and "&lt;script&gt;" in detail.text
    errors = client.get("/ui/traces?status=error").text
    assert dash.traces["acme"][:12] not in errors
    bad = client.get("/ui/overview?window=1y")
    assert bad.status_code == 400 and "window must be one of" in bad.text
    cursor = client.get("/ui/traces?cursor=%%%")
    assert cursor.status_code == 400 and "cursor" in cursor.text
    run = client.get(f"/ui/traces/{dash.traces['run']}").text
    assert "chat gpt-4o-mini" in run and "Spans" in run  # a feature run shows its calls in its span tree


def test_failures_are_grouped_with_an_example(dash: Dash) -> None:
    client = dash.signed_in("acme")
    page = client.get("/ui/failures")
    assert page.status_code == 200
    assert "UpstreamUnavailable" in page.text and dash.traces["failed"][:12] in page.text
    assert "<svg" in page.text  # the daily sparkline
    ingest = re.findall(r'<td class="error-text">(\w+)</td><td>ingest</td>', page.text)
    assert sorted(ingest) == ["CollectionNotFound", "DocumentError"]  # a refused and a partial ingest
    assert dash.signed_in("globex").get("/ui/failures").text.count("UpstreamUnavailable") == 0
    assert client.get("/ui/failures?window=2y").status_code == 400


def test_feedback_needs_its_csrf_token(dash: Dash) -> None:
    client = dash.signed_in("acme")
    trace = dash.traces["acme"]
    refused = client.post(f"/ui/traces/{trace}/feedback", data={"value": "yes"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    page = client.get(f"/ui/traces/{trace}").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    saved = client.post(f"/ui/traces/{trace}/feedback", data={"value": "yes", "comment": "good", "csrf": csrf[1]})
    assert saved.status_code == 303
    assert "good" in client.get(saved.headers["location"]).text
    globex = dash.signed_in("globex")
    page = globex.get("/ui/overview").text
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token is not None
    theirs = globex.post(f"/ui/traces/{trace}/feedback", data={"value": "no", "csrf": token[1]})
    assert theirs.status_code == 404  # another tenant's trace, even with a valid token


def csrf_of(client: httpx.Client, page: str = "/ui/overview") -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get(page).text)
    assert token is not None
    return token[1]


def test_a_reviewer_sees_the_queue_and_nothing_else_and_decides_with_a_form(dash: Dash) -> None:
    client = dash.signed_in("reviewer", first="/ui")
    assert client.get("/ui").headers["location"] == "/ui/review"  # a reviewer's dashboard is the queue
    page = client.get("/ui/review")
    assert page.status_code == 200 and dash.traces["Held Ada"][:16] in page.text
    assert 'href="/ui/traces"' not in page.text and 'href="/ui/overview"' not in page.text  # not in the navigation
    for path in ("/ui/traces", "/ui/overview", f"/ui/traces/{dash.traces['answer']}", "/ui/budgets"):
        refused = client.get(path)
        assert refused.status_code == 403 and "may not open" in refused.text, path
    item = f"/ui/review/{dash.traces['Held Ada']}"
    shown = client.get(item).text
    assert "Refunds for Held Ada?" in shown and "citations" in shown and "held: the user waits" in shown
    assert client.post(item, data={"action": "claim"}).status_code == 403  # CSRF
    csrf = csrf_of(client, item)
    assert client.post(item, data={"action": "claim", "csrf": csrf}).status_code == 303
    edited = client.post(item, data={"action": "edit", "output": "Refunds take five business days [1].", "csrf": csrf})
    assert edited.status_code == 303 and "Edited" in client.get(edited.headers["location"]).text
    again = client.post(item, data={"action": "reject", "csrf": csrf})
    assert again.status_code == 409 and "already decided" in again.text
    globex = dash.signed_in("globex", first="/ui/review")
    assert globex.get(item).status_code == 404


def test_drift_shows_the_move_its_change_point_and_a_series_per_signal(dash: Dash) -> None:
    acme = dash.signed_in("acme")
    listing = acme.get("/ui/drift")
    assert listing.status_code == 200, listing.text
    assert '<a href="/ui/drift/greet">greet</a>' in listing.text and "refusal rate" in listing.text
    assert 'class="verdict-drop error-text">drop</td>' in listing.text  # the refusal rate, 0% → 50%
    page = acme.get("/ui/drift/greet").text
    assert "prompt v2 began serving at" in page  # the change point, in words …
    assert 'class="mark"' in page and 'class="band"' in page and 'class="window"' in page  # … and on the chart
    assert 'id="series-refusal"' in page and 'id="series-latency_ms"' in page
    globex = dash.signed_in("globex")
    assert "0.0% → 50.0%" not in globex.get("/ui/drift").text and "verdict-drop" not in globex.get("/ui/drift").text
    assert globex.get("/ui/drift/nope").status_code == 404


def test_the_overview_splits_by_feature_model_tenant_and_user(dash: Dash) -> None:
    acme = dash.signed_in("acme")
    features = acme.get("/ui/overview").text
    assert '<a href="/ui/features/answer">answer</a>' in features and "within</span>" in features  # vs its target
    assert "gpt-4o-mini</td>" in acme.get("/ui/overview?by=model&window=1h").text
    users = acme.get("/ui/overview?by=user&window=7d").text
    assert "u1</td>" in users and "acme-user</td>" in users and "globex-user" not in users
    admin = dash.signed_in("admin")
    tenants = admin.get("/ui/overview?by=tenant&tenant=*").text
    assert "acme</td>" in tenants and "globex</td>" in tenants
    bad = acme.get("/ui/overview?by=colour")
    assert bad.status_code == 400 and "by must be one of feature, model, tenant, user" in bad.text


def test_budgets_show_each_tenants_own_buckets(dash: Dash) -> None:
    acme = dash.signed_in("acme").get("/ui/budgets").text
    assert "user acme-user" in acme and "user globex-user" not in acme and "rpm" not in acme
    assert "100,000" in acme  # the rate limit, per key
    globex = dash.signed_in("globex").get("/ui/budgets").text
    assert "user globex-user" in globex and "user acme-user" not in globex
    everyone = dash.signed_in("admin").get("/ui/budgets?tenant=*").text
    assert "user acme-user" in everyone and "user globex-user" in everyone


def test_features_show_versions_a_diff_and_labels_move_only_for_admins(dash: Dash) -> None:
    acme = dash.signed_in("acme")
    listing = acme.get("/ui/features").text
    assert "/ui/features/greet" in listing and "/ui/features/answer" in listing and "tone running" in listing
    page = acme.get("/ui/features/greet?a=1&b=2").text
    assert '<span class="add">+Greet {{ name }}, warmly</span>' in page and "Report: tone" in page
    assert acme.get("/ui/features/greet?a=1&b=9").status_code == 400
    assert "versions to compare are numbers" in acme.get("/ui/features/greet?a=one&b=2").text
    assert acme.get("/ui/features/nope").status_code == 404
    assert acme.get("/ui/features/..%2Fkeel").status_code == 404
    move = {"label": "production", "version": "2", "reason": "warmer", "csrf": csrf_of(acme)}
    refused = acme.post("/ui/features/greet/label", data=move)
    assert refused.status_code == 403 and "admin" in refused.text
    admin = dash.signed_in("admin")
    assert admin.post("/ui/features/greet/label", data={**move, "csrf": "forged"}).status_code == 403
    token = csrf_of(admin)
    assert "say why" in admin.post("/ui/features/greet/label", data={**move, "reason": "", "csrf": token}).text
    bad = admin.post("/ui/features/greet/label", data={**move, "label": "no spaces!", "csrf": token})
    assert bad.status_code == 400 and "is not a label" in bad.text
    moved = admin.post("/ui/features/greet/label", data={**move, "csrf": token})
    assert moved.status_code == 303
    history = admin.get(moved.headers["location"]).text
    assert "Label moved: production → v2" in history and "warmer" in history and "key:" in history


def test_evals_show_runs_verdicts_and_what_broke(dash: Dash) -> None:
    acme = dash.signed_in("acme")
    assert '<a href="/ui/evals/greet">greet</a>' in acme.get("/ui/evals").text
    suite = acme.get("/ui/evals/greet").text
    assert '<span class="pill ok">passed</span>' in suite and '<span class="pill error">failed</span>' in suite
    runs = re.findall(r'href="/ui/evals/greet/([0-9a-f]+)\?', suite)
    assert len(runs) == 2
    newest = acme.get(f"/ui/evals/greet/{runs[0]}").text
    assert "Broke (1):" in newest and "<code>bo</code>" in newest and "pass rate vs baseline" in newest
    report = acme.get(f"/ui/evals/greet/{runs[0]}/report")
    assert report.status_code == 200 and "frame-ancestors 'self'" in report.headers["content-security-policy"]
    assert "Worst" in report.text
    assert dash.signed_in("globex").get("/ui/evals/greet").status_code == 404  # acme's runs
    assert acme.get("/ui/evals/greet/0123456789ab").status_code == 404
    assert acme.get("/ui/evals/greet?baseline=" + "x" * 200).status_code == 400


def test_a_trace_shows_its_steps_and_becomes_an_eval_case(dash: Dash) -> None:
    acme = dash.signed_in("acme")
    answer = acme.get(f"/ui/traces/{dash.traces['answer']}").text
    assert "refunds.md#0" in answer and "Refunds take five business days." in answer and "Confidence" in answer
    assert "citations: <b>" in answer and "attempt up" in answer
    token = csrf_of(acme)
    wrong = acme.post(f"/ui/traces/{dash.traces['answer']}/feedback", data={"action": "case", "suite": "greet",
                                                                            "csrf": token})  # fmt: skip
    assert wrong.status_code == 400 and "not a suite of feature answer" in wrong.text
    run = dash.traces["u3"]
    kept = acme.post(f"/ui/traces/{run}/feedback", data={"action": "case", "suite": "greet", "expected": "Hi u3",
                                                         "csrf": token})  # fmt: skip
    assert kept.status_code == 303 and "keel+eval+promote" in kept.headers["location"]
    assert "eval_case" in acme.get(kept.headers["location"]).text and "Hi u3" in acme.get(f"/ui/traces/{run}").text
    refused = acme.post(f"/ui/traces/{run}/feedback", data={"action": "case", "suite": "greet", "now": "yes",
                                                            "csrf": token})  # fmt: skip
    assert refused.status_code == 403
    admin = dash.signed_in("admin")
    case = {"action": "case", "suite": "greet", "now": "yes", "csrf": csrf_of(admin)}
    added = admin.post(f"/ui/traces/{run}/feedback?tenant=acme", data=case)
    assert added.status_code == 303 and "Added+case" in added.headers["location"]
    assert "tenant=acme" in added.headers["location"] and admin.get(added.headers["location"]).status_code == 200
    again = admin.post(f"/ui/traces/{run}/feedback?tenant=acme", data=case).headers["location"]
    assert "has+this+case+already" in again
    suite = (dash.home.parent / "project" / "evals" / "greet.yaml").read_text()
    assert f"id: fb-{run[:10]}" in suite and "expected: Hi u3" in suite


def test_trace_filters_free_text_cost_latency_and_bad_values(dash: Dash) -> None:
    acme = dash.signed_in("acme")
    assert dash.traces["globex"][:12] not in acme.get("/ui/traces?text=secret+plans").text  # another tenant's
    admin = dash.signed_in("admin")
    found = admin.get("/ui/traces?tenant=*&text=SECRET+plans").text
    assert dash.traces["globex"][:12] in found and dash.traces["acme"][:12] not in found
    assert "No traces match" in admin.get("/ui/traces?tenant=*&text=%25").text  # a LIKE wildcard is a literal
    costly = acme.get("/ui/traces?min_cost=1").text
    assert "No traces match" in costly
    shared = acme.get("/ui/traces?operation=feature&min_latency_ms=0").text
    assert "/ui/traces?operation=feature&amp;min_latency_ms=0.0" in shared  # the link to share this view
    for query, message in (("min_cost=abc", "min_cost must be a number"), ("min_latency_ms=-1", "zero or more"),
                           ("status=bogus", "status must be one of"), ("min_cost=nan", "zero or more")):  # fmt: skip
        bad = acme.get(f"/ui/traces?{query}")
        assert bad.status_code == 400 and message in bad.text, query


def test_the_vendored_htmx_matches_its_recorded_integrity() -> None:
    import base64
    import hashlib
    import json

    static = Path(__file__).parents[2] / "src/keel/server/ui/static"
    asset = json.loads((static / "assets.json").read_text())["htmx.min.js"]
    digest = base64.b64encode(hashlib.sha384((static / "htmx.min.js").read_bytes()).digest()).decode()
    assert asset["integrity"] == f"sha384-{digest}" and asset["package"] == "htmx.org"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is installed by make install-dev")
def test_every_page_in_a_real_browser(dash: Dash, tmp_path: Path) -> None:
    from playwright.sync_api import Page, sync_playwright

    shots = Path(os.environ.get("KEEL_SCREENSHOTS") or tmp_path)  # KEEL_SCREENSHOTS=docs/screenshots refreshes README's
    shots.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []

    def shoot(page: Page, name: str, suffix: str) -> None:
        page.screenshot(path=str(shots / f"{name}{suffix}.png"), full_page=True)

    def go(page: Page, link: str, url: str) -> None:
        page.get_by_role("navigation").get_by_role("link", name=link).click()
        page.wait_for_url(re.compile(url))

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        for width, height, suffix in ((1280, 900, ""), (390, 844, "-phone")):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(dash.base) else None)
            page.goto(f"{dash.base}/ui/overview")
            assert page.url.startswith(f"{dash.base}/ui/login")
            page.get_by_label("API key").fill(dash.keys["acme"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r".*/ui/overview$"))
            assert page.get_by_role("heading", name="Overview").is_visible()
            assert page.get_by_role("link", name="answer").is_visible()  # the split by feature
            page.get_by_label("Split by").select_option("model")
            page.get_by_role("button", name="Show").click()
            page.wait_for_url(re.compile(r".*by=model.*"))
            assert page.get_by_role("cell", name="gpt-4o-mini", exact=True).first.is_visible()
            page.get_by_label("Split by").select_option("feature")
            page.get_by_role("button", name="Show").click()
            page.wait_for_url(re.compile(r".*by=feature.*"))
            shoot(page, "overview", suffix)
            go(page, "Traces", r".*/ui/traces")
            page.get_by_label("Status").select_option("ok")
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url(re.compile(r".*status=ok.*"))
            assert page.get_by_role("link", name=dash.traces["acme"][:12]).is_visible()
            shoot(page, "traces", suffix)
            page.get_by_role("link", name=dash.traces["acme"][:12]).click()
            page.wait_for_url(re.compile(rf".*/ui/traces/{dash.traces['acme']}$"))
            assert page.evaluate("window.pwned") is None  # the planted <script> never ran
            page.get_by_label("Yes").check()
            page.get_by_label("Comment").fill(f"from the browser {width}")
            page.get_by_role("button", name="Send feedback").click()
            page.wait_for_url(re.compile(r".*saved=.*"))
            assert page.get_by_text(f"from the browser {width}").is_visible()
            page.goto(f"{dash.base}/ui/traces/{dash.traces['answer']}")
            assert page.get_by_role("heading", name="Retrieval").is_visible()
            assert page.get_by_role("cell", name="Refunds", exact=True).is_visible()  # a retrieved chunk, titled
            assert page.get_by_role("heading", name="Output guards").is_visible()
            page.get_by_label("Why a person should look").fill(f"check the refund figure {width}")
            page.get_by_role("button", name="Send to review").click()
            page.wait_for_url(re.compile(r".*saved=.*review.*"))
            assert page.get_by_text(re.compile(r"(Sent to|Already in) review \(rev_")).is_visible()
            shoot(page, "trace", suffix)
            go(page, "Failures", r".*/ui/failures$")
            assert page.get_by_role("link", name=dash.traces["failed"][:12]).is_visible()
            shoot(page, "failures", suffix)
            go(page, "Features", r".*/ui/features$")
            page.get_by_role("link", name="greet", exact=True).click()
            page.wait_for_url(re.compile(r".*/ui/features/greet$"))
            assert page.get_by_text("+Greet {{ name }}, warmly").is_visible()  # the diff v1 → v2
            assert page.get_by_role("heading", name="Report: tone").is_visible()
            assert page.get_by_text("Moving a label takes an admin key").is_visible()
            shoot(page, "features", suffix)
            go(page, "Evals", r".*/ui/evals$")
            page.get_by_role("link", name="greet").click()
            page.wait_for_url(re.compile(r".*/ui/evals/greet$"))
            assert page.get_by_text("failed").first.is_visible() and page.get_by_text("passed").first.is_visible()
            page.get_by_role("row").nth(1).get_by_role("link").click()  # the newest run
            page.wait_for_url(re.compile(r".*/ui/evals/greet/[0-9a-f]+.*"))
            assert page.get_by_text("Broke (1):").is_visible()
            frame = page.frame_locator("iframe")
            assert frame.get_by_role("heading", name=re.compile("Worst")).is_visible()
            shoot(page, "evals", suffix)
            go(page, "Review", r".*/ui/review$")
            assert page.get_by_role("link", name="support", exact=True).is_visible()  # the queue's row
            if suffix == "":
                page.get_by_role("link", name=dash.traces["Held Bo"][:16]).click()
            else:  # decided in the first pass: no longer in the pending list
                page.goto(f"{dash.base}/ui/review/{dash.traces['Held Bo']}")
            page.wait_for_url(re.compile(r".*/ui/review/rev_.*"))
            assert page.get_by_role("heading", name="Question").is_visible()
            assert page.get_by_text("You said: Refunds for Held Bo?").is_visible()  # the answer a person checks
            assert page.get_by_role("heading", name="Guards").is_visible()
            if suffix == "":
                page.get_by_role("button", name="Claim").click()
                page.wait_for_url(re.compile(r".*saved=Claimed.*"))
                shoot(page, "review", suffix)
                page.get_by_label("Note (optional)").fill("checked against the handbook")
                page.get_by_role("button", name="Approve").click()
                page.wait_for_url(re.compile(r".*saved=Approved.*"))
                assert page.get_by_text("checked against the handbook").is_visible()
            go(page, "Drift", r".*/ui/drift$")
            page.get_by_role("link", name="greet", exact=True).first.click()
            page.wait_for_url(re.compile(r".*/ui/drift/greet$"))
            assert page.get_by_role("img", name=re.compile("refusal rate")).is_visible()
            shoot(page, "drift", suffix)
            go(page, "Budgets", r".*/ui/budgets$")
            assert page.get_by_role("cell", name="daily", exact=True).first.is_visible()
            shoot(page, "budgets", suffix)
            page.keyboard.press("Tab")  # keyboard navigation reaches the first link
            assert page.evaluate("document.activeElement.tagName") in ("A", "SELECT", "BUTTON", "INPUT")
            page.close()
        browser.close()
    assert outside == []  # nothing loaded from anywhere but this server
