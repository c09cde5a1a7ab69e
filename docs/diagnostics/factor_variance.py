"""Which factors of the embedded corpus a model's posterior means follow (docs/data.md, "Why grammar-v3").

    python docs/diagnostics/factor_variance.py CKPT DATA

Encodes DATA/train.txt with the checkpoint's encoder (the means Table 8's GMM is fitted on) and prints
- η² per factor of DATA/train.factors.jsonl and of tense × sentiment: the share of the means' total variance
  (summed over dimensions) that lies between the factor's groups;
- the make-up of the 10 components of the GMM probe (SPEC §7.1, random state 783435): size, and the share of
  its most frequent sentiment and tense.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from textvae.probing.classifiers import fit_gmm
from textvae.corpora.data import read_corpus, split_path
from textvae.probing.setup import encode, load_vae


def eta_squared(x: np.ndarray, groups: list[str]) -> float:
    groups_a = np.asarray(groups)
    centre = x.mean(0)
    between = sum((groups_a == g).sum() * ((x[groups_a == g].mean(0) - centre) ** 2).sum()
                  for g in np.unique(groups_a))
    return float(between / ((x - centre) ** 2).sum())


def training_means(ckpt: str, data: str) -> tuple[np.ndarray, dict[str, list[str]]]:
    """The checkpoint's posterior means of DATA/train.txt, and each factor's value per sentence."""
    model, vocab, _ = load_vae(ckpt, torch.device("cpu"))
    corpus = read_corpus(split_path(data, "train"))
    mu = encode(model, [vocab.encode(s) for s in corpus.sentences])[0].numpy().astype(np.float64)
    factors = [json.loads(line) for line in open(f"{data}/train.factors.jsonl", encoding="utf-8")]
    return mu, {k: [f[k] for f in factors] for k in factors[0]}


def main(ckpt: str, data: str) -> None:
    mu, groups = training_means(ckpt, data)
    groups["tense × sentiment"] = [t + " " + s for t, s in zip(groups["tense"], groups["sentiment"])]
    print("η²: " + ", ".join(f"{k} {eta_squared(mu, v):.3f}" for k, v in groups.items()))
    comp = fit_gmm(mu, 10, 783435).predict(mu)
    for c in range(10):
        idx = np.flatnonzero(comp == c)
        if len(idx) == 0:
            continue
        parts = []
        for k in ("sentiment", "tense"):
            values, counts = np.unique(np.asarray(groups[k])[idx], return_counts=True)
            parts.append(f"{k} {values[counts.argmax()]} {counts.max() / len(idx):.2f}")
        print(f"component {c}: {len(idx)} sentences; " + "; ".join(parts))


if __name__ == "__main__":
    main(*sys.argv[1:3])
