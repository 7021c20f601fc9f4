"""The PII detector's fast paths give exactly what the plain regexes and loops they replace give.

Each fast path is compared with its reference on random strings built from the characters and
words that matter to it (seeded, so a failure reproduces).
"""

from __future__ import annotations

import random
import re
import time

from keeptrusts.detectors.pii import PiiAnalyzer, engine, person, phone
from keeptrusts.detectors.pii import person_words as W
from keeptrusts.detectors.pii.patterns import EmailRecognizer
from keeptrusts.detectors.pii.phone import PhoneRecognizer
from keeptrusts.detectors.pii.recognizer import PatternRecognizer

ROUNDS = 4000


def _texts(pieces: list[str], seed: int, most: int = 12) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(pieces, k=rng.randint(0, most))) for _ in range(ROUNDS)]


def test_email_matches_are_finditer() -> None:
    rec = EmailRecognizer()
    pieces = ["a", "b.", "@", "x-y", "_", "%", "+", " ", ",", "é", "\n", ".co", ".uk", "1"]
    for text in _texts(pieces, 1):
        fast = [(p.name, m.span()) for p, m in rec.matches(text)]
        slow = [(p.name, m.span()) for p, m in PatternRecognizer.matches(rec, text)]
        assert fast == slow, text


def test_phone_candidates_are_finditer() -> None:
    pieces = ["+", "(", ")", "0", "00", "415", " ", "-", ".", "/", "x", "ext", "@", "\n", "٣",
              "_", "a", "555-1234", "+44 20 7946 0958", "(0)"]  # fmt: skip
    for text in _texts(pieces, 2):
        fast = [m.span() for m in phone.candidates(text)]
        assert fast == [m.span() for m in phone._CANDIDATE.finditer(text)], text


def test_grouped_code_regex_matches_the_plain_one_and_is_linear() -> None:
    plain = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4})*[ \-]?$")
    pieces = ["A", "Z", "0", "9", " ", "  ", "-", "\n", "a", "٣", "NL52", "DE44 ", "("]
    for text in _texts(pieces, 3):
        for lo, hi in ((0, len(text)), (1, max(1, len(text) - 1))):
            got = phone._IN_GROUPED_CODE.search(text, lo, hi) is not None
            assert got == (plain.search(text, lo, hi) is not None), (text, lo, hi)
    # the plain regex takes seconds on this; ours microseconds
    t0 = time.perf_counter()
    assert phone._IN_GROUPED_CODE.search("XY99ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF (") is None
    assert time.perf_counter() - t0 < 0.05


def test_reversed_cue_regex_matches_the_forward_one() -> None:
    pieces = [*W.STRONG_CUES, " ", ",", ":", "-", "\n", "'", "x", ".", "é", "_", "1", "\xa0"]
    for window in _texts(pieces, 4, most=5):
        window = window[-28:]
        expected = person._CUE_RX.search(window) is not None
        assert (person._CUE_RX_REVERSED.match(window[::-1]) is not None) == expected, window


def test_context_words_as_a_set_match_the_regex() -> None:
    rec = PhoneRecognizer()
    words = [*rec.context, *rec.negative_context]
    pieces = [*words, " ", "_", "1", "x", "é", "-", ".", "#", "CALL", "Tél", "\n", "ph1"]

    def regex(ws: tuple[str, ...]) -> re.Pattern[str]:
        alts = "|".join(re.escape(w) for w in sorted(ws, key=len, reverse=True))
        return re.compile(rf"(?<!\w)(?:{alts})(?!\w)")

    pos, neg = regex(rec.context), regex(rec.negative_context)
    for text in _texts(pieces, 5, most=8):
        window = text[-engine.CONTEXT_WINDOW :].lower()
        want = (
            -rec.context_boost
            if neg.search(window)
            else rec.context_boost
            if pos.search(window)
            else 0.0
        )
        assert engine.context_delta(text, rec, len(text)) == want, text


