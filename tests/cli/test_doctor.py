"""``kt doctor``: config, state-dir permissions, reachability, key store and audit log."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from keeptrusts.audit.event import iso_utc, new_event_id
from keeptrusts.audit.store import SQLiteAuditStore
from keeptrusts.identity.keys import KeyStore
from tests.cli.helpers import kt


class Listener:
    """A local port that accepts connections and records every byte it is sent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    while chunk := conn.recv(4096):
                        self.received += chunk
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Listener]:
    lis = Listener()
    yield lis
    lis.close()


@pytest.fixture
def listener(server: Listener) -> int:
    return server.port


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp: Path, port: int) -> Path:
    path = tmp / "policy-config.yaml"
    config = {
        "pack": {"name": "doctor", "version": "1.0.0", "enabled": True},
        "providers": {
            "targets": [
                {
                    "id": "local",
                    "provider": "openai-compatible",
                    "model": "m",
                    "base_url": f"http://127.0.0.1:{port}/v1",
                },
                {"id": "demo", "provider": "demo", "model": "demo"},
            ]
        },
        "policies": {"chain": ["dlp-filter", "audit-logger"]},
        "policy": {"dlp-filter": {"blocked_terms": ["secret project"]}},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def healthy_state(tmp: Path) -> Path:
    state = tmp / "state"
    state.mkdir(mode=0o700)
    keys = KeyStore(state)
    keys.create(role="developer", name="ci")
    keys.close()
    store = SQLiteAuditStore(state)
    store.append(
        [
            {
                "id": new_event_id(),
                "timestamp": iso_utc(time.time()),
                "event_type": "decision",
                "request_id": f"req_{i}",
                "verdict": "allow",
                "reason_code": "all_policies_passed",
                "model": "m",
            }
            for i in range(3)
        ]
    )
    store.close()
    token = state / "admin-token"
    token.write_text("t" * 32)
    token.chmod(0o600)
    return state


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code, out, _ = kt(capsys, "doctor", *argv, "--json", "--timeout", "1")
    return code, json.loads(out)


def statuses(doc: dict, name: str) -> list[str]:
    return [c["status"] for c in doc["checks"] if c["name"] == name]


def test_all_ok(tmp_path: Path, server: Listener, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, server.port)
    state = healthy_state(tmp_path)
    code, doc = doctor(capsys, "--policy-config", str(config), "--state-dir", str(state))
    assert code == 0 and doc["ok"] is True, doc
    assert statuses(doc, "config") == ["ok"]
    assert statuses(doc, "state dir") == ["ok"]
    assert statuses(doc, "target local") == ["ok"]
    assert statuses(doc, "target demo") == ["skip"]
    assert statuses(doc, "key store") == ["ok"]
    assert statuses(doc, "audit log") == ["ok"]
    audit = next(c for c in doc["checks"] if c["name"] == "audit log")
    assert "3 events verified" in audit["message"]
    # The human form: one line per check and a summary.
    code, out, _ = kt(capsys, "doctor", "--policy-config", str(config), "--state-dir", str(state))
    assert code == 0 and "0 failed" in out
    # Reachability is a bare TCP connect: the provider is never sent a byte (nor a key).
    time.sleep(0.1)
    assert server.connections == 2 and server.received == b""


def test_unreachable_target_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, closed_port())
    state = healthy_state(tmp_path)
    code, doc = doctor(capsys, "--policy-config", str(config), "--state-dir", str(state))
    assert code == 1 and doc["ok"] is False
    check = next(c for c in doc["checks"] if c["name"] == "target local")
    assert check["status"] == "fail" and "cannot connect" in check["message"]
    assert "base_url" in check["fix"]
    code, doc = doctor(
        capsys, "--policy-config", str(config), "--state-dir", str(state), "--no-network"
    )
    assert code == 0 and statuses(doc, "providers") == ["skip"]


def test_permissions(tmp_path: Path, listener: int, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, listener)
    state = healthy_state(tmp_path)
    state.chmod(0o755)
    (state / "keys.db").chmod(0o644)
    code, doc = doctor(capsys, "--policy-config", str(config), "--state-dir", str(state))
    assert code == 1
    fixes = {c["fix"] for c in doc["checks"] if c["name"] == "state dir"}
    assert f"chmod 700 {state}" in fixes
    assert f"chmod 600 {state / 'keys.db'}" in fixes
    state.chmod(0o750)
    for f in state.iterdir():  # SQLite made keys.db-shm with keys.db's mode meanwhile
        f.chmod(0o600)
    code, doc = doctor(capsys, "--policy-config", str(config), "--state-dir", str(state))
    assert code == 0 and statuses(doc, "state dir") == ["warn"]  # group access only warns
    code, doc = doctor(
        capsys, "--policy-config", str(config), "--state-dir", str(state), "--strict"
    )
    assert code == 1


def test_tampered_audit_log(
    tmp_path: Path, listener: int, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, listener)
    state = healthy_state(tmp_path)
    db = sqlite3.connect(state / "audit.db")
    db.execute("UPDATE events SET body = replace(body, 'allow', 'block') WHERE seq = 2")
    db.commit()
    db.close()
    code, doc = doctor(capsys, "--policy-config", str(config), "--state-dir", str(state))
    assert code == 1
    check = next(c for c in doc["checks"] if c["name"] == "audit log")
    assert check["status"] == "fail" and "FAILED" in check["message"]
    assert "kt events verify" in check["fix"]


def test_config_problems_and_missing_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "pack: {name: x, version: 1.0.0, enabled: true}\npolicies: {chain: [dlp-filtr]}\n"
    )
    code, doc = doctor(capsys, "--policy-config", str(bad), "--state-dir", str(tmp_path / "none"))
    assert code == 1
    msgs = [c["message"] for c in doc["checks"] if c["name"] == "config"]
    assert any("dlp-filtr" in m for m in msgs)
    assert statuses(doc, "state dir") == ["warn"]

    # A key variable that is not exported: the target is unavailable, with the fix.
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text(
        yaml.safe_dump(
            {
                "pack": {"name": "k", "version": "1.0.0", "enabled": True},
                "providers": {
                    "targets": [
                        {
                            "id": "o",
                            "provider": "openai",
                            "model": "gpt-4o",
                            "secret_key_ref": {"env": "KT_DOCTOR_TEST_UNSET_KEY"},
                        }
                    ]
                },
                "policies": {"chain": []},
            }
        )
    )
    monkeypatch.delenv("KT_DOCTOR_TEST_UNSET_KEY", raising=False)
    code, doc = doctor(
        capsys, "--policy-config", str(keyed), "--state-dir", str(tmp_path), "--no-network"
    )
    check = next(c for c in doc["checks"] if c["name"] == "target o")
    assert code == 1 and check["fix"] == "export KT_DOCTOR_TEST_UNSET_KEY"

    monkeypatch.chdir(tmp_path)  # no ./policy-config.yaml here
    code, doc = doctor(capsys, "--state-dir", str(tmp_path / "none"))
    assert code == 0 and statuses(doc, "config") == ["warn"]


def test_gateway_health(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "degraded"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, doc = doctor(capsys, "--state-dir", str(tmp_path), "--gateway", url)
        assert statuses(doc, "gateway") == ["warn"]
        code, doc = doctor(
            capsys, "--state-dir", str(tmp_path), "--gateway", f"http://127.0.0.1:{closed_port()}"
        )
        assert code == 1 and statuses(doc, "gateway") == ["fail"]
    finally:
        server.shutdown()
        server.server_close()
