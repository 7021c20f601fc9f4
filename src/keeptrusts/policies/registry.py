"""Policy registry: the only place that maps a policy name to its class."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keeptrusts.policies.base import Policy

POLICIES: dict[str, type[Policy]] = {}

# Importing these modules registers the built-in policies.
_BUILTIN_MODULES: tuple[str, ...] = (
    "keeptrusts.policies.audit_logger",
    "keeptrusts.policies.dlp_filter",
    "keeptrusts.policies.rbac",
    "keeptrusts.policies.prompt_injection",
    "keeptrusts.policies.pii_detector",
)

# Policy kinds of the Keeptrusts catalog. A chain naming one that is not implemented here
# refuses to start rather than pass requests unchecked.
CATALOG = (
    "data-routing-policy", "prompt-injection", "pii-detector", "hipaa-phi-detector", "rbac",
    "agent-firewall", "audit-logger", "cjis-mode", "dlp-filter", "safety-filter",
    "student-privacy", "case-privacy", "itar-ear-filter", "entity-list-filter",
    "dual-use-filter", "embedding-detector", "language-validator", "bot-detector",
    "external-moderation", "content-extractor", "quality-scorer", "human-oversight",
    "citation-verifier", "flagged-review", "financial-compliance", "healthcare-compliance",
)  # fmt: skip
_loaded = False


def register(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Class decorator: register a policy class under its config name."""

    def deco(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        # KEEPTRUSTS_POLICY_MODULES: comma-separated modules of your own policies, each
        # registering itself with @register like the built-ins.
        extra = os.environ.get("KEEPTRUSTS_POLICY_MODULES", "")
        for module in (*_BUILTIN_MODULES, *filter(None, extra.split(","))):
            importlib.import_module(module.strip())
        _loaded = True


def get(name: str) -> type[Policy] | None:
    _load_builtins()
    return POLICIES.get(name)


def implemented() -> list[str]:
    _load_builtins()
    return sorted(POLICIES)
