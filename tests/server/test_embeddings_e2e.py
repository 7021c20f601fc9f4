"""``POST /v1/embeddings`` (and the ``/v1/responses`` 501) through the real ``openai`` SDK."""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import FAKE_KEYS, start_gateway, write_yaml
from tests.fakeprovider import Reply

EMBED = "text-embedding-3-small"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, fake) -> Iterator:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("embeddings")
    config = write_yaml(
        tmp / "embeddings.yaml",
        {
            "pack": {"name": "embeddings-test", "version": "1.0.0", "enabled": True},
            "providers": {
                "targets": [
                    {
                        "id": "embed",
                        "provider": f"openai:embedding:{EMBED}",
                        "base_url": fake.url + "/v1",
                        "secret_key_ref": {"env": "OPENAI_API_KEY"},
                    },
                    {
                        "id": "local-embed",
                        "provider": "vllm",
                        "model": "bge-small",
                        "base_url": fake.url + "/local/v1",
                    },
                    {
                        "id": "anthropic-sonnet",
                        "provider": "anthropic:chat:claude-3-5-sonnet-20241022",
                        "base_url": fake.url,
                        "secret_key_ref": {"env": "ANTHROPIC_API_KEY"},
                    },
                ]
            },
            "policies": {"chain": ["dlp-filter"]},
            "policy": {
                "dlp-filter": {
                    "patterns": [
                        {"name": "secret", "regex": "SECRET-[0-9]{4}", "action": "block"},
                        {"name": "account-number", "regex": "ACCT-[0-9]{8}", "action": "redact"},
                    ]
                }
            },
        },
    )
    proc = start_gateway(tmp, [config])
    yield proc
    proc.stop()


def client(gw, key: str = "unused") -> openai.OpenAI:  # type: ignore[no-untyped-def]
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def test_default_base64_with_redaction(gw, fp) -> None:  # type: ignore[no-untyped-def]
    r = client(gw).embeddings.create(model=EMBED, input=["hello world", "pay ACCT-12345678 now"])
    assert [d.index for d in r.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in r.data)  # decoded from base64 by the SDK
    assert r.usage.prompt_tokens > 0
    sent = fp.last
    assert sent.path == "/v1/embeddings"
    assert sent.headers["authorization"] == f"Bearer {FAKE_KEYS['OPENAI_API_KEY']}"
    assert sent.json["model"] == EMBED and sent.json["encoding_format"] == "base64"
    assert sent.json["input"] == ["hello world", "pay [REDACTED:account-number] now"]


def test_float_single_string_and_parameters_pass_through(gw, fp) -> None:  # type: ignore[no-untyped-def]
    r = client(gw, "client-own-key").embeddings.create(
        model="local-embed", input="ACCT-00000001", encoding_format="float", dimensions=8, user="u"
    )
    assert len(r.data) == 1 and isinstance(r.data[0].embedding[0], float)
    sent = fp.last
    assert sent.path == "/local/v1/embeddings"
    assert sent.json == {
        "model": "bge-small",
        "input": "[REDACTED:account-number]",
        "encoding_format": "float",
        "dimensions": 8,
        "user": "u",
    }
    # A target without its own secret gets the client's key, as for chat.
    assert sent.headers["authorization"] == "Bearer client-own-key"
    raw = httpx.post(
        gw.base_url + "/embeddings",
        json={"model": EMBED, "input": "plain", "encoding_format": "base64"},
    ).json()
    vector = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert len(vector) == 8


def test_block_is_409_and_never_reaches_upstream(gw, fp) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.ConflictError) as e:
        client(gw).embeddings.create(model=EMBED, input=["fine", "my SECRET-1234"])
    assert e.value.body["policy"] == "dlp-filter" and e.value.body["code"] == "input_blocked"
    assert e.value.body["type"] == "policy_violation"
    assert fp.requests == []


def test_refusals(gw, fp) -> None:  # type: ignore[no-untyped-def]
    c = client(gw)
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model="claude-3-5-sonnet-20241022", input="x")
    assert e.value.body["code"] == "embeddings_not_supported"
    assert "anthropic" in e.value.body["message"]
    # Token ids cannot be read by dlp-filter: refused rather than passed unchecked.
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model=EMBED, input=[[1, 2, 3]])
    assert e.value.body["param"] == "input" and "dlp-filter" in e.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        c.embeddings.create(model="nope", input="x")
    for bad in (
        {"model": EMBED},
        {"model": EMBED, "input": [1, "a"]},
        {"model": EMBED, "input": []},
    ):
        r = httpx.post(gw.base_url + "/embeddings", json=bad)
        assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    assert fp.requests == []


def test_upstream_errors_and_fallback_statuses(gw, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(
        Reply(status=400, body={"error": {"message": "bad dims", "type": "invalid_request_error"}})
    )
    with pytest.raises(openai.BadRequestError) as e:
        client(gw).embeddings.create(model=EMBED, input="x")
    assert "bad dims" in e.value.message
    fp.enqueue(Reply(status=503))
    with pytest.raises(openai.APIStatusError) as e:
        client(gw).embeddings.create(model=EMBED, input="x")
    assert e.value.status_code == 503


def test_responses_api_is_a_clear_501(gw, fp) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.APIStatusError) as e:
        client(gw).responses.create(model=EMBED, input="hi")
    assert e.value.status_code == 501
    assert e.value.body["code"] == "not_implemented"
    assert "/v1/chat/completions" in e.value.body["message"]
    assert e.value.response.headers["x-should-retry"] == "false"
    assert fp.requests == []
