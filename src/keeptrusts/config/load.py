"""Load, validate and compile policy configs; report problems with file, line and key path."""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from keeptrusts.config.model import GatewayConfig, Pack, Price, Target, Timeouts
from keeptrusts.config.schema import ConfigModel, TargetModel
from keeptrusts.config.source import (
    ConfigSyntaxError,
    SourcedDict,
    format_path,
    load_layers,
    mark_at,
)
from keeptrusts.policies import registry as policy_registry
from keeptrusts.providers import registry as provider_registry
from keeptrusts.routing.settings import compile_routing

Severity = Literal["error", "warning"]
# The second part of `openai:chat:gpt-4o` names an API, not a model.
_API_KINDS = {"chat", "messages", "completion", "embeddings", "responses"}


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Severity
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        path = f" {self.path}:" if self.path else ""
        return f"{where}: {self.severity}:{path} {self.message}"


class ConfigError(Exception):
    """Raised when a config has errors; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class ProviderRef:
    provider: str
    model: str | None


def parse_provider(value: str, model: str | None = None) -> ProviderRef:
    """Split ``openai:chat:gpt-4o`` (first two colons only), ``openai/gpt-4o`` or ``openai``."""
    if ":" in value:
        parts = value.split(":", 2)
        name = parts[0]
        if len(parts) == 3:
            inline = parts[2] or None
        elif parts[1] in _API_KINDS:
            inline = None
        else:
            inline = value.split(":", 1)[1]
    elif "/" in value:
        name, inline = value.split("/", 1)
    else:
        name, inline = value, None
    return ProviderRef(name, model or inline)


class _Checker:
    """Collects problems against the merged source tree."""

    def __init__(self, root: SourcedDict) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def add(self, severity: Severity, loc: Sequence[Any], message: str) -> None:
        mark = mark_at(self.root, loc)
        self.problems.append(
            Problem(
                severity,
                mark.file if mark else "<config>",
                mark.line if mark else 0,
                format_path(loc),
                message,
            )
        )

    def pydantic(self, exc: ValidationError, model: type[BaseModel], prefix: tuple) -> None:
        for err in exc.errors():
            loc = (*prefix, *err["loc"])
            if err["type"] == "extra_forbidden":
                key = str(err["loc"][-1])
                allowed = _allowed_keys(model, err["loc"][:-1])
                msg = f"unknown key {key!r}" + _did_you_mean(key, allowed)
            elif err["type"] == "missing":
                msg = f"required key {str(err['loc'][-1])!r} is missing"
            else:
                msg = err["msg"]
            self.add("error", loc, msg)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _allowed_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Walk ``loc`` through the model's field types; return the keys allowed there."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    if isinstance(annotation, types.UnionType):
        return None
    return None


def load_config(
    paths: Sequence[str | Path], *, env: Mapping[str, str] | None = None
) -> tuple[GatewayConfig | None, list[Problem]]:
    """Return the compiled config (None if there are errors) and every problem found."""
    env = os.environ if env is None else env
    try:
        root = load_layers(paths)
    except ConfigSyntaxError as exc:
        return None, [Problem("error", exc.file, exc.line, "", exc.message)]
    check = _Checker(root)
    try:
        model = ConfigModel.model_validate(dict(root))
    except ValidationError as exc:
        check.pydantic(exc, ConfigModel, ())
        return None, check.problems
    _check_chain(check, model)
    targets = _compile_targets(check, model, env)
    _check_limits(check, model, targets)
    routing = _routing_sections(model)
    if not check.errors:
        for issue in compile_routing(routing, targets)[1]:
            check.add(issue.severity, issue.loc, issue.message)
    if check.errors:
        return None, check.problems
    config = GatewayConfig(
        pack=Pack(model.pack.name, model.pack.version, model.pack.enabled),
        targets=tuple(targets),
        chain=tuple(model.policies.chain),
        policy={k: dict(v) for k, v in model.policy.items()},
        routing=routing,
        sources=tuple(str(p) for p in paths),
        raw=root,
        limits=model.limits.model_dump() if model.limits is not None else None,
    )
    return config, check.problems


def _routing_sections(model: ConfigModel) -> dict[str, Any]:
    """Every routing block the user wrote (unset keys left out), for ``compile_routing``."""
    sections = model.providers.model_dump(exclude={"targets"}, exclude_none=True)
    for key in ("provider_routing", "provider_fallback"):
        block = getattr(model, key)
        if block is not None:
            sections[key] = block.model_dump(exclude_none=True)
    return sections


def _check_limits(check: _Checker, model: ConfigModel, targets: Sequence[Target]) -> None:
    """Warn about ``limits.models`` entries no request can match."""
    if model.limits is None:
        return
    names = {n for t in targets for n in t.names()}
    names.update(g.name for g in model.providers.model_groups or ())
    for name in model.limits.models:
        if name not in names:
            check.add(
                "warning",
                ("limits", "models", name),
                f"no target or model group serves {name!r}: this limit never applies",
            )


def _check_chain(check: _Checker, model: ConfigModel) -> None:
    known = set(policy_registry.CATALOG) | set(policy_registry.implemented())
    seen: set[str] = set()
    for i, name in enumerate(model.policies.chain):
        loc = ("policies", "chain", i)
        if name in seen:
            check.add("error", loc, f"policy {name!r} appears twice in the chain")
        seen.add(name)
        if name not in known:
            check.add("error", loc, f"unknown policy {name!r}" + _did_you_mean(name, known))
        elif policy_registry.get(name) is None:
            check.add("warning", loc, f"policy {name!r} is not implemented in this version")
    for name, block in model.policy.items():
        loc = ("policy", name)
        cls = policy_registry.get(name)
        if name not in known:
            check.add("error", loc, f"unknown policy {name!r}" + _did_you_mean(name, known))
            continue
        if name not in seen:
            check.add("warning", loc, f"policy {name!r} is configured but not in policies.chain")
        if cls is not None:
            try:
                cls.Config.model_validate(block)
            except ValidationError as exc:
                check.pydantic(exc, cls.Config, loc)


def _compile_targets(check: _Checker, model: ConfigModel, env: Mapping[str, str]) -> list[Target]:
    targets: list[Target] = []
    ids: set[str] = set()
    providers = provider_registry.names()
    for i, t in enumerate(model.providers.targets):
        loc = ("providers", "targets", i)
        if t.id in ids:
            check.add("error", (*loc, "id"), f"duplicate target id {t.id!r}")
        ids.add(t.id)
        ref = parse_provider(t.provider, t.model)
        if ref.provider not in providers:
            hint = _did_you_mean(ref.provider, providers)
            check.add("error", (*loc, "provider"), f"unknown provider {ref.provider!r}{hint}")
            continue
        target = _compile_target(check, loc, t, ref, env)
        if target is not None:
            targets.append(target)
    return targets


def _compile_target(
    check: _Checker,
    loc: tuple,
    t: TargetModel,
    ref: ProviderRef,
    env: Mapping[str, str],
) -> Target | None:
    cls = provider_registry.get(ref.provider)
    base_url = t.base_url or cls.default_base_url or ""
    if cls.needs_base_url and not base_url:
        check.add("error", loc, f"provider {ref.provider!r} has no default address: set base_url")
        return None
    key, key_env, unavailable = t.api_key, None, None
    if t.secret_key_ref is not None:
        if t.secret_key_ref.env:
            key_env = t.secret_key_ref.env
            key = env.get(key_env) or None
            if key is None:
                unavailable = f"environment variable {key_env} is not set"
                check.add("warning", (*loc, "secret_key_ref", "env"), unavailable)
        elif t.secret_key_ref.store:
            unavailable = "secret_key_ref.store is not supported by this gateway; use env"
            check.add("warning", (*loc, "secret_key_ref", "store"), unavailable)
        else:
            check.add("error", (*loc, "secret_key_ref"), "set secret_key_ref.env")
    elif key is None and cls.default_key_env and env.get(cls.default_key_env):
        key_env, key = cls.default_key_env, env[cls.default_key_env]
    to = t.timeouts
    return Target(
        id=t.id,
        provider=ref.provider,
        model=ref.model,
        base_url=base_url,
        api_key=key,
        key_env=key_env,
        unavailable=unavailable,
        aliases=tuple(t.aliases),
        weight=t.weight,
        timeouts=Timeouts(
            connect=to.connect, first_byte=to.first_byte, total=to.total, first_token=to.first_token
        ),
        price=Price(t.price.input_per_1k, t.price.output_per_1k) if t.price else None,
        max_concurrency=t.max_concurrency,
        max_queue=t.max_queue,
        queue_timeout=t.queue_timeout,
        headers=dict(t.headers),
        api_key_header=t.api_key_header,
        api_key_prefix=t.api_key_prefix,
    )


class AnyEnv(dict):  # type: ignore[type-arg]
    """An environment in which every variable is set.

    For checks of the files themselves (lint, migrate, offline policy tests): an unset key
    variable in the shell running them is not a problem of the config.
    """

    def get(self, key, default=None):  # type: ignore[no-untyped-def, override]
        return "set"

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        return "set"


def load_or_raise(paths: Sequence[str | Path]) -> tuple[GatewayConfig, list[Problem]]:
    """Return the config and its warnings, or raise ``ConfigError`` listing the errors."""
    config, problems = load_config(paths)
    if config is None:
        raise ConfigError([p for p in problems if p.severity == "error"] or problems)
    return config, problems
