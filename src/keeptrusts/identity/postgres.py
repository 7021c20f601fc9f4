"""Gateway keys (and the role each is bound to) in PostgreSQL, shared by a fleet.

Same interface as the SQLite :class:`~keeptrusts.identity.keys.KeyStore`. The gateway
calls ``active()`` and ``version()`` from the request path (the event loop), so once the
first ``active()`` has loaded the keys, a background thread polls the database every
``refresh`` seconds and both calls only read memory: a slow or unreachable database never
stalls a request. While the database is unreachable the last loaded keys stay in force;
revocations take effect within ``refresh`` seconds of it answering again.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from typing import Any

from keeptrusts.audit.pgdb import check_schema, connect, reading, redact_url
from keeptrusts.identity.keys import KEY_PREFIX, KeyRecord, hash_key

log = logging.getLogger("keeptrusts.identity")

DEFAULT_REFRESH = 1.0
_ACTIVE = (
    "SELECT key_hash, id, name, role, hint, created_at FROM gateway_keys WHERE revoked_at IS NULL"
)
_VERSION = "SELECT count(*), coalesce(max(version), 0) FROM gateway_keys"


class PostgresKeyStore:
    def __init__(self, url: str, *, refresh: float = DEFAULT_REFRESH) -> None:
        self.url = url
        self.location = redact_url(url)
        self.refresh = refresh
        with reading(url) as conn:
            check_schema(conn, url)
        self._cache: dict[str, KeyRecord] | None = None
        self._marker: tuple[int, int] | None = None
        self._version = 0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._conn: Any = None

    # -- administration (the CLI) ----------------------------------------------------------

    def create(self, *, role: str, name: str | None = None) -> tuple[KeyRecord, str]:
        """Return the new record and the key itself (shown once, never stored)."""
        key = KEY_PREFIX + secrets.token_urlsafe(30)
        kid = "key_" + secrets.token_hex(6)
        rec = KeyRecord(kid, name or kid, role, key[:10] + "…", time.time())
        with reading(self.url) as conn:
            conn.execute(
                "INSERT INTO gateway_keys (id, name, role, key_hash, hint, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (rec.id, rec.name, rec.role, hash_key(key), rec.hint, rec.created_at),
            )
        return rec, key

    def list(self) -> list[KeyRecord]:
        with reading(self.url) as conn:
            rows = conn.execute(
                "SELECT id, name, role, hint, created_at, revoked_at FROM gateway_keys "
                "ORDER BY created_at, id"
            ).fetchall()
        return [KeyRecord(*row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        with reading(self.url) as conn:
            cur = conn.execute(
                "UPDATE gateway_keys SET revoked_at = %s, "
                "version = nextval('gateway_keys_version') WHERE id = %s AND revoked_at IS NULL",
                (time.time(), key_id),
            )
            return cur.rowcount == 1

    # -- the gateway's lookups (memory only after the first load) ------------------------

    def active(self) -> dict[str, KeyRecord]:
        """Active keys by hash. The first call loads them (and starts the watcher)."""
        if self._cache is None:
            conn = connect(self.url, application_name="keeptrusts-keys")
            self._conn = conn
            self._load(conn)
            self._watcher = threading.Thread(
                target=self._watch, name="kt-keys-watcher", daemon=True
            )
            self._watcher.start()
        return self._cache  # type: ignore[return-value]

    def version(self) -> int:
        """Changes whenever the active keys change (as last seen by the watcher)."""
        if self._cache is None:
            self.active()
        return self._version

    def _load(self, conn: Any) -> None:
        marker = conn.execute(_VERSION).fetchone()
        rows = conn.execute(_ACTIVE).fetchall()
        self._cache = {r[0]: KeyRecord(r[1], r[2], r[3], r[4], r[5]) for r in rows}
        if marker != self._marker:
            self._marker = marker
            self._version += 1

    def _watch(self) -> None:
        failing = False
        while not self._stop.wait(self.refresh):
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._close_conn()
                    self._conn = connect(self.url, application_name="keeptrusts-keys")
                marker = self._conn.execute(_VERSION).fetchone()
                if marker != self._marker:
                    self._load(self._conn)
                if failing:
                    log.warning("key store %s reachable again", self.location)
                    failing = False
            except Exception as exc:
                if not failing:
                    log.error(
                        "key store %s unreachable (%s); the last loaded keys stay in force",
                        self.location,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc),
                    )
                    failing = True
                self._close_conn()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        self._close_conn()
