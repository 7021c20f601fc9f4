"""The console over HTTP without a browser: login, sessions, CSRF, headers, pages, export."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from keeptrusts.audit.event import iso_utc
from keeptrusts.audit.query import EventQuery
from keeptrusts.audit.sink import AuditSink
from keeptrusts.audit.store import SQLiteAuditStore
from keeptrusts.config.load import load_config
from keeptrusts.console import CONSOLE_KEY, add_console_routes
from keeptrusts.console.sessions import MAX_FAILURES, Sessions

from .helpers import history

TOKEN = "kta_console-test-token-0123456789"
ENV_KEY = "sk-env-secret-value-4444"
INLINE_KEY = "sk-inline-secret-value-5555"


def _config(tmp_path: Path) -> Any:
    doc = {
        "pack": {"name": "console-test", "version": "3.1.4", "enabled": True},
        "providers": {
            "targets": [
                {
                    "id": "openai-gpt4o",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "secret_key_ref": {"env": "OPENAI_API_KEY"},
                },
                {
                    "id": "inline",
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "base_url": "https://user:pw-secret@llm.example.com/v1",
                    "api_key": INLINE_KEY,
                },
            ]
        },
        "policies": {"chain": ["dlp-filter"]},
        "policy": {"dlp-filter": {"blocked_terms": ["Project Nightingale"]}},
    }
    path = tmp_path / "console-config.yaml"
    path.write_text(yaml.safe_dump(doc))
    config, problems = load_config([path], env={"OPENAI_API_KEY": ENV_KEY})
    assert config is not None, problems
    policy = {**config.policy, "webhook": {"url": "https://hook.example", "token": "hook-secret-7"}}
    return dataclasses.replace(config, policy=policy)


class FakeGateway:
    """What the console reads from a ``Gateway``."""

    def __init__(self, sink: AuditSink | None, config: Any, token: str | None = TOKEN) -> None:
        self.settings = SimpleNamespace(admin_token=token)
        self.audit = sink
        self.config = config
        self.reloads = [
            {"timestamp": iso_utc(time.time() - 60), "who": "SIGHUP", "ok": False,
             "previous_pack": "console-test@3.1.3", "pack": "console-test@3.1.3",
             "problems": ["policy.dlp-filter: bad regex"]},
            {"timestamp": iso_utc(time.time()), "who": "admin-api (127.0.0.1)", "ok": True,
             "previous_pack": "console-test@3.1.3", "pack": "console-test@3.1.4", "problems": []},
        ]  # fmt: skip
        snap = {
            "provider": "openai",
            "model": "gpt-4o",
            "status": "available",
            "requests": 12,
            "errors": {"timeout": 2},
            "errors_total": 2,
            "retries": 1,
            "latency_ms": {"p50": 210.0, "p99": 900.5, "samples": 12},
            "in_flight": 0,
            "breaker": {"state": "half_open"},
        }
        self.router = SimpleNamespace(
            metrics=lambda: {"targets": {"openai-gpt4o": snap}},
            breaker_states=lambda: {"openai-gpt4o": "half_open", "inline": "closed"},
        )

    def health(self) -> dict[str, Any]:
        return {
            "status": "degraded",
            "pack": str(self.config.pack),
            "uptime_seconds": 3723,
            "requests_processed": 12,
        }


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[tuple[TestClient, FakeGateway]]:
    store = SQLiteAuditStore(tmp_path / "state")
    sink = AuditSink(store, flush_interval=0.005)
    for ev in history(120, now=time.time(), seed=5):
        sink.submit(ev)
    await sink.aflush()
    gw = FakeGateway(sink, _config(tmp_path))
    app = web.Application()
    add_console_routes(app, lambda: gw)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, gw
    await client.close()
    await sink.aclose()


async def _nonce(client: TestClient, next_: str = "/console") -> str:
    r = await client.get("/console/login", params={"next": next_})
    return re.search(r'name="nonce" value="([^"]+)"', await r.text()).group(1)


async def _login(client: TestClient, token: str = TOKEN, next_: str = "/console") -> Any:
    nonce = await _nonce(client, next_)
    return await client.post(
        "/console/login",
        data={"token": token, "nonce": nonce, "next": next_},
        allow_redirects=False,
    )


async def _csrf(client: TestClient) -> str:
    r = await client.get("/console/integrity")
    return re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)


PAGES = ("/console", "/console/events", "/console/events/1", "/console/integrity",
         "/console/config", "/console/export?format=csv")  # fmt: skip


async def test_every_page_needs_a_session(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    for path in PAGES:
        r = await client.get(path, allow_redirects=False)
        assert r.status == 303, path
        assert r.headers["Location"].startswith("/console/login?next=%2Fconsole"), path
    # A token in the URL is never accepted (nor needed).
    r = await client.get("/console", params={"token": TOKEN}, allow_redirects=False)
    assert r.status == 303
    r = await client.post("/console/integrity", data={"csrf": "x"}, allow_redirects=False)
    assert r.status == 403


async def test_login_sets_a_strict_httponly_session_cookie(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    r = await _login(client, next_="/console/events?verdict=block")
    assert r.status == 303 and r.headers["Location"] == "/console/events?verdict=block"
    cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith("kt_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert TOKEN not in cookie
    for path in PAGES:
        r = await client.get(path, allow_redirects=False)
        assert r.status == 200, path
    # Logged in, the login page sends you on.
    r = await client.get("/console/login", allow_redirects=False)
    assert r.status == 303


@pytest.mark.parametrize(
    "next_", ["//evil.example/console", "https://evil.example/console", "/elsewhere", "/console\\x"]
)
async def test_login_never_redirects_off_the_console(console, next_: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    r = await _login(client, next_=next_)
    assert r.status == 303 and r.headers["Location"] == "/console"


async def test_login_rejects_wrong_token_and_a_form_from_elsewhere(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    r = await _login(client, token="kta_wrong")
    assert r.status == 401 and "not this gateway" in await r.text()
    assert "kt_console=" not in "".join(r.headers.getall("Set-Cookie", []))
    # No nonce cookie (a form posted from another page or site): refused.
    client.session.cookie_jar.clear()
    r = await client.post("/console/login", data={"token": TOKEN, "nonce": "x"})
    assert r.status == 400
    nonce = await _nonce(client)
    r = await client.post(
        "/console/login",
        data={"token": TOKEN, "nonce": nonce},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert r.status == 400


async def test_failed_logins_are_throttled(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    for _ in range(MAX_FAILURES):
        assert (await _login(client, token="kta_guess")).status == 401
    r = await _login(client)  # even the right token waits now
    assert r.status == 429 and "Wait a minute" in await r.text()


async def test_posts_need_the_csrf_token_and_same_origin(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    await _login(client)
    csrf = await _csrf(client)
    assert (await client.post("/console/integrity", data={})).status == 403
    assert (await client.post("/console/integrity", data={"csrf": "nope"})).status == 403
    r = await client.post(
        "/console/integrity", data={"csrf": csrf}, headers={"Origin": "https://evil.example"}
    )
    assert r.status == 403
    r = await client.post("/console/integrity", data={"csrf": csrf})
    assert r.status == 200 and 'data-verify="ok"' in await r.text()
    r = await client.post(
        "/console/integrity", data={"csrf": csrf}, headers={"X-Console-Fragment": "verify"}
    )
    text = await r.text()
    assert text.startswith('<div class="verdict-box verdict-ok"') and "120 events" in text


async def test_logout_ends_the_session_on_the_server(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    await _login(client)
    sid = next(c.value for c in client.session.cookie_jar if c.key == "kt_console")
    csrf = await _csrf(client)
    r = await client.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/login?bye=1"
    client.session.cookie_jar.update_cookies({"kt_console": sid})  # a copied cookie
    r = await client.get("/console", allow_redirects=False)
    assert r.status == 303


async def test_sessions_expire_and_end_when_the_admin_token_changes(console) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    s = Sessions(ttl=60, clock=lambda: now[0])
    sid, _ = s.create("tok-1")
    assert s.get(sid, "tok-1") is not None
    assert s.get(sid, "tok-2") is None and s.get(sid, "tok-1") is None  # dropped for good
    sid, _ = s.create("tok-1")
    now[0] += 61
    assert s.get(sid, "tok-1") is None
    s = Sessions(max_sessions=3)
    sids = [s.create("t")[0] for _ in range(5)]
    assert len(s) == 3 and s.get(sids[0], "t") is None and s.get(sids[-1], "t") is not None
    # Through the app: a rotated admin token logs everyone out.
    client, gw = console
    await _login(client)
    assert (await client.get("/console", allow_redirects=False)).status == 200
    gw.settings.admin_token = "kta_rotated"
    assert (await client.get("/console", allow_redirects=False)).status == 303


async def test_security_headers_and_packaged_assets(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    r = await client.get("/console/login")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"
    html = await r.text()
    assert "<script>" not in html and " style=" not in html  # nothing inline for the CSP
    assert "http://" not in html and "https://" not in html  # no CDN, no external asset
    for name, ctype in (("console.css", "text/css"), ("console.js", "text/javascript")):
        assert f"/console/static/{name}?v=" in html
        s = await client.get(f"/console/static/{name}")
        assert s.status == 200 and s.content_type == ctype and len(await s.read()) > 500
        assert "http" not in (await s.text()).replace("http-equiv", "")
    assert (await client.get("/console/static/../__init__.py")).status == 404
    assert (await client.get("/console/static/nope.js")).status == 404


async def test_overview_shows_counts_breakdowns_and_health(console) -> None:  # type: ignore[no-untyped-def]
    client, gw = console
    await _login(client)
    r = await client.get("/console", params={"window": "24h"})
    html = await r.text()
    events = gw.audit.store.list_events(EventQuery(limit=None))
    blocks = sum(e["verdict"] == "block" for e in events)
    assert f'data-tile="requests">{len(events)}<' in html
    assert f'data-tile="block">{blocks}<' in html
    assert "<svg" in html and 'role="img"' in html and "<desc" in html
    assert "half open" in html and "degraded" in html and "timeout: 2" in html
    assert 'id="by-policy"' in html and "dlp-filter" in html and "analytics-batch" not in html
    r = await client.get("/console", params={"window": "bogus"})
    assert r.status == 200 and 'value="24h" selected' in await r.text()


async def test_events_filter_page_and_escape(console) -> None:  # type: ignore[no-untyped-def]
    client, gw = console
    gw.audit.submit(
        {
            "event_type": "decision",
            "timestamp": iso_utc(time.time()),
            "verdict": "block",
            "reason_code": "<b>bold</b>",
            "model": "<script>alert(1)</script>",
            "request_id": "req-xss",
        }
    )
    await gw.audit.aflush()
    await _login(client)
    r = await client.get("/console/events", params={"request": "req-xss"})
    html = await r.text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-count="1"' in html
    r = await client.get("/console/events", params={"verdict": "block", "limit": "5"})
    html = await r.text()
    assert html.count('class="v-block"') == 5 and 'rel="next"' in html
    r = await client.get("/console/events", params={"since": "soon"})
    assert r.status == 200 and "invalid time" in await r.text()
    assert (await client.get("/console/events/99999")).status == 404


async def test_event_detail_shows_results_and_masks_secret_looking_text(console) -> None:  # type: ignore[no-untyped-def]
    client, gw = console
    gw.audit.submit(
        {
            "event_type": "decision",
            "timestamp": iso_utc(time.time()),
            "verdict": "error",
            "reason_code": "server_error",
            "request_id": "req-secretish",
            "error": "upstream said: invalid key sk-live-abcdefgh12345678 for bob@example.com",
            "policy_results": [
                {
                    "name": "pii-detector",
                    "phase": "input",
                    "verdict": "redact",
                    "reason_code": "pii",
                    "findings": {"EMAIL": 2},
                    "score": 0.93,
                    "latency_ms": 1.2,
                }
            ],
            "attempts": [
                {
                    "target_id": "t1",
                    "provider": "openai",
                    "outcome": "http_error",
                    "status": 401,
                    "latency_ms": 33.0,
                }
            ],
            "redactions": 2,
            "webhook": {"token": "tok-should-not-show", "url": "https://x.example"},
        }
    )
    await gw.audit.aflush()
    await _login(client)
    events = await client.get("/console/events", params={"request": "req-secretish"})
    seq = re.search(r'href="/console/events/(\d+)', await events.text()).group(1)
    html = await (await client.get(f"/console/events/{seq}")).text()
    for secret in ("sk-live-abcdefgh12345678", "bob@example.com", "tok-should-not-show"):
        assert secret not in html
    assert "[REDACTED]" in html
    assert "pii-detector" in html and "EMAIL: 2" in html and "0.93" in html
    assert "http_error" in html and "401" in html


async def test_export_follows_the_filter_and_defuses_formulas(console) -> None:  # type: ignore[no-untyped-def]
    client, gw = console
    gw.audit.submit(
        {
            "event_type": "decision",
            "timestamp": iso_utc(time.time()),
            "verdict": "block",
            "reason_code": "x",
            "model": '=HYPERLINK("http://evil")',
        }
    )
    await gw.audit.aflush()
    await _login(client)
    r = await client.get("/console/export", params={"format": "csv", "verdict": "block"})
    assert r.status == 200 and r.headers["Content-Disposition"].startswith("attachment;")
    assert r.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await r.text())))
    everything = gw.audit.store.list_events(EventQuery(limit=None, order="asc"))
    stored = [e for e in everything if e.get("verdict") == "block"]
    assert [int(row["seq"]) for row in rows] == [e["seq"] for e in stored]
    assert rows[-1]["model"].startswith("'=")  # never a live formula in a spreadsheet
    r = await client.get("/console/export", params={"format": "jsonl", "q": "rbac"})
    lines = [orjson.loads(line) for line in (await r.read()).splitlines()]
    assert lines and all("rbac" in orjson.dumps(e).decode() for e in lines)
    assert (await client.get("/console/export", params={"format": "xml"})).status == 400


async def test_config_page_redacts_secrets_and_lists_reloads(console) -> None:  # type: ignore[no-untyped-def]
    client, _ = console
    await _login(client)
    html = await (await client.get("/console/config")).text()
    assert "console-test" in html and "3.1.4" in html and "dlp-filter" in html
    assert "$OPENAI_API_KEY" in html and "[REDACTED]" in html
    for secret in (ENV_KEY, INLINE_KEY, "pw-secret", "hook-secret-7"):
        assert secret not in html
    assert "refused" in html and "bad regex" in html and "applied" in html
    assert "console-config.yaml" in html and str(Path.cwd()) not in html


async def test_tampered_and_unreadable_rows_keep_the_pages_working(console) -> None:  # type: ignore[no-untyped-def]
    client, gw = console
    db = sqlite3.connect(gw.audit.store.path)
    db.execute("UPDATE events SET body = X'7b6e6f7420a0' WHERE seq = 7")
    db.commit()
    db.close()
    await _login(client)
    for path in ("/console", "/console/events", "/console/events?policy=rbac",
                 "/console/events?q=abc", "/console/events/7"):  # fmt: skip
        assert (await client.get(path)).status == 200, path
    csrf = await _csrf(client)
    html = await (await client.post("/console/integrity", data={"csrf": csrf})).text()
    assert 'data-bad-seq="7"' in html and 'href="/console/events/7"' in html


async def test_without_an_audit_log_or_an_admin_token(tmp_path: Path) -> None:
    gw = FakeGateway(None, _config(tmp_path))
    app = web.Application()
    add_console_routes(app, lambda: gw)
    async with TestClient(TestServer(app)) as client:
        await _login(client)
        r = await client.get("/console/events")
        assert r.status == 503 and "not enabled" in await r.text()
        assert (await client.get("/console/config")).status == 200
        gw.settings.admin_token = None
        r = await client.get("/console/login")
        assert "console is disabled" in await r.text()
        assert (await _login(client, token="")).status == 401


async def test_a_store_that_cannot_be_read_is_a_503_page(console, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client, gw = console
    await _login(client)
    console_state = client.server.app[CONSOLE_KEY]
    q = console_state.queries(gw)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(q, "page", broken)
    r = await client.get("/console/events")
    assert r.status == 503 and "disk I/O error" in await r.text()
    assert (await client.get("/console/config")).status == 200  # the rest still works
