"""The console's request handlers: login, overview, events, integrity, export, config.

Pages are rendered on the server from the packaged templates. Every read of the audit log
runs in a worker thread (``asyncio.to_thread``), so the event loop that serves LLM traffic
never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
from aiohttp import web

from keeptrusts.audit.query import VERDICTS, iso
from keeptrusts.console import render as r
from keeptrusts.console.chart import SERIES, bucket_range, chart_svg, series_present
from keeptrusts.console.filters import EVENT_TYPES, TEXT_FILTERS, EventFilter
from keeptrusts.console.queries import (
    COUNT_CAP,
    DEFAULT_WINDOW,
    WINDOWS,
    EventQueries,
    Overview,
    SQLiteEventQueries,
    queries_for,
)
from keeptrusts.console.sessions import (
    COOKIE,
    COOKIE_PATH,
    LOGIN_COOKIE,
    Session,
    Sessions,
    csrf_ok,
)

log = logging.getLogger("keeptrusts.console")

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
EXPORT_BATCH = 1000
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
}

Page = Callable[[web.Request, Any, Session], Awaitable[web.StreamResponse]]


class Unavailable(Exception):
    """The gateway cannot answer this page (no audit log); shown as a 503 page."""


def secure(resp: web.StreamResponse) -> web.StreamResponse:
    for k, v in SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    return resp


def html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def safe_next(value: str | None) -> str:
    """A console path to go to after login (never another site)."""
    if not value or not value.startswith("/console") or "\\" in value:
        return "/console"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "/console"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console"):
        return "/console"
    return value


def _same_origin(request: web.Request) -> bool:
    """False when the browser says the POST comes from another site (an absent or opaque
    ``null`` origin is left to the CSRF token and the SameSite cookie)."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return True
    return urlsplit(origin).netloc == request.host


def _store_error(exc: BaseException) -> bool:
    """An error of the audit store (SQLite, or PostgreSQL down): a 503 page, not a 500."""
    from keeptrusts.audit.pgdb import DatabaseError

    if isinstance(exc, (sqlite3.Error, DatabaseError)):
        return True
    return type(exc).__module__.split(".")[0] == "psycopg"


def _admin_token(gw: Any) -> str | None:
    return getattr(getattr(gw, "settings", None), "admin_token", None) or None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


