#!/usr/bin/env python3
"""Fit the optional deep layer of prompt-injection (``deep: true``) and print what it buys.

The deep layer adds ``weight x`` the logit of jailguard's head on all-MiniLM-L6-v2 (see
``keeptrusts.detectors.injection.deep``) to the shipped model's raw logit, then maps the sum
through its own calibration so that 0.8 keeps its meaning: at most 2 % false positives,
pooled and per source, on sources the shipped model was not trained on.

Inputs are the shipped model's leave-source-out logits (every row scored by a model that
never saw its source) and the deep logit of the same rows. jailguard's head never saw any
of our rows, but its own 17 training datasets may share text with ours or with any test
set; this is why the layer is opt-in and its figures are reported apart. Run::

    pip install -e '.[train,deep]'
    python scripts/eval_injection.py --lso --no-ablation --no-timing --save-oof build/oof.npz
    python scripts/calibrate_deep.py --oof build/oof.npz        # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_injection as tr
from eval_injection import LSO_FOLDS, auc

from keeptrusts.detectors.injection import deep

OUT = Path(tr.__file__).resolve().parent.parent / "src/keeptrusts/detectors/injection/deep.json"
WEIGHTS = (0.25, 0.35, 0.5, 0.7, 1.0)


def lso_rows() -> tuple[list[tr.Row], list[str]]:
    """Every row in ``eval_injection.py --lso`` order, with its fold's name."""
    train, dev, dev_extra = tr.load_rows(tr.DEFAULT_DATA)
    everything = train + dev + dev_extra
    rows, folds = [], []
    for name, groups in LSO_FOLDS.items():
        for r in everything:
            if r.group in groups:
                rows.append(r)
                folds.append(name)
    return rows, folds


def deep_logits(texts: list[str], cache: Path, max_tokens: int) -> np.ndarray:
    key = hashlib.sha256("\x00".join(texts).encode() + str(max_tokens).encode()).hexdigest()
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return z["logit"]
    scorer = deep.load_scorer(threads=2)
    out = np.zeros(len(texts), np.float32)
    t0 = time.perf_counter()
    step = 512
    for a in range(0, len(texts), step):
        res = scorer.score_many(texts[a : a + step], max_tokens)
        out[a : a + step] = [r.logit for r in res]
        print(
            f"\r  {a + len(res)}/{len(texts)} ({time.perf_counter() - t0:.0f} s)",
            end="",
            file=sys.stderr,
        )
    print(file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, logit=out, key=np.array(key))
    return out


def recall_at(z: np.ndarray, y: np.ndarray, fpr: float) -> float:
    neg = np.sort(z[y == 0])
    return float((z[y == 1] > neg[int(len(neg) * (1 - fpr))]).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--oof", type=Path, required=True, help="eval_injection.py --save-oof file")
    ap.add_argument("--cache", type=Path, default=Path("build/deep-logits.npz"))
    ap.add_argument("--max-tokens", type=int, default=deep.DEFAULT_MAX_TOKENS)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--dry-run", action="store_true", help="print, do not write --out")
    args = ap.parse_args(argv)

    rows, folds = lso_rows()
    y = np.array([r.label for r in rows])
    fold = np.array(folds)
    with np.load(args.oof, allow_pickle=False) as z:
        shipped, oy = z["logit"], z["label"]
    if len(oy) != len(y) or (oy != y).any():
        sys.exit(f"{args.oof}: not the leave-source-out folds of this data")
    d = deep_logits([r.text for r in rows], args.cache, args.max_tokens)

    print(f"{int(y.sum())} injections, {int((y == 0).sum())} benign rows, {len(LSO_FOLDS)} folds")
    head = "recall at pooled FPR 1/2/5%"
    print(f"  {'variant':26s} {head:38s} calibrated 0.8: R (FPR pooled/macro)")
    fits = {}
    for name, w in [
        ("shipped alone", 0.0),
        ("deep head alone", None),
        *[(f"shipped + {w} x deep", w) for w in WEIGHTS],
    ]:
        zb = d.astype(np.float64) if w is None else shipped + w * d
        cal = tr.fit_calibration(zb, y, fold, 0.02)
        o = cal["oof_at_0.8"]
        at = " / ".join(f"{recall_at(zb, y, f):.3f}" for f in (0.01, 0.02, 0.05))
        at += f"  AUC {auc(y, zb):.3f}"
        fprs = f"{o['fpr_pooled']:.2%} / {o['fpr_macro']:.2%}"
        print(f"  {name:26s} {at:38s} {o['recall']:.4f} ({fprs})")
        if w:
            fits[w] = cal
    best = max(fits, key=lambda w: fits[w]["oof_at_0.8"]["recall"])
    cal = fits[best]
    print(
        f"\nchosen weight {best}; per fold at the calibrated 0.8 (R on injections, FPR on benign):"
    )
    zb = shipped + best * d
    zs = shipped
    cut_b = cal["raw_threshold_at_0.8"]
    cut_s = tr.fit_calibration(shipped, y, fold, 0.02)["raw_threshold_at_0.8"]
    for name in LSO_FOLDS:
        m = fold == name
        parts = []
        for lab, what in ((1, "R"), (0, "FPR")):
            mm = m & (y == lab)
            if mm.any():
                parts.append(
                    f"{what} {(zs[mm] >= cut_s).mean():.3f} -> {(zb[mm] >= cut_b).mean():.3f}"
                )
        print(f"  {name:30s} {'   '.join(parts)}")
    meta = {
        "weight": best,
        "calibration": cal,
        "max_tokens_fitted": args.max_tokens,
        "encoder": f"{deep.ENCODER_PACKAGE} model.onnx sha256 {deep.ENCODER_SHA256}",
        "head": f"{deep.HEAD_PACKAGE} {deep.HEAD_VERSION} head sha256 {deep.HEAD_SHA256}",
        "shipped_oof": "eval_injection.py --lso logits of the shipped pipeline",
    }
    if not args.dry_run:
        args.out.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
