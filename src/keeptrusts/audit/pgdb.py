"""PostgreSQL plumbing shared by the audit store, the key store and ``kt db``.

Connections, the versioned schema migrations, and the day partitions of ``audit_events``.

Schema (version 1):

* ``kt_schema_migrations``: one row per applied migration (``kt db migrate`` runs the
  missing ones in one transaction, under an advisory lock, so it is idempotent and safe to
  run from several machines at once). A gateway checks the version at start and refuses to
  run against an older or newer schema.
* ``audit_chains``: one row per hash chain, i.e. per gateway process (``chain_id``,
  ``instance_id``, host, pid, start time), with the chain's head (updated in the same
  transaction as each batch: one small row per instance, never shared) and its retention
  checkpoint.
* ``audit_events``: the events, ``PARTITION BY RANGE (logged_at)``, one partition per UTC
  day. ``logged_at`` is the time the row was chained, never earlier than the event's own
  ``ts`` nor than the chain's previous row, so each chain is in day order and dropping the
  oldest partitions removes a prefix of every chain. ``pos`` orders rows across chains (see
  :func:`horizon_sql`).
* ``gateway_keys``: gateway keys (hash, role, name); ``version`` changes on every create or
  revoke so gateways notice changes with one cheap query.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("keeptrusts.db")

DATABASE_URL_ENV = "KEEPTRUSTS_DATABASE_URL"
PARTITION_PREFIX = "audit_events_p"
# Advisory lock keys (arbitrary constants, "kt" + purpose).
MIGRATION_LOCK = 0x6B74_0001
PARTITION_LOCK = 0x6B74_0002
# ``pos = xid << POS_SHIFT | row``: rows per transaction are limited to 2**POS_SHIFT.
POS_SHIFT = 16
MAX_ROWS_PER_TRANSACTION = 1 << POS_SHIFT
# Partitions made ahead of time, so the write path rarely creates one.
PARTITIONS_AHEAD = 2

_PARTITION_RE = re.compile(rf"^{PARTITION_PREFIX}(\d{{8}})$")


class DatabaseError(RuntimeError):
    """PostgreSQL cannot be used (unreachable, or the schema does not match)."""


class DatabaseUnavailable(DatabaseError):
    pass


class SchemaMismatch(DatabaseError):
    pass


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - depends on the install
        raise DatabaseError(
            "PostgreSQL support needs psycopg 3: pip install 'keeptrusts[postgres]' "
            "(or 'psycopg[binary]>=3.1')"
        ) from None
    return psycopg


def redact_url(url: str) -> str:
    """The URL without its password (for logs, errors and ``location``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://…"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def connect(
    url: str,
    *,
    autocommit: bool = True,
    connect_timeout: float = 3.0,
    application_name: str = "keeptrusts",
) -> Any:
    """A psycopg connection with short timeouts, so an outage is noticed in seconds.

    Settings given in ``url`` win over these defaults. Raises :class:`DatabaseUnavailable`
    when the server cannot be reached.
    """
    psycopg = _psycopg()
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise DatabaseError(f"invalid database URL {redact_url(url)}: {exc}") from None
    defaults = {
        "connect_timeout": max(1, round(connect_timeout)),
        "application_name": application_name,
        # A dead peer or a partition is detected by the kernel within ~10 s, not hours.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 10_000,
    }
    options = {k: v for k, v in defaults.items() if k not in given}
    try:
        return psycopg.connect(url, autocommit=autocommit, **options)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {redact_url(url)}: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_outage(exc: BaseException) -> bool:
    """True for errors that mean "the database is not there right now" (connection lost,
    server shutting down, timeouts, disk full), as opposed to a bad statement or row."""
    psycopg = _psycopg()
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, DatabaseUnavailable))


# -- migrations ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


