"""The console's store adapters: SQL and generic agree; keyset paging; a large log is fast."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from keeptrusts.audit.event import iso_utc
from keeptrusts.audit.store import SQLiteAuditStore
from keeptrusts.console import queries as qmod
from keeptrusts.console.filters import EventFilter
from keeptrusts.console.queries import EventQueries, SQLiteEventQueries, queries_for

from .helpers import history

NOW = 1_770_000_000.0  # a fixed "now" so windows and buckets are reproducible


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """600 decisions over 23 hours before NOW, plus two config reloads."""
    s = SQLiteAuditStore(tmp_path_factory.mktemp("cq"))
    events = history(600, now=NOW, seed=11)
    reload = {"event_type": "config_reload", "verdict": "allow", "reason_code": "config_reloaded"}
    s.append(events[:300])
    s.append([{**reload, "timestamp": iso_utc(NOW - 5 * 3600)}])
    s.append(events[300:])
    s.append([{**reload, "timestamp": iso_utc(NOW - 60)}])
    yield s
    s.close()


FILTERS = [
    EventFilter(),
    EventFilter(verdict="block"),
    EventFilter(verdict="error"),
    EventFilter(type="config_reload"),
    EventFilter(policy="dlp-filter"),
    EventFilter(policy="rbac", verdict="block"),
    EventFilter(reason="dlp_redacted"),
    EventFilter(model="claude-3-5-sonnet-20241022"),
    EventFilter(target="openai-gpt4o", verdict="allow"),
    EventFilter(who="analyst"),
    EventFilter(who="production-key"),
    EventFilter(request="req-hist-0042"),
    EventFilter(q="RBAC"),
    EventFilter(q="analytics"),
    EventFilter(q="100%_"),  # LIKE wildcards are literal
    EventFilter(since=NOW - 6 * 3600, until=NOW - 3 * 3600),
    EventFilter(since=NOW - 12 * 3600, verdict="redact", who="developer"),
    EventFilter(policy="no-such-policy"),
]


@pytest.mark.parametrize(
    "f", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.to_query().items()) or "all"
)
def test_sql_and_generic_adapters_agree(store, f: EventFilter) -> None:  # type: ignore[no-untyped-def]
    sql, generic = SQLiteEventQueries(store), EventQueries(store)
    everything = [ev for batch in generic.batches(EventFilter(), 97) for ev in batch]
    expected = [ev["seq"] for ev in everything if f.matches(ev)]
    assert [ev["seq"] for b in sql.batches(f, 97) for ev in b] == expected
    assert [ev["seq"] for b in generic.batches(f, 97) for ev in b] == expected
    assert sql.count(f) == generic.count(f) == len(expected)
    for limit in (1, 7, 50):
        a, b = sql.page(f, limit=limit), generic.page(f, limit=limit)
        assert [e["seq"] for e in a.events] == [e["seq"] for e in b.events]
        assert [e["seq"] for e in a.events] == list(reversed(expected))[:limit]
        assert (a.newer, a.older) == (b.newer, b.older)


def test_keyset_paging_walks_every_event_once_both_ways(store) -> None:  # type: ignore[no-untyped-def]
    for q in (SQLiteEventQueries(store), EventQueries(store)):
        f = EventFilter(verdict="allow")
        want = [e["seq"] for b in q.batches(f) for e in b][::-1]  # newest first
        seen: list[int] = []
        page = q.page(f, limit=25)
        assert page.newer is None
        pages = [page]
        while page.older is not None:
            page = q.page(f, before=page.older, limit=25)
            pages.append(page)
        seen = [e["seq"] for p in pages for e in p.events]
        assert seen == want
        # And back up from the oldest page with ``after``.
        back = [e["seq"] for e in pages[-1].events]
        while page.newer is not None:
            page = q.page(f, after=page.newer, limit=25)
            back = [e["seq"] for e in page.events] + back
        assert back == want
        assert page.older is not None  # the newest page reached from below links back down


def test_overview_counts_buckets_and_breakdowns_agree(store) -> None:  # type: ignore[no-untyped-def]
    sql, generic = SQLiteEventQueries(store), EventQueries(store)
    for window in qmod.WINDOWS:
        a, b = sql.overview(window, now=NOW), generic.overview(window, now=NOW)
        assert a.series == b.series and a.totals == b.totals, window
        assert a.redacted_items == b.redacted_items
        assert {k: dict(v) for k, v in a.by.items()} == {k: dict(v) for k, v in b.by.items()}
        assert a.latency == b.latency
    ov = sql.overview("24h", now=NOW)
    decisions = [e for b in generic.batches(EventFilter(type="decision")) for e in b]
    assert ov.requests == len(decisions) == 600
    assert ov.totals.get("block", 0) == sum(e["verdict"] == "block" for e in decisions)
    assert ov.redacted_items == sum(e.get("redactions", 0) for e in decisions)
    assert len(ov.series) == 48 and sum(sum(b.values()) for b in ov.series) == 600
    # Every policy that decided something is there, and nothing for all-passed requests.
    assert {name for name, _ in ov.by["policy"]} == {"dlp-filter", "rbac"}
    hour = sql.overview("1h", now=NOW)
    start, end, _ = qmod.window_bounds("1h", NOW)  # whole minutes, the current one included
    assert end - start == 3600 and start <= NOW - 3600 + 60 and end > NOW
    assert hour.requests == sum(start <= _ts(e) < end for e in decisions)


def _ts(ev: dict) -> float:
    from keeptrusts.audit.chain import parse_ts

    return parse_ts(ev["timestamp"]) or 0.0


def test_filter_semantics() -> None:
    ev = {
        "id": "evt_1",
        "request_id": "req-ABC",
        "event_type": "decision",
        "verdict": "block",
        "reason_code": "rbac_denied",
        "policy": "rbac",
        "model": "gpt-4o",
        "identity": {"role": "developer", "key_name": "ci-bot"},
        "timestamp": "2026-03-17T10:00:00Z",
    }
    assert EventFilter(who="developer").matches(ev) and EventFilter(who="ci-bot").matches(ev)
    assert not EventFilter(who="dev").matches(ev)  # exact, unlike the search box
    assert EventFilter(request="evt_1").matches(ev) and EventFilter(request="req-ABC").matches(ev)
    assert EventFilter(q="req-abc").matches(ev) and EventFilter(q="CI-B").matches(ev)
    f, errors = EventFilter.from_query({"since": "2026-03-17", "until": "2026-03-18"})
    assert not errors and f.matches(ev)
    f, errors = EventFilter.from_query({"since": "2026-03-18"})
    assert not f.matches(ev)
    f, errors = EventFilter.from_query({"since": "yesterday-ish", "verdict": "maybe", "type": "x"})
    assert len(errors) == 3 and not f.active
    f, _ = EventFilter.from_query({"verdict": "block", "q": "  x  ", "since": "2d", "who": ""})
    assert f.to_query() == {"since": "2d", "verdict": "block", "q": "x"}


def test_count_gives_up_instead_of_keeping_the_page_waiting(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(qmod, "COUNT_BUDGET", 0.0)
    assert SQLiteEventQueries(store).count(EventFilter(policy="rbac")) is None
    assert SQLiteEventQueries(store).count(EventFilter()) == 602  # no filter: cheap, exact


def test_an_unreadable_row_does_not_break_reads(tmp_path: Path) -> None:
    s = SQLiteAuditStore(tmp_path)
    s.append(history(20, now=NOW))
    db = sqlite3.connect(tmp_path / "audit.db")
    db.execute("UPDATE events SET body = X'7b6e6f7420a0' WHERE seq = 5")  # not JSON, not UTF-8
    db.commit()
    db.close()
    q = SQLiteEventQueries(s)
    page = q.page(EventFilter(policy="dlp-filter"), limit=50)
    assert 5 not in [e["seq"] for e in page.events]
    assert q.get(5)["event_type"] == "unreadable"
    assert len(q.page(EventFilter(), limit=50).events) == 20
    assert q.overview("24h", now=NOW).requests == 20  # its indexed columns still count
    assert not q.verify().ok
    s.close()


def test_queries_for_picks_the_sql_adapter_and_falls_back(store) -> None:  # type: ignore[no-untyped-def]
    assert type(queries_for(store)) is SQLiteEventQueries

    class Other:
        def list_events(self, query):  # type: ignore[no-untyped-def]
            return store.list_events(query)

    assert type(queries_for(Other())) is EventQueries


def test_a_large_log_pages_quickly(tmp_path: Path) -> None:
    """50,000 events: any page, with any filter, in well under a second (keyset on seq)."""
    n = 50_000
    base = history(50, now=NOW, seed=3)
    s = SQLiteAuditStore(tmp_path)
    batch = []
    for i in range(n):
        ev = dict(base[i % 50])
        ev["timestamp"] = iso_utc(NOW - (n - i) * 30.0)  # one every 30 s, ~17 days
        ev["request_id"] = f"req-big-{i}"
        batch.append(ev)
        if len(batch) == 5000:
            s.append(batch)
            batch = []
    q = SQLiteEventQueries(s)
    cases = [
        EventFilter(),
        EventFilter(verdict="block"),
        EventFilter(model="gpt-4o", target="openai-gpt4o"),
        EventFilter(policy="rbac"),
        EventFilter(who="analytics-batch"),
        EventFilter(request="req-big-123"),
        EventFilter(since=NOW - 10 * 86400, until=NOW - 9 * 86400),
    ]
    slowest = 0.0
    for f in cases:
        for before in (None, n // 2, 100):
            t0 = time.perf_counter()
            page = q.page(f, before=before, limit=50)
            slowest = max(slowest, time.perf_counter() - t0)
            assert page.events or f.request or before == 100
    assert slowest < 0.5, f"slowest page took {slowest:.3f}s"
    t0 = time.perf_counter()
    start, end, _ = qmod.window_bounds("24h", NOW)
    in_window = sum(start <= NOW - (n - i) * 30.0 < end for i in range(n))
    assert q.overview("24h", now=NOW).requests == in_window > 2800
    assert time.perf_counter() - t0 < 2.0
    s.close()
