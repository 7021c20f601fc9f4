"""The ``limits`` section compiled into rules, and the counters that apply to a request.

A request is checked against every rule that matches it: its key's (by key name or key
id), its role's, its model's, and ``default``. Each rule has up to three counters
(requests per minute, tokens per minute, a USD budget per UTC day or month). A rule is
``shared`` (one counter for everything it matches) or ``per_caller`` (one per caller);
``keys`` and ``default`` are per caller unless told otherwise, ``roles`` and ``models``
shared.

The caller is the gateway key (its id), or a user id set from identity headers the rbac
policy was told to trust, or ``anonymous``. Client headers the gateway does not trust
never pick a counter, so a client cannot escape a limit by varying a header.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keeptrusts.context import RequestContext
from keeptrusts.limits.prices import NANO
from keeptrusts.limits.windows import Period

REQUESTS = "requests"
TOKENS = "tokens"
BUDGET = "budget"

_DEFAULT_SCOPE = {"key": "per_caller", "role": "shared", "model": "shared", "default": "per_caller"}


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str  # key | role | model | default
    entry: str  # the name under limits.<kind>s ("" for default)
    requests_per_minute: int | None
    tokens_per_minute: int | None
    budget_usd: float | None
    budget_period: str
    default_max_tokens: int | None
    per_caller: bool


@dataclass(frozen=True, slots=True)
class Bucket:
    """One counter: what it counts, its limit, and its storage key (less the window)."""

    metric: str  # requests | tokens | budget
    limit: int  # requests, tokens or nano-USD
    key: str
    rule: Rule
    who: str  # "key 'ci-bot'", "role 'developer'", ... for messages
    period: Period | None = None  # budgets only


@dataclass(frozen=True, slots=True)
class Plan:
    buckets: tuple[Bucket, ...]
    default_max_tokens: int
    # False when only request counters apply: no token estimate is needed.
    needs_tokens: bool = True


def compile_rules(limits: Mapping[str, Any]) -> dict[str, Any]:
    def rule(kind: str, entry: str, block: Mapping[str, Any] | None) -> Rule | None:
        if not block:
            return None
        budget = block.get("budget") or {}
        scope = block.get("scope") or _DEFAULT_SCOPE[kind]
        return Rule(
            kind=kind,
            entry=entry,
            requests_per_minute=block.get("requests_per_minute"),
            tokens_per_minute=block.get("tokens_per_minute"),
            budget_usd=budget.get("usd"),
            budget_period=budget.get("period") or "day",
            default_max_tokens=block.get("default_max_tokens"),
            per_caller=scope == "per_caller",
        )

    def table(kind: str) -> dict[str, Rule]:
        out = {}
        for name, block in (limits.get(kind + "s") or {}).items():
            r = rule(kind, str(name), block)
            if r is not None:
                out[str(name)] = r
        return out

    return {
        "key": table("key"),
        "role": table("role"),
        "model": table("model"),
        "default": rule("default", "", limits.get("default")),
    }


def caller_of(ctx: RequestContext) -> tuple[str, str]:
    """The caller's counter id and how messages name it."""
    ident = ctx.identity
    if ident.key_id:
        return f"key:{ident.key_id}", f"key {ident.name or ident.key_id!r}"
    if ident.user_id and ident.source == "header":
        uid = ident.user_id
        if len(uid) > 128:
            uid = hashlib.sha256(uid.encode()).hexdigest()
        return f"user:{uid}", f"user {ident.user_id[:128]!r}"
    return "anonymous", "anonymous callers"


class Planner:
    """Which counters apply to a request; cached per (caller, key, role, model, route)."""

    def __init__(self, limits: Mapping[str, Any], prefix: str) -> None:
        self.rules = compile_rules(limits)
        self.prefix = prefix
        self.default_max_tokens = int(limits.get("default_max_tokens", 1024))
        self.empty = not (
            self.rules["key"] or self.rules["role"] or self.rules["model"] or self.rules["default"]
        )
        self._cache: dict[tuple, Plan] = {}
        self._periods: dict[str, Period] = {}

    def plan(self, ctx: RequestContext) -> Plan:
        ident = ctx.identity
        route = ctx.route
        targets = getattr(route, "targets", None)
        cache_key = (ident.key_id, ident.name, ident.role, ident.user_id, ident.source, ctx.model)
        if targets is not None:
            cache_key += tuple(t.id for t in targets)
        plan = self._cache.get(cache_key)
        if plan is None:
            if len(self._cache) >= 10_000:
                self._cache.clear()
            plan = self._cache[cache_key] = self._build(ctx, targets)
        return plan

    def _build(self, ctx: RequestContext, targets: Any) -> Plan:
        ident = ctx.identity
        matched: list[Rule] = []
        keys = self.rules["key"]
        if ident.key_id:
            r = keys.get(ident.key_id) or (keys.get(ident.name) if ident.name else None)
            if r is not None:
                matched.append(r)
        if ident.role and ident.role in self.rules["role"]:
            matched.append(self.rules["role"][ident.role])
        model_rule = self._model_rule(ctx.model, targets)
        if model_rule is not None:
            matched.append(model_rule)
        if self.rules["default"] is not None:
            matched.append(self.rules["default"])
        caller, caller_text = caller_of(ctx)
        buckets: list[Bucket] = []
        for r in matched:
            buckets.extend(self._buckets(r, caller, caller_text))
        default_max = next(
            (r.default_max_tokens for r in matched if r.default_max_tokens is not None),
            self.default_max_tokens,
        )
        needs_tokens = any(b.metric != REQUESTS for b in buckets)
        return Plan(tuple(buckets), default_max, needs_tokens)

    def _model_rule(self, model: str, targets: Any) -> Rule | None:
        models = self.rules["model"]
        if not models:
            return None
        if model in models:
            return models[model]
        for t in targets or ():
            for name in (t.model, t.id):
                if name and name in models:
                    return models[name]
        return None

    def _buckets(self, r: Rule, caller: str, caller_text: str) -> list[Bucket]:
        base = f"{self.prefix}{r.kind}:{r.entry}:" if r.entry else f"{self.prefix}{r.kind}:"
        if r.per_caller:
            base += f"{caller}:"
        who = _describe(r, caller_text)
        out = []
        if r.requests_per_minute is not None:
            out.append(Bucket(REQUESTS, r.requests_per_minute, base + "rpm", r, who))
        if r.tokens_per_minute is not None:
            out.append(Bucket(TOKENS, r.tokens_per_minute, base + "tpm", r, who))
        if r.budget_usd is not None:
            period = self._periods.setdefault(r.budget_period, Period(r.budget_period))
            limit = round(r.budget_usd * NANO)
            out.append(Bucket(BUDGET, limit, base + "usd", r, who, period))
        return out


def _describe(r: Rule, caller_text: str) -> str:
    if r.kind == "default":
        return f"the default limit for {caller_text}"
    what = f"{r.kind} {r.entry!r}"
    if r.per_caller and r.kind != "key":
        return f"{what} (for {caller_text})"
    return what
