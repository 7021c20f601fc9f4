"""Fault matrix: fault x strategy -> success rate and added latency, in-process.

Run from the repository root::

    .venv/bin/python -m tests.routing.fault_matrix [--requests 200]

Two targets (``a`` and ``b``) serve one model on the fake provider; ``a`` is given the
fault and is the first choice of every strategy (first in order, heaviest weight,
cheapest, measured first). Each cell uses a fresh router (fresh breakers) and sends the
requests one after another. "Added" is the cell's latency minus the no-fault cell of the
same strategy: p50, p99 and the mean per request. Default breaker (5 failures, 30 s
cooldown) unless the row says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keeptrusts.config.load import load_config
from keeptrusts.context import RequestContext
from keeptrusts.errors import GatewayError
from keeptrusts.providers.http1 import HttpClient
from keeptrusts.routing.router import Router
from tests.conftest import free_port, write_yaml
from tests.fakeprovider import FakeProvider, Reply

STRATEGIES = ["ordered", "round_robin", "weighted", "least_busy", "lowest_latency", "cost"]
ALWAYS = 10**6


@dataclass
class Fault:
    name: str
    stream: bool = False
    reply: Reply | None = None
    refused: bool = False
    breaker: bool = True


FAULTS = [
    Fault("none"),
    Fault("none (stream)", stream=True),
    Fault("HTTP 500", reply=Reply(status=500, match_path="/a/", times=ALWAYS)),
    Fault(
        "HTTP 429 Retry-After 1",
        reply=Reply(status=429, retry_after=1, match_path="/a/", times=ALWAYS),
    ),
    Fault("connection refused", refused=True),
    Fault("hang (first_byte 0.25 s)", reply=Reply(hang=True, match_path="/a/", times=ALWAYS)),
    Fault(
        "hang, breaker off", reply=Reply(hang=True, match_path="/a/", times=ALWAYS), breaker=False
    ),
    Fault(
        "stream: no token (first_token 0.25 s)",
        stream=True,
        reply=Reply(delay_between_chunks=5, match_path="/a/", times=ALWAYS),
    ),
    Fault(
        "stream: reset after role chunk",
        stream=True,
        reply=Reply(cut_after=1, reset=True, match_path="/a/", times=ALWAYS),
    ),
    Fault(
        "stream: cut mid-answer",
        stream=True,
        reply=Reply(
            text="one two three four", chunks=4, cut_after=3, match_path="/a/", times=ALWAYS
        ),
    ),
]


def config_for(tmp: Path, url: str, strategy: str, fault: Fault) -> Any:
    a_url = f"http://127.0.0.1:{free_port()}/a/v1" if fault.refused else f"{url}/a/v1"
    common = {"provider": "openai", "api_key": "k", "aliases": ["smart"]}
    targets = [
        {
            "id": "a",
            "model": "model-a",
            "base_url": a_url,
            "weight": 90,
            "price": {"input_per_1k": 0.1, "output_per_1k": 0.2},
            "timeouts": {"connect": 0.5, "first_byte": 0.25, "first_token": 0.25, "total": 10},
            **common,
        },
        {
            "id": "b",
            "model": "model-b",
            "base_url": f"{url}/b/v1",
            "weight": 10,
            "price": {"input_per_1k": 1, "output_per_1k": 2},
            **common,
        },
    ]
    providers: dict[str, Any] = {"targets": targets, "routing": {"strategy": strategy}}
    if not fault.breaker:
        providers["circuit_breaker"] = {"enabled": False}
    doc = {"pack": {"name": "m", "version": "1", "enabled": True}, "policies": {"chain": []}}
    config, problems = load_config([write_yaml(tmp / "m.yaml", {**doc, "providers": providers})])
    assert config is not None, problems
    return config


async def one(router: Router, stream: bool) -> tuple[bool, float]:
    body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    ctx = RequestContext("r", "chat.completions", body, "smart", stream, {})
    started = time.perf_counter()
    try:
        if stream:
            _first, rest = await router.open_stream(ctx, router.resolve("smart"))
            try:
                async for _ in rest:
                    pass
            finally:
                await rest.aclose()
        else:
            await router.complete(ctx, router.resolve("smart"))
        ok = True
    except GatewayError:
        ok = False
    return ok, (time.perf_counter() - started) * 1000.0


async def cell(fp: FakeProvider, tmp: Path, strategy: str, fault: Fault, n: int) -> dict:
    fp.reset()
    if fault.reply is not None:
        fp.enqueue(Reply(**{**fault.reply.__dict__}))
    config = config_for(tmp, fp.url, strategy, fault)
    async with HttpClient() as http:
        router = Router(config, http, rng=random.Random(1))
        # Without a breaker every request to a waits out its timeout: fewer of those.
        n = n if fault.breaker else max(20, n // 5)
        results = [await one(router, fault.stream) for _ in range(n)]
    lat = sorted(ms for _, ms in results)
    return {
        "ok": sum(ok for ok, _ in results) / n,
        "p50": statistics.median(lat),
        "p99": lat[min(n - 1, int(0.99 * n))],
        "mean": statistics.fmean(lat),
    }


async def main(n: int) -> None:
    fp = FakeProvider().start()
    rows: dict[str, dict[str, dict]] = {}
    try:
        with tempfile.TemporaryDirectory() as d:
            for fault in FAULTS:
                rows[fault.name] = {}
                for strategy in STRATEGIES:
                    rows[fault.name][strategy] = await cell(fp, Path(d), strategy, fault, n)
    finally:
        fp.stop()
    print(
        f"{n} sequential requests per cell; success rate, then added latency "
        "p50 / p99 / mean in ms versus the no-fault row of the same strategy and mode\n"
    )
    print("| fault | " + " | ".join(STRATEGIES) + " |")
    print("|---|" + "---|" * len(STRATEGIES))
    for name, cells in rows.items():
        base = rows["none (stream)" if "stream" in name else "none"]
        out = []
        for s in STRATEGIES:
            c, b = cells[s], base[s]
            if name.startswith("none"):
                out.append(f"{c['ok']:.0%} · {c['p50']:.2f} / {c['p99']:.2f} ms (abs.)")
            else:
                out.append(
                    f"{c['ok']:.1%} · +{c['p50'] - b['p50']:.2f} / +{c['p99'] - b['p99']:.1f}"
                    f" / +{c['mean'] - b['mean']:.1f}"
                )
        print(f"| {name} | " + " | ".join(out) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(main(parser.parse_args().requests))
