"""``kt gateway run --workers N``: one port, N processes, one audit log written by the
supervisor; strict durability through the workers; a killed worker is restarted; reloads
reach every worker; in-process limit counters are refused."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from keeptrusts.audit.remote import RemoteSink, SinkHost
from keeptrusts.audit.sink import AuditSink, AuditUnavailable
from keeptrusts.audit.store import SQLiteAuditStore
from tests.audit.helpers import kt, make_event
from tests.conftest import FAKE_KEYS, start_gateway, write_yaml
from tests.fakeprovider import Reply

WORKER = "x-keeptrusts-worker"
CLOSE = {"connection": "close"}  # a new connection per request: any worker may take it


def _config(tmp: Path, *, version: str = "1.0.0", **extra: object) -> Path:
    return write_yaml(
        tmp / "workers.yaml",
        {
            "pack": {"name": "workers-e2e", "version": version, "enabled": True},
            "providers": {"targets": [{"id": "demo", "provider": "demo", "model": "demo"}]},
            "policies": {"chain": []},
            **extra,
        },
    )


def _chat(http: httpx.Client, gw, rid: str, *, stream: bool = False) -> httpx.Response:  # type: ignore[no-untyped-def]
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return http.post(
        gw.base_url + "/chat/completions", json=body, headers={**CLOSE, "x-request-id": rid}
    )


def _request_ids(state: Path) -> list[str]:
    db = sqlite3.connect(f"file:{state / 'audit.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT request_id FROM events WHERE event_type = 'decision' ORDER BY seq"
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def _until_pids(http: httpx.Client, gw, want, *, seconds: float = 20) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Health requests on new connections until ``want(pids)``; returns pid -> hits."""
    seen: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            r = http.get(gw.url + "/health", headers=CLOSE)
        except httpx.TransportError:
            time.sleep(0.05)
            continue
        assert r.status_code == 200
        seen[r.headers[WORKER]] = seen.get(r.headers[WORKER], 0) + 1
        if want(seen):
            return seen
    raise AssertionError(f"workers seen: {seen}\n{gw.log()}")


def test_two_workers_one_port_one_audit_log(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [_config(tmp_path)], extra_args=["--workers", "2"])
    sent: list[str] = []
    pids: set[str] = set()
    try:
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 20
            while (len(pids) < 2 or len(sent) < 20) and time.monotonic() < deadline:
                rid = f"w-{uuid.uuid4().hex[:12]}"
                r = _chat(http, gw, rid, stream=len(sent) % 3 == 0)
                assert r.status_code == 200, r.text
                pids.add(r.headers[WORKER])
                sent.append(rid)
            assert len(pids) == 2, gw.log()
            assert all(p.isdigit() and int(p) != gw.proc.pid for p in pids)
    finally:
        assert gw.stop(signal.SIGTERM) == 0, gw.log()
    log = gw.log()
    assert log.count("listening on") == 1 and log.count("loaded declarative config") == 1
    assert "stopped" in log
    assert sorted(_request_ids(gw.state_dir)) == sorted(sent)  # every request, once
    assert kt("events", "verify", "--state-dir", str(gw.state_dir)) == 0


def test_one_worker_is_the_plain_process(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [_config(tmp_path)])
    try:
        r = httpx.get(gw.url + "/health")
        assert r.status_code == 200 and WORKER not in r.headers
    finally:
        assert gw.stop(signal.SIGTERM) == 0


def test_strict_durability_through_workers(tmp_path: Path) -> None:
    cfg = _config(tmp_path, policy={"audit-logger": {"durability": "strict"}})
    gw = start_gateway(tmp_path, [cfg], extra_args=["--workers", "2"])
    try:
        with httpx.Client(timeout=10) as http:
            for i in range(8):
                rid = f"strict-{i}"
                r = _chat(http, gw, rid, stream=i % 2 == 1)
                assert r.status_code == 200, r.text
                _ = r.read()
                # Committed by the supervisor before the response was complete.
                assert rid in _request_ids(gw.state_dir), (rid, gw.log())
    finally:
        assert gw.stop(signal.SIGTERM) == 0, gw.log()
    assert kt("events", "verify", "--state-dir", str(gw.state_dir)) == 0


def test_killed_worker_is_restarted_and_its_events_kept(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, [_config(tmp_path)], extra_args=["--workers", "2"])
    answered: dict[str, list[str]] = {}
    try:
        with httpx.Client(timeout=10) as http:
            for i in range(12):
                r = _chat(http, gw, f"before-{i}")
                assert r.status_code == 200
                answered.setdefault(r.headers[WORKER], []).append(f"before-{i}")
            victim = next(iter(answered))
            time.sleep(0.3)  # the victim's batched events reach the supervisor
            os.kill(int(victim), signal.SIGKILL)
            # The other worker keeps serving; a new worker (a new pid) joins it.
            seen = _until_pids(http, gw, lambda s: len(set(s) - {victim}) >= 2)
            assert victim not in seen or len(seen) == 3
            after = []
            for i in range(5):
                r = _chat(http, gw, f"after-{i}")
                assert r.status_code == 200
                after.append(f"after-{i}")
    finally:
        assert gw.stop(signal.SIGTERM) == 0, gw.log()
    assert f"(pid {victim}) exited with signal SIGKILL" in gw.log()
    ids = set(_request_ids(gw.state_dir))
    assert set(answered[victim]) <= ids  # what the dead worker had sent is kept
    assert {rid for rids in answered.values() for rid in rids} | set(after) <= ids
    assert kt("events", "verify", "--state-dir", str(gw.state_dir)) == 0


