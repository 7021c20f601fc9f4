"""Static sentence embeddings: WordPiece tokens -> weighted mean of per-token vectors.

The vectors are distilled from a sentence-transformer (all-MiniLM-L6-v2) by
``scripts/build_injection_vectors.py``: each vocabulary token is run through the
transformer on its own, and its output is kept (the model2vec recipe). At run time a text
costs one tokenisation and one table lookup per token; no transformer runs. The vectors
give the classifier a sense of meaning that n-grams lack: "disregard", "ignore" and
"pay no attention to" land near each other even when one of them never occurs in the
training data.

The tokeniser is BERT's uncased WordPiece (basic splitting on whitespace and
punctuation, CJK characters as single tokens, accents stripped, then greedy
longest-match-first word pieces), written out here so the base install needs no
tokeniser library. Each token carries the offset of its word in the input, so callers
can pool over windows of a long text.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import accumulate, chain

import numpy as np

_MAX_WORD = 100
_CACHE_SIZE = 16384


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


# ASCII fast path of :func:`_basic_split`: for ASCII text NFD changes nothing and there
# are no combining marks (Mn) or CJK characters, the punctuation is exactly the four code
# ranges of ``_is_punct`` (every ASCII character of a "P" category lies in them), and the
# control characters (Cc) are dropped without ending the current piece.
_ASCII_CONTROL = {cp: None for cp in (*range(0x20), 0x7F)}
_ASCII_PIECE_RE = re.compile(r"[!-/:-@\[-`{-~]|[^!-/:-@\[-`{-~]+")


def _basic_split(word: str) -> list[str]:
    """Lower-cased, accent-stripped word split at punctuation and CJK characters."""
    if word.isascii():
        w = word.lower()
        if w.isalnum():
            return [w]
        return _ASCII_PIECE_RE.findall(w.translate(_ASCII_CONTROL))
    w = unicodedata.normalize("NFD", word.lower())
    w = "".join(c for c in w if unicodedata.category(c) != "Mn")
    out: list[str] = []
    cur: list[str] = []
    for c in w:
        if _is_punct(c) or _is_cjk(ord(c)):
            if cur:
                out.append("".join(cur))
                cur = []
            out.append(c)
        elif unicodedata.category(c) in ("Cc", "Cf"):
            continue
        else:
            cur.append(c)
    if cur:
        out.append("".join(cur))
    return out


class StaticEmbedder:
    """Maps text to an L2-normalised vector (``dim``,) from a static token table."""

    def __init__(self, vocab: list[str], vectors: np.ndarray, unk: str = "[UNK]") -> None:
        if vectors.shape[0] != len(vocab):
            raise ValueError("one vector per vocabulary entry is required")
        self._ids = {t: i for i, t in enumerate(vocab)}
        self._unk = self._ids.get(unk, 0)
        # Kept in the artifact's dtype (float16: half the memory). Widening rows to
        # float32 costs more than the rest of a lookup, so each row is widened once, the
        # first time it is gathered, into ``_v32`` (allocated untouched: only the pages
        # of rows in use ever get memory). ``_ready[i]`` is set after row i is written.
        self.vectors = np.asarray(vectors)
        self.vectors.setflags(write=False)
        self._v32 = np.empty(self.vectors.shape, dtype=np.float32)
        self._ready = np.zeros(self.vectors.shape[0], dtype=bool)
        self.dim = int(self.vectors.shape[1])
        # Word -> token ids; words repeat across prompts, so the cache pays for itself.
        # A plain dict (emptied when full): a hit is one C-level ``dict.get``, cheaper
        # than an ``lru_cache`` call; entries are immutable, so races are harmless.
        self._cache: dict[str, tuple[int, ...]] = {}
        # Longest vocabulary entry: a longer candidate cannot match, so the greedy search
        # starts there instead of at the end of a long piece.
        self._max_piece = max(map(len, vocab), default=0)

    def _word_ids(self, word: str) -> tuple[int, ...]:
        got = self._cache.get(word)
        if got is None:
            got = self._wordpiece(word)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[word] = got
        return got

    def _per_word(self, words: list[str]) -> list[tuple[int, ...]]:
        """Token ids of each word (cache hits without a Python-level call)."""
        per_word = list(map(self._cache.get, words))
        if None in per_word:
            per_word = [
                got if got is not None else self._word_ids(w)
                for w, got in zip(words, per_word, strict=True)
            ]
        return per_word  # type: ignore[return-value]

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        ids: list[int] = []
        for piece in _basic_split(word):
            if len(piece) > _MAX_WORD:
                ids.append(self._unk)
                continue
            start, sub = 0, []
            while start < len(piece):
                end = min(len(piece), start + self._max_piece)
                found = -1
                while end > start:
                    cand = piece[start:end] if start == 0 else "##" + piece[start:end]
                    found = self._ids.get(cand, -1)
                    if found >= 0:
                        break
                    end -= 1
                if found < 0:
                    sub = [self._unk]
                    break
                sub.append(found)
                start = end
            ids.extend(sub)
        return tuple(ids)

    def tokens(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``(token ids, start offset of each token's word in text)``."""
        words = text.split()
        if not words:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if text == " " + " ".join(words) + " ":
            # A prepared text (one space between words and at both ends): each word
            # starts one character after the previous one ends.
            offsets = list(accumulate((len(w) + 1 for w in words[:-1]), initial=1))
        else:
            offsets = []
            pos = 0
            for word in words:
                pos = text.find(word, pos)
                offsets.append(pos)
                pos += len(word)
        per_word = self._per_word(words)
        ids = [i for got in per_word for i in got]
        starts = [p for p, got in zip(offsets, per_word, strict=True) for _ in got]
        return np.array(ids, dtype=np.int64), np.array(starts, dtype=np.int64)

    def pool(self, ids: np.ndarray) -> np.ndarray:
        """Mean of the tokens' vectors, L2-normalised (zeros for no tokens)."""
        if ids.size == 0:
            return np.zeros(self.dim, dtype=np.float32)
        v = self.gather(ids).mean(axis=0)
        n = float(np.sqrt((v * v).sum()))
        return v / n if n > 0 else v

    def id_of(self, token: str) -> int:
        """The id of a vocabulary entry (``KeyError`` if it has none)."""
        return self._ids[token]

    def token_ids(self, words: list[str]) -> np.ndarray:
        """Token ids of the whitespace-separated ``words`` (``tokens(...)[0]`` of the
        text they come from)."""
        return np.fromiter(chain.from_iterable(self._per_word(words)), dtype=np.int64)

    def gather(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of ``ids`` ``(len(ids), dim)``."""
        ready = self._ready[ids]
        if not ready.all():
            new = ids[~ready]
            self._v32[new] = self.vectors[new]
            self._ready[new] = True
        return self._v32[ids]

    def embed(self, text: str) -> np.ndarray:
        return self.pool(self.tokens(text)[0])
