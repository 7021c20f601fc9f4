"""dlp-filter and rbac end to end: real gateway process, real openai SDK, fake upstream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import base_url_overlay, write_yaml
from tests.fakeprovider import Reply, ToolCall

DATA = Path(__file__).resolve().parent.parent / "data"
CONFIG = DATA / "governed.yaml"
SECRET = "sk-abcdef1234567890SECRET"
USER = [{"role": "user", "content": "hello"}]


def make_key(state: Path, role: str) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "keeptrusts.cli.main",
            "keys",
            "create",
            "--role",
            role,
            "--name",
            f"{role}-key",
            "--state-dir",
            str(state),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


@pytest.fixture
def setup(tmp_path, fp, gateway_factory):  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    dev = make_key(state, "developer")
    prod = make_key(state, "production")
    gw = gateway_factory([CONFIG, base_url_overlay(tmp_path, CONFIG, fp.url)], state_dir=state)
    return gw, dev["key"], prod["key"]


def client(gw, key: str) -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=2)


def test_rbac_roles_from_keys(setup, fp) -> None:  # type: ignore[no-untyped-def]
    gw, dev, prod = setup
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gw, "unused").chat.completions.create(model="gpt-4o", messages=USER)
    assert e.value.body["code"] == "missing_identity" and e.value.body["policy"] == "rbac"
    assert "kt keys create" in e.value.body["message"]
    ok = client(gw, dev).chat.completions.create(model="gpt-4o", messages=USER)
    assert ok.choices[0].message.content
    # The gateway key never leaves the gateway; the target's secret is used instead.
    assert dev not in json.dumps(fp.last.headers)
    # No max_tokens: the role's cap is applied.
    assert fp.last.json["max_tokens"] == 4096
    n = len(fp.requests)
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gw, dev).chat.completions.create(model="claude-3-5-sonnet-20241022", messages=USER)
    assert e.value.body["code"] == "rbac_denied" and "gpt-4o" in e.value.body["message"]
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gw, dev).chat.completions.create(model="gpt-4o", messages=USER, max_tokens=5000)
    assert "4096" in e.value.body["message"]
    assert len(fp.requests) == n  # denied requests never reach the provider
    r = client(gw, prod).chat.completions.create(model="claude-3-5-sonnet-20241022", messages=USER)
    assert r.choices[0].message.content


def test_invalid_and_revoked_keys_are_401(setup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    gw, dev, _ = setup
    with pytest.raises(openai.AuthenticationError):
        client(gw, "kt_gk_not-a-real-key").chat.completions.create(model="gpt-4o", messages=USER)
    keys = subprocess.run(
        [
            sys.executable,
            "-m",
            "keeptrusts.cli.main",
            "keys",
            "list",
            "--json",
            "--state-dir",
            str(gw.state_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    listed = json.loads(keys.stdout)
    assert {k["role"] for k in listed} == {"developer", "production"}
    assert dev not in keys.stdout
    dev_id = next(k["id"] for k in listed if k["role"] == "developer")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "keeptrusts.cli.main",
            "keys",
            "revoke",
            dev_id,
            "--state-dir",
            str(gw.state_dir),
        ],
        check=True,
        capture_output=True,
    )
    import time

    time.sleep(1.2)
    with pytest.raises(openai.AuthenticationError):
        client(gw, dev).chat.completions.create(model="gpt-4o", messages=USER)


def _overlay_rbac(tmp_path: Path, **rbac) -> Path:  # type: ignore[no-untyped-def]
    return write_yaml(tmp_path / "rbac.yaml", {"policy": {"rbac": rbac}})


def test_default_role_and_trusted_headers(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    base = [CONFIG, base_url_overlay(tmp_path, CONFIG, fp.url)]
    gw = gateway_factory([*base, _overlay_rbac(tmp_path, default_role="developer")])
    c = client(gw, "unused")
    assert c.chat.completions.create(model="gpt-4o", messages=USER).choices
    # Untrusted headers are ignored: a client cannot promote itself.
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(
            model="claude-3-5-sonnet-20241022",
            messages=USER,
            extra_headers={"X-User-Role": "production"},
        )
    gw.stop()
    gw2 = gateway_factory([*base, _overlay_rbac(tmp_path, trust_identity_headers=True)])
    c2 = client(gw2, "unused")
    r = c2.chat.completions.create(
        model="claude-3-5-sonnet-20241022",
        messages=USER,
        extra_headers={"X-User-Role": "production", "X-User-ID": "u-42"},
    )
    assert r.choices
    with pytest.raises(openai.PermissionDeniedError) as e:
        c2.chat.completions.create(model="gpt-4o", messages=USER)
    assert e.value.body["code"] == "missing_identity"


def _assert_blocked(exc: openai.ConflictError, code: str = "input_blocked") -> None:
    body = exc.body
    assert body["type"] == "policy_violation" and body["code"] == code
    assert body["policy"] == "dlp-filter" and body["param"] is None
    assert SECRET not in json.dumps(body)
    assert exc.response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": f"my key is {SECRET}"}],
        [{"role": "system", "content": f"use {SECRET}"}, *USER],
        [
            {"role": "user", "content": "look it up"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": f"found {SECRET}"},
        ],
        [
            {"role": "user", "content": "call it"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": json.dumps({"token": SECRET})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        [{"role": "user", "content": [{"type": "text", "text": f"part {SECRET}"}]}],
        [{"role": "user", "content": "tell me about project NIGHTINGALE"}],
    ],
    ids=["user", "system", "tool-result", "tool-call-args", "content-parts", "blocked-term"],
)
def test_dlp_blocks_input_everywhere(setup, fp, messages) -> None:  # type: ignore[no-untyped-def]
    gw, dev, _ = setup
    n = len(fp.requests)
    with pytest.raises(openai.ConflictError) as e:
        client(gw, dev).chat.completions.create(model="gpt-4o", messages=messages)
    _assert_blocked(e.value)
    # max_retries=2 on the client: x-should-retry stops the SDK from resending.
    assert len(fp.requests) == n


def test_dlp_redacts_input_and_chain_continues(setup, fp) -> None:  # type: ignore[no-untyped-def]
    gw, dev, _ = setup
    r = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {dev}"},
        json={
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "pay ACCT-12345678 now"}],
        },
    )
    assert r.status_code == 200
    assert fp.last.json["messages"][0]["content"] == "pay [REDACTED:account-number] now"
    assert float(r.headers["x-keeptrusts-overhead-ms"]) >= 0
    assert float(r.headers["x-keeptrusts-policy-ms"]) >= 0


def test_dlp_blocks_output(setup, fp) -> None:  # type: ignore[no-untyped-def]
    gw, dev, _ = setup
    fp.enqueue(Reply(text=f"here you go: {SECRET}"))
    with pytest.raises(openai.ConflictError) as e:
        client(gw, dev).chat.completions.create(model="gpt-4o", messages=USER)
    _assert_blocked(e.value, "output_blocked")
    fp.enqueue(Reply(tool_calls=[ToolCall("send", {"key": SECRET})]))
    with pytest.raises(openai.ConflictError):
        client(gw, dev).chat.completions.create(model="gpt-4o", messages=USER)


def test_stream_block_split_across_chunks_ends_with_error(setup, fp) -> None:  # type: ignore[no-untyped-def]
    gw, dev, _ = setup
    # 12 chunks: the key is split over several of them.
    fp.enqueue(Reply(text=f"The key you asked for is {SECRET} and more text", chunks=12))
    stream = client(gw, dev).chat.completions.create(model="gpt-4o", messages=USER, stream=True)
    received = ""
    with pytest.raises(openai.APIError) as e:
        for ch in stream:
            received += "".join(c.delta.content or "" for c in ch.choices)
    assert "output_blocked" in str(e.value.body) or "dlp-filter" in str(e.value.message)
    assert "sk-" not in received and SECRET not in received
    fp.enqueue(Reply(text=f"The key you asked for is {SECRET} and more text", chunks=12))
    raw = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {dev}"},
        json={"model": "gpt-4o", "messages": USER, "stream": True},
    )
    assert "[DONE]" not in raw.text and "output_blocked" in raw.text and SECRET not in raw.text


def test_stream_redaction_never_leaks_a_split_match(setup, fp) -> None:  # type: ignore[no-untyped-def]
    gw, dev, _ = setup
    text = "Your account ACCT-87654321 is active. Second account ACCT-11112222 too."
    for chunks in (5, 17, 40):
        fp.enqueue(Reply(text=text, chunks=chunks))
        stream = client(gw, dev).chat.completions.create(model="gpt-4o", messages=USER, stream=True)
        pieces = [c.delta.content or "" for ch in stream for c in ch.choices]
        out = "".join(pieces)
        assert out == (
            "Your account [REDACTED:account-number] is active. Second account "
            "[REDACTED:account-number] too."
        )
        assert all("ACCT-" not in p for p in pieces)


def test_fail_mode_both_ways(tmp_path, fp, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    cfg = write_yaml(
        tmp_path / "faulty.yaml",
        {
            "pack": {"name": "f", "version": "1", "enabled": True},
            "providers": {
                "targets": [
                    {"id": "o", "provider": "openai:chat:gpt-4o", "base_url": fp.url + "/v1"}
                ]
            },
            "policies": {"chain": ["test-faulty"]},
            "policy": {"test-faulty": {"mode": "hang"}},
        },
    )
    env = {
        "KEEPTRUSTS_POLICY_MODULES": "tests.policies.plugin_policies",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    gw = gateway_factory([cfg], env=env)
    with pytest.raises(openai.ConflictError) as e:
        client(gw, "unused").chat.completions.create(model="gpt-4o", messages=USER)
    assert "timed out" in e.value.body["message"]
    gw.stop()
    gw2 = gateway_factory([cfg], env=env, extra_args=["--fail-mode", "allow"])
    r = client(gw2, "unused").chat.completions.create(model="gpt-4o", messages=USER)
    assert r.choices[0].message.content


def test_raw_response_clients_get_400_for_blocks(setup, fp) -> None:  # type: ignore[no-untyped-def]
    """LiteLLM-style callers (raw-response mode, retry 409 themselves) get a non-retried 400."""
    gw, dev, _ = setup
    with pytest.raises(openai.BadRequestError) as e:
        client(gw, dev).chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"key {SECRET}"}]
        )
    _assert_blocked(e.value)
