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


@lru_cache(maxsize=256)
def _context_regex(words: tuple[str, ...]) -> re.Pattern[str] | None:
    if not words:
        return None
    alts = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)")


def apply_context(text: str, recognizer: Recognizer, findings: list[Finding]) -> list[Finding]:
    """Raise a finding's score when a context word precedes it; lower it for a negative one."""
    pos = _context_regex(tuple(recognizer.context))
    neg = _context_regex(tuple(recognizer.negative_context))
    if pos is None and neg is None:
        return findings
    out = []
    boost = recognizer.context_boost
    for f in findings:
        window = text[max(0, f.start - CONTEXT_WINDOW) : f.start].lower()
        score = f.score
        if neg is not None and neg.search(window):
            score -= boost
        elif pos is not None and pos.search(window):
            score += boost
        score = min(1.0, max(0.0, score))
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
        found = recognizer.analyze(text)
        if found:
            found = apply_context(text, recognizer, found)
            candidates.extend(
                f for f in found if f.score >= thresholds.get(f.entity, default_threshold)
            )
    return resolve_overlaps(candidates)
