"""The policy seam: a policy is a small class with request, response and stream hooks.

Policies return a ``Verdict``; they never call the next policy, and they do not raise to
block. The chain (``policies.chain``) owns order, short-circuit, timing, timeouts and
fail-mode, and records every policy's result, ``skipped`` included.

Hooks:
- ``on_request(ctx)``: input phase, before the upstream call. Redacting policies rewrite the
  request's text in place through ``policies.text`` and return ``Verdict.redact``.
- ``on_response(ctx, response)``: output phase, on a complete ``chat.completion``.
- ``stream_filter(ctx)``: output phase of a stream. Returns a fresh per-stream
  ``StreamFilter`` (or None to skip streams, only for input-only policies).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from concurrent.futures import Executor
    from pathlib import Path

    from keeptrusts.context import RequestContext


class Action(enum.Enum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"
    LOG = "log"  # allowed, but something worth recording was found


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    # What was found, for people: names the kind of finding, never the matched value.
    message: str | None = None
    reason_code: str | None = None
    # For blocks: the error code and HTTP status the client gets.
    code: str | None = None
    status: int = 409
    findings: Mapping[str, int] = field(default_factory=dict)
    score: float | None = None

    @classmethod
    def allow(cls, *, score: float | None = None) -> Verdict:
        return ALLOW if score is None else cls(Action.ALLOW, score=score)

    @classmethod
    def block(
        cls,
        message: str,
        *,
        reason_code: str,
        code: str | None = None,
        status: int = 409,
        findings: Mapping[str, int] | None = None,
        score: float | None = None,
    ) -> Verdict:
        return cls(Action.BLOCK, message, reason_code, code, status, dict(findings or {}), score)

    @classmethod
    def redact(cls, findings: Mapping[str, int], *, reason_code: str) -> Verdict:
        return cls(Action.REDACT, reason_code=reason_code, findings=dict(findings))

    @classmethod
    def log(cls, message: str, *, reason_code: str, score: float | None = None) -> Verdict:
        return cls(Action.LOG, message, reason_code, score=score)


ALLOW = Verdict(Action.ALLOW)


class PolicyConfig(BaseModel):
    """Base for each policy's config model: strict, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


@dataclass(frozen=True, slots=True)
class PolicyEnv:
    """What the gateway lends policies: shared, read-only services."""

    state_dir: Path
    executor: Executor | None = None
    services: Mapping[str, Any] = field(default_factory=dict)


class StreamFilter:
    """Per-stream state for one output text stream (a choice's content or tool arguments).

    ``feed`` gets the next piece of text and returns the text that is now safe to send,
    possibly rewritten, plus a verdict. It may hold text back (at most ``max_hold`` chars,
    e.g. so a match that spans chunks is redacted whole); ``final=True`` flushes.
    """

    max_hold: int = 0

    def feed(self, text: str, final: bool) -> tuple[str, Verdict]:
        return text, ALLOW


class Policy:
    name: ClassVar[str]
    Config: ClassVar[type[PolicyConfig]] = PolicyConfig
    phases: ClassVar[frozenset[str]] = frozenset({"input", "output"})
    # Upper bound for one hook; past it the chain applies --fail-mode. A policy whose
    # config makes it slower (prompt-injection's deep layer) raises it per instance.
    timeout_s: float = 2.0

    def __init__(self, config: PolicyConfig, env: PolicyEnv) -> None:
        self.config = config
        self.env = env

    async def on_request(self, ctx: RequestContext) -> Verdict:
        return ALLOW

    async def on_response(self, ctx: RequestContext, response: dict[str, Any]) -> Verdict:
        return ALLOW

    def stream_filter(self, ctx: RequestContext) -> StreamFilter | None:
        return None

    async def close(self) -> None:
        """Release resources at shutdown."""
