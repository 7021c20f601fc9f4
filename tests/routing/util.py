"""Helpers for the routing tests: configs from dicts, an in-process router, a fake clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from keeptrusts.config.load import load_config
from keeptrusts.config.model import GatewayConfig
from keeptrusts.context import RequestContext
from keeptrusts.errors import GatewayError
from keeptrusts.providers.http1 import HttpClient
from keeptrusts.routing.router import Router
from tests.conftest import write_yaml

PACK = {"name": "routing-test", "version": "1.0.0", "enabled": True}


class FakeClock:
    """A monotonic clock the test moves by hand (breakers, cooldowns, latency windows)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def target(tid: str, url: str, *, provider: str = "openai", model: str | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    """A target on the fake provider under its own path prefix, so faults can match it."""
    base = f"{url}/{tid}" if provider == "anthropic" else f"{url}/{tid}/v1"
    return {
        "id": tid,
        "provider": provider,
        "model": model or f"model-{tid}",
        "api_key": f"key-{tid}",
        "base_url": base,
        "aliases": ["smart"],
        **kw,
    }


def build_config(
    tmp: Path, targets: list[dict], *, providers: dict | None = None, top: dict | None = None
) -> GatewayConfig:
    doc: dict[str, Any] = {
        "pack": PACK,
        "policies": {"chain": []},
        "providers": {"targets": targets, **(providers or {})},
        **(top or {}),
    }
    config, problems = load_config([write_yaml(tmp / "routing.yaml", doc)], env={})
    assert config is not None, [str(p) for p in problems]
    return config


@asynccontextmanager
async def router_for(
    config: GatewayConfig, *, seed: int = 7, clock: Any = None
) -> AsyncIterator[Router]:
    async with HttpClient() as http:
        kw = {"clock": clock} if clock is not None else {}
        yield Router(config, http, rng=random.Random(seed), **kw)


def new_ctx(model: str = "smart", *, stream: bool = False, text: str = "hi") -> RequestContext:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    return RequestContext("req-test", "chat.completions", body, model, stream, {})


async def ask(router: Router, model: str = "smart", **kw: Any) -> tuple[RequestContext, Any]:
    """One non-streaming request: (ctx, completion or the GatewayError raised)."""
    ctx = new_ctx(model, **kw)
    try:
        return ctx, await router.complete(ctx, router.resolve(model))
    except GatewayError as err:
        return ctx, err


async def ask_stream(router: Router, model: str = "smart") -> tuple[RequestContext, str, Any]:
    """One streaming request: (ctx, text received, the error that ended it or None)."""
    ctx = new_ctx(model, stream=True)
    text = ""
    try:
        first, rest = await router.open_stream(ctx, router.resolve(model))
    except GatewayError as err:
        return ctx, text, err
    try:
        chunk = first
        while chunk is not None:
            for choice in chunk.obj.get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
            chunk = await anext(rest, None)
    except GatewayError as err:
        return ctx, text, err
    finally:
        await rest.aclose()
    return ctx, text, None


def served_by(fp: Any, tid: str) -> int:
    """How many requests the fake received for target ``tid``."""
    return sum(1 for r in fp.requests if r.path.startswith(f"/{tid}/"))
