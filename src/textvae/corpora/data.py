"""Corpora: reading files, the vocabulary, sentence framing and exact-length batches (SPEC §1).

A corpus file holds one example per line, tokens separated by whitespace; a labelled file holds
``label<TAB>text``. Errors name the file and the line.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

from textvae.core.errors import DataError
from textvae.core.rundir import atomic_write_text

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
RESERVED = (PAD, BOS, EOS, UNK)


@dataclass
class Corpus:
    """Tokenised examples of one split, with labels for labelled files."""

    path: str
    sentences: list[list[str]]
    labels: list[str] | None = None
    dropped_empty: int = 0

    def __len__(self) -> int:
        return len(self.sentences)


def is_labelled_file(path: str | Path, probe_lines: int = 20) -> bool:
    """A file is labelled (``label<TAB>text``) when any of its first lines holds a TAB; every line must then."""
    with open(path, "rb") as fh:
        lines = [ln for ln in (fh.readline() for _ in range(probe_lines)) if ln.strip()]
    return any(b"\t" in ln for ln in lines)


def read_corpus(path: str | Path, labelled: bool | None = None, max_examples: int | None = None) -> Corpus:
    """Read a corpus file. ``labelled=None`` detects the format from the first lines.

    Raises DataError naming the file (and line) when the file is missing, empty, not UTF-8, or a
    labelled line has no TAB. Lines with zero tokens are dropped and counted (SPEC §1.2).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if labelled is None:
        labelled = is_labelled_file(path)
    sentences: list[list[str]] = []
    labels: list[str] | None = [] if labelled else None
    dropped = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: undecodable bytes (not UTF-8): {exc.reason}") from None
            line = line.rstrip("\r\n")
            if labelled:
                if "\t" not in line:
                    if not line.strip():
                        dropped += 1
                        continue
                    raise DataError(f"{path}:{lineno}: labelled line has no TAB between label and text")
                label, text = line.split("\t", 2)[:2]
                tokens = text.split()
            else:
                tokens = line.split()
            if not tokens:
                dropped += 1
                continue
            sentences.append(tokens)
            if labels is not None:
                labels.append(label.strip())
            if max_examples is not None and len(sentences) >= max_examples:
                break
    if not sentences:
        raise DataError(f"{path}: empty corpus (no non-empty lines)")
    return Corpus(str(path), sentences, labels, dropped)


class Vocab:
    """Word <-> id map. Ids 0..3 are ``<pad> <s> </s> <unk>``; then words by first appearance (SPEC §1.3)."""

    def __init__(self, itos: Sequence[str]):
        itos = list(itos)
        if tuple(itos[:4]) != RESERVED:
            raise DataError(f"vocabulary must start with {RESERVED}, got {tuple(itos[:4])}")
        self.itos = itos
        self.stoi = {w: i for i, w in enumerate(itos)}
        if len(self.stoi) != len(itos):
            raise DataError("vocabulary has duplicate tokens")

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]]) -> "Vocab":
        itos = list(RESERVED)
        seen = set(itos)
        for sent in sentences:
            for w in sent:
                if w not in seen:
                    seen.add(w)
                    itos.append(w)
        return cls(itos)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """``<s> w_1 … w_n </s>`` ids; unseen words map to ``<unk>``."""
        get = self.stoi.get
        return [BOS_ID] + [get(w, UNK_ID) for w in tokens] + [EOS_ID]

    def decode(self, ids: Sequence[int], strip: bool = True) -> list[str]:
        """Tokens of ``ids``; with ``strip`` drop a leading ``<s>`` and cut at the first ``</s>``."""
        out = []
        for k, i in enumerate(ids):
            i = int(i)
            if strip and i == BOS_ID and k == 0:
                continue
            if strip and i == EOS_ID:
                break
            out.append(self.itos[i])
        return out

    def save(self, path: str | Path) -> None:
        atomic_write_text("\n".join(self.itos) + "\n", path)

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        return cls(Path(path).read_text(encoding="utf-8").splitlines())


def count_tokens(examples: Sequence[Sequence[int]]) -> int:
    """Predicted tokens: n+1 per sentence (``</s>`` counted, ``<s>`` not) — SPEC §1.4."""
    return sum(len(x) - 1 for x in examples)


@dataclass
class Batches:
    """Exact-length batches built once (SPEC §1.5): each batch is ``[b, n+2]`` with a single length.

    ``index[k]`` holds the positions (in the original split order) of the rows of batch ``k``.
    """

    tensors: list[torch.Tensor]
    index: list[list[int]]
    num_examples: int
    num_tokens: int = 0
    order: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tensors)

    def epoch_order(self, rng: random.Random) -> list[int]:
        """A fresh random visiting order of the batches."""
        order = list(range(len(self.tensors)))
        rng.shuffle(order)
        return order

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.tensors)


def make_batches(examples: Sequence[Sequence[int]], batch_size: int = 32, device: str | torch.device = "cpu") -> Batches:
    """Sort by length (stable), cut each exact-length group into chunks of ``<= batch_size``."""
    by_len: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_len.setdefault(len(ex), []).append(i)
    tensors, index = [], []
    for length in sorted(by_len):
        ids = by_len[length]
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            tensors.append(torch.tensor([examples[i] for i in chunk], dtype=torch.long, device=device))
            index.append(chunk)
    return Batches(tensors, index, len(examples), count_tokens(examples))

def split_path(data_dir: str | Path, split: str) -> Path:
    """``data/DATASET/{train,valid,test}.txt``; a direct file path is returned unchanged."""
    p = Path(data_dir)
    if p.is_file():
        return p
    cand = p / f"{split}.txt"
    if not cand.is_file():
        raise DataError(f"{cand}: file not found (run `textvae data prepare` first?)")
    return cand
