"""The console's reads of the audit log, in one small adapter per store.

:class:`EventQueries` works with any :class:`~keeptrusts.audit.store.AuditStore` through its
protocol (``list_events``/``iter_events``/``verify``), filtering in Python: correct
everywhere, fine for small logs. :class:`SQLiteEventQueries` answers the same questions with
SQL on its own read-only connections (keyset paging on ``seq``, ``GROUP BY`` for the
overview), so a large log pages quickly. A PostgreSQL variant subclasses
:class:`EventQueries` the same way (its SQL differs in placeholders and JSON access only);
:func:`queries_for` picks the adapter for a store.

Every method here blocks (SQLite I/O): the handlers call them in a worker thread.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.request import pathname2url

import orjson

from keeptrusts.audit.chain import VerifyResult
from keeptrusts.audit.query import VERDICTS, EventQuery
from keeptrusts.console.filters import EventFilter, event_ts

DIMENSIONS = ("policy", "model", "target", "role")
COUNT_CAP = 10_000  # counts above this are shown as "more than 10,000" (bounded cost)
COUNT_BUDGET = 1.0  # seconds a count may take before the page says "many" instead
LATENCY_SAMPLES = 20_000  # at most this many events feed the latency percentiles
SUGGEST_WINDOW = 5_000  # distinct filter values come from the newest N events
# Seconds an overview is reused (several people refreshing a large log), per window.
OVERVIEW_TTL = {"1h": 5.0, "24h": 5.0, "7d": 30.0, "30d": 60.0}

# The overview's windows: (label, seconds, bucket seconds).
WINDOWS: dict[str, tuple[str, float, float]] = {
    "1h": ("Last hour", 3600, 60),
    "24h": ("Last 24 hours", 86400, 1800),
    "7d": ("Last 7 days", 7 * 86400, 6 * 3600),
    "30d": ("Last 30 days", 30 * 86400, 86400),
}
DEFAULT_WINDOW = "24h"


@dataclass(slots=True)
class Page:
    """One page of events, newest first, and the keys of the pages either side."""

    events: list[dict[str, Any]]
    newer: int | None = None  # link ``after=<newer>`` when newer matching events exist
    older: int | None = None  # link ``before=<older>`` when older matching events exist


@dataclass(slots=True)
class Overview:
    window: str
    start: float
    end: float
    bucket: float
    series: list[dict[str, int]]  # per bucket: verdict -> decisions
    totals: dict[str, int]  # verdict -> decisions in the window
    redacted_items: int  # values redacted (sum of the events' redaction counts)
    by: dict[str, list[tuple[str, dict[str, int]]]]  # dimension -> [(value, verdict counts)]
    latency: dict[str, float | None]  # p50, p99, overhead_p50, overhead_p99
    latency_samples: int = 0
    computed_at: float = field(default_factory=time.time)

    @property
    def requests(self) -> int:
        return sum(self.totals.values())


def key_of(event: Mapping[str, Any]) -> int:
    """An event's paging cursor: ``pos`` in a PostgreSQL log (where ``seq`` numbers each
    instance's chain on its own), else ``seq``. Pages and event links use it."""
    pos = event.get("pos")
    return pos if isinstance(pos, int) else event["seq"]


def window_bounds(window: str, now: float | None = None) -> tuple[float, float, float]:
    """(start, end, bucket) of an overview window, aligned to whole buckets."""
    _, span, bucket = WINDOWS[window]
    now = time.time() if now is None else now
    end = math.floor(now / bucket) * bucket + bucket
    return end - span, end, bucket


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values; None without values."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return round(ordered[rank], 3)


