"""Limits through real ``kt gateway run`` processes: 429s with Retry-After and an audit
event; two gateways sharing Redis share one limit and one budget.

Skipped until the gateway calls ``keeptrusts.limits`` (``Settings.redis_url`` and the
reserve hook in ``server/chat.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from keeptrusts.identity.keys import KeyStore
from tests.conftest import FAKE_KEYS, start_gateway, write_yaml


def _wired() -> bool:
    from keeptrusts.runtime import Settings
    from keeptrusts.server import chat

    return "redis_url" in Settings.__dataclass_fields__ and "limits" in inspect.getsource(chat)


pytestmark = pytest.mark.skipif(not _wired(), reason="the gateway does not call limits yet")

ADMIN = "adm-limits-e2e"


def _config(tmp: Path, limits: dict[str, Any]) -> Path:
    return write_yaml(
        tmp / f"limits-{uuid.uuid4().hex[:8]}.yaml",
        {
            "pack": {"name": "limits-e2e", "version": "1.0.0", "enabled": True},
            "providers": {"targets": [{"id": "demo", "provider": "demo", "model": "demo"}]},
            "policies": {"chain": []},
            "limits": limits,
        },
    )


def _key(state: Path, name: str, role: str = "developer") -> str:
    store = KeyStore(state)
    _, key = store.create(role=role, name=name)
    store.close()
    return key


def _copy_keys(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True, mode=0o700)
    with sqlite3.connect(src / "keys.db") as a, sqlite3.connect(dst / "keys.db") as b:
        a.backup(b)


def _chat(key: str, text: str = "hi", max_tokens: int = 100) -> dict[str, Any]:
    return {
        "model": "demo",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
    }


def test_denials_are_429_with_retry_after_and_audited(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = _key(state, "e2e-bot")
    config = _config(tmp_path, {"keys": {"e2e-bot": {"requests_per_minute": 3}}})
    gw = start_gateway(
        tmp_path, [config], state_dir=state, env={**FAKE_KEYS, "KEEPTRUSTS_ADMIN_TOKEN": ADMIN}
    )
    try:
        headers = {"Authorization": f"Bearer {key}"}
        codes = [
            httpx.post(gw.base_url + "/chat/completions", json=_chat(key), headers=headers)
            for _ in range(5)
        ]
        assert [r.status_code for r in codes] == [200, 200, 200, 429, 429]
        denied = codes[-1]
        assert int(denied.headers["retry-after"]) >= 1
        err = denied.json()["error"]
        assert (err["type"], err["code"]) == ("rate_limit", "rate_limit_exceeded")
        assert "key 'e2e-bot'" in err["message"] and key not in err["message"]
        anthropic = httpx.post(
            gw.url + "/v1/messages",
            json={
                "model": "demo",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        )
        assert anthropic.status_code == 429 and "retry-after" in anthropic.headers
        # Audit events are written in batches: wait for the three denials to land.
        deadline = time.monotonic() + 10
        while True:
            events = httpx.get(
                gw.url + "/keeptrusts/events", headers={"Authorization": f"Bearer {ADMIN}"}
            ).json()["data"]
            limited = [e for e in events if e.get("reason_code") == "rate_limit_exceeded"]
            if len(limited) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        assert gw.stop() == 0, gw.log()
    assert len(limited) == 3
    assert limited[0]["policy"] == "limits" and limited[0]["status"] == 429


async def _fire(urls: list[str], key: str, n: int, **body: Any) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(
                    urls[i % len(urls)] + "/chat/completions",
                    json=_chat(key, **body),
                    headers=headers,
                )
                for i in range(n)
            )
        )


def test_two_gateways_share_limits_through_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    state_a, state_b = tmp_path / "a", tmp_path / "b"
    rpm_key = _key(state_a, "fleet-bot", role="fleet")
    budget_key = _key(state_a, "budget-bot", role="spender")
    _copy_keys(state_a, state_b)
    config = _config(
        tmp_path,
        {
            "key_prefix": redis_prefix,
            "prices": {"demo": {"input": 1.0, "output": 1.0}},  # USD per 1K tokens
            "keys": {"fleet-bot": {"requests_per_minute": 60}},
            "roles": {"spender": {"budget": {"usd": 0.5, "period": "day"}}},
        },
    )
    args = ["--redis-url", redis_url]
    a = start_gateway(tmp_path, [config], state_dir=state_a, extra_args=args)
    b = start_gateway(tmp_path, [config], state_dir=state_b, extra_args=args)
    try:
        urls = [a.base_url, b.base_url]
        results = asyncio.run(_fire(urls, rpm_key, 120))
        statuses = [r.status_code for r in results]
        assert statuses.count(200) == 60, statuses
        assert statuses.count(429) == 60
        # Each request reserves (5 + 100 tokens) x $1/1K = $0.105 of a $0.50 budget.
        results = asyncio.run(_fire(urls, budget_key, 40))
        ok = [r for r in results if r.status_code == 200]
        spent = sum(r.json()["usage"]["total_tokens"] for r in ok) / 1000
        assert len(ok) >= 4 and spent <= 0.5
        refused = [r for r in results if r.status_code == 429]
        assert refused and refused[0].json()["error"]["code"] == "budget_exceeded"
    finally:
        assert a.stop() == 0, a.log()
        assert b.stop() == 0, b.log()
