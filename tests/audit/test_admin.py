"""The admin API: token check, events, verify, redacted config; kt events --gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from keeptrusts.audit.sink import AuditSink
from keeptrusts.audit.store import SQLiteAuditStore
from keeptrusts.config.load import load_config
from keeptrusts.server.admin import add_admin_routes, load_or_create_admin_token

from .helpers import kt, make_event

TOKEN = "kta_test-admin-token-0123456789"
ENV_KEY = "sk-env-secret-value-4444"
INLINE_KEY = "sk-inline-secret-value-5555"
NESTED = "nested-secret-value-6666"


def _config(tmp_path: Path):  # type: ignore[no-untyped-def]
    doc = {
        "pack": {"name": "admin-test", "version": "1.2.3", "enabled": True},
        "providers": {
            "targets": [
                {
                    "id": "openai-gpt4o",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "secret_key_ref": {"env": "OPENAI_API_KEY"},
                },
                {
                    "id": "inline",
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "base_url": "https://user:pw-secret@llm.example.com/v1",
                    "api_key": INLINE_KEY,
                },
            ]
        },
        "policies": {"chain": []},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    config, problems = load_config([path], env={"OPENAI_API_KEY": ENV_KEY})
    assert config is not None, problems
    policy = {"external-moderation": {"api_key": NESTED, "endpoint": {"token": NESTED}, "x": 1}}
    return dataclasses.replace(config, policy=policy)


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[tuple[TestClient, AuditSink]]:
    sink = AuditSink(SQLiteAuditStore(tmp_path / "state"), flush_interval=0.005)
    for i in range(10):
        sink.submit(make_event(i, verdict="block" if i % 2 else "allow"))
    await sink.aflush()
    gw = SimpleNamespace(
        settings=SimpleNamespace(admin_token=TOKEN), audit=sink, config=_config(tmp_path)
    )
    app = web.Application()
    add_admin_routes(app, lambda: gw)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, sink
    await client.close()
    await sink.aclose()


def _auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/keeptrusts/events", "/keeptrusts/events/verify",
                                  "/keeptrusts/config"])  # fmt: skip
async def test_admin_routes_need_the_token(admin, path: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = admin
    for headers in ({}, _auth("wrong"), {"Authorization": TOKEN}, _auth(TOKEN + "x")):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401
        body = await resp.json()
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "authentication_error"
        assert body["error"]["code"] == "invalid_admin_token"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get(path, headers=_auth())).status == 200


async def test_events_and_verify(admin) -> None:  # type: ignore[no-untyped-def]
    client, _ = admin
    resp = await client.get("/keeptrusts/events", params={"limit": "3"}, headers=_auth())
    body = await resp.json()
    assert body["object"] == "list" and [e["seq"] for e in body["data"]] == [10, 9, 8]
    resp = await client.get(
        "/keeptrusts/events", params={"verdict": "block", "since": "1h"}, headers=_auth()
    )
    assert {e["verdict"] for e in (await resp.json())["data"]} == {"block"}
    resp = await client.get("/keeptrusts/events", params={"verdict": "maybe"}, headers=_auth())
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "invalid_request_error"

    resp = await client.get("/keeptrusts/events/verify", headers=_auth())
    result = await resp.json()
    assert result["ok"] is True and result["checked"] == 10
    assert result["summary"].startswith("ok: 10 events verified")
    assert result["writer"]["written"] == 10


async def test_config_is_redacted(admin) -> None:  # type: ignore[no-untyped-def]
    client, _ = admin
    resp = await client.get("/keeptrusts/config", headers=_auth())
    text = await resp.text()
    for secret in (ENV_KEY, INLINE_KEY, NESTED, "pw-secret"):
        assert secret not in text
    cfg = orjson.loads(text)
    assert cfg["pack"] == {"name": "admin-test", "version": "1.2.3", "enabled": True}
    assert cfg["policies"] == {"chain": []}
    t0, t1 = cfg["providers"]["targets"]
    assert {"id", "provider", "model", "base_url", "status"} <= t0.keys()
    assert t0["id"] == "openai-gpt4o" and t0["status"] == "available"
    assert t0["api_key"] == "[REDACTED]" and t0["key_env"] == "OPENAI_API_KEY"
    assert t1["base_url"] == "https://[REDACTED]@llm.example.com/v1"
    assert cfg["policy"]["external-moderation"] == {
        "api_key": "[REDACTED]",
        "endpoint": {"token": "[REDACTED]"},
        "x": 1,
    }


async def test_kt_events_reads_the_admin_api(
    admin,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, sink = admin
    url = str(client.make_url("")).rstrip("/")
    empty = ("--state-dir", str(tmp_path / "elsewhere"))  # no local log there
    monkeypatch.setenv("KEEPTRUSTS_ADMIN_TOKEN", TOKEN)

    async def run(*argv: str) -> int:
        return await asyncio.to_thread(kt, *argv)

    assert await run("events", "list", "--limit", "4", "--json", "--gateway", url, *empty) == 0
    assert [e["seq"] for e in orjson.loads(capsys.readouterr().out)] == [10, 9, 8, 7]
    assert await run("events", "verify", "--gateway", url, *empty) == 0
    assert capsys.readouterr().out.startswith("ok: 10 events verified")
    assert await run("events", "export", "--format", "jsonl", "--gateway", url, *empty) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10

    # kt auth login checks the token against the gateway, then kt events uses the saved login.
    monkeypatch.delenv("KEEPTRUSTS_ADMIN_TOKEN")
    assert await run("auth", "login", "--gateway", url, "--token", "bad", *empty) == 1
    assert await run("auth", "login", "--gateway", url, "--token", TOKEN, *empty) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out and "admin-test@1.2.3" in out
    sink.submit(make_event(11))
    await sink.aflush()
    assert await run("events", "list", "--limit", "1", "--json", *empty) == 0
    assert orjson.loads(capsys.readouterr().out)[0]["seq"] == 11
    assert await run("auth", "whoami", *empty) == 0
    assert TOKEN not in capsys.readouterr().out


def test_admin_token_file_is_created_once_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEEPTRUSTS_ADMIN_TOKEN", raising=False)
    token = load_or_create_admin_token(tmp_path / "st")
    path = tmp_path / "st" / "admin-token"
    assert token.startswith("kta_") and len(token) > 40
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_admin_token(tmp_path / "st") == token
    os.chmod(path, 0o644)
    assert load_or_create_admin_token(tmp_path / "st") == token
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("KEEPTRUSTS_ADMIN_TOKEN", "from-env")
    assert load_or_create_admin_token(tmp_path / "st") == "from-env"
