"""The router in-process over real HTTP to the fake provider, with faults injected.

Targets ``a``, ``b`` (OpenAI) and ``c`` (Anthropic) live under their own path prefix on
the one fake upstream, so a ``Reply(match_path="/a/")`` breaks only ``a``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from keeptrusts.audit.event import build_event
from keeptrusts.errors import GatewayError, UpstreamError
from tests.conftest import free_port
from tests.fakeprovider import Reply
from tests.routing.util import (
    FakeClock,
    ask,
    ask_stream,
    build_config,
    new_ctx,
    router_for,
    served_by,
    target,
)

STRATEGIES = ["ordered", "round_robin", "weighted", "least_busy", "lowest_latency", "cost"]
FAULTS = ["http_500", "refused", "hang"]
ALWAYS = 10**6


def pair(tmp: Path, url: str, strategy: str, *, a_url: str | None = None, **providers):  # type: ignore[no-untyped-def]
    """Targets a and b serving ``smart``; ``a`` is first, heaviest and cheapest, so every
    strategy sends it traffic."""
    a = target(
        "a",
        url,
        weight=50,
        price={"input_per_1k": 0.1, "output_per_1k": 0.2},
        timeouts={"connect": 0.5, "first_byte": 0.25, "total": 5},
    )
    if a_url is not None:
        a["base_url"] = a_url
    b = target("b", url, weight=50, price={"input_per_1k": 1, "output_per_1k": 2})
    routing = {"strategy": strategy, "min_sample_count": 3, **providers.pop("routing", {})}
    return build_config(tmp, [a, b], providers={"routing": routing, **providers})


def inject(fp, fault: str) -> str | None:  # type: ignore[no-untyped-def]
    """Break target a; return a base_url to use for it (a closed port) or None."""
    if fault == "http_500":
        fp.enqueue(Reply(status=500, match_path="/a/", times=ALWAYS))
    elif fault == "hang":
        fp.enqueue(Reply(hang=True, match_path="/a/", times=ALWAYS))
    elif fault == "refused":
        return f"http://127.0.0.1:{free_port()}/a/v1"
    return None


# --- one of two targets broken: every request still succeeds ---------------------------------


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_one_broken_target_full_success(tmp_path, fp, strategy: str, fault: str) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, strategy, a_url=inject(fp, fault))
    async with router_for(config) as router:
        results = [await ask(router) for _ in range(20)]
        snap = router.metrics()["targets"]
    errors = [r for _, r in results if isinstance(r, GatewayError)]
    assert errors == [], errors[:1]
    assert all(ctx.target.id == "b" for ctx, _ in results)
    a = snap["a"]
    assert a["requests"] >= 1 and a["successes"] == 0  # the fault was hit, and survived
    kind = {"http_500": "server_error", "refused": "connection_error", "hang": "timeout"}[fault]
    assert set(a["errors"]) == {kind}
    # Five consecutive failures open a's breaker; from then on it is skipped.
    assert a["requests"] == 5 and a["breaker"]["state"] == "open"


async def test_fallback_attempts_are_in_the_audit_event(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "ordered")
    fp.enqueue(Reply(status=503, match_path="/a/"))
    async with router_for(config) as router:
        ctx, result = await ask(router)
    assert result["choices"][0]["message"]["content"] == "hi"
    event = build_event(ctx, config.pack)
    assert [(a["target_id"], a["outcome"], a["status"]) for a in event["attempts"]] == [
        ("a", "server_error", 503),
        ("b", "ok", 200),
    ]
    assert all(a["latency_ms"] >= 0 for a in event["attempts"])


async def test_cross_provider_group_translates_for_the_serving_target(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url)
    c = target("c", fp.url, provider="anthropic", model="claude-sonnet-4-5")
    config = build_config(
        tmp_path,
        [a, c],
        providers={"model_groups": [{"name": "best", "models": ["a", "c"]}]},
    )
    fp.enqueue(Reply(status=502, match_path="/a/"), Reply(text="Bonjour", match_path="/c/"))
    async with router_for(config) as router:
        ctx, result = await ask(router, "best")
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["content"] == "Bonjour"
    assert fp.last.path == "/c/v1/messages" and fp.last.json["model"] == "claude-sonnet-4-5"
    assert fp.last.headers["x-api-key"] == "key-c"
    assert [a.outcome for a in ctx.attempts] == ["server_error", "ok"]


# --- strategy distributions through the router ----------------------------------------------


async def test_weighted_70_30_over_1000_requests(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a, b = target("a", fp.url, weight=70), target("b", fp.url, weight=30)
    config = build_config(tmp_path, [a, b], providers={"routing": {"strategy": "weighted"}})
    async with router_for(config, seed=11) as router:
        picks = Counter()
        for _ in range(1000):
            ctx, _ = await ask(router)
            picks[ctx.target.id] += 1
    assert abs(picks["a"] / 1000 - 0.70) <= 0.05, picks
    assert served_by(fp, "a") == picks["a"] and served_by(fp, "b") == picks["b"]


async def test_round_robin_alternates(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "round_robin")
    async with router_for(config) as router:
        served = [(await ask(router))[0].target.id for _ in range(10)]
    assert served == ["a", "b"] * 5


async def test_least_busy_under_uneven_latency(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(
        Reply(delay_first_byte=0.15, match_path="/a/", times=ALWAYS),
        Reply(delay_first_byte=0.01, match_path="/b/", times=ALWAYS),
    )

    async def share(strategy: str) -> float:
        config = pair(tmp_path, fp.url, strategy)
        picks: Counter = Counter()
        async with router_for(config) as router:

            async def worker() -> None:
                for _ in range(10):
                    ctx, result = await ask(router)
                    assert not isinstance(result, GatewayError)
                    picks[ctx.target.id] += 1

            await asyncio.gather(*(worker() for _ in range(8)))
        return picks["b"] / sum(picks.values())

    # Round robin splits evenly whatever the latency; least_busy sends the fast target
    # most of the traffic because the slow one keeps requests in flight longer.
    assert 0.4 <= await share("round_robin") <= 0.6
    assert await share("least_busy") >= 0.75


async def test_lowest_latency_prefers_the_faster_target(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    fp.enqueue(Reply(delay_first_byte=0.03, match_path="/a/", times=ALWAYS))
    config = pair(tmp_path, fp.url, "lowest_latency")
    async with router_for(config) as router:
        served = [(await ask(router))[0].target.id for _ in range(40)]
    # Each is measured min_sample_count (3) times first, then the faster one wins.
    assert Counter(served[:6]) == {"a": 3, "b": 3}
    assert set(served[6:]) == {"b"}


async def test_cost_prefers_the_cheapest(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "cost")
    async with router_for(config) as router:
        served = {(await ask(router))[0].target.id for _ in range(5)}
    assert served == {"a"}


# --- breaker, Retry-After, retries ----------------------------------------------------------


async def test_breaker_open_half_open_closed(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    config = pair(
        tmp_path,
        fp.url,
        "ordered",
        circuit_breaker={"failure_threshold": 3, "cooldown_seconds": 10, "half_open_probes": 2},
    )
    fp.enqueue(Reply(status=500, match_path="/a/", times=4))
    async with router_for(config, clock=clock) as router:
        for _ in range(3):
            await ask(router)
        assert router.breaker_states()["a"] == "open"
        for _ in range(5):
            ctx, _ = await ask(router)
            assert [a.target_id for a in ctx.attempts] == ["b"]  # a is skipped while open
        assert served_by(fp, "a") == 3
        clock.advance(10)
        assert router.breaker_states()["a"] == "half_open"
        ctx, _ = await ask(router)  # the probe fails (4th scripted 500): open again
        assert [a.target_id for a in ctx.attempts] == ["a", "b"]
        assert router.breaker_states()["a"] == "open"
        clock.advance(10)
        ctx, _ = await ask(router)  # a is healthy now: first probe succeeds
        assert ctx.target.id == "a" and router.breaker_states()["a"] == "half_open"
        ctx, _ = await ask(router)  # second probe succeeds: closed
        assert ctx.target.id == "a" and router.breaker_states()["a"] == "closed"
        assert router.metrics()["targets"]["a"]["breaker"]["opened"] == 2


async def test_retry_after_puts_the_target_in_cooldown(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "ordered")
    fp.enqueue(Reply(status=429, retry_after=0.6, match_path="/a/"))
    async with router_for(config) as router:
        ctx, _ = await ask(router)
        assert [(a.target_id, a.outcome) for a in ctx.attempts] == [
            ("a", "rate_limited"),
            ("b", "ok"),
        ]
        ctx, _ = await ask(router)
        assert [a.target_id for a in ctx.attempts] == ["b"]  # a is cooling down
        assert router.metrics()["targets"]["a"]["cooldown_s"] > 0
        await asyncio.sleep(0.65)
        ctx, _ = await ask(router)
        assert ctx.target.id == "a"
    assert served_by(fp, "a") == 2


async def test_retry_after_is_waited_for_when_retrying_one_target(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url)
    config = build_config(tmp_path, [a], providers={"routing": {"max_retries": 1}})
    fp.enqueue(Reply(status=429, retry_after=0.5, match_path="/a/"))
    async with router_for(config) as router:
        started = time.perf_counter()
        ctx, result = await ask(router)
        elapsed = time.perf_counter() - started
    assert result["choices"][0]["message"]["content"] == "hi"
    assert 0.5 <= elapsed < 1.5
    assert [a.outcome for a in ctx.attempts] == ["rate_limited", "ok"]


async def test_retry_after_longer_than_max_wait_is_relayed(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url)
    config = build_config(
        tmp_path, [a], providers={"routing": {"max_retries": 2, "max_retry_wait": 1}}
    )
    fp.enqueue(Reply(status=429, retry_after=30, match_path="/a/"))
    async with router_for(config) as router:
        _, err = await ask(router)
        assert isinstance(err, UpstreamError) and err.status == 429
        assert err.headers["retry-after"] == "30"
        # While it cools down the gateway answers 429 itself, without calling the target.
        _, err = await ask(router)
        assert err.status == 429 and err.code == "rate_limited"
        assert 28 <= int(err.headers["retry-after"]) <= 30
    assert served_by(fp, "a") == 1


async def test_backoff_retries_the_same_target(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url)
    routing = {"max_retries": 2, "backoff": {"initial_ms": 40, "jitter": "none"}}
    config = build_config(tmp_path, [a], providers={"routing": routing})
    fp.enqueue(Reply(status=500, match_path="/a/", times=2))
    async with router_for(config) as router:
        started = time.perf_counter()
        ctx, result = await ask(router)
        elapsed = time.perf_counter() - started
        assert router.metrics()["targets"]["a"]["retries"] == 2
    assert not isinstance(result, GatewayError)
    assert [a.outcome for a in ctx.attempts] == ["server_error", "server_error", "ok"]
    assert elapsed >= 0.04 + 0.08  # 40 ms, then 80 ms


async def test_no_retry_after_a_400(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "ordered", routing={"max_retries": 3})
    fp.enqueue(Reply(status=400, match_path="/a/"))
    async with router_for(config) as router:
        ctx, err = await ask(router)
        assert router.breaker_states()["a"] == "closed"
    assert isinstance(err, UpstreamError) and err.status == 400
    assert served_by(fp, "a") == 1 and served_by(fp, "b") == 0
    assert [a.outcome for a in ctx.attempts] == ["client_error"]


async def test_retry_on_narrows_what_falls_back(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "ordered", routing={"retry_on": ["timeout", 503]})
    fp.enqueue(Reply(status=500, match_path="/a/"), Reply(status=503, match_path="/a/"))
    async with router_for(config) as router:
        _, err = await ask(router)
        assert isinstance(err, UpstreamError) and err.status == 500
        ctx, _result = await ask(router)
        assert ctx.target.id == "b"


# --- streams ---------------------------------------------------------------------------------


async def test_time_to_first_token_timeout_falls_back(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url, timeouts={"first_byte": 5, "first_token": 0.3})
    config = build_config(tmp_path, [a, target("b", fp.url)])
    # a answers at once with the role chunk, then stalls before any content.
    fp.enqueue(Reply(text="slow a", delay_between_chunks=2.0, match_path="/a/"))
    fp.enqueue(Reply(text="fast b", match_path="/b/"))
    async with router_for(config) as router:
        started = time.perf_counter()
        ctx, text, err = await ask_stream(router)
        elapsed = time.perf_counter() - started
    assert err is None and text == "fast b"
    assert 0.3 <= elapsed < 1.5
    assert [(a.target_id, a.outcome) for a in ctx.attempts] == [("a", "timeout"), ("b", "ok")]


async def test_stream_dying_after_the_role_chunk_still_falls_back(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "ordered")
    fp.enqueue(Reply(text="lost", cut_after=1, reset=True, match_path="/a/"))
    fp.enqueue(Reply(text="one two three", match_path="/b/"))
    async with router_for(config) as router:
        ctx, text, err = await ask_stream(router)
    assert err is None and text == "one two three"
    assert [(a.target_id, a.outcome) for a in ctx.attempts] == [
        ("a", "connection_error"),
        ("b", "ok"),
    ]


async def test_stream_cut_mid_answer_ends_with_an_error(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "ordered")
    fp.enqueue(Reply(text="one two three four", chunks=4, cut_after=3, match_path="/a/"))
    async with router_for(config) as router:
        ctx, text, err = await ask_stream(router)
        snap = router.metrics()["targets"]["a"]
    # Content was sent: no silent switch to b, the stream ends with an error instead.
    assert text and "one two three four".startswith(text) and text != "one two three four"
    assert isinstance(err, UpstreamError)
    assert served_by(fp, "b") == 0
    assert [(a.target_id, a.outcome) for a in ctx.attempts] == [("a", "stream_cut")]
    assert snap["errors"] == {"stream_cut": 1} and snap["in_flight"] == 0


async def test_stream_total_timeout_cuts_a_slow_drip(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url, timeouts={"first_byte": 5, "total": 0.4})
    config = build_config(tmp_path, [a])
    fp.enqueue(Reply(text="a b c d e f g h", chunks=8, delay_between_chunks=0.1, match_path="/a/"))
    async with router_for(config) as router:
        _ctx, text, err = await ask_stream(router, "a")
    assert text and text != "a b c d e f g h"
    assert isinstance(err, UpstreamError) and err.status == 504


async def test_stream_fallback_on_500_across_providers(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url)
    c = target("c", fp.url, provider="anthropic", model="claude-sonnet-4-5")
    config = build_config(tmp_path, [a, c])
    fp.enqueue(Reply(status=500, match_path="/a/"), Reply(text="Hallo Welt", match_path="/c/"))
    async with router_for(config) as router:
        ctx, text, err = await ask_stream(router)
    assert err is None and text == "Hallo Welt" and ctx.target.id == "c"


# --- load shedding ---------------------------------------------------------------------------


async def test_load_shedding_under_a_burst(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url, max_concurrency=2, max_queue=2, queue_timeout=5)
    config = build_config(tmp_path, [a])
    fp.enqueue(Reply(delay_first_byte=0.3, match_path="/a/", times=ALWAYS))
    async with router_for(config) as router:
        results = await asyncio.gather(*(ask(router) for _ in range(20)))
        snap = router.metrics()["targets"]["a"]
    ok = [r for _, r in results if not isinstance(r, GatewayError)]
    shed = [r for _, r in results if isinstance(r, GatewayError)]
    # Two in flight plus two queued are served; the rest are refused at once.
    assert len(ok) == 4 and len(shed) == 16
    assert all(e.status == 503 and e.code == "overloaded" for e in shed)
    assert all(e.headers["retry-after"] == "1" for e in shed)
    assert served_by(fp, "a") == 4
    assert snap["errors"] == {"shed": 16} and snap["in_flight"] == 0 and snap["queued"] == 0


async def test_a_full_target_spills_over_to_the_next(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url, max_concurrency=1, max_queue=0)
    config = build_config(tmp_path, [a, target("b", fp.url)])
    fp.enqueue(Reply(delay_first_byte=0.2, match_path="/a/", times=ALWAYS))
    async with router_for(config) as router:
        results = await asyncio.gather(*(ask(router) for _ in range(10)))
    assert not [r for _, r in results if isinstance(r, GatewayError)]
    assert Counter(ctx.target.id for ctx, _ in results) == {"a": 1, "b": 9}


async def test_cancelled_request_frees_its_slot(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url, max_concurrency=1, max_queue=1)
    config = build_config(tmp_path, [a])
    fp.enqueue(Reply(hang=True, match_path="/a/"))
    async with router_for(config) as router:
        task = asyncio.create_task(ask(router))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        snap = router.metrics()["targets"]["a"]
        assert snap["in_flight"] == 0 and snap["breaker"]["state"] == "closed"
        _, result = await ask(router)
        assert not isinstance(result, GatewayError)


async def test_repeated_mid_stream_cuts_open_the_breaker(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    config = pair(tmp_path, fp.url, "ordered", circuit_breaker={"failure_threshold": 3})
    fp.enqueue(Reply(text="one two three", cut_after=2, match_path="/a/", times=ALWAYS))
    async with router_for(config) as router:
        errors = [(await ask_stream(router))[2] for _ in range(6)]
        snap = router.metrics()["targets"]["a"]
    # Each cut reaches the client as an error (content had started); after three in a row
    # a's breaker opens and the remaining streams are served by b from the start.
    assert [e is not None for e in errors] == [True, True, True, False, False, False]
    assert snap["breaker"]["state"] == "open" and snap["successes"] == 0
    assert snap["errors"] == {"stream_cut": 3}


async def test_an_abandoned_stream_frees_its_slot_at_the_deadline(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    a = target("a", fp.url, max_concurrency=1, timeouts={"first_byte": 5, "total": 0.5})
    config = build_config(tmp_path, [a])
    fp.enqueue(Reply(text="one two three", delay_between_chunks=0.3, match_path="/a/"))
    async with router_for(config) as router:
        ctx = new_ctx("a", stream=True)
        _first, rest = await router.open_stream(ctx, router.resolve("a"))
        assert router.metrics()["targets"]["a"]["in_flight"] == 1
        await asyncio.sleep(0.6)  # nobody reads or closes the rest
        assert router.metrics()["targets"]["a"]["in_flight"] == 0
        # Reading it now fails (a timeout): it never looks like a complete stream.
        with pytest.raises(UpstreamError) as e:
            await anext(rest)
        assert e.value.status == 504
        await rest.aclose()


async def test_total_timeout_on_a_plain_request_falls_back(tmp_path, fp) -> None:  # type: ignore[no-untyped-def]
    # a answers after 1 s: within its first-byte timeout, past its total one.
    a = target("a", fp.url, timeouts={"first_byte": 5, "total": 0.3})
    b = target("b", fp.url)
    config = build_config(tmp_path, [a, b])
    fp.enqueue(Reply(delay_first_byte=1.0, match_path="/a/"))
    async with router_for(config) as router:
        started = time.perf_counter()
        ctx, result = await ask(router)
        took = time.perf_counter() - started
    assert not isinstance(result, GatewayError), result
    assert [(x.target_id, x.outcome) for x in ctx.attempts] == [("a", "timeout"), ("b", "ok")]
    assert 0.3 <= took < 0.9  # the deadline fired (within its tick), long before a answered
