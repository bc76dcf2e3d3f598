"""The dashboard at /ui over real HTTP, and in a real headless browser (Debian's chromium driven by
Playwright, never a downloaded browser): sign-in, sessions, CSRF, tenants, escaping, and every page
rendering data that real requests made."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from keel.store import Store, db_path
from keel.testing import Fault
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

    def signed_in(self, who: str) -> httpx.Client:
        client = httpx.Client(base_url=self.base, follow_redirects=False, timeout=30)
        r = client.post("/ui/login", data={"key": self.keys[who], "next": "/ui/traces"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/traces", r.text
        return client


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    def config(root: Path, url: str) -> str:
        return (
            f"project_root: '{root}'\ndeployments:\n  up: {{provider: openai, model: gpt-4o-mini, "
            f"base_url: '{url}'}}\nmodels:\n  up: {{deployments: [up]}}\n"
        )

    with greet_server(tmp_path_factory.mktemp("dash"), config) as (server, home, upstream):
        keys = {
            "acme": new_key(home, "acme")[0],
            "globex": new_key(home, "globex")[0],
            "admin": new_key(home, "ops", role="admin")[0],
        }
        api = server.base_url
        traces = {}
        for who, text in (("acme", f"hello {SCRIPT}"), ("globex", "globex secret plans")):
            r = httpx.post(
                f"{api}/chat/completions",
                json={"model": "up", "messages": [{"role": "user", "content": text}]},
                headers={"authorization": f"Bearer {keys[who]}"},
                timeout=30,
            )
            assert r.status_code == 200
            traces[who] = r.headers["x-keel-trace-id"]
        run = httpx.post(
            f"{api}/features/greet/run", json={"inputs": {"name": "Ada"}},
            headers={"authorization": f"Bearer {keys['acme']}"}, timeout=30,
        )  # fmt: skip
        traces["run"] = run.json()["trace_id"]
        upstream.inject(Fault.status_code(500), Fault.status_code(500), Fault.status_code(500))
        failed = httpx.post(
            f"{api}/chat/completions", json={"model": "up", "messages": [{"role": "user", "content": "x"}]},
            headers={"authorization": f"Bearer {keys['acme']}"}, timeout=30,
        )  # fmt: skip
        assert failed.status_code >= 500
        traces["failed"] = failed.headers["x-keel-trace-id"]
        assert server.app.service.writer is not None and server.app.service.writer.flush()
        yield Dash(server, api.removesuffix("/v1"), keys, home, traces)


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
    assert "Calls in this run" in run  # a feature run lists its calls


def test_failures_are_grouped_with_an_example(dash: Dash) -> None:
    client = dash.signed_in("acme")
    page = client.get("/ui/failures")
    assert page.status_code == 200
    assert "UpstreamUnavailable" in page.text and dash.traces["failed"][:12] in page.text
    assert "<svg" in page.text  # the daily sparkline
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
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("KEEL_SCREENSHOTS") or tmp_path)  # KEEL_SCREENSHOTS=docs/screenshots refreshes README's
    shots.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []
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
            page.screenshot(path=str(shots / f"overview{suffix}.png"), full_page=True)
            page.get_by_role("link", name="Traces").click()
            page.wait_for_url(re.compile(r".*/ui/traces"))
            page.get_by_label("Status").select_option("ok")
            page.get_by_role("button", name="Filter").click()
            page.wait_for_url(re.compile(r".*status=ok.*"))
            assert page.get_by_role("link", name=dash.traces["acme"][:12]).is_visible()
            page.screenshot(path=str(shots / f"traces{suffix}.png"), full_page=True)
            page.get_by_role("link", name=dash.traces["acme"][:12]).click()
            page.wait_for_url(re.compile(rf".*/ui/traces/{dash.traces['acme']}$"))
            assert page.evaluate("window.pwned") is None  # the planted <script> never ran
            page.get_by_label("Yes").check()
            page.get_by_label("Comment").fill(f"from the browser {width}")
            page.get_by_role("button", name="Send feedback").click()
            page.wait_for_url(re.compile(r".*saved=1$"))
            assert page.get_by_text(f"from the browser {width}").is_visible()
            page.screenshot(path=str(shots / f"trace{suffix}.png"), full_page=True)
            page.get_by_role("link", name="Failures").click()
            page.wait_for_url(re.compile(r".*/ui/failures$"))
            assert page.get_by_role("link", name=dash.traces["failed"][:12]).is_visible()
            page.screenshot(path=str(shots / f"failures{suffix}.png"), full_page=True)
            page.keyboard.press("Tab")  # keyboard navigation reaches the first link
            assert page.evaluate("document.activeElement.tagName") in ("A", "SELECT", "BUTTON", "INPUT")
            page.close()
        browser.close()
    assert outside == []  # nothing loaded from anywhere but this server