class EventQueries:
    """Reads over any ``AuditStore``: filters run in Python over ``list_events`` pages."""

    _SCAN = 500

    def __init__(self, store: Any) -> None:
        self.store = store
        self._cache: dict[str, Overview] = {}
        self._cache_lock = threading.Lock()
        self._compute_lock = threading.Lock()  # one overview computed at a time

    # -- the two reads every answer here is built from ----------------------------------------

    def _list(self, query: EventQuery) -> list[dict[str, Any]]:
        return self.store.list_events(query)

    def _iter(self, *, since: float | None, until: float | None) -> Iterator[dict[str, Any]]:
        """Every event in the time range, in chain order, a page at a time."""
        query = EventQuery(since=since, until=until, order="asc", limit=1000)
        while True:
            page = self._list(query)
            yield from page
            if len(page) < 1000:
                return
            query = replace(query, after_seq=key_of(page[-1]))

    # -- events ----------------------------------------------------------------------------

    def _scan(
        self, f: EventFilter, *, order: str, after: int | None = None, before: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Matching events in ``order`` (desc = newest first) strictly between the keys."""
        base = EventQuery(
            since=f.since,
            until=f.until,
            verdict=f.verdict,
            model=f.model,
            order=order,
            limit=self._SCAN,
            after_seq=after,
            before_seq=before,
        )
        while True:
            batch = self._list(base)
            for ev in batch:
                if f.matches(ev):
                    yield ev
            if len(batch) < self._SCAN:
                return
            last = key_of(batch[-1])
            base = replace(
                base, **({"before_seq": last} if order == "desc" else {"after_seq": last})
            )

    def page(
        self,
        f: EventFilter,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> Page:
        """``limit`` matching events, newest first: the newest, or those just older than
        ``before``, or just newer than ``after``."""
        if after is not None:
            rows = _take(self._scan(f, order="asc", after=after), limit + 1)
            more = len(rows) > limit
            rows = list(reversed(rows[:limit]))
            page = Page(rows, newer=key_of(rows[0]) if more and rows else None)
            if rows and self._exists(f, before=key_of(rows[-1])):
                page.older = key_of(rows[-1])
            return page
        rows = _take(self._scan(f, order="desc", before=before), limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        page = Page(rows, older=key_of(rows[-1]) if more and rows else None)
        if before is not None and rows and self._exists(f, after=key_of(rows[0])):
            page.newer = key_of(rows[0])
        return page

    def _exists(
        self, f: EventFilter, *, after: int | None = None, before: int | None = None
    ) -> bool:
        order = "asc" if after is not None else "desc"
        return bool(_take(self._scan(f, order=order, after=after, before=before), 1))

    def count(self, f: EventFilter, cap: int = COUNT_CAP) -> int | None:
        """Matching events, counted up to ``cap + 1`` (more than ``cap`` shows as such);
        None when counting takes longer than ``COUNT_BUDGET`` seconds."""
        deadline = time.monotonic() + COUNT_BUDGET
        n = 0
        for _ in self._scan(f, order="desc"):
            n += 1
            if n > cap:
                break
            if n % 256 == 0 and time.monotonic() > deadline:
                return None
        return n

    def get(self, key: int) -> dict[str, Any] | None:
        """The event at cursor ``key`` (see :func:`key_of`)."""
        rows = self._list(EventQuery(after_seq=key - 1, before_seq=key + 1, limit=1))
        return rows[0] if rows else None

    def batches(self, f: EventFilter, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        """All matching events in chain order, ``size`` at a time (for exports).

        Each ``next()`` does one bounded read, so a caller can run each in a worker thread.
        """
        after = 0
        while True:
            rows = _take(self._scan(f, order="asc", after=after), size)
            if not rows:
                return
            yield rows
            if len(rows) < size:
                return
            after = key_of(rows[-1])

    def suggestions(self) -> dict[str, list[str]]:
        """Distinct values for the filter inputs, from the newest events."""
        rows = self._list(EventQuery(limit=SUGGEST_WINDOW))
        seen: dict[str, set[str]] = {
            k: set() for k in ("policy", "reason", "model", "target", "who")
        }
        for ev in rows:
            ident = ev.get("identity") if isinstance(ev.get("identity"), Mapping) else {}
            for key, value in (
                ("policy", ev.get("policy")),
                ("reason", ev.get("reason_code")),
                ("model", ev.get("model")),
                ("target", ev.get("target_id")),
                ("who", ident.get("role")),
                ("who", ident.get("key_name")),
            ):
                if isinstance(value, str) and value:
                    seen[key].add(value)
        return {k: sorted(v)[:200] for k, v in seen.items()}

    def verify(self) -> VerifyResult:
        return self.store.verify()

    # -- overview --------------------------------------------------------------------------

    def overview(self, window: str = DEFAULT_WINDOW, *, now: float | None = None) -> Overview:
        """Decisions per bucket, per verdict and per dimension, and latency percentiles.

        Reused for ``OVERVIEW_TTL`` seconds (unless ``now`` is given)."""
        if window not in WINDOWS:
            window = DEFAULT_WINDOW
        if now is not None:
            return self._overview(window, *window_bounds(window, now))
        hit = self._cached(window)
        if hit is not None:
            return hit
        # Several people opening the overview of a large log at once: one computes, the
        # others wait for its result instead of scanning the log again.
        with self._compute_lock:
            hit = self._cached(window)
            if hit is not None:
                return hit
            ov = self._overview(window, *window_bounds(window))
            with self._cache_lock:
                self._cache[window] = ov
            return ov

    def _cached(self, window: str) -> Overview | None:
        with self._cache_lock:
            hit = self._cache.get(window)
        if hit is not None and time.time() - hit.computed_at < OVERVIEW_TTL[window]:
            return hit
        return None

    def _overview(self, window: str, start: float, end: float, bucket: float) -> Overview:
        agg = _Aggregate(window, start, end, bucket)
        for ev in self._iter(since=start, until=end):
            if ev.get("event_type") != "decision":
                continue
            ts = event_ts(ev)
            if ts is None or not start <= ts < end:
                continue
            ident = ev.get("identity") if isinstance(ev.get("identity"), Mapping) else {}
            agg.add(
                ts=ts,
                verdict=ev.get("verdict"),
                dims={
                    "policy": ev.get("policy"),
                    "model": ev.get("model"),
                    "target": ev.get("target_id"),
                    "role": ident.get("role"),
                },
                redactions=ev.get("redactions") if ev.get("verdict") == "redact" else 0,
                latency=ev.get("latency_ms"),
                overhead=ev.get("overhead_ms"),
            )
        return agg.result()


class _Aggregate:
    """Accumulates the overview in Python (the generic adapter)."""

    def __init__(self, window: str, start: float, end: float, bucket: float) -> None:
        self.window, self.start, self.end, self.bucket = window, start, end, bucket
        self.n = round((end - start) / bucket)
        self.series: list[dict[str, int]] = [{} for _ in range(self.n)]
        self.totals: dict[str, int] = {}
        self.by: dict[str, dict[str, dict[str, int]]] = {d: {} for d in DIMENSIONS}
        self.redacted = 0
        self.lat: list[float] = []
        self.over: list[float] = []

    def add(
        self,
        *,
        ts: float,
        verdict: Any,
        dims: Mapping[str, Any],
        redactions: Any,
        latency: Any,
        overhead: Any,
    ) -> None:
        v = verdict if verdict in VERDICTS else "other"
        i = min(self.n - 1, int((ts - self.start) // self.bucket))
        self.series[i][v] = self.series[i].get(v, 0) + 1
        self.totals[v] = self.totals.get(v, 0) + 1
        for dim, value in dims.items():
            if dim == "policy" and not value:
                continue  # no deciding policy: every policy passed
            key = "(none)" if value in (None, "") else str(value)
            counts = self.by[dim].setdefault(key, {})
            counts[v] = counts.get(v, 0) + 1
        if isinstance(redactions, (int, float)):
            self.redacted += int(redactions)
        if isinstance(latency, (int, float)):
            self.lat.append(float(latency))
        if isinstance(overhead, (int, float)):
            self.over.append(float(overhead))

    def result(self) -> Overview:
        self.lat.sort()
        self.over.sort()
        return Overview(
            window=self.window,
            start=self.start,
            end=self.end,
            bucket=self.bucket,
            series=self.series,
            totals=self.totals,
            redacted_items=self.redacted,
            by={d: _ranked(v) for d, v in self.by.items()},
            latency=_latency(self.lat, self.over),
            latency_samples=len(self.lat),
        )


def _ranked(counts: Mapping[str, dict[str, int]]) -> list[tuple[str, dict[str, int]]]:
    return sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))


def _latency(lat: list[float], over: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "overhead_p50": percentile(over, 0.50),
        "overhead_p99": percentile(over, 0.99),
    }


def _take(it: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out = []
    for ev in it:
        out.append(ev)
        if len(out) >= n:
            break
    return out


# -- SQLite ---------------------------------------------------------------------------------

# The event JSON as text (the column is a BLOB; SQLite >= 3.45 would read a BLOB as JSONB),
# NULL when it is not valid JSON (a tampered row must not break the page).
_TEXT = "CAST(body AS TEXT)"
_BODY = f"(CASE WHEN json_valid({_TEXT}) THEN {_TEXT} END)"


def _needle(key: str, value: str) -> bytes:
    """``"key":"value"`` as the stored canonical JSON spells it: a fast, necessary condition
    (``instr`` on the stored bytes) checked before the exact ``json_extract`` test."""
    return b'"' + key.encode() + b'":' + orjson.dumps(value)


def _json(path: str) -> str:
    return f"json_extract({_BODY}, '{path}')"


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SQLiteEventQueries(EventQueries):
    """The same reads as SQL over ``<state_dir>/audit.db`` (read-only connections)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.path = store.path

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{pathname2url(str(self.path.resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    @staticmethod
    def _where(f: EventFilter, *, scan: bool = False) -> tuple[list[str], list[Any]]:
        """SQL conditions for ``f``.

        With ``scan`` (pages: ``ORDER BY seq LIMIT n``) the low-cardinality columns are
        written ``+column`` so SQLite walks the table in ``seq`` order and stops after ``n``
        matches, instead of reading a whole index range and sorting it (the log has no
        statistics for the planner). Fields inside the event JSON are checked with a cheap
        substring test on the stored text first, and parsed only for the candidate rows.
        """
        c: list[str] = []
        p: list[Any] = []
        plus = "+" if scan else ""
        if f.since is not None:
            c.append("ts >= ?")
            p.append(f.since)
        if f.until is not None:
            c.append("ts <= ?")
            p.append(f.until)
        for column, value in (
            ("verdict", f.verdict),
            ("event_type", f.type),
            ("reason_code", f.reason),
            ("model", f.model),
            ("target_id", f.target),
        ):
            if value is not None:
                c.append(f"{plus}{column} = ?")
                p.append(value)
        if f.policy is not None:
            c.append(f"(instr(body, ?) > 0 AND {_json('$.policy')} = ?)")
            p += [_needle("policy", f.policy), f.policy]
        if f.who is not None:
            c.append(
                f"({plus}role = ? OR (instr(body, ?) > 0 AND {_json('$.identity.key_name')} = ?))"
            )
            p += [f.who, _needle("key_name", f.who), f.who]
        if f.request is not None:
            c.append("(request_id = ? OR id = ?)")
            p += [f.request, f.request]
        if f.q is not None:
            like = _like(f.q)
            if not any(ch in f.q for ch in '"\\') and f.q.isprintable():
                # Any field holding the text means the event's JSON holds it too.
                c.append(f"{_TEXT} LIKE ? ESCAPE '\\'")
                p.append(like)
            cols = ("id", "request_id", "event_type", "reason_code", "model", "target_id", "role")
            exprs = [*cols, _json("$.policy"), _json("$.identity.key_name")]
            c.append("(" + " OR ".join(f"{e} LIKE ? ESCAPE '\\'" for e in exprs) + ")")
            p += [like] * len(exprs)
        return c, p

    def _select(
        self,
        conn: sqlite3.Connection,
        f: EventFilter,
        *,
        order: str,
        limit: int,
        after: int | None = None,
        before: int | None = None,
        columns: str = "body, hash",
    ) -> list[Any]:
        c, p = self._where(f, scan=True)
        if after is not None:
            c.append("seq > ?")
            p.append(after)
        if before is not None:
            c.append("seq < ?")
            p.append(before)
        where = (" WHERE " + " AND ".join(c)) if c else ""
        sql = f"SELECT {columns} FROM events{where} ORDER BY seq {order} LIMIT ?"
        return conn.execute(sql, [*p, limit]).fetchall()

    def page(
        self,
        f: EventFilter,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> Page:
        cols = "seq, body, hash"
        conn = self._connect()
        try:
            conn.execute("BEGIN")  # one snapshot for the page and its neighbours
            if after is not None:
                rows = self._select(
                    conn, f, order="ASC", limit=limit + 1, after=after, columns=cols
                )
                more = len(rows) > limit
                rows = list(reversed(rows[:limit]))
                page = Page([_event(b, h, s) for s, b, h in rows])
                if rows:
                    first, last = rows[0][0], rows[-1][0]
                    page.newer = first if more else None
                    if self._select(conn, f, order="DESC", limit=1, before=last, columns="1"):
                        page.older = last
                return page
            rows = self._select(conn, f, order="DESC", limit=limit + 1, before=before, columns=cols)
            more = len(rows) > limit
            rows = rows[:limit]
            page = Page([_event(b, h, s) for s, b, h in rows])
            if rows:
                first, last = rows[0][0], rows[-1][0]
                page.older = last if more else None
                if before is not None and self._select(
                    conn, f, order="ASC", limit=1, after=first, columns="1"
                ):
                    page.newer = first
            return page
        finally:
            conn.close()

    def count(self, f: EventFilter, cap: int = COUNT_CAP) -> int | None:
        c, p = self._where(f)
        where = (" WHERE " + " AND ".join(c)) if c else ""
        conn = self._connect()
        deadline = time.monotonic() + COUNT_BUDGET
        # A filter on a field inside the JSON reads every row: give up rather than keep
        # the page waiting (the page itself never needs the count).
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            if not c:
                return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM events{where} LIMIT ?)"
            return conn.execute(sql, [*p, cap + 1]).fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc):
                return None
            raise
        finally:
            conn.close()

    def get(self, seq: int) -> dict[str, Any] | None:
        conn = self._connect()
        try:
            row = conn.execute("SELECT body, hash FROM events WHERE seq = ?", (seq,)).fetchone()
        finally:
            conn.close()
        return _event(row[0], row[1], seq) if row else None

    def batches(self, f: EventFilter, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        after = 0
        while True:
            conn = self._connect()  # no read transaction is held between batches
            try:
                rows = self._select(
                    conn, f, order="ASC", limit=size, after=after, columns="seq, body, hash"
                )
            finally:
                conn.close()
            if not rows:
                return
            yield [_event(b, h, s) for s, b, h in rows]
            if len(rows) < size:
                return
            after = rows[-1][0]

    def suggestions(self) -> dict[str, list[str]]:
        conn = self._connect()
        try:
            recent = (
                f"(SELECT reason_code, model, target_id, role, body FROM events "
                f"ORDER BY seq DESC LIMIT {SUGGEST_WINDOW})"
            )
            out: dict[str, list[str]] = {}
            for key, expr in (
                ("policy", _json("$.policy")),
                ("reason", "reason_code"),
                ("model", "model"),
                ("target", "target_id"),
                ("who", "role"),
                ("key_name", _json("$.identity.key_name")),
            ):
                sql = (
                    f"SELECT DISTINCT v FROM (SELECT {expr} AS v FROM {recent}) "
                    "WHERE v IS NOT NULL AND v != '' ORDER BY v LIMIT 200"
                )
                out[key] = [str(r[0]) for r in conn.execute(sql)]
        finally:
            conn.close()
        out["who"] = sorted({*out["who"], *out.pop("key_name")})[:200]
        return out

    def _overview(self, window: str, start: float, end: float, bucket: float) -> Overview:
        """One grouped pass over the window (the ``ts`` index bounds it), one sampled pass
        for the latency percentiles. Only non-allowed events have their JSON parsed."""
        agg = _Aggregate(window, start, end, bucket)
        n = agg.n
        base = "FROM events WHERE ts >= ? AND ts < ? AND event_type = 'decision'"
        decided = "verdict IS NOT 'allow' OR reason_code IS NOT 'all_policies_passed'"
        grouped = (
            f"SELECT CAST((ts - ?) / ? AS INTEGER) AS b, verdict, model, target_id, role, "
            f"CASE WHEN {decided} THEN {_json('$.policy')} END AS pol, COUNT(*), "
            f"SUM(CASE WHEN verdict = 'redact' THEN {_json('$.redactions')} END) "
            f"{base} GROUP BY b, verdict, model, target_id, role, pol"
        )
        conn = self._connect()
        try:
            conn.execute("BEGIN")  # one snapshot for both passes
            for b, verdict, model, target, role, pol, cnt, red in conn.execute(
                grouped, [start, bucket, start, end]
            ):
                v = verdict if verdict in VERDICTS else "other"
                i = min(n - 1, max(0, int(b)))
                agg.series[i][v] = agg.series[i].get(v, 0) + cnt
                agg.totals[v] = agg.totals.get(v, 0) + cnt
                for dim, value in (("model", model), ("target", target), ("role", role),
                                   ("policy", pol)):  # fmt: skip
                    if dim == "policy" and value in (None, ""):
                        continue
                    key = "(none)" if value in (None, "") else str(value)
                    counts = agg.by[dim].setdefault(key, {})
                    counts[v] = counts.get(v, 0) + cnt
                if isinstance(red, (int, float)):
                    agg.redacted += int(red)
            total = sum(agg.totals.values())
            step = max(1, math.ceil(total / LATENCY_SAMPLES))
            sample = " AND seq % ? = 0" if step > 1 else ""
            for lat, over in conn.execute(
                f"SELECT {_json('$.latency_ms')}, {_json('$.overhead_ms')} {base}{sample}",
                [start, end, step] if step > 1 else [start, end],
            ):
                if isinstance(lat, (int, float)):
                    agg.lat.append(float(lat))
                if isinstance(over, (int, float)):
                    agg.over.append(float(over))
        finally:
            conn.close()
        return agg.result()


def _event(body: bytes | str, h: str, seq: int) -> dict[str, Any]:
    """The stored event; one whose body cannot be read still shows up (with its row's seq)."""
    try:
        ev = orjson.loads(body)
    except orjson.JSONDecodeError:
        ev = None
    if not isinstance(ev, dict):
        ev = {"seq": seq, "event_type": "unreadable", "error": "the stored event is not JSON"}
    ev["hash"] = h
    return ev


def queries_for(store: Any) -> EventQueries:
    """The adapter for ``store``: SQL for the SQLite store, the generic reads otherwise."""
    from keeptrusts.audit.store import SQLiteAuditStore

    if isinstance(store, SQLiteAuditStore):
        return SQLiteEventQueries(store)
    if getattr(store, "backend", None) == "postgresql" and getattr(store, "url", None):
        from keeptrusts.console.queries_pg import PostgresEventQueries

        return PostgresEventQueries(store)
    factory = getattr(store, "console_queries", None)  # a backend may ship its own adapter
    if callable(factory):
        return factory()
    return EventQueries(store)
