"""LiteLLM settings with no equivalent here, as report lines that say why (or what instead).

``general_settings`` is mostly about LiteLLM's database, keys and alerting; the few
``litellm_settings`` and ``router_settings`` keys the converter maps are listed in
``HANDLED`` and skipped here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keeptrusts.migrate.report import Report

GENERAL: dict[str, tuple[str, str]] = {
    "master_key": (
        "action",
        "not copied; clients authenticate with gateway keys (`kt keys create --role "
        "ROLE`) and the admin API with KEEPTRUSTS_ADMIN_TOKEN or <state_dir>/admin-token",
    ),
    "database_url": (
        "changed",
        "not needed: keys and the audit log are SQLite files in the state dir",
    ),
    "store_model_in_db": ("dropped", "models live only in the policy config here"),
    "store_audit_logs": (
        "changed",
        "every request is recorded in the hash-chained audit log (kt events verify)",
    ),
    "disable_spend_logs": ("dropped", "the audit log cannot be switched off"),
    "background_health_checks": (
        "changed",
        "the circuit breaker takes failing targets out of rotation; `kt doctor` "
        "checks reachability on demand",
    ),
    "health_check_interval": ("dropped", "no background health checks"),
    "max_parallel_requests": (
        "dropped",
        "no proxy-wide cap; providers.routing.max_concurrency caps each target",
    ),
    "global_max_parallel_requests": (
        "dropped",
        "no proxy-wide cap; providers.routing.max_concurrency caps each target",
    ),
    "alerting": ("dropped", "no alerting; watch GET /metrics and the audit log"),
}


def report_general(report: Report, general: Mapping[str, Any]) -> None:
    """One line per ``general_settings`` key (retention is mapped by the converter)."""
    for key in general:
        if key == "maximum_spend_logs_retention_period":
            continue
        kind, message = GENERAL.get(key, ("dropped", "no equivalent"))
        getattr(report, kind)(f"general_settings.{key}", message)


# Keys of litellm_settings/router_settings the converter maps (routing, retries, guardrails).
HANDLED = frozenset({
    "num_retries", "request_timeout", "fallbacks", "default_fallbacks",
    "context_window_fallbacks", "content_policy_fallbacks", "callbacks",
    "success_callback", "failure_callback", "guardrails", "output_parse_pii",
    "presidio_ad_hoc_recognizers", "prompt_injection_params", "banned_keywords_list",
    "timeout", "routing_strategy", "routing_strategy_args", "allowed_fails", "cooldown_time",
    "retry_policy", "model_group_alias", "retry_after", "disable_cooldowns",
})  # fmt: skip
SETTINGS: dict[str, str] = {
    "drop_params": "parameters reach the upstream as the client sent them",
    "cache": "there is no response cache",
    "cache_params": "there is no response cache",
    "max_budget": "there are no spend budgets",
    "budget_duration": "there are no spend budgets",
    "set_verbose": "use `kt gateway run --log-level`",
    "json_logs": "use `kt gateway run --log-level`",
    "turn_off_message_logging": "not needed: the audit log never stores message text",
    "redact_messages_in_exceptions": "not needed: errors never echo message text",
    "redact_user_api_key_info": "not needed: the audit log records key ids, not keys",
}
_KEYS_AND_TEAMS = (
    "keys and teams live in LiteLLM's database; here a gateway key carries a role "
    "(kt keys create --role) and rbac says what each role may use"
)


def report_unmapped(report: Report, settings: Mapping[str, Any], router: Mapping[str, Any]) -> None:
    """One line per ``litellm_settings``/``router_settings`` key the converter did not map."""
    for key in settings:
        if key in HANDLED:
            continue
        if key.startswith(("default_", "upperbound_")):
            report.dropped(f"litellm_settings.{key}", _KEYS_AND_TEAMS)
        else:
            report.dropped(f"litellm_settings.{key}", SETTINGS.get(key, "no equivalent"))
    for key in router:
        if key in HANDLED:
            continue
        if key.startswith("redis_") or key in ("cache_responses", "cache_kwargs"):
            message = "not needed: routing state is kept in the gateway process"
        elif key == "enable_pre_call_checks":
            message = "context-window checks before the call are not done here"
        else:
            message = "no equivalent"
        report.dropped(f"router_settings.{key}", message)