class Console:
    """The console's state (sessions, the store adapter, the last verification)."""

    def __init__(self, getter: Callable[[], Any], sessions: Sessions | None = None) -> None:
        self.getter = getter
        self.sessions = sessions or Sessions()
        self._adapter: tuple[Any, EventQueries] | None = None
        self.last_verify: dict[str, Any] | None = None
        self._verify_lock = asyncio.Lock()

    def queries(self, gw: Any) -> EventQueries:
        audit = getattr(gw, "audit", None)
        if audit is None:
            raise Unavailable("The audit log is not enabled on this gateway.")
        store = getattr(audit, "store", audit)
        if self._adapter is None or self._adapter[0] is not store:
            self._adapter = (store, queries_for(store))
        return self._adapter[1]

    # -- plumbing --------------------------------------------------------------------------

    def page(self, handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wrap ``handler``: require a session; on POST also same origin and the CSRF token."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            gw = self.getter()
            session = self.sessions.get(request.cookies.get(COOKIE), _admin_token(gw))
            if session is None:
                if request.method in ("GET", "HEAD"):
                    target = quote(request.path_qs, safe="/?=&%")
                    return secure(redirect(f"/console/login?next={quote(target, safe='')}"))
                return secure(self._forbidden("Your session has ended. Sign in again."))
            if request.method == "POST":
                form = await request.post()
                if not _same_origin(request) or not csrf_ok(form.get("csrf"), session.csrf):
                    return secure(self._forbidden("This form is no longer valid. Reload the page."))
            try:
                resp = await handler(request, gw, session)
            except Exception as exc:
                if not isinstance(exc, Unavailable) and not _store_error(exc):
                    raise
                if not isinstance(exc, Unavailable):
                    log.error("console: the audit log cannot be read: %s", exc)
                    exc = Unavailable(f"The audit log cannot be read right now: {exc}")
                main = f"<h1>Unavailable</h1>{r.notice(r.masked(str(exc)), 'error')}"
                resp = html(r.page(title="Unavailable", main=main, csrf=session.csrf), 503)
            return secure(resp)

        return wrapped

    @staticmethod
    def _forbidden(message: str) -> web.Response:
        main = (
            f"<h1>Not allowed</h1>{r.notice(r.esc(message), 'error')}"
            '<p><a href="/console/login">Sign in</a></p>'
        )
        return html(r.page(title="Not allowed", main=main), 403)

    def _cookie(self, resp: web.StreamResponse, request: web.Request, name: str, value: str,
                max_age: int) -> None:  # fmt: skip
        resp.set_cookie(
            name,
            value,
            path=COOKIE_PATH,
            max_age=max_age,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )

    # -- login -----------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        gw = self.getter()
        nxt = safe_next(request.query.get("next"))
        if self.sessions.get(request.cookies.get(COOKIE), _admin_token(gw)) is not None:
            return secure(redirect(nxt))
        message = ""
        if request.query.get("bye"):
            message = r.notice("You have signed out.")
        return secure(self._login_page(request, nxt, message))

    def _login_page(self, request: web.Request, nxt: str, message: str, status: int = 200
                    ) -> web.Response:  # fmt: skip
        gw = self.getter()
        if not _admin_token(gw):
            message = r.notice(
                "The console is disabled: this gateway has no admin token configured.", "error"
            )
        nonce = secrets.token_urlsafe(16)
        main = r.fill(
            "login.html",
            error=message,
            nonce=r.attr(nonce),
            next=r.attr(nxt),
            ttl=f"{self.sessions.ttl / 3600:g}",
        )
        resp = html(r.page(title="Sign in", main=main, body_class="login"), status)
        self._cookie(resp, request, LOGIN_COOKIE, nonce, 3600)
        return resp

    async def login(self, request: web.Request) -> web.StreamResponse:
        gw = self.getter()
        form = await request.post()
        nxt = safe_next(str(form.get("next") or ""))
        remote = request.remote
        expected = _admin_token(gw)
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not _same_origin(request) or not nonce or not csrf_ok(form.get("nonce"), nonce):
            msg = "The sign-in form expired or cookies are blocked. Try again."
            return secure(self._login_page(request, nxt, r.notice(msg, "error"), 400))
        if self.sessions.throttled(remote):
            msg = "Too many failed attempts. Wait a minute and try again."
            return secure(self._login_page(request, nxt, r.notice(msg, "error"), 429))
        given = str(form.get("token") or "").strip()
        if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
            self.sessions.failed(remote)
            msg = "That is not this gateway's admin token."
            return secure(self._login_page(request, nxt, r.notice(msg, "error"), 401))
        self.sessions.succeeded(remote)
        sid, _ = self.sessions.create(expected, remote)
        resp = redirect(nxt)
        self._cookie(resp, request, COOKIE, sid, int(self.sessions.ttl))
        resp.del_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return secure(resp)

    async def logout(self, request: web.Request, gw: Any, session: Session) -> web.StreamResponse:
        self.sessions.drop(request.cookies.get(COOKIE))
        resp = redirect("/console/login?bye=1")
        resp.del_cookie(COOKIE, path=COOKIE_PATH)
        return resp

    # -- static ----------------------------------------------------------------------------

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in r.STATIC_TYPES:
            return secure(html("<h1>Not found</h1>", 404))
        data, _ = r.static_file(name)
        resp = web.Response(body=data, content_type=r.STATIC_TYPES[name], charset="utf-8")
        secure(resp)
        # The URL carries the file's hash: safe to cache.
        resp.headers["Cache-Control"] = "public, max-age=86400, immutable"
        return resp

    # -- overview --------------------------------------------------------------------------

    async def overview(self, request: web.Request, gw: Any, session: Session) -> web.Response:
        window = request.query.get("window", DEFAULT_WINDOW)
        if window not in WINDOWS:
            window = DEFAULT_WINDOW
        q = self.queries(gw)
        ov = await asyncio.to_thread(q.overview, window)
        span = {"since": iso(ov.start), "until": iso(ov.end), "type": "decision"}
        main = r.fill(
            "overview.html",
            window_options=r.options(((k, v[0]) for k, v in WINDOWS.items()), window),
            window_text=r.esc(WINDOWS[window][0]),
            range_text=f"{r.fmt_time(ov.start)} to {r.fmt_time(ov.end)} UTC",
            tiles=_tiles(ov, span),
            legend="".join(
                f'<li><span class="swatch bar-{k}"></span>{label}</li>'
                for k, label in series_present(ov)
            ),
            chart=chart_svg(ov),
            chart_table=_chart_table(ov),
            breakdowns=_breakdowns(ov, span),
            **_health(gw),
        )
        return html(r.page(title="Overview", main=main, active="overview", csrf=session.csrf))

    # -- events ----------------------------------------------------------------------------

    async def events(self, request: web.Request, gw: Any, session: Session) -> web.Response:
        f, errors = EventFilter.from_query(request.query)
        limit = _int(request.query.get("limit"))
        limit = limit if limit is not None and 1 <= limit <= MAX_PAGE_SIZE else DEFAULT_PAGE_SIZE
        before = _int(request.query.get("before"))
        after = _int(request.query.get("after")) if before is None else None
        q = self.queries(gw)

        def read() -> tuple[Any, int | None, dict[str, list[str]]]:
            return q.page(f, before=before, after=after, limit=limit), q.count(f), q.suggestions()

        pg, count, suggest = await asyncio.to_thread(read)
        params = f.to_query()
        if limit != DEFAULT_PAGE_SIZE:
            params["limit"] = str(limit)
        here = dict(params)
        if before is not None:
            here["before"] = str(before)
        elif after is not None:
            here["after"] = str(after)
        rows = "\n".join(_event_row(ev, here) for ev in pg.events)
        if not rows:
            msg = "No events match these filters." if f.active else "The audit log is empty."
            rows = f'<tr><td colspan="10" class="empty">{msg}</td></tr>'
        noun = "event matches" if count == 1 else "events match"
        if count is None:
            count_text = (
                "Many events match (counting them all takes too long on a log this size: "
                "add a time range to get a count)"
            )
        elif count > COUNT_CAP:
            count_text = f"More than {COUNT_CAP:,} events match"
        else:
            count_text = f'<span data-count="{count}">{count:,}</span> {noun}'
        if pg.events:
            count_text += f" · showing {len(pg.events):,}, newest first"
        text_fields = "\n".join(
            '<div class="field">'
            f'<label for="f-{name}">{label}</label>'
            f'<input id="f-{name}" name="{name}" type="text" value="{r.attr(getattr(f, name))}"'
            f'{_list_attr(name, suggest)} autocomplete="off" spellcheck="false">'
            "</div>"
            for name, label in TEXT_FILTERS
        )
        datalists = "".join(
            f'<datalist id="dl-{k}">'
            + "".join(f'<option value="{r.attr(v)}"></option>' for v in values)
            + "</datalist>"
            for k, values in suggest.items()
            if values
        )
        main = r.fill(
            "events.html",
            q=r.attr(f.q),
            since=r.attr(f.since_text),
            until=r.attr(f.until_text),
            verdict_options=r.options(
                [("", "Any"), *((v, r.VERDICT_LABELS[v]) for v in VERDICTS)], f.verdict
            ),
            type_options=r.options([("", "Any"), *EVENT_TYPES.items()], f.type),
            text_fields=text_fields,
            more_active=" data-active" if _more_active(f, limit) else "",
            limit_options=r.options(
                ((str(n), str(n)) for n in sorted({*PAGE_SIZES, limit})), str(limit)
            ),
            datalists=datalists,
            errors=r.notice("<br>".join(r.esc(e) for e in errors), "error") if errors else "",
            count_text=count_text,
            csv_href=r.href("/console/export", {**f.to_query(), "format": "csv"}),
            jsonl_href=r.href("/console/export", {**f.to_query(), "format": "jsonl"}),
            rows=rows,
            pager=_pager(pg, params, first_page=before is None and after is None),
        )
        return html(r.page(title="Events", main=main, active="events", csrf=session.csrf))

    async def event(self, request: web.Request, gw: Any, session: Session) -> web.Response:
        seq = _int(request.match_info.get("seq"))
        q = self.queries(gw)
        ev = await asyncio.to_thread(q.get, seq) if seq is not None and seq > 0 else None
        back_params = {k: v for k, v in request.query.items() if k != "csrf"}
        back = r.href("/console/events", back_params)
        if ev is None:
            main = (
                f'<p class="crumbs"><a href="{back}">← Back to events</a></p>'
                f"<h1>Event not found</h1>"
                f"{r.notice('There is no event with this sequence number.', 'error')}"
            )
            body = r.page(title="Event not found", main=main, active="events", csrf=session.csrf)
            return html(body, 404)
        main = _event_detail(ev, back)
        title = f"Event {ev.get('seq', seq)}"
        return html(r.page(title=title, main=main, active="events", csrf=session.csrf))

    # -- integrity -------------------------------------------------------------------------

    async def integrity(self, request: web.Request, gw: Any, session: Session) -> web.Response:
        if request.method == "POST":
            q = self.queries(gw)
            asked = time.time()
            async with self._verify_lock:
                # A verification that started after this click answers it too.
                if self.last_verify is None or self.last_verify["started"] < asked:
                    t0 = time.perf_counter()
                    result = await asyncio.to_thread(q.verify)
                    self.last_verify = {
                        **result.to_dict(),
                        "summary": result.summary(),
                        "started": asked,
                        "at": time.time(),
                        "seconds": time.perf_counter() - t0,
                        "bad_href": _bad_href(q, result),
                    }
            if request.headers.get("X-Console-Fragment") == "verify":
                return html(_verify_result(self.last_verify, fresh=True))
        result_html = (
            _verify_result(self.last_verify, fresh=request.method == "POST")
            if self.last_verify
            else '<p class="muted">Not verified yet in this session of the gateway.</p>'
        )
        main = r.fill("integrity.html", csrf=r.attr(session.csrf), result=result_html)
        return html(r.page(title="Integrity", main=main, active="integrity", csrf=session.csrf))

    # -- export ----------------------------------------------------------------------------

    async def export(self, request: web.Request, gw: Any, session: Session) -> web.StreamResponse:
        fmt = request.query.get("format", "csv")
        f, errors = EventFilter.from_query(request.query)
        if fmt not in ("csv", "jsonl") or errors:
            msg = "; ".join(errors) or "format must be csv or jsonl"
            main = f"<h1>Cannot export</h1>{r.notice(r.esc(msg), 'error')}"
            return html(r.page(title="Export", main=main, active="events", csrf=session.csrf), 400)
        q = self.queries(gw)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8"
                if fmt == "csv"
                else "application/x-ndjson; charset=utf-8",
                "Content-Disposition": f'attachment; filename="keeptrusts-events-{stamp}.{fmt}"',
            }
        )
        secure(resp)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        batches = q.batches(f, EXPORT_BATCH)
        if fmt == "csv":
            from keeptrusts.cli.events import CSV_FIELDS

            await resp.write(_csv_lines([list(CSV_FIELDS)]))
        while True:
            batch = await asyncio.to_thread(next, batches, None)
            if batch is None:
                break
            if fmt == "csv":
                from keeptrusts.cli.events import csv_row

                await resp.write(_csv_lines(csv_row(ev) for ev in batch))
            else:
                await resp.write(b"".join(orjson.dumps(ev) + b"\n" for ev in batch))
        await resp.write_eof()
        return resp

    # -- config ----------------------------------------------------------------------------

    async def config(self, request: web.Request, gw: Any, session: Session) -> web.Response:
        main = _config_page(gw)
        return html(r.page(title="Config", main=main, active="config", csrf=session.csrf))


