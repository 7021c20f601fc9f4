"""Fixtures for the PostgreSQL tests: a fresh database per test module on a real server.

The server is ``$KEEPTRUSTS_TEST_PG_ADMIN_URL`` (default: the local one on 127.0.0.1:5432 as
``postgres``). Without one the tests skip, unless ``$KEEPTRUSTS_TEST_PG_REQUIRED`` is set
(CI sets it), in which case they fail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keeptrusts.audit.pgdb import connect, ensure_partitions, migrate, utc_today

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin() -> Any:
    psycopg = pytest.importorskip("psycopg")
    url = os.environ.get("KEEPTRUSTS_TEST_PG_ADMIN_URL", DEFAULT_ADMIN_URL)
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        msg = f"no PostgreSQL at {url}: {str(exc).strip().splitlines()[0]}"
        if os.environ.get("KEEPTRUSTS_TEST_PG_REQUIRED"):
            pytest.fail(msg)
        pytest.skip(msg)


class PgDatabase:
    """One scratch database; ``outage()`` makes it unreachable for everyone, then not."""

    def __init__(self, admin: Any, name: str) -> None:
        self.admin = admin
        self.name = name
        info = admin.info
        self.url = f"postgresql://{info.user}@{info.host}:{info.port}/{name}"
        admin.execute(f'CREATE DATABASE "{name}"')

    def conn(self) -> Any:
        return connect(self.url)

    def migrate(self) -> None:
        with contextlib.closing(self.conn()) as c:
            migrate(c)

    def reset(self) -> None:
        """Empty every table and drop every partition (migrating first if needed)."""
        self.migrate()
        with contextlib.closing(self.conn()) as c:
            parts = c.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'audit_events'::regclass"
            ).fetchall()
            for (name,) in parts:
                c.execute(f"DROP TABLE {name}")
            c.execute("TRUNCATE audit_chains, gateway_keys")
            ensure_partitions(c, [utc_today()])

    def block(self) -> None:
        """An outage: no new connections, and every open one is terminated."""
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self.admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (self.name,),
        )

    def unblock(self) -> None:
        self.admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def drop(self) -> None:
        self.unblock()
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def pg() -> Iterator[PgDatabase]:
    admin = _admin()
    db = PgDatabase(admin, f"kt_test_{uuid.uuid4().hex[:12]}")
    try:
        yield db
    finally:
        db.drop()
        admin.close()


@pytest.fixture
def db_url(pg: PgDatabase) -> str:
    """The module's database, migrated and emptied for this test."""
    pg.reset()
    return pg.url


@pytest.fixture
def empty_db(pg: PgDatabase) -> Iterator[PgDatabase]:
    """A second, never migrated database."""
    db = PgDatabase(pg.admin, f"kt_test_{uuid.uuid4().hex[:12]}")
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
