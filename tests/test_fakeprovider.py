"""The fake upstream speaks the real wire formats: proven with the official SDKs.

Also runs ``AnthropicProvider`` end to end against it. ``fp`` (conftest) is the
session's ``FakeProvider``, reset before each test.
"""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from keeptrusts.config.model import Target, Timeouts
from keeptrusts.errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from keeptrusts.providers.anthropic import AnthropicProvider
from keeptrusts.providers.base import Call
from keeptrusts.providers.http1 import HttpClient
from tests.fakeprovider import Reply, ToolCall

HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def oai(fp):
    return openai.OpenAI(base_url=fp.url + "/v1", api_key="sk-test", max_retries=0, timeout=5)


@pytest.fixture
def ant(fp):
    return anthropic.Anthropic(base_url=fp.url, api_key="sk-ant-test", max_retries=0, timeout=5)


# --- OpenAI format -------------------------------------------------------------------


def test_openai_default_reply_echoes_last_user_message(fp, oai):
    r = oai.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert r.choices[0].message.content == "hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "gpt-4o-mini"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert fp.last.path == "/v1/chat/completions"
    assert fp.last.headers["authorization"] == "Bearer sk-test"
    assert fp.last.json["messages"] == HI


def test_openai_stream_with_tool_calls_and_usage(fp, oai):
    fp.enqueue(
        Reply(
            text="Checking the weather", chunks=4, tool_calls=[("get_weather", {"city": "Paris"})]
        )
    )
    stream = oai.chat.completions.create(
        model="m", messages=HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(content) == 4 and "".join(content) == "Checking the weather"
    args = "".join(
        tc.function.arguments or ""
        for c in chunks if c.choices
        for tc in c.choices[0].delta.tool_calls or []
    )  # fmt: skip
    assert args == '{"city":"Paris"}'
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_openai_tool_call_any_prefix(fp):
    client = openai.OpenAI(base_url=fp.url + "/openai/v1", api_key="k", max_retries=0)
    fp.enqueue(Reply(tool_calls=[ToolCall("now", {}, id="call_X")]))
    r = client.chat.completions.create(model="m", messages=HI)
    msg = r.choices[0].message
    assert msg.content is None
    assert (msg.tool_calls[0].id, msg.tool_calls[0].function.name) == ("call_X", "now")
    assert r.choices[0].finish_reason == "tool_calls"
    assert fp.last.path == "/openai/v1/chat/completions"


def test_openai_500_fault_for_n_requests(fp, oai):
    fp.enqueue(Reply(status=500, times=2))
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            oai.chat.completions.create(model="m", messages=HI)
    assert oai.chat.completions.create(model="m", messages=HI).choices[0].message.content
    assert len(fp.requests) == 3


def test_openai_429_with_retry_after(oai, fp):
    fp.enqueue(Reply(status=429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as info:
        oai.chat.completions.create(model="m", messages=HI)
    assert info.value.response.headers["retry-after"] == "7"


def test_reply_filters_by_model(fp, oai):
    fp.enqueue(Reply(text="for b", match_model="b"))
    assert (
        oai.chat.completions.create(model="a", messages=HI).choices[0].message.content
        == "hello there"
    )
    assert oai.chat.completions.create(model="b", messages=HI).choices[0].message.content == "for b"


def test_embeddings_and_models(oai):
    r = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8
    assert r.data[0].embedding != r.data[1].embedding
    assert "gpt-4o-mini" in [m.id for m in oai.models.list()]


def test_connection_faults(fp, oai):
    fp.enqueue(Reply(reset=True))
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="m", messages=HI)
    fp.enqueue(Reply(hang=True))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).chat.completions.create(model="m", messages=HI)
    assert time.monotonic() - started < 2


def test_stream_cut_and_delays(fp, oai):
    fp.enqueue(Reply(text="abcdef", chunks=3, cut_after=2, delay_between_chunks=0.01))
    chunks = list(oai.chat.completions.create(model="m", messages=HI, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["", "ab"]
    fp.enqueue(Reply(delay_first_byte=0.5))
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.2).chat.completions.create(model="m", messages=HI)


# --- Anthropic format ----------------------------------------------------------------


def test_anthropic_non_stream_with_tool_use(fp, ant):
    fp.enqueue(Reply(text="Sure.", tool_calls=[("get_weather", {"city": "Rome"})]))
    m = ant.messages.create(model="claude-x", max_tokens=100, messages=HI)
    assert [b.type for b in m.content] == ["text", "tool_use"]
    assert m.content[0].text == "Sure."
    assert (m.content[1].name, m.content[1].input) == ("get_weather", {"city": "Rome"})
    assert m.stop_reason == "tool_use"
    assert fp.last.path == "/v1/messages"


def test_anthropic_stream_accumulates(fp, ant):
    fp.enqueue(Reply(text="Hello world", chunks=5, tool_calls=[("f", {"a": [1, 2]})]))
    with ant.messages.stream(model="claude-x", max_tokens=100, messages=HI) as stream:
        events = [e.type for e in stream]
        m = stream.get_final_message()
    assert m.content[0].text == "Hello world"
    assert m.content[1].input == {"a": [1, 2]}
    assert m.stop_reason == "tool_use" and m.usage.output_tokens > 0
    assert events.count("text") == 5 and "input_json" in events


def test_anthropic_error_event_and_strictness(fp, ant):
    fp.enqueue(Reply(cut_after=3, stream_error="Overloaded"))
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        list(ant.messages.create(model="c", max_tokens=5, messages=HI, stream=True))
    with pytest.raises(anthropic.BadRequestError, match="Extra inputs"):
        ant.messages.create(model="c", max_tokens=5, messages=HI, extra_body={"n": 1})
    fp.enqueue(Reply(status=529))
    with pytest.raises(anthropic.APIStatusError) as info:
        ant.messages.create(model="c", max_tokens=5, messages=HI)
    assert info.value.status_code == 529


# --- AnthropicProvider end to end ----------------------------------------------------


def anthropic_call(fp, http, body, *, stream=False, key="sk-ant-target", first_byte=2.0) -> Call:
    target = Target(
        id="claude",
        provider="anthropic",
        model="claude-real",
        base_url=fp.url,
        api_key=key,
        timeouts=Timeouts(connect=2, first_byte=first_byte, total=5),
    )
    return Call(
        body=body,
        target=target,
        http=http,
        request_id="req-1",
        client_auth="Bearer sk-client",
        stream=stream,
    )


async def test_provider_complete_end_to_end(fp):
    body = {
        "model": "claude",
        "messages": [{"role": "system", "content": "Be brief."}, *HI],
        "n": 1,
        "frequency_penalty": 0.1,
    }
    async with HttpClient() as http:
        out = await AnthropicProvider().complete(anthropic_call(fp, http, body))
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "hello there"
    assert out["model"] == "claude-real"
    got = fp.last
    assert got.path == "/v1/messages"
    assert got.headers["x-api-key"] == "sk-ant-target"
    assert got.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in got.headers
    assert got.json["system"] == "Be brief."
    assert got.json["max_tokens"] == 4096


async def test_provider_stream_end_to_end(fp):
    fp.enqueue(Reply(text="Hi there you", chunks=3, tool_calls=[("now", {"tz": "UTC"})]))
    body = {
        "model": "claude",
        "messages": HI,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with HttpClient() as http:
        call = anthropic_call(fp, http, body, stream=True, key=None)
        chunks = [c.obj async for c in AnthropicProvider().stream(call)]
    assert fp.last.headers["x-api-key"] == "sk-client"
    assert "authorization" not in fp.last.headers
    assert fp.last.json["stream"] is True and "stream_options" not in fp.last.json
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hi there you"
    args = "".join(
        tc["function"].get("arguments") or ""
        for c in chunks if c["choices"]
        for tc in c["choices"][0]["delta"].get("tool_calls") or []
    )  # fmt: skip
    assert args == '{"tz":"UTC"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert call.usage == chunks[-1]["usage"]


@pytest.mark.parametrize(
    ("reply", "error", "status"),
    [
        (Reply(cut_after=4, stream_error="Overloaded"), UpstreamError, 503),
        (Reply(cut_after=4), UpstreamUnreachable, 502),
        (Reply(cut_after=4, reset=True), UpstreamUnreachable, 502),
        (Reply(status=429, retry_after=3), UpstreamError, 429),
        (Reply(hang=True), UpstreamTimeout, 504),
    ],
)
async def test_provider_stream_faults(fp, reply, error, status):
    fp.enqueue(reply)
    body = {"model": "claude", "messages": HI, "stream": True}
    async with HttpClient() as http:
        call = anthropic_call(fp, http, body, stream=True, first_byte=0.3)
        with pytest.raises(error) as info:
            _ = [c async for c in AnthropicProvider().stream(call)]
    assert info.value.status == status
    if status == 429:
        assert info.value.headers["retry-after"] == "3"
