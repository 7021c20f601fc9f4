"""PERSON: a name lexicon, cue words and a tiny logistic-regression span scorer. No NER model.

How it works:

1. Words are looked up in a lexicon of first and last names (``data/names.json``: popularity
   buckets for ~130k first and ~180k last names from 105 countries, and a list of common English
   words; see ``scripts/pii_build_names.py`` for the sources and their licences).
2. Consecutive name-like words (known names; unknown capitalised words; initials; particles
   such as "van der" or "bin") form a *run*; runs break at punctuation, line breaks and at a
   change between lower case and capitalised words. Stop-listed words (tools, products,
   companies, places, months; ``person_words.py``) never join a run.
3. Each run, and the run trimmed of unknown words at either end, is scored by a logistic
   regression over ~100 binary features: lexicon buckets of the first and last word, case
   pattern, common-word share, the words before (titles such as "Dr.", cues such as "my name
   is", "regards", "ask", or "the"/"using"/"in") and after ("said", "'s" versus "Station",
   "pipeline", "Inc", a version number). The best variant is reported with its probability as
   the score.

The weights (``data/person_model.json``) are trained by ``scripts/pii_train_person.py`` on
synthetic sentences built from its own templates, names from the lexicon's source and its own
negative vocabulary; the evaluation in ``scripts/eval_pii.py`` uses different templates, Faker
names and separately written hard negatives.

Scope: Latin-script names (including romanised Chinese, Japanese, Arabic and Indian names).
Names written in other scripts (CJK, Arabic, Devanagari, Cyrillic) are not detected.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from importlib import resources
from itertools import accumulate, compress, repeat
from operator import itemgetter
from typing import cast

from keeptrusts.detectors.base import Finding
from keeptrusts.detectors.pii import person_words as W
from keeptrusts.detectors.pii.recognizer import Recognizer

_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
# ``_WORD`` as a capturing group, for ``split``; and the same for ASCII text, where
# ``[^\W\d_]`` is ``[A-Za-z]`` and which ``re`` scans faster (a bitmap, not Unicode look-ups)
# The repetitions are possessive (``++``, ``*+``): the same matches, since nothing follows
# them that giving back a character could help match, but less backtracking state.
_SPLIT = re.compile(r"([^\W\d_]++(?:['’\-][^\W\d_]++)*+)")
_SPLIT_ASCII = re.compile(r"([A-Za-z]++(?:['\-][A-Za-z]++)*+)")
_SIMPLE_GAP = re.compile(r"[ \t]{1,3}")
_INITIAL_GAP = re.compile(r"\.[ \t]{0,3}")
_SENT_END = re.compile(r"[.!?\n]\W*$")
_CUE_RX = re.compile(
    r"(?:^|[^\w'])(?:"
    + "|".join(re.escape(c) for c in sorted(W.STRONG_CUES, key=len, reverse=True))
    + r")[\s,:\-]*$"
)
# ``_CUE_RX`` for the reversed window: the tail, a reversed cue, then a word boundary or the
# window's start. ``\Z``, not ``$``: ``_CUE_RX``'s ``$`` may also stop before a final line
# break, which its ``[\s,:\-]*`` can take in anyway.
_CUE_RX_REVERSED = re.compile(
    r"[\s,:\-]*(?:"
    + "|".join(re.escape(c[::-1]) for c in sorted(W.STRONG_CUES, key=len, reverse=True))
    + r")(?:[^\w']|\Z)"
)
_CONTRACTION = re.compile(r"['’](?:m|re|ve|ll|d|s|t)$|n['’]t$")
_GLUE = set("/_@#=\\.:+")

_LOWER_STOP = W.WEAK_CUES | W.NEGATIVE_PRECEDERS | W.LOCATION_PRECEDERS | W.PERSON_FOLLOWERS

_TRIM = _LOWER_STOP | W.FUNCTION_WORDS

# Left contexts that make a span a name on their own ("Dr.", "my name is").
_STRONG_LEFT_KINDS = frozenset({"title", "strong"})

# token kinds
CORE, WEAK, UNK, INIT, PART = 1, 2, 3, 4, 5
_NAME_KINDS = frozenset({CORE, WEAK, UNK})  # a span needs one of these: not only particles
# every value ``left_context`` and ``right_context`` can give ("poss" aside)
_STRONG_LEFTS = ("title", "strong")
_OTHER_LEFTS = ("sent", "neg", "place", "loc", "weak", "colon", "paren", "comma", "none")
_RIGHT_KINDS = ("num", "thing", "person", "comma", "paren", "end", "colon", "other", "none")


@dataclass(slots=True)
class Token:
    start: int
    end: int  # excludes a possessive 's
    key: str  # lower-cased, possessive stripped
    shape: str  # "T" title, "U" upper, "L" lower, "I" initial, "M" mixed
    fb: int  # first-name popularity bucket 0..5
    lb: int  # last-name popularity bucket 0..5
    common: bool
    kind: int  # 0 = not name-like
    possessive: bool
    prev_key: str = ""  # the word before (any word), lower-cased
    prev_end: int = -1  # where it ends; -1 for the first word of the text


class Lexicon:
    """Immutable name and common-word tables, loaded once per process."""

    def __init__(self, doc: dict) -> None:
        names: dict[str, int] = {}
        for field, shift in (("first", 3), ("last", 0)):
            for idx, blob in enumerate(doc[field]):
                b = idx + 1
                for name in blob.split():
                    cur = names.get(name, 0)
                    if ((cur >> shift) & 7) < b:
                        names[name] = (cur & ~(7 << shift)) | (b << shift)
        self.names = names
        self.common = frozenset(doc["common"].split())

    def buckets(self, key: str) -> tuple[int, int]:
        v = self.names.get(key)
        if v is None and "-" in key:  # "jean-pierre", "al-rashid", "smith-jones"
            fb = lb = 0
            for part in key.split("-"):
                if part in W.PARTICLES:
                    continue
                pv = self.names.get(part)
                if pv is None:
                    return 0, 0
                fb, lb = max(fb, pv >> 3), max(lb, pv & 7)
            return fb, lb
        return (v >> 3, v & 7) if v else (0, 0)


_LOCK = threading.Lock()
_LEXICON: Lexicon | None = None
_MODEL: dict | None = None


def _data(name: str) -> dict:
    ref = resources.files("keeptrusts.detectors.pii").joinpath("data", name)
    return json.loads(ref.read_text(encoding="utf-8"))


def load_lexicon() -> Lexicon:
    global _LEXICON
    if _LEXICON is None:
        with _LOCK:
            if _LEXICON is None:
                _LEXICON = Lexicon(_data("names.json"))
    return _LEXICON


def load_model() -> dict:
    global _MODEL
    if _MODEL is None:
        with _LOCK:
            if _MODEL is None:
                _MODEL = _data("person_model.json")
    return _MODEL


def _shape(word: str) -> str:
    if len(word) == 1:
        return "I" if word.isupper() else "L"
    if word.islower():
        return "L"
    if word.isupper():
        return "U"
    if word[0].isupper():
        return "T"
    return "M"


# A word's properties that do not depend on where it stands: (key, shape, first-name bucket,
# last-name bucket, common, kind). ``_INIT_IF_DOTTED`` marks a one-letter word that is an
# initial only if upper case or followed by a dot.
WordInfo = tuple[str, str, int, int, bool, int]
# What ``tokenize`` remembers of a word as matched (possibly with a possessive "'s"): its
# ``WordInfo``, its kind (repeated, the one field every word needs) and how many characters
# the possessive takes off its end (0 or 2).
WordEntry = tuple[WordInfo, int, int]
_INIT_IF_DOTTED = -1
# Words remembered per recognizer (most text is the same few thousand words); when full the
# table starts over, which bounds its memory at a few MB.
WORD_CACHE_SIZE = 50_000


def word_info(word: str, lex: Lexicon) -> WordInfo:
    """What the lexicon and word lists say about ``word`` (possessive already stripped)."""
    key = word.lower()
    shape = _shape(word)
    if key in lex.names or "-" in key:
        fb, lb = lex.buckets(key)
    else:
        fb = lb = 0
    is_common = key in lex.common or key in W.FUNCTION_WORDS or _CONTRACTION.search(key) is not None
    kind = 0
    if is_common and "'" in key:
        kind = 0  # "i'm", "don't", "it's"
    elif key in W.STOPLIST and shape in "TU" and lb >= 4:
        kind = CORE  # "Valencia", "London": a city, but also a common surname
    elif key in W.FUNCTION_WORDS or key in W.STOPLIST or key in W.TITLES:
        kind = 0
    elif shape == "L" and key in _LOWER_STOP:
        kind = 0  # "ask", "ping", "the": cue words, not names, when written in lower case
    elif key in W.THING_FOLLOWERS and max(fb, lb) < 3:
        kind = 0  # "Station", "Street", "Inc": ends a run, seen as right context
    elif shape == "U" and len(word) <= 3:
        kind = 0  # acronyms: "PR", "CEO", "API"
    elif key in W.PARTICLES and shape in "LT":
        kind = PART
    elif len(word) == 1:
        kind = _INIT_IF_DOTTED
    elif fb or lb:
        kind = WEAK if (is_common and shape == "L") else CORE
    elif not is_common and len(word) > 1 and shape != "M":
        kind = UNK
    elif shape == "M" and (fb or lb):
        kind = CORE
    return key, shape, fb, lb, is_common, kind


def word_entry(word: str, lex: Lexicon) -> WordEntry:
    """The ``WordEntry`` of ``word`` as ``_WORD`` matched it."""
    cut = 0
    if len(word) > 3 and word[-2] in "'’" and word[-1] in "sS":
        cut = 2  # a possessive: "Anna's" is "Anna", followed by "'s"
    info = word_info(word[: len(word) - cut], lex)
    return info, info[5], cut


def tokenize(text: str, lex: Lexicon, cache: dict[str, WordEntry] | None = None) -> list[Token]:
    """The name-like words of ``text`` (kind > 0), each knowing the word before it;
    ``cache`` remembers ``word_entry`` across calls.

    Other words matter only as the word before a name, or by breaking a run (a word between
    two name-like words makes their gap more than spaces), so they get no token: most words
    of ordinary text are not name-like. This runs on every word of every prompt and answer,
    so the words are split, looked up and sifted by C loops (``split``, ``map``,
    ``compress``); Python code runs only for the name-like words and for new words.
    """
    if cache is None:
        cache = {}
    # [gap, word, gap, word, ..., gap]: the same words as ``_WORD.finditer`` finds
    parts = (_SPLIT_ASCII if text.isascii() else _SPLIT).split(text)
    words = parts[1::2]
    entries: list[WordEntry | None] = list(map(cache.get, words))
    if None in entries:
        for i, entry in enumerate(entries):
            if entry is None:
                word = words[i]
                entries[i] = entry = word_entry(word, lex)
                if len(cache) >= WORD_CACHE_SIZE:
                    cache.clear()
                cache[word] = entry
    known = cast("list[WordEntry]", entries)
    ends = list(accumulate(map(len, parts)))  # word i spans ends[2i] .. ends[2i + 1]
    toks: list[Token] = []
    for i in compress(range(len(known)), map(itemgetter(1), known)):
        info, kind, cut = known[i]
        start, end = ends[2 * i], ends[2 * i + 1] - cut
        if kind == _INIT_IF_DOTTED:
            kind = INIT if info[1] == "I" or text[end : end + 1] == "." else 0
            if not kind:
                continue
        if i:
            prev = known[i - 1]
            prev_key, prev_end = prev[0][0], ends[2 * i - 1] - prev[2]
        else:
            prev_key, prev_end = "", -1
        key, shape, fb, lb, is_common, _ = info
        toks.append(
            Token(start, end, key, shape, fb, lb, is_common, kind, cut > 0, prev_key, prev_end)
        )
    return toks


def _family(t: Token) -> str:
    if t.kind in (PART, INIT):
        return ""
    return "L" if t.shape == "L" else "C"


def _joinable(text: str, a: Token, b: Token) -> bool:
    """Can ``b`` continue a run that ends with ``a``? Same case family, a plain gap."""
    if a.possessive or b.prev_end != a.end:
        return False  # a possessive, or another word between them
    gap = text[a.end : b.start]
    if not _SIMPLE_GAP.fullmatch(gap) and not (a.kind == INIT and _INITIAL_GAP.fullmatch(gap)):
        return False
    fa, fb = _family(a), _family(b)
    return not fa or not fb or fa == fb


def runs(text: str, toks: list[Token]) -> list[tuple[int, int]]:
    """Maximal runs of name-like tokens: (first index, last index), inclusive."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(toks)
    while i < n:
        if not toks[i].kind:
            i += 1
            continue
        j = i
        while j + 1 < n and toks[j + 1].kind and _joinable(text, toks[j], toks[j + 1]):
            j += 1
        a, b = i, j
        while a <= b and toks[a].kind == PART:
            if toks[a].shape == "T" and b > a:
                break
            a += 1
        while b >= a and toks[b].kind == PART:
            b -= 1
        if a <= b:
            out.append((a, b))
        i = j + 1
    return out


