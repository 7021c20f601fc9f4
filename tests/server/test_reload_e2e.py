"""Live reload: SIGHUP and the admin endpoint validate, swap atomically and audit the change."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from tests.conftest import write_yaml
from tests.fakeprovider import Reply


def _config(path, fp, *, version: str, terms: list[str]):  # type: ignore[no-untyped-def]
    return write_yaml(
        path,
        {
            "pack": {"name": "reload-test", "version": version, "enabled": True},
            "providers": {
                "targets": [
                    {
                        "id": "o",
                        "provider": "openai:chat:gpt-4o",
                        "base_url": fp.url + "/v1",
                        "api_key": "sk-t",
                    }
                ]
            },
            "policies": {"chain": ["dlp-filter"]},
            "policy": {"dlp-filter": {"blocked_terms": terms}},
        },
    )


def ask(gw, text: str):  # type: ignore[no-untyped-def]
    c = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=20)
    return c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": text}])


def test_admin_reload_swaps_and_audits(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(tmp_path / "c.yaml", fp, version="1.0.0", terms=["alpha"])
    gw = gateway_factory([cfg])
    assert ask(gw, "beta is fine").choices
    _config(cfg, fp, version="1.1.0", terms=["beta"])
    assert httpx.post(gw.url + "/keeptrusts/config/reload").status_code == 401
    r = httpx.post(gw.url + "/keeptrusts/config/reload", headers=gw.admin_headers())
    assert r.status_code == 200 and r.json()["pack"] == "reload-test@1.1.0"
    with pytest.raises(openai.ConflictError):
        ask(gw, "beta is now blocked")
    assert httpx.get(gw.url + "/health").json()["pack"] == "reload-test@1.1.0"
    # An invalid config is refused and the running one stays.
    cfg.write_text(cfg.read_text().replace("blocked_terms", "blocked_termz"))
    r = httpx.post(gw.url + "/keeptrusts/config/reload", headers=gw.admin_headers())
    assert r.status_code == 422 and "did you mean 'blocked_terms'" in r.json()["error"]["message"]
    with pytest.raises(openai.ConflictError):
        ask(gw, "beta still blocked")
    assert gw.stop() == 0
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "keeptrusts.cli.main",
            "events",
            "export",
            "--format",
            "jsonl",
            "--state-dir",
            str(gw.state_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    events = [json.loads(line) for line in out.stdout.splitlines()]
    reloads = [e for e in events if e["event_type"] == "config_reload"]
    assert [(e["verdict"], e["previous_pack"], e["pack"]) for e in reloads] == [
        ("allow", "reload-test@1.0.0", "reload-test@1.1.0"),
        ("error", "reload-test@1.1.0", "reload-test@1.1.0"),
    ]
    assert reloads[0]["actor"].startswith("admin-api")
    decisions = [e for e in events if e["event_type"] == "decision"]
    assert [e["pack"]["version"] for e in decisions] == ["1.0.0", "1.1.0", "1.1.0"]


def test_sighup_reload_keeps_in_flight_request_on_old_config(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(tmp_path / "c.yaml", fp, version="1.0.0", terms=["alpha"])
    gw = gateway_factory([cfg])
    # The slow answer contains a term only the new config blocks: the in-flight request
    # runs its output phase on the config it started with, so it passes.
    fp.enqueue(Reply(text="gamma answer", delay_first_byte=1.5))
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("r", ask(gw, "slow one")))
    t.start()
    time.sleep(0.5)
    _config(cfg, fp, version="2.0.0", terms=["gamma"])
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while httpx.get(gw.url + "/health").json()["pack"] != "reload-test@2.0.0":
        assert time.monotonic() < deadline, gw.log()
        time.sleep(0.05)
    t.join(10)
    assert result["r"].choices[0].message.content == "gamma answer"
    fp.enqueue(Reply(text="gamma answer"))
    with pytest.raises(openai.ConflictError) as e:
        ask(gw, "new one")
    assert e.value.body["code"] == "output_blocked"
    assert "reloaded: reload-test@2.0.0" in gw.log()
