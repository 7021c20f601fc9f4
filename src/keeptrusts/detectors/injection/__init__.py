"""Prompt-injection / jailbreak detector: ``InjectionDetector.load().score(text)``.

Layers, in the order they run on one text:

1. **Normalisation** (:mod:`.normalize`): NFKC, zero-width and tag-character removal,
   Zalgo stripping, homoglyph folding and whitespace collapsing. Encoded payloads
   (base64, hex, URL/HTML/``\\u`` escapes, ROT13) are decoded into extra *views*.
2. **Classifier** (:mod:`.features` + :mod:`.embed` + ``model.npz``): hashed character
   3-5-grams and word 1-2-grams plus a static sentence embedding (token vectors distilled
   from all-MiniLM-L6-v2, averaged), one logistic regression over both, inference in
   numpy only. Each view is scored
   as a whole and, when it is long, in overlapping windows, so that one injected
   paragraph inside a long pasted document is not diluted away.
3. **Patterns** (:mod:`.patterns`): a few curated, high-precision attack phrasings in
   several languages. A match adds ``PATTERN_BOOST`` to the classifier's logit.

The score is the maximum over views and windows, mapped through a monotone calibration
``sigmoid(scale * logit + shift)`` stored in the artifact (``meta["calibration"]``).
The two numbers are fitted on out-of-fold leave-source-out predictions so that the
policy's default threshold 0.8 sits at the chosen operating point (false-positive
rate at most ~2 % on sources the model never saw); 1 means injection. The detector is
stateless after loading (read-only numpy arrays), so one instance can be shared by
any number of threads. Training and evaluation: ``scripts/train_injection.py`` and
``scripts/eval_injection.py``.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .codelike import CODE_SCAN_CHARS, looks_like_code
from .embed import StaticEmbedder
from .features import HashingFeaturizer, _sparse, prepare, sparse_many
from .normalize import decode_payloads, normalize
from .patterns import PATTERN_BOOST, match_patterns

__all__ = ["InjectionDetector"]

ARTIFACT_NAME = "model.npz"
WINDOW_CHARS = 480
WINDOW_STRIDE = 240
# A window's logit is lowered by this margin: a long text offers many windows, and the
# best of many noisy scores is biased upwards (leave-source-out: fewer false positives
# on long system-prompt-like texts at a small cost in recall on planted injections).
WINDOW_MARGIN = 0.5
# Windows of pasted source code are lowered by this much more: the training data has almost
# no benign code, and a licence header or a docstring about "root" and "restrictions" read
# as a rule-laden prompt (4 of 161 standard-library files with a review question scored
# over 0.8, 1 with the margin). The whole-text logit is not lowered.
CODE_WINDOW_MARGIN = 1.0
_TINY = np.float32(1e-12)

_LOCK = threading.Lock()
_CACHED: InjectionDetector | None = None


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class InjectionDetector:
    """Scores text for prompt injection; thread-safe and side-effect free."""

    name = "injection"

    def __init__(
        self,
        coef: np.ndarray,
        intercept: float,
        featurizer: HashingFeaturizer,
        *,
        windows: bool = True,
        patterns: bool = True,
        decode: bool = True,
        meta: dict[str, Any] | None = None,
        embedder: StaticEmbedder | None = None,
        emb_coef: np.ndarray | None = None,
    ) -> None:
        coef = np.asarray(coef, dtype=np.float32)
        if coef.shape != (featurizer.n_features,):
            raise ValueError(f"coef has shape {coef.shape}, expected ({featurizer.n_features},)")
        coef.setflags(write=False)
        if (embedder is None) != (emb_coef is None):
            raise ValueError("embedder and emb_coef go together")
        if embedder is not None and emb_coef is not None:
            emb_coef = np.asarray(emb_coef, dtype=np.float32)
            if emb_coef.shape != (embedder.dim,):
                raise ValueError(f"emb_coef has shape {emb_coef.shape}, expected ({embedder.dim},)")
            emb_coef.setflags(write=False)
        self._emb = embedder
        self._emb_coef = emb_coef
        self._coef = coef
        self._intercept = float(intercept)
        self._fz = featurizer
        self._windows = windows
        self._patterns = patterns
        self._decode = decode
        self.meta: dict[str, Any] = dict(meta or {})
        cal = self.meta.get("calibration") or {}
        self._scale = float(cal.get("scale", 1.0))
        self._shift = float(cal.get("shift", 0.0))
        if not self._scale > 0:
            raise ValueError("calibration scale must be positive (the mapping is monotone)")

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls) -> InjectionDetector:
        """The shipped model, loaded once per process (thread-safe)."""
        global _CACHED
        if _CACHED is None:
            with _LOCK:
                if _CACHED is None:
                    ref = resources.files(__package__).joinpath(ARTIFACT_NAME)
                    with resources.as_file(ref) as path:
                        _CACHED = cls.from_file(path)
        return _CACHED

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> InjectionDetector:
        """Load an artifact written by ``scripts/train_injection.py`` (no pickle)."""
        with np.load(path, allow_pickle=False) as z:
            coef = z["coef"].astype(np.float32)
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            if "emb_vectors" in z.files:
                vocab = z["emb_vocab"].tobytes().decode("utf-8").split("\n")
                kwargs.setdefault("embedder", StaticEmbedder(vocab, z["emb_vectors"]))
                kwargs.setdefault("emb_coef", z["emb_coef"])
        fz = HashingFeaturizer.from_dict(meta["featurizer"])
        return cls(coef, meta["intercept"], fz, meta=meta, **kwargs)

    # ------------------------------------------------------------------ scoring

    def _logit(self, buckets: np.ndarray) -> float:
        if buckets.shape[0] == 0:
            return 0.0 + self._intercept
        idx, vals = _sparse(buckets)
        # Plain multiply-and-sum: np.dot would go through (multi-threaded) BLAS, whose
        # spinning threads cost more than the product itself for vectors this short.
        return float((self._coef[idx] * vals).sum()) + self._intercept

    def _dense(self, sums: np.ndarray) -> np.ndarray:
        """Embedding logit of each row of token-vector sums (mean and sum have the same
        direction, and the embedding is L2-normalised, so the sum is enough)."""
        assert self._emb_coef is not None
        norms = np.sqrt((sums * sums).sum(axis=-1))
        dots = (sums * self._emb_coef).sum(axis=-1)
        return np.where(norms > 0, dots / np.maximum(norms, 1e-12), 0.0)

    def _dense1(self, s: np.ndarray) -> float:
        """:meth:`_dense` of one float32 vector, with numpy scalars instead of arrays."""
        norm = np.sqrt((s * s).sum())
        if not norm > 0:
            return 0.0
        return float((s * self._emb_coef).sum() / max(norm, _TINY))

    def _model_view(self, text: str, raw: str | None = None) -> tuple[float, float]:
        """``(whole-text logit, best window logit)`` for one view (window: -inf if short).
        ``raw``: the text to check for source code (the text as sent for the main view, the
        payload for a decoded one); if it is code, the windows get ``CODE_WINDOW_MARGIN``
        (checked only when there are windows)."""
        t = prepare(text)
        if not self._windows or len(t) <= WINDOW_CHARS + WINDOW_STRIDE:
            # No n-gram or token starts at or after WINDOW_CHARS + WINDOW_STRIDE: no
            # windows, so no start offsets are needed.
            whole = self._logit(self._fz.buckets(t))
            if self._emb is not None:
                ids = self._emb.token_ids(t.split())
                if ids.shape[0]:
                    whole += self._dense1(self._emb.gather(ids).sum(axis=0))
                else:
                    whole += 0.0
            return whole, -math.inf
        buckets, starts = self._fz._positions(t, True)
        assert starts is not None
        vecs = tok_starts = None
        whole = self._logit(buckets)
        if self._emb is not None:
            # Same prepared string as the n-grams, so window offsets line up.
            tok_ids, tok_starts = self._emb.tokens(t)
            vecs = self._emb.gather(tok_ids)
            whole += float(self._dense(vecs.sum(axis=0)))
        best = -math.inf
        if self._windows and starts.size and int(starts.max()) >= WINDOW_CHARS + WINDOW_STRIDE:
            order = np.argsort(starts, kind="stable")
            buckets, starts = buckets[order], starts[order]
            end = int(starts[-1]) + 1
            lo_edges = np.arange(0, end - WINDOW_STRIDE, WINDOW_STRIDE)
            lo = np.searchsorted(starts, lo_edges, side="left")
            hi = np.searchsorted(starts, lo_edges + WINDOW_CHARS, side="left")
            dense = np.zeros(lo_edges.size)
            if vecs is not None and tok_starts is not None:
                t_lo = np.searchsorted(tok_starts, lo_edges, side="left")
                t_hi = np.searchsorted(tok_starts, lo_edges + WINDOW_CHARS, side="left")
                # One slice sum per window: numpy's cumsum along the token axis is slower,
                # and a matrix product would wake BLAS threads for a tiny job.
                sums = np.zeros((lo_edges.size, vecs.shape[1]), dtype=np.float32)
                for k, (a, b) in enumerate(zip(t_lo.tolist(), t_hi.tolist(), strict=True)):
                    if b > a:
                        sums[k] = vecs[a:b].sum(axis=0)
                dense = self._dense(sums)
            for k, (i, j) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
                if j > i:
                    best = max(best, self._logit(buckets[i:j]) + float(dense[k]) - WINDOW_MARGIN)
            if raw is not None and looks_like_code(raw[:CODE_SCAN_CHARS]):
                best -= CODE_WINDOW_MARGIN
        return whole, best

    def _whole_many(self, ts: list[str]) -> list[float]:
        """:meth:`_model_view`'s whole-text logit of several short prepared texts (no
        windows), computed together: the same numbers, with numpy's per-call cost paid
        once per batch instead of once per text."""
        buckets, owner = self._fz.buckets_many(ts)
        idx, vals, bounds = sparse_many(buckets, owner, len(ts))
        terms = self._coef[idx] * vals
        out = [
            float(terms[a:b].sum()) + self._intercept if b > a else self._intercept
            for a, b in itertools.pairwise(bounds)
        ]
        if self._emb is not None:
            per_text = [self._emb.token_ids(t.split()) for t in ts]
            vecs = self._emb.gather(np.concatenate(per_text))
            a = 0
            for i, ids in enumerate(per_text):
                b = a + ids.shape[0]
                if b > a:  # each text's own rows, summed in the same order as alone
                    out[i] += self._dense1(vecs[a:b].sum(axis=0))
                a = b
        return out

    @property
    def embedder(self) -> StaticEmbedder | None:
        """The static token table, whose WordPiece vocabulary is all-MiniLM-L6-v2's."""
        return self._emb

    def uncalibrated(self, score: float) -> float:
        """The raw logit behind a calibrated score (inverse of the calibration)."""
        s = min(max(score, 1e-15), 1 - 1e-15)
        return (math.log(s / (1 - s)) - self._shift) / self._scale

    def _prob(self, logit: float) -> float:
        """Calibrated score of a raw logit (monotone; ``-inf`` maps to 0)."""
        return _sigmoid(self._scale * logit + self._shift)

    def _view_logit(self, whole: float, window: float, patterns: list[str]) -> float:
        """A view's final logit: the better of whole text and best window, or the
        whole-text logit plus the pattern boost when an attack pattern matched."""
        logit = max(whole, window)
        if patterns:
            logit = max(logit, whole + PATTERN_BOOST)
        return logit

    def _view(self, text: str, raw: str | None = None) -> dict[str, Any]:
        whole, window = self._model_view(text, raw)
        patterns = match_patterns(text) if self._patterns else []
        return {
            "score": self._prob(self._view_logit(whole, window, patterns)),
            "model": self._prob(whole),
            "window": self._prob(window),
            "patterns": patterns,
        }

    def explain(self, text: str) -> dict[str, Any]:
        """Score with the contribution of each layer.

        Keys: ``score``; ``layer`` (``model``, ``window``, ``patterns`` or ``decoded``:
        which layer set the score); ``model`` (classifier on the whole normalised
        text); ``window`` (best window of a long text, 0 if not windowed);
        ``patterns`` (matched attack patterns); ``decoded`` (``{"text", "score"}``
        for each decoded payload); ``normalized_changed``.
        """
        if not isinstance(text, str):
            raise TypeError("text must be a str")
        norm = normalize(text)
        main = self._view(norm, text)
        decoded: list[dict[str, Any]] = []
        if self._decode:
            for payload in decode_payloads(norm):
                v = self._view(payload, payload)  # a decoded copy of code is code too
                decoded.append(
                    {"text": payload[:200], "score": v["score"], "patterns": v["patterns"]}
                )
        score, layer = main["score"], "model"
        if main["window"] > main["model"] and main["window"] >= score:
            layer = "window"
        elif main["patterns"] and score > max(main["model"], main["window"]):
            layer = "patterns"
        for d in decoded:
            if d["score"] > score:
                score, layer = d["score"], "decoded"
        return {
            "score": min(1.0, max(0.0, score)),
            "layer": layer,
            "model": main["model"],
            "window": main["window"],
            "patterns": main["patterns"],
            "decoded": decoded,
            "normalized_changed": norm != text.strip(),
        }

    def score_many(self, texts: list[str]) -> list[float]:
        """``[self.score(t) for t in texts]``, with the classifier run on all short views
        of all texts in one batch (the gateway scores concurrent requests' prompts this
        way). Raises if any text does; the caller then scores them one by one."""
        views: list[list[str]] = []
        raw: dict[int, str] = {}  # flat index of each view -> text checked for code
        n = 0
        for text in texts:
            if not isinstance(text, str):
                raise TypeError("text must be a str")
            norm = normalize(text)
            views.append([norm, *(decode_payloads(norm) if self._decode else ())])
            raw[n] = text
            for k, payload in enumerate(views[-1][1:], start=n + 1):
                raw[k] = payload  # a decoded copy of code is code too
            n += len(views[-1])
        flat = [v for vs in views for v in vs]
        prepared = [prepare(v) for v in flat]
        short = [
            i
            for i, t in enumerate(prepared)
            if not self._windows or len(t) <= WINDOW_CHARS + WINDOW_STRIDE
        ]
        logits: dict[int, tuple[float, float]] = {}
        if short:
            wholes = self._whole_many([prepared[i] for i in short])
            logits = {i: (w, -math.inf) for i, w in zip(short, wholes, strict=True)}
        scores: list[float] = []
        for i, view in enumerate(flat):
            whole, window = logits[i] if i in logits else self._model_view(view, raw.get(i))
            patterns = match_patterns(view) if self._patterns else []
            scores.append(self._prob(self._view_logit(whole, window, patterns)))
        out: list[float] = []
        k = 0
        for vs in views:
            out.append(min(1.0, max(0.0, max(scores[k : k + len(vs)]))))
            k += len(vs)
        return out

    def score(self, text: str) -> float:
        """Probability-like score in [0, 1] that ``text`` is a prompt injection."""
        return float(self.explain(text)["score"])
