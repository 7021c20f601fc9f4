"""Every routing config shape from the docs maps onto one model; lint explains conflicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeptrusts.config.load import load_config
from keeptrusts.routing.settings import compile_routing, normalize_strategy, parse_duration
from tests.conftest import write_yaml
from tests.routing.util import PACK

DATA = Path(__file__).resolve().parent.parent / "data"
TARGETS = [
    {"id": "openai-a", "provider": "openai:chat:gpt-4o", "api_key": "k", "weight": 3},
    {"id": "anthropic-b", "provider": "anthropic:chat:claude-sonnet-4-5", "api_key": "k"},
]


def load(tmp: Path, providers: dict | None = None, **top):  # type: ignore[no-untyped-def]
    doc = {
        "pack": PACK,
        "policies": {"chain": []},
        "providers": {"targets": TARGETS, **(providers or {})},
        **top,
    }
    return load_config([write_yaml(tmp / "c.yaml", doc)], env={})


def messages(problems) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(p) for p in problems]


def settings_of(config):  # type: ignore[no-untyped-def]
    return compile_routing(config.routing, config.targets)[0]


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("ordered", "ordered"),
        ("single", "ordered"),
        ("round-robin", "round_robin"),
        ("Round_Robin", "round_robin"),
        ("random", "weighted"),
        ("simple-shuffle", "weighted"),
        ("least-busy", "least_busy"),
        ("latency", "lowest_latency"),
        ("latency-based-routing", "lowest_latency"),
        ("cost", "cost"),
        ("cost-based-routing", "cost"),
        ("highest_throughput", None),
    ],
)
def test_strategy_spellings(name: str, canonical: str | None) -> None:
    assert normalize_strategy(name) == canonical


def test_durations() -> None:
    assert [parse_duration(v) for v in (30, "30s", "5m", "1h", "500ms", "x", 0)] == [
        30.0,
        30.0,
        300.0,
        3600.0,
        0.5,
        None,
        None,
    ]


def test_defaults_without_routing_config(tmp_path: Path) -> None:
    config, problems = load(tmp_path)
    assert problems == []
    s = settings_of(config)
    assert s.strategy == "ordered" and s.retry.max_retries is None
    assert s.retry.attempts(2) == 2 and s.retry.attempts(1) == 1  # each target once
    assert s.breaker.enabled and s.breaker.failure_threshold == 5


def test_providers_routing_shape(tmp_path: Path) -> None:
    config, problems = load(
        tmp_path,
        {
            "routing": {
                "strategy": "lowest_latency",
                "max_retries": 3,
                "retry_on": ["rate_limit", "5xx", "timeout"],
                "backoff": {"initial_ms": 50, "max_ms": 400, "jitter": "full"},
                "window_seconds": 120,
                "min_sample_count": 20,
                "max_concurrency": 8,
                "max_queue": 16,
            },
            "circuit_breaker": {
                "failure_threshold": 3,
                "cooldown_seconds": 15,
                "half_open_probes": 2,
            },
        },
    )
    assert problems == []
    s = settings_of(config)
    assert s.strategy == "lowest_latency" and s.latency_window == 120 and s.min_samples == 20
    assert s.retry.max_retries == 3 and s.retry.kinds == {"rate_limit", "server_error", "timeout"}
    assert s.retry.backoff_initial == 0.05 and s.retry.backoff_max == 0.4
    assert (s.max_concurrency, s.max_queue) == (8, 16)
    assert (s.breaker.failure_threshold, s.breaker.cooldown, s.breaker.half_open_probes) == (
        3,
        15,
        2,
    )


def test_docs_fallback_shape(tmp_path: Path) -> None:
    # /docs/cli/multi-provider-fallback
    config, problems = load(
        tmp_path,
        {
            "fallback": {
                "strategy": "round-robin",
                "max_retries": 2,
                "retry_on": ["5xx", "timeout", "rate_limit"],
                "latency_window": "5m",
                "max_latency_ms": 5000,
                "max_cost_per_1k": 0.02,
            }
        },
    )
    assert problems == []
    s = settings_of(config)
    assert s.strategy == "round_robin" and s.retry.max_retries == 2
    assert s.latency_window == 300 and s.max_latency == 5 and s.max_cost_per_1k == 0.02


def test_top_level_provider_fallback_and_routing(tmp_path: Path) -> None:
    # /docs/advanced/fallback-configuration and /docs/advanced/provider-routing
    config, problems = load(
        tmp_path,
        provider_fallback={
            "enabled": True,
            "triggers": ["rate_limit_exceeded", "timeout", "service_unavailable"],
            "max_fallback_attempts": 3,
            "content_policy": "stop",
            "context_window": "abort",
        },
        provider_routing={
            "strategy": "lowest_latency",
            "min_sample_count": 5,
            "window_seconds": 60,
        },
    )
    assert problems == []
    s = settings_of(config)
    assert s.strategy == "lowest_latency" and s.retry.max_retries == 3
    assert s.retry.kinds == {"rate_limit", "timeout"} and s.retry.statuses == {503}


def test_model_groups_by_target_and_by_provider(tmp_path: Path) -> None:
    config, problems = load(
        tmp_path,
        {
            "model_groups": [
                {
                    "name": "smart",
                    "strategy": "weighted",
                    "models": [
                        {"provider": "anthropic", "model": "claude-sonnet-4-5", "weight": 70},
                        {"target": "openai-a", "weight": 30},
                    ],
                },
                {"name": "any", "models": ["openai-a", "anthropic-b"]},
            ]
        },
    )
    assert problems == []
    smart, any_ = settings_of(config).groups
    assert smart.target_ids == ("anthropic-b", "openai-a") and smart.strategy == "weighted"
    assert dict(smart.weights) == {"anthropic-b": 70, "openai-a": 30}
    assert any_.weights["openai-a"] == 3  # the target's own weight when the group sets none


def test_seed_shape_strategy_single(tmp_path: Path) -> None:
    config, problems = load(tmp_path, {"strategy": "single"})
    assert problems == [] and settings_of(config).strategy == "ordered"


@pytest.mark.parametrize(
    ("providers", "top", "expected"),
    [
        (
            {"strategy": "round_robin", "routing": {"strategy": "weighted"}},
            {},
            "strategy is also set at providers.routing.strategy ('weighted'), which wins",
        ),
        (
            {"fallback": {"strategy": "cost"}},
            {"provider_routing": {"strategy": "least_busy"}},
            "provider_routing.strategy ('least_busy'), which wins over 'cost'",
        ),
        (
            {"routing": {"max_retries": 1}, "fallback": {"max_retries": 4}},
            {},
            "max_retries is also set at providers.routing.max_retries (1)",
        ),
        (
            {"fallback": {"retry_on": ["5xx"]}},
            {"provider_fallback": {"triggers": ["timeout"]}},
            "retry_on is also set at providers.fallback.retry_on",
        ),
        (
            {"fallback": {"max_retries": 2}},
            {"provider_fallback": {"enabled": False}},
            "fallback is disabled here, so only the first target of a group is tried",
        ),
        (
            {"circuit_breaker": {"cooldown_seconds": 10, "recovery_timeout": 60}},
            {},
            "recovery_timeout is the tutorial's name for cooldown_seconds",
        ),
        (
            {"strategy": "single", "model_groups": [{"name": "gpt-4o", "models": ["openai-a"]}]},
            {},
            "model group 'gpt-4o' also names target(s) openai-a",
        ),
        (
            {"routing": {"strategy": "cost"}},
            {},
            "strategy 'cost' but no target sets `price`",
        ),
    ],
)
def test_lint_explains_conflicts(tmp_path: Path, providers: dict, top: dict, expected: str) -> None:
    config, problems = load(tmp_path, providers, **top)
    assert config is not None  # conflicts are warnings: the config still runs
    found = [m for m in messages(problems) if expected in m]
    assert found, messages(problems)
    assert all(p.severity == "warning" for p in problems)
    assert all(p.line > 0 for p in problems)  # each points at a line of the file


@pytest.mark.parametrize(
    ("providers", "top", "expected"),
    [
        (
            {"routing": {"retry_on": ["5xx", 400]}},
            {},
            "HTTP 400 is never retried: a 4xx other than 429 is the request's fault",
        ),
        ({"routing": {"retry_on": ["timout"]}}, {}, "did you mean 'timeout'?"),
        ({"routing": {"strategy": "highest_throughput"}}, {}, "unknown routing strategy"),
        ({"fallback": {"strategy": "round-robbin"}}, {}, "did you mean"),
        ({"routing": {"latency_window": "five minutes"}}, {}, "cannot read 'five minutes'"),
        (
            {"model_groups": [{"name": "g", "models": [{"target": "openai-x"}]}]},
            {},
            "unknown target 'openai-x' (did you mean 'openai-a'?)",
        ),
        (
            {"model_groups": [{"name": "g", "models": [{"provider": "groq"}]}]},
            {},
            "no target has provider 'groq'",
        ),
        ({}, {"provider_fallback": {"content_policy": "fallback"}}, "is never retried"),
        ({"routing": {"stratgy": "ordered"}}, {}, "unknown key 'stratgy' (did you mean"),
        ({"routing": {"max_retries": -1}}, {}, "greater than or equal to 0"),
        ({"circuit_breaker": {"failure_threshold": 0}}, {}, "greater than or equal to 1"),
    ],
)
def test_lint_rejects_bad_routing(
    tmp_path: Path, providers: dict, top: dict, expected: str
) -> None:
    config, problems = load(tmp_path, providers, **top)
    assert config is None
    assert any(expected in m for m in messages(problems)), messages(problems)


def test_per_target_fields(tmp_path: Path) -> None:
    targets = [
        {
            **TARGETS[0],
            "price": {"input_per_1k": 0.0025, "output_per_1k": 0.01},
            "max_concurrency": 4,
            "max_queue": 8,
            "queue_timeout": 2.5,
            "timeouts": {"connect": 1, "first_byte": 5, "first_token": 3, "total": 60},
        }
    ]
    doc = {"pack": PACK, "policies": {"chain": []}, "providers": {"targets": targets}}
    config, problems = load_config([write_yaml(tmp_path / "t.yaml", doc)], env={})
    assert problems == []
    t = config.targets[0]
    assert t.price is not None and t.price.output_per_1k == 0.01
    assert (t.max_concurrency, t.max_queue, t.queue_timeout) == (4, 8, 2.5)
    assert t.timeouts.first_token == 3 and t.timeouts.connect == 1


def test_data_files_lint_clean() -> None:
    for path in sorted(DATA.glob("routing-*.yaml")):
        config, problems = load_config(
            [path], env={"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}
        )
        assert config is not None and problems == [], (path.name, messages(problems))
