"""Build ``src/keeptrusts/detectors/pii/data/names.json``, the PERSON recognizer's lexicon.

This is a one-off, build-time script. The gateway never runs it and needs none of its inputs;
the generated JSON is committed.

Inputs (install them only where you rebuild):

* ``names-dataset==3.3.1`` (PyPI, MIT licence, by Philippe Rémy): per-country popularity ranks of
  ~730k first names and ~980k last names in 105 countries. Its author compiled it from the 2021
  Facebook scrape, so it holds aggregated name frequencies only (no person records). We keep, per
  country, only the names ranked in the top ``--top`` and store one coarse rank bucket per name.
  It needs ~2 GB RAM and ~15 s to load.
* SCOWL size-35 English word lists from Debian (``apt-get install wamerican-small wbritish-small``,
  ``/usr/share/dict/{american,british}-english-small``): the lower-case entries become the
  "common English word" set. SCOWL notice: Copyright 2000-2019 by Kevin Atkinson. Permission to
  use, copy, modify, distribute and sell these word lists, the associated scripts, the output
  created from the scripts, and its documentation for any purpose is hereby granted without fee,
  provided that the above copyright notice appears in all copies and that both that copyright
  notice and this permission notice appear in supporting documentation. Kevin Atkinson makes no
  representations about the suitability of this array for any purpose. It is provided "as is"
  without express or implied warranty.

The evaluation set (``scripts/eval_pii.py``) draws its names from Faker instead, so the lexicon
and the evaluation names come from independent sources.

Usage::

    python -m venv build-venv && build-venv/bin/pip install names-dataset==3.3.1
    build-venv/bin/python scripts/pii_build_names.py
"""

from __future__ import annotations

import argparse
import json
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "keeptrusts" / "detectors" / "pii" / "data" / "names.json"
DICTS = ("/usr/share/dict/american-english-small", "/usr/share/dict/british-english-small")

# rank upper bounds of buckets 5 (most popular) .. 1 (least); 0 means "not in the lexicon"
RANK_BUCKETS = (30, 100, 300, 1000, 3000)

SCOWL_NOTICE = (
    "Common-word list derived from SCOWL size 35 (Debian wamerican-small, wbritish-small). "
    "Copyright 2000-2019 by Kevin Atkinson. Permission to use, copy, modify, distribute and sell "
    "these word lists, the associated scripts, the output created from the scripts, and its "
    "documentation for any purpose is hereby granted without fee, provided that the above "
    "copyright notice appears in all copies and that both that copyright notice and this "
    "permission notice appear in supporting documentation. Kevin Atkinson makes no "
    "representations about the suitability of this array for any purpose. It is provided "
    '"as is" without express or implied warranty.'
)

_FOLD = str.maketrans({"ł": "l", "ø": "o", "ß": "ss", "đ": "d", "æ": "ae", "œ": "oe", "ı": "i"})


def fold(word: str) -> str:
    """ASCII-fold a lower-case word: 'małgorzata' -> 'malgorzata', 'josé' -> 'jose'."""
    word = word.translate(_FOLD)
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def bucket(rank: int) -> int:
    for i, bound in enumerate(RANK_BUCKETS):
        if rank <= bound:
            return len(RANK_BUCKETS) - i
    return 0


def is_latin_name(name: str) -> bool:
    if not name or " " in name or len(name) < 2 or len(name) > 24:
        return False
    for ch in name:
        if ch in "-'":
            continue
        if not ch.isalpha():
            return False
        if ord(ch) > 0x24F:  # outside Latin / Latin-1 / Latin Extended-A and -B
            return False
    return True


def build_table(entries: dict, top: int) -> dict[str, int]:
    table: dict[str, int] = {}
    for name, info in entries.items():
        if not is_latin_name(name):
            continue
        ranks = [r for r in (info.get("rank") or {}).values() if r and r <= top]
        if not ranks:
            continue
        b = bucket(min(ranks))
        if not b:
            continue
        key = name.lower()
        for k in {key, fold(key)}:
            if table.get(k, 0) < b:
                table[k] = b
    return table


def common_words() -> set[str]:
    words: set[str] = set()
    for path in DICTS:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            w = line.strip()
            if w.endswith("'s"):
                w = w[:-2]
            if w and w[0].islower() and w.isalpha():
                words.add(w)
    return words


def pack(table: dict[str, int]) -> list[str]:
    """Bucket b (1..5) -> space-separated names, stored at index b-1."""
    out: list[list[str]] = [[] for _ in RANK_BUCKETS]
    for name, b in table.items():
        out[b - 1].append(name)
    return [" ".join(sorted(names)) for names in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--top", type=int, default=RANK_BUCKETS[-1], help="per-country rank cut-off")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from names_dataset import NameDataset  # build-time only

    nd = NameDataset()
    first = build_table(nd.first_names, args.top)
    last = build_table(nd.last_names, args.top)
    common = common_words()
    doc = {
        "format": 1,
        "sources": {
            "names": "names-dataset 3.3.1 (PyPI, MIT): per-country rank of first and last "
            f"names, top {args.top} per country, Latin script, lower-cased plus ASCII-folded",
            "common": SCOWL_NOTICE,
        },
        "rank_buckets": list(RANK_BUCKETS),
        "first": pack(first),
        "last": pack(last),
        "common": " ".join(sorted(common)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), "utf-8")
    size = args.out.stat().st_size
    print(f"first={len(first)} last={len(last)} common={len(common)} -> {args.out} ({size} bytes)")


if __name__ == "__main__":
    main()
