"""``kt keys`` and ``kt events`` against PostgreSQL, with the same flags as the local log."""

from __future__ import annotations

import csv
import io
import threading
import time
from pathlib import Path

import orjson
import pytest

from keeptrusts.audit.postgres import PostgresAuditStore
from keeptrusts.cli.main import main as kt
from keeptrusts.context import RequestContext
from keeptrusts.identity.auth import Authenticator, InvalidKey
from keeptrusts.identity.keys import KeyStore, open_key_store
from keeptrusts.identity.postgres import PostgresKeyStore
from tests.audit.helpers import make_event

from .conftest import PgDatabase


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return orjson.loads(capsys.readouterr().out)


def test_keys_create_list_revoke_with_database_url(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEPTRUSTS_DATABASE_URL", raising=False)
    db = ("--database-url", db_url, "--state-dir", str(tmp_path / "st"))
    assert kt(["keys", "create", "--role", "analyst", "--name", "ci", "--json", *db]) == 0
    created = _json(capsys)
    assert created["key"].startswith("kt_gk_") and created["role"] == "analyst"
    # The environment variable works the same way as the flag.
    monkeypatch.setenv("KEEPTRUSTS_DATABASE_URL", db_url)
    assert kt(["keys", "create", "--role", "admin", "--json"]) == 0
    second = _json(capsys)
    assert kt(["keys", "list", "--json"]) == 0
    listed = _json(capsys)
    assert [(k["id"], k["role"], k["revoked_at"]) for k in listed] == [
        (created["id"], "analyst", None),
        (second["id"], "admin", None),
    ]
    assert created["key"] not in str(listed)
    assert kt(["keys", "revoke", created["id"], *db]) == 0
    assert f"revoked {created['id']}" in capsys.readouterr().out
    assert kt(["keys", "revoke", created["id"], *db]) == 1  # already revoked
    assert kt(["keys", "list", *db]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "NAME", "ROLE"] and len(table) == 3
    # Nothing went to the state dir.
    assert not (tmp_path / "st" / "keys.db").exists()
    assert kt(["keys", "list", "--database-url", "postgresql://nobody@127.0.0.1:1/x"]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_open_key_store_and_the_authenticator_use_the_shared_keys(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert isinstance(open_key_store(tmp_path), KeyStore)
    store = open_key_store(tmp_path, database_url=db_url)
    assert isinstance(store, PostgresKeyStore)
    store.refresh = 0.05
    auth = Authenticator(store)
    # Another machine creates a key: this gateway picks it up from the watcher.
    assert kt(["keys", "create", "--role", "dev", "--json", "--database-url", db_url]) == 0
    key = _json(capsys)

    def ctx() -> RequestContext:
        return RequestContext(
            request_id="req_1",
            endpoint="/v1/chat/completions",
            body={},
            model="m",
            stream=False,
            headers={},
            client_auth=f"Bearer {key['key']}",
        )

    deadline = time.monotonic() + 10
    while True:
        auth._checked = 0.0  # skip the 1 s refresh throttle
        try:
            c = ctx()
            auth.authenticate(c)
            break
        except InvalidKey:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert c.identity.role == "dev" and c.identity.key_id == key["id"]
    assert kt(["keys", "revoke", key["id"], "--database-url", db_url]) == 0
    deadline = time.monotonic() + 10
    while True:
        auth._checked = 0.0
        try:
            auth.authenticate(ctx())
        except InvalidKey:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    store.close()


def test_key_lookups_never_touch_the_database(pg: PgDatabase, db_url: str) -> None:
    store = PostgresKeyStore(db_url, refresh=0.05)
    rec, _key = store.create(role="r")
    assert next(iter(store.active().values())).id == rec.id
    pg.block()
    try:
        start = time.perf_counter()
        for _ in range(1000):
            store.version()
            store.active()
        assert time.perf_counter() - start < 0.05  # memory only, even while unreachable
        time.sleep(0.2)
        assert next(iter(store.active().values())).id == rec.id  # last known keys stay
    finally:
        pg.unblock()
    store.close()


@pytest.fixture
def two_chains(db_url: str, tmp_path: Path) -> dict[str, list[dict]]:
    now = time.time()
    a = PostgresAuditStore(db_url, state_dir=tmp_path / "a", instance_id="gw-a")
    b = PostgresAuditStore(db_url, state_dir=tmp_path / "b", instance_id="gw-b")
    written: dict[str, list[dict]] = {a.chain_id: [], b.chain_id: []}
    verdicts = ("allow", "block", "redact")
    for i in range(12):
        store = a if i % 3 else b
        ev = make_event(i, verdict=verdicts[i % 3], ts=now - (12 - i) * 60)
        store.append([ev])
        written[store.chain_id].append(ev)
    a.close()
    b.close()
    return written


def test_events_list_export_verify_against_postgres(
    db_url: str,
    two_chains: dict[str, list[dict]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KEEPTRUSTS_DATABASE_URL", raising=False)
    db = ("--database-url", db_url)
    every = sorted((e for evs in two_chains.values() for e in evs), key=lambda e: e["n"])
    assert kt(["events", "list", "--limit", "5", *db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "ID", "VERDICT"] and len(lines) == 6
    assert [line.split()[1] for line in lines[1:]] == [e["id"] for e in reversed(every[-5:])]

    assert kt(["events", "list", "--json", "--verdict", "block", *db]) == 0
    assert {e["verdict"] for e in _json(capsys)} == {"block"}  # type: ignore[union-attr]
    assert kt(["events", "list", "--json", "--since", "390s", *db]) == 0
    assert [e["n"] for e in _json(capsys)] == [11, 10, 9, 8, 7, 6]  # type: ignore[union-attr]

    out = tmp_path / "export.jsonl"
    assert kt(["events", "export", "--output", str(out), *db]) == 0
    exported = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [e["id"] for e in exported] == [e["id"] for e in every]
    assert all("pos" not in e for e in exported)
    capsys.readouterr()
    assert kt(["events", "verify", "--file", str(out)]) == 0
    assert capsys.readouterr().out.startswith("ok: 12 events verified in 2 chains")
    assert kt(["events", "export", "--format", "csv", *db]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 12 and {r["chain_id"] for r in rows} == set(two_chains)

    assert kt(["events", "verify", *db]) == 0
    out_text = capsys.readouterr().out
    assert out_text.startswith("ok: 12 events verified in 2 chain(s)")
    assert "gw-a" in out_text and "gw-b" in out_text
    assert kt(["events", "verify", "--json", *db]) == 0
    result = _json(capsys)
    assert result["ok"] and len(result["chains"]) == 2  # type: ignore[index]

    # The environment variable selects PostgreSQL too; --local goes back to the state dir.
    monkeypatch.setenv("KEEPTRUSTS_DATABASE_URL", db_url)
    assert kt(["events", "verify"]) == 0
    capsys.readouterr()
    assert kt(["events", "verify", "--local", "--state-dir", str(tmp_path / "none")]) == 1
    assert "no audit log" in capsys.readouterr().err


def test_events_tail_follows_every_chain(
    db_url: str,
    two_chains: dict[str, list[dict]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fresh = [make_event(100 + i, verdict="block") for i in range(4)]

    def writer() -> None:
        time.sleep(0.3)
        a = PostgresAuditStore(db_url, state_dir=tmp_path / "c")
        b = PostgresAuditStore(db_url, state_dir=tmp_path / "d")
        a.append(fresh[:1])
        b.append(fresh[1:2])
        b.append([make_event(200, verdict="allow")])  # filtered out
        a.append(fresh[2:])
        a.close()
        b.close()

    t = threading.Thread(target=writer)
    t.start()
    rc = kt(
        ["events", "tail", "--limit", "2", "--verdict", "block", "--interval", "0.05",
         "--max-seconds", "1.5", "--json", "--database-url", db_url]
    )  # fmt: skip
    t.join()
    assert rc == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    every = sorted((e for evs in two_chains.values() for e in evs), key=lambda e: e["n"])
    backlog = [e for e in every if e["verdict"] == "block"][-2:]
    assert [e["id"] for e in lines] == [e["id"] for e in backlog + fresh]
