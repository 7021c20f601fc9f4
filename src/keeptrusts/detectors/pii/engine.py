"""The analysis engine: run recognizers, apply context words, thresholds, and resolve overlaps.

The engine knows recognizers only through the :class:`Recognizer` interface (``analyze``,
``entity``, ``context``, ``negative_context``, ``context_boost``); it names none of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from keeptrusts.detectors.base import Finding
from keeptrusts.detectors.pii.recognizer import Recognizer

DEFAULT_THRESHOLD = 0.5
CONTEXT_WINDOW = 40  # characters before a match searched for context words (about five words)


_WORD_RUN = re.compile(r"\w+")

# How a recognizer's context words are looked for in the window before a match.
ContextMatcher = frozenset[str] | re.Pattern[str]


@lru_cache(maxsize=256)
def _context_matcher(words: tuple[str, ...]) -> ContextMatcher | None:
    r"""The regex ``(?<!\w)(?:word|...)(?!\w)``, or, when every word is made of word
    characters only (as all built-in ones are), the words as a set: the regex then matches
    exactly when a whole run of word characters in the window is one of the words, and
    comparing the window's runs with a set is several times faster than the regex."""
    if not words:
        return None
    if all(_WORD_RUN.fullmatch(w) for w in words):
        return frozenset(words)
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)")


def _mentions(matcher: ContextMatcher, window: str, runs: list[str]) -> bool:
    if isinstance(matcher, frozenset):
        return not matcher.isdisjoint(runs)
    return matcher.search(window) is not None


def context_delta(text: str, recognizer: Recognizer, start: int) -> float:
    """How the context words before ``start`` move a score: ``-context_boost`` when a negative
    word is there, else ``+context_boost`` when a positive one is, else 0."""
    pos = _context_matcher(tuple(recognizer.context))
    neg = _context_matcher(tuple(recognizer.negative_context))
    if pos is None and neg is None:
        return 0.0
    window = text[max(0, start - CONTEXT_WINDOW) : start].lower()
    runs = _WORD_RUN.findall(window)
    if neg is not None and _mentions(neg, window, runs):
        return -recognizer.context_boost
    if pos is not None and _mentions(pos, window, runs):
        return recognizer.context_boost
    return 0.0


def lowest_delta(recognizer: Recognizer) -> float:
    """The lowest :func:`context_delta` ``recognizer`` can get."""
    return -recognizer.context_boost if recognizer.negative_context else 0.0


def adjusted_score(score: float, delta: float) -> float:
    """``score`` moved by a :func:`context_delta`, kept within [0, 1]. Monotonic in ``score``
    (float addition is), so a recognizer may apply it to its best possible base score to learn
    that a candidate cannot reach the threshold (``Recognizer.analyze_above``)."""
    return min(1.0, max(0.0, score + delta))


def apply_context(text: str, recognizer: Recognizer, findings: list[Finding]) -> list[Finding]:
    """Raise a finding's score when a context word precedes it; lower it for a negative one."""
    if not recognizer.context and not recognizer.negative_context:
        return findings
    out = []
    for f in findings:
        score = adjusted_score(f.score, context_delta(text, recognizer, f.start))
        out.append(f if score == f.score else Finding(f.entity, f.start, f.end, score, f.detector))
    return out


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep a set of non-overlapping findings: higher score first, then the longer span.

    Identical spans of the same entity from different recognizers collapse into one.
    """
    ranked = sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start, f.entity))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: (f.start, f.end))
    return kept


def analyze(
    text: str,
    recognizers: Iterable[Recognizer],
    thresholds: Mapping[str, float],
    default_threshold: float = DEFAULT_THRESHOLD,
) -> list[Finding]:
    """Run ``recognizers`` on ``text``; keep findings at or above their entity's threshold."""
    if not text:
        return []
    candidates: list[Finding] = []
    for recognizer in recognizers:
        threshold = thresholds.get(recognizer.entity, default_threshold)
        found = recognizer.analyze_above(text, threshold)
        if found:
            found = apply_context(text, recognizer, found)
            candidates.extend(
                f for f in found if f.score >= thresholds.get(f.entity, default_threshold)
            )
    return resolve_overlaps(candidates)
