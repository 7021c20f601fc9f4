"""A LiteLLM proxy ``config.yaml`` as a Keeptrusts policy config, with a report of the gaps.

What maps where:

* ``model_list`` entries become ``providers.targets``: the ``provider/model`` prefix picks
  the provider, ``api_base`` the ``base_url``, ``os.environ/VAR`` keys become
  ``secret_key_ref.env`` (a literal key is never copied), ``model_name`` becomes an alias.
* Several entries with one ``model_name`` form a group routed by ``routing_strategy``;
  ``fallbacks`` and ``model_group_alias`` become ``providers.model_groups`` where target
  names alone would not resolve the same way.
* ``num_retries``, ``timeout``, ``retry_policy``, ``allowed_fails``/``cooldown_time`` become
  ``providers.routing`` retries, target timeouts and ``providers.circuit_breaker``.
* Guardrails become policies (see ``litellm_guardrails``); model access groups become
  ``rbac`` roles; ``audit-logger`` always closes the chain.

Everything else is listed in the report, and nothing is silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keeptrusts.migrate.litellm_guardrails import GuardrailConverter
from keeptrusts.migrate.litellm_providers import (
    PREFIXES,
    UNSUPPORTED,
    infer_prefix,
    is_openai_host,
    points_at_gateway,
    split_model,
    with_v1,
)
from keeptrusts.migrate.litellm_settings import report_general, report_unmapped
from keeptrusts.migrate.report import Report

ENV_PREFIX = "os.environ/"
CHAIN_ORDER = ("prompt-injection", "pii-detector", "dlp-filter", "rbac", "audit-logger")

STRATEGIES: dict[str, str] = {
    "simple-shuffle": "weighted",
    "least-busy": "least_busy",
    "latency-based-routing": "lowest_latency",
    "cost-based-routing": "cost",
    "usage-based-routing": "least_busy",
    "usage-based-routing-v2": "least_busy",
}
# retry_policy keys (LiteLLM error classes) -> retry triggers of providers.routing.retry_on.
RETRY_KINDS = {
    "TimeoutErrorRetries": "timeout",
    "RateLimitErrorRetries": "rate_limit",
    "InternalServerErrorRetries": "5xx",
}
_HANDLED_PARAMS = {
    "model", "api_key", "api_base", "base_url", "rpm", "tpm", "weight", "order", "timeout",
    "stream_timeout", "max_parallel_requests", "input_cost_per_token", "output_cost_per_token",
    "organization", "extra_headers", "headers", "litellm_credential_name", "custom_llm_provider",
    "tags", "access_groups",
}  # fmt: skip
_REQUEST_DEFAULTS = {
    "temperature", "max_tokens", "top_p", "stop", "seed", "frequency_penalty",
    "presence_penalty", "response_format", "reasoning_effort", "max_completion_tokens",
}  # fmt: skip
_SENSITIVE_HEADER = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LOCAL_PROVIDERS = {"ollama", "lmstudio", "vllm"}


@dataclass(slots=True)
class Conversion:
    """The policy config (plain data, ready for YAML), its report, and the routes promised."""

    config: dict[str, Any]
    report: Report
    # Client-facing model name -> target ids, in the order they are tried (fallbacks last).
    routes: dict[str, list[str]]


@dataclass(slots=True)
class _Deployment:
    where: str
    model_name: str
    target: dict[str, Any]
    weight: float | None = None
    rpm: float | None = None
    tpm: float | None = None
    order: int | None = None
    timeout: float | None = None
    stream_timeout: float | None = None
    groups: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.target["id"])


def load_litellm(path: str | Path) -> dict[str, Any]:
    """Read a LiteLLM config, merging the files its ``include:`` list names."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path.name}: a LiteLLM config is a YAML mapping (model_list: ...)")
    for inc in doc.pop("include", None) or []:
        extra = yaml.safe_load((path.parent / str(inc)).read_text(encoding="utf-8"))
        if isinstance(extra, dict):
            for key, value in extra.items():
                if isinstance(value, list) and isinstance(doc.get(key), list):
                    doc[key] = [*doc[key], *value]
                elif isinstance(value, dict) and isinstance(doc.get(key), dict):
                    doc[key] = {**value, **doc[key]}
                else:
                    doc.setdefault(key, value)
    return doc


