"""Limiter semantics, identical on both backends (in process and Redis)."""

from __future__ import annotations

import logging

import pytest

from keeptrusts.audit.event import build_event
from keeptrusts.config.model import Pack, Target
from keeptrusts.limits import Limiter, RateLimited, Reservation
from keeptrusts.limits.prices import NANO
from keeptrusts.limits.windows import Period
from tests.limits.helpers import answered, burst, ctx, priced_target, try_reserve

# ctx(text="hello", max_tokens=100): 2 text tokens + 4 per message, plus 100 completion.
PROMPT, COMPLETION = 6, 100
EST_TOKENS = PROMPT + COMPLETION
EST_COST_NANO = round((PROMPT * 0.0025 + COMPLETION * 0.01) / 1000 * NANO)  # gpt-4o


async def test_rpm_exact_under_a_burst(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"requests_per_minute": 60}}})
    ok, denied = await burst(limiter, [ctx() for _ in range(200)])
    assert ok == 60
    assert len(denied) == 140
    err = denied[0]
    assert err.status == 429
    assert err.type == "rate_limit"
    assert err.code == "rate_limit_exceeded"
    assert int(err.headers["retry-after"]) >= 1
    assert "key 'ci-bot'" in err.message
    assert "60 requests per minute" in err.message
    envelope = err.envelope()["error"]
    assert envelope["type"] == "rate_limit" and envelope["code"] == "rate_limit_exceeded"


async def test_reservation_is_kept_on_the_context(make_limiter) -> None:
    limiter = make_limiter({"default": {"tokens_per_minute": 10_000}})
    c = ctx()
    res = await limiter.reserve(c)
    assert isinstance(res, Reservation)
    assert c.state["limits"] is res
    assert (res.prompt_tokens, res.completion_tokens) == (PROMPT, COMPLETION)


async def test_keys_are_per_key_unless_shared(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"requests_per_minute": 2}}})
    ok1, _ = await burst(limiter, [ctx(key_id="k1") for _ in range(5)])
    ok2, _ = await burst(limiter, [ctx(key_id="k2") for _ in range(5)])
    assert (ok1, ok2) == (2, 2)
    shared = make_limiter({"keys": {"bots": {"requests_per_minute": 2, "scope": "shared"}}})
    ok, _ = await burst(shared, [ctx(key_id=k, name="bots") for k in ("k1", "k2", "k3", "k4")])
    assert ok == 2


async def test_a_key_rule_may_name_the_key_id(make_limiter) -> None:
    limiter = make_limiter({"keys": {"k9": {"requests_per_minute": 1}}})
    assert isinstance(await try_reserve(limiter, ctx(key_id="k9", name="other")), Reservation)
    assert isinstance(await try_reserve(limiter, ctx(key_id="k9", name="other")), RateLimited)
    assert await limiter.reserve(ctx(key_id="k1")) is None  # no rule applies


async def test_roles_are_shared_by_their_keys(make_limiter) -> None:
    limiter = make_limiter({"roles": {"developer": {"requests_per_minute": 3}}})
    ok, denied = await burst(limiter, [ctx(key_id=f"k{i}") for i in range(10)])
    assert ok == 3
    assert "role 'developer'" in denied[0].message
    assert await limiter.reserve(ctx(role="production")) is None


async def test_roles_per_caller(make_limiter) -> None:
    limiter = make_limiter(
        {"roles": {"developer": {"requests_per_minute": 1, "scope": "per_caller"}}}
    )
    ok, denied = await burst(limiter, [ctx(key_id=f"k{i % 3}") for i in range(9)])
    assert ok == 3
    assert "role 'developer' (for key 'ci-bot')" in denied[0].message


async def test_default_applies_per_caller_and_to_anonymous(make_limiter) -> None:
    limiter = make_limiter({"default": {"requests_per_minute": 2}})
    anon, denied = await burst(limiter, [ctx(key_id=None) for _ in range(5)])
    keyed, _ = await burst(limiter, [ctx(key_id="k1") for _ in range(5)])
    assert (anon, keyed) == (2, 2)
    assert "anonymous callers" in denied[0].message


async def test_model_rules_match_a_target_id_or_model(make_limiter) -> None:
    limiter = make_limiter({"models": {"gpt-4o": {"requests_per_minute": 1}}})
    assert isinstance(await try_reserve(limiter, ctx(model="openai-gpt4o")), Reservation)
    err = await try_reserve(limiter, ctx(model="gpt-4o"))
    assert isinstance(err, RateLimited)
    assert "model 'gpt-4o'" in err.message