def _prev_word(text: str, toks: list[Token], a: int) -> tuple[str, str]:
    """The word before token ``a`` and the text between them."""
    t = toks[a]
    if t.prev_end < 0:
        return "", text[: t.start]
    return t.prev_key, text[t.prev_end : t.start]


def strong_left(text: str, toks: list[Token], a: int) -> str:
    """The part of :func:`left_context` that makes a span a name on its own: "title",
    "strong", or "" when neither."""
    first = toks[a]
    prev, gap = _prev_word(text, toks, a)
    if prev in W.TITLES and gap.strip() in ("", "."):
        return "title"
    # ``_CUE_RX.search(window)``, run backwards from the window's end: one anchored match
    # instead of an attempt at every position
    window = text[max(0, first.start - 28) : first.start].lower()
    if _CUE_RX_REVERSED.match(window[::-1]):
        return "strong"
    return ""


def left_context(text: str, toks: list[Token], a: int, strong: str | None = None) -> str:
    """What stands before token ``a``: a title, a strong cue, a sentence start, ...
    ``strong``: its :func:`strong_left`, when already known."""
    if strong is None:
        strong = strong_left(text, toks, a)
    if strong:
        return strong
    first = toks[a]
    prev, gap = _prev_word(text, toks, a)
    if (first.prev_end < 0 and not gap.strip()) or _SENT_END.search(
        text[max(0, first.start - 6) : first.start] or "\n"
    ):
        return "sent"
    if prev in W.NEGATIVE_PRECEDERS and not gap.strip():
        return "neg"
    if prev in W.PLACE_PREFIXES and not gap.strip():
        return "place"
    if prev in W.LOCATION_PRECEDERS and not gap.strip():
        return "loc"
    if prev in W.WEAK_CUES and gap.strip() in ("", ":"):
        return "weak"
    if prev in W.THING_FOLLOWERS and not gap.strip():
        return "place"  # "Fundacja Kut", "Grupo Herrera"
    if ":" in gap:
        return "colon"
    if "(" in gap or "[" in gap:
        return "paren"
    if "," in gap:
        return "comma"
    return "none"


def right_context(text: str, toks: list[Token], b: int) -> str:
    """What follows token ``b``: a possessive ("poss"), a number, a thing word, ..."""
    last = toks[b]
    if last.possessive:
        return "poss"
    rest = text[last.end : last.end + 24]
    stripped = rest.lstrip(" \t")
    m = _WORD.match(stripped)
    nxt = m.group().lower() if m else ""
    between = rest[: len(rest) - len(stripped)]
    if stripped[:1].isdigit() or stripped[:2].lower() in ("v1", "v2", "v3", "v4"):
        return "num"
    if m and m.start() == 0 and nxt in W.THING_FOLLOWERS:
        return "thing"
    if m and m.start() == 0 and nxt in W.PERSON_FOLLOWERS:
        return "person"
    if stripped[:1] in (",", ";", ")"):
        return "comma"
    if stripped[:1] in ("(", "<", "[") or (stripped[:1] == "-" and "@" in rest):
        return "paren"
    if stripped[:1] in (".", "!", "?", "\n") or not stripped:
        return "end"
    if stripped[:1] == ":":
        return "colon"
    if not between and m is None:
        return "other"
    return "none"


def span_case(span: list[Token]) -> str:
    """The case of a span's words (particles and initials aside): lower, title, upper, mixed."""
    shapes = {t.shape for t in span if t.kind not in (PART, INIT)}
    if shapes == {"L"}:
        return "lower"
    if shapes <= {"T"}:
        return "title"
    if shapes == {"U"}:
        return "upper"
    return "mixed"


