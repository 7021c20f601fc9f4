"""The running gateway: everything built from one config, in one object, no module globals.

``Gateway.build`` compiles the config into a router and a chain; ``start`` opens the pooled
upstream connections and the audit sink; ``close`` drains them in reverse order.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from keeptrusts import __version__
from keeptrusts.config.model import GatewayConfig
from keeptrusts.context import RequestContext
from keeptrusts.identity.auth import Authenticator
from keeptrusts.identity.keys import KeyStore
from keeptrusts.policies import registry as policy_registry
from keeptrusts.policies.base import PolicyEnv
from keeptrusts.policies.chain import Chain
from keeptrusts.routing.router import Router
from keeptrusts.server.metrics import Metrics

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class NotImplementedPolicy(Exception):
    """A chain names a policy this version cannot run; the gateway refuses to start."""


@dataclass(slots=True)
class Settings:
    state_dir: Path
    fail_mode: str = "block"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_connections: int = 1000
    admin_token: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Gateway:
    def __init__(self, config: GatewayConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.started = time.time()
        self.requests_processed = 0
        self.http: aiohttp.ClientSession | None = None
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kt-policy")
        self.env = PolicyEnv(state_dir=settings.state_dir, executor=self.executor)
        self.chain = build_chain(config, self.env, fail_mode=settings.fail_mode)
        self.keys = KeyStore(settings.state_dir)
        self.auth = Authenticator(self.keys)
        self.router: Router | None = None
        self.audit: Any = None
        self.metrics = Metrics()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections,
            limit_per_host=0,
            keepalive_timeout=60,
            ttl_dns_cache=300,
        )
        self.http = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )
        self.router = Router(self.config, self.http)

    async def close(self) -> None:
        for policy in reversed(self.chain.policies):
            await policy.close()
        if self.http is not None:
            await self.http.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.keys.close()

    def begin(self) -> None:
        """Count a request as in flight; ``finish`` ends it."""
        self.metrics.in_flight.inc()

    def authenticate(self, ctx: RequestContext) -> None:
        """Resolve who is calling from a gateway key; 401 for an unknown or revoked key."""
        self.auth.authenticate(ctx)

    def finish(self, ctx: RequestContext) -> None:
        """Account for a finished request and hand its record to the audit sink."""
        self.requests_processed += 1
        self.metrics.in_flight.dec()
        self.metrics.observe(ctx)
        if self.audit is not None:
            self.audit.submit(ctx)

    def health(self) -> dict[str, Any]:
        providers = {t.id: t.status() for t in self.config.targets}
        available = sum(t.available for t in self.config.targets)
        if available == 0:
            status = "unhealthy"
        elif available < len(self.config.targets):
            status = "degraded"
        else:
            status = "healthy"
        return {
            "status": status,
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started, 3),
            "pack": str(self.config.pack),
            "providers": providers,
            "policies_loaded": list(self.config.chain),
            "requests_processed": self.requests_processed,
        }


def build_chain(config: GatewayConfig, env: PolicyEnv, *, fail_mode: str) -> Chain:
    """Instantiate the chain's policies in order; refuse names this version cannot run."""
    policies = []
    for name in config.chain:
        cls = policy_registry.get(name)
        if cls is None:
            raise NotImplementedPolicy(
                f"policy {name!r} is in policies.chain but is not implemented in this "
                "version; remove it from the chain (requests would otherwise pass unchecked)"
            )
        block = config.policy.get(name, {})
        policies.append(cls(cls.Config.model_validate(dict(block)), env))
    return Chain(policies, fail_mode=fail_mode)
