"""The console in a real browser: headless Chromium (Debian's package) driven by Playwright.

A real gateway process gets mixed traffic through the fake upstream (allowed, redacted,
blocked by DLP and by RBAC, an upstream error, a config reload); then the browser logs in,
checks the overview's counts against the events, filters, opens an event, exports CSV and
JSONL, runs verify before and after the test tampers with the SQLite store, and logs out.

Screenshots of every page, at laptop (1366x800) and phone (390x844) widths, are saved to
``test-artifacts/console/``; with ``KT_CONSOLE_DOCS=1`` the README's set is also copied to
``docs/console/`` (then ``pngquant --force --ext .png docs/console/*.png`` keeps them small).

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python
package; never ``playwright install`` (its browser download does not work offline).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from keeptrusts.audit.store import SQLiteAuditStore
from tests.conftest import REPO, base_url_overlay, start_gateway
from tests.console.helpers import history
from tests.fakeprovider import Reply
from tests.policies.test_governance_e2e import CONFIG, SECRET, make_key

CHROMIUM = Path(os.environ.get("KT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "console"
DOCS = REPO / "docs" / "console"
LAPTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
SEEDED = 360  # decisions written into the log before the gateway starts
PAGE = 50  # rows per page by default
LABELS = {"allow": "Allowed", "block": "Blocked", "redact": "Redacted", "error": "Error"}

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs it: a missing browser is a broken CI, not a skip
    pytest.skip(message)


class Site:
    """The gateway under test and every event its log must hold (seeded and live)."""

    def __init__(self, gw: Any, dev_key: str, events: list[dict], request_ids: dict) -> None:
        self.gw = gw
        self.dev_key = dev_key
        self.events = events  # what each event must look like (the fields filters use)
        self.request_ids = request_ids  # label -> request id
        self.token = (gw.state_dir / "admin-token").read_text().strip()

    @property
    def url(self) -> str:
        return self.gw.url

    def n(self, **want: Any) -> int:
        """How many expected events have all the ``want`` fields."""
        return sum(all(e.get(k) == v for k, v in want.items()) for e in self.events)

    @property
    def decisions(self) -> int:
        return self.n(event_type="decision")


def _summary(ev: dict) -> dict:
    ident = ev.get("identity") or {}
    return {
        "event_type": ev["event_type"],
        "verdict": ev["verdict"],
        "policy": ev.get("policy"),
        "reason_code": ev.get("reason_code"),
        "role": ident.get("role"),
        "key_name": ident.get("key_name"),
        "redactions": ev.get("redactions", 0),
    }


def _traffic(gw: Any, fp: Any, dev: str, prod: str) -> tuple[list[dict], dict[str, str]]:
    """Mixed requests through the gateway; returns their expected events and some ids."""
    expected: list[dict] = []
    ids: dict[str, str] = {}
    callers = {dev: ("developer", "developer-key"), prod: ("production", "production-key")}

    def call(key: str, model: str, content: str, verdict: str, *, policy: str | None = None,
             reason: str | None = None, redactions: int = 0, label: str | None = None,
             error: type[Exception] | None = None) -> None:  # fmt: skip
        c = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)
        rid = f"req-console-{len(expected) + 1:02d}"
        msgs = [{"role": "user", "content": content}]
        headers = {"x-request-id": rid}
        if error is None:
            c.chat.completions.create(model=model, messages=msgs, extra_headers=headers)
        else:
            with pytest.raises(error):
                c.chat.completions.create(model=model, messages=msgs, extra_headers=headers)
        role, key_name = callers.get(key, (None, None))
        expected.append(
            {"event_type": "decision", "verdict": verdict, "policy": policy,
             "reason_code": reason, "role": role, "key_name": key_name,
             "redactions": redactions}
        )  # fmt: skip
        if label:
            ids[label] = rid

    # A config reload first: a row on the config page, and an event that is no request.
    r = httpx.post(gw.url + "/keeptrusts/config/reload", headers=gw.admin_headers(), timeout=30)
    assert r.status_code == 200, r.text
    expected.append({"event_type": "config_reload", "verdict": "allow"})
    for i in range(5):
        call(dev, "gpt-4o", f"hello {i}", "allow", reason="all_policies_passed",
             label="allow" if i == 0 else None)  # fmt: skip
    for i in range(3):
        call(prod, "claude-3-5-sonnet-20241022", f"summarise {i}", "allow",
             reason="all_policies_passed")  # fmt: skip
    dlp = {"policy": "dlp-filter", "reason": "dlp_pattern_matched", "error": openai.ConflictError}
    red = {"policy": "dlp-filter", "reason": "dlp_redacted"}
    call(dev, "gpt-4o", "my account is ACCT-12345678", "redact", redactions=1, label="redact",
         **red)  # fmt: skip
    call(prod, "gpt-4o", "ACCT-87654321 and ACCT-11112222", "redact", redactions=2, **red)
    call(dev, "gpt-4o", f"use key {SECRET}", "block", label="dlp", **dlp)
    call(prod, "gpt-4o", f"{SECRET} again", "block", **dlp)
    call(dev, "gpt-4o", "tell me about Project Nightingale", "block", **dlp)
    call(dev, "claude-3-5-sonnet-20241022", "hi", "block", policy="rbac", reason="rbac_denied",
         label="rbac", error=openai.PermissionDeniedError)  # fmt: skip
    call("unused", "gpt-4o", "who am I", "block", policy="rbac", reason="missing_identity",
         error=openai.PermissionDeniedError)  # fmt: skip
    fp.enqueue(Reply(status=500, times=1))
    call(dev, "gpt-4o", "this one fails upstream", "error", reason="server_error",
         label="error", error=openai.InternalServerError)  # fmt: skip
    return expected, ids


def _wait_for_events(gw: Any, n: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = httpx.get(
            gw.url + "/keeptrusts/events", params={"limit": 5000}, headers=gw.admin_headers()
        )
        if len(r.json()["data"]) >= n:
            return r.json()["data"]
        time.sleep(0.05)
    raise AssertionError(f"the audit log did not reach {n} events")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fake: Any) -> Iterator[Site]:
    _require_chromium()
    fake.reset()
    tmp = tmp_path_factory.mktemp("console")
    state = tmp / "state"
    # A day of earlier traffic, written straight into the store the gateway will open.
    seeded = history(SEEDED, now=time.time())
    store = SQLiteAuditStore(state)
    store.append(seeded)
    store.close()
    dev = make_key(state, "developer")
    prod = make_key(state, "production")
    gw = start_gateway(tmp, [CONFIG, base_url_overlay(tmp, CONFIG, fake.url)], state_dir=state)
    try:
        live, ids = _traffic(gw, fake, dev["key"], prod["key"])
        expected = [_summary(e) for e in seeded] + live
        logged = _wait_for_events(gw, len(expected))
        assert len(logged) == len(expected)
        # The live traffic logged what the test expects (the fields the console filters on).
        for want, got in zip(live, reversed(logged[: len(live)]), strict=True):
            got_s = _summary(got)
            assert {k: got_s[k] for k in want} == want, (want, got_s)
        yield Site(gw, dev["key"], expected, ids)
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _context(browser: Any, site: Site, viewport: dict[str, int]) -> Any:
    ctx = browser.new_context(
        viewport=viewport,
        accept_downloads=True,
        base_url=site.url,
        locale="en-GB",
        timezone_id="UTC",
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    # No CDN, no third party: every request the console makes goes to the gateway.
    foreign: list[str] = []
    ctx.on(
        "request",
        lambda req: (
            None if req.url.startswith((site.url, "data:", "about:")) else foreign.append(req.url)
        ),
    )
    ctx.foreign = foreign  # type: ignore[attr-defined]
    return ctx


def _shot(page: Any, name: str, *, docs: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if docs and os.environ.get("KT_CONSOLE_DOCS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / f"{name}.png")


def _login(page: Any, site: Site, start: str = "/console") -> None:
    page.goto(start)
    assert "/console/login" in page.url
    page.get_by_label("Admin token").fill(site.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda u: "/console/login" not in u)
    assert site.token not in page.url


def _tile(page: Any, key: str) -> int:
    return int(page.locator(f'[data-tile="{key}"]').inner_text().replace(",", ""))


def _count(page: Any) -> int:
    return int(page.locator("#result-count [data-count]").get_attribute("data-count"))


def _rows(page: Any) -> list[list[str]]:
    return [
        [c.strip() for c in row.locator("td").all_inner_texts()]
        for row in page.locator("table.events tbody tr").all()
        if row.locator("td.empty").count() == 0
    ]


def test_login_overview_filter_event_export_config(browser: Any, site: Site) -> None:
    ctx = _context(browser, site, LAPTOP)
    page = ctx.new_page()

    # -- log in: a form, the token never in a URL; an HttpOnly, SameSite=Strict cookie ----
    page.goto("/console/events")
    assert "/console/login" in page.url
    _shot(page, "login-laptop")
    page.get_by_label("Admin token").fill("kta_wrong-token")
    page.get_by_role("button", name="Sign in").click()
    assert "not this gateway's admin token" in page.locator(".notice-error").inner_text()
    page.get_by_label("Admin token").fill(site.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/events")  # back where the login started
    cookie = next(c for c in ctx.cookies() if c["name"] == "kt_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert site.token not in cookie["value"]

    # -- overview: the tiles match the traffic and the events behind them ---------------------
    page.goto("/console")
    decisions = site.decisions
    assert _tile(page, "requests") == decisions
    for verdict in ("block", "redact", "error"):
        assert _tile(page, verdict) == site.n(event_type="decision", verdict=verdict), verdict
    redacted = sum(e.get("redactions") or 0 for e in site.events)
    assert f"{redacted} values redacted" in page.locator(".tile-redact").inner_text()
    assert page.locator("svg.chart rect.bar-block").count() >= 1
    health = page.locator("#health-title + p + .table-wrap table")
    assert "openai-gpt4o" in health.inner_text() and "closed" in health.inner_text()
    policy_table = page.locator("#by-policy ~ .table-wrap table").inner_text()
    assert "dlp-filter" in policy_table and "rbac" in policy_table
    assert "production" in page.locator("#by-role ~ .table-wrap table").inner_text()
    _shot(page, "overview-laptop")
    for key, verdict in (("block", "block"), ("redact", "redact"), ("error", "error")):
        page.goto("/console")
        page.locator(f".tile-{key} a").click()
        page.wait_for_url("**/console/events?**")
        count = site.n(event_type="decision", verdict=verdict)
        assert _count(page) == count, key
        rows = _rows(page)
        assert len(rows) == min(count, PAGE) and {r[2] for r in rows} == {LABELS[verdict]}
    page.goto("/console")
    page.locator(".tile-requests a").click()
    assert _count(page) == decisions and len(_rows(page)) == PAGE
    # Everything in the log, including the reload event that is not a request.
    page.goto("/console/events")
    assert _count(page) == decisions + 1

    # -- filter with the form -----------------------------------------------------------------
    page.get_by_label("Verdict").select_option("block")
    page.get_by_label("Policy").fill("dlp-filter")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**verdict=block**")
    assert "policy=dlp-filter" in page.url and "q=" not in page.url  # empty fields left out
    rows = _rows(page)
    count = site.n(verdict="block", policy="dlp-filter")
    assert _count(page) == count and len(rows) == min(count, PAGE)
    assert all(r[2] == "Blocked" and r[4] == "dlp-filter" for r in rows)
    page.get_by_label("Role or key name").fill("production-key")
    page.get_by_role("button", name="Apply filters").click()
    count = site.n(verdict="block", policy="dlp-filter", key_name="production-key")
    assert _count(page) == count and len(_rows(page)) == min(count, PAGE)
    assert "production-key" in page.locator("table.events tbody").inner_text()
    page.get_by_label("Role or key name").fill("analyst")  # a role this time
    page.get_by_role("button", name="Apply filters").click()
    assert _count(page) == site.n(verdict="block", policy="dlp-filter", role="analyst")
    page.goto("/console/events?limit=20")
    _shot(page, "events-laptop")
    page.goto("/console/events")
    page.get_by_label("Request or event ID").fill(site.request_ids["redact"])
    page.get_by_role("button", name="Apply filters").click()
    assert [r[2] for r in _rows(page)] == ["Redacted"]
    page.goto("/console/events")
    page.get_by_label("Search").fill("RBAC_DEN")  # case-insensitive substring
    page.get_by_role("button", name="Apply filters").click()
    assert _count(page) == site.n(reason_code="rbac_denied")
    assert {r[3] for r in _rows(page)} == {"rbac_denied"}
    page.goto("/console/events")
    page.get_by_label("From").fill("not a time")
    page.get_by_role("button", name="Apply filters").click()
    assert "invalid time" in page.locator(".notice-error").inner_text()

    # -- keyset paging ----------------------------------------------------------------------------
    page.goto("/console/events?limit=5")
    first = [r[0] for r in _rows(page)]
    page.get_by_role("link", name="Older").click()
    second = [r[0] for r in _rows(page)]
    assert len(first) == len(second) == 5 and int(first[-1]) > int(second[0])
    page.get_by_role("link", name="Newer").click()
    assert [r[0] for r in _rows(page)] == first

    # -- one event: every policy result, attempt, redaction count; no secret ---------------
    page.goto("/console/events?" + f"request={site.request_ids['dlp']}")
    page.locator("table.events tbody a").first.click()
    page.wait_for_url("**/console/events/*")
    results = page.locator("#policies-title ~ .table-wrap table").inner_text()
    assert "dlp-filter" in results and "api-key: 1" in results and "Skipped" in results
    assert "dlp_pattern_matched" in page.locator(".kv").first.inner_text()
    html = page.content()
    assert SECRET not in html and site.dev_key not in html and site.token not in html
    _shot(page, "event-laptop")
    page.get_by_role("link", name="Back to events").click()
    assert "request=" in page.url
    page.goto("/console/events?" + f"request={site.request_ids['redact']}")
    page.locator("table.events tbody a").first.click()
    assert "ACCT-12345678" not in page.content()
    redactions = page.locator("dt:text-is('Redactions') + dd").inner_text()
    assert redactions == "1"
    page.goto("/console/events?" + f"request={site.request_ids['error']}")
    page.locator("table.events tbody a").first.click()
    attempts = page.locator("#attempts-title ~ .table-wrap table").inner_text()
    assert "500" in attempts and "openai-gpt4o" in attempts

    # -- export the current filter ------------------------------------------------------------
    page.goto("/console/events?verdict=block&type=decision")
    with page.expect_download() as dl:
        page.get_by_role("link", name="CSV").click()
    path = dl.value.path()
    assert dl.value.suggested_filename.endswith(".csv")
    rows_csv = list(csv.DictReader(io.StringIO(Path(path).read_text("utf-8"))))
    assert len(rows_csv) == site.n(event_type="decision", verdict="block")
    assert {r["verdict"] for r in rows_csv} == {"block"}
    assert {"seq", "hash", "reason_code", "role"} <= set(rows_csv[0])
    seqs = [int(r["seq"]) for r in rows_csv]
    assert seqs == sorted(seqs)  # chain order
    with page.expect_download() as dl:
        page.get_by_role("link", name="JSONL").click()
    lines = Path(dl.value.path()).read_text("utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == seqs and all(len(e["hash"]) == 64 for e in events)
    text = Path(dl.value.path()).read_text("utf-8")
    assert SECRET not in text and site.dev_key not in text
    # An export of the whole log lets an auditor check the chain without the gateway.
    page.goto("/console/events")
    with page.expect_download() as dl:
        page.get_by_role("link", name="JSONL").click()
    check = subprocess.run(
        [sys.executable, "-m", "keeptrusts.cli.main", "events", "verify", "--file",
         dl.value.path()],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{len(site.events)} events verified" in check.stdout

    # -- config: the pack, chain and targets, secrets redacted; the reload history ----------
    page.goto("/console/config")
    body = page.locator("main").inner_text()
    assert "governed-test" in body and "2.0.0" in body
    assert page.locator("ol.chain li").all_inner_texts() == ["dlp-filter", "rbac", "audit-logger"]
    assert "$OPENAI_API_KEY" in body and "sk-test-openai-secret" not in page.content()
    reloads = page.locator("#reloads-title ~ .table-wrap table tbody tr")
    assert reloads.count() == 1 and "applied" in reloads.first.inner_text()
    _shot(page, "config-laptop")

    assert ctx.foreign == [], ctx.foreign  # type: ignore[attr-defined]
    ctx.close()


def test_phone_width_and_keyboard(browser: Any, site: Site) -> None:
    ctx = _context(browser, site, PHONE)
    page = ctx.new_page()
    # Keyboard only: the token field has focus on arrival, Enter signs in.
    page.goto("/console")
    assert "/console/login" in page.url
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(site.token)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console")
    # The first Tab reaches the skip link, which moves focus to the page's content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")  # then on into the content, never back into the header
    assert page.evaluate("document.getElementById('main').contains(document.activeElement)")

    pages = {
        "overview": "/console",
        "events": "/console/events",
        "event": None,
        "integrity": "/console/integrity",
        "config": "/console/config",
    }
    for name, path in pages.items():
        if path is None:
            page.goto(f"/console/events?request={site.request_ids['dlp']}")
            page.locator("table.events tbody a").first.click()
            page.wait_for_url("**/console/events/*")
        else:
            page.goto(path)
        # Nothing wider than the phone: wide tables scroll inside their own region.
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} overflows the phone width by {overflow}px"
        # Every visible form control has a label.
        unlabeled = page.evaluate(
            """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
               .filter(e => !e.labels || e.labels.length === 0).map(e => e.name)"""
        )
        assert unlabeled == [], (name, unlabeled)
        _shot(page, f"{name}-phone", docs=name in ("overview", "events"))

    # The events table: the seq link of a row is reachable by keyboard and opens the event.
    page.goto("/console/events")
    link = page.locator("table.events tbody a").first
    link.focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/events/*")
    assert ctx.foreign == [], ctx.foreign  # type: ignore[attr-defined]
    ctx.close()


def test_verify_then_tamper_then_logout(browser: Any, site: Site) -> None:
    ctx = _context(browser, site, LAPTOP)
    page = ctx.new_page()
    _login(page, site, "/console/integrity")
    result = page.locator("#verify-result")
    assert result.get_attribute("aria-live") == "polite"
    page.get_by_role("button", name="Run verification").click()
    ok = result.locator('[data-verify="ok"]')
    ok.wait_for()
    assert f"{len(site.events)} events verified" in ok.inner_text()
    _shot(page, "integrity-laptop")

    # Tamper with the store behind the gateway's back: blocked request seq 3 now says allowed.
    db = sqlite3.connect(site.gw.state_dir / "audit.db")
    db.execute("UPDATE events SET body = replace(body, 'block', 'allow') WHERE seq = 3")
    db.commit()
    db.close()
    page.get_by_role("button", name="Run verification").click()
    bad = result.locator('[data-verify="failed"]')
    bad.wait_for()
    assert bad.locator("[data-bad-seq]").get_attribute("data-bad-seq") == "3"
    _shot(page, "integrity-failed-laptop")
    page.get_by_role("link", name="Open the first bad event").click()
    page.wait_for_url("**/console/events/3")
    # Without JavaScript the form still works (a full page POST).
    nojs = browser.new_context(java_script_enabled=False, base_url=site.url, viewport=LAPTOP)
    nojs.add_cookies(ctx.cookies())
    p2 = nojs.new_page()
    p2.goto("/console/integrity")
    p2.get_by_role("button", name="Run verification").click()
    p2.locator('[data-verify="failed"]').wait_for()
    nojs.close()

    # Log out: the session is gone on the server, not only in this browser.
    cookie = next(c for c in ctx.cookies() if c["name"] == "kt_console")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/console/login?bye=1")
    assert "signed out" in page.locator(".notice").inner_text()
    page.goto("/console")
    assert "/console/login" in page.url
    r = httpx.get(
        site.url + "/console", cookies={"kt_console": cookie["value"]}, follow_redirects=False
    )
    assert r.status_code == 303 and "/console/login" in r.headers["location"]
    ctx.close()
