"""The chain engine on its own: order, short-circuit, skipped, fail-mode, timeouts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keeptrusts.context import RequestContext
from keeptrusts.errors import PolicyViolation
from keeptrusts.policies.base import ALLOW, Policy, PolicyEnv, StreamFilter, Verdict
from keeptrusts.policies.chain import Chain

ENV = PolicyEnv(state_dir=Path("."))


def ctx() -> RequestContext:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello secret"}]}
    return RequestContext("r1", "chat.completions", body, "m", False, {})


class Recorder(Policy):
    def __init__(
        self,
        name: str,
        verdict: Verdict = ALLOW,
        *,
        exc: Exception | None = None,
        delay: float = 0.0,
        seen: list | None = None,
    ) -> None:
        super().__init__(Policy.Config(), ENV)
        self.name = name
        self.verdict, self.exc, self.delay, self.seen = verdict, exc, delay, seen
        self.timeout_s = 0.2

    async def on_request(self, ctx):  # type: ignore[no-untyped-def]
        if self.seen is not None:
            self.seen.append((self.name, ctx.body["messages"][0]["content"]))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.exc:
            raise self.exc
        return self.verdict


class Redactor(Recorder):
    async def on_request(self, ctx):  # type: ignore[no-untyped-def]
        msg = ctx.body["messages"][0]
        msg["content"] = msg["content"].replace("secret", "[X]")
        await super().on_request(ctx)
        return Verdict.redact({"secret": 1}, reason_code="redacted")


async def test_order_and_redaction_flows_to_later_policies() -> None:
    seen: list = []
    c = ctx()
    chain = Chain([Redactor("a"), Recorder("b", seen=seen)])
    await chain.run_input(c)
    assert seen == [("b", "hello [X]")]
    assert [(r.name, r.verdict) for r in c.policy_results] == [("a", "redact"), ("b", "allow")]


async def test_block_short_circuits_and_marks_rest_skipped() -> None:
    seen: list = []
    c = ctx()
    block = Verdict.block("found X", reason_code="x_found")
    chain = Chain([Recorder("a"), Recorder("b", block), Recorder("c", seen=seen)])
    with pytest.raises(PolicyViolation) as e:
        await chain.run_input(c)
    assert e.value.status == 409 and e.value.code == "input_blocked" and e.value.policy == "b"
    assert e.value.headers["x-should-retry"] == "false"
    assert seen == []
    assert [(r.name, r.verdict) for r in c.policy_results if r.phase == "input"] == [
        ("a", "allow"),
        ("b", "block"),
        ("c", "skipped"),
    ]
    # The output phase was never reached: recorded as skipped, never as passed.
    assert {(r.verdict, r.reason) for r in c.policy_results if r.phase == "output"} == {
        ("skipped", "not reached")
    }


@pytest.mark.parametrize("failure", [RuntimeError("boom"), None])
async def test_fail_mode_block_and_allow(failure) -> None:  # type: ignore[no-untyped-def]
    kwargs = {"exc": failure} if failure else {"delay": 1.0}
    c = ctx()
    with pytest.raises(PolicyViolation):
        await Chain([Recorder("f", **kwargs), Recorder("g")], fail_mode="block").run_input(c)
    inputs = [(r.name, r.verdict) for r in c.policy_results if r.phase == "input"]
    assert inputs == [("f", "error"), ("g", "skipped")]
    c = ctx()
    await Chain([Recorder("f", **kwargs), Recorder("g")], fail_mode="allow").run_input(c)
    assert [(r.name, r.verdict) for r in c.policy_results] == [("f", "error"), ("g", "allow")]


class UpperStream(StreamFilter):
    def feed(self, text, final):  # type: ignore[no-untyped-def]
        return text.upper(), ALLOW


class StreamPolicy(Policy):
    name = "upper"

    def __init__(self) -> None:
        super().__init__(Policy.Config(), ENV)

    def stream_filter(self, ctx):  # type: ignore[no-untyped-def]
        return UpperStream()


def test_stream_pipeline_rewrites_content_and_tool_args() -> None:
    red = Chain([StreamPolicy()]).stream(ctx())
    chunk = {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "content": "abc",
                    "tool_calls": [{"index": 0, "function": {"arguments": '{"q":"x"}'}}],
                },
            }
        ]
    }
    assert red.process(chunk)
    delta = chunk["choices"][0]["delta"]
    assert delta["content"] == "ABC"
    assert delta["tool_calls"][0]["function"]["arguments"] == '{"Q":"X"}'
