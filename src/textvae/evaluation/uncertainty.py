"""Standard errors of the reported metrics, computed from the run itself (issue 23), beside the paper's estimators
(which are unchanged):

- means over test sentences (Recon, KL, −ELBO, IW-NLL): the sample standard deviation of the per-sentence values
  over √N (:func:`mean_se`); PPL, a ratio of sums over sentences, by the delta method (:func:`ppl_se`); the IW estimate's own Monte Carlo part
  from the spread of each sentence's importance weights (:func:`iw_mc_variance`);
- MI and AU: a bootstrap over sentences with fresh posterior samples in every replicate (:func:`bootstrap`);
- BLEU and PCC (probes) and classifier accuracies: bootstraps and repeats, in :mod:`textvae.probing`.

Per-sentence values ("influence values") are what a paired comparison of two models on the same sentences needs:
``u_i`` such that the metric's sampling variance is ``var(u) / N`` (for a mean, the values themselves). They are
stored rounded in the result JSON (:func:`compact`).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

BOOTSTRAP_SEED = 20231      # the generator of every bootstrap (independent of the run's noise streams)


def mean_se(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of a mean over independent items: sample std (N − 1) / √N; 0 for fewer than 2 items."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return 0.0
    return float(x.std(ddof=1) / math.sqrt(x.size))


def ppl_influence(nll: np.ndarray, tokens: np.ndarray | Sequence[int]) -> np.ndarray:
    """Per-sentence influence values of PPL = exp(Σ nll_i / Σ t_i), a ratio over sentences (delta method):
    ``u_i = N · PPL · (nll_i − L · t_i) / T`` with L = Σ nll / T, T = Σ t, so that var(PPL) ≈ var(u) / N; two
    models on the same sentences (same t_i) compare by the differences of their ``u``."""
    nll = np.asarray(nll, dtype=np.float64)
    t = np.asarray(tokens, dtype=np.float64)
    total = float(t.sum())
    rate = float(nll.sum()) / total
    return len(nll) * math.exp(rate) * (nll - rate * t) / total


def ppl_se(nll: np.ndarray, tokens: np.ndarray | Sequence[int]) -> float:
    """Delta-method standard error of PPL = exp(Σ nll_i / Σ t_i) over test sentences (t_i: each sentence's
    predicted tokens)."""
    return mean_se(ppl_influence(nll, tokens))


def iw_mc_variance(log_w: np.ndarray) -> float:
    """Monte Carlo variance of log(mean_k w_k) for one sentence's K log importance weights (delta method):
    Var(w) / (K · mean(w)²), with the weights rescaled by their maximum."""
    lw = np.asarray(log_w, dtype=np.float64)
    k = lw.size
    if k < 2:
        return 0.0
    w = np.exp(lw - lw.max())
    m = w.mean()
    return float(w.var(ddof=1) / (k * m * m))


def bootstrap(statistic: Callable[[np.ndarray, int], float], n: int, replicates: int,
              seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``statistic(indices, r)`` on ``replicates`` resamples of ``range(n)`` with replacement (``r``: the
    replicate number, for statistics that also redraw noise). Returns the replicate values."""
    rng = np.random.default_rng(seed)
    return np.array([statistic(rng.integers(0, n, size=n), r) for r in range(replicates)], dtype=np.float64)


def spread(values: Sequence[float] | np.ndarray) -> float:
    """Sample standard deviation (N − 1); 0 for fewer than 2 values (the SE of a bootstrap or of repeats)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    return float(x.std(ddof=1)) if x.size > 1 else 0.0


def mi_bootstrap(mu: torch.Tensor, logvar: torch.Tensor, replicates: int = 30, seed: int = BOOTSTRAP_SEED
                 ) -> np.ndarray:
    """Li's MI (whole set) on bootstrap resamples of the sentences, each with fresh posterior samples."""
    from textvae.evaluation.metrics import mutual_information

    mu, logvar = mu.detach().double().cpu(), logvar.detach().double().cpu()
    gen = torch.Generator().manual_seed(seed)

    def stat(idx: np.ndarray, _r: int) -> float:
        sel = torch.as_tensor(idx)
        return mutual_information(mu[sel], logvar[sel], "li", generator=gen)

    return bootstrap(stat, mu.size(0), replicates, seed)


def au_bootstrap(mu: torch.Tensor, threshold: float, replicates: int = 100, seed: int = BOOTSTRAP_SEED
                 ) -> np.ndarray:
    """AU on bootstrap resamples of the sentences (its stability under resampling)."""
    from textvae.evaluation.metrics import active_units

    mu = mu.detach().double().cpu()
    return bootstrap(lambda idx, _r: float(active_units(mu[torch.as_tensor(idx)], threshold)), mu.size(0),
                     replicates, seed)


def compact(values: Sequence[float] | np.ndarray | torch.Tensor, decimals: int = 3) -> list[float]:
    """Per-sentence values for the result JSON, rounded (paired comparisons need differences of ≫ 1e-3)."""
    arr = values.detach().cpu().double().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    return [round(float(v), decimals) for v in arr]
