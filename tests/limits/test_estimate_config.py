"""Token estimates, the memory backend's housekeeping, and the ``limits`` config section."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeptrusts.config.load import load_config
from keeptrusts.limits import ENV_REDIS_URL, Limiter
from keeptrusts.limits.estimate import completion_tokens, prompt_tokens
from keeptrusts.limits.memory import MemoryBackend
from keeptrusts.limits.redis_backend import RedisBackend
from keeptrusts.limits.windows import Period, window_retry_after
from tests.conftest import FAKE_KEYS

DATA = Path(__file__).resolve().parent.parent / "data"


def test_prompt_tokens_count_text_slots() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "x" * 40},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "y" * 80},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + "A" * 10**5},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "lookup", "arguments": '{"q": "abcdef"}'}}],
            },
        ]
    }
    # 40 + 80 + 6 + 15 chars -> 36 tokens; 3 messages x 4; one image 765.
    assert prompt_tokens(body) == 36 + 12 + 765
    assert prompt_tokens({"input": ["abcd", "efgh"]}) == 2
    assert prompt_tokens({"input": [[1, 2, 3], [4]]}) == 4  # token arrays


def test_completion_tokens() -> None:
    assert completion_tokens({"max_tokens": 50}, 1024) == 50
    assert completion_tokens({"max_completion_tokens": 70, "max_tokens": 50}, 1024) == 70
    assert completion_tokens({}, 1024) == 1024
    assert completion_tokens({"max_tokens": 10, "n": 3}, 1024) == 30
    assert completion_tokens({"max_tokens": True}, 7) == 7


def test_window_retry_after() -> None:
    # Full now, 30 s into the window: the rollover, then 1 s of the old count fading.
    assert window_retry_after(60, 0, 30, 60, 1) == pytest.approx(31)
    assert window_retry_after(0, 60, 0, 60, 1) == pytest.approx(1)  # the previous one fades
    # 10 + 40 * w + 1 <= 50 once w <= 39/40, i.e. 1.5 s into the window.
    assert window_retry_after(10, 40, 0, 50, 1) == pytest.approx(1.5)
    assert window_retry_after(0, 0, 0, 5, 6) == 60  # never fits: a full window


def test_periods_roll_over_at_utc_boundaries() -> None:
    day, month = Period("day"), Period("month")
    t = 1_767_225_599.5  # 2025-12-31T23:59:59.5Z
    assert day.at(t) == ("d20251231", 1_767_225_600.0)
    assert month.at(t) == ("m202512", 1_767_225_600.0)
    assert day.at(t + 1)[0] == "d20260101"
    assert month.at(t + 1) == ("m202601", 1_769_904_000.0)


def test_memory_counters_are_swept() -> None:
    backend = MemoryBackend()
    assert backend.reserve([("a:1", None, 0.0, 10, 1, 30.0)], 1000.0) is None
    assert len(backend) == 1
    backend.reserve([("b:1", None, 0.0, 10, 1, 30.0)], 1100.0)
    assert len(backend) == 1  # a:1 expired and was swept


def test_config_section_loads(tmp_path: Path) -> None:
    config, problems = load_config([DATA / "limits-basic.yaml"], env=FAKE_KEYS)
    assert config is not None, problems
    limits = config.limits
    assert limits is not None
    assert limits["keys"]["ci-bot"]["requests_per_minute"] == 60
    assert limits["roles"]["developer"]["budget"] == {"usd": 5.0, "period": "day"}
    assert limits["on_backend_error"] == "closed"
    limiter = Limiter.from_config(limits, None, env={})
    assert isinstance(limiter.backend, MemoryBackend) and limiter.active


def test_no_section_no_limiter() -> None:
    config, problems = load_config([DATA / "routing-groups.yaml"], env=FAKE_KEYS)
    assert config is not None, problems
    assert config.limits is None
    assert Limiter.from_config(config.limits, "redis://127.0.0.1:1/0") is None


def test_config_errors_name_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (DATA / "limits-basic.yaml").read_text().replace("requests_per_minute: 60", "rpm: 60")
    )
    config, problems = load_config([bad], env=FAKE_KEYS)
    assert config is None
    assert any(
        p.path == "limits.keys.ci-bot.rpm" and "unknown key 'rpm'" in p.message for p in problems
    ), problems
    bad.write_text(
        (DATA / "limits-basic.yaml")
        .read_text()
        .replace("on_backend_error: closed", "on_backend_error: maybe")
    )
    config, problems = load_config([bad], env=FAKE_KEYS)
    assert config is None and any(p.path == "limits.on_backend_error" for p in problems)


def test_redis_url_precedence() -> None:
    limits = {"default": {"requests_per_minute": 1}, "redis_url": "redis://config:6379/0"}
    env = {ENV_REDIS_URL: "redis://env:6379/0"}
    assert Limiter.from_config(limits, "redis://cli:6379/0", env=env).backend.url == (
        "redis://cli:6379/0"
    )
    assert Limiter.from_config(limits, None, env=env).backend.url == "redis://env:6379/0"
    backend = Limiter.from_config(limits, None, env={}).backend
    assert isinstance(backend, RedisBackend) and backend.url == "redis://config:6379/0"


def test_a_model_limit_for_no_model_is_a_warning(tmp_path: Path) -> None:
    cfg = tmp_path / "warn.yaml"
    cfg.write_text(
        (DATA / "limits-basic.yaml")
        .read_text()
        .replace("    gpt-4o:\n      tokens", "    gpt-5:\n      tokens")
    )
    config, problems = load_config([cfg], env=FAKE_KEYS)
    assert config is not None
    warnings = [p for p in problems if p.path == "limits.models.gpt-5"]
    assert len(warnings) == 1 and warnings[0].severity == "warning"
    assert warnings[0].line > 0
    _, problems = load_config([DATA / "limits-basic.yaml"], env=FAKE_KEYS)
    assert not [p for p in problems if p.path.startswith("limits")]


def test_a_section_without_rules_builds_no_limiter() -> None:
    assert Limiter.from_config({"prices": {"x": {"input": 1, "output": 1}}}, env={}) is None
    assert Limiter.from_config({"default": {"requests_per_minute": 5}}, env={}) is not None
