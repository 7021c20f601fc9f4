"""Check a migrated config: does each client-facing model name reach the same deployments?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keeptrusts.config.model import GatewayConfig


def offline_router(config: GatewayConfig) -> Any:
    """The gateway's router for ``config``, built without a connection pool.

    Only name resolution is used offline (``model_names``, ``resolve``): no request is
    made, so the HTTP session is never touched.
    """
    from keeptrusts.routing.router import Router

    return Router(config, None)  # type: ignore[arg-type]


def gateway_routes(config: GatewayConfig) -> dict[str, list[str]]:
    """Model name -> target ids, as the gateway's router resolves them."""
    router = offline_router(config)
    return {name: [t.id for t in router.resolve(name).targets] for name in router.model_names()}


def route_mismatches(expected: Mapping[str, Sequence[str]], config: GatewayConfig) -> list[str]:
    """One line per expected name the gateway would route differently; empty when all match."""
    actual = gateway_routes(config)
    out = []
    for name, ids in expected.items():
        got = actual.get(name)
        if got is None:
            out.append(f"{name!r} is not served by the migrated config")
        elif list(got) != list(ids):
            out.append(f"{name!r} reaches {', '.join(got)} instead of {', '.join(ids)}")
    return out
