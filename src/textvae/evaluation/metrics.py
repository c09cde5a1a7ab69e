"""The evaluation metrics of SPEC §5 as formulas: per-sentence noise streams, posterior samples, the
importance-weighted log-likelihood written out with the model's own modules (the reference of the fast path in
:mod:`textvae.evaluation.fast_vae`), active units, mutual information (Li's and He's), the LSTM-LM's exact likelihood.

Every sentence's noise comes from its own generator seeded from ``(seed, stream, sentence index)``, so a
metric does not depend on how sentences are grouped into batches.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from textvae.corpora.data import make_batches
from textvae.core.errors import ConfigError
from textvae.modeling.model import LOG_2PI, LSTMLM, VAE, log_normal_diag, log_standard_normal

STREAM_IW, STREAM_REC, STREAM_MI = 1, 2, 3
_M64 = (1 << 64) - 1


# ----------------------------------------------------------------------------------------------------------
# Per-sentence noise and posterior samples
# ----------------------------------------------------------------------------------------------------------

def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def sentence_seed(seed: int, index: int, stream: int) -> int:
    """A 63-bit seed for sentence ``index`` of a split, independent per ``stream`` (IW, Recon, MI)."""
    return _splitmix64(_splitmix64(_splitmix64(seed & _M64) ^ stream) ^ index) >> 1


class SentenceNoise:
    """Standard-normal noise ``[n, nz]`` for one sentence, a function of (seed, stream, index) only."""

    def __init__(self, seed: int, stream: int):
        self.seed, self.stream = int(seed), int(stream)
        self._gen = torch.Generator(device="cpu")

    def __call__(self, index: int, n: int, nz: int) -> torch.Tensor:
        self._gen.manual_seed(sentence_seed(self.seed, index, self.stream))
        return torch.randn((n, nz), generator=self._gen, dtype=torch.float32)


def posterior_samples(mu: torch.Tensor, logvar: torch.Tensor, noise: SentenceNoise, index: int, n: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples z = μ + σ·ε ~ q(z|x) of one sentence (float32 ``[n, nz]``, CPU) and float64
    ``log p(z) − log q(z|x)`` ``[n]``. Fixed shapes per sentence, so nothing depends on chunking; log q uses ε
    directly (exact even when σ is tiny, as for an AE)."""
    nz = mu.numel()
    eps = noise(index, n, nz)
    mu_c, lv_c = mu.detach().float().cpu(), logvar.detach().float().cpu()
    z = mu_c + torch.exp(0.5 * lv_c) * eps
    zd, ed = z.double(), eps.double()
    log_prior = -0.5 * (nz * LOG_2PI + (zd * zd).sum(1))
    log_q = -0.5 * (nz * LOG_2PI + lv_c.double().sum() + (ed * ed).sum(1))
    return z, log_prior - log_q


# ----------------------------------------------------------------------------------------------------------
# The importance-weighted log-likelihood (SPEC §5.2), plainly
# ----------------------------------------------------------------------------------------------------------

