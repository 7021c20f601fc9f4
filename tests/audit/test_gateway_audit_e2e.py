"""Through a real ``kt gateway run``: every request is audited, the log verifies, no secrets."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import FAKE_KEYS, start_gateway, write_yaml

from .helpers import kt

CLIENT_KEY = "sk-client-e2e-SECRET-91ab"
PROMPT_SECRET = "prompt-e2e-SECRET-77cd"


def test_gateway_requests_are_audited_without_secrets(tmp_path: Path) -> None:
    config = write_yaml(
        tmp_path / "demo.yaml",
        {
            "pack": {"name": "audit-e2e", "version": "1.0.0", "enabled": True},
            "providers": {"targets": [{"id": "demo", "provider": "demo", "model": "demo"}]},
            "policies": {"chain": []},
        },
    )
    gw = start_gateway(tmp_path, [config], env={**FAKE_KEYS, "KEEPTRUSTS_ADMIN_TOKEN": "adm-e2e"})
    try:
        headers = {"Authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY}
        body = {"model": "demo", "messages": [{"role": "user", "content": PROMPT_SECRET}]}
        for _ in range(5):
            r = httpx.post(gw.base_url + "/chat/completions", json=body, headers=headers)
            assert r.status_code == 200, r.text
        admin = httpx.get(
            gw.url + "/keeptrusts/events", headers={"Authorization": "Bearer adm-e2e"}
        )
    finally:
        assert gw.stop() == 0, gw.log()
    state = gw.state_dir
    assert admin.status_code == 200 and len(admin.json()["data"]) >= 1
    assert kt("events", "verify", "--state-dir", str(state)) == 0
    export = tmp_path / "export.jsonl"
    kt("events", "export", "--output", str(export), "--state-dir", str(state))
    decisions = [line for line in export.read_text().splitlines() if '"decision"' in line]
    assert len(decisions) == 5  # a clean stop flushes every event
    for path in [export, *(p for p in state.rglob("*") if p.is_file())]:
        data = path.read_bytes()
        for secret in (CLIENT_KEY, PROMPT_SECRET, *FAKE_KEYS.values()):
            assert secret.encode() not in data, f"{secret!r} found in {path.name}"