# -- overview pieces ------------------------------------------------------------------------


def _tiles(ov: Overview, span: Mapping[str, str]) -> str:
    lat = ov.latency

    def tile(key: str, label: str, value: str, sub: str = "", params: Any = None) -> str:
        inner = (
            f'<span class="tile-label">{label}</span>'
            f'<span class="tile-value" data-tile="{key}">{value}</span>'
            f'<span class="tile-sub">{sub}</span>'
        )
        if params is not None:
            inner = f'<a href="{r.href("/console/events", params)}">{inner}</a>'
        return f'<li class="tile tile-{key}">{inner}</li>'

    t = ov.totals
    redact_sub = f"{ov.redacted_items:,} value{'s' if ov.redacted_items != 1 else ''} redacted"
    return "\n".join(
        [
            tile("requests", "Requests", f"{ov.requests:,}", "decisions logged", dict(span)),
            tile("block", "Blocked", f"{t.get('block', 0):,}", _share(t.get("block", 0), ov),
                 {**span, "verdict": "block"}),
            tile("redact", "Redacted", f"{t.get('redact', 0):,}", redact_sub,
                 {**span, "verdict": "redact"}),
            tile("error", "Errors", f"{t.get('error', 0):,}", _share(t.get("error", 0), ov),
                 {**span, "verdict": "error"}),
            tile("latency", "Latency p50 / p99", f"{r.fmt_ms(lat['p50'])} / "
                 f"{r.fmt_ms(lat['p99'])}", "ms, end to end"),
            tile("overhead", "Overhead p50 / p99", f"{r.fmt_ms(lat['overhead_p50'])} / "
                 f"{r.fmt_ms(lat['overhead_p99'])}", "ms added by the gateway"),
        ]
    )  # fmt: skip


