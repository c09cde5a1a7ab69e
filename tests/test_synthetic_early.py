"""grammar `early` (textvae.corpora.synthetic_early, issue 24): the label is expressed only in the first half of each
sentence and never in its last third, checked on generated text against grammar-v3, where it is not."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from textvae.corpora import prepare as P
from textvae.corpora import synthetic
from textvae.corpora import synthetic_early
from textvae.core.errors import DataError


def _first_half(tokens):
    return tokens[:(len(tokens) + 1) // 2]   # positions i with 2i < n


def _last_third(tokens):
    return [t for i, t in enumerate(tokens) if 3 * i >= 2 * len(tokens)]


def label_accuracy(module, part) -> float:
    """Held-out accuracy of a logistic regression that reads only ``part`` of each sentence (bag of words)."""
    corpus = module.generate(seed=11, sizes={"train": 4000, "test": 4000})
    texts = {s: [part(ex.tokens) for ex in corpus[s]] for s in corpus}
    labels = {s: [ex.label for ex in corpus[s]] for s in corpus}
    vec = CountVectorizer(analyzer=lambda tokens: tokens, binary=True).fit(texts["train"])
    clf = LogisticRegression(max_iter=5000).fit(vec.transform(texts["train"]), labels["train"])
    return 100.0 * clf.score(vec.transform(texts["test"]), labels["test"])


def sentiment_word_positions(module) -> tuple[float, float]:
    """Share of the sentiment words (grammar-v3's and the openers) in the first half and in the last third."""
    words = synthetic_early.sentiment_words() | ({w for lex in synthetic._LEXICON.sent.values()
                                                   for tag in lex["tags"] for w in tag} - {"it", "so"})
    first = last = total = 0
    for ex in module.generate(seed=3, sizes={"train": 3000})["train"]:
        n = len(ex.tokens)
        for i, w in enumerate(ex.tokens):
            if w in words:
                total += 1
                first += 2 * i < n
                last += 3 * i >= 2 * n
    return first / total, last / total


def test_the_label_is_only_in_the_first_half():
    first, last = sentiment_word_positions(synthetic_early)
    assert first == 1.0 and last == 0.0
    v3_first, v3_last = sentiment_word_positions(synthetic)   # grammar-v3 fails the property
    assert v3_first < 0.6 and v3_last > 0.3


def test_the_last_third_says_nothing_about_the_label_and_the_first_half_all():
    """A classifier of the last third's words is at chance (4,000 test sentences: ±0.8 points is one s.d.)
    on grammar `early` and far above it on grammar-v3; the first half predicts the label as well as the
    whole sentence does."""
    assert label_accuracy(synthetic_early, _last_third) < 53.0
    assert label_accuracy(synthetic, _last_third) > 85.0
    first = label_accuracy(synthetic_early, _first_half)
    assert first > 93.0 and abs(first - label_accuracy(synthetic_early, list)) < 1.0


def test_other_factors_still_shape_the_end():
    """Tense and subject are still read off the last third, so the encoder must keep the start in mind
    against a busy end."""
    corpus = synthetic_early.generate(seed=5, sizes={"train": 3000})["train"]
    times = {w for phrases in synthetic._TIME.values() for p in phrases for w in p.split()}
    assert np.mean([any(w in times for w in _last_third(ex.tokens)) for ex in corpus]) > 0.6


def test_lengths_and_form_do_not_depend_on_the_label():
    corpus = synthetic_early.generate(seed=7, sizes={"train": 6000})["train"]
    for label in (0, 1):
        lengths = [len(ex.tokens) for ex in corpus if ex.label == label]
        assert 15.5 < np.mean(lengths) < 17.5 and min(lengths) >= 6 and max(lengths) <= 20
    mean = {label: np.mean([len(ex.tokens) for ex in corpus if ex.label == label]) for label in (0, 1)}
    assert abs(mean[0] - mean[1]) < 0.15


def test_prepare_variant_early(tmp_path):
    a = P.prepare("synthetic", tmp_path / "a", examples=(300, 50, 50), variant="early")
    b = P.prepare("synthetic", tmp_path / "b", examples=(300, 50, 50), variant="early")
    c = P.prepare("synthetic", tmp_path / "c", examples=(300, 50, 50))
    assert a["variant"] == synthetic_early.GRAMMAR == "grammar-early-v1" and c["variant"] == synthetic.GRAMMAR
    assert a["source"]["generator"] == "textvae.corpora.synthetic_early"
    assert (tmp_path / "a" / "train.txt").read_bytes() == (tmp_path / "b" / "train.txt").read_bytes()
    assert (tmp_path / "a" / "train.txt").read_bytes() != (tmp_path / "c" / "train.txt").read_bytes()
    meta = json.loads((tmp_path / "a" / "factors.json").read_text())
    assert meta["generator"] == "textvae.corpora.synthetic_early grammar-early-v1" and meta["label_factor"] == "sentiment"
    first = (tmp_path / "a" / "train.txt").read_text().splitlines()[0].split("\t")[1].split()
    assert first[2] == ","   # every sentence opens with its two-word verdict
    with pytest.raises(DataError, match="unknown variant"):
        P.prepare("synthetic", tmp_path / "d", examples=(30, 5, 5), variant="late")
