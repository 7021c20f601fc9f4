"""One internal routing model compiled from every config shape the docs use.

The docs spell routing five ways: ``providers.strategy``, ``providers.routing``,
``providers.fallback``, the top-level ``provider_routing`` and ``provider_fallback``
(plus ``providers.circuit_breaker`` and ``providers.model_groups``). ``config.schema``
checks their types; :func:`compile_routing` maps them onto :class:`RoutingSettings` and
explains every conflict as a lint problem. Where two places set the same thing the more
specific one wins, in this order::

    providers.routing > provider_routing > providers.fallback > provider_fallback
    > providers.strategy

Everything here is pure: no I/O, no clock, so lint and the router compile the same way.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from keeptrusts.config.model import Target

Severity = Literal["error", "warning"]
Loc = tuple[Any, ...]

STRATEGIES = ("ordered", "round_robin", "weighted", "least_busy", "lowest_latency", "cost")
_STRATEGY_ALIASES = {
    "single": "ordered",
    "fallback": "ordered",
    "failover": "ordered",
    "priority": "ordered",
    "roundrobin": "round_robin",
    "random": "weighted",
    "shuffle": "weighted",
    "simple_shuffle": "weighted",
    "weighted_random": "weighted",
    "load_balance": "weighted",
    "loadbalance": "weighted",
    "least_connections": "least_busy",
    "least_requests": "least_busy",
    "latency": "lowest_latency",
    "latency_based": "lowest_latency",
    "latency_based_routing": "lowest_latency",
    "fastest": "lowest_latency",
    "lowest_cost": "cost",
    "cost_based": "cost",
    "cost_based_routing": "cost",
    "cheapest": "cost",
}

# What a retry may be triggered by. 4xx other than 429 never are: they are the request's
# fault and would fail the same way on every target.
RETRY_KINDS = ("rate_limit", "server_error", "timeout", "connection")
_RETRY_ALIASES: dict[str, tuple[str, ...]] = {
    "rate_limit": ("rate_limit",),
    "rate_limited": ("rate_limit",),
    "rate_limit_exceeded": ("rate_limit",),
    "too_many_requests": ("rate_limit",),
    "5xx": ("server_error",),
    "server_error": ("server_error",),
    "server_errors": ("server_error",),
    "upstream_error": ("server_error",),
    "timeout": ("timeout",),
    "timeouts": ("timeout",),
    "upstream_timeout": ("timeout",),
    "connection": ("connection",),
    "connection_error": ("connection",),
    "connection_errors": ("connection",),
    "network": ("connection",),
    "unreachable": ("connection",),
    "upstream_unreachable": ("connection",),
}
# Names for one status family rather than a kind.
_RETRY_STATUS_ALIASES: dict[str, tuple[int, ...]] = {
    "service_unavailable": (503,),
    "overloaded": (503, 529),
    "bad_gateway": (502,),
    "gateway_timeout": (504,),
    "internal_server_error": (500,),
}

DEFAULT_STRATEGY = "ordered"
DEFAULT_BACKOFF_INITIAL = 0.25  # seconds before the first retry of the same target
DEFAULT_BACKOFF_MAX = 8.0
DEFAULT_BACKOFF_MULTIPLIER = 2.0
DEFAULT_JITTER = "equal"
DEFAULT_MAX_RETRY_WAIT = 10.0  # longest single wait (backoff or Retry-After) before a retry
DEFAULT_MAX_COOLDOWN = 300.0  # a Retry-After longer than this is capped
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_BREAKER_COOLDOWN = 30.0
DEFAULT_HALF_OPEN_PROBES = 1
DEFAULT_LATENCY_WINDOW = 300.0
DEFAULT_MIN_SAMPLES = 5
DEFAULT_QUEUE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    # None: try each target of the group once (a group of one is not retried).
    max_retries: int | None = None
    kinds: frozenset[str] = frozenset(RETRY_KINDS)
    statuses: frozenset[int] = frozenset()
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL
    backoff_max: float = DEFAULT_BACKOFF_MAX
    backoff_multiplier: float = DEFAULT_BACKOFF_MULTIPLIER
    jitter: str = DEFAULT_JITTER
    max_wait: float = DEFAULT_MAX_RETRY_WAIT
    max_cooldown: float = DEFAULT_MAX_COOLDOWN

    def attempts(self, group_size: int) -> int:
        """How many upstream attempts one request may make over a group of this size."""
        retries = max(group_size - 1, 0) if self.max_retries is None else self.max_retries
        return 1 + retries


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    enabled: bool = True
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cooldown: float = DEFAULT_BREAKER_COOLDOWN
    half_open_probes: int = DEFAULT_HALF_OPEN_PROBES


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A named model group: the model name clients send and the targets that serve it."""

    name: str
    target_ids: tuple[str, ...]
    weights: Mapping[str, float] = field(default_factory=dict)
    strategy: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    strategy: str = DEFAULT_STRATEGY
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerSettings = BreakerSettings()
    latency_window: float = DEFAULT_LATENCY_WINDOW
    min_samples: int = DEFAULT_MIN_SAMPLES
    # Cap on time to first byte/token for every target (providers.fallback.max_latency_ms).
    max_latency: float | None = None
    max_cost_per_1k: float | None = None
    max_concurrency: int | None = None
    max_queue: int | None = None
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT
    groups: tuple[GroupSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Issue:
    severity: Severity
    loc: Loc
    message: str


def normalize_strategy(name: str) -> str | None:
    """Return the canonical strategy for any spelling the docs or LiteLLM use, or None."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    if key in STRATEGIES:
        return key
    return _STRATEGY_ALIASES.get(key)


def parse_duration(value: Any) -> float | None:
    """Seconds from ``30``, ``"30s"``, ``"500ms"``, ``"5m"`` or ``"1h"``; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
    if not m:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2) or "s"]
    seconds = float(m.group(1)) * scale
    return seconds if seconds > 0 else None


