"""What an encoder's posterior means say about each factor of the embedded corpus, and about each position.

    python docs/diagnostics/factor_probe.py CKPT DATA [--json OUT]

Encodes DATA/train.txt and DATA/test.txt with the checkpoint's encoder (the means Table 8's probes read),
fits a scikit-learn LogisticRegression (lbfgs, C = 1, run to convergence: a fit that stops at its iteration
limit is an error) on the raw training means for each target, and prints its test accuracy beside chance
(the share of the test sentences in the most frequent training class). Targets (issue 24):

- the four factors of the grammar (DATA/SPLIT.factors.jsonl: topic, sentiment = the label, tense, subject),
  each with where the text shows it: the test accuracy of the same classifier on the bag of words of each
  sentence's first half (positions i < n/2 of n tokens) and of its last third (i ≥ 2n/3). A factor that the
  first half predicts and the last third does not is expressed only at the start (grammar `early`'s label);
- the word at a position: the 1st, 2nd and 3rd word, the middle one (i = n // 2), the last word before the
  final mark and the mark, and the length in tokens.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

FACTORS = ("sentiment", "topic", "tense", "subject")
POSITIONS = {  # target name -> token index from the sentence's tokens (n >= 2 tokens)
    "word 1": lambda n: 0,
    "word 2": lambda n: 1,
    "word 3": lambda n: 2,
    "middle word": lambda n: n // 2,
    "last word": lambda n: n - 2,
    "final mark": lambda n: n - 1,
}
MAX_ITER = 20_000


def first_half(tokens: list[str]) -> list[str]:
    """Positions i with 2i < n."""
    return tokens[:(len(tokens) + 1) // 2]


def last_third(tokens: list[str]) -> list[str]:
    """Positions i with 3i ≥ 2n."""
    return tokens[len(tokens) - len(tokens) // 3:]


def position_targets(sentences: list[list[str]]) -> dict[str, list[str]]:
    """The word at each position of ``POSITIONS``, and the length, of every sentence."""
    out = {name: [s[at(len(s))] for s in sentences] for name, at in POSITIONS.items()}
    out["length"] = [str(len(s)) for s in sentences]
    return out


def chance(train_y, test_y) -> float:
    """Accuracy of always answering the most frequent training class."""
    values, counts = np.unique(np.asarray(train_y), return_counts=True)
    return float(np.mean(np.asarray(test_y) == values[counts.argmax()]))


def linear_probe(train_x, train_y, test_x, test_y) -> dict:
    """Test accuracy (%) of an L2 logistic regression (C = 1) fitted to convergence on ``train_x``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if len(np.unique(train_y)) < 2:
        return {"accuracy": 100.0 * float(np.mean(test_y == train_y[0])), "iterations": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = LogisticRegression(C=1.0, max_iter=MAX_ITER, tol=1e-6).fit(train_x, train_y)
    iterations = int(np.max(clf.n_iter_))
    if iterations >= MAX_ITER:   # pragma: no cover - the warning above fires first
        raise RuntimeError(f"logistic regression did not converge in {MAX_ITER} iterations")
    return {"accuracy": 100.0 * float(clf.score(test_x, test_y)), "iterations": iterations}


def bag_of_words(train_texts: list[list[str]], test_texts: list[list[str]]):
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(analyzer=lambda tokens: tokens, binary=True).fit(train_texts)
    return vec.transform(train_texts), vec.transform(test_texts)


def read_split(data: Path, split: str) -> tuple[list[list[str]], list[dict]]:
    from textvae.corpora.data import read_corpus, split_path

    corpus = read_corpus(split_path(data, split))
    factors = [json.loads(line) for line in (data / f"{split}.factors.jsonl").read_text(encoding="utf-8").splitlines()]
    if len(factors) != len(corpus.sentences):
        raise SystemExit(f"{data}: {split}.txt and {split}.factors.jsonl differ in length")
    return corpus.sentences, factors


def means(ckpt: str, sentences: list[list[str]]) -> np.ndarray:
    import torch

    from textvae.probing.setup import encode, load_vae

    model, vocab, _ = load_vae(ckpt, torch.device("cpu"))
    return encode(model, [vocab.encode(s) for s in sentences])[0].numpy().astype(np.float64)


def probe(ckpt: str, data: str | Path, positions: bool = True) -> list[dict]:
    """One row per target: name, kind, classes, chance, μ accuracy (and the text's first-half / last-third
    accuracy for the factors)."""
    data = Path(data)
    (train_s, train_f), (test_s, test_f) = read_split(data, "train"), read_split(data, "test")
    mu_train, mu_test = means(ckpt, train_s), means(ckpt, test_s)
    rows = []
    halves = {name: bag_of_words([cut(s) for s in train_s], [cut(s) for s in test_s])
              for name, cut in (("first half", first_half), ("last third", last_third))}
    for factor in FACTORS:
        y_train, y_test = [f[factor] for f in train_f], [f[factor] for f in test_f]
        row = {"target": factor, "kind": "factor", "classes": len(set(y_train)),
               "chance": 100.0 * chance(y_train, y_test), **linear_probe(mu_train, y_train, mu_test, y_test)}
        for name, (x_train, x_test) in halves.items():
            row[f"text {name}"] = linear_probe(x_train, y_train, x_test, y_test)["accuracy"]
        rows.append(row)
    train_p, test_p = position_targets(train_s), position_targets(test_s)
    for name in train_p if positions else []:
        y_train, y_test = train_p[name], test_p[name]
        rows.append({"target": name, "kind": "position", "classes": len(set(y_train)),
                     "chance": 100.0 * chance(y_train, y_test), **linear_probe(mu_train, y_train, mu_test, y_test)})
    return rows


def markdown(rows: list[dict], ckpt: str, data: str) -> str:
    lines = [f"Linear probe of the posterior means of `{ckpt}` on `{data}` (fit on train, accuracy % on test):", "",
             "| target | classes | chance | μ: linear acc. | lbfgs iterations | text's first half | text's last third |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        text = [f"{r[k]:.1f}" if k in r else "" for k in ("text first half", "text last third")]
        lines.append(f"| {r['target']} | {r['classes']} | {r['chance']:.1f} | {r['accuracy']:.1f} | {r['iterations']} | "
                     f"{text[0]} | {text[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("data")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    ap.add_argument("--factors-only", action="store_true", help="only the four factors (faster)")
    args = ap.parse_args(argv)
    rows = probe(args.ckpt, args.data, positions=not args.factors_only)
    print(markdown(rows, args.ckpt, args.data))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