def convert_litellm(
    doc: Mapping[str, Any], *, source_name: str = "a LiteLLM config", base_dir: Path | None = None
) -> Conversion:
    """Convert a parsed LiteLLM config; the report lists everything not carried as-is."""
    return _Converter(doc, base_dir).run(source_name)


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _tidy(value: float) -> float | int:
    """Whole numbers as ints; others to 6 significant digits (prices per 1k are tiny)."""
    return int(value) if float(value).is_integer() else float(f"{value:.6g}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _env_ref(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value[len(ENV_PREFIX) :].strip() or None
    return None


def _days(value: Any) -> int | None:
    """``30d``, ``2w``, ``720h`` or a number of days -> whole days (at least 1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(1, int(value))
    m = re.fullmatch(r"\s*(\d+)\s*([dwhm]|mo)?\s*", str(value))
    if not m:
        return None
    n = int(m.group(1))
    unit = m.group(2) or "d"
    days = {"d": n, "w": n * 7, "h": n // 24, "m": n // (24 * 60), "mo": n * 30}[unit]
    return max(1, days)


class _Converter:
    def __init__(self, doc: Mapping[str, Any], base_dir: Path | None) -> None:
        self.doc = doc
        self.base_dir = base_dir
        self.r = Report()
        self.router = self._section("router_settings")
        self.settings = self._section("litellm_settings")
        self.general = self._section("general_settings")
        self.credentials = self._credentials()
        self.deployments: list[_Deployment] = []
        self.aliases: dict[str, str] = {}  # model_group_alias: alias -> model_name
        self.fallback_groups: dict[str, int] = {}  # name -> targets in its group, fallbacks too

    def _section(self, name: str) -> dict[str, Any]:
        value = self.doc.get(name)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.r.dropped(name, "is not a mapping; ignored")
            return {}
        return dict(value)

    def setting(self, key: str) -> tuple[str, Any]:
        """A routing setting from router_settings, else litellm_settings; (where, value)."""
        in_router, in_settings = self.router.get(key), self.settings.get(key)
        if in_router is not None and in_settings is not None and in_router != in_settings:
            self.r.changed(f"litellm_settings.{key}", f"router_settings.{key} is also set and wins")
        if in_router is not None:
            return f"router_settings.{key}", in_router
        return f"litellm_settings.{key}", in_settings

    # -- the whole run ---------------------------------------------------------------------

    def run(self, source_name: str) -> Conversion:
        self._top_level()
        self._models()
        self._unique_ids()
        strategy, explicit = self._strategy()
        self._weights(strategy)
        self._timeouts()
        routes, groups = self._routes(strategy)
        providers: dict[str, Any] = {"targets": [d.target for d in self.deployments]}
        routing = self._routing(strategy, explicit)
        if routing:
            providers["routing"] = routing
        breaker = self._breaker()
        if breaker:
            providers["circuit_breaker"] = breaker
        if groups:
            providers["model_groups"] = groups
        policy = self._policies()
        report_general(self.r, self.general)
        report_unmapped(self.r, self.settings, self.router)
        config = {
            "pack": {
                "name": "litellm-migrated",
                "version": "1.0.0",
                "enabled": True,
                "description": f"Converted from {source_name} by kt migrate litellm",
            },
            "providers": providers,
            "policies": {"chain": [n for n in CHAIN_ORDER if n in policy]},
            "policy": {n: policy[n] for n in CHAIN_ORDER if n in policy},
        }
        return Conversion(config, self.r, routes)

    # -- sections we read or reject whole --------------------------------------------------

    def _top_level(self) -> None:
        handled = {
            "model_list", "router_settings", "litellm_settings", "general_settings",
            "guardrails", "credential_list",
        }  # fmt: skip
        for key in self.doc:
            if key in handled:
                continue
            if key == "environment_variables":
                self.r.action(
                    key,
                    "values are not copied (they may be secrets); export them in the "
                    "gateway's environment instead",
                )
            else:
                self.r.dropped(str(key), "this LiteLLM section has no equivalent")

    def _credentials(self) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for c in self.doc.get("credential_list") or []:
            if isinstance(c, Mapping) and isinstance(c.get("credential_values"), Mapping):
                out[str(c.get("credential_name"))] = c["credential_values"]
        return out

    # -- model_list ------------------------------------------------------------------------

    def _models(self) -> None:
        entries = self.doc.get("model_list") or []
        if not isinstance(entries, list) or not entries:
            self.r.action("model_list", "is empty: the output has no targets; add some")
            return
        wanted: dict[str, str] = {}
        for i, entry in enumerate(entries):
            where = f"model_list[{i}]"
            if isinstance(entry, Mapping) and entry.get("model_name"):
                wanted.setdefault(str(entry["model_name"]), where)
            d = self._deployment(where, entry) if isinstance(entry, Mapping) else None
            if d is not None:
                self.deployments.append(d)
        served = {d.model_name for d in self.deployments}
        for name, where in wanted.items():
            if name not in served:
                self.r.action(
                    where,
                    f"no deployment of {name!r} could be carried over: clients asking for "
                    f"{name!r} will get 404 until you add a target for it",
                )

    def _deployment(self, where: str, entry: Mapping[str, Any]) -> _Deployment | None:
        """One model_list entry as a target, or None (reported) when it cannot be carried."""
        model_name = entry.get("model_name")
        params = dict(entry.get("litellm_params") or {})
        info = entry.get("model_info") if isinstance(entry.get("model_info"), Mapping) else {}
        if not model_name or not params.get("model"):
            self.r.dropped(where, "needs model_name and litellm_params.model; skipped")
            return None
        model_name = str(model_name)
        params = self._with_credential(where, params)
        found = self._provider(where, model_name, params, info)
        if found is None:
            return None
        prefix, upstream = found
        placed = self._address(where, model_name, prefix, params)
        if placed is None:
            return None
        provider, base_url = placed
        target: dict[str, Any] = {
            "id": self._target_id(model_name, prefix, info),
            "provider": provider,
            "model": upstream,
        }
        if base_url:
            target["base_url"] = base_url
        target["aliases"] = [model_name]
        self._key(where, target, params, prefix)
        self._headers(where, target, params)
        d = _Deployment(where, model_name, target)
        self._numbers(where, d, params, info)
        self._leftovers(where, params)
        return d

    def _with_credential(self, where: str, params: dict[str, Any]) -> dict[str, Any]:
        """Params with their ``litellm_credential_name`` entry's values filled in."""
        cred = params.get("litellm_credential_name")
        if cred is None:
            return params
        values = self.credentials.get(str(cred))
        if values is None:
            self.r.dropped(f"{where}.litellm_credential_name", f"no credential {cred!r}")
            return params
        return {**values, **params}

    def _provider(
        self, where: str, model_name: str, params: Mapping[str, Any], info: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        """(LiteLLM prefix, upstream model) for a deployment this gateway can serve."""
        model = str(params["model"])
        if "*" in model or "*" in model_name:
            self.r.dropped(
                where,
                f"wildcard {model_name!r} -> {model!r} (any model passed through) has no "
                "equivalent: list each model as its own entry",
            )
            return None
        mode = info.get("mode")
        if mode not in (None, "chat", "responses"):
            self.r.dropped(
                where, f"{model_name!r} is a {mode} model; this gateway serves chat completions"
            )
            return None
        prefix, upstream = split_model(model)
        if params.get("custom_llm_provider"):
            prefix, upstream = str(params["custom_llm_provider"]), model
        prefix = prefix or infer_prefix(model)
        if prefix is None:
            self.r.dropped(
                f"{where}.litellm_params.model",
                f"{model!r} names no provider; write it as provider/model",
            )
            return None
        if prefix not in PREFIXES:
            why = UNSUPPORTED.get(prefix, f"LiteLLM provider {prefix!r} has no provider here")
            self.r.dropped(f"{where} ({model_name})", f"{why}; the deployment is skipped")
            return None
        note = PREFIXES[prefix].note
        if note:
            self.r.changed(f"{where} ({model_name})", f"{prefix}/ is {note}")
        return prefix, upstream

    def _address(
        self, where: str, model_name: str, prefix: str, params: Mapping[str, Any]
    ) -> tuple[str, str | None] | None:
        """(provider, base_url or None for the provider's default) from ``api_base``."""
        pm = PREFIXES[prefix]
        api_base = params.get("api_base") or params.get("base_url")
        env = _env_ref(api_base)
        if env is not None:
            if pm.needs_api_base:
                self.r.dropped(
                    f"{where}.litellm_params.api_base",
                    f"comes from ${env}, and base_url must be written out; add this target "
                    "by hand with base_url set to that address",
                )
                return None
            self.r.action(
                f"{where}.litellm_params.api_base",
                f"comes from ${env}; the target uses the provider's public address: set "
                "base_url if that is not what you want",
            )
            api_base = None
        if api_base is None:
            if pm.needs_api_base:
                self.r.dropped(where, f"{prefix}/ needs api_base (the server's address); skipped")
                return None
            return pm.provider, pm.base_url
        url = str(api_base).rstrip("/")
        if not re.match(r"^https?://", url):
            self.r.dropped(f"{where}.litellm_params.api_base", f"{url!r} is not an http URL")
            return None
        if points_at_gateway(url):
            self.r.action(
                f"{where}.litellm_params.api_base",
                "points at a Keeptrusts gateway (LiteLLM in front of it); the migrated "
                "target would call itself: point it at the real provider",
            )
        if prefix == "openai" and not is_openai_host(url):
            self.r.changed(
                f"{where} ({model_name})",
                "openai/ with a custom api_base becomes an openai-compatible target",
            )
            return "openai-compatible", url
        return pm.provider, with_v1(url) if pm.append_v1 else url

    def _target_id(self, model_name: str, provider: str, info: Mapping[str, Any]) -> str:
        given = info.get("id")
        if isinstance(given, str) and _ID_OK.match(given):
            return given
        return f"{_slug(model_name)}-{_slug(provider)}"

    def _key(
        self, where: str, target: dict[str, Any], params: Mapping[str, Any], prefix: str
    ) -> None:
        """``secret_key_ref.env`` for the target; a literal key is never copied."""
        key_env = PREFIXES[prefix].key_env
        if target["provider"] == "openai-compatible" and prefix == "openai":
            key_env = None  # another server than OpenAI: its key is not $OPENAI_API_KEY
        api_key = params.get("api_key")
        env = _env_ref(api_key)
        if env is None and api_key is not None:
            env = key_env or f"{target['id'].replace('-', '_').upper()}_API_KEY"
            self.r.action(
                f"{where}.litellm_params.api_key",
                f"a literal key was not copied; the target reads ${env}: export it before "
                "starting the gateway",
            )
        elif env is None and prefix == "openai" and target["provider"] == "openai-compatible":
            # LiteLLM would send $OPENAI_API_KEY to this other server; do not, unasked.
            self.r.action(
                f"{where}.litellm_params.api_key",
                "not set: LiteLLM would have sent $OPENAI_API_KEY to this server; the target "
                "sends no key. Add secret_key_ref if the server needs one",
            )
        elif env is None and key_env and target["provider"] not in _LOCAL_PROVIDERS:
            env = key_env  # LiteLLM reads this variable when no key is given
        if env is not None:
            target["secret_key_ref"] = {"env": env}

    def _headers(self, where: str, target: dict[str, Any], params: Mapping[str, Any]) -> None:
        headers: dict[str, str] = {}
        org = params.get("organization")
        if org is not None:
            if _env_ref(org):
                self.r.action(
                    f"{where}.litellm_params.organization",
                    "comes from the environment; set the OpenAI-Organization header in "
                    "headers by hand",
                )
            else:
                headers["OpenAI-Organization"] = str(org)
        for key in ("extra_headers", "headers"):
            extra = params.get(key)
            if not isinstance(extra, Mapping):
                continue
            for name, value in extra.items():
                if _SENSITIVE_HEADER.search(str(name)) or _env_ref(value) is not None:
                    self.r.action(
                        f"{where}.litellm_params.{key}.{name}",
                        "may hold a secret and was not copied; add it to the target's "
                        "headers yourself",
                    )
                else:
                    headers[str(name)] = str(value)
        if headers:
            target["headers"] = headers

    def _numbers(
        self, where: str, d: _Deployment, params: Mapping[str, Any], info: Mapping[str, Any]
    ) -> None:
        d.weight = _num(params.get("weight"))
        d.rpm = _num(params.get("rpm"))
        d.tpm = _num(params.get("tpm"))
        order = _num(params.get("order"))
        d.order = int(order) if order is not None else None
        d.timeout = _num(params.get("timeout"))
        d.stream_timeout = _num(params.get("stream_timeout"))
        mpr = _num(params.get("max_parallel_requests"))
        if mpr is not None and mpr >= 1:
            d.target["max_concurrency"] = int(mpr)
        cost_in = _num(params.get("input_cost_per_token", info.get("input_cost_per_token")))
        cost_out = _num(params.get("output_cost_per_token", info.get("output_cost_per_token")))
        if cost_in is not None or cost_out is not None:
            d.target["price"] = {
                "input_per_1k": _tidy((cost_in or 0.0) * 1000),
                "output_per_1k": _tidy((cost_out or 0.0) * 1000),
            }
        groups = info.get("access_groups") or params.get("access_groups") or []
        d.groups = [str(g) for g in groups] if isinstance(groups, list) else []
        if info.get("team_id"):
            d.groups.append(f"team-{_slug(str(info['team_id']))}")
        if params.get("tags"):
            self.r.dropped(
                f"{where}.litellm_params.tags",
                "tag-based routing has no equivalent; the deployment serves every request",
            )
        if d.rpm is not None or d.tpm is not None:
            self.r.dropped(
                f"{where}.litellm_params.rpm/tpm",
                "per-deployment request/token rate limits are not enforced here "
                "(max_parallel_requests -> max_concurrency caps concurrency instead)",
            )

    def _leftovers(self, where: str, params: Mapping[str, Any]) -> None:
        rest = sorted(k for k in params if k not in _HANDLED_PARAMS)
        defaults = [k for k in rest if k in _REQUEST_DEFAULTS]
        other = [k for k in rest if k not in _REQUEST_DEFAULTS]
        if defaults:
            self.r.dropped(
                f"{where}.litellm_params",
                f"request defaults {', '.join(defaults)} are not injected; the client's "
                "request reaches the upstream as sent",
            )
        if other:
            self.r.dropped(
                f"{where}.litellm_params", f"{', '.join(other)}: no equivalent on a target"
            )

    # -- routing ---------------------------------------------------------------------------

    def _strategy(self) -> tuple[str, bool]:
        where, raw = self.setting("routing_strategy")
        if raw is None:
            return "weighted", False  # LiteLLM's default is simple-shuffle
        strategy = STRATEGIES.get(str(raw))
        if strategy is None:
            self.r.dropped(where, f"{raw!r} has no equivalent; ordered fallback is used")
            return "ordered", True
        if str(raw).startswith("usage-based"):
            self.r.changed(
                where,
                f"{raw} becomes least_busy (fewest requests in flight): tpm/rpm usage is not "
                "tracked here",
            )
        if strategy == "cost" and not any("price" in d.target for d in self.deployments):
            self.r.action(
                where,
                "cost-based routing needs prices: LiteLLM's built-in price list is not "
                "copied; set price {input_per_1k, output_per_1k} on each target",
            )
        args = self.router.get("routing_strategy_args")
        if isinstance(args, Mapping):
            for key in args:
                if not (key == "ttl" and strategy == "lowest_latency"):
                    self.r.dropped(f"router_settings.routing_strategy_args.{key}", "no equivalent")
        return strategy, True

    def _by_name(self) -> dict[str, list[_Deployment]]:
        out: dict[str, list[_Deployment]] = {}
        for d in self.deployments:
            out.setdefault(d.model_name, []).append(d)
        return out

    def _weights(self, strategy: str) -> None:
        for name, ds in self._by_name().items():
            if len(ds) < 2:
                continue
            if strategy != "weighted":
                if any(d.weight is not None for d in ds):
                    self.r.changed(
                        f"model_list ({name})", f"weights do not steer {strategy} routing"
                    )
                continue
            if any(d.weight is not None for d in ds):
                picked = [d.weight if d.weight is not None else 1.0 for d in ds]
            elif all(d.rpm is not None for d in ds):
                picked = [d.rpm for d in ds]  # type: ignore[misc]
                self.r.changed(
                    f"model_list ({name})", "rpm becomes each deployment's weight, as in LiteLLM"
                )
            elif all(d.tpm is not None for d in ds):
                picked = [d.tpm for d in ds]  # type: ignore[misc]
                self.r.changed(
                    f"model_list ({name})", "tpm becomes each deployment's weight, as in LiteLLM"
                )
            else:
                continue
            for d, w in zip(ds, picked, strict=True):
                d.target["weight"] = _tidy(max(0.0, float(w)))

    def _timeouts(self) -> None:
        _, glob = self.setting("timeout")
        if glob is None:
            glob = self.settings.get("request_timeout")
        default = _num(glob)
        for d in self.deployments:
            total = d.timeout if d.timeout is not None else default
            if total is None and d.stream_timeout is None:
                continue
            t: dict[str, Any] = {}
            if total is not None and total > 0:
                t = {"connect": _tidy(min(10.0, total)), "first_byte": _tidy(min(120.0, total))}
                t["total"] = _tidy(total)
            if d.stream_timeout is not None and d.stream_timeout > 0:
                cap = total if total and total > 0 else 600.0
                t["first_byte"] = _tidy(min(d.stream_timeout, cap))
                self.r.changed(
                    f"{d.where}.litellm_params.stream_timeout",
                    "becomes timeouts.first_byte (time to the first byte or stream event)",
                )
            if t:
                d.target["timeouts"] = t

    def _fallbacks(self, names: set[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        where, items = self.setting("fallbacks")
        for i, item in enumerate(items or []):
            if not isinstance(item, Mapping):
                continue
            for src, dsts in item.items():
                here = f"{where}[{i}].{src}"
                if str(src) not in names:
                    self.r.dropped(here, f"no deployment serves {src!r}")
                    continue
                dsts = dsts if isinstance(dsts, list) else [dsts]
                for dst in dsts:
                    if str(dst) not in names:
                        self.r.dropped(here, f"fallback {dst!r} is not served by any deployment")
                    elif str(dst) != str(src):
                        out.setdefault(str(src), []).append(str(dst))
        where, default = self.setting("default_fallbacks")
        if default:
            valid = [str(x) for x in default if str(x) in names]
            if len(valid) < len(default):
                self.r.dropped(where, "names a model no deployment serves")
            for n in names:
                if n not in out:
                    extra = [x for x in valid if x != n]
                    if extra:
                        out[n] = extra
        for key in ("context_window_fallbacks", "content_policy_fallbacks"):
            where, value = self.setting(key)
            if value:
                self.r.dropped(
                    where,
                    "an upstream 4xx (context window, content policy) is the request's fault "
                    "and is never retried on another target here",
                )
        return out

    def _aliases(self, names: set[str]) -> dict[str, str]:
        where, aliases = self.setting("model_group_alias")
        out: dict[str, str] = {}
        if not isinstance(aliases, Mapping):
            return out
        for alias, spec in aliases.items():
            dst = spec.get("model") if isinstance(spec, Mapping) else spec
            if str(dst) in names:
                out[str(alias)] = str(dst)
                if isinstance(spec, Mapping) and spec.get("hidden"):
                    self.r.changed(
                        f"{where}.{alias}", "hidden aliases are listed by /v1/models here"
                    )
            else:
                self.r.dropped(f"{where}.{alias}", f"{dst!r} is not served by any deployment")
        return out

    def _routes(self, strategy: str) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
        """The targets each client-facing name must reach, and the model groups needed."""
        by_name = self._by_name()
        names = set(by_name)
        fallbacks = self._fallbacks(names)
        aliases = self.aliases = self._aliases(names)
        members: dict[str, list[_Deployment]] = {}
        ordered: set[str] = set()
        for name, ds in by_name.items():
            if any(d.order is not None for d in ds):
                ds = sorted(ds, key=lambda d: d.order if d.order is not None else 1 << 30)
                if len(ds) > 1:
                    ordered.add(name)
                    self.r.changed(
                        f"model_list ({name}).order",
                        "deployment order becomes an ordered group: lower order first, the "
                        "rest only on failure",
                    )
            members[name] = ds
        for d in self.deployments:
            d.target["aliases"] += [a for a, dst in aliases.items() if dst == d.model_name]
        intended: dict[str, list[str]] = {}
        for name, ds in members.items():
            ids = [d.id for d in ds]
            for fb in fallbacks.get(name, []):
                ids += [d.id for d in members[fb] if d.id not in ids]
            intended[name] = ids
        for alias, dst in aliases.items():
            intended[alias] = list(intended[dst])
        groups = []
        for name, ids in intended.items():
            base = aliases.get(name, name)
            primaries = [d.id for d in members[base]]
            spec = self._group(name, ids, primaries, strategy, base in ordered)
            if spec is not None:
                groups.append(spec)
                for d in self.deployments:
                    if name in d.target["aliases"]:
                        d.target["aliases"].remove(name)
        for d in self.deployments:
            # A name equal to the target's model needs no alias: the model is a name too.
            aliases = [a for a in d.target["aliases"] if a != d.target.get("model")]
            if aliases:
                d.target["aliases"] = aliases
            else:
                del d.target["aliases"]
        return intended, groups

    def _natural(self, name: str) -> list[str]:
        """The targets the name reaches with no group: every target naming it, in order."""
        return [
            d.id
            for d in self.deployments
            if name == d.id or name == d.target.get("model") or name in d.target["aliases"]
        ]

    def _group(
        self, name: str, ids: list[str], primaries: list[str], strategy: str, ordered: bool
    ) -> dict[str, Any] | None:
        has_fallbacks = len(ids) > len(primaries)
        if has_fallbacks:
            self.fallback_groups[name] = len(ids)
        if not has_fallbacks and not ordered and self._natural(name) == ids:
            return None
        weights = {d.id: d.target.get("weight") for d in self.deployments}
        priced = {d.id for d in self.deployments if "price" in d.target}
        if (
            strategy == "cost"
            and set(primaries) <= priced
            and not (set(ids) - set(primaries)) & priced
        ):
            # Cost routing tries unpriced targets last: fallbacks without a price stay last.
            g_strategy, models = "cost", [{"target": i} for i in ids]
        elif ordered or len(primaries) == 1:
            g_strategy = "ordered"
            models: list[Any] = [{"target": i} for i in ids]
        else:
            g_strategy = "weighted"
            if strategy != "weighted":
                self.r.changed(
                    f"fallbacks ({name})",
                    f"{strategy} routing cannot keep fallbacks last, so this group is "
                    "weighted: its deployments first, fallbacks (weight 0) after",
                )
            models = []
            for i in ids:
                m: dict[str, Any] = {"target": i}
                if i not in primaries:
                    m["weight"] = 0
                elif weights.get(i) is not None:
                    m["weight"] = weights[i]
                models.append(m)
        spec: dict[str, Any] = {"name": name, "models": models}
        if g_strategy != strategy or not has_fallbacks:
            spec["strategy"] = g_strategy
        return spec

    def _unique_ids(self) -> None:
        """Make target ids unique, and unlike any model name clients send (an id is a name)."""
        _, aliases = self.setting("model_group_alias")
        taken = {d.model_name for d in self.deployments}
        taken |= {str(a) for a in aliases} if isinstance(aliases, Mapping) else set()
        for d in self.deployments:
            base = new = d.id
            n = 2
            while new in taken:
                new, n = f"{base}-{n}", n + 1
            taken.add(new)
            d.target["id"] = new

    def _routing(self, strategy: str, explicit: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        multi = any(len(ds) > 1 for ds in self._by_name().values())
        if explicit or multi:
            out["strategy"] = strategy
        if strategy == "lowest_latency":
            args = self.router.get("routing_strategy_args")
            ttl = _num(args.get("ttl")) if isinstance(args, Mapping) else None
            if ttl and ttl > 0:
                out["window_seconds"] = _tidy(ttl)
        where, retries = self.setting("num_retries")
        n = _num(retries)
        if n is not None:
            max_retries = max(0, min(20, int(n)))
            needed = max((size - 1 for size in self.fallback_groups.values()), default=0)
            if needed > max_retries:
                self.r.changed(
                    where,
                    f"num_retries {max_retries} raised to {min(20, needed)} so a request can "
                    "reach every fallback of its group",
                )
                max_retries = min(20, needed)
            out["max_retries"] = max_retries
        retry_on = self._retry_on()
        if retry_on is not None:
            out["retry_on"] = retry_on
        where, after = self.setting("retry_after")
        wait = _num(after)
        if wait is not None and wait > 0:
            out["backoff"] = {"initial_ms": _tidy(wait * 1000)}
        return out

    def _retry_on(self) -> list[str] | None:
        where, policy = self.setting("retry_policy")
        if not isinstance(policy, Mapping):
            return None
        kinds: list[str] = []
        for key, value in policy.items():
            if key in RETRY_KINDS:
                if (_num(value) or 0) > 0:
                    kinds.append(RETRY_KINDS[key])
            elif (_num(value) or 0) > 0:
                self.r.dropped(
                    f"{where}.{key}",
                    "only rate limits, timeouts, connection errors and 5xx are retried; other "
                    "errors are the request's fault",
                )
        counts = {int(_num(v) or 0) for k, v in policy.items() if k in RETRY_KINDS}
        if len(counts - {0}) > 1:
            self.r.changed(where, "per-error retry counts become one max_retries for all kinds")
        if not kinds:
            return None
        return [*kinds, "connection"] if "timeout" in kinds else kinds

    def _breaker(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        where, fails = self.setting("allowed_fails")
        n = _num(fails)
        if n is not None:
            out["failure_threshold"] = max(1, int(n) + 1)
            self.r.changed(
                where,
                f"allowed_fails {int(n)} per minute becomes a breaker that opens after "
                f"{int(n) + 1} consecutive failures",
            )
        where, cooldown = self.setting("cooldown_time")
        c = _num(cooldown)
        if c is not None and c > 0:
            out["cooldown_seconds"] = _tidy(c)
        where, disabled = self.setting("disable_cooldowns")
        if disabled is True:
            out = {"enabled": False}
        return out

    # -- policies --------------------------------------------------------------------------

    def _policies(self) -> dict[str, dict[str, Any]]:
        g = GuardrailConverter(self.r, self.base_dir)
        items = self.doc.get("guardrails") or []
        for i, entry in enumerate(items if isinstance(items, list) else []):
            if isinstance(entry, Mapping):
                g.guardrail(f"guardrails[{i}]", entry)
        for key in ("callbacks", "success_callback", "failure_callback"):
            names = self.settings.get(key)
            if isinstance(names, str):
                names = [names]
            if isinstance(names, list):
                g.callbacks(f"litellm_settings.{key}", names, self.settings)
        g.v1_guardrails(
            "litellm_settings.guardrails", self.settings.get("guardrails"), self.settings
        )
        policy = g.blocks()
        rbac = self._rbac()
        if rbac:
            policy["rbac"] = rbac
        audit: dict[str, Any] = {"immutable": True, "log_all_access": True}
        keep = self.general.get("maximum_spend_logs_retention_period")
        if keep is not None:
            days = _days(keep)
            if days is None:
                self.r.dropped(
                    "general_settings.maximum_spend_logs_retention_period",
                    f"cannot read {keep!r} as a duration; the default of 365 days applies",
                )
            else:
                audit["retention_days"] = min(days, 36500)
        policy["audit-logger"] = audit
        return policy

    def _rbac(self) -> dict[str, Any] | None:
        """LiteLLM model access groups (and team-only models) as roles."""
        groups: dict[str, list[str]] = {}
        for d in self.deployments:
            served = [d.model_name, *(a for a, dst in self.aliases.items() if dst == d.model_name)]
            for grp in d.groups:
                names = groups.setdefault(grp, [])
                names += [n for n in served if n not in names]
        if not groups:
            return None
        roles: dict[str, Any] = {
            grp: {"allowed_models": names, "description": f"LiteLLM model access group {grp}"}
            for grp, names in groups.items()
        }
        roles["all-models"] = {
            "allowed_models": ["*"],
            "description": "keys LiteLLM did not restrict to an access group",
        }
        self.r.action(
            "model_info.access_groups",
            f"became rbac roles ({', '.join(roles)}); LiteLLM virtual keys live in its "
            "database and are not migrated: create gateway keys with `kt keys create --role "
            "ROLE`. Requests without a gateway key are now refused",
        )
        return {"roles": roles}


def dump_yaml(config: Mapping[str, Any], header: str = "") -> str:
    """The config as YAML, keys in the order built; ``header`` becomes leading comments."""
    text = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True, width=100)
    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    return ("\n".join(lines) + "\n" if lines else "") + text
