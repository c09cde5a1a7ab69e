"""The probes' measures (SPEC §6): corpus BLEU, word edit distances, Pearson's r and the smoothness PCC, word
swaps and noisy reconstruction, interpolation points."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from textvae.corpora.data import make_batches
from textvae.core.errors import ConfigError, DataError
from textvae.probing.setup import cpu_generator, encode, progress_bar, sample_posterior


# ==========================================================================================================
# Metrics
# ==========================================================================================================

def corpus_bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> tuple[float, str]:
    """Corpus BLEU-4 ×100 with sacreBLEU, tokenize ``none``, no smoothing (SPEC §6.1) → ``(score, signature)``."""
    from sacrebleu.metrics import BLEU

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu = BLEU(tokenize="none", smooth_method="none", force=True)  # force: no "tokenized period" warning
    score = bleu.corpus_score([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]]).score
    # sacreBLEU returns 100.00000000000004 for a perfect match; clip rounding noise only
    return float(min(max(score, 0.0), 100.0)), str(bleu.get_signature())


def bleu_stats(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]], max_n: int = 4) -> np.ndarray:
    """Per-sentence BLEU statistics ``[N, 2·max_n + 2]``: clipped n-gram matches (n = 1…4), hypothesis n-gram
    counts, hypothesis length, reference length; their column sums give the corpus BLEU (:func:`bleu_of`)."""
    from collections import Counter

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    out = np.zeros((len(hyps), 2 * max_n + 2), dtype=np.int64)
    for i, (h, r) in enumerate(zip(hyps, refs)):
        for n in range(1, max_n + 1):
            hc = Counter(tuple(h[k:k + n]) for k in range(len(h) - n + 1))
            rc = Counter(tuple(r[k:k + n]) for k in range(len(r) - n + 1))
            out[i, n - 1] = sum(min(c, rc[g]) for g, c in hc.items())
            out[i, max_n + n - 1] = max(len(h) - n + 1, 0)
        out[i, 2 * max_n], out[i, 2 * max_n + 1] = len(h), len(r)
    return out


def bleu_of(sums: np.ndarray, max_n: int = 4) -> float:
    """Corpus BLEU ×100 from summed statistics (no smoothing: 0 when any n-gram order has no match)."""
    m, t = sums[:max_n].astype(np.float64), sums[max_n:2 * max_n].astype(np.float64)
    c, r = float(sums[2 * max_n]), float(sums[2 * max_n + 1])
    if c == 0 or (m == 0).any() or (t == 0).any():
        return 0.0
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
    return 100.0 * bp * math.exp(float(np.log(m / t).mean()))


def bleu_influence(stats: np.ndarray, max_n: int = 4) -> np.ndarray:
    """Per-sentence influence values ``u`` of corpus BLEU (delta method on log BLEU): var(BLEU) ≈ var(u) / N,
    and two systems on the same references compare by the per-sentence differences of ``u``."""
    sums = stats.sum(0).astype(np.float64)
    b = bleu_of(sums, max_n)
    if b == 0.0:
        return np.zeros(len(stats))
    m, t = sums[:max_n], sums[max_n:2 * max_n]
    c, r = sums[2 * max_n], sums[2 * max_n + 1]
    st = stats.astype(np.float64)
    dlog = (st[:, :max_n] / m - st[:, max_n:2 * max_n] / t).sum(1) / max_n
    if c <= r:                                  # brevity penalty 1 − r/c
        dlog += r * st[:, 2 * max_n] / (c * c) - st[:, 2 * max_n + 1] / c
    return len(stats) * b * dlog


def bleu_bootstrap(stats: np.ndarray, replicates: int = 200, seed: int = 20231) -> np.ndarray:
    """Corpus BLEU on bootstrap resamples of the sentences (from the per-sentence statistics)."""
    rng = np.random.default_rng(seed)
    n = len(stats)
    return np.array([bleu_of(stats[rng.integers(0, n, size=n)].sum(0)) for _ in range(replicates)])


class TokenCoder:
    """Maps each distinct token to one Unicode code point so that a token list becomes a string and
    character-level Levenshtein (rapidfuzz, C++) equals word-level Levenshtein. Surrogates are skipped."""

    LIMIT = 0x110000 - 0x800

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    def char(self, token: str) -> str:
        c = self.codes.get(token)
        if c is None:
            i = len(self.codes)
            if i >= self.LIMIT:
                raise ValueError("more distinct tokens than Unicode code points")
            cp = i if i < 0xD800 else i + 0x800
            c = self.codes[token] = chr(cp)
        return c

    def encode(self, tokens: Sequence[str]) -> str:
        return "".join(self.char(t) for t in tokens)

    def encode_all(self, sentences: Sequence[Sequence[str]]) -> list[str]:
        return [self.encode(s) for s in sentences]


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Word-level Levenshtein distance (unit insert/delete/substitute) between two token lists."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(list(a), list(b)))


def pairwise_edit_distances(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]], workers: int = -1) -> np.ndarray:
    """Element-wise word-level edit distances ``d(a[k], b[k])``."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    if len(a) != len(b):
        raise ValueError("pairwise_edit_distances needs equally long lists")
    coder = TokenCoder()
    sa, sb = coder.encode_all(a), coder.encode_all(b)
    if hasattr(process, "cpdist"):
        return np.asarray(process.cpdist(sa, sb, scorer=Levenshtein.distance, workers=workers, dtype=np.int32),
                          dtype=np.int64)
    return np.fromiter((Levenshtein.distance(x, y) for x, y in zip(sa, sb)), dtype=np.int64, count=len(sa))


