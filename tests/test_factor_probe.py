"""docs/diagnostics/factor_probe.py (issue 24): the per-factor, per-position linear probe of an encoder's
means, run end to end on a tiny corpus and checkpoint and checked against an independent computation."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from textvae.corpora import prepare as P
from textvae.modeling.checkpoint import atomic_save, model_payload
from textvae.corpora.data import Vocab, read_corpus
from textvae.modeling.model import VAE, ModelConfig

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "diagnostics" / "factor_probe.py"


def _load():
    return load_script(SCRIPT)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one thread (conftest.one_thread)."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 300-sentence corpus of grammar `early` and a random VAE whose encoder has large weights (its means
    then depend on the words, so the probe has something to find)."""
    root = tmp_path_factory.mktemp("factor_probe")
    data = root / "data"
    P.prepare("synthetic", data, examples=(300, 40, 120), variant="early", seed=4)
    vocab = Vocab.build(read_corpus(data / "train.txt").sentences)
    torch.manual_seed(0)
    model = VAE(ModelConfig(vocab_size=len(vocab), enc_emb=8, dec_emb=8, enc_hidden=12, dec_hidden=12, nz=6))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    ckpt = root / "best.pt"
    atomic_save(model_payload(model, vocab, {"method": "ae", "dataset": "tiny", "seed": 1}, epoch=1, best_val=1.0),
                ckpt)
    return {"data": data, "ckpt": ckpt, "model": model, "vocab": vocab, "root": root}


def test_positions_and_parts_by_hand():
    fp = _load()
    five = ["a", "b", "c", "d", "."]
    got = fp.position_targets([five])
    assert {k: v[0] for k, v in got.items()} == {"word 1": "a", "word 2": "b", "word 3": "c", "middle word": "c",
                                                 "last word": "d", "final mark": ".", "length": "5"}
    six, seven = list("abcdef"), list("abcdefg")
    assert fp.first_half(six) == list("abc") and fp.last_third(six) == list("ef")      # 2i < 6; 3i >= 12
    assert fp.first_half(seven) == list("abcd") and fp.last_third(seven) == list("fg")  # 2i < 7; 3i >= 14
    assert fp.chance(["x", "x", "y"], ["x", "y", "y", "y"]) == 0.25


def _newton_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> np.ndarray:
    """argmin_w,b  ½|w|² + C Σ log(1 + exp(−s (w·x + b))), s = ±1, the intercept unpenalised (scikit-learn's
    objective), by Newton's method to a gradient of 1e-10."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    s = np.where(y == 1, 1.0, -1.0)
    penalty = np.eye(xb.shape[1])
    penalty[-1, -1] = 0.0
    beta = np.zeros(xb.shape[1])
    for _ in range(200):
        margin = s * (xb @ beta)
        p = 1.0 / (1.0 + np.exp(margin))                  # σ(−margin)
        grad = penalty @ beta - c * xb.T @ (s * p)
        if np.abs(grad).max() < 1e-10:
            return beta
        hess = penalty + c * (xb * (p * (1 - p))[:, None]).T @ xb
        beta -= np.linalg.solve(hess, grad)
    raise AssertionError("Newton did not converge")


def test_script_matches_an_independent_logistic_regression(tiny, tmp_path, capsys):
    fp = _load()
    out = tmp_path / "rows.json"
    assert fp.main([str(tiny["ckpt"]), str(tiny["data"]), "--json", str(out)]) == 0
    rows = {r["target"]: r for r in json.loads(out.read_text())}
    assert "| sentiment | 2 |" in capsys.readouterr().out
    assert set(rows) == set(fp.FACTORS) | set(fp.POSITIONS) | {"length"}

    # the means one sentence at a time through the encoder (no batching), the labels from the text files
    model, vocab = tiny["model"].eval(), tiny["vocab"]

    def means_and_labels(split):
        corpus = read_corpus(tiny["data"] / f"{split}.txt")
        with torch.no_grad():
            mu = np.stack([model.encoder(torch.tensor([vocab.encode(s)]))[0][0].double().numpy()
                           for s in corpus.sentences])
        return mu, np.array([int(label) for label in corpus.labels])

    (x_train, y_train), (x_test, y_test) = means_and_labels("train"), means_and_labels("test")
    beta = _newton_logistic(x_train, y_train)
    predicted = (np.hstack([x_test, np.ones((len(x_test), 1))]) @ beta > 0).astype(int)
    expected = 100.0 * np.mean(predicted == y_test)
    majority = Counter(y_train.tolist()).most_common(1)[0][0]
    assert rows["sentiment"]["chance"] == pytest.approx(100.0 * np.mean(y_test == majority))
    assert abs(rows["sentiment"]["accuracy"] - expected) <= 100.0 / len(y_test) + 1e-9   # one sentence at most
    assert 0 < predicted.mean() < 1   # not the trivial majority answer: the fits agree on a real boundary
    # every sentence opens with its verdict: the first half predicts the label, the last third does not
    assert rows["sentiment"]["text first half"] > 80 and rows["sentiment"]["text last third"] < 70
    assert all(0 < r["iterations"] < fp.MAX_ITER for r in rows.values() if r["classes"] > 1)


def test_a_fit_that_does_not_converge_is_an_error(monkeypatch):
    fp = _load()
    monkeypatch.setattr(fp, "MAX_ITER", 2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    from sklearn.exceptions import ConvergenceWarning

    with pytest.raises(ConvergenceWarning):
        fp.linear_probe(x, y, x, y)
