"""Config loading: both seed dialects, layering, strict validation with file/line/path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keeptrusts.config.load import load_config, parse_provider
from tests.conftest import EXAMPLES, FAKE_KEYS


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def lint(*files: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "keeptrusts.cli.main", "policy", "lint"]
    for f in files:
        args += ["--file", str(f)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


MINIMAL = """\
pack:
  name: t
  version: 1.0.0
  enabled: true
providers:
  targets:
    - id: a
      provider: openai:chat:gpt-4o
policies:
  chain: []
"""


@pytest.mark.parametrize(
    ("value", "provider", "model"),
    [
        ("openai:chat:gpt-4o", "openai", "gpt-4o"),
        ("openai:chat:ft:gpt-4.1-mini:org:abc", "openai", "ft:gpt-4.1-mini:org:abc"),
        (
            "anthropic:messages:claude-3-5-sonnet-20241022",
            "anthropic",
            "claude-3-5-sonnet-20241022",
        ),
        ("openai/gpt-4o", "openai", "gpt-4o"),
        ("openai:gpt-4o", "openai", "gpt-4o"),
        ("openai:chat", "openai", None),
        ("openai", "openai", None),
    ],
)
def test_provider_spellings(value: str, provider: str, model: str | None) -> None:
    ref = parse_provider(value)
    assert (ref.provider, ref.model) == (provider, model)


@pytest.mark.parametrize("name", ["pattern-a-policy-config.yaml", "pattern-b-policy-config.yaml"])
def test_seed_configs_load_unchanged(name: str) -> None:
    config, problems = load_config([EXAMPLES / name], env=FAKE_KEYS)
    assert config is not None, [str(p) for p in problems]
    assert all(t.available for t in config.targets)
    models = {t.model for t in config.targets}
    assert "gpt-4o" in models and "claude-3-5-sonnet-20241022" in models


def test_canonical_shape_with_model_field(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "c.yaml",
        MINIMAL.replace("openai:chat:gpt-4o", "openai\n      model: gpt-4o-mini"),
    )
    config, _ = load_config([f], env={})
    assert config is not None
    assert config.targets[0].model == "gpt-4o-mini"
    assert config.targets[0].base_url == "https://api.openai.com/v1"


def test_overlay_merges_targets_by_id(tmp_path: Path) -> None:
    overlay = write(
        tmp_path,
        "o.yaml",
        "providers:\n  targets:\n    - id: anthropic-sonnet\n      base_url: http://127.0.0.1:9/\n",
    )
    config, problems = load_config(
        [EXAMPLES / "pattern-b-policy-config.yaml", overlay], env=FAKE_KEYS
    )
    assert config is not None, problems
    by_id = {t.id: t for t in config.targets}
    assert len(by_id) == 4
    assert by_id["anthropic-sonnet"].base_url == "http://127.0.0.1:9/"
    assert by_id["anthropic-sonnet"].model == "claude-3-5-sonnet-20241022"
    assert by_id["openai-gpt4o"].base_url == "https://api.openai.com/v1"


def test_unknown_key_names_file_line_path_and_suggests(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "bad.yaml",
        MINIMAL.replace("      provider:", "      providr: x\n      provider:"),
    )
    config, problems = load_config([f], env={})
    assert config is None
    err = next(p for p in problems if p.severity == "error")
    assert err.file == str(f) and err.line == 8
    assert err.path == "providers.targets[0].providr"
    assert "did you mean 'provider'" in err.message


def test_wrong_type_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path, "bad.yaml", MINIMAL.replace("enabled: true", "enabled: maybe"))
    config, problems = load_config([f], env={})
    assert config is None
    assert any(p.path == "pack.enabled" and p.line == 4 for p in problems)


def test_unknown_policy_and_provider_suggest(tmp_path: Path) -> None:
    text = MINIMAL.replace("openai:chat:gpt-4o", "opnai:chat:gpt-4o").replace(
        "chain: []", "chain: [pii-detectr]"
    )
    config, problems = load_config([write(tmp_path, "bad.yaml", text)], env={})
    assert config is None
    msgs = [str(p) for p in problems]
    assert any("unknown provider 'opnai'" in m and "did you mean 'openai'" in m for m in msgs)
    assert any("unknown policy 'pii-detectr'" in m and "'pii-detector'" in m for m in msgs)


def test_missing_env_is_warning_and_target_unavailable(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "provider: openai:chat:gpt-4o",
        "provider: openai:chat:gpt-4o\n      secret_key_ref:\n        env: KT_TEST_UNSET_VAR",
    )
    config, problems = load_config([write(tmp_path, "c.yaml", text)], env={})
    assert config is not None
    assert config.targets[0].unavailable == "environment variable KT_TEST_UNSET_VAR is not set"
    assert any(p.severity == "warning" and "KT_TEST_UNSET_VAR" in p.message for p in problems)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    config, problems = load_config([write(tmp_path, "bad.yaml", "pack:\n  name: [x\n")], env={})
    assert config is None and problems[0].line >= 2


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    config, problems = load_config([write(tmp_path, "d.yaml", MINIMAL + "pack: {}\n")], env={})
    assert config is None and "duplicate key 'pack'" in problems[0].message


def test_lint_exit_codes(tmp_path: Path) -> None:
    ok = write(tmp_path, "ok.yaml", MINIMAL)
    assert lint(ok).returncode == 0
    bad = write(tmp_path, "bad.yaml", MINIMAL.replace("name: t", "nme: t"))
    res = lint(bad)
    assert res.returncode == 1
    assert f"{bad}:2" in res.stderr and "pack.nme" in res.stderr
    warn = write(
        tmp_path, "warn.yaml", MINIMAL + "policy:\n  audit-logger:\n    retention_days: 30\n"
    )
    res = lint(warn)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "not in policies.chain" in res.stdout


@pytest.mark.parametrize("name", ["pattern-a-policy-config.yaml", "pattern-b-policy-config.yaml"])
def test_seed_configs_pass_lint(name: str) -> None:
    res = lint(EXAMPLES / name)
    assert res.returncode == 0, res.stdout + res.stderr