def _share(n: int, ov: Overview) -> str:
    if not ov.requests:
        return "of no requests"
    return f"{100 * n / ov.requests:.1f}% of requests"


def _chart_table(ov: Overview) -> str:
    present = series_present(ov)
    rows = [
        [
            r.esc(bucket_range(ov, i)),
            f"{sum(b.values()):,}",
            *(f"{b.get(k, 0):,}" for k, _ in present),
        ]
        for i, b in enumerate(ov.series)
        if b
    ]
    headers = ["Time (UTC)", ("Requests", "num"), *((label, "num") for _, label in present)]
    return r.table(headers, rows, caption="Decisions per time bucket", empty="No requests.")


BREAKDOWNS = (
    ("policy", "By deciding policy", "who blocked, redacted or flagged", "policy"),
    ("model", "By model", "", "model"),
    ("target", "By target", "", "target"),
    ("role", "By role", "", "who"),
)


def _breakdowns(ov: Overview, span: Mapping[str, str]) -> str:
    out = []
    verdicts = [(k, label) for k, label in SERIES if k != "other"]
    for dim, title, sub, param in BREAKDOWNS:
        rows = []
        for value, counts in ov.by.get(dim, [])[:20]:
            name = r.esc(value)
            if value != "(none)":
                name = f'<a href="{r.href("/console/events", {**span, param: value})}">{name}</a>'
            rows.append(
                [name, f"{sum(counts.values()):,}", *(f"{counts.get(k, 0):,}" for k, _ in verdicts)]
            )
        table = r.table(
            [
                ("Name", ""),
                ("Total", "num"),
                *((label, "num hide-sm" if k == "allow" else "num") for k, label in verdicts),
            ],
            rows,
            caption=title,
            empty="No requests in this window.",
            cls="compact",
        )
        note = f'<p class="muted small">{sub}</p>' if sub else ""
        out.append(
            f'<section class="card" aria-labelledby="by-{dim}"><h2 id="by-{dim}">{title}</h2>'
            f'{note}<div class="table-wrap" role="region" aria-labelledby="by-{dim}" tabindex="0">'
            f"{table}</div></section>"
        )
    return "\n".join(out)