def features(
    text: str,
    toks: list[Token],
    a: int,
    b: int,
    left: str | None = None,
    right: str | None = None,
) -> list[str]:
    """The scorer's features of the span ``toks[a..b]``; ``left`` and ``right`` are its
    ``left_context`` and ``right_context`` when already known (they depend on one end)."""
    span = toks[a : b + 1]
    n = len(span)
    first, last = span[0], span[-1]
    f = [f"n{min(n, 4)}"]
    kinds = [t.kind for t in span]
    n_unk, n_weak = kinds.count(UNK), kinds.count(WEAK)
    if n == 1:
        f += [f"s_fb{first.fb}", f"s_lb{first.lb}"]
        if first.fb >= first.lb + 2:
            f.append("s_dom_first")
        elif first.lb >= first.fb + 2:
            f.append("s_dom_last")
        if first.common:
            f.append("s_common")
    else:
        f += [f"m_fb{first.fb}", f"m_lb{last.lb}"]
        rest_fb = max(t.fb for t in span[1:])
        f.append(f"m_restfb{min(rest_fb, 3)}")
        f.append(f"m_firstlb{min(first.lb, 3)}")
        if first.common:
            f.append("m_first_common")
        if last.common:
            f.append("m_last_common")
        f.append(f"m_ncore{min(kinds.count(CORE), 3)}")
    if n_unk:
        f.append(f"unk{min(n_unk, 2)}")
        if first.kind == UNK:
            f.append("unk_first")
        if last.kind == UNK:
            f.append("unk_last")
    if n_weak:
        f.append(f"weak{min(n_weak, 2)}")
    if INIT in kinds:
        f.append("init")
        if last.kind == INIT:
            f.append("init_last")
    if last.key in W.THING_FOLLOWERS:
        f.append("thing_last")
    if first.key in W.PLACE_PREFIXES:
        f.append("place_first")
    if PART in kinds:
        f.append("particle")
    if any("-" in t.key for t in span):
        f.append("hyphen")
    if any(_ambiguous(t) for t in span):
        f.append("amb1" if n == 1 else "amb_multi")
    case = span_case(span)
    f.append(f"case_{case}")
    if n == 1 and first.shape == "T" and first.fb == 0 and first.lb == 0:
        f.append("s_title_unknown")

    # left context
    if left is None:
        left = left_context(text, toks, a)
    f.append(f"L_{left}")
    f.append(f"L_{left}_{case}")
    f.append(f"L_{left}_n{min(n, 2)}")
    if n == 1:
        f.append(f"L_{left}_s_fb{min(first.fb, 5) // 2}")
    before = text[first.start - 1] if first.start else " "
    after = text[last.end] if last.end < len(text) else " "
    if before in _GLUE or (
        after in _GLUE
        and not (after in ".:" and (last.end + 1 >= len(text) or text[last.end + 1].isspace()))
    ):
        f.append("glued")
    if before.isdigit() or after.isdigit():
        f.append("glued")

    # right context
    if right is None:
        right = right_context(text, toks, b)
    if right == "poss":
        f.append("R_poss")
    else:
        f.append(f"R_{right}")
        f.append(f"R_{right}_n{min(n, 2)}")
    return f


