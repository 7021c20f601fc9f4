"""``prompt-injection``: score each request in [0, 1] and block (or log) above a threshold.

The detector (``detectors.injection``) normalises text (NFKC, zero-width and homoglyph
folding, embedded base64/hex/URL payloads) and runs a trained classifier. By default it
scans what untrusted parties write: user messages and tool results (indirect injection),
not the operator's system prompt.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import Field, model_validator

from keeptrusts.context import RequestContext
from keeptrusts.policies.base import Policy, PolicyConfig, PolicyEnv, Verdict
from keeptrusts.policies.offload import run_detector
from keeptrusts.policies.registry import register
from keeptrusts.policies.text import request_slots

DEFAULT_MESSAGE = "Request blocked: potential prompt injection detected"


class ResponseConfig(PolicyConfig):
    action: Literal["block", "log"] = "block"
    message: str = DEFAULT_MESSAGE


class PromptInjectionConfig(PolicyConfig):
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    # Canonical spelling of `threshold`.
    embedding_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    action: Literal["block", "log"] | None = None
    response: ResponseConfig | None = None
    scan_roles: list[
        Literal["system", "developer", "user", "assistant", "tool", "tool_call_arguments"]
    ] = Field(default_factory=lambda: ["user", "tool"])

    @model_validator(mode="after")
    def _one_spelling(self) -> PromptInjectionConfig:
        both = self.threshold is not None and self.embedding_threshold is not None
        if both and self.threshold != self.embedding_threshold:
            raise ValueError("set threshold or embedding_threshold, not both")
        if self.action and self.response and self.action != self.response.action:
            raise ValueError("action and response.action disagree")
        return self

    @property
    def effective_threshold(self) -> float:
        return next((t for t in (self.threshold, self.embedding_threshold) if t is not None), 0.8)

    @property
    def effective_action(self) -> str:
        return self.action or (self.response.action if self.response else "block")


def max_score(texts: list[str]) -> float:
    """The highest injection score of ``texts``; a module-level function of plain values so
    that a long request can be scored in the scan process (``policies.offload``)."""
    from keeptrusts.detectors.injection import InjectionDetector

    detector = InjectionDetector.load()  # one per process, loaded once
    return max(
        (
            _recent_score(detector, t) if len(t) <= CACHE_MAX_CHARS else detector.score(t)
            for t in texts
        ),
        default=0.0,
    )


# Scores by exact text, per process: a chat sends its earlier turns again with every
# request (the answer does not change, so neither does their score). Only short texts are
# kept, which bounds the memory to a few MB.
CACHE_ENTRIES = 1024
CACHE_MAX_CHARS = 2000


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def _recent_score(detector: Any, text: str) -> float:
    return float(detector.score(text))


@register("prompt-injection")
class PromptInjection(Policy):
    Config = PromptInjectionConfig
    phases = frozenset({"input"})

    def __init__(self, config: PromptInjectionConfig, env: PolicyEnv) -> None:
        super().__init__(config, env)
        from keeptrusts.detectors.injection import InjectionDetector

        self.detector = InjectionDetector.load()
        self.threshold = config.effective_threshold
        self.action = config.effective_action
        self.message = config.response.message if config.response else DEFAULT_MESSAGE
        self.roles = frozenset(config.scan_roles)

    async def on_request(self, ctx: RequestContext) -> Verdict:
        texts = [s.text for s in request_slots(ctx.body) if s.where in self.roles and s.text]
        size = sum(len(t) for t in texts)
        score = round(await run_detector(self.env, size, max_score, texts), 4)
        if score < self.threshold:
            return Verdict.allow(score=score)
        message = f"{self.message} (score {score:.2f} >= {self.threshold})"
        if self.action == "log":
            return Verdict.log(message, reason_code="prompt_injection_detected", score=score)
        return Verdict.block(message, reason_code="prompt_injection_detected", score=score)