def _health(gw: Any) -> dict[str, str]:
    health = gw.health()
    try:
        metrics = gw.router.metrics()
    except (AssertionError, AttributeError):
        metrics = {"targets": {}}
    rows = []
    for tid, m in metrics.get("targets", {}).items():
        lat = m.get("latency_ms") or {}
        errors = m.get("errors") or {}
        err_text = f"{m.get('errors_total', 0):,}"
        if errors:
            kinds = ", ".join(f"{r.esc(k)}: {v}" for k, v in sorted(errors.items()))
            err_text += f'<br><span class="small muted">{kinds}</span>'
        rows.append(
            [
                r.esc(tid),
                f"{r.esc(m.get('provider'))} · {r.esc(m.get('model'))}",
                r.status_badge("available" if m.get("status") == "available" else "unavailable"),
                r.status_badge((m.get("breaker") or {}).get("state")),
                f"{m.get('requests', 0):,}",
                err_text,
                f"{m.get('retries', 0):,}",
                r.fmt_ms(lat.get("p50")),
                r.fmt_ms(lat.get("p99")),
                f"{m.get('in_flight', 0):,}",
            ]
        )
    health_table = r.table(
        [
            "Target",
            "Provider · model",
            "Key",
            "Breaker",
            ("Requests", "num"),
            ("Errors", "num"),
            ("Retries", "num"),
            ("p50 ms", "num"),
            ("p99 ms", "num"),
            ("In flight", "num"),
        ],
        rows,
        caption="Provider health",
        cls="wide",
        empty="No targets.",
    )
    audit = getattr(gw, "audit", None)
    stats = audit.stats() if audit is not None and callable(getattr(audit, "stats", None)) else {}
    if stats:
        audit_html = r.dl(
            [
                ("Mode", r.esc(stats.get("mode"))),
                ("Queue depth", r.fmt_int(stats.get("queue_depth"))),
                ("Events written since start", r.fmt_int(stats.get("written"))),
                ("Head seq", r.fmt_int(stats.get("head_seq"))),
                ("Write errors", r.fmt_int(stats.get("errors"))),
                ("Last error", r.masked(stats.get("last_error"))),
            ]
        )
    else:
        audit_html = '<p class="muted">The audit log is not enabled.</p>'
    return {
        "health_badge": r.status_badge(health.get("status")),
        "pack": r.esc(health.get("pack")),
        "uptime": r.fmt_duration(float(health.get("uptime_seconds") or 0)),
        "processed": f"{health.get('requests_processed', 0):,}",
        "health_table": health_table,
        "audit_stats": audit_html,
    }


# -- events pieces --------------------------------------------------------------------------


def _more_active(f: EventFilter, limit: int) -> bool:
    """True when a filter under "More filters" is set (the phone layout keeps it open)."""
    return bool(f.type or any(getattr(f, n) for n, _ in TEXT_FILTERS)) or limit != DEFAULT_PAGE_SIZE


def _list_attr(name: str, suggest: Mapping[str, list[str]]) -> str:
    return f' list="dl-{name}"' if suggest.get(name) else ""


def _ident(ev: Mapping[str, Any]) -> Mapping[str, Any]:
    ident = ev.get("identity")
    return ident if isinstance(ident, Mapping) else {}


def _event_row(ev: Mapping[str, Any], here: Mapping[str, str]) -> str:
    ident = _ident(ev)
    seq = ev.get("seq")
    key = ev.get("pos") if isinstance(ev.get("pos"), int) else seq  # see key_of
    who = ident.get("role") or ""
    if ident.get("key_name"):
        who = f"{who} / {ident['key_name']}" if who else ident["key_name"]
    link = r.href(f"/console/events/{key}", here)
    reason = ev.get("reason_code") or ev.get("event_type")
    verdict = ev.get("verdict") if ev.get("event_type") == "decision" else ev.get("event_type")
    return (
        f'<tr class="v-{r.attr(ev.get("verdict"))}">'
        f'<td class="mono hide-sm">{r.esc(seq)}</td>'
        f'<td class="nowrap"><a href="{link}" aria-label="Event {r.attr(seq)}, '
        f'{r.fmt_iso(ev.get("timestamp"))}">{_time_cell(ev.get("timestamp"))}</a></td>'
        f"<td>{r.badge(verdict)}</td>"
        f"<td>{r.esc(reason)}</td>"
        f'<td class="hide-sm">{r.esc(ev.get("policy"))}</td>'
        f"<td>{r.esc(ev.get('model'))}</td>"
        f'<td class="hide-sm">{r.esc(ev.get("target_id"))}</td>'
        f'<td class="hide-sm">{r.esc(who)}</td>'
        f'<td class="hide-sm num">{r.esc(ev.get("status"))}</td>'
        f'<td class="hide-sm num">{r.fmt_ms(ev.get("latency_ms"))}</td>'
        "</tr>"
    )  # fmt: skip