def min_edit_distances(queries: Sequence[Sequence[str]], corpus: Sequence[Sequence[str]], workers: int = -1,
                       chunk: int = 16, quiet: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """For each query the minimum word-level edit distance to any corpus sentence and the index of the
    (first) nearest one. ``rapidfuzz.process.cdist`` in C++ threads, ``chunk`` queries at a time."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    if not corpus:
        raise ValueError("empty corpus")
    coder = TokenCoder()
    cs = coder.encode_all(corpus)
    qs = coder.encode_all(queries)
    mins = np.empty(len(qs), dtype=np.int64)
    arg = np.empty(len(qs), dtype=np.int64)
    for s in progress_bar(range(0, len(qs), chunk), quiet=quiet, desc="nearest neighbours",
                       total=(len(qs) + chunk - 1) // chunk, leave=False):
        d = process.cdist(qs[s:s + chunk], cs, scorer=Levenshtein.distance, workers=workers, dtype=np.int32)
        arg[s:s + chunk] = d.argmin(axis=1)
        mins[s:s + chunk] = d.min(axis=1)
    return mins, arg


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson r; NaN when either vector is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError("pearson needs two 1-d vectors of equal length >= 2")
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float((xc * xc).sum()) * float((yc * yc).sum()))
    return float((xc * yc).sum() / den) if den > 0 else float("nan")


def random_pairs(n: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pairs (i, j), i != j, each uniform over the n(n-1) ordered pairs, with replacement."""
    if n < 2:
        raise DataError("smoothness needs at least 2 sentences")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=count)
    j = (i + rng.integers(1, n, size=count)) % n
    return i, j


def smoothness_pcc(latents: np.ndarray, sentences: Sequence[Sequence[str]], pairs: int, seed: int
                   ) -> tuple[float, np.ndarray, np.ndarray]:
    """SPEC §6.2: Pearson r between ``||z_i - z_j||_2`` and the word edit distance of sentences i, j over
    ``pairs`` random pairs → ``(r, l2 distances, edit distances)``."""
    z = np.asarray(latents, dtype=np.float64)
    if len(z) != len(sentences):
        raise ValueError("one latent per sentence expected")
    i, j = random_pairs(len(z), pairs, seed)
    l2 = np.sqrt(((z[i] - z[j]) ** 2).sum(axis=1))
    ed = pairwise_edit_distances([sentences[a] for a in i], [sentences[b] for b in j])
    return pearson(l2, ed), l2, ed


def pcc_bootstrap(l2: np.ndarray, ed: np.ndarray, replicates: int = 200, seed: int = 20231) -> np.ndarray:
    """The smoothness PCC on bootstrap resamples of the pairs."""
    rng = np.random.default_rng(seed)
    n = len(l2)
    return np.array([pearson(l2[idx], ed[idx]) for idx in (rng.integers(0, n, size=n) for _ in range(replicates))])


def swap_words(tokens: Sequence[Any], k: int, rng: np.random.Generator, mode: str = "random") -> list:
    """``k`` successive swaps (SPEC §6.3). ``random``: exchange the words at two distinct uniformly chosen
    positions; ``adjacent``: exchange the words at a uniform position i and i+1. Sentences of < 2 words stay
    unchanged. The multiset of words is always kept."""
    out = list(tokens)
    n = len(out)
    if n < 2:
        return out
    for _ in range(k):
        if mode == "random":
            i, j = rng.choice(n, size=2, replace=False)
        elif mode == "adjacent":
            i = int(rng.integers(0, n - 1))
            j = i + 1
        else:
            raise ConfigError(f"unknown swap mode {mode!r} (random|adjacent)")
        out[i], out[j] = out[j], out[i]
    return out


def interpolation_points(z0: torch.Tensor, z1: torch.Tensor, points: int) -> torch.Tensor:
    """``z_t = (1-t) z0 + t z1`` for ``t = 0, 1/(points-1), …, 1`` → ``[points, nz]`` (endpoints exact)."""
    if points < 2:
        raise ConfigError("--points must be >= 2")
    t = torch.linspace(0.0, 1.0, points, dtype=z0.dtype).unsqueeze(1)
    return (1.0 - t) * z0.unsqueeze(0) + t * z1.unsqueeze(0)


@torch.no_grad()
def noisy_reconstruction(model, examples: Sequence[Sequence[int]], k: int, seed: int, mode: str = "random",
                         device: torch.device | str = "cpu", batch_size: int = 256, quiet: bool = True,
                         per_sentence: bool = False):
    """Mean over sentences of −log p(x | z), z ~ q(z | x̃), x̃ = x after k swaps (SPEC §6.3); k = 0 = clean.

    Returns ``(mean, corrupted framed ids)``, and with ``per_sentence`` also the per-sentence values (float64
    numpy, split order). Swaps use numpy ``default_rng([seed, k])`` in sentence order;
    the posterior noise a CPU generator on stream ``100 + k``."""
    rng = np.random.default_rng([int(seed), int(k)])
    corrupted = [[x[0]] + swap_words(x[1:-1], k, rng, mode) + [x[-1]] for x in examples]
    mu, logvar = encode(model, corrupted, device, batch_size, quiet=True)
    z = sample_posterior(mu, logvar, cpu_generator(seed, 100 + k))
    batches = make_batches(examples, batch_size)
    values = np.empty(len(examples), dtype=np.float64)
    for x, idx in progress_bar(zip(batches.tensors, batches.index), total=len(batches), quiet=quiet,
                            desc=f"noisy k={k}", leave=False):
        zz = z[torch.tensor(idx)].to(device).unsqueeze(1)
        values[idx] = (-model.decoder.log_prob(x.to(device), zz)).reshape(len(idx)).double().cpu().numpy()
    mean = float(values.sum()) / len(examples)
    return (mean, corrupted, values) if per_sentence else (mean, corrupted)


