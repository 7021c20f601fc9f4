#!/usr/bin/env python3
"""Evaluate the prompt-injection detector (``keeptrusts.detectors.injection``).

Prints precision, recall, F1 and false-positive rate (share of benign rows flagged)
at several thresholds for:

* ``dev.jsonl`` and the 15 % dev split of ``extra/*.jsonl`` (in-distribution);
* any labelled JSONL file given with ``--file`` (fields ``text`` and ``label``);
* ``--lso``: leave-source-out. For each fold, the whole training pipeline
  (augmentation included) is re-run without the fold's sources, and the model is
  tested on every row of those sources (train, dev and extra). Related sources are
  held out together (spikee-compose, spikee and pyrit share payloads), so these
  numbers estimate accuracy on sources never seen in training. Slow: ~2 min a fold
  (the token vectors from ``scripts/build_injection_vectors.py`` must be in build/).

It also times ``score()`` on ~50-word and ~1,000-word prompts (median and p95).

Scoring uses the full detector (normalisation, decoding, windows, patterns). The
shipped artifact is used for dev/--file; LSO folds use freshly trained weights,
quantised to float16 like the artifact, and the evaluated artifact's score calibration
(``meta["calibration"]``, a monotone map), so thresholds mean the same as in production.
``--save-oof`` writes the folds' raw (uncalibrated) logits, which
``scripts/train_injection.py --calibrate-from`` turns into that calibration.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_injection as tr

from keeptrusts.detectors.injection import InjectionDetector
from keeptrusts.detectors.injection.features import HashingFeaturizer

THRESHOLDS = (0.5, 0.7, 0.8, 0.9)
ABLATIONS: dict[str, dict[str, bool]] = {
    "full detector": {},
    "without patterns": {"patterns": False},
    "without windows": {"windows": False},
    "without decoding": {"decode": False},
    "classifier only": {"patterns": False, "windows": False, "decode": False},
}

LSO_FOLDS: dict[str, frozenset[str]] = {
    "s-labs": frozenset({"s-labs"}),
    "neuralchemy": frozenset({"neuralchemy:neuralchemy_v1", "neuralchemy:other"}),
    "hackaprompt": frozenset({"neuralchemy:hackaprompt"}),
    "yanismiraoui": frozenset({"yanismiraoui"}),
    "verazuo-jailbreak": frozenset({"verazuo-jailbreak"}),
    "spikee+pyrit": frozenset(
        {
            "spikee-compose",
            "spikee:jailbreak+instruction",
            "spikee:investment-advice-fp",
            "pyrit:jailbreak-templates",
        }
    ),
    "bastion+inspect+giskard": frozenset(
        {"bastioncorpus", "inspect-evals:ipi_coding_agent", "giskard"}
    ),
    "awesome-chatgpt-prompts": frozenset({"awesome-chatgpt-prompts", "awesome-chatgpt-prompts-zh"}),
    "arena+healthbench+ifeval": frozenset({"arena-hard-v2.0", "healthbench", "ifeval"}),
    "qa:mlqa+xquad+jglue+tatoeba": frozenset({"mlqa", "xquad", "jglue", "tatoeba"}),
    "chat:chatterbot+fastchat": frozenset({"chatterbot-corpus", "fastchat"}),
}
# Not run by default (it overlaps the folds above): many sources held out at once, the
# split ``scripts/injection_frontier.py`` compares transformer options on. Jailbreak
# collections, game prompts, indirect injections, assistant prompts and chats are all
# unseen, so the training rows are s-labs, neuralchemy_v1, the multilingual attacks, QA
# and chatterbot.
EXTRA_FOLDS: dict[str, frozenset[str]] = {
    "multi-source": frozenset(
        {
            "verazuo-jailbreak",
            "neuralchemy:hackaprompt",
            "neuralchemy:other",
            *LSO_FOLDS["spikee+pyrit"],
            *LSO_FOLDS["bastion+inspect+giskard"],
            "awesome-chatgpt-prompts",
            *LSO_FOLDS["arena+healthbench+ifeval"],
            "fastchat",
        }
    ),
}
ALL_FOLDS = {**LSO_FOLDS, **EXTRA_FOLDS}


def metrics(y: np.ndarray, s: np.ndarray, thr: float) -> dict[str, float]:
    pred = s >= thr
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    nan = float("nan")
    p = tp / (tp + fp) if tp + fp else nan
    r = tp / (tp + fn) if tp + fn else nan
    f1 = 2 * p * r / (p + r) if tp else (0.0 if tp + fn else nan)
    fpr = fp / (fp + tn) if fp + tn else nan
    return {"P": p, "R": r, "F1": f1, "FPR": fpr}


def auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _fmt(x: float) -> str:
    return "  -  " if x != x else f"{x:.3f}"


def report(name: str, y: np.ndarray, s: np.ndarray) -> None:
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    print(f"\n{name}: {len(y)} rows ({npos} injection, {nneg} benign), AUC {_fmt(auc(y, s))}")
    print("  thr     P      R      F1     FPR")
    for t in THRESHOLDS:
        m = metrics(y, s, t)
        print(f"  {t:.1f}  {_fmt(m['P'])}  {_fmt(m['R'])}  {_fmt(m['F1'])}  {_fmt(m['FPR'])}")


def lso_rows(data: Path = tr.DEFAULT_DATA) -> tuple[list[tr.Row], list[str]]:
    """Every row in the order ``--lso`` scores them (and ``--save-oof`` writes their
    logits), with the name of its fold."""
    train, dev, dev_extra = tr.load_rows(data)
    everything = train + dev + dev_extra
    pairs = [(r, name) for name, gs in LSO_FOLDS.items() for r in everything if r.group in gs]
    return [r for r, _ in pairs], [name for _, name in pairs]


def score_rows(det: InjectionDetector, texts: list[str]) -> np.ndarray:
    return np.array([det.score(t) for t in texts], dtype=np.float64)


def score_rows_deep(det: InjectionDetector, texts: list[str]) -> np.ndarray:
    """Scores as ``prompt-injection`` gives them with ``deep: true`` (the shipped blend)."""
    from keeptrusts.detectors.injection import deep

    scorer, blend = deep.load_scorer(threads=2), deep.load_blend()
    logits = [r.logit for r in scorer.score_many(texts)]
    return np.array(
        [blend.text_score(det, det.score(t), z) for t, z in zip(texts, logits, strict=True)]
    )


def load_jsonl(path: Path) -> tuple[list[str], np.ndarray]:
    rows = tr._read_jsonl(path)
    return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])


def timing(det: InjectionDetector, data: Path) -> None:
    """Median / p95 latency of ``score()`` for ~50 and ~1,000 English words."""
    words: list[str] = []
    path = data / "extra" / "benign-extra.jsonl"
    if path.exists():
        for r in tr._read_jsonl(path):
            if r.get("lang") == "en" and len(r["text"]) > 2000:
                words += r["text"].split()
            if len(words) > 1200:
                break
    if len(words) < 1000:
        words = ("The quick brown fox jumps over the lazy dog near the river bank. " * 120).split()
    print("\ntiming of score() (single thread, normalisation + decoding + model + patterns):")
    for n, reps in ((50, 400), (1000, 100)):
        text = " ".join(words[:n])
        det.score(text)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            det.score(text)
            ts.append((time.perf_counter() - t0) * 1000)
        ts.sort()
        p95 = ts[int(0.95 * len(ts)) - 1]
        med = statistics.median(ts)
        print(f"  {n:5d} words ({len(text)} chars): median {med:.2f} ms, p95 {p95:.2f} ms")


def _calibrated(raw: np.ndarray, cal: dict) -> np.ndarray:
    """Apply ``sigmoid(scale * logit + shift)`` to uncalibrated scores."""
    z = np.log(np.clip(raw, 1e-15, 1 - 1e-15) / np.clip(1 - raw, 1e-15, 1))
    return 1 / (1 + np.exp(-(cal.get("scale", 1.0) * z + cal.get("shift", 0.0))))


def run_lso(
    train: list[tr.Row], dev: list[tr.Row], dev_extra: list[tr.Row], folds, args, cal: dict
) -> None:
    everything = train + dev + dev_extra
    oof_z: list[np.ndarray] = []
    oof_fold: list[str] = []
    fz = args.featurizer
    all_y: list[np.ndarray] = []
    all_s: list[np.ndarray] = []
    summary: list[tuple[str, dict, dict, int, int]] = []
    cache: dict = {}
    tok_cache: dict = {}
    ablation: dict[str, list[tuple[dict, int, int]]] = {}
    saved = None
    if args.lso_from:
        with np.load(args.lso_from, allow_pickle=False) as z:
            saved = {k: z[k] for k in ("logit", "label", "fold")}
    for name in folds:
        groups = ALL_FOLDS[name]
        if saved is not None:  # re-report saved out-of-fold logits with this calibration
            m = saved["fold"] == name
            y, z = saved["label"][m], saved["logit"][m]
            raw = 1 / (1 + np.exp(-z))
        else:
            print(f"\n[LSO] training without {name} ...", file=sys.stderr)
            rows = tr.build_training_set(train, exclude=groups)
            emb = None
            if args.emb_dim:
                vocab, raw_vectors = args.vectors
                fold_train = [r for r in train if r.group not in groups]
                emb = tr.make_embedder(vocab, raw_vectors, fold_train, args.emb_dim, tok_cache)
            coef, intercept, emb_coef = tr.fit(
                rows,
                fz,
                args.C,
                seed=args.seed,
                cache=cache,
                cap=args.cap,
                emb=emb,
                tok_cache=tok_cache,
            )
            coef16 = coef.astype(np.float16).astype(np.float32)
            dense_kw = {"embedder": emb, "emb_coef": emb_coef} if emb is not None else {}
            det = InjectionDetector(coef16, intercept, fz, **dense_kw)  # uncalibrated: raw logits
            test = [r for r in everything if r.group in groups]
            y = np.array([r.label for r in test])
            raw = score_rows(det, [r.text for r in test])
            z = np.log(np.clip(raw, 1e-15, 1 - 1e-15) / np.clip(1 - raw, 1e-15, 1))
        oof_z.append(z)
        oof_fold += [name] * len(y)
        s = _calibrated(raw, cal)
        for variant, kwargs in ABLATIONS.items():
            if args.no_ablation or saved is not None:
                break
            v_det = InjectionDetector(coef16, intercept, fz, **dense_kw, **kwargs)
            v_s = _calibrated(score_rows(v_det, [r.text for r in test]), cal)
            ablation.setdefault(variant, []).append(
                (metrics(y, v_s, 0.8), int((y == 1).sum()), int((y == 0).sum()))
            )
        report(f"LSO fold '{name}' (held out: {', '.join(sorted(groups))})", y, s)
        all_y.append(y)
        all_s.append(s)
        m8 = metrics(y, s, 0.8)
        m5 = metrics(y, s, 0.5)
        summary.append((name, m5, m8, int((y == 1).sum()), int((y == 0).sum())))
    y, s = np.concatenate(all_y), np.concatenate(all_s)
    report(
        "LSO pooled (every held-out row, each scored by the model that never saw its source)", y, s
    )
    print("\nLSO summary at thresholds 0.5 | 0.8  (R = recall on injections, FPR on benign rows)")
    print(f"  {'fold':30s} {'n_inj':>6s} {'n_ben':>6s}   R@.5   FPR@.5 |  R@.8   FPR@.8")
    for name, m5, m8, npos, nneg in summary:
        print(
            f"  {name:30s} {npos:6d} {nneg:6d}   {_fmt(m5['R'])}  {_fmt(m5['FPR'])} |"
            f"  {_fmt(m8['R'])}  {_fmt(m8['FPR'])}"
        )
    rec = [m8["R"] for _, _, m8, npos, _ in summary if npos]
    fpr = [m8["FPR"] for _, _, m8, _, nneg in summary if nneg]
    print(
        f"  macro mean over folds @0.8: recall {np.mean(rec):.3f} ({len(rec)} folds),"
        f" FPR {np.mean(fpr):.3f} ({len(fpr)} folds)"
    )
    if args.save_oof:
        np.savez(args.save_oof, logit=np.concatenate(oof_z), label=y, fold=np.array(oof_fold))
        print(f"\nwrote out-of-fold raw logits to {args.save_oof}", file=sys.stderr)
    if not ablation:
        return
    print("\nLayer ablation (same folds, threshold 0.8): macro recall / macro FPR")
    for variant, res in ablation.items():
        v_rec = np.mean([m["R"] for m, npos, _ in res if npos])
        v_fpr = np.mean([m["FPR"] for m, _, nneg in res if nneg])
        print(f"  {variant:28s} recall {v_rec:.3f}  FPR {v_fpr:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=tr.DEFAULT_DATA, help="prompt-injection data folder"
    )
    ap.add_argument("--model", type=Path, default=None, help="artifact (default: shipped model)")
    ap.add_argument(
        "--file", type=Path, action="append", default=[], help="labelled JSONL to score"
    )
    ap.add_argument("--lso", action="store_true", help="run leave-source-out folds (slow)")
    ap.add_argument(
        "--folds",
        default="",
        help=f"comma-separated subset of: {', '.join(ALL_FOLDS)}",
    )
    ap.add_argument("--no-dev", action="store_true", help="skip the dev-set evaluation")
    ap.add_argument(
        "--deep",
        action="store_true",
        help="dev/--file: score with the optional deep layer (pip install '.[deep]')",
    )
    ap.add_argument("--no-timing", action="store_true", help="skip the latency measurement")
    ap.add_argument("--by-source", action="store_true", help="dev metrics per source group")
    ap.add_argument("--no-ablation", action="store_true", help="LSO: skip the layer ablation")
    ap.add_argument("--save-oof", type=Path, default=None, help="LSO: write raw OOF logits (.npz)")
    ap.add_argument(
        "--lso-from",
        type=Path,
        default=None,
        help="LSO: report saved OOF logits (.npz from --save-oof) instead of retraining",
    )
    ap.add_argument(
        "--C", type=float, default=None, help="LSO: regularisation (default: the artifact's)"
    )
    ap.add_argument("--bits", type=int, default=None, help="LSO: hash bits (default: artifact's)")
    ap.add_argument("--seed", type=int, default=tr.SEED)
    ap.add_argument(
        "--emb-dim",
        type=int,
        default=None,
        help="LSO: embedding size (0 = n-grams only; default: the artifact's)",
    )
    ap.add_argument(
        "--vectors",
        dest="vectors_path",
        type=Path,
        default=tr.DEFAULT_VECTORS,
        help="LSO: raw token vectors (scripts/build_injection_vectors.py)",
    )
    args = ap.parse_args(argv)

    det = InjectionDetector.from_file(args.model) if args.model else InjectionDetector.load()
    print(f"model: {det.meta.get('model')} (C={det.meta.get('C')}, seed={det.meta.get('seed')})")
    need_data = not args.no_dev or args.lso
    score = score_rows_deep if args.deep else score_rows
    train, dev, dev_extra = tr.load_rows(args.data) if need_data else ([], [], [])

    if not args.no_dev:
        for name, rows in (("dev.jsonl", dev), ("dev split of extra/", dev_extra)):
            y = np.array([r.label for r in rows])
            s = score(det, [r.text for r in rows])
            report(name, y, s)
            if args.by_source:
                for g in sorted({r.group for r in rows}):
                    m = np.array([r.group == g for r in rows])
                    r8 = metrics(y[m], s[m], 0.8)
                    r, f = _fmt(r8["R"]), _fmt(r8["FPR"])
                    print(f"    {g:38s} n={m.sum():5d}  R@.8 {r}  FPR@.8 {f}")
    for path in args.file:
        texts, y = load_jsonl(path)
        report(str(path.name), y, score(det, texts))
    if not args.no_timing:
        timing(det, args.data)
    if args.lso or args.lso_from:
        folds = [f.strip() for f in args.folds.split(",") if f.strip()] or list(LSO_FOLDS)
        unknown = [f for f in folds if f not in ALL_FOLDS]
        if unknown:
            ap.error(f"unknown folds: {unknown}")
        if args.C is None:
            args.C = float(det.meta.get("C", 8.0))
        args.cap = int(det.meta.get("cap", 3000))
        args.featurizer = det._fz
        if args.bits is not None:
            args.featurizer = HashingFeaturizer.from_dict(
                {**det._fz.to_dict(), "n_bits": args.bits}
            )
        args.emb_dim = int(det.meta.get("emb_dim", 0)) if args.emb_dim is None else args.emb_dim
        if args.emb_dim:
            args.vectors = tr.load_vectors(args.vectors_path)
        cal = det.meta.get("calibration") or {}
        print(f"LSO: C={args.C}, featurizer {args.featurizer.to_dict()}, calibration {cal}")
        run_lso(train, dev, dev_extra, folds, args, cal)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
