"""The prepared corpus: examples of one output file (:class:`Split`), their statistics, and writing a dataset
folder atomically (``OUT/{train,valid,test}.txt``, subsets, ``stats.json`` last), for ``textvae data prepare``."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from textvae.corpora.datasets import SPLITS


@dataclass
class Split:
    """Examples of one output file: token lists, labels (labelled corpora), and where they came from."""

    sentences: list[list[str]]
    labels: list[str] | None
    origin: str
    dropped_empty: int = 0
    note: str = ""

    def subset(self, idx: Sequence[int], origin: str, note: str = "") -> "Split":
        return Split([self.sentences[i] for i in idx],
                     None if self.labels is None else [self.labels[i] for i in idx], origin, 0, note)


def split_stats(sp: Split, train_vocab: set[str] | None = None) -> dict:
    lengths = Counter(len(s) for s in sp.sentences)
    types: set[str] = set()
    words = 0
    oov = 0
    for s in sp.sentences:
        types.update(s)
        words += len(s)
        if train_vocab is not None:
            oov += sum(1 for w in s if w not in train_vocab)
    n = len(sp.sentences)
    st = {
        "examples": n,
        "words": words,
        "tokens": words + n,  # predicted tokens: one </s> per example counted (SPEC §1.4)
        "vocabulary": len(types),
        "mean_length": round(words / n, 4) if n else 0.0,
        "min_length": min(lengths) if lengths else 0,
        "max_length": max(lengths) if lengths else 0,
        "length_histogram": {str(k): lengths[k] for k in sorted(lengths)},
        "dropped_empty": sp.dropped_empty,
        "origin": sp.origin,
    }
    if train_vocab is not None:
        st["oov_words"] = oov
    if sp.labels is not None:
        lab = Counter(sp.labels)
        st["labels"] = {k: lab[k] for k in sorted(lab, key=lambda x: (len(x), x))}
    if sp.note:
        st["note"] = sp.note
    return st


def _format(sp: Split) -> str:
    if sp.labels is None:
        return "".join(" ".join(s) + "\n" for s in sp.sentences)
    return "".join(f"{lab}\t{' '.join(s)}\n" for lab, s in zip(sp.labels, sp.sentences))


def write_dataset(out: Path, splits: Mapping[str, Split], extras: Mapping[str, Split], stats: dict,
                  aux: Mapping[str, str] | None = None) -> dict:
    """Write everything under a temporary directory beside ``out``, ``stats.json`` last, then swap it in."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the prepared corpus is ordinary data
        train_vocab: set[str] = set()
        for s in splits["train"].sentences:
            train_vocab.update(s)
        stats["splits"] = {}
        for split in SPLITS:
            sp = splits[split]
            (tmp / f"{split}.txt").write_text(_format(sp), encoding="utf-8")
            stats["splits"][split] = split_stats(sp, None if split == "train" else train_vocab)
        stats["vocabulary"] = len(train_vocab)
        stats["vocab_size"] = 4 + len(train_vocab - {"<pad>", "<s>", "</s>", "<unk>"})
        if extras:
            stats["subsets"] = {}
            for role in sorted(extras, key=lambda r: (len(r), r)):
                (tmp / f"{role}.txt").write_text(_format(extras[role]), encoding="utf-8")
                st = split_stats(extras[role])
                stats["subsets"][role] = {k: st[k] for k in ("examples", "words", "tokens", "origin")
                                          if k in st} | ({"labels": st["labels"]} if "labels" in st else {})
        for name, text in (aux or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        old = None
        if out.exists() or out.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "previous")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats
