"""Curated high-precision prompt-injection phrasings (stdlib ``re``).

These are the canonical instruction-override, prompt-extraction and jailbreak-persona
phrasings, in English, German, French, Spanish, Italian, Portuguese and Dutch. They
run on normalised text (after homoglyph folding and payload decoding), so simple
obfuscation does not hide them.

A match does not decide on its own: the detector adds ``PATTERN_BOOST`` to the
classifier's logit. A quoted phrase (``Is "ignore previous instructions" an
attack?``) is not counted, so questions *about* prompt injection stay benign unless
the classifier itself is confident.
"""

from __future__ import annotations

import re

from .literals import LiteralSet

__all__ = ["PATTERNS", "PATTERN_BOOST", "match_patterns"]

PATTERN_BOOST = 4.0

_PREV = (
    r"(?:previous|prior|above|earlier|preceding|former|initial|original|foregoing|"
    r"existing|current|system|developer|all)"
)
_RULES = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands|"
    r"orders|programming|constraints|restrictions|guardrails|policies|context)"
)

PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(rx, re.IGNORECASE)
    for name, rx in {
        "override:en": (
            rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon|set aside)\b"
            rf"(?:\s+\w+){{0,3}}?\s+{_PREV}\s+(?:\w+\s+){{0,2}}{_RULES}\b"
        ),
        "override-your:en": (
            r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+)?(?:of\s+)?your\s+"
            r"(?:\w+\s+)?(?:instructions|rules|guidelines|programming|restrictions|"
            r"safety\s+\w+|content\s+polic(?:y|ies)|training)\b"
        ),
        "new-instructions:en": (
            r"\b(?:your\s+new\s+(?:instructions|task|role)\s+(?:is|are)|"
            r"new\s+instructions\s*:|from\s+now\s+on,?\s+you\s+(?:will|are|must)\s+"
            r"(?:ignore|disregard|not\s+follow|have\s+no|be\s+free|act\s+without|respond\s+without))"
        ),
        "prompt-leak:en": (
            r"\b(?:reveal|print|show|output|repeat|display|leak|tell\s+me|give\s+me|dump|"
            r"write\s+out|spell\s+out)\s+(?:me\s+)?(?:all\s+)?(?:of\s+)?(?:your|the)\s+"
            r"(?:(?:full|entire|exact|complete|hidden|secret|initial|original|system|"
            r"developer|confidential)\s+){1,3}(?:prompt|instructions|message|directives)\b"
        ),
        "repeat-above:en": r"\brepeat\s+(?:the\s+)?(?:words|text|everything)\s+above\b",
        "dan:en": (
            r"\b(?:do\s+anything\s+now|you\s+are\s+(?:now\s+)?(?:DAN|jailbroken|"
            r"unrestricted|unfiltered|uncensored|free\s+from\s+(?:all\s+)?(?:restrictions|rules))|"
            r"(?:developer|god|jailbreak|DAN|unrestricted)\s+mode\s+(?:is\s+)?"
            r"(?:enabled|activated|on|engaged))\b"
        ),
        "no-rules:en": (
            r"\b(?:without|with\s+no|free\s+of|free\s+from|no\s+longer\s+(?:bound|restricted)\s+by)"
            r"\s+(?:any\s+)?(?:ethical|moral|content|safety|openai|censorship)\s+"
            r"(?:guidelines|restrictions|filters|policies|limits|rules|constraints)\b"
        ),
        "pwned": r"\bi\s+have\s+been\s+pwned\b",
        "override:de": (
            r"\b(?:ignorier\w*|vergiss|vergessen\s+sie|missachte\w*|überspring\w*)\s+"
            r"(?:\w+\s+){0,3}(?:vorherigen|bisherigen|obigen|vorangegangenen|vorigen|"
            r"ursprünglichen|alle[nm]?|deine[n]?)\s+(?:\w+\s+)?"
            r"(?:anweisungen|instruktionen|befehle|regeln|vorgaben|richtlinien|aufgaben)\b"
        ),
        "forget-all:de": r"\bvergiss\s+(?:einfach\s+)?alles\b",
        "prompt-leak:de": (
            r"\b(?:zeig\w*|gib|verrate\w*|nenne\w*|wiederhole\w*|drucke\w*)\s+(?:mir\s+)?"
            r"(?:\w+\s+){0,2}(?:system-?prompt|systemanweisung\w*|anfangsanweisung\w*|"
            r"ursprünglichen\s+anweisungen|geheimen\s+anweisungen)\b"
        ),
        "override:fr": (
            r"\b(?:ignore[rzs]?|oublie[rzs]?|néglige[rzs]?)\s+(?:\w+\s+){0,3}"
            r"(?:instructions|consignes|règles|directives)\s+(?:précédentes|antérieures|"
            r"ci-dessus|initiales)\b"
        ),
        "override:es": (
            r"\b(?:ignora\w*|olvida\w*|descarta\w*)\s+(?:\w+\s+){0,3}"
            r"(?:instrucciones|reglas|directrices|órdenes)\s+(?:anteriores|previas|"
            r"de\s+arriba|iniciales)\b"
        ),
        "override:it": (
            r"\b(?:ignora\w*|dimentica\w*)\s+(?:\w+\s+){0,3}"
            r"(?:istruzioni|regole|direttive)\s+(?:precedenti|iniziali|sopra)\b"
        ),
        "override:pt": (
            r"\b(?:ignore|ignora\w*|esqueça|esqueca)\s+(?:\w+\s+){0,3}"
            r"(?:instruções|instrucoes|regras|diretrizes)\s+(?:anteriores|prévias|iniciais)\b"
        ),
        "override:nl": (
            r"\b(?:negeer|vergeet)\s+(?:\w+\s+){0,3}"
            r"(?:instructies|regels|opdrachten)\b"
        ),
    }.items()
}