def test_reload_reaches_every_worker(tmp_path: Path) -> None:
    env = {**FAKE_KEYS, "KEEPTRUSTS_ADMIN_TOKEN": "adm-workers"}
    cfg = _config(tmp_path)
    gw = start_gateway(tmp_path, [cfg], extra_args=["--workers", "2"], env=env)

    def packs_are(pack: str) -> None:
        """Until both workers (by pid) report ``pack`` on /health."""
        got: dict[str, str] = {}
        deadline = time.monotonic() + 15
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < deadline:
                r = http.get(gw.url + "/health", headers=CLOSE)
                got[r.headers[WORKER]] = r.json()["pack"]
                if len(got) >= 2 and set(got.values()) == {pack}:
                    return
                time.sleep(0.02)
        raise AssertionError(f"packs: {got}\n{gw.log()}")

    try:
        packs_are("workers-e2e@1.0.0")
        _config(tmp_path, version="1.1.0")
        gw.proc.send_signal(signal.SIGHUP)
        packs_are("workers-e2e@1.1.0")
        # Through one worker's admin API: the other worker reloads too.
        _config(tmp_path, version="1.2.0")
        r = httpx.post(
            gw.url + "/keeptrusts/config/reload",
            headers={**CLOSE, "authorization": "Bearer adm-workers"},
        )
        assert r.status_code == 200 and r.json()["pack"] == "workers-e2e@1.2.0"
        packs_are("workers-e2e@1.2.0")
        events = httpx.get(
            gw.url + "/keeptrusts/events",
            headers={**CLOSE, "authorization": "Bearer adm-workers"},
        )
        assert events.status_code == 200, events.text
    finally:
        assert gw.stop(signal.SIGTERM) == 0, gw.log()


def test_in_process_limits_refuse_several_workers(tmp_path: Path) -> None:
    cfg = _config(tmp_path, limits={"default": {"requests_per_minute": 100}})
    env = {**FAKE_KEYS, "KEEPTRUSTS_REDIS_URL": ""}  # counters in process
    gw = start_gateway(tmp_path, [cfg], extra_args=["--workers", "2"], env=env, wait=False)
    try:
        code = gw.proc.wait(20)
    finally:
        gw.stop()
    assert code != 0
    log = gw.log()
    assert "--workers 2" in log and "Redis" in log and "listening on" not in log


def test_sigterm_drains_every_worker(tmp_path: Path, fp) -> None:  # type: ignore[no-untyped-def]
    target = {"id": "o", "provider": "openai:chat:gpt-4o", "base_url": fp.url + "/v1"}
    cfg = write_yaml(
        tmp_path / "slow.yaml",
        {
            "pack": {"name": "workers-drain", "version": "1", "enabled": True},
            "providers": {"targets": [{**target, "api_key": "sk-t"}]},
            "policies": {"chain": []},
        },
    )
    gw = start_gateway(tmp_path, [cfg], extra_args=["--workers", "2"])
    fp.enqueue(Reply(text="slow answer", delay_first_byte=1.0, times=6))
    results: dict[str, httpx.Response] = {}

    def call(rid: str) -> None:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        results[rid] = httpx.post(
            gw.base_url + "/chat/completions",
            json=body,
            headers={**CLOSE, "x-request-id": rid},
            timeout=20,
        )

    threads = [threading.Thread(target=call, args=(f"slow-{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert gw.stop(signal.SIGTERM) == 0, gw.log()
    for t in threads:
        t.join(10)
    assert sorted(results) == [f"slow-{i}" for i in range(6)]
    assert all(r.status_code == 200 for r in results.values()), gw.log()
    assert len({r.headers[WORKER] for r in results.values()}) >= 1
    assert sorted(_request_ids(gw.state_dir)) == sorted(results)


# -- the audit channel, in process -----------------------------------------------------------


async def test_remote_sink_round_trip_through_a_sink_host(tmp_path: Path) -> None:
    store = SQLiteAuditStore(tmp_path)
    sink = AuditSink(store)
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    controls: list[dict] = []
    serving = asyncio.ensure_future(SinkHost(sink).serve(reader, writer, controls.append))
    remote = RemoteSink(theirs, state_dir=tmp_path)
    for i in range(5):
        remote.submit(make_event(i))
    assert await remote.commit(make_event(5), timeout=5) == 6  # committed: its seq
    remote.send_control({"t": "ready"})
    remote.submit(make_event(6))
    await remote.aclose()  # sends the rest and waits for the commit
    assert store.head().seq == 7
    await asyncio.wait_for(serving, 5)
    sink.close()
    assert controls == [{"t": "ready"}]
    reread = SQLiteAuditStore(tmp_path, readonly=True)
    assert [e["n"] for e in reread.iter_events()] == list(range(7))
    assert reread.verify().ok


async def test_remote_sink_spills_when_the_supervisor_is_gone(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    lost: list[str] = []
    remote = RemoteSink(theirs, state_dir=tmp_path, on_lost=lost.append)
    ours.close()
    for _ in range(100):
        if lost:
            break
        await asyncio.sleep(0.02)
    assert lost
    with pytest.raises(AuditUnavailable):
        await remote.commit(make_event(0), timeout=5)
    remote.submit(make_event(1))
    await remote.aclose()
    spilled = [
        orjson.loads(line)["n"]
        for path in sorted(tmp_path.glob("audit-spill-*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]
    assert spilled == [0, 1]
    # The next sink on this state dir takes them into the log.
    sink = AuditSink(SQLiteAuditStore(tmp_path))
    sink.close()
    assert [e["n"] for e in SQLiteAuditStore(tmp_path, readonly=True).iter_events()] == [0, 1]
    assert not list(tmp_path.glob("audit-spill-*.jsonl"))
