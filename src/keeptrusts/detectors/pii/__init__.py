"""PII detection: Presidio-shaped recognizers behind one registry, and an engine.

Entities (Presidio names): PERSON, EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, US_SSN, IBAN_CODE,
IP_ADDRESS, plus any user ``detect_patterns``. Everything runs offline in pure Python; the only
run-time dependency is ``phonenumbers``. Scores are in [0, 1]; each entity has its own default
threshold (a single global threshold silently drops phone numbers, whose base scores are lower).

>>> analyzer = PiiAnalyzer(entities=["EMAIL_ADDRESS", "PHONE_NUMBER"])
>>> [(f.entity, f.start, f.end) for f in analyzer.analyze("mail a.b@example.org")]
[('EMAIL_ADDRESS', 5, 20)]

A :class:`PiiAnalyzer` is immutable after construction and safe to share between threads.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from keeptrusts.detectors.base import Finding
from keeptrusts.detectors.pii.engine import analyze as _analyze
from keeptrusts.detectors.pii.engine import resolve_overlaps
from keeptrusts.detectors.pii.recognizer import CustomPatternRecognizer, Recognizer
from keeptrusts.detectors.pii.registry import DEFAULT_REGISTRY, RecognizerRegistry

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Finding",
    "PiiAnalyzer",
    "RecognizerRegistry",
    "analyze",
    "resolve_overlaps",
    "supported_entities",
]

DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "PERSON": 0.4,
    "EMAIL_ADDRESS": 0.5,
    "PHONE_NUMBER": 0.4,
    "CREDIT_CARD": 0.5,
    "US_SSN": 0.5,
    "IBAN_CODE": 0.5,
    "IP_ADDRESS": 0.5,
}
CUSTOM_PATTERN_THRESHOLD = 0.5
# Recent texts' findings kept per analyzer (``analyze(text, cache=True)``).
CACHE_ENTRIES = 1024
CACHE_MAX_CHARS = 2000


def supported_entities() -> list[str]:
    """The built-in entity names a policy may configure."""
    return DEFAULT_REGISTRY.supported_entities()


class PiiAnalyzer:
    """Finds the configured PII entities in text.

    ``entities``: built-in entity names (see :func:`supported_entities`).
    ``thresholds``: per-entity minimum score, overriding :data:`DEFAULT_THRESHOLDS`.
    ``extra_patterns``: ``(name, regex)`` pairs; each match is a finding of entity ``name``
    with score 1.0.
    """

    def __init__(
        self,
        *,
        entities: list[str],
        thresholds: dict[str, float] | None = None,
        extra_patterns: list[tuple[str, str]] | None = None,
        registry: RecognizerRegistry | None = None,
    ) -> None:
        registry = registry or DEFAULT_REGISTRY
        if isinstance(entities, str):
            raise TypeError("entities must be a list of entity names, not a string")
        self.entities: tuple[str, ...] = tuple(dict.fromkeys(entities))
        recognizers: list[Recognizer] = registry.recognizers(list(self.entities))
        custom = [CustomPatternRecognizer(name, regex) for name, regex in extra_patterns or ()]
        recognizers.extend(custom)
        known = set(self.entities) | {c.entity for c in custom}
        merged = {e: DEFAULT_THRESHOLDS.get(e, CUSTOM_PATTERN_THRESHOLD) for e in known}
        for entity, value in (thresholds or {}).items():
            if entity not in known:
                raise ValueError(
                    f"threshold given for {entity!r}, which is not configured; "
                    f"configured: {', '.join(sorted(known))}"
                )
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"threshold for {entity!r} must be within [0, 1], got {value}")
            merged[entity] = float(value)
        self.thresholds: Mapping[str, float] = merged
        self._recognizers: tuple[Recognizer, ...] = tuple(recognizers)
        self._recent = functools.lru_cache(maxsize=CACHE_ENTRIES)(self._findings)

    def analyze(self, text: str, *, cache: bool = False) -> list[Finding]:
        """Non-overlapping findings in ``text``, ordered by position.

        ``cache``: the text is likely to come back (a system prompt, an earlier turn of a
        chat), so look it up among the recent ones first. Only texts up to
        ``CACHE_MAX_CHARS`` are kept, which bounds the memory to a few MB.
        """
        if cache and len(text) <= CACHE_MAX_CHARS:
            return list(self._recent(text))
        return _analyze(text, self._recognizers, self.thresholds)

    def _findings(self, text: str) -> tuple[Finding, ...]:
        return tuple(_analyze(text, self._recognizers, self.thresholds))


def analyze(
    text: str,
    entities: list[str],
    thresholds: dict[str, float] | None = None,
) -> list[Finding]:
    """One-shot helper: ``PiiAnalyzer(entities=..., thresholds=...).analyze(text)``."""
    return PiiAnalyzer(entities=entities, thresholds=thresholds).analyze(text)