_V1 = """
CREATE TABLE audit_chains (
    chain_id        text PRIMARY KEY,
    instance_id     text NOT NULL,
    hostname        text,
    pid             integer,
    started_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    head_seq        bigint NOT NULL DEFAULT 0,
    head_hash       text NOT NULL,
    checkpoint_seq  bigint,
    checkpoint_hash text
) WITH (fillfactor = 50);  -- the head is updated once per batch: leave room for HOT updates

CREATE TABLE audit_events (
    pos         bigint NOT NULL,            -- xid << 16 | row: order across chains
    chain_id    text NOT NULL,
    seq         bigint NOT NULL,            -- position in its chain: 1, 2, 3, ...
    logged_at   timestamptz NOT NULL,       -- partition key (see keeptrusts.audit.pgdb)
    ts          double precision NOT NULL,  -- epoch seconds of "timestamp"
    id          text NOT NULL,
    timestamp   text,
    event_type  text,
    verdict     text,
    reason_code text,
    model       text,
    target_id   text,
    role        text,
    request_id  text,
    body        text NOT NULL,              -- canonical JSON of the event without "hash"
    prev_hash   text NOT NULL,
    hash        text NOT NULL,
    PRIMARY KEY (chain_id, seq, logged_at)
) PARTITION BY RANGE (logged_at);

CREATE INDEX audit_events_pos ON audit_events (pos);
CREATE INDEX audit_events_ts ON audit_events (ts);
CREATE INDEX audit_events_verdict_pos ON audit_events (verdict, pos);
CREATE INDEX audit_events_model_pos ON audit_events (model, pos);
CREATE INDEX audit_events_id ON audit_events (id);
CREATE INDEX audit_events_request_id ON audit_events (request_id);

CREATE SEQUENCE gateway_keys_version;
CREATE TABLE gateway_keys (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    role       text NOT NULL,
    key_hash   text NOT NULL UNIQUE,
    hint       text NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision,
    version    bigint NOT NULL DEFAULT nextval('gateway_keys_version')
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "audit chains, day-partitioned audit events, gateway keys", _V1),
)
LATEST_VERSION = MIGRATIONS[-1].version

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS kt_schema_migrations (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def schema_version(conn: Any) -> int:
    """The highest applied migration (0 for an empty database)."""
    row = conn.execute("SELECT to_regclass('kt_schema_migrations') IS NOT NULL").fetchone()
    if not row[0]:
        return 0
    (version,) = conn.execute(
        "SELECT coalesce(max(version), 0) FROM kt_schema_migrations"
    ).fetchone()
    return int(version)


def check_schema(conn: Any, url: str = "") -> int:
    """Raise :class:`SchemaMismatch` unless the schema is exactly the one this code knows."""
    version = schema_version(conn)
    where = f" at {redact_url(url)}" if url else ""
    if version < LATEST_VERSION:
        raise SchemaMismatch(
            f"the database{where} is at schema version {version}, this keeptrusts needs "
            f"version {LATEST_VERSION}: run `kt db migrate --database-url URL` first"
        )
    if version > LATEST_VERSION:
        raise SchemaMismatch(
            f"the database{where} is at schema version {version}, newer than this keeptrusts "
            f"knows ({LATEST_VERSION}): upgrade keeptrusts"
        )
    return version


def migrate(conn: Any, *, today: date | None = None) -> tuple[int, list[Migration]]:
    """Apply the missing migrations in one transaction; return (version before, applied).

    Idempotent; concurrent runs wait for each other on an advisory lock. Also makes sure the
    partitions for today and the next days exist.
    """
    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_MIGRATIONS_TABLE)
        before = schema_version(conn)
        if before > LATEST_VERSION:
            raise SchemaMismatch(
                f"the database is at schema version {before}, newer than this keeptrusts "
                f"knows ({LATEST_VERSION}): upgrade keeptrusts"
            )
        for m in MIGRATIONS:
            if m.version <= before:
                continue
            conn.execute(m.sql)
            conn.execute(
                "INSERT INTO kt_schema_migrations (version, description) VALUES (%s, %s)",
                (m.version, m.description),
            )
            applied.append(m)
    ensure_partitions(conn, days_from(today or utc_today(), PARTITIONS_AHEAD + 1))
    return before, applied


# -- day partitions -----------------------------------------------------------------------------


def utc_today() -> date:
    return datetime.now(UTC).date()


def day_of(epoch: float) -> date:
    return datetime.fromtimestamp(epoch, UTC).date()


def days_from(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


def partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    m = _PARTITION_RE.match(name)
    return datetime.strptime(m.group(1), "%Y%m%d").date() if m else None


def list_partitions(conn: Any) -> dict[date, str]:
    """The attached day partitions of ``audit_events``, by day."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'audit_events'::regclass"
    ).fetchall()
    out: dict[date, str] = {}
    for (name,) in rows:
        day = partition_day(name)
        if day is not None:
            out[day] = name
    return out


def ensure_partitions(conn: Any, days: Iterable[date]) -> set[date]:
    """Create and attach the missing day partitions; return every day now known to exist.

    Uses ``CREATE TABLE … LIKE`` + ``ATTACH PARTITION`` (SHARE UPDATE EXCLUSIVE on the
    parent), which neither blocks nor waits for concurrent inserts and reads, unlike
    ``CREATE TABLE … PARTITION OF`` (ACCESS EXCLUSIVE).
    """
    wanted = sorted(set(days))
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '5s'")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        existing = list_partitions(conn)
        for day in wanted:
            if day in existing:
                continue
            name = partition_name(day)
            lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
            hi = lo + timedelta(days=1)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} "
                "(LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            conn.execute(
                f"ALTER TABLE audit_events ATTACH PARTITION {name} "
                f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')"
            )
            existing[day] = name
            log.info("created audit partition %s", name)
    return set(existing)


def horizon_sql() -> str:
    """SQL for the first ``pos`` that may still be written by a running transaction.

    ``pos`` is ``xid << 16 | row``. Every transaction with an xid below the snapshot's
    ``xmin`` has finished, so rows with ``pos`` below this value can no longer appear: a
    reader that pages by ``pos > cursor`` below the horizon never skips a row that commits
    late (which paging by a plain sequence would).
    """
    return f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint << {POS_SHIFT})"


@contextlib.contextmanager
def reading(url: str) -> Iterator[Any]:
    """A short-lived read connection (autocommit), closed on exit."""
    conn = connect(url, application_name="keeptrusts-reader")
    try:
        yield conn
    finally:
        conn.close()
