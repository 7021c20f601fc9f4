"""Gateway keys: issued once, stored only as a hash, each bound to a role.

A key looks like ``kt_gk_<40 random chars>``. The store keeps ``sha256(key)``; the key is
shown once at creation and cannot be recovered. Keys have high entropy, so a plain hash
suffices (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

KEY_PREFIX = "kt_gk_"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
)
"""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    role: str
    hint: str
    created_at: float
    revoked_at: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStoreProtocol(Protocol):
    """What the CLI and the gateway's authenticator need from a key backend. ``active`` and
    ``version`` are called on the request path: they must be cheap (no network I/O)."""

    def create(self, *, role: str, name: str | None = None) -> tuple[KeyRecord, str]: ...

    def list(self) -> list[KeyRecord]: ...

    def revoke(self, key_id: str) -> bool: ...

    def active(self) -> dict[str, KeyRecord]: ...

    def version(self) -> int: ...

    def close(self) -> None: ...


def open_key_store(state_dir: Path, *, database_url: str | None = None) -> KeyStoreProtocol:
    """Keys in PostgreSQL when ``database_url`` is given, else ``<state_dir>/keys.db``."""
    if database_url:
        from keeptrusts.identity.postgres import PostgresKeyStore

        return PostgresKeyStore(database_url)
    return KeyStore(state_dir)


class KeyStore:
    """SQLite-backed key store in the state dir; safe to read while the gateway runs."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = state_dir / "keys.db"
        self._db = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()
        self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def create(self, *, role: str, name: str | None = None) -> tuple[KeyRecord, str]:
        """Return the new record and the key itself (shown once, never stored)."""
        key = KEY_PREFIX + secrets.token_urlsafe(30)
        kid = "key_" + secrets.token_hex(6)
        rec = KeyRecord(kid, name or kid, role, key[:10] + "…", time.time())
        with self._db:
            self._db.execute(
                "INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (rec.id, rec.name, rec.role, hash_key(key), rec.hint, rec.created_at),
            )
        return rec, key

    def list(self) -> list[KeyRecord]:
        rows = self._db.execute(
            "SELECT id, name, role, hint, created_at, revoked_at FROM keys ORDER BY created_at"
        ).fetchall()
        return [KeyRecord(*row) for row in rows]

    def revoke(self, key_id: str) -> bool:
        with self._db:
            cur = self._db.execute(
                "UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), key_id),
            )
        return cur.rowcount == 1

    def active(self) -> dict[str, KeyRecord]:
        """Return active keys by hash, for the gateway's in-memory lookup."""
        rows = self._db.execute(
            "SELECT key_hash, id, name, role, hint, created_at FROM keys WHERE revoked_at IS NULL"
        ).fetchall()
        return {r[0]: KeyRecord(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def version(self) -> int:
        """Changes whenever another connection commits, so the cache knows to reload."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]
