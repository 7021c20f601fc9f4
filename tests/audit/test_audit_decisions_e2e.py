"""Audit events of a mixed run through the gateway: verdicts, skipped, identity, attempts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import base_url_overlay, write_yaml
from tests.fakeprovider import Reply
from tests.policies.test_governance_e2e import CONFIG, SECRET, make_key


def kt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "keeptrusts.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def events(state: Path) -> list[dict]:
    out = kt("events", "list", "--json", "--limit", "100", "--state-dir", str(state))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_mixed_run_is_audited(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    dev = make_key(state, "developer")
    gw = gateway_factory([CONFIG, base_url_overlay(tmp_path, CONFIG, fp.url)], state_dir=state)
    c = openai.OpenAI(base_url=gw.base_url, api_key=dev["key"], max_retries=0)
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello"}])
    c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "ACCT-12345678"}]
    )
    with pytest.raises(openai.ConflictError):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": SECRET}])
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(
            model="claude-3-5-sonnet-20241022", messages=[{"role": "user", "content": "x"}]
        )
    fp.enqueue(Reply(status=500, times=1))
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert gw.stop() == 0

    evs = events(state)
    assert len(evs) == 5
    by_verdict = [e["verdict"] for e in reversed(evs)]  # list is newest first
    assert by_verdict == ["allow", "redact", "block", "block", "error"]
    allow, redact, dlp_block, rbac_block, error = reversed(evs)
    assert allow["reason_code"] == "all_policies_passed" and allow["status"] == 200
    assert allow["target_id"] == "openai-gpt4o" and allow["provider"] == "openai"
    assert (
        allow["identity"]["role"] == "developer"
        and allow["identity"]["key_name"] == "developer-key"
    )
    assert allow["attempts"][0]["outcome"] == "ok" and allow["usage"]["total_tokens"]
    assert redact["redactions"] == 1 and redact["reason_code"] == "dlp_redacted"
    assert dlp_block["policy"] == "dlp-filter" and dlp_block["status"] == 409
    results = {(r["name"], r["phase"]): r["verdict"] for r in dlp_block["policy_results"]}
    assert results[("dlp-filter", "input")] == "block"
    assert results[("rbac", "input")] == "skipped"  # never logged as passed
    assert results[("dlp-filter", "output")] == "skipped"
    assert rbac_block["reason_code"] == "rbac_denied" and rbac_block["status"] == 403
    assert error["status"] == 500 and error["attempts"][0]["status"] == 500
    assert {"pack", "latency_ms", "timestamp", "request_id", "event_type"} <= set(allow)
    assert allow["pack"] == {"name": "governed-test", "version": "2.0.0"}

    table = kt("events", "list", "--limit", "5", "--state-dir", str(state))
    assert table.returncode == 0
    head = table.stdout.splitlines()[0]
    for col in ("TIME", "ID", "VERDICT", "REASON", "MODEL", "TARGET", "ROLE"):
        assert col in head
    assert "rbac_denied" in table.stdout and "developer" in table.stdout
    assert kt("events", "verify", "--state-dir", str(state)).returncode == 0
    # Nothing secret anywhere in the state dir: not the key, not the matched pattern.
    for path in (p for p in state.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert dev["key"].encode() not in data and SECRET.encode() not in data, path.name
    assert SECRET not in gw.log() and dev["key"] not in gw.log()

    # Tampering with the stored events is caught.
    db = sqlite3.connect(state / "audit.db")
    table_name = db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND sql LIKE '%hash%'"
    ).fetchone()[0]
    cols = [r[1] for r in db.execute(f"PRAGMA table_info({table_name})")]
    body_col = next(c for c in cols if c in ("body", "event", "data", "json"))
    db.execute(
        f"UPDATE {table_name} SET {body_col} = replace({body_col}, 'block', 'allow') WHERE seq = 3"
    )
    db.commit()
    db.close()
    res = kt("events", "verify", "--state-dir", str(state))
    assert res.returncode != 0 and "3" in (res.stdout + res.stderr)


def _demo_config(tmp_path: Path, **audit) -> Path:  # type: ignore[no-untyped-def]
    return write_yaml(
        tmp_path / "c.yaml",
        {
            "pack": {"name": "d", "version": "1", "enabled": True},
            "providers": {"targets": [{"id": "demo", "provider": "demo:chat:gpt-4o"}]},
            "policies": {"chain": ["dlp-filter", "audit-logger"]},
            "policy": {
                "dlp-filter": {"blocked_terms": ["forbidden"]},
                "audit-logger": audit,
            },
        },
    )


def test_strict_durability_commits_before_the_response(tmp_path, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory([_demo_config(tmp_path, durability="strict")])
    db_path = gw.state_dir / "audit.db"
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client() as http:
        for i in range(5):
            r = http.post(
                gw.base_url + "/chat/completions",
                json={**body, "stream": i % 2 == 1},
                headers={"x-request-id": f"strict-{i}"},
            )
            assert r.status_code == 200
            # Read from another connection the moment the response is complete.
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            found = db.execute(
                "SELECT count(*) FROM events WHERE request_id = ?", (f"strict-{i}",)
            ).fetchone()[0]
            db.close()
            assert found == 1


def test_log_all_access_false_keeps_only_non_allow(tmp_path, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gw = gateway_factory([_demo_config(tmp_path, log_all_access=False)])
    c = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0)
    for _ in range(3):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "fine"}])
    with pytest.raises(openai.ConflictError):
        c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "a FORBIDDEN word"}]
        )
    assert gw.stop() == 0
    evs = events(gw.state_dir)
    assert [e["verdict"] for e in evs] == ["block"]