def _unclear(head: Token, top_bucket: int) -> bool:
    """Whether a lower-case span starting with ``head``, whose words' best lexicon bucket is
    ``top_bucket``, is too weak a name to stand without a cue."""
    return top_bucket < 2 or (head.common and head.fb < 3)


def _ambiguous(t: Token) -> bool:
    """A product or place name that is also a person name: never a PERSON on its own."""
    return t.key in W.AMBIGUOUS or t.key in W.STOPLIST


def variants(toks: list[Token], a: int, b: int) -> list[tuple[int, int]]:
    """The run, and the run trimmed of up to three weak words at either end (unknown words,
    common words, cue words such as a capitalised "Call"); the scorer picks the best."""

    def weak_left(t: Token) -> bool:
        return t.kind in (UNK, WEAK, PART, INIT) or t.key in _TRIM or t.common

    def weak_right(t: Token) -> bool:
        return t.kind in (UNK, WEAK, PART) or t.key in _TRIM or t.common

    starts = [a]
    while starts[-1] < b and len(starts) < 4 and weak_left(toks[starts[-1]]):
        starts.append(starts[-1] + 1)
    ends = [b]
    while ends[-1] > a and len(ends) < 4 and weak_right(toks[ends[-1]]):
        ends.append(ends[-1] - 1)
    out = [(x, y) for x in starts for y in ends if x <= y]
    if b - a + 1 > 4:  # long run: also try the first and last two words
        out += [(a, a + 1), (b - 1, b)]
    return out


