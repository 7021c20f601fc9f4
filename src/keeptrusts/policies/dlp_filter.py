"""``dlp-filter``: block or redact configured patterns and blocked terms, in and out.

It has no built-in catalogue: it checks only what the config lists. Regexes run on RE2
(linear time), so no pattern can stall the gateway.
"""

from __future__ import annotations

from typing import Any

import re2
from pydantic import Field, field_validator, model_validator

from keeptrusts.context import RequestContext
from keeptrusts.policies.base import ALLOW, Policy, PolicyConfig, PolicyEnv, Verdict
from keeptrusts.policies.matching import (
    DEFAULT_STREAM_HOLD,
    ActionName,
    HoldBackFilter,
    Match,
    Rule,
    apply,
    compile_re2,
    counts,
    find,
    hold_for,
)
from keeptrusts.policies.registry import register
from keeptrusts.policies.text import request_slots, response_slots


class PatternConfig(PolicyConfig):
    name: str = Field(min_length=1)
    regex: str = Field(min_length=1)
    action: ActionName | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        compile_re2(v)
        return v


class DlpConfig(PolicyConfig):
    patterns: list[PatternConfig] = Field(default_factory=list)
    # Canonical Keeptrusts spelling: bare regexes, named by position.
    detect_patterns: list[str] = Field(default_factory=list)
    blocked_terms: list[str] = Field(default_factory=list)
    action: ActionName = "redact"
    stream_hold_chars: int = Field(default=DEFAULT_STREAM_HOLD, ge=16, le=65536)

    @field_validator("detect_patterns")
    @classmethod
    def _all_compile(cls, v: list[str]) -> list[str]:
        for regex in v:
            compile_re2(regex)
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> DlpConfig:
        names = [p.name for p in self.patterns]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"pattern names must be unique: {sorted(dupes)}")
        return self


def _term_regex(term: str) -> str:
    escaped = re2.escape(term)
    # Whole words where the term starts or ends with a word character.
    left = r"\b" if term[:1].isalnum() else ""
    right = r"\b" if term[-1:].isalnum() else ""
    return f"{left}{escaped}{right}"


@register("dlp-filter")
class DlpFilter(Policy):
    Config = DlpConfig

    def __init__(self, config: DlpConfig, env: PolicyEnv) -> None:
        super().__init__(config, env)
        rules = [
            Rule(p.name, compile_re2(p.regex), p.action or config.action) for p in config.patterns
        ]
        rules += [
            Rule(f"pattern-{i + 1}", compile_re2(r), config.action)
            for i, r in enumerate(config.detect_patterns)
        ]
        sources = [p.regex for p in config.patterns] + list(config.detect_patterns)
        if config.blocked_terms:
            alternation = "|".join(_term_regex(t) for t in config.blocked_terms if t)
            rules.append(Rule("blocked-term", compile_re2(alternation, ignore_case=True), "block"))
            sources.append(alternation)
        self.rules = tuple(rules)
        # Streams hold back what a match's start can span, when the patterns tell (the
        # seed's api-key pattern: 11 characters), never more than stream_hold_chars.
        self.hold = hold_for(sources, cap=config.stream_hold_chars)

    def _scan(self, text: str) -> list[Match]:
        return find(self.rules, text)

    def _decide(self, matches: list[Match]) -> Verdict | None:
        blocking = [m for m in matches if m.rule.action == "block"]
        if not blocking:
            return None
        names = ", ".join(sorted({m.rule.name for m in blocking}))
        return Verdict.block(
            f"Blocked by dlp-filter: content matched {names}",
            reason_code="dlp_pattern_matched",
            findings=counts(blocking),
        )

    @staticmethod
    def _rewrite(text: str, matches: list[Match]) -> str:
        return apply(text, matches, lambda m: f"[REDACTED:{m.rule.name}]")

    @staticmethod
    def _redacted(matches: list[Match]) -> Verdict:
        return Verdict.redact(counts(matches), reason_code="dlp_redacted")

    def _check(self, slots: list[Any]) -> Verdict:
        found: list[tuple[Any, list[Match]]] = []
        for slot in slots:
            matches = self._scan(slot.text)
            if matches:
                found.append((slot, matches))
        if not found:
            return ALLOW
        every = [m for _, ms in found for m in ms]
        blocked = self._decide(every)
        if blocked is not None:
            return blocked
        for slot, matches in found:
            slot.text = self._rewrite(slot.text, matches)
        return self._redacted(every)

    async def on_request(self, ctx: RequestContext) -> Verdict:
        return self._check(request_slots(ctx.body))

    async def on_response(self, ctx: RequestContext, response: dict[str, Any]) -> Verdict:
        return self._check(response_slots(response))

    def stream_filter(self, ctx: RequestContext) -> HoldBackFilter:
        return HoldBackFilter(self._scan, self._decide, self._rewrite, self._redacted, self.hold)
