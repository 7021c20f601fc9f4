from __future__ import annotations

import asyncio
from typing import Any

from keeptrusts.config.model import Price, Target
from keeptrusts.context import Attempt, Identity, RequestContext
from keeptrusts.limits import Limiter, RateLimited, Reservation
from keeptrusts.routing.router import Route

GPT4O = Target(id="openai-gpt4o", provider="openai", model="gpt-4o", base_url="http://x/v1")


def ctx(
    *,
    model: str = "gpt-4o",
    text: str = "hello",
    max_tokens: int | None = 100,
    key_id: str | None = "k1",
    name: str | None = "ci-bot",
    role: str | None = "developer",
    targets: tuple[Target, ...] = (GPT4O,),
    endpoint: str = "chat.completions",
) -> RequestContext:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    c = RequestContext(
        request_id="req_test",
        endpoint=endpoint,
        body=body,
        model=model,
        stream=False,
        headers={},
    )
    if key_id is not None:
        c.identity = Identity(key_id=key_id, name=name, role=role, source="key")
    else:
        c.identity = Identity(role=role)
    c.route = Route(model, targets)
    return c


def answered(c: RequestContext, prompt: int, completion: int) -> RequestContext:
    """Mark ``c`` as answered by its first target with this usage."""
    c.target = c.route.targets[0]
    c.attempts.append(Attempt(c.target.id, c.target.provider, "ok", 200, 1.0))
    c.usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return c


async def try_reserve(limiter: Limiter, c: RequestContext) -> Reservation | RateLimited | None:
    try:
        return await limiter.reserve(c)
    except RateLimited as err:
        return err


async def burst(limiter: Limiter, contexts: list[RequestContext]) -> tuple[int, list[RateLimited]]:
    results = await asyncio.gather(*(try_reserve(limiter, c) for c in contexts))
    denied = [r for r in results if isinstance(r, RateLimited)]
    # None: no counter applied (e.g. a budget for a model without a price).
    ok = [r for r in results if isinstance(r, Reservation) or r is None]
    assert len(ok) + len(denied) == len(contexts)
    return len(ok), denied


def priced_target(tid: str, model: str, inp: float, out: float) -> Target:
    return Target(
        id=tid, provider="openai", model=model, base_url="http://x/v1", price=Price(inp, out)
    )