class PersonRecognizer(Recognizer):
    entity = "PERSON"
    name = "person"

    def __init__(self, lexicon: Lexicon | None = None, model: dict | None = None) -> None:
        self.lexicon = lexicon or load_lexicon()
        self._words: dict[str, WordEntry] = {}
        self._lone_cache: dict[tuple[str, str, int, bool], tuple[bool, float]] = {}
        m = model or load_model()
        self.weights: dict[str, float] = m["weights"]
        self.bias: float = m["bias"]

    def score(self, feats: list[str]) -> float:
        z = self.bias + sum(map(self.weights.get, feats, repeat(0.0)))
        return 1.0 / (1.0 + math.exp(-z))

    def candidates(self, text: str) -> list[tuple[int, int, float, list[str]]]:
        """Every scored variant of every run: (start, end, score, features)."""
        toks = tokenize(text, self.lexicon, self._words)
        out = []
        for a, b in runs(text, toks):
            for x, y in variants(toks, a, b):
                feats = features(text, toks, x, y)
                out.append((toks[x].start, toks[y].end, self.score(feats), feats))
        return out

    def analyze(self, text: str) -> list[Finding]:
        return self.analyze_above(text, 0.0)

    def _lone(self, t: Token) -> tuple[bool, float, float]:
        """For a one-token span of ``t``'s kind: whether it needs a title or strong cue
        before it, and the scores it cannot exceed with such a cue and without one,
        wherever it stands (remembered per word)."""
        sig = (t.key, t.shape, t.kind, t.possessive)
        got = self._lone_cache.get(sig)
        if got is None:
            needs_cue = _ambiguous(t) or (t.shape == "L" and _unclear(t, max(t.fb, t.lb)))
            got = (
                needs_cue,
                self._lone_bound(t, _STRONG_LEFTS),
                self._lone_bound(t, _OTHER_LEFTS),
            )
            if len(self._lone_cache) >= WORD_CACHE_SIZE:
                self._lone_cache.clear()
            self._lone_cache[sig] = got
        return got

    def _lone_bound(self, t: Token, lefts: tuple[str, ...]) -> float:
        """An upper bound on ``score(features(text, toks, i, i, left, right))`` for a token
        like ``t`` over every text, right context and ``left`` in ``lefts``: the features of
        a one-token span are those of the word, plus those of its left context, plus
        "glued" (at most twice), plus those of its right context; so the bound is the
        word's weight plus the best of each part. A little is added for the sums'
        rounding."""
        w = self.weights.get
        tok = Token(1, 1 + t.end - t.start, t.key, t.shape, t.fb, t.lb, t.common, t.kind,
                    t.possessive)  # fmt: skip
        feats = features(" " * (tok.end + 1), [tok], 0, 0, "\0", "\1")  # nothing glued
        z = self.bias
        left_feats, right_feats = [], []
        for f in feats:
            if f.startswith("L_\0"):
                left_feats.append(f)
            elif f.startswith("R_\1"):
                right_feats.append(f)
            else:
                z += w(f, 0.0)
        z += max(sum(w(f.replace("\0", k), 0.0) for f in left_feats) for k in lefts)
        z += max(0.0, 2 * w("glued", 0.0))
        if t.possessive:
            z += w("R_poss", 0.0)
        else:
            z += max(sum(w(f.replace("\1", k), 0.0) for f in right_feats) for k in _RIGHT_KINDS)
        return 1.0 / (1.0 + math.exp(-(z + 1e-9)))

    def analyze_above(self, text: str, min_score: float) -> list[Finding]:
        """:meth:`analyze`, leaving out one-word spans that cannot score ``min_score`` in
        any context (:meth:`_lone`): most candidates of ordinary text. A run's finding is
        its best variant, so leaving out variants below ``min_score`` changes only findings
        below it, which the engine drops (PERSON has no context words)."""
        toks = tokenize(text, self.lexicon, self._words)
        out = []
        strongs: dict[int, str] = {}
        lefts: dict[int, str] = {}
        rights: dict[int, str] = {}
        lone = self._lone
        for a, b in runs(text, toks):
            best: tuple[float, int, int] | None = None
            # most runs are one word, its only variant
            for x, y in variants(toks, a, b) if a != b else ((a, a),):
                # The rules below need only the span's ends and case, so they run before
                # the features are built: most candidates in ordinary text (lone lower-case
                # words) stop here. A span that is ambiguous on its own ("ask Claude", "the
                # Jenkins job", "in Valencia"), or in lower case but not clearly a name
                # (not "habe mit", "tag qa"), needs a title or a strong cue before it.
                if x == y:  # a lone word (most spans): the same rules, for one token
                    t = toks[x]
                    if t.kind not in _NAME_KINDS:
                        continue
                    needs_cue, top_cued, top_other = lone(t)
                    if top_cued < min_score and (needs_cue or top_other < min_score):
                        continue  # cannot reach ``min_score``, with a cue or without
                else:
                    span = toks[x : y + 1]
                    if not any(t.kind in _NAME_KINDS for t in span):
                        continue
                    needs_cue = span_case(span) == "lower" and _unclear(
                        span[0], max(max(t.fb, t.lb) for t in span)
                    )
                strong = strongs.get(x)
                if strong is None:
                    strong = strongs[x] = strong_left(text, toks, x)
                if needs_cue and not strong:
                    continue
                if x == y and (top_cued if strong else top_other) < min_score:
                    continue
                left = lefts.get(x)
                if left is None:
                    left = lefts[x] = left_context(text, toks, x, strong)
                right = rights.get(y)
                if right is None:
                    right = rights[y] = right_context(text, toks, y)
                if (
                    x == y
                    and toks[x].kind == UNK
                    and not (strong or left == "weak" or right in ("person", "poss"))
                ):
                    continue  # a lone word unknown to the lexicon, with no cue: "(Sparkasse)"
                s = self.score(features(text, toks, x, y, left, right))
                if best is None or s > best[0]:
                    best = (s, toks[x].start, toks[y].end)
            if best is not None:
                out.append(Finding(self.entity, best[1], best[2], best[0], self.name))
        return out
