"""Provider registry: the only place that maps a provider name to its class."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from keeptrusts.providers.base import Provider

PROVIDERS: dict[str, type[Provider]] = {}

# Modules whose import registers built-in providers. Adding a provider means adding a
# module here; nothing else in the gateway names it.
_BUILTIN_MODULES = (
    "keeptrusts.providers.openai",
    "keeptrusts.providers.anthropic",
    "keeptrusts.providers.demo",
)
_loaded = False


def register(*names: str) -> Callable[[type[Provider]], type[Provider]]:
    """Class decorator: register a provider under one or more names."""

    def deco(cls: type[Provider]) -> type[Provider]:
        for name in names:
            PROVIDERS[name] = cls
        return cls

    return deco


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def get(name: str) -> type[Provider]:
    _load_builtins()
    return PROVIDERS[name]


def names() -> list[str]:
    _load_builtins()
    return sorted(PROVIDERS)
