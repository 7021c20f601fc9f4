"""Shared machinery for pattern policies: linear-time regexes and a stream hold-back filter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import re2

from keeptrusts.policies.base import ALLOW, StreamFilter, Verdict

ActionName = Literal["block", "redact"]
# How much text a stream filter may hold back so a match spanning chunks is seen whole.
DEFAULT_STREAM_HOLD = 256


def _options() -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False  # errors are reported to the user as config problems instead
    return opts


def compile_re2(pattern: str, *, ignore_case: bool = False) -> Any:
    """Compile with RE2 (linear time, no backtracking); ValueError says why it failed."""
    opts = _options()
    opts.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, opts)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"invalid or unsupported regex {pattern!r}: {detail}") from None


@dataclass(frozen=True, slots=True)
class Rule:
    """One named pattern and what to do when it matches."""

    name: str
    regex: Any
    action: ActionName


@dataclass(frozen=True, slots=True)
class Match:
    rule: Rule
    start: int
    end: int


def find(rules: Sequence[Rule], text: str) -> list[Match]:
    """Return non-overlapping matches, leftmost first, earlier rules winning ties."""
    found: list[Match] = []
    for rule in rules:
        for m in rule.regex.finditer(text):
            if m.end() > m.start():
                found.append(Match(rule, m.start(), m.end()))
    found.sort(key=lambda m: (m.start, -(m.end - m.start)))
    out: list[Match] = []
    last_end = -1
    for m in found:
        if m.start >= last_end:
            out.append(m)
            last_end = m.end
    return out


def apply(text: str, matches: Sequence[Match], marker: Callable[[Match], str]) -> str:
    """Replace each match with ``marker(match)``."""
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(marker(m))
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


def counts(matches: Sequence[Match]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in matches:
        out[m.rule.name] = out.get(m.rule.name, 0) + 1
    return out


class HoldBackFilter(StreamFilter):
    """Stream filter over a matcher: releases text only once no match can still grow into it.

    ``scan(text)`` returns matches; ``decide(matches)`` returns a block verdict or None;
    ``rewrite(text, matches)`` returns the text to release.
    """

    def __init__(
        self,
        scan: Callable[[str], list[Match]],
        decide: Callable[[list[Match]], Verdict | None],
        rewrite: Callable[[str, list[Match]], str],
        redact_verdict: Callable[[list[Match]], Verdict],
        max_hold: int = DEFAULT_STREAM_HOLD,
    ) -> None:
        self.scan = scan
        self.decide = decide
        self.rewrite = rewrite
        self.redact_verdict = redact_verdict
        self.max_hold = max_hold
        self._buf = ""

    def feed(self, text: str, final: bool) -> tuple[str, Verdict]:
        buf = self._buf + text
        matches = self.scan(buf)
        blocked = self.decide(matches)
        if blocked is not None:
            self._buf = ""
            return "", blocked
        cut = len(buf) if final else max(0, len(buf) - self.max_hold)
        for m in matches:
            # A match reaching into the held tail may still grow: hold it whole.
            if m.end > cut or (not final and m.end == len(buf)):
                cut = min(cut, m.start)
        released = [m for m in matches if m.end <= cut]
        out = self.rewrite(buf[:cut], released)
        self._buf = buf[cut:]
        return out, (self.redact_verdict(released) if released else ALLOW)