class _Compiler:
    def __init__(self, sections: Mapping[str, Any], targets: Sequence[Target]) -> None:
        self.s = sections
        self.targets = list(targets)
        self.issues: list[Issue] = []

    def add(self, severity: Severity, loc: Loc, message: str) -> None:
        self.issues.append(Issue(severity, loc, message))

    def block(self, name: str) -> Mapping[str, Any]:
        value = self.s.get(name)
        return value if isinstance(value, Mapping) else {}

    def pick(
        self,
        key: str,
        places: Sequence[tuple[Loc, Mapping[str, Any], str]],
        canon: Callable[[Loc, Any], Any] | None = None,
    ) -> tuple[Loc, Any] | None:
        """The first place that sets ``key`` and its value (``canon``-ical form if given);
        warn at every later place whose value differs."""
        found = []
        for loc, block, name in places:
            if block.get(name) is None:
                continue
            raw = block[name]
            value = canon(loc, raw) if canon is not None else raw
            if value is not None:
                found.append((loc, raw, value))
        if not found:
            return None
        win_loc, win_raw, win = found[0]
        for loc, raw, value in found[1:]:
            if value != win:
                self.add(
                    "warning",
                    loc,
                    f"{key} is also set at {_dotted(win_loc)} ({win_raw!r}), which wins over "
                    f"{raw!r} here; set it in one place",
                )
        return win_loc, win

    # --- sections -------------------------------------------------------------------

    def strategy(self) -> str:
        places = [
            (("providers", "routing", "strategy"), self.block("routing"), "strategy"),
            (("provider_routing", "strategy"), self.block("provider_routing"), "strategy"),
            (("providers", "fallback", "strategy"), self.block("fallback"), "strategy"),
            (("providers", "strategy"), self.s, "strategy"),
        ]
        picked = self.pick("strategy", places, self._strategy_name)
        if picked is None:
            return DEFAULT_STRATEGY
        loc, value = picked
        if loc == ("providers", "strategy") and str(self.s["strategy"]).lower() == "single":
            self._check_single()
        return value

    def _strategy_name(self, loc: Loc, raw: Any) -> str | None:
        name = normalize_strategy(str(raw))
        if name is None:
            hint = difflib.get_close_matches(str(raw), [*STRATEGIES, *_STRATEGY_ALIASES], n=1)
            self.add(
                "error",
                loc,
                f"unknown routing strategy {raw!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; this gateway supports {', '.join(STRATEGIES)}",
            )
        return name

    def _check_single(self) -> None:
        names: dict[str, int] = {}
        for t in self.targets:
            for n in t.names():
                names[n] = names.get(n, 0) + 1
        shared = sorted(n for n, c in names.items() if c > 1)
        if shared:
            self.add(
                "warning",
                ("providers", "strategy"),
                f"strategy 'single' means one target per model, but {', '.join(shared)} "
                "is served by several targets; they are tried in list order ('ordered')",
            )

    def retry(self) -> RetryPolicy:
        routing, fallback = self.block("routing"), self.block("fallback")
        pf = self.block("provider_fallback")
        places = [
            (("providers", "routing", "max_retries"), routing, "max_retries"),
            (("providers", "fallback", "max_retries"), fallback, "max_retries"),
            (("provider_fallback", "max_fallback_attempts"), pf, "max_fallback_attempts"),
        ]
        picked = self.pick("max_retries", places)
        max_retries = None if picked is None else int(picked[1])
        for loc, block in (
            (("providers", "fallback", "enabled"), fallback),
            (("provider_fallback", "enabled"), pf),
        ):
            if block.get("enabled") is False:
                if max_retries:
                    self.add(
                        "warning",
                        loc,
                        f"fallback is disabled here, so only the first target of a group is "
                        f"tried; max_retries {max_retries} set elsewhere is ignored",
                    )
                max_retries = 0
        kinds, statuses = self._retry_on()
        backoff = routing.get("backoff") or {}
        b_initial = backoff.get("initial_ms")
        b_max = backoff.get("max_ms")
        if b_initial is not None and b_max is not None and b_max < b_initial:
            self.add(
                "warning",
                ("providers", "routing", "backoff", "max_ms"),
                f"max_ms {b_max} is below initial_ms {b_initial}; every retry waits max_ms",
            )
        wait = routing.get("max_retry_wait")
        return RetryPolicy(
            max_retries=max_retries,
            kinds=kinds,
            statuses=statuses,
            backoff_initial=DEFAULT_BACKOFF_INITIAL if b_initial is None else b_initial / 1000,
            backoff_max=DEFAULT_BACKOFF_MAX if b_max is None else b_max / 1000,
            backoff_multiplier=backoff.get("multiplier") or DEFAULT_BACKOFF_MULTIPLIER,
            jitter=backoff.get("jitter") or DEFAULT_JITTER,
            max_wait=DEFAULT_MAX_RETRY_WAIT if wait is None else float(wait),
        )

    def _retry_on(self) -> tuple[frozenset[str], frozenset[int]]:
        places = [
            (("providers", "routing", "retry_on"), self.block("routing"), "retry_on"),
            (("providers", "fallback", "retry_on"), self.block("fallback"), "retry_on"),
            (("provider_fallback", "triggers"), self.block("provider_fallback"), "triggers"),
        ]
        picked = self.pick("retry_on", places, self._parse_retry_on)
        if picked is None:
            return frozenset(RETRY_KINDS), frozenset()
        return picked[1]

    def _parse_retry_on(self, loc: Loc, items: Sequence[Any]) -> tuple[frozenset, frozenset]:
        kinds: set[str] = set()
        statuses: set[int] = set()
        for i, item in enumerate(items):
            key = str(item).strip().lower().replace("-", "_").replace(" ", "_")
            if key.isdigit():
                code = int(key)
                if code == 429:
                    kinds.add("rate_limit")
                elif 500 <= code <= 599:
                    statuses.add(code)
                elif 400 <= code <= 499:
                    self.add(
                        "error",
                        (*loc, i),
                        f"HTTP {code} is never retried: a 4xx other than 429 is the request's "
                        "fault and fails the same way on every target",
                    )
                else:
                    self.add("error", (*loc, i), f"{code} is not an HTTP error status")
            elif key in _RETRY_ALIASES:
                kinds.update(_RETRY_ALIASES[key])
            elif key in _RETRY_STATUS_ALIASES:
                statuses.update(_RETRY_STATUS_ALIASES[key])
            else:
                known = [*_RETRY_ALIASES, *_RETRY_STATUS_ALIASES]
                hint = difflib.get_close_matches(key, known, n=1)
                self.add(
                    "error",
                    (*loc, i),
                    f"unknown retry trigger {item!r}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + "; use rate_limit, 5xx, timeout, connection or a 5xx status code",
                )
        return frozenset(kinds), frozenset(statuses)

    def breaker(self) -> BreakerSettings:
        cb = self.block("circuit_breaker")
        loc = ("providers", "circuit_breaker")
        cooldown, recovery = cb.get("cooldown_seconds"), cb.get("recovery_timeout")
        if cooldown is not None and recovery is not None and cooldown != recovery:
            self.add(
                "warning",
                (*loc, "recovery_timeout"),
                f"recovery_timeout is the tutorial's name for cooldown_seconds; both are set "
                f"and cooldown_seconds ({cooldown}) wins",
            )
        cooldown = cooldown if cooldown is not None else recovery
        return BreakerSettings(
            enabled=cb.get("enabled", True),
            failure_threshold=cb.get("failure_threshold") or DEFAULT_FAILURE_THRESHOLD,
            cooldown=DEFAULT_BREAKER_COOLDOWN if cooldown is None else float(cooldown),
            half_open_probes=cb.get("half_open_probes") or DEFAULT_HALF_OPEN_PROBES,
        )

    def latency(self) -> tuple[float, int]:
        routing, fallback = self.block("routing"), self.block("fallback")
        pr = self.block("provider_routing")
        window_places = [
            ((*base, name), block, name)
            for base, block in (
                (("providers", "routing"), routing),
                (("provider_routing",), pr),
                (("providers", "fallback"), fallback),
            )
            for name in ("window_seconds", "latency_window")
        ]
        picked = self.pick("the latency window", window_places, self._duration)
        window = DEFAULT_LATENCY_WINDOW if picked is None else picked[1]
        sample_places = [
            (("providers", "routing", "min_sample_count"), routing, "min_sample_count"),
            (("provider_routing", "min_sample_count"), pr, "min_sample_count"),
            (("providers", "fallback", "min_sample_count"), fallback, "min_sample_count"),
        ]
        picked = self.pick("min_sample_count", sample_places)
        return window, DEFAULT_MIN_SAMPLES if picked is None else int(picked[1])

    def _duration(self, loc: Loc, raw: Any) -> float | None:
        seconds = parse_duration(raw)
        if seconds is None:
            self.add("error", loc, f"cannot read {raw!r} as a duration; write e.g. 30s, 5m or 1h")
        return seconds

    def groups(self, strategy: str) -> tuple[GroupSpec, ...]:
        groups = self.s.get("model_groups") or []
        out: list[GroupSpec] = []
        seen: set[str] = set()
        for gi, g in enumerate(groups):
            loc = ("providers", "model_groups", gi)
            name = g["name"]
            if name in seen:
                self.add("error", (*loc, "name"), f"duplicate model group {name!r}")
                continue
            seen.add(name)
            shadowed = [t.id for t in self.targets if name in t.names()]
            if shadowed:
                self.add(
                    "warning",
                    (*loc, "name"),
                    f"model group {name!r} also names target(s) {', '.join(shadowed)}; "
                    "requests for it use the group",
                )
            ids, weights = self._members(loc, g.get("models") or [])
            g_strategy = None
            if g.get("strategy") is not None:
                g_strategy = self._strategy_name((*loc, "strategy"), g["strategy"])
            if ids:
                spec = GroupSpec(name, tuple(ids), weights, g_strategy)
                self._check_group(loc, spec, g_strategy or strategy)
                out.append(spec)
        return tuple(out)

    def _members(self, loc: Loc, members: Sequence[Any]) -> tuple[list[str], dict[str, float]]:
        from keeptrusts.config.load import parse_provider  # load imports this module

        by_id = {t.id: t for t in self.targets}
        ids: list[str] = []
        weights: dict[str, float] = {}
        for mi, m in enumerate(members):
            mloc = (*loc, "models", mi)
            m = {"target": m} if isinstance(m, str) else m
            if m.get("target") is not None:
                found = [by_id[m["target"]]] if m["target"] in by_id else []
                if not found:
                    hint = difflib.get_close_matches(m["target"], list(by_id), n=1)
                    self.add(
                        "error",
                        (*mloc, "target"),
                        f"unknown target {m['target']!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                    )
            elif m.get("provider") is not None:
                ref = parse_provider(m["provider"], m.get("model"))
                found = [
                    t
                    for t in self.targets
                    if t.provider == ref.provider and (ref.model is None or t.model == ref.model)
                ]
                if not found:
                    self.add(
                        "error",
                        mloc,
                        f"no target has provider {ref.provider!r}"
                        + (f" and model {ref.model!r}" if ref.model else "")
                        + "; add it under providers.targets or name a target with `target:`",
                    )
            else:
                self.add("error", mloc, "a group member needs `target: <id>` or `provider:`")
                found = []
            for t in found:
                if t.id in weights or t.id in ids:
                    self.add("warning", mloc, f"target {t.id!r} is listed twice in this group")
                    continue
                ids.append(t.id)
                weights[t.id] = float(m["weight"]) if m.get("weight") is not None else t.weight
                if t.model is None:
                    self.add(
                        "warning",
                        mloc,
                        f"target {t.id!r} has no model, so the group name is sent upstream "
                        "as the model; set `model:` on the target",
                    )
        return ids, weights

    def _check_group(self, loc: Loc, spec: GroupSpec, strategy: str) -> None:
        if strategy == "weighted" and not any(spec.weights.values()):
            self.add("error", loc, f"every target of group {spec.name!r} has weight 0")
        if strategy == "cost":
            by_id = {t.id: t for t in self.targets}
            unpriced = [i for i in spec.target_ids if by_id[i].price is None]
            if unpriced:
                self.add(
                    "warning",
                    loc,
                    f"strategy 'cost' but {', '.join(unpriced)} has no price; "
                    "unpriced targets are tried last",
                )

    def check_targets(self, strategy: str) -> None:
        if strategy == "cost" and self.targets and all(t.price is None for t in self.targets):
            self.add(
                "warning",
                ("providers", "targets"),
                "strategy 'cost' but no target sets `price`; targets are tried in list order",
            )
        for i, t in enumerate(self.targets):
            to = t.timeouts
            if to.first_byte > to.total or (to.first_token or 0) > to.total:
                self.add(
                    "warning",
                    ("providers", "targets", i, "timeouts"),
                    f"target {t.id!r}: a first-byte/first-token timeout longer than total "
                    f"({to.total}s) never fires",
                )

    def fallback_policies(self) -> None:
        pf = self.block("provider_fallback")
        for key, allowed in (("content_policy", "stop"), ("context_window", "abort")):
            value = pf.get(key)
            if value is not None and value != allowed:
                self.add(
                    "error",
                    ("provider_fallback", key),
                    f"{key}: {value!r} is not supported: an upstream 4xx (content policy, "
                    f"context window) is never retried on another target; use {allowed!r}",
                )

    def limits(self) -> tuple[int | None, int | None, float]:
        routing = self.block("routing")
        timeout = routing.get("queue_timeout")
        return (
            routing.get("max_concurrency"),
            routing.get("max_queue"),
            DEFAULT_QUEUE_TIMEOUT if timeout is None else float(timeout),
        )


def compile_routing(
    sections: Mapping[str, Any], targets: Sequence[Target]
) -> tuple[RoutingSettings, list[Issue]]:
    """Map the config's routing sections onto one model; return it and the problems found.

    ``sections`` holds the validated blocks with unset keys left out: ``strategy``,
    ``routing``, ``fallback``, ``circuit_breaker``, ``model_groups`` (from ``providers``)
    and ``provider_routing``, ``provider_fallback`` (top level).
    """
    c = _Compiler(sections, targets)
    strategy = c.strategy()
    retry = c.retry()
    breaker = c.breaker()
    window, min_samples = c.latency()
    groups = c.groups(strategy)
    c.check_targets(strategy)
    c.fallback_policies()
    max_concurrency, max_queue, queue_timeout = c.limits()
    fallback = c.block("fallback")
    max_latency = fallback.get("max_latency_ms")
    settings = RoutingSettings(
        strategy=strategy,
        retry=retry,
        breaker=breaker,
        latency_window=window,
        min_samples=min_samples,
        max_latency=None if max_latency is None else max_latency / 1000,
        max_cost_per_1k=fallback.get("max_cost_per_1k"),
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        queue_timeout=queue_timeout,
        groups=groups,
    )
    return settings, c.issues


def _dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)
