"""The stream hold-back filter: how much it holds, when it scans, and that chunking never
changes what a pattern filter redacts or blocks."""

from __future__ import annotations

import random

import pytest

from keeptrusts.policies.base import Action, Verdict
from keeptrusts.policies.matching import (
    HoldBackFilter,
    Match,
    Rule,
    apply,
    compile_re2,
    find,
    hold_for,
)


@pytest.mark.parametrize(
    ("patterns", "hold"),
    [
        ([r"(sk-|anthropic-|gsk_)[a-zA-Z0-9]+"], 11),  # the seed's api-key rule
        ([r"\bproject nightingale\b"], 20),
        ([r"\d{3}-\d{2}-\d{4}"], 12),
        ([r"x{3,}"], 3),
        ([r"a+b"], 256),  # an unbounded repeat before the end: no claim
        ([r".*secret"], 256),
        ([r"\bok\b", r"[0-9]{40}"], 41),
    ],
)
def test_hold_covers_a_match_start(patterns: list[str], hold: int) -> None:
    assert hold_for(patterns, cap=256) == hold


def _filter(patterns: dict[str, str], action: str = "redact", **kw) -> HoldBackFilter:  # type: ignore[no-untyped-def]
    rules = [Rule(name, compile_re2(rx), action) for name, rx in patterns.items()]  # type: ignore[arg-type]

    def decide(ms: list[Match]) -> Verdict | None:
        hits = [m for m in ms if m.rule.action == "block"]
        return Verdict.block("blocked", reason_code="x") if hits else None

    def redacted(ms: list[Match]) -> Verdict:
        return Verdict.redact({"x": len(ms)}, reason_code="x")

    hold = hold_for(list(patterns.values()), cap=256)
    return HoldBackFilter(
        lambda t: find(rules, t),
        decide,
        lambda t, ms: apply(t, ms, lambda m: f"[{m.rule.name}]"),
        redacted,
        hold,
        **kw,
    )


def _stream(filt: HoldBackFilter, pieces: list[str]) -> tuple[str, list[str]]:
    out, seen = [], []
    for i, piece in enumerate(pieces):
        text, verdict = filt.feed(piece, i == len(pieces) - 1)
        out.append(text)
        seen.append(verdict.action.value)
    return "".join(out), seen


PATTERNS = {"KEY": r"(sk-|anthropic-|gsk_)[a-zA-Z0-9]+", "SSN": r"\d{3}-\d{2}-\d{4}"}


def test_random_chunking_redacts_exactly_like_the_whole_text() -> None:
    rng = random.Random(3)
    words = ["the", "key", "sk-abc123XYZ", "anthropic-9f8e", "gsk_77", "123-45-6789", "sk-", "x"]
    rules = [Rule(n, compile_re2(rx), "redact") for n, rx in PATTERNS.items()]
    for _ in range(300):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
        whole = apply(text, find(rules, text), lambda m: f"[{m.rule.name}]")
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        got, _ = _stream(_filter(PATTERNS), pieces)
        assert got == whole, (text, pieces)


def test_text_is_released_early_and_in_steps() -> None:
    filt = _filter(PATTERNS, step=8)
    assert filt.max_hold == 12
    released = [filt.feed("hello ", False)[0] for _ in range(6)]
    assert released[:3] == ["", "", ""]  # 18 characters: under hold + step, not scanned yet
    assert "".join(released).startswith("hello hello")
    assert filt.feed("", True)[0]  # the end flushes the rest


def test_a_block_comes_before_any_of_its_text_is_released() -> None:
    filt = _filter({"KEY": PATTERNS["KEY"]}, action="block")
    out, verdicts = _stream(filt, ["my key is s", "k-live", "SECRET123 and more", " text here!"])
    assert "sk-" not in out and "SECRET" not in out
    assert Action.BLOCK.value in verdicts


def test_word_boundary_sees_released_text_as_left_context() -> None:
    filt = _filter({"TERM": r"\bsecret\b"}, step=8)
    pieces = ["x" * 40, "secret", " plain text that goes on for a while", ""]
    got, _ = _stream(filt, pieces)
    assert "[TERM]" not in got  # "xxx…secret" is one word: no match, as in the whole text
