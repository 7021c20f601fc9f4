"""``kt events`` and ``kt auth`` against a local audit log."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import time
from pathlib import Path

import orjson
import pytest

from keeptrusts.audit.store import SQLiteAuditStore

from .helpers import fill, kt, make_event

N = 12


@pytest.fixture
def filled(state_dir: Path) -> list[dict]:
    return fill(state_dir, N)


def test_list_limit_prints_a_table_newest_first(
    state_dir: Path, filled: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    assert kt("events", "list", "--limit", "5", "--state-dir", str(state_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "ID", "VERDICT", "REASON", "MODEL", "TARGET", "ROLE"]
    assert len(lines) == 6
    ids = [line.split()[1] for line in lines[1:]]
    assert ids == [e["id"] for e in reversed(filled[-5:])]
    first = lines[1].split()
    assert first[2:] == ["redact", "redact_reason", "gpt-4o", "openai-gpt4o", "analyst"]


def test_list_json_and_filters(
    state_dir: Path, filled: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    assert kt("events", "list", "--json", "--limit", "5", "--state-dir", str(state_dir)) == 0
    events = orjson.loads(capsys.readouterr().out)
    assert [e["seq"] for e in events] == [12, 11, 10, 9, 8]
    assert all({"hash", "prev_hash", "chain_id", "identity"} <= e.keys() for e in events)

    kt("events", "list", "--json", "--verdict", "redact", "--state-dir", str(state_dir))
    assert {e["verdict"] for e in orjson.loads(capsys.readouterr().out)} == {"redact"}

    kt("events", "list", "--json", "--model", "nope", "--state-dir", str(state_dir))
    assert orjson.loads(capsys.readouterr().out) == []


def test_since_and_until(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    store = SQLiteAuditStore(state_dir)
    old, mid, new = (make_event(i, ts=now - age) for i, age in enumerate((3 * 86400, 7200, 60)))
    store.append([old, mid, new])
    store.close()
    sd = ("--state-dir", str(state_dir))
    kt("events", "list", "--json", "--since", "1h", *sd)
    assert [e["id"] for e in orjson.loads(capsys.readouterr().out)] == [new["id"]]
    kt("events", "list", "--json", "--since", "2d", "--until", "30m", *sd)
    assert [e["id"] for e in orjson.loads(capsys.readouterr().out)] == [mid["id"]]
    kt("events", "list", "--json", "--until", mid["timestamp"], *sd)
    assert [e["id"] for e in orjson.loads(capsys.readouterr().out)] == [mid["id"], old["id"]]
    with pytest.raises(SystemExit) as exc:
        kt("events", "list", "--since", "yesterday", *sd)
    assert exc.value.code == 2


def test_export_csv(
    state_dir: Path, filled: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    store = SQLiteAuditStore(state_dir)
    store.append([make_event(99, model='=HYPERLINK("http://evil")')])
    store.close()
    assert kt("events", "export", "--format", "csv", "--state-dir", str(state_dir)) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == N + 1
    assert [r["id"] for r in rows[:N]] == [e["id"] for e in filled]
    assert rows[0]["seq"] == "1" and rows[0]["role"] == "analyst" and len(rows[0]["hash"]) == 64
    assert rows[-1]["model"].startswith("'=")  # no spreadsheet formula


def test_export_jsonl_to_file_and_verify_the_file(
    state_dir: Path, filled: list[dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export.jsonl"
    sd = ("--state-dir", str(state_dir))
    assert kt("events", "export", "--format", "jsonl", "--output", str(out), *sd) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    lines = out.read_bytes().splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == [e["id"] for e in filled]
    capsys.readouterr()
    assert kt("events", "verify", "--file", str(out)) == 0
    assert capsys.readouterr().out.startswith(f"ok: {N} events verified")
    # An excerpt (a time window) verifies too; an edited line does not.
    ev = orjson.loads(lines[4])
    ev["verdict"] = "allow" if ev["verdict"] != "allow" else "block"
    out.write_bytes(b"\n".join([*lines[2:4], orjson.dumps(ev), *lines[5:]]) + b"\n")
    assert kt("events", "verify", "--file", str(out)) == 1
    assert "modified" in capsys.readouterr().out

    kt("events", "export", "--format", "json", *sd)
    assert len(orjson.loads(capsys.readouterr().out)) == N


def test_verify_exit_codes(
    state_dir: Path, filled: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    sd = ("--state-dir", str(state_dir))
    assert kt("events", "verify", *sd) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {N} events verified (chain chn_")

    db = sqlite3.connect(state_dir / "audit.db", isolation_level=None)
    db.execute("DELETE FROM events WHERE seq = 6")
    db.close()
    assert kt("events", "verify", *sd) == 1
    out = capsys.readouterr().out
    assert f"event {filled[6]['id']} seq 7" in out and "seq 6 missing" in out

    assert kt("events", "verify", "--json", *sd) == 1
    result = orjson.loads(capsys.readouterr().out)
    assert result["ok"] is False and result["first_bad_seq"] == 7 and result["code"] == "gap"


def test_missing_log_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sd = ("--state-dir", str(tmp_path / "nothing"))
    assert kt("events", "verify", *sd) == 1
    assert "no audit log" in capsys.readouterr().err
    assert kt("events", "list", *sd) == 1


def test_tail_prints_backlog_then_new_events(
    state_dir: Path, filled: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = [make_event(100 + i, verdict="block") for i in range(3)]

    def writer() -> None:
        time.sleep(0.3)
        store = SQLiteAuditStore(state_dir)
        store.append(fresh[:2])
        store.append([make_event(200, verdict="allow")])  # filtered out
        store.append(fresh[2:])
        store.close()

    t = threading.Thread(target=writer)
    t.start()
    rc = kt(
        "events", "tail", "--limit", "2", "--verdict", "block", "--interval", "0.05",
        "--max-seconds", "1.0", "--json", "--state-dir", str(state_dir),
    )  # fmt: skip
    t.join()
    assert rc == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    backlog = [e for e in filled if e["verdict"] == "block"][-2:]
    assert [e["id"] for e in lines] == [e["id"] for e in backlog + fresh]


def test_auth_login_whoami_logout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEPTRUSTS_ADMIN_TOKEN", raising=False)
    sd = ("--state-dir", str(tmp_path / "st"))
    token = "kta_super-secret-token-value"
    rc = kt("auth", "login", "--gateway", "127.0.0.1:9", "--token", token, "--no-verify", *sd)
    assert rc == 0
    path = tmp_path / "st" / "auth.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert orjson.loads(path.read_bytes()) == {"gateway": "http://127.0.0.1:9", "token": token}
    assert kt("auth", "whoami", "--offline", *sd) == 0
    out = capsys.readouterr().out
    assert token not in out and "http://127.0.0.1:9" in out and "sha256:" in out
    # Logged in: kt events now reads the gateway (unreachable here), --local reads the file.
    assert kt("events", "list", *sd) == 1
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:9" in err and token not in err
    assert kt("auth", "logout", *sd) == 0
    assert not path.exists()
    assert kt("auth", "whoami", *sd) == 1
    assert kt("auth", "login", "--gateway", "file:///etc/passwd", "--token", "x", *sd) == 1
