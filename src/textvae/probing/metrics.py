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
                         device: torch.device | str = "cpu", batch_size: int = 256, quiet: bool = True
                         ) -> tuple[float, list[list[int]]]:
    """Mean over sentences of −log p(x | z), z ~ q(z | x̃), x̃ = x after k swaps (SPEC §6.3); k = 0 = clean.

    Returns ``(mean, corrupted framed ids)``. Swaps use numpy ``default_rng([seed, k])`` in sentence order;
    the posterior noise a CPU generator on stream ``100 + k``."""
    rng = np.random.default_rng([int(seed), int(k)])
    corrupted = [[x[0]] + swap_words(x[1:-1], k, rng, mode) + [x[-1]] for x in examples]
    mu, logvar = encode(model, corrupted, device, batch_size, quiet=True)
    z = sample_posterior(mu, logvar, cpu_generator(seed, 100 + k))
    batches = make_batches(examples, batch_size)
    total = 0.0
    for x, idx in progress_bar(zip(batches.tensors, batches.index), total=len(batches), quiet=quiet,
                            desc=f"noisy k={k}", leave=False):
        zz = z[torch.tensor(idx)].to(device).unsqueeze(1)
        total += float(-model.decoder.log_prob(x.to(device), zz).sum())
    return total / len(examples), corrupted


