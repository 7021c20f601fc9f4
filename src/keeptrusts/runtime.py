"""The running gateway: everything built from one config, in one object, no module globals.

``Gateway.build`` compiles the config into a router and a chain; ``start`` opens the pooled
upstream connections and the audit sink; ``close`` drains them in reverse order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from keeptrusts import __version__
from keeptrusts.audit.event import build_event, decide_verdict, iso_utc, reload_event
from keeptrusts.audit.sink import AuditSink, AuditUnavailable, open_sink
from keeptrusts.config.load import Problem, load_config
from keeptrusts.config.model import GatewayConfig
from keeptrusts.context import RequestContext
from keeptrusts.identity.auth import Authenticator
from keeptrusts.identity.keys import open_key_store
from keeptrusts.limits import Limiter
from keeptrusts.policies import registry as policy_registry
from keeptrusts.policies.base import PolicyEnv
from keeptrusts.policies.chain import Chain
from keeptrusts.providers.http1 import HttpClient
from keeptrusts.routing.router import Router
from keeptrusts.server.metrics import Metrics
from keeptrusts.tracing import Tracing

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
DEFAULT_RETENTION_DAYS = 365
# Strict durability: how long a response may wait for its audit commit before a 503.
STRICT_COMMIT_TIMEOUT = 5.0


class NotImplementedPolicy(Exception):
    """A chain names a policy this version cannot run; the gateway refuses to start."""


@dataclass(slots=True)
class Settings:
    state_dir: Path
    fail_mode: str = "block"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_connections: int = 1000
    admin_token: str | None = None
    redis_url: str | None = None
    # PostgreSQL for audit events and keys shared by a fleet; None: SQLite in the state dir.
    database_url: str | None = None
    instance_id: str | None = None
    # OpenTelemetry exporter (otlp, console, jsonl:PATH); None disables tracing.
    otel: str | None = None
    # Worker processes serving this config (``kt gateway run --workers``); > 1 forbids
    # in-process limit counters (each worker would count alone).
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Generation:
    """What one config compiles to. A request keeps the generation it started with, so a
    reload never changes the rules under a request in flight."""

    config: GatewayConfig
    chain: Chain
    router: Router | None = None


class Gateway:
    def __init__(self, config: GatewayConfig, settings: Settings) -> None:
        self.settings = settings
        self.started = time.time()
        self.requests_processed = 0
        self.http: HttpClient | None = None
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kt-policy")
        self.env = PolicyEnv(state_dir=settings.state_dir, executor=self.executor)
        self.gen = Generation(config, build_chain(config, self.env, fail_mode=settings.fail_mode))
        self.reloads: list[dict[str, Any]] = []
        self._reload_lock = asyncio.Lock()
        self.keys = open_key_store(settings.state_dir, database_url=settings.database_url)
        self.auth = Authenticator(self.keys)
        self.audit: AuditSink | None = None
        self.audit_settings: dict[str, Any] = dict(config.policy.get("audit-logger", {}))
        self.metrics = Metrics()
        self.limits = Limiter.from_config(config.limits, settings.redis_url)
        self.tracing = Tracing(settings.otel) if settings.otel else None
        # Called after every reload with (who, ok); the ``--workers`` mode fans reloads out.
        self.on_reload: Callable[[str, bool], None] | None = None

    async def start(self) -> None:
        self.http = HttpClient(limit=self.settings.max_connections, keepalive=60.0)
        self.gen = replace(self.gen, router=Router(self.config, self.http))
        self.metrics.watch(
            "keeptrusts_circuit_breaker_state",
            "Circuit breaker state per target (1 for the current state)",
            lambda: self.router.breaker_states() if self.router else {},
        )
        if self.limits is not None:
            await self.limits.start()

        if self.audit is None:
            self.audit = await asyncio.to_thread(
                open_sink,
                self.settings.state_dir,
                retention_days=self.audit_settings.get("retention_days", DEFAULT_RETENTION_DAYS),
                database_url=self.settings.database_url,
                instance_id=self.settings.instance_id,
            )
        # A worker process (--workers > 1) is given its sink (a RemoteSink) before start.
        self.metrics.watch(
            "keeptrusts_audit_queue_depth",
            "Audit events waiting to be written",
            lambda: self.audit.queue_depth if self.audit else 0,
        )

    @property
    def config(self) -> GatewayConfig:
        return self.gen.config

    @property
    def chain(self) -> Chain:
        return self.gen.chain

    @property
    def router(self) -> Router:
        assert self.gen.router is not None, "the gateway has not started"
        return self.gen.router

    async def reload(self, *, who: str) -> tuple[bool, list[Problem]]:
        """Re-read the config files; swap to the new config only if it is valid.

        Requests in flight finish on the generation they started with. The change (or the
        refusal) is written to the audit log with the old and new pack and who asked.
        """
        async with self._reload_lock:
            old = self.gen
            built, problems = await asyncio.get_running_loop().run_in_executor(
                None, self._build, old.config.sources
            )
            ok = built is not None
            if built is not None:
                config, chain = built
                self.gen = Generation(config, chain, Router(config, self.http))
                self.limits = await Limiter.reload(
                    self.limits, config.limits, self.settings.redis_url
                )
                self.audit_settings = dict(config.policy.get("audit-logger", {}))
            entry = {
                "timestamp": iso_utc(time.time()),
                "who": who,
                "ok": ok,
                "previous_pack": str(old.config.pack),
                "pack": str(self.config.pack),
                "problems": [str(p) for p in problems],
            }
            self.reloads.append(entry)
            if self.audit is not None:
                self.audit.submit(reload_event(entry))
            if self.on_reload is not None:
                self.on_reload(who, ok)
            return ok, problems

    def _build(self, sources: tuple[str, ...]) -> tuple[Any, list[Problem]]:
        config, problems = load_config(sources)
        if config is None:
            return None, problems
        try:
            chain = build_chain(config, self.env, fail_mode=self.settings.fail_mode)
        except (NotImplementedPolicy, ValueError) as exc:
            return None, [*problems, Problem("error", sources[-1], 0, "policies", str(exc))]
        refusal = workers_limits_problem(config, self.settings)
        if refusal is not None:
            return None, [*problems, Problem("error", sources[-1], 0, "limits", refusal)]
        return (config, chain), problems

    async def close(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()
        for policy in reversed(self.chain.policies):
            await policy.close()
        if self.audit is not None:
            # In-flight requests have finished (runner cleanup waits for them): flush all.
            await self.audit.aclose()
        if self.http is not None:
            await self.http.close()
        if self.limits is not None:
            await self.limits.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.keys.close()

    def begin(self, ctx: RequestContext) -> None:
        """Count a request as in flight; ``finish`` ends it."""
        self.metrics.in_flight += 1
        ctx.state["in_flight"] = True

    def overloaded(self) -> bool:
        """True while the audit log is too far behind to accept more requests."""
        return self.audit is not None and self.audit.overloaded

    def authenticate(self, ctx: RequestContext) -> None:
        """Resolve who is calling from a gateway key; 401 for an unknown or revoked key."""
        self.auth.authenticate(ctx)

    async def record(self, ctx: RequestContext) -> bool:
        """Write the request's audit event; False if strict durability could not commit it."""
        event = self._event_once(ctx)
        if event is None or self.audit is None:
            return True
        if self.audit_settings.get("durability") != "strict":
            self.audit.submit(event)
            return True
        try:
            await self.audit.commit(event, timeout=STRICT_COMMIT_TIMEOUT)
        except AuditUnavailable:
            return False
        return True

    def finish(self, ctx: RequestContext) -> None:
        """End a request: metrics, and its audit event if nothing recorded it yet."""
        if not ctx.state.pop("in_flight", False):
            return
        self.requests_processed += 1
        self.metrics.in_flight -= 1
        if self.limits is not None:
            self.limits.settle(ctx)
        verdict = decide_verdict(ctx)[0]
        self.metrics.observe(ctx, verdict)
        if self.tracing is not None:
            self.tracing.end(ctx, verdict)
        event = self._event_once(ctx)
        if event is not None and self.audit is not None:
            self.audit.submit(event)

    def _event_once(self, ctx: RequestContext) -> dict[str, Any] | None:
        if ctx.state.get("recorded"):
            return None
        ctx.state["recorded"] = True
        if not self.audit_settings.get("log_all_access", True):
            verdict, _, _ = decide_verdict(ctx)
            if verdict == "allow":
                return None
        gen = ctx.gen or self.gen
        return build_event(ctx, gen.config.pack)

    def health(self) -> dict[str, Any]:
        providers = {t.id: t.status() for t in self.config.targets}
        router = self.gen.router
        breakers = router.breaker_states() if router is not None else {}
        # A target serves traffic if its key is set and its circuit is not open.
        serving = sum(t.available and breakers.get(t.id) != "open" for t in self.config.targets)
        if serving == 0:
            status = "unhealthy"
        elif serving < len(self.config.targets):
            status = "degraded"
        else:
            status = "healthy"
        audit = self.audit.health() if self.audit is not None else None
        if audit is not None and audit["status"] == "degraded" and status == "healthy":
            status = "degraded"  # serving, but audit events are spooling to local disk
        return {
            "status": status,
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started, 3),
            "pack": str(self.config.pack),
            "providers": providers,
            "circuit_breakers": breakers,
            "policies_loaded": list(self.config.chain),
            "requests_processed": self.requests_processed,
            "audit": audit,
        }


def workers_limits_problem(config: GatewayConfig, settings: Settings) -> str | None:
    """Why ``config`` cannot run on ``settings.workers`` > 1 processes, or None.

    Limit counters kept in process would be per worker: N workers would let N times the
    configured rate and budget through. Several workers need the counters in Redis.
    """
    if settings.workers <= 1:
        return None
    limiter = Limiter.from_config(config.limits, settings.redis_url)
    if limiter is None or limiter.backend.kind == "redis":
        return None
    n = settings.workers
    return (
        f"--workers {n} with a `limits` section keeping its counters in process: each "
        f"worker would count alone, letting {n}x the configured limits through. Keep the "
        "counters in Redis (--redis-url, KEEPTRUSTS_REDIS_URL or limits.redis_url), or run "
        "with --workers 1"
    )


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