def _reference_tokens(text: str, lex: person.Lexicon) -> list[person.Token]:
    """``tokenize`` as a plain loop over ``_WORD.finditer``."""
    out = []
    prev_key, prev_end = "", -1
    for m in person._WORD.finditer(text):
        (start, end), word, possessive = m.span(), m.group(), False
        if len(word) > 3 and word[-2] in "'’" and word[-1] in "sS":
            word, end, possessive = word[:-2], end - 2, True
        key, shape, fb, lb, common, kind = person.word_info(word, lex)
        if kind == person._INIT_IF_DOTTED:
            kind = person.INIT if shape == "I" or text[end : end + 1] == "." else 0
        if kind:
            tok = person.Token(start, end, key, shape, fb, lb, common, kind, possessive)
            tok.prev_key, tok.prev_end = prev_key, prev_end
            out.append(tok)
        prev_key, prev_end = key, end
    return out


def test_tokenize_matches_a_plain_loop() -> None:
    lex = person.load_lexicon()
    cache: dict[str, person.WordEntry] = {}
    pieces = [
        *("Anna", "anna's", " ", "O'Neil", "jean-pierre", "-", "'", "’", "Müller", "x", "J."),
        *("J", "3", "_", "\n", "van", "der", "Ivanova", "the", "İ", "straße", "IT'S"),
    ]
    for text in _texts(pieces, 6):
        assert person.tokenize(text, lex, cache) == _reference_tokens(text, lex), text


def test_phone_skip_needs_no_parse_below_threshold(monkeypatch) -> None:
    """A bare number after a negative context word cannot reach the threshold: not parsed."""
    pii = PiiAnalyzer(entities=["PHONE_NUMBER"])
    rec = next(r for r in pii._recognizers if isinstance(r, PhoneRecognizer))
    calls: list[str] = []

    def parse(cand: str) -> tuple[float, bool] | None:
        calls.append(cand)
        return None

    monkeypatch.setattr(rec, "_parse_cached", parse)
    assert pii.analyze("see the docs (ref 123456789)") == []
    assert calls == []
    pii.analyze("call 4155550100")
    assert calls == ["4155550100"]
    # without a threshold (the recognizer on its own) every candidate is parsed
    rec.analyze("see the docs (ref 123456789)")
    assert calls[-1] == "123456789"


def test_nanp_numbers_built_without_parse_equal_parse() -> None:
    import phonenumbers

    rng = random.Random(7)
    for _ in range(ROUNDS):
        value = (
            f"+1 {rng.randrange(200, 1000)} {rng.randrange(1000):03d} {rng.randrange(10000):04d}"
        )
        m = phone._NANP.fullmatch(value)
        assert m is not None, value
        built = phonenumbers.PhoneNumber(country_code=1, national_number=int("".join(m.groups())))
        assert built == phonenumbers.parse(value, None), value
    for value in ("+1 123 456 7890", "+1 012 345 6789", "+1 415 555 01234", "+14155550123"):
        assert phone._NANP.fullmatch(value) is None


def test_lone_word_bounds_hold() -> None:
    """No one-word span scores above the bound ``analyze_above`` skips it by."""
    rec = person.PersonRecognizer()
    pieces = [
        *("Anna", "anna's", " ", "memory", "matter", "Dr. ", "my name is ", "ask ", "the "),
        *("room", "Smith", "toleration", ".", ",", "(", "\n", "1", "@", "Station", "'s", ":"),
    ]
    for text in _texts(pieces, 8):
        toks = person.tokenize(text, rec.lexicon)
        for i, t in enumerate(toks):
            if t.kind not in person._NAME_KINDS:
                continue
            needs_cue, top_cued, top_other = rec._lone(t)
            strong = person.strong_left(text, toks, i)
            if needs_cue and not strong:
                continue
            score = rec.score(person.features(text, toks, i, i))
            assert score <= (top_cued if strong else top_other), (text, t)
