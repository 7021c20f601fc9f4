"""The console over a PostgreSQL audit log (a fleet: one chain per gateway instance).

Uses the fleet tests' scratch database (``tests/fleet/conftest.py``): skipped without a
PostgreSQL server, failing instead when ``KEEPTRUSTS_TEST_PG_REQUIRED`` is set (CI).
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from keeptrusts.audit.store import SQLiteAuditStore
from keeptrusts.console import add_console_routes
from keeptrusts.console.filters import EventFilter
from keeptrusts.console.queries import EventQueries, SQLiteEventQueries, key_of, queries_for
from keeptrusts.console.queries_pg import PostgresEventQueries
from tests.fleet.conftest import db_url, pg  # noqa: F401  (fixtures)

from .helpers import history
from .test_console_app import TOKEN, FakeGateway, _config, _login

pytest.importorskip("psycopg")

FILTERS = [
    EventFilter(),
    EventFilter(verdict="block"),
    EventFilter(policy="rbac"),
    EventFilter(who="analytics-batch"),
    EventFilter(q="DLP_RED"),
    EventFilter(request="req-hist-0007"),
]


def _ids(events: list[dict]) -> list[str]:
    return [e["request_id"] for e in events]


@pytest.fixture
def stores(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    """The same 160 events in PostgreSQL (written by two instances) and in SQLite."""
    from keeptrusts.audit.postgres import PostgresAuditStore

    events = history(160, now=time.time(), seed=21)
    a = PostgresAuditStore(db_url, state_dir=tmp_path / "a", instance_id="gw-a")
    b = PostgresAuditStore(db_url, state_dir=tmp_path / "b", instance_id="gw-b")
    for i in range(0, 160, 20):
        (a if i % 40 == 0 else b).append(events[i : i + 20])
    lite = SQLiteAuditStore(tmp_path / "lite")
    lite.append(events)
    yield a, lite
    for s in (a, b, lite):
        with contextlib.suppress(Exception):
            s.close()


def test_pages_counts_exports_and_overview_match_sqlite(stores) -> None:  # type: ignore[no-untyped-def]
    pg_store, lite = stores
    q, ref = queries_for(pg_store), SQLiteEventQueries(lite)
    assert type(q) is PostgresEventQueries
    for adapter in (q, EventQueries(pg_store)):  # the SQL adapter and the generic fallback
        _compare(adapter, ref)
    assert q.verify().ok


def _compare(q: EventQueries, ref: EventQueries) -> None:
    for f in FILTERS:
        assert _ids([e for b in q.batches(f, 33) for e in b]) == _ids(
            [e for b in ref.batches(f, 33) for e in b]
        ), f
        assert q.count(f) == ref.count(f)
        # Walk every page newest first, by the store's own cursor.
        got, page = [], q.page(f, limit=15)
        got += page.events
        while page.older is not None:
            page = q.page(f, before=page.older, limit=15)
            got += page.events
        want = [e for b in ref.batches(f) for e in b][::-1]
        assert _ids(got) == _ids(want), f
        if got:
            assert q.get(key_of(got[-1]))["request_id"] == got[-1]["request_id"]
    a, b = q.overview("24h"), ref.overview("24h")
    assert (a.totals, a.series, a.redacted_items) == (b.totals, b.series, b.redacted_items)
    assert {k: dict(v) for k, v in a.by.items()} == {k: dict(v) for k, v in b.by.items()}
    assert a.latency == b.latency
    assert q.suggestions() == ref.suggestions()


def test_a_row_that_is_not_json_falls_back_instead_of_failing(stores, db_url) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    pg_store, _ = stores
    from keeptrusts.audit.pgdb import connect

    with contextlib.closing(connect(db_url)) as c:
        c.execute("UPDATE audit_events SET body = 'not json' WHERE request_id = 'req-hist-0003'")
    q = queries_for(pg_store)
    assert len(q.page(EventFilter(policy="rbac"), limit=500).events) > 0
    assert q.overview("24h").requests == 159  # computed in Python, without the broken row
    exported = [e for b in q.batches(EventFilter(q="hist"), 50) for e in b]
    assert len(exported) == 159  # the broken row's text no longer matches
    assert not q.verify().ok


async def test_the_console_serves_a_postgres_log(stores) -> None:  # type: ignore[no-untyped-def]
    pg_store, _ = stores
    gw = FakeGateway(SimpleNamespace(store=pg_store), _config(Path(pg_store.dir)))
    app = web.Application()
    add_console_routes(app, lambda: gw)
    async with TestClient(TestServer(app)) as client:
        assert (await _login(client, token=TOKEN)).status == 303
        html = await (await client.get("/console/events", params={"verdict": "block"})).text()
        links = re.findall(r'href="/console/events/(\d+)', html)
        assert links
        detail = await client.get(f"/console/events/{links[0]}")
        assert detail.status == 200 and "Policy results" in await detail.text()
        r = await client.get("/console/export", params={"format": "csv", "who": "analyst"})
        assert r.status == 200 and (await r.text()).count("\n") > 1
        assert (await client.get("/console")).status == 200
