"""Recognizer base classes: a recognizer is mostly data, plus an optional ``validate()``.

A recognizer proposes candidate spans with a base score. It never applies thresholds and never
resolves overlaps: the engine (:mod:`keeptrusts.detectors.pii.engine`) does both, and it also
applies the context words a recognizer declares (``context`` raises the score when one of them
appears just before the match, ``negative_context`` lowers it).

All recognizers are immutable after construction, so one instance can be shared by threads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from keeptrusts.detectors.base import Finding


@dataclass(frozen=True, slots=True)
class Pattern:
    """One regular expression and the score of a match that passes validation."""

    name: str
    regex: str
    score: float


class Recognizer:
    """Base class. Subclasses set the class attributes and override :meth:`analyze`."""

    entity: str = ""
    name: str = ""
    # words that, found shortly before a match, raise (context) or lower (negative_context) the
    # score by ``context_boost``; the engine applies them.
    context: ClassVar[tuple[str, ...]] = ()
    negative_context: ClassVar[tuple[str, ...]] = ()
    context_boost: ClassVar[float] = 0.3

    def analyze(self, text: str) -> list[Finding]:  # pragma: no cover - interface
        raise NotImplementedError

    def analyze_above(self, text: str, min_score: float) -> list[Finding]:
        """What the engine calls: :meth:`analyze`, except that it may leave out candidates
        that cannot score ``min_score`` (the entity's threshold) even after the engine's
        context adjustment, so as to skip costly validation. The default leaves none out."""
        return self.analyze(text)


class PatternRecognizer(Recognizer):
    """Regex candidates, then :meth:`validate` (checksums and the like).

    ``validate`` returns ``True`` (keep, with the pattern score), ``False`` (drop) or a float
    (keep, with that score).
    """

    patterns: ClassVar[tuple[Pattern, ...]] = ()
    flags: ClassVar[int] = 0
    # What any match needs, checked before the patterns run (most text has no candidate):
    # one of these characters, at least this many digits, and a match of one of the
    # ``prefilters``, regexes such that every match of a pattern matches one of them. The
    # patterns open with look-behinds, which make ``re`` try every position; a short regex
    # opening with a character class (no alternation) is scanned two to five times faster.
    needs_any: ClassVar[str] = ""
    min_digits: ClassVar[int] = 0
    prefilters: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self._compiled = tuple(
            (p, re.compile(p.regex, self.flags | re.UNICODE)) for p in self.patterns
        )
        self._prefilters = tuple(re.compile(rx, self.flags) for rx in self.prefilters)

    def matches(self, text: str) -> Iterator[tuple[Pattern, re.Match[str]]]:
        for pattern, rx in self._compiled:
            for m in rx.finditer(text):
                yield pattern, m

    def validate(self, value: str, match: re.Match[str]) -> bool | float:
        return True

    def may_match(self, text: str) -> bool:
        """False when ``text`` cannot hold a match (a cheap, exact pre-check)."""
        if self.needs_any and not any(ch in text for ch in self.needs_any):
            return False
        if self.min_digits and not has_digits(text, self.min_digits):
            return False
        return not self._prefilters or any(rx.search(text) for rx in self._prefilters)

    def analyze(self, text: str) -> list[Finding]:
        if not self.may_match(text):
            return []
        out: list[Finding] = []
        seen: set[tuple[int, int]] = set()
        for pattern, m in self.matches(text):
            # a pattern may mark the value with a named group ``v`` (the rest is anchoring)
            start, end = m.span("v") if "v" in m.re.groupindex else m.span()
            if (start, end) in seen or start == end:
                continue
            verdict = self.validate(text[start:end], m)
            if verdict is False:
                continue
            score = pattern.score if verdict is True else float(verdict)
            seen.add((start, end))
            out.append(Finding(self.entity, start, end, score, self.name))
        return out


def has_digits(text: str, n: int) -> bool:
    """Whether ``text`` may hold ``n`` decimal digits: exact for ASCII text; other text may
    use other scripts' digits, which ``\\d`` matches too, so it always may."""
    if not text.isascii():
        return True
    return sum(map(text.count, "0123456789")) >= n


class CustomPatternRecognizer(Recognizer):
    """A user ``detect_patterns`` entry: ``(name, regex)``; every match scores 1.0.

    User patterns run on RE2 (linear time, so a user regex cannot stall the gateway) when
    ``google-re2`` is importable and accepts the pattern; otherwise on Python's ``re``.
    """

    def __init__(self, entity: str, regex: str) -> None:
        if not entity or not isinstance(entity, str):
            raise ValueError("a custom pattern needs a non-empty name")
        self.entity = entity
        self.name = f"pattern:{entity}"
        self._rx: Any = _compile_user_regex(regex)

    def analyze(self, text: str) -> list[Finding]:
        out = []
        for m in self._rx.finditer(text):
            start, end = m.span()
            if end > start:
                out.append(Finding(self.entity, start, end, 1.0, self.name))
        return out


def _compile_user_regex(regex: str) -> Any:
    try:
        import re2  # google-re2, a gateway dependency

        options = re2.Options()
        options.log_errors = False
        try:
            return re2.compile(regex, options)
        except Exception:
            pass  # a feature RE2 lacks (look-around, back-references): fall back to ``re``
    except ImportError:  # pragma: no cover - google-re2 is a declared dependency
        pass
    try:
        return re.compile(regex)
    except re.error as exc:
        raise ValueError(f"invalid detect pattern {regex!r}: {exc}") from exc