def _time_cell(value: Any) -> str:
    """The time with the year and milliseconds in spans a phone layout hides."""
    text = r.fmt_iso(value)
    if len(text) == 23 and text[4] == "-" and text[19] == ".":
        year, ms = (
            f'<span class="t-year">{text[:5]}</span>',
            f'<span class="t-ms">{text[19:]}</span>',
        )
        return f"{year}{text[5:19]}{ms}"
    return text


def _pager(pg: Any, params: Mapping[str, str], *, first_page: bool) -> str:
    def link(label: str, extra: Mapping[str, Any] | None, rel: str = "") -> str:
        if extra is None:
            return f'<span class="button button-quiet" aria-disabled="true">{label}</span>'
        rel_attr = f' rel="{rel}"' if rel else ""
        url = r.href("/console/events", {**params, **extra})
        return f'<a class="button button-quiet" href="{url}"{rel_attr}>{label}</a>'

    newest = link("&laquo; Newest", None if first_page else {})
    newer = link("&lsaquo; Newer", None if pg.newer is None else {"after": pg.newer}, "prev")
    older = link("Older &rsaquo;", None if pg.older is None else {"before": pg.older}, "next")
    return f'<nav class="pager" aria-label="Pages of events">{newest}{newer}{older}</nav>'


def _yes_no(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return r.esc(value)


def _findings(findings: Any) -> str:
    if not isinstance(findings, Mapping) or not findings:
        return r.DASH
    return ", ".join(f"{r.esc(k)}: {r.esc(v)}" for k, v in findings.items())


def _event_detail(ev: Mapping[str, Any], back: str) -> str:
    ident = _ident(ev)
    usage = ev.get("usage") if isinstance(ev.get("usage"), Mapping) else {}
    pack = ev.get("pack") if isinstance(ev.get("pack"), Mapping) else {}
    is_decision = ev.get("event_type") == "decision"
    verdict = ev.get("verdict") if is_decision else ev.get("event_type")
    summary = r.esc(ev.get("reason_code") or ev.get("event_type"))
    if ev.get("policy"):
        summary += f" by <strong>{r.esc(ev.get('policy'))}</strong>"
    summary += f" · {r.fmt_iso(ev.get('timestamp'))} UTC"
    decision = r.dl(
        [
            ("Verdict", r.badge(verdict)),
            ("Reason", r.esc(ev.get("reason_code"))),
            ("Deciding policy", r.esc(ev.get("policy"))),
            ("HTTP status", r.esc(ev.get("status"))),
            ("Redactions", r.esc(ev.get("redactions"))),
            ("Error", r.masked(ev.get("error"))),
            ("Latency", f"{r.fmt_ms(ev.get('latency_ms'))} ms"),
            ("Gateway overhead", f"{r.fmt_ms(ev.get('overhead_ms'))} ms"),
            ("Policy time", f"{r.fmt_ms(ev.get('policy_ms'))} ms"),
            ("Upstream time", f"{r.fmt_ms(ev.get('upstream_ms'))} ms"),
            ("Pack", r.esc(f"{pack.get('name')}@{pack.get('version')}" if pack else None)),
        ]
    )
    tokens = (
        f"{r.esc(usage.get('prompt_tokens'))} in · {r.esc(usage.get('completion_tokens'))} out"
        if usage and usage.get("total_tokens") is not None
        else r.DASH
    )
    caller = r.dl(
        [
            ("Key name", r.esc(ident.get("key_name"))),
            ("Role", r.esc(ident.get("role"))),
            ("Key id", f'<span class="mono">{r.esc(ident.get("key_id"))}</span>'),
            ("User", r.esc(ident.get("user_id"))),
            ("Org", r.esc(ident.get("org_id"))),
            ("Identity from", r.esc(ident.get("source"))),
            ("Request id", f'<span class="mono">{r.esc(ev.get("request_id"))}</span>'),
            ("Endpoint", r.esc(ev.get("endpoint"))),
            ("Model", r.esc(ev.get("model"))),
            ("Target", r.esc(ev.get("target_id"))),
            ("Provider", r.esc(ev.get("provider"))),
            ("Stream", _yes_no(ev.get("stream"))),
            ("Tokens", tokens),
        ]
    )
    results = ev.get("policy_results") if isinstance(ev.get("policy_results"), list) else []
    policies = r.table(
        ["Policy", "Phase", "Verdict", "Reason code", ("Reason", "wrap"), ("Findings", "wrap"),
         ("Score", "num"), ("ms", "num")],
        (
            [
                r.esc(p.get("name")),
                r.esc(p.get("phase")),
                r.badge(p.get("verdict")),
                r.esc(p.get("reason_code")),
                r.masked(p.get("reason")),
                _findings(p.get("findings")),
                r.esc(p.get("score")),
                r.fmt_ms(p.get("latency_ms")),
            ]
            for p in results
            if isinstance(p, Mapping)
        ),
        caption="Policy results in chain order",
        cls="wide",
        empty="No policy ran for this event.",
    )  # fmt: skip
    attempts_list = ev.get("attempts") if isinstance(ev.get("attempts"), list) else []
    attempts = r.table(
        ["#", "Target", "Provider", "Outcome", ("Status", "num"), ("ms", "num")],
        (
            [
                str(i),
                r.esc(a.get("target_id")),
                r.esc(a.get("provider")),
                r.esc(a.get("outcome")),
                r.esc(a.get("status")),
                r.fmt_ms(a.get("latency_ms")),
            ]
            for i, a in enumerate(attempts_list, 1)
            if isinstance(a, Mapping)
        ),
        caption="Upstream attempts in order",
        cls="wide",
        empty="No upstream call was made (the request was decided before routing).",
    )
    known = {
        "id", "timestamp", "event_type", "request_id", "endpoint", "verdict", "reason_code",
        "policy", "status", "model", "target_id", "provider", "stream", "identity",
        "policy_results", "redactions", "attempts", "usage", "latency_ms", "overhead_ms",
        "policy_ms", "upstream_ms", "pack", "error", "seq", "chain_id", "prev_hash", "hash",
    }  # fmt: skip
    extra = {k: v for k, v in ev.items() if k not in known}
    other = ""
    if extra:
        items = [
            (k, r.masked(v) if not isinstance(v, (dict, list)) else
             f'<pre class="json">{r.pretty_json(v)}</pre>')
            for k, v in extra.items()
        ]  # fmt: skip
        other = (
            '<section class="card" aria-labelledby="other-title">'
            f'<h2 id="other-title">Other fields</h2>{r.dl(items)}</section>'
        )
    chain = r.dl(
        [
            ("Event id", f'<span class="mono">{r.esc(ev.get("id"))}</span>'),
            ("Seq", r.esc(ev.get("seq"))),
            ("Chain", f'<span class="mono">{r.esc(ev.get("chain_id"))}</span>'),
            ("Previous hash", f'<span class="mono hash">{r.esc(ev.get("prev_hash"))}</span>'),
            ("Hash", f'<span class="mono hash">{r.esc(ev.get("hash"))}</span>'),
        ]
    )
    return r.fill(
        "event.html",
        back_href=back,
        seq_label=r.esc(ev.get("seq")),
        verdict_badge=r.badge(verdict),
        summary=summary,
        decision=decision,
        caller=caller,
        policies=f'<div class="table-wrap" role="region" aria-label="Policy results" '
        f'tabindex="0">{policies}</div>',
        attempts=f'<div class="table-wrap" role="region" aria-label="Upstream attempts" '
        f'tabindex="0">{attempts}</div>',
        other=other,
        chain=chain + '<p><a href="/console/integrity">Verify the whole chain</a></p>',
        raw=r.pretty_json(ev),
    )


# -- integrity ------------------------------------------------------------------------------


def _verify_result(res: Mapping[str, Any], *, fresh: bool) -> str:
    took = res["seconds"]
    took_text = f"{took * 1000:.0f} ms" if took < 1 else f"{took:.1f} s"
    when = f"{r.fmt_time(res['at'])} UTC, took {took_text}"
    prefix = "" if fresh else "Last run: "
    if res.get("ok"):
        head = (
            f"head seq {r.esc(res.get('last_seq'))}, hash "
            f'<span class="mono hash">{r.esc(res.get("last_hash"))}</span>'
            if res.get("last_seq")
            else "the log is empty"
        )
        return (
            '<div class="verdict-box verdict-ok" data-verify="ok">'
            f"<h2>Intact</h2><p><strong>{fmt_count(res.get('checked'))} verified.</strong> "
            f'The chain is unbroken: chain <span class="mono">{r.esc(res.get("chain_id"))}'
            f"</span>, {head}.</p>"
            f'<p class="muted small">{prefix}{when}</p></div>'
        )
    seq = res.get("first_bad_seq")
    link = ""
    if res.get("bad_href"):
        label = f"seq {seq}" if seq is not None else "by id"
        link = (
            f'<p><a class="button" href="{r.attr(res["bad_href"])}">Open the first bad event '
            f"({label})</a></p>"
        )
    where = []
    if res.get("first_bad_id"):
        where.append(f'event <span class="mono">{r.esc(res.get("first_bad_id"))}</span>')
    if seq is not None:
        where.append(f'seq <strong data-bad-seq="{r.attr(seq)}">{r.esc(seq)}</strong>')
    at = f" at {' '.join(where)}" if where else ""
    return (
        '<div class="verdict-box verdict-bad" data-verify="failed">'
        f"<h2>Verification failed{at}</h2>"
        f"<p>{r.masked(res.get('problem'))}</p>"
        f'<p class="muted small">Check code <code>{r.esc(res.get("code"))}</code> · '
        f"{fmt_count(res.get('checked'))} checked before it · chain "
        f'<span class="mono">{r.esc(res.get("chain_id"))}</span></p>'
        f"{link}"
        f'<p class="muted small">{prefix}{when}</p></div>'
    )


def _bad_href(q: EventQueries, result: Any) -> str | None:
    """Where the first bad event can be looked at: its page when ``seq`` is the store's
    cursor (SQLite), else the events filtered by its id (PostgreSQL: one chain per instance)."""
    seq, event_id = result.first_bad_seq, result.first_bad_id
    if isinstance(q, SQLiteEventQueries) and isinstance(seq, int) and seq > 0:
        return f"/console/events/{seq}"
    if event_id:
        return "/console/events?" + urlencode({"request": event_id})
    return None


def fmt_count(n: Any) -> str:
    n = n if isinstance(n, int) else 0
    return f"{n:,} event{'s' if n != 1 else ''}"


# -- export ---------------------------------------------------------------------------------


def _csv_lines(rows: Any) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


# -- config ---------------------------------------------------------------------------------


def _config_page(gw: Any) -> str:
    from keeptrusts.server.admin import redacted_config

    cfg = redacted_config(gw.config)
    pack = cfg["pack"]
    sources = getattr(gw.config, "sources", ()) or ()
    pack_html = r.dl(
        [
            ("Name", f"<strong>{r.esc(pack.get('name'))}</strong>"),
            ("Version", r.esc(pack.get("version"))),
            ("Enabled", r.esc("yes" if pack.get("enabled") else "no")),
            # File names only: the directory says nothing useful and may be personal.
            ("Config files", r.esc(", ".join(PurePath(str(s)).name for s in sources) or None)),
        ]
    )
    chain = cfg["policies"]["chain"]
    chain_html = (
        '<ol class="chain">' + "".join(f"<li>{r.esc(p)}</li>" for p in chain) + "</ol>"
        if chain
        else '<p class="empty">The chain is empty: requests pass unchecked.</p>'
    )
    try:
        breakers = gw.router.breaker_states()
    except (AssertionError, AttributeError):
        breakers = {}
    targets = r.table(
        ["ID", "Provider", "Model", "Base URL", "Status", "Breaker", "Aliases", ("Weight", "num"),
         "Key"],
        (
            [
                r.esc(t["id"]),
                r.esc(t["provider"]),
                r.esc(t["model"]),
                f'<span class="mono">{r.esc(t["base_url"])}</span>',
                r.status_badge("available" if t["status"] == "available" else "unavailable")
                + (f'<br><span class="small">{r.esc(t["status"])}</span>'
                   if t["status"] != "available" else ""),
                r.status_badge(breakers.get(t["id"], "unknown")),
                r.esc(", ".join(t["aliases"])),
                r.esc(t["weight"]),
                _key_cell(t),
            ]
            for t in cfg["providers"]["targets"]
        ),
        caption="Targets",
        cls="wide",
        empty="No targets.",
    )  # fmt: skip
    routing = cfg["providers"].get("routing")
    routing_html = (
        "<details><summary>Routing settings</summary>"
        f'<pre class="json">{r.pretty_json(routing)}</pre></details>'
        if routing
        else ""
    )
    settings = (
        "".join(
            f'<details><summary>{r.esc(name)}</summary><pre class="json">{r.pretty_json(block)}'
            "</pre></details>"
            for name, block in cfg["policy"].items()
        )
        or '<p class="empty">No policy settings.</p>'
    )
    reloads = list(reversed(getattr(gw, "reloads", []) or []))
    reload_table = r.table(
        ["Time (UTC)", "By", "Result", "From", "To", "Problems"],
        (
            [
                r.fmt_iso(e.get("timestamp")),
                r.masked(e.get("who")),
                '<span class="state state-good">applied</span>'
                if e.get("ok")
                else '<span class="state state-bad">refused</span>',
                r.esc(e.get("previous_pack")),
                r.esc(e.get("pack")),
                "<br>".join(r.masked(p) for p in e.get("problems") or []) or r.DASH,
            ]
            for e in reloads
        ),
        caption="Reload history",
        cls="wide",
        empty="No reloads since the gateway started.",
    )
    return r.fill(
        "config.html",
        pack=pack_html,
        chain=chain_html,
        targets=targets,
        routing=routing_html,
        settings=settings,
        reloads=reload_table,
    )


def _key_cell(t: Mapping[str, Any]) -> str:
    if t.get("key_env"):
        return f'<span class="mono">${r.esc(t["key_env"])}</span>'
    if t.get("api_key"):
        return r.esc(t["api_key"])  # always "[REDACTED]"
    return "none"