# Quoted spans: "...", “...”, «...», „...“, 「...」 and '...' (the last only when the
# quote marks are not apostrophes inside words).
_QUOTED_RE = re.compile(
    r"\"[^\"\n]{1,400}\"|“[^”\n]{1,400}”|„[^“”\n]{1,400}[“”]|«[^»\n]{1,400}»|‹[^›\n]{1,400}›|"
    r"「[^」\n]{1,400}」|『[^』\n]{1,400}』|‘[^’\n]{1,400}’|`[^`\n]{1,400}`|"
    r"(?<!\w)'[^'\n]{1,400}'(?!\w)"
)


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _QUOTED_RE.finditer(text)]


def _inside(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(a <= start and end <= b for a, b in spans)


# Cheap pre-filter: a pattern runs only if one of its literal stems occurs in the
# lower-cased text (one RE2 set match finds them all), so most benign text costs
# microseconds.
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "override:en": ("ignor", "disregard", "forget", "overrid", "bypass", "skip", "drop",
                    "abandon", "set aside"),
    "override-your:en": ("ignor", "disregard", "forget", "overrid", "bypass"),
    "new-instructions:en": ("new instructions", "your new", "from now on"),
    "prompt-leak:en": ("prompt", "instructions", "message", "directives"),
    "repeat-above:en": ("above",),
    "dan:en": ("anything now", "you are", "mode"),
    "no-rules:en": ("without", "with no", "free of", "free from", "no longer"),
    "pwned": ("pwned",),
    "override:de": ("ignorier", "vergiss", "vergessen", "missacht", "überspring"),
    "forget-all:de": ("vergiss",),
    "prompt-leak:de": ("prompt", "anweisung"),
    "override:fr": ("ignor", "oubli", "néglig"),
    "override:es": ("ignor", "olvid", "descart"),
    "override:it": ("ignor", "dimentic"),
    "override:pt": ("ignor", "esque"),
    "override:nl": ("negeer", "vergeet"),
}  # fmt: skip


# Every distinct trigger once (several patterns share stems such as "ignor"), and each
# pattern's triggers as a set of indices, so one pass serves all patterns.
_ALL_TRIGGERS = LiteralSet(t for ts in _TRIGGERS.values() for t in ts)
_TRIGGER_SETS: tuple[tuple[str, re.Pattern[str], frozenset[int]], ...] = tuple(
    (name, rx, frozenset(_ALL_TRIGGERS.index[t] for t in _TRIGGERS[name]))
    for name, rx in PATTERNS.items()
)


def match_patterns(text: str) -> list[str]:
    """Names of patterns that match ``text`` outside quotation marks."""
    hits: list[str] = []
    present = _ALL_TRIGGERS.found(text.lower())
    if not present:
        return hits
    spans: list[tuple[int, int]] | None = None
    for name, rx, triggers in _TRIGGER_SETS:
        if triggers.isdisjoint(present):
            continue
        for m in rx.finditer(text):
            if spans is None:
                spans = _quoted_spans(text)
            if not _inside(spans, m.start(), m.end()):
                hits.append(name)
                break
    return hits
