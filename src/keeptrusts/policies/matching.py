"""Shared machinery for pattern policies: linear-time regexes and a stream hold-back filter."""

from __future__ import annotations

import re._constants as _sre_constants  # Python's own regex parser: widths of a pattern
import re._parser as _sre_parser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import re2

from keeptrusts.policies.base import ALLOW, StreamFilter, Verdict

ActionName = Literal["block", "redact"]
# How much text a stream filter may hold back so a match spanning chunks is seen whole.
DEFAULT_STREAM_HOLD = 256
# Released text a stream filter still scans as the left context of what it holds.
LEFT_CONTEXT = 32


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


def hold_for(patterns: Sequence[str], *, cap: int) -> int:
    """How much trailing text a stream filter over ``patterns`` must hold back, at most
    ``cap``: enough for any not-yet-matching start of a match.

    A match that reaches the end of the text seen so far is held whole anyway (it may still
    grow), so what the window must cover is a match's start before it matches: all of a
    bounded pattern, or, for a pattern ending in an unbounded repeat of one character class
    (``(sk-|gsk_)[a-zA-Z0-9]+``), the part before it plus the repeats it requires. Anything
    else (or a pattern Python's parser cannot read) needs ``cap``.
    """
    need = 1
    for pattern in patterns:
        width = _start_width(pattern)
        if width is None:
            return cap
        need = max(need, width + 1)
    return min(need, cap)


def _start_width(pattern: str) -> int | None:
    try:
        tree = _sre_parser.parse(pattern)
    except Exception:  # RE2 syntax Python does not read: no claim
        return None
    hi = tree.getwidth()[1]
    if hi < _sre_constants.MAXREPEAT:
        return int(hi)
    items = list(tree)
    if not items:
        return None
    op, av = items[-1]
    if op not in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT):
        return None
    min_reps, _, body = av
    body_lo, body_hi = body.getwidth() if hasattr(body, "getwidth") else (1, 1)
    if (body_lo, body_hi) != (1, 1):
        return None  # the repeat is not of one character
    head = _sre_parser.SubPattern(tree.state, items[:-1])
    head_hi = head.getwidth()[1]
    if head_hi >= _sre_constants.MAXREPEAT:
        return None
    return int(head_hi) + max(int(min_reps) - 1, 0)


class HoldBackFilter(StreamFilter):
    """Stream filter over a matcher: releases text only once no match can still grow into it.

    ``scan(text)`` returns matches; ``decide(matches)`` returns a block verdict or None;
    ``rewrite(text, matches)`` returns the text to release.

    The last ``max_hold`` characters stay held. Text is scanned only when at least ``step``
    characters could be released (or at the end): scanning the held window on every chunk
    (often one token) cost more than the rest of a stream's handling. Nothing is released
    unscanned, so a block still comes before any of the text that caused it. The scan also
    sees the last ``LEFT_CONTEXT`` released characters, so ``\\b`` and a name's preceding
    words read as in the whole text; a match starting there was already decided.
    """

    def __init__(
        self,
        scan: Callable[[str], list[Match]],
        decide: Callable[[list[Match]], Verdict | None],
        rewrite: Callable[[str, list[Match]], str],
        redact_verdict: Callable[[list[Match]], Verdict],
        max_hold: int = DEFAULT_STREAM_HOLD,
        step: int | None = None,
    ) -> None:
        self.scan = scan
        self.decide = decide
        self.rewrite = rewrite
        self.redact_verdict = redact_verdict
        self.max_hold = max_hold
        self.step = step if step is not None else max(8, max_hold // 8)
        self._buf = ""
        self._left = ""  # the end of what was released, for context

    def feed(self, text: str, final: bool) -> tuple[str, Verdict]:
        buf = self._buf + text
        if not final and len(buf) < self.max_hold + self.step:
            self._buf = buf
            return "", ALLOW
        left = self._left
        matches = self.scan(left + buf)
        if left:
            shift = len(left)
            matches = [
                Match(m.rule, m.start - shift, m.end - shift) for m in matches if m.start >= shift
            ]
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
        self._left = (left + buf[:cut])[-LEFT_CONTEXT:]
        return out, (self.redact_verdict(released) if released else ALLOW)