@torch.no_grad()
def iw_log_likelihood_reference(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """SPEC §5.2 with the model's own modules, as He et al.'s ``nll_iw``:

        log p̂(x) = logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K,   z_k = μ(x) + σ(x)·ε_k

    ``x [B, T]``: framed ids (``<s> … </s>``) of sentences of one length; ``eps [B, K, nz]``: the standard-
    normal noise of the K samples. Returns float64 ``[B]``. ``model`` in eval mode (no dropout). The fast path
    (:func:`textvae.evaluation.fast_vae.iw_log_likelihood`) computes the same with the noise of :func:`iw_noise`."""
    K = eps.size(1)
    mu, logvar = model.encoder(x)                                    # q(z|x) = N(μ, diag σ²)
    z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps         # z_k ~ q(z|x)         [B, K, nz]
    log_px_z = model.decoder.log_prob(x, z).double()                 # log p(x|z_k)         [B, K]
    log_pz = log_standard_normal(z).double()                         # log p(z_k)
    log_qz = log_normal_diag(z, mu, logvar).double()                 # log q(z_k|x)
    return torch.logsumexp(log_px_z + log_pz - log_qz, dim=1) - math.log(K)


def iw_noise(seed: int, indices: Sequence[int], K: int, nz: int) -> torch.Tensor:
    """The IW noise ``[len(indices), K, nz]`` that ``textvae evaluate`` draws for these sentences of a split."""
    noise = SentenceNoise(seed, STREAM_IW)
    return torch.stack([noise(i, K, nz) for i in indices])


# ----------------------------------------------------------------------------------------------------------
# Active units and mutual information (SPEC §5.3, §5.4)
# ----------------------------------------------------------------------------------------------------------

def au_variances(mu: torch.Tensor) -> torch.Tensor:
    """Per-dimension variance of the posterior means over the split (N − 1 denominator), float64 ``[nz]``."""
    mu = mu.detach().double()
    if mu.size(0) < 2:
        return torch.zeros(mu.size(1), dtype=torch.float64, device=mu.device)
    return mu.var(0, unbiased=True)


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> int:
    """AU = #{d : Var_x μ_d(x) ≥ threshold} (SPEC §5.3)."""
    return int((au_variances(mu) >= threshold).sum().item())


def _log_q_matrix(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``[Ni, Nj]`` float64: log N(z_i; μ_j, diag exp(logvar_j)) (all inputs float64).

    Uses the matmul expansion of Σ_d (z − μ)²/σ² when its cancellation error is below ~1e-7 nats, else the
    direct (slower) difference — e.g. for an AE whose variances are tiny."""
    nz = z.size(1)
    iv = torch.exp(-logvar)                                            # [Nj, nz]
    scale = float(((z * z).amax(0) + (mu * mu).amax(0)).mul(iv.amax(0)).sum()) if z.numel() else 0.0
    if scale < 1e8:
        quad = (z * z) @ iv.t() - 2.0 * (z @ (mu * iv).t()) + (mu * mu * iv).sum(1)[None, :]
        quad = quad.clamp_min(0.0)
    else:
        quad = torch.cat([((zi[:, None, :] - mu[None]) ** 2 * iv[None]).sum(-1) for zi in z.split(16)])
    return -0.5 * (nz * LOG_2PI + logvar.sum(1)[None, :] + quad)


def _mi_group(mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, chunk: int = 1024) -> float:
    """Li/He formula on one group of N sentences: mean_i E_q log q(z|x_i) − mean_i log q_agg(z_i)."""
    n, nz = mu.shape
    neg_entropy = (-0.5 * nz * LOG_2PI - 0.5 * (1.0 + logvar).sum(1)).mean()
    log_qz = []
    for s in range(0, n, chunk):
        lq = _log_q_matrix(z[s:s + chunk], mu, logvar)
        log_qz.append(torch.logsumexp(lq, dim=1) - math.log(n))
    return float(neg_entropy - torch.cat(log_qz).mean())


def mutual_information(mu: torch.Tensor, logvar: torch.Tensor, variant: str = "li",
                       batch_sizes: Sequence[int] | None = None, z: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> float:
    """I_q(x; z) (SPEC §5.4). ``variant="li"``: one group over the whole split (ceiling log N);
    ``variant="he"``: the same formula inside each batch (consecutive rows, sizes ``batch_sizes``; default
    32), averaged over batches weighted by batch size. ``z``: one posterior sample per row (drawn with
    ``generator`` when not given)."""
    mu, logvar = mu.detach().double(), logvar.detach().double()
    if z is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=torch.float64,
                          device="cpu" if generator is None else generator.device).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
    z = z.detach().double().reshape(mu.shape)
    n = mu.size(0)
    if variant == "li":
        return _mi_group(mu, logvar, z)
    if variant != "he":
        raise ConfigError(f"MI variant {variant!r}: use 'li' (whole split) or 'he' (per batch)")
    if batch_sizes is None:
        batch_sizes = [min(32, n - s) for s in range(0, n, 32)]
    if sum(batch_sizes) != n:
        raise ConfigError(f"MI (he): batch sizes sum to {sum(batch_sizes)}, not {n}")
    total, s = 0.0, 0
    for b in batch_sizes:
        total += b * _mi_group(mu[s:s + b], logvar[s:s + b], z[s:s + b])
        s += b
    return total / n


def logmeanexp_exact(w: np.ndarray) -> float:
    """log(mean(exp(w))) of a float64 vector with an exactly rounded sum (order-independent)."""
    w = np.asarray(w, dtype=np.float64)
    m = float(w.max())
    if not math.isfinite(m):
        return m
    return m + math.log(math.fsum(np.exp(w - m).tolist())) - math.log(len(w))


def mi_samples(mu: torch.Tensor, logvar: torch.Tensor, seed: int, index_offset: int = 0) -> torch.Tensor:
    """One z ~ q(z|x_i) per sentence (float64 ``[N, nz]``, CPU) for the MI estimator, per-sentence MI stream."""
    noise = SentenceNoise(seed, STREAM_MI)
    nz = mu.size(1)
    eps = torch.cat([noise(i + index_offset, 1, nz) for i in range(mu.size(0))]).double()
    return mu.detach().double().cpu() + torch.exp(0.5 * logvar.detach().double().cpu()) * eps


@torch.no_grad()
def lm_log_likelihood(model: LSTMLM, examples: Sequence[Sequence[int]], batch_size: int = 32, device=None
                      ) -> torch.Tensor:
    """Exact log p(x) per sentence for the LSTM-LM (float64 ``[N]``, split order)."""
    device = device or next(model.parameters()).device
    model.eval()
    batches = make_batches(examples, batch_size)
    out = torch.empty(len(examples), dtype=torch.float64)
    for x, idx in zip(batches.tensors, batches.index):
        out[torch.tensor(idx)] = model.log_prob(x.to(device)).double().cpu()
    return out
