"""The console's reads of a PostgreSQL audit log (``keeptrusts.audit.postgres``), in SQL.

Same questions and answers as :class:`~keeptrusts.console.queries.SQLiteEventQueries`, with
PostgreSQL spelling: ``%s`` placeholders, ``body::json ->> 'key'``, ``ILIKE``, the cursor is
``pos`` (``seq`` numbers each instance's chain on its own), ``logged_at`` bounds let the
planner skip old day partitions, and ``statement_timeout`` bounds a count. A row whose body
is not JSON (tampering) makes PostgreSQL refuse the cast: that one read then falls back to
the generic adapter, which skips such rows in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson

from keeptrusts.audit.query import VERDICTS, EventQuery
from keeptrusts.console import queries as base
from keeptrusts.console.filters import EventFilter
from keeptrusts.console.queries import EventQueries, Overview, Page

T = TypeVar("T")

_J = "body::json"
_DECIDED = "verdict IS DISTINCT FROM 'allow' OR reason_code IS DISTINCT FROM 'all_policies_passed'"


def _num(key: str) -> str:
    """A top-level number of the event, NULL when it is not a number."""
    return f"CASE WHEN json_typeof({_J} -> '{key}') = 'number' THEN ({_J} ->> '{key}')::float8 END"


def _needle(key: str, value: str) -> str:
    return f'"{key}":' + orjson.dumps(value).decode()


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PostgresEventQueries(EventQueries):
    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.url = store.url

    def _list(self, query: EventQuery) -> list[dict[str, Any]]:
        """``store.list_events`` for the Python fallback, tolerating rows that are not
        JSON (the store's own reader would raise on them)."""
        from keeptrusts.audit.pgdb import horizon_sql, reading

        where: list[str] = []
        params: list[Any] = []
        if query.since is not None:
            where.append("ts >= %s AND logged_at >= to_timestamp(%s)")
            params += [query.since, query.since]
        for clause, value in (
            ("ts <= %s", query.until),
            ("verdict = %s", query.verdict),
            ("model = %s", query.model),
            ("pos > %s", query.after_seq),
            ("pos < %s", query.before_seq),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        if query.after_seq is not None or query.order == "asc":
            where.append(f"pos < {horizon_sql()}")
        sql = "SELECT pos, body, hash FROM audit_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY pos {query.order.upper()}"
        if query.limit is not None:
            sql += " LIMIT %s"
            params.append(query.limit)
        with reading(self.url) as conn:
            return [_event(b, h, pos) for pos, b, h in conn.execute(sql, params)]

    def _read(self, fn: Callable[[Any], T], fallback: Callable[[], T]) -> T:
        import psycopg

        from keeptrusts.audit.pgdb import reading

        try:
            with reading(self.url) as conn:
                return fn(conn)
        except psycopg.errors.DataError:
            return fallback()

    @staticmethod
    def _where(f: EventFilter) -> tuple[list[str], list[Any]]:
        c: list[str] = []
        p: list[Any] = []
        if f.since is not None:
            c.append("ts >= %s AND logged_at >= to_timestamp(%s)")
            p += [f.since, f.since]
        if f.until is not None:
            c.append("ts <= %s")
            p.append(f.until)
        for column, value in (
            ("verdict", f.verdict),
            ("event_type", f.type),
            ("reason_code", f.reason),
            ("model", f.model),
            ("target_id", f.target),
        ):
            if value is not None:
                c.append(f"{column} = %s")
                p.append(value)
        if f.policy is not None:
            c.append(f"(strpos(body, %s) > 0 AND {_J} ->> 'policy' = %s)")
            p += [_needle("policy", f.policy), f.policy]
        if f.who is not None:
            c.append(
                f"(role = %s OR (strpos(body, %s) > 0 AND {_J} -> 'identity' ->> 'key_name' = %s))"
            )
            p += [f.who, _needle("key_name", f.who), f.who]
        if f.request is not None:
            c.append("(request_id = %s OR id = %s)")
            p += [f.request, f.request]
        if f.q is not None:
            like = _like(f.q)
            if not any(ch in f.q for ch in '"\\') and f.q.isprintable():
                c.append("body ILIKE %s")
                p.append(like)
            cols = ("id", "request_id", "event_type", "reason_code", "model", "target_id", "role")
            exprs = [*cols, f"{_J} ->> 'policy'", f"{_J} -> 'identity' ->> 'key_name'"]
            c.append("(" + " OR ".join(f"{e} ILIKE %s" for e in exprs) + ")")
            p += [like] * len(exprs)
        return c, p

    def _select(
        self,
        conn: Any,
        f: EventFilter,
        *,
        order: str,
        limit: int,
        after: int | None = None,
        before: int | None = None,
        columns: str = "pos, body, hash",
        stable: bool = False,
    ) -> list[Any]:
        from keeptrusts.audit.pgdb import horizon_sql

        c, p = self._where(f)
        if after is not None:
            c.append("pos > %s")
            p.append(after)
        if before is not None:
            c.append("pos < %s")
            p.append(before)
        if stable:  # paging forward never skips a row that commits late
            c.append(f"pos < {horizon_sql()}")
        where = (" WHERE " + " AND ".join(c)) if c else ""
        sql = f"SELECT {columns} FROM audit_events{where} ORDER BY pos {order} LIMIT %s"
        return conn.execute(sql, [*p, limit]).fetchall()

    def page(
        self,
        f: EventFilter,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> Page:
        def run(conn: Any) -> Page:
            if after is not None:
                rows = self._select(conn, f, order="ASC", limit=limit + 1, after=after)
                more = len(rows) > limit
                rows = list(reversed(rows[:limit]))
                page = Page([_event(b, h, pos) for pos, b, h in rows])
                if rows:
                    page.newer = rows[0][0] if more else None
                    if self._select(conn, f, order="DESC", limit=1, before=rows[-1][0],
                                    columns="1"):  # fmt: skip
                        page.older = rows[-1][0]
                return page
            rows = self._select(conn, f, order="DESC", limit=limit + 1, before=before)
            more = len(rows) > limit
            rows = rows[:limit]
            page = Page([_event(b, h, pos) for pos, b, h in rows])
            if rows:
                page.older = rows[-1][0] if more else None
                if before is not None and self._select(
                    conn, f, order="ASC", limit=1, after=rows[0][0], columns="1"
                ):
                    page.newer = rows[0][0]
            return page

        return self._read(run, lambda: super(PostgresEventQueries, self).page(
            f, before=before, after=after, limit=limit))  # fmt: skip

    def count(self, f: EventFilter, cap: int = base.COUNT_CAP) -> int | None:
        import psycopg

        c, p = self._where(f)
        where = (" WHERE " + " AND ".join(c)) if c else ""

        def run(conn: Any) -> int | None:
            conn.execute(f"SET statement_timeout = {max(1, int(base.COUNT_BUDGET * 1000))}")
            sql = f"SELECT count(*) FROM (SELECT 1 FROM audit_events{where} LIMIT %s) AS m"
            try:
                return conn.execute(sql, [*p, cap + 1]).fetchone()[0]
            except psycopg.errors.QueryCanceled:
                return None

        return self._read(run, lambda: super(PostgresEventQueries, self).count(f, cap))

    def get(self, key: int) -> dict[str, Any] | None:
        def run(conn: Any) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT pos, body, hash FROM audit_events WHERE pos = %s LIMIT 1", (key,)
            ).fetchone()
            return _event(row[1], row[2], row[0]) if row else None

        return self._read(run, lambda: super(PostgresEventQueries, self).get(key))

    def batches(self, f: EventFilter, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
        after = 0
        while True:
            rows = self._read(
                lambda conn, a=after: self._select(
                    conn, f, order="ASC", limit=size, after=a, stable=True
                ),
                lambda: None,
            )
            if rows is None:  # a row that is not JSON: finish the export the slow way
                yield from self._rest(f, after, size)
                return
            if not rows:
                return
            yield [_event(b, h, pos) for pos, b, h in rows]
            if len(rows) < size:
                return
            after = rows[-1][0]

    def _rest(self, f: EventFilter, after: int, size: int) -> Iterator[list[dict[str, Any]]]:
        while True:
            rows = base._take(self._scan(f, order="asc", after=after), size)
            if not rows:
                return
            yield rows
            if len(rows) < size:
                return
            after = base.key_of(rows[-1])

    def suggestions(self) -> dict[str, list[str]]:
        def run(conn: Any) -> dict[str, list[str]]:
            recent = (
                "(SELECT reason_code, model, target_id, role, body FROM audit_events "
                f"ORDER BY pos DESC LIMIT {base.SUGGEST_WINDOW}) AS recent"
            )
            out: dict[str, list[str]] = {}
            for key, expr in (
                ("policy", f"{_J} ->> 'policy'"),
                ("reason", "reason_code"),
                ("model", "model"),
                ("target", "target_id"),
                ("who", "role"),
                ("key_name", f"{_J} -> 'identity' ->> 'key_name'"),
            ):
                sql = (
                    f"SELECT DISTINCT v FROM (SELECT {expr} AS v FROM {recent}) AS d "
                    "WHERE v IS NOT NULL AND v <> '' ORDER BY v LIMIT 200"
                )
                out[key] = [str(r[0]) for r in conn.execute(sql)]
            out["who"] = sorted({*out["who"], *out.pop("key_name")})[:200]
            return out

        return self._read(run, lambda: super(PostgresEventQueries, self).suggestions())

    def _overview(self, window: str, start: float, end: float, bucket: float) -> Overview:
        def run(conn: Any) -> Overview:
            agg = base._Aggregate(window, start, end, bucket)
            n = agg.n
            where = (
                "FROM audit_events WHERE ts >= %s AND ts < %s "
                "AND logged_at >= to_timestamp(%s) AND event_type = 'decision'"
            )
            span = [start, end, start]
            grouped = (
                "SELECT floor((ts - %s) / %s)::bigint AS b, verdict, model, target_id, role, "
                f"CASE WHEN {_DECIDED} THEN {_J} ->> 'policy' END AS pol, count(*), "
                f"sum(CASE WHEN verdict = 'redact' THEN {_num('redactions')} END) "
                f"{where} GROUP BY 1, 2, 3, 4, 5, 6"
            )
            for b, verdict, model, target, role, pol, cnt, red in conn.execute(
                grouped, [start, bucket, *span]
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
                if red is not None:
                    agg.redacted += int(red)
            total = sum(agg.totals.values())
            sample, params = "", span
            if total > base.LATENCY_SAMPLES:
                sample, params = " AND random() < %s", [*span, base.LATENCY_SAMPLES / total]
            for lat, over in conn.execute(
                f"SELECT {_num('latency_ms')}, {_num('overhead_ms')} {where}{sample}", params
            ):
                if lat is not None:
                    agg.lat.append(float(lat))
                if over is not None:
                    agg.over.append(float(over))
            return agg.result()

        return self._read(
            run, lambda: super(PostgresEventQueries, self)._overview(window, start, end, bucket)
        )


def _event(body: str, h: str, pos: int) -> dict[str, Any]:
    try:
        ev = orjson.loads(body)
    except orjson.JSONDecodeError:
        ev = None
    if not isinstance(ev, dict):
        ev = {"event_type": "unreadable", "error": "the stored event is not JSON"}
    ev["hash"] = h
    ev["pos"] = pos
    return ev
