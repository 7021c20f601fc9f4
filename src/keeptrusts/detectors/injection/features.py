"""Hashed character and word n-gram features, computed with numpy only.

The same code builds the training matrix (``scripts/train_injection.py``) and scores at
run time, so training and inference cannot drift apart.

Feature definition for one text ``t``:

* ``t`` is lower-cased, whitespace runs become one space, and it is padded with a space
  on both sides (so word-initial and word-final n-grams are distinct).
* Character n-grams for every ``n`` in ``char_ngrams`` (they cross word boundaries), and
  word n-grams over ``\\w+`` tokens for every ``n`` in ``word_ngrams``.
* Every n-gram is hashed with a polynomial hash mod 2**64 (computed for all positions at
  once from prefix sums, so there is no Python loop over characters), salted with its
  kind and length, mixed with the SplitMix64 finaliser, and reduced to ``2**n_bits``
  buckets. The hash is independent of ``PYTHONHASHSEED``.
* Values are ``1 + log(count)`` per bucket, and the vector is L2-normalised.

:func:`HashingFeaturizer.positions` also returns each n-gram's start offset, which lets
the detector score sliding windows of a long text without re-hashing it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_U64 = np.uint64
_MOD = 1 << 64
_P = 0x100000001B3  # FNV-1 64-bit prime (odd, so it is invertible mod 2**64)
_PINV = pow(_P, -1, _MOD)
_PAIR = 0x9E3779B97F4A7C15
_C1 = _U64(0xBF58476D1CE4E5B9)
_C2 = _U64(0x94D049BB133111EB)
_WS_RE = re.compile(r"\s+")
_TOKEN_RE = re.compile(r"\w+")


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _C1
    x = x ^ (x >> _U64(27))
    x = x * _C2
    return x ^ (x >> _U64(31))


def _powers(base: int, n: int) -> np.ndarray:
    """``base**0 .. base**(n-1)`` mod 2**64."""
    out = np.full(n, base, dtype=_U64)
    out[0] = 1
    return np.cumprod(out, dtype=_U64)


def prepare(text: str) -> str:
    """The exact string the n-grams are taken from."""
    return " " + _WS_RE.sub(" ", text.lower()).strip() + " "


@dataclass(frozen=True)
class HashingFeaturizer:
    n_bits: int = 20
    char_ngrams: tuple[int, ...] = (3, 4, 5)
    word_ngrams: tuple[int, ...] = (1, 2)
    seed: int = 0x5EED

    @property
    def n_features(self) -> int:
        return 1 << self.n_bits

    def to_dict(self) -> dict:
        return {
            "n_bits": self.n_bits,
            "char_ngrams": list(self.char_ngrams),
            "word_ngrams": list(self.word_ngrams),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict) -> HashingFeaturizer:
        return cls(
            n_bits=int(d["n_bits"]),
            char_ngrams=tuple(int(n) for n in d["char_ngrams"]),
            word_ngrams=tuple(int(n) for n in d["word_ngrams"]),
            seed=int(d["seed"]),
        )

    def _salt(self, kind: int, n: int) -> np.uint64:
        return _U64((self.seed * 1_000_003 + kind * 101 + n) * _PAIR % _MOD)

    def positions(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(buckets, starts)``: one entry per n-gram occurrence.

        ``buckets`` are int64 feature indices in ``[0, 2**n_bits)``; ``starts`` are the
        n-grams' start offsets in :func:`prepare` ``(text)``.
        """
        t = prepare(text)
        codes = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(_U64)
        length = codes.shape[0]
        pw = _powers(_P, length + 1)
        # prefix[k] = sum_{j<k} c[j] * P^-j ; hash(s, e) = P^(e-1) * (prefix[e] - prefix[s])
        prefix = np.zeros(length + 1, dtype=_U64)
        np.cumsum(codes * _powers(_PINV, length), dtype=_U64, out=prefix[1:])
        mask = _U64(self.n_features - 1)
        buckets: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        for n in self.char_ngrams:
            if length < n:
                continue
            s = np.arange(length - n + 1)
            h = pw[s + n - 1] * (prefix[s + n] - prefix[s])
            buckets.append(_mix(h ^ self._salt(1, n)) & mask)
            starts.append(s)
        if self.word_ngrams:
            spans = [m.span() for m in _TOKEN_RE.finditer(t)]
            if spans:
                sp = np.asarray(spans, dtype=np.int64)
                ws, we = sp[:, 0], sp[:, 1]
                wh = _mix(pw[we - 1] * (prefix[we] - prefix[ws]))
                for n in self.word_ngrams:
                    if len(spans) < n:
                        continue
                    h = wh[: len(spans) - n + 1].copy()
                    for k in range(1, n):
                        h = _mix(h * _U64(_PAIR) + wh[k : len(spans) - n + 1 + k])
                    buckets.append(_mix(h ^ self._salt(2, n)) & mask)
                    starts.append(ws[: len(spans) - n + 1])
        if not buckets:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return (
            np.concatenate(buckets).astype(np.int64),
            np.concatenate(starts).astype(np.int64),
        )

    @staticmethod
    def vectorize(buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sparse L2-normalised ``(indices, values)`` from n-gram bucket occurrences."""
        if buckets.size == 0:
            return buckets, np.zeros(0, dtype=np.float64)
        idx, counts = np.unique(buckets, return_counts=True)
        vals = 1.0 + np.log(counts)
        vals /= np.sqrt((vals * vals).sum())
        return idx, vals

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return self.vectorize(self.positions(text)[0])
