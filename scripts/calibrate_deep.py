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
from eval_injection import LSO_FOLDS, auc, lso_rows

from keeptrusts.detectors.injection import deep

OUT = Path(tr.__file__).resolve().parent.parent / "src/keeptrusts/detectors/injection/deep.json"
WEIGHTS = (0.25, 0.35, 0.5, 0.7, 1.0)


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
        out[a : a + step] = [np.nan if r.logit is None else r.logit for r in res]
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
    # Code is not given to the head (deep.looks_like_code): those rows keep the shipped score.
    code = np.array([deep.looks_like_code(deep.read_part(r.text, args.max_tokens)) for r in rows])
    d[code] = np.nan
    read = ~code
    ship_cal = tr.fit_calibration(shipped, y, fold, 0.02)  # as the shipped artifact's

    def prob(z: np.ndarray, cal: dict) -> np.ndarray:
        return 1 / (1 + np.exp(-np.clip(cal["scale"] * z + cal["shift"], -60, 60)))

    def at_08(s: np.ndarray) -> tuple[float, float, float]:
        hit = s >= 0.8 - 1e-9  # the calibration puts its threshold exactly at 0.8
        macro = np.mean([hit[(fold == f) & (y == 0)].mean() for f in LSO_FOLDS
                         if ((fold == f) & (y == 0)).any()])  # fmt: skip
        return float(hit[y == 1].mean()), float(hit[y == 0].mean()), float(macro)

    fixed_hit = code & (prob(shipped, ship_cal) >= 0.8 - 1e-9)  # code rows' own decisions

    def final(w: float) -> tuple[np.ndarray, dict]:
        """Scores as the gateway gives them: the blend where the head reads the text, the
        shipped score elsewhere. The blend's slope is the Platt fit on the rows it reads; its
        0.8 sits at the lowest blended logit where every row's decisions together stay at
        <= 2 % false positives, pooled and per fold (as ``fit_calibration`` does)."""
        zb = shipped + w * np.nan_to_num(d)
        cal = tr.fit_calibration(zb[read], y[read], fold[read], 0.02)
        cand = np.unique(zb[read & (y == 0)])
        groups = [np.ones(len(y), bool)] + [fold == f for f in LSO_FOLDS]
        rates = []
        for g in groups:
            ben = g & (y == 0)
            if not ben.any():
                continue
            above = np.sort(zb[ben & read])
            fp = len(above) - np.searchsorted(above, cand, side="left") + (fixed_hit & ben).sum()
            rates.append(fp / ben.sum())
        pooled, macro = rates[0], np.mean(rates[1:], axis=0)
        ok = np.flatnonzero((pooled <= 0.02) & (macro <= 0.02))
        thr = float(cand[ok[0]])
        cal = {**cal, "shift": round(tr.LOGIT_08 - cal["scale"] * thr, 6)}
        cal["raw_threshold_at_0.8"] = round(thr, 6)
        sf = np.where(read, prob(zb, cal), prob(shipped, ship_cal))
        rec, fpr, mac = at_08(sf)
        cal["oof_at_0.8"] = {"recall": round(rec, 4), "fpr_pooled": round(fpr, 4),
                             "fpr_macro": round(mac, 4)}  # fmt: skip
        cal["fitted_on"] = (
            f"{len(y)} out-of-fold leave-source-out rows, {len(LSO_FOLDS)} folds; "
            f"{int(code.sum())} code-like rows keep the shipped score"
        )
        return sf, cal

    print(f"{int(y.sum())} injections, {int((y == 0).sum())} benign rows, {len(LSO_FOLDS)} folds")
    n_code, n_code_ben = int(code.sum()), int((code & (y == 0)).sum())
    print(f"{n_code} rows look like code ({n_code_ben} benign): they keep the shipped score")
    head = "recall at pooled FPR 1/2/5%"
    print(f"  {'variant':26s} {head:38s} at 0.8: R (FPR pooled/macro)")
    fits = {}
    scored = {}
    for name, w in [("shipped alone", 0.0), *[(f"shipped + {w} x deep", w) for w in WEIGHTS]]:
        sf, cal = final(w) if w else (prob(shipped, ship_cal), ship_cal)
        rec, fpr, macro = at_08(sf)
        at = " / ".join(f"{recall_at(sf, y, f):.3f}" for f in (0.01, 0.02, 0.05))
        at += f"  AUC {auc(y, sf):.3f}"
        print(f"  {name:26s} {at:38s} {rec:.4f} ({fpr:.2%} / {macro:.2%})")
        scored[w] = sf
        if w:
            fits[w] = (rec, cal)
    dz = d[read].astype(np.float64)
    at = " / ".join(f"{recall_at(dz, y[read], f):.3f}" for f in (0.01, 0.02, 0.05))
    print(f"  {'deep head alone (read rows)':26s} {at}  AUC {auc(y[read], dz):.3f}")
    best = max(fits, key=lambda w: fits[w][0])
    cal = fits[best][1]
    print(f"\nchosen weight {best}; per fold at 0.8, shipped -> with deep")
    for name in LSO_FOLDS:
        m = fold == name
        parts = []
        for lab, what in ((1, "R"), (0, "FPR")):
            mm = m & (y == lab)
            if mm.any():
                before, after = (scored[0.0][mm] >= 0.8).mean(), (scored[best][mm] >= 0.8).mean()
                parts.append(f"{what} {before:.3f} -> {after:.3f}")
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
