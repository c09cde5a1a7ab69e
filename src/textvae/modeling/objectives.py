"""Per-example training losses of every method and the KL-weight schedules (SPEC §3).

All losses are nats per sentence; a batch's loss is the mean over its examples (SPEC §1.5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from textvae.modeling.model import VAE, kl_per_dim, log_normal_diag, log_standard_normal, reparameterize


@dataclass
class LossTerms:
    loss: torch.Tensor   # [B] the objective being minimised
    rec: torch.Tensor    # [B] -log p(x|z), mean over samples
    kl: torch.Tensor     # [B] analytic KL(q(z|x) || p(z))


def vae_loss(model: VAE, x: torch.Tensor, objective: str, beta: float, lam: float | None = None,
             fbp_mode: str = "per_example", iwae_k: int = 10, iwae_code_compat: bool = False) -> LossTerms:
    """The loss of one batch ``x [B, T]`` for a VAE-family objective.

    - ``elbo``: Rec + β·KL (β = 0 gives the AE);
    - ``fb``: Rec + β·Σ_d 1[KL_d > λ/nz]·KL_d, per example and dimension (SPEC §3.3);
    - ``fbp``: Rec + β·1[KL > λ]·KL per example, or one mask from the batch-mean KL (SPEC §3.4);
    - ``iwae``: −(logsumexp_k log w_k − log k); ``iwae_code_compat`` gives the authors' sign-flipped form.
    """
    mu, logvar = model.encoder(x)
    kld = kl_per_dim(mu, logvar)
    kl = kld.sum(1)
    if objective == "iwae":
        z = reparameterize(mu, logvar, iwae_k)
        log_px_z = model.decoder.log_prob(x, z)                                   # [B, k]
        log_w = log_px_z + log_standard_normal(z) - log_normal_diag(z, mu, logvar)
        if iwae_code_compat:
            loss = torch.logsumexp(-log_w, dim=1) - math.log(iwae_k)
        else:
            loss = -(torch.logsumexp(log_w, dim=1) - math.log(iwae_k))
        return LossTerms(loss, -log_px_z.mean(1), kl)

    z = reparameterize(mu, logvar, 1)
    rec = -model.decoder.log_prob(x, z)[:, 0]
    if objective == "elbo":
        kl_term = kl
    elif objective == "fb":
        if lam is None:
            raise ValueError("fb objective needs lam")
        threshold = lam / kld.size(1)
        kl_term = (kld * (kld > threshold).to(kld.dtype)).sum(1)
    elif objective == "fbp":
        if lam is None:
            raise ValueError("fbp objective needs lam")
        if fbp_mode == "per_example":
            kl_term = kl * (kl > lam).to(kl.dtype)
        elif fbp_mode == "batch_mean":
            kl_term = kl * (kl.mean() > lam).to(kl.dtype)
        else:
            raise ValueError(f"unknown fbp_mode {fbp_mode!r}")
    else:
        raise ValueError(f"unknown objective {objective!r}")
    loss = rec + beta * kl_term if beta != 0 else rec
    return LossTerms(loss, rec, kl)


class BetaSchedule:
    """β as a pure function of the global iteration count ``step`` (1 for the first update), so a resumed
    run recomputes exactly the β an uninterrupted one would have used.

    - ``const``: β fixed;
    - ``linear``: β_step = min(1, kl_start + step·r), r = (1 − kl_start) / (warm_up · N_train / batch_size)
      (SPEC §3.2: the first step already uses kl_start + r; N/32, not the true batch count);
    - ``cyclic``: cycles of ``cycle_epochs`` epochs; β = min(1, cyclic_start + pos / (ramp_epochs ·
      batches_per_epoch)) with pos the iteration index inside the cycle (SPEC §3.7 variant b).
    """

    def __init__(self, kind: str, beta: float = 1.0, kl_start: float = 0.0, warm_up: float = 10,
                 n_train: int = 1, batch_size: int = 32, batches_per_epoch: int = 1,
                 cycle_epochs: int = 10, cyclic_start: float = 0.1, ramp_epochs: float = 5):
        self.kind, self.beta, self.kl_start = kind, beta, kl_start
        self.rate = (1.0 - kl_start) / (warm_up * n_train / batch_size) if warm_up > 0 else math.inf
        self.cycle_len = cycle_epochs * batches_per_epoch
        self.cyclic_start = cyclic_start
        self.ramp_iters = ramp_epochs * batches_per_epoch

    def __call__(self, step: int) -> float:
        if self.kind == "const":
            return self.beta
        if self.kind == "linear":
            return min(1.0, self.kl_start + step * self.rate)
        if self.kind == "cyclic":
            pos = (step - 1) % self.cycle_len
            return min(1.0, self.cyclic_start + pos / self.ramp_iters)
        raise ValueError(f"unknown schedule {self.kind!r}")
