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

import unicodedata
from functools import lru_cache

import numpy as np

_MAX_WORD = 100


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


def _basic_split(word: str) -> list[str]:
    """Lower-cased, accent-stripped word split at punctuation and CJK characters."""
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
        # Kept in the artifact's dtype (float16: half the memory); rows are widened to
        # float32 when gathered.
        self.vectors = np.asarray(vectors)
        self.vectors.setflags(write=False)
        self.dim = int(self.vectors.shape[1])
        # Word -> token ids; words repeat across prompts, so the cache pays for itself.
        self._word_ids = lru_cache(maxsize=16384)(self._wordpiece)

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        ids: list[int] = []
        for piece in _basic_split(word):
            if len(piece) > _MAX_WORD:
                ids.append(self._unk)
                continue
            start, sub = 0, []
            while start < len(piece):
                end = len(piece)
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
        ids: list[int] = []
        starts: list[int] = []
        pos = 0
        for word in text.split():
            pos = text.find(word, pos)
            got = self._word_ids(word)
            ids.extend(got)
            starts.extend([pos] * len(got))
            pos += len(word)
        return np.asarray(ids, dtype=np.int64), np.asarray(starts, dtype=np.int64)

    def pool(self, ids: np.ndarray) -> np.ndarray:
        """Mean of the tokens' vectors, L2-normalised (zeros for no tokens)."""
        if ids.size == 0:
            return np.zeros(self.dim, dtype=np.float32)
        v = self.vectors[ids].astype(np.float32).mean(axis=0)
        n = float(np.sqrt((v * v).sum()))
        return v / n if n > 0 else v

    def gather(self, ids: np.ndarray) -> np.ndarray:
        """float32 vectors of ``ids`` ``(len(ids), dim)``."""
        return self.vectors[ids].astype(np.float32)

    def embed(self, text: str) -> np.ndarray:
        return self.pool(self.tokens(text)[0])