async def test_every_rule_must_pass_and_a_denial_reserves_nothing(make_limiter) -> None:
    mistral = Target(id="m", provider="mistral", model="mistral-large-latest", base_url="x")
    limiter = make_limiter(
        {
            "keys": {"ci-bot": {"requests_per_minute": 3}},
            "models": {"gpt-4o": {"requests_per_minute": 1}},
        }
    )
    assert isinstance(await try_reserve(limiter, ctx()), Reservation)
    assert isinstance(await try_reserve(limiter, ctx()), RateLimited)  # the model's limit
    other = dict(model="mistral-large-latest", targets=(mistral,))
    assert isinstance(await try_reserve(limiter, ctx(**other)), Reservation)
    assert isinstance(await try_reserve(limiter, ctx(**other)), Reservation)
    err = await try_reserve(limiter, ctx(**other))
    assert isinstance(err, RateLimited) and "key 'ci-bot'" in err.message


async def test_tpm_reserves_the_estimate_and_refunds_the_difference(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"tokens_per_minute": 1000}}})
    first = ctx(max_tokens=300)  # 306 tokens reserved
    results = [await try_reserve(limiter, c) for c in (first, ctx(max_tokens=300))]
    assert all(isinstance(r, Reservation) for r in results)
    assert isinstance(await try_reserve(limiter, ctx(max_tokens=300)), Reservation)  # 918
    err = await try_reserve(limiter, ctx(max_tokens=300))
    assert isinstance(err, RateLimited)
    assert "1000 tokens per minute" in err.message and "306" in err.message
    # The first request used 16 tokens, not 306: 290 come back.
    await limiter.reconcile(answered(first, 6, 10))
    assert "limits" not in first.state
    assert isinstance(await try_reserve(limiter, ctx(max_tokens=300)), Reservation)  # 934
    assert isinstance(await try_reserve(limiter, ctx(max_tokens=300)), RateLimited)


async def test_usage_above_the_estimate_is_charged(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"tokens_per_minute": 1000}}})
    c = ctx(max_tokens=100)
    await limiter.reserve(c)
    await limiter.reconcile(answered(c, 500, 400))  # 900 real tokens
    assert isinstance(await try_reserve(limiter, ctx(max_tokens=94)), Reservation)  # 1000
    assert isinstance(await try_reserve(limiter, ctx(max_tokens=1)), RateLimited)


async def test_upstream_failure_refunds_everything(make_limiter) -> None:
    limiter = make_limiter(
        {"keys": {"ci-bot": {"requests_per_minute": 2, "tokens_per_minute": 10_000}}}
    )
    failed = ctx()
    await limiter.reserve(failed)
    await limiter.reserve(ctx())
    assert isinstance(await try_reserve(limiter, ctx()), RateLimited)
    failed.status, failed.error = 502, "upstream_unreachable"  # no attempt answered
    await limiter.reconcile(failed)
    assert isinstance(await try_reserve(limiter, ctx()), Reservation)


async def test_an_answer_without_usage_keeps_the_reservation(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"tokens_per_minute": 300}}})
    c = ctx(max_tokens=200)
    await limiter.reserve(c)
    answered(c, 0, 0).usage = None  # a stream without include_usage
    await limiter.reconcile(c)
    assert isinstance(await try_reserve(limiter, ctx(max_tokens=200)), RateLimited)


async def test_a_request_bigger_than_the_limit_is_refused_outright(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"tokens_per_minute": 500}}})
    err = await try_reserve(limiter, ctx(max_tokens=1000))
    assert isinstance(err, RateLimited)
    assert err.headers["x-should-retry"] == "false"
    assert "Lower max_tokens" in err.message


async def test_budget_holds_under_a_burst(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"budget": {"usd": 0.01, "period": "day"}}}})
    ok, denied = await burst(limiter, [ctx() for _ in range(50)])
    assert ok == (10_000_000 // EST_COST_NANO) == 9
    err = denied[0]
    assert err.code == "budget_exceeded"
    assert err.headers["x-should-retry"] == "false"
    _, end = Period("day").at(limiter.clock())
    assert int(err.headers["retry-after"]) == pytest.approx(end - limiter.clock(), abs=1)
    assert "daily budget of $0.01" in err.message and "resets at" in err.message


async def test_budget_reconciles_to_the_real_cost(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"budget": {"usd": 0.01}}}})
    contexts = [ctx() for _ in range(9)]
    for c in contexts:
        await limiter.reserve(c)
    assert isinstance(await try_reserve(limiter, ctx()), RateLimited)
    for c in contexts:
        await limiter.reconcile(answered(c, 6, 10))  # $0.000115 each
    ok, _ = await burst(limiter, [ctx() for _ in range(20)])
    spent = 9 * round((6 * 0.0025 + 10 * 0.01) / 1000 * NANO)
    assert ok == (10_000_000 - spent) // EST_COST_NANO == 8


