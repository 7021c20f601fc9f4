"""``kt migrate litellm``: real-world shaped LiteLLM configs convert, lint, and route the same.

Each sample in tests/data/litellm/ is converted, linted as a file (exit 0, or 2 with only
the warnings a migration is expected to produce), loaded as a gateway config, and each
client-facing model name LiteLLM served is resolved by the gateway's router to the same
deployments, fallbacks last.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from keeptrusts.config.load import AnyEnv, load_config
from keeptrusts.migrate import convert_litellm, gateway_routes, load_litellm, route_mismatches
from tests.cli.helpers import kt

DATA = Path(__file__).resolve().parent.parent / "data" / "litellm"
SAMPLES = sorted(DATA.glob("*.yaml"))
# Warnings a migration may cause on purpose: a model group named like its targets' model
# (fallback groups), and cost routing with unpriced fallbacks (they are tried last).
EXPECTED_WARNINGS = re.compile(
    r"model group '[^']+' also names target|strategy 'cost' but .* has no price"
)
# Client-facing names LiteLLM serves in each sample -> the target ids the gateway must try,
# in order. Names whose deployments cannot be carried over must not resolve.
ROUTES: dict[str, dict[str, list[str]]] = {
    "multi_provider": {
        "gpt-4o": ["openai-gpt4o-primary", "gpt-4o-openai"],
        "gpt-4": ["openai-gpt4o-primary", "gpt-4o-openai"],
        "gpt-4o-mini": ["gpt-4o-mini-openai"],
        "claude-sonnet": ["claude-sonnet-anthropic"],
        "claude": ["claude-sonnet-anthropic"],
        "llama-70b": ["llama-70b-groq"],
        "mistral-large": ["mistral-large-mistral"],
        "local-llama": ["local-llama-ollama"],
        "qwen-coder": ["qwen-coder-hosted-vllm"],
    },
    "fallbacks_retries": {
        "gpt-4o": ["gpt-4o-openai", "gpt-4o-openai-2", "claude-sonnet-anthropic"],
        "claude-sonnet": ["claude-sonnet-anthropic", "llama-70b-groq"],
        "llama-70b": ["llama-70b-groq"],
        "fast": ["fast-groq"],
        "llama-3.1-8b-instant": ["llama-3-1-8b-instant-openai"],
    },
    "guardrails": {
        "gpt-4o": ["gpt-4o-openai"],
        "claude-sonnet": ["claude-sonnet-anthropic"],
        "o3-mini": ["o3-mini-openai"],
    },
    "legacy_callbacks": {
        "llama-3.1-70b": ["llama-3-1-70b-together-ai", "llama-3-1-70b-fireworks-ai"],
        "deepseek-chat": ["deepseek-chat-deepseek"],
        "gemini-flash": ["gemini-flash-gemini"],
        "company-llm": ["company-llm-openai"],
    },
    "cost_routing": {
        "chat": ["chat-openai", "chat-groq", "backup-mistral"],
        "reasoning": ["reasoning-openai", "reasoning-deepseek", "backup-mistral"],
        "backup": ["backup-mistral"],
    },
}
NOT_SERVED = {
    "multi_provider": ["text-embedding-3-small"],
    "fallbacks_retries": [],
    "guardrails": [],
    "legacy_callbacks": ["claude-bedrock", "*"],
    "cost_routing": [],
}
# Literal secrets written into the samples: none may reach the output or the report.
SECRETS = [
    "sk-proj-LITERALSECRET0123456789abcdefABCDEF",
    "sk-1234-LITERALMASTERKEY",
    "tgp-LITERALENVSECRET-999",
]


def litellm_names(doc: dict[str, Any]) -> set[str]:
    names = {str(m["model_name"]) for m in doc.get("model_list") or []}
    aliases = (doc.get("router_settings") or {}).get("model_group_alias") or {}
    return names | {str(a) for a in aliases}


def migrate(capsys: pytest.CaptureFixture[str], sample: Path, out: Path) -> tuple[str, dict]:
    code, stdout, stderr = kt(capsys, "migrate", "litellm", str(sample), "-o", str(out))
    assert code == 0, stdout + stderr
    return stdout, yaml.safe_load(out.read_text())


def test_there_are_enough_samples() -> None:
    assert {p.stem for p in SAMPLES} == set(ROUTES)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_round_trip(sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "policy-config.yaml"
    stdout, _ = migrate(capsys, sample, out)
    assert "routing:" not in stdout  # the converter's own route check found no mismatch

    code, lint_out, lint_err = kt(capsys, "policy", "lint", "--file", str(out))
    assert code in (0, 2), lint_out + lint_err
    warnings = [ln for ln in lint_out.splitlines() if ": warning: " in ln]
    assert all(EXPECTED_WARNINGS.search(w) for w in warnings), warnings
    assert (code == 2) == bool(warnings)

    config, problems = load_config([out], env=AnyEnv())
    assert config is not None, problems
    routes = gateway_routes(config)
    expected = ROUTES[sample.stem]
    for name, ids in expected.items():
        assert routes.get(name) == ids, name
    served = litellm_names(load_litellm(sample)) - set(NOT_SERVED[sample.stem])
    assert served == set(expected)
    for name in NOT_SERVED[sample.stem]:
        assert name not in routes
    conversion = convert_litellm(load_litellm(sample))
    assert conversion.routes == expected
    assert route_mismatches(conversion.routes, config) == []


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_no_literal_secret_is_copied(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.yaml"
    stdout, _ = migrate(capsys, sample, out)
    text = out.read_text() + stdout
    for secret in SECRETS:
        assert secret not in text
    # And no absolute path of the machine that ran the migration.
    assert str(DATA) not in out.read_text()


def test_keys_become_env_refs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stdout, cfg = migrate(capsys, DATA / "guardrails.yaml", tmp_path / "out.yaml")
    targets = {t["id"]: t for t in cfg["providers"]["targets"]}
    # A literal key becomes a reference to the provider's variable, and the report says so.
    assert targets["gpt-4o-openai"]["secret_key_ref"] == {"env": "OPENAI_API_KEY"}
    assert "api_key" not in targets["gpt-4o-openai"]
    assert re.search(r"literal key was not copied.*\$OPENAI_API_KEY", stdout)
    assert targets["claude-sonnet-anthropic"]["secret_key_ref"] == {"env": "ANTHROPIC_API_KEY"}
    # A bare `o3-mini` is OpenAI's, and LiteLLM reads OPENAI_API_KEY for it.
    assert targets["o3-mini-openai"]["provider"] == "openai"
    assert targets["o3-mini-openai"]["secret_key_ref"] == {"env": "OPENAI_API_KEY"}

    _, cfg = migrate(capsys, DATA / "multi_provider.yaml", tmp_path / "multi.yaml")
    targets = {t["id"]: t for t in cfg["providers"]["targets"]}
    assert targets["gpt-4o-openai"]["secret_key_ref"] == {"env": "OPENAI_API_KEY_PROJECT_B"}
    assert targets["gpt-4o-openai"]["headers"] == {"OpenAI-Organization": "org-research"}
    assert "secret_key_ref" not in targets["local-llama-ollama"]  # local: no key
    assert targets["local-llama-ollama"]["base_url"] == "http://localhost:11434/v1"
    assert targets["qwen-coder-hosted-vllm"]["max_concurrency"] == 8

    _, cfg = migrate(capsys, DATA / "legacy_callbacks.yaml", tmp_path / "legacy.yaml")
    targets = {t["id"]: t for t in cfg["providers"]["targets"]}
    # credential_list entries are resolved; their env refs carry over.
    assert targets["llama-3-1-70b-together-ai"]["secret_key_ref"] == {"env": "TOGETHERAI_API_KEY"}
    assert targets["llama-3-1-70b-together-ai"]["base_url"] == "https://api.together.xyz/v1"
    # Header values that may be secrets are not copied.
    assert targets["company-llm-openai"]["headers"] == {"X-Team": "platform"}


def test_routing_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stdout, cfg = migrate(capsys, DATA / "fallbacks_retries.yaml", tmp_path / "out.yaml")
    providers = cfg["providers"]
    assert providers["routing"] == {
        "strategy": "lowest_latency",
        "window_seconds": 300,
        "max_retries": 2,
        "retry_on": ["timeout", "rate_limit", "5xx", "connection"],
        "backoff": {"initial_ms": 1000},
    }
    assert providers["circuit_breaker"] == {"failure_threshold": 4, "cooldown_seconds": 60}
    first = providers["targets"][0]
    assert first["timeouts"] == {"connect": 10, "first_byte": 10, "total": 45}
    assert first["max_concurrency"] == 50
    assert providers["targets"][1]["timeouts"]["total"] == 30  # router_settings.timeout
    groups = {g["name"]: g for g in providers["model_groups"]}
    # Fallbacks stay last in a weighted group (weight 0), whatever the primaries' strategy.
    assert groups["gpt-4o"]["strategy"] == "weighted"
    assert groups["gpt-4o"]["models"][-1] == {"target": "claude-sonnet-anthropic", "weight": 0}
    assert groups["claude-sonnet"]["strategy"] == "ordered"
    for line in (
        "Azure OpenAI",
        "context_window_fallbacks",
        "ContentPolicyViolationErrorRetries",
        "redis_host",
        "enable_pre_call_checks",
        "allowed_fails 3 per minute",
    ):
        assert line in stdout, line

    _, cfg = migrate(capsys, DATA / "multi_provider.yaml", tmp_path / "multi.yaml")
    weights = {t["id"]: t.get("weight") for t in cfg["providers"]["targets"]}
    assert cfg["providers"]["routing"] == {"strategy": "weighted"}
    assert weights["openai-gpt4o-primary"] == 600 and weights["gpt-4o-openai"] == 300

    stdout, cfg = migrate(capsys, DATA / "legacy_callbacks.yaml", tmp_path / "legacy.yaml")
    assert cfg["providers"]["routing"]["strategy"] == "least_busy"
    assert "usage-based-routing-v2 becomes least_busy" in stdout

    _, cfg = migrate(capsys, DATA / "cost_routing.yaml", tmp_path / "cost.yaml")
    assert cfg["providers"]["routing"] == {"strategy": "cost"}
    prices = {t["id"]: t.get("price") for t in cfg["providers"]["targets"]}
    assert prices["chat-openai"] == {"input_per_1k": 0.00015, "output_per_1k": 0.0006}
    assert prices["reasoning-openai"] == {"input_per_1k": 0.0011, "output_per_1k": 0.0044}
    groups = {g["name"]: g for g in cfg["providers"]["model_groups"]}
    assert groups["reasoning"]["strategy"] == "ordered"  # LiteLLM `order`
    assert "strategy" not in groups["chat"]  # cost routing keeps unpriced fallbacks last


def test_guardrails_become_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stdout, cfg = migrate(capsys, DATA / "guardrails.yaml", tmp_path / "out.yaml")
    assert cfg["policies"]["chain"] == [
        "prompt-injection",
        "pii-detector",
        "dlp-filter",
        "rbac",
        "audit-logger",
    ]
    policy = cfg["policy"]
    assert policy["prompt-injection"] == {"threshold": 0.8, "action": "block"}
    pii = policy["pii-detector"]
    assert pii["action"] == "redact"
    assert pii["entities"] == ["PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER"]
    assert pii["restore"] is True and pii["apply_to"] == ["input", "output"]
    dlp = {p["name"]: p for p in policy["dlp-filter"]["patterns"]}
    # BLOCK entities next to MASK ones are blocked by regex; custom regexes keep their action.
    assert dlp["us_ssn"]["action"] == "block" and dlp["credit_card"]["action"] == "block"
    assert dlp["account_number"] == {
        "name": "account_number",
        "regex": "ACCT-[0-9]{8}",
        "action": "redact",
    }
    assert dlp["aws_access_key"]["action"] == "block"
    assert dlp["keyword-internal-only"]["action"] == "redact"
    assert "employee_id" not in dlp  # lookbehind: not RE2
    assert policy["dlp-filter"]["blocked_terms"] == ["Project Nightingale"]
    roles = policy["rbac"]["roles"]
    assert roles["general"]["allowed_models"] == ["gpt-4o"]
    assert roles["analysts"]["allowed_models"] == ["gpt-4o", "claude-sonnet", "o3-mini"]
    assert policy["audit-logger"]["retention_days"] == 90
    for line in (
        "LOCATION: not detected",
        "passport_us",
        "employee_id",
        "guardrail 'aporia'",
        "custom_guardrail.myCustomHandler",
        "Lakera Guard is replaced",
        "kt keys create --role",
    ):
        assert line in stdout, line

    _, cfg = migrate(capsys, DATA / "legacy_callbacks.yaml", tmp_path / "legacy.yaml")
    assert cfg["policies"]["chain"] == [
        "prompt-injection",
        "pii-detector",
        "dlp-filter",
        "audit-logger",
    ]
    pii = cfg["policy"]["pii-detector"]
    assert set(pii["entities"]) >= {"PERSON", "EMAIL_ADDRESS", "US_SSN"} and pii["restore"]
    dlp = cfg["policy"]["dlp-filter"]
    assert dlp["blocked_terms"] == ["hate speech", "credit card dump"]
    assert {p["name"] for p in dlp["patterns"]} >= {"openai-key", "private-key"}

    _, cfg = migrate(capsys, DATA / "multi_provider.yaml", tmp_path / "multi.yaml")
    assert cfg["policies"]["chain"] == ["audit-logger"]


def test_stdout_json_and_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = str(DATA / "cost_routing.yaml")
    code, out, err = kt(capsys, "migrate", "litellm", sample)
    assert code == 0
    assert yaml.safe_load(out)["pack"]["name"] == "litellm-migrated"
    assert "lint: " in err and "lint: " not in out

    code, out, _ = kt(capsys, "migrate", "litellm", sample, "--json")
    doc = json.loads(out)
    assert doc["ok"] is True and doc["route_mismatches"] == []
    assert doc["routes"]["backup"] == ["backup-mistral"]
    assert doc["config"]["providers"]["routing"]["strategy"] == "cost"

    target = tmp_path / "exists.yaml"
    target.write_text("keep me")
    code, _, err = kt(capsys, "migrate", "litellm", sample, "-o", str(target))
    assert code == 1 and "--force" in err and target.read_text() == "keep me"
    code, _, _ = kt(capsys, "migrate", "litellm", sample, "-o", str(target), "--force")
    assert code == 0 and "providers:" in target.read_text()

    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    code, _, err = kt(capsys, "migrate", "litellm", str(bad))
    assert code == 1 and "error:" in err
    code, _, err = kt(capsys, "migrate", "litellm", str(tmp_path / "missing.yaml"))
    assert code == 1


@pytest.mark.parametrize(
    ("raw", "strategy"),
    [
        ("simple-shuffle", "weighted"),
        ("least-busy", "least_busy"),
        ("latency-based-routing", "lowest_latency"),
        ("usage-based-routing", "least_busy"),
        ("cost-based-routing", "cost"),
    ],
)
def test_strategy_names(raw: str, strategy: str) -> None:
    doc = {
        "model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o"}},
            {"model_name": "m", "litellm_params": {"model": "groq/llama-3.1-8b-instant"}},
        ],
        "router_settings": {"routing_strategy": raw},
    }
    conv = convert_litellm(doc)
    assert conv.config["providers"]["routing"]["strategy"] == strategy
    assert conv.routes == {"m": ["m-openai", "m-groq"]}


def test_fallback_retries_raised_to_reach_fallbacks() -> None:
    doc = {
        "model_list": [
            {"model_name": "a", "litellm_params": {"model": "openai/gpt-4o"}},
            {"model_name": "a", "litellm_params": {"model": "openai/gpt-4o-mini"}},
            {"model_name": "b", "litellm_params": {"model": "anthropic/claude-3-5-haiku-latest"}},
        ],
        "router_settings": {"num_retries": 0, "fallbacks": [{"a": ["b"]}]},
    }
    conv = convert_litellm(doc)
    assert conv.config["providers"]["routing"]["max_retries"] == 2
    assert any("raised to 2" in n.message for n in conv.report.notes)


def test_v1_guardrails_and_include(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {"model_name": "fast", "litellm_params": {"model": "groq/llama-3.1-8b-instant"}}
                ]
            }
        )
    )
    main_file = tmp_path / "config.yaml"
    main_file.write_text(
        yaml.safe_dump(
            {
                "include": ["models.yaml"],
                "model_list": [
                    {
                        "model_name": "gpt-4o",
                        "litellm_params": {"model": "openai/gpt-4o"},
                    }
                ],
                "litellm_settings": {
                    "output_parse_pii": True,
                    "guardrails": [
                        {
                            "prompt_injection": {
                                "callbacks": ["lakera_prompt_injection"],
                                "default_on": True,
                            }
                        },
                        {"pii_masking": {"callbacks": ["presidio"], "default_on": False}},
                    ],
                },
            }
        )
    )
    conv = convert_litellm(load_litellm(main_file))
    assert conv.routes == {"gpt-4o": ["gpt-4o-openai"], "fast": ["fast-groq"]}
    assert conv.config["policies"]["chain"] == ["prompt-injection", "pii-detector", "audit-logger"]
    assert conv.config["policy"]["pii-detector"]["restore"] is True
    messages = [str(n) for n in conv.report.notes]
    assert any("pii_masking" in m and "every request" in m for m in messages)
    assert any("Lakera Guard is replaced" in m for m in messages)