async def test_monthly_budget_and_target_price(make_limiter) -> None:
    cheap = priced_target("cheap", "house-model", 0.001, 0.001)
    limiter = make_limiter({"roles": {"developer": {"budget": {"usd": 1.0, "period": "month"}}}})
    # 1006 tokens at $0.001/1K = $0.001006 per request: 994 fit in $1.
    contexts = [ctx(model="house-model", targets=(cheap,), max_tokens=1000) for _ in range(1000)]
    ok, denied = await burst(limiter, contexts)
    assert ok == 994
    assert "monthly budget of $1.00" in denied[0].message


async def test_unknown_price_counts_zero_and_warns_once(make_limiter, caplog) -> None:
    mystery = Target(id="mystery", provider="openai", model="mystery-1", base_url="x")
    limiter = make_limiter({"keys": {"ci-bot": {"budget": {"usd": 0.0001}}}})
    with caplog.at_level(logging.WARNING, logger="keeptrusts.limits"):
        ok, _ = await burst(limiter, [ctx(model="mystery-1", targets=(mystery,)) for _ in range(5)])
    assert ok == 5
    warnings = [r for r in caplog.records if "no price for model 'mystery-1'" in r.getMessage()]
    assert len(warnings) == 1


async def test_configured_prices_win(make_limiter) -> None:
    limiter = make_limiter(
        {
            "prices": {"gpt-4o": {"input": 1.0, "output": 1.0}},  # $0.106 per request
            "keys": {"ci-bot": {"budget": {"usd": 0.5}}},
        }
    )
    ok, _ = await burst(limiter, [ctx() for _ in range(10)])
    assert ok == 4


async def test_sliding_window_with_an_injected_clock(make_limiter, clock) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"requests_per_minute": 60}}})
    ok, _ = await burst(limiter, [ctx() for _ in range(60)])
    assert ok == 60
    clock.advance(30)
    ok, denied = await burst(limiter, [ctx() for _ in range(5)])
    assert ok == 0
    assert denied[0].headers["retry-after"] == "31"
    clock.advance(30)  # a new window: the previous one still weighs fully
    ok, denied = await burst(limiter, [ctx() for _ in range(5)])
    assert ok == 0
    assert denied[0].headers["retry-after"] == "1"
    clock.advance(30)  # half of the previous window left: 30 of 60 are free
    ok, _ = await burst(limiter, [ctx() for _ in range(100)])
    assert ok == 30
    clock.advance(90)  # two windows later nothing remains
    ok, _ = await burst(limiter, [ctx() for _ in range(100)])
    assert ok == 60


async def test_a_denial_is_an_audit_event(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"requests_per_minute": 0}}})
    c = ctx()
    c.client_auth = "Bearer kt_gk_supersecretvalue"
    err = await try_reserve(limiter, c)
    assert isinstance(err, RateLimited)
    assert "supersecret" not in err.message
    assert "key 'ci-bot' allows no requests" in err.message
    c.status, c.error = err.status, err.code
    event = build_event(c, Pack("t", "1"))
    assert event["verdict"] == "block"
    assert event["policy"] == "limits"
    assert event["reason_code"] == "rate_limit_exceeded"
    assert event["status"] == 429


async def test_settle_reconciles_in_the_background(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"requests_per_minute": 1}}})
    c = ctx()
    await limiter.reserve(c)
    c.status = 503
    limiter.settle(c)
    limiter.settle(c)  # idempotent
    assert "limits" not in c.state
    if limiter._pending:
        import asyncio

        await asyncio.gather(*limiter._pending)
    assert isinstance(await try_reserve(limiter, ctx()), Reservation)


async def test_embeddings_reserve_no_completion_tokens(make_limiter) -> None:
    limiter = make_limiter({"default": {"tokens_per_minute": 100}})
    c = ctx(endpoint="embeddings", max_tokens=None)
    c.body = {"model": "gpt-4o", "input": ["a" * 40, "b" * 40]}
    res = await limiter.reserve(c)
    assert res is not None and res.completion_tokens == 0 and res.prompt_tokens == 20


async def test_reload_changes_rules_and_keeps_counters(make_limiter) -> None:
    limiter = make_limiter({"keys": {"ci-bot": {"requests_per_minute": 2}}})
    ok, _ = await burst(limiter, [ctx() for _ in range(2)])
    assert ok == 2
    prefix = limiter.limits["key_prefix"]
    same = await Limiter.reload(
        limiter, {"keys": {"ci-bot": {"requests_per_minute": 3}}, "key_prefix": prefix}
    )
    assert same is limiter
    ok, _ = await burst(limiter, [ctx() for _ in range(5)])
    assert ok == 1  # two of three already used before the reload
    assert await Limiter.reload(limiter, {"prices": {}}) is None
    limiter.settle(ctx())  # a closed limiter ignores late settles
