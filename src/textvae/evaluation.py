"""Evaluation (SPEC §5): importance-weighted NLL/PPL, Recon, KL, −ELBO, ELBO-PPL, MI (Li and He), AU;
exact NLL/PPL for the LSTM-LM; the ``textvae evaluate`` subcommand.

How the importance-weighted estimate is made fast (SPEC §5.2 asks for K = 1000 samples per sentence):

* the encoder runs once per sentence (never once per chunk of samples);
* the rows of one decoder pass are (sentence, sample) pairs of sentences of one exact length, as many as the
  row budget allows; the decoder is an explicit LSTM loop over padded, pre-split weights:
  ``W_ih·[emb(w); z] = W_e·emb(w) + W_z·z``, so the embedding part (and both biases) is computed once per
  sentence and the z part once per sample, leaving one ``[rows, H] × [H, 4H]`` matmul per step;
* the vocabulary projection is done in row tiles that stay in cache, and only the per-row log-softmax of the
  target survives (``cross_entropy`` on the tile); log p(x|z) is accumulated in float64;
* every sentence's noise comes from its own generator seeded from ``(seed, stream, sentence index)`` and all
  K log-weights of a sentence are combined by one exactly rounded float64 log-sum-exp, so the estimate does
  not depend on how sentences and samples are grouped into batches and chunks. On CPU it is bit-identical for
  any batch size / row budget (matmuls are padded to >= 32 rows and LSTM widths to multiples of 64, which
  keeps every row on the same kernel path); on GPU it agrees up to floating-point reassociation.
* ``precision="bf16"``: the vocabulary projection (≈ 90 % of the arithmetic) runs as a bfloat16 matmul; the
  LSTM stays float32. To keep the bfloat16 *output* rounding small, the matmul computes ``W h − c`` with c the
  float32 target logit (an extra input column), so the logits that carry the probability mass are near 0.
  A recorded check against float32 (``precision_check``) is part of the output.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textvae import DEFAULT_SEED
from textvae.data import make_batches, read_corpus, split_path, Vocab, count_tokens
from textvae.errors import CheckpointError, ConfigError
from textvae.rundir import atomic_write_text
from textvae.model import LOG_2PI, VAE, LSTMLM, kl_per_dim

DEFAULT_BUDGET_MB = {"cpu": 1024, "cuda": 16384}   # a 2-core/24 GiB CPU box; an 80 GB GPU
CPU_MAX_ROWS = 1024          # rows of one decoder pass on CPU (bench/bench_evaluate.py measured the optimum)
CPU_PROJ_ROWS = 512          # rows of one vocabulary-projection tile on CPU (bench/bench_evaluate.py --sweep)
MIN_GEMM_ROWS = 32           # fp32 CPU matmuls take another kernel path below ~12 rows (not row-invariant)
WIDTH_MULTIPLE = 64          # LSTM widths padded so elementwise kernels never hit a scalar tail mid-row
AUG_COLS = 32                # extra input columns of the bf16 projection (shift column + zero padding)
BF16_RECURRENT = True        # --precision bf16 also runs the decoder's recurrent matmul in bf16

STREAM_IW, STREAM_REC, STREAM_MI = 1, 2, 3
_M64 = (1 << 64) - 1


# ----------------------------------------------------------------------------------------------------------
# Per-sentence noise
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


# ----------------------------------------------------------------------------------------------------------
# The fast, row-invariant VAE evaluator
# ----------------------------------------------------------------------------------------------------------

def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def _pad_gates(w: torch.Tensor, h: int, hp: int, cols_from: int | None = None) -> torch.Tensor:
    """``[4h, k]`` gate-stacked rows → ``[4hp, k']`` with zero rows (and, when ``cols_from`` is given,
    zero-padded columns ``k → hp`` for the recurrent matrix)."""
    k = w.size(1)
    kk = hp if cols_from is not None else k
    out = w.new_zeros(4, hp, kk)
    out[:, :h, :k] = w.view(4, h, k)
    return out.view(4 * hp, kk)


def _mm(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
    """``a @ bt`` with at least MIN_GEMM_ROWS rows (zero rows appended and dropped) so that every row takes
    the same CPU kernel path whatever the row count."""
    m = a.size(0)
    if m >= MIN_GEMM_ROWS:
        return a @ bt
    pad = a.new_zeros((MIN_GEMM_ROWS, a.size(1)))
    pad[:m] = a
    return (pad @ bt)[:m]


def _lstm_pointwise(gates: torch.Tensor, c: torch.Tensor, hp: int) -> torch.Tensor:
    """In place on ``gates [R, 4hp]`` (i, f, g, o) and ``c [R, hp]``; returns the new h."""
    gates[:, : 2 * hp].sigmoid_()
    gates[:, 3 * hp:].sigmoid_()
    gates[:, 2 * hp: 3 * hp].tanh_()
    c.mul_(gates[:, hp: 2 * hp]).addcmul_(gates[:, :hp], gates[:, 2 * hp: 3 * hp])
    return torch.tanh(c).mul_(gates[:, 3 * hp:])


class FastVAE:
    """Inference-only re-layout of a :class:`textvae.model.VAE` (eval mode: no dropout).

    ``encode(x)`` and ``log_px(...)`` agree with ``model.encoder`` / ``model.decoder.log_prob`` up to float
    rounding and do not depend on which other rows share the batch.
    """

    def __init__(self, model: VAE, device: torch.device | str = "cpu", precision: str = "fp32",
                 recurrent_bf16: bool | None = None):
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"--precision {precision!r}: use fp32 or bf16")
        self.device = torch.device(device)
        self.precision = precision
        # bf16: the vocabulary projection always; the decoder's recurrent matmul too unless told otherwise
        self.recurrent_bf16 = precision == "bf16" and (BF16_RECURRENT if recurrent_bf16 is None else recurrent_bf16)
        cfg = model.cfg
        self.nz, self.V = cfg.nz, cfg.vocab_size
        dev = self.device
        f32 = dict(device=dev, dtype=torch.float32)
        with torch.no_grad():
            enc, dec = model.encoder, model.decoder
            # encoder
            he = enc.lstm.hidden_size
            self.hpe = hpe = _round_up(he, WIDTH_MULTIPLE)
            self.enc_embed = enc.embed.weight.detach().to(**f32)
            self.enc_wih = _pad_gates(enc.lstm.weight_ih_l0.detach().float(), he, hpe).to(**f32)
            self.enc_whh = _pad_gates(enc.lstm.weight_hh_l0.detach().float(), he, hpe, cols_from=he).to(**f32)
            self.enc_b = _pad_gates((enc.lstm.bias_ih_l0 + enc.lstm.bias_hh_l0).detach().float()[:, None],
                                    he, hpe).view(-1).to(**f32)
            lin = enc.linear.weight.detach().float().cpu()                   # [2nz, he]; padded on the CPU
            self.enc_lin = torch.zeros(lin.size(0), hpe).index_copy_(1, torch.arange(he), lin).to(**f32)
            # decoder
            h = dec.lstm.hidden_size
            e = dec.embed.weight.size(1)
            self.hp = hp = _round_up(h, WIDTH_MULTIPLE)
            self.dec_embed = dec.embed.weight.detach().to(**f32)
            wih = dec.lstm.weight_ih_l0.detach().float()
            self.dec_we = _pad_gates(wih[:, :e].contiguous(), h, hp).to(**f32)    # [4hp, E]
            self.dec_wz = _pad_gates(wih[:, e:].contiguous(), h, hp).to(**f32)    # [4hp, nz]
            self.dec_whh = _pad_gates(dec.lstm.weight_hh_l0.detach().float(), h, hp, cols_from=h).to(**f32)
            self.dec_b = _pad_gates((dec.lstm.bias_ih_l0 + dec.lstm.bias_hh_l0).detach().float()[:, None],
                                    h, hp).view(-1).to(**f32)
            wt = dec.trans_z.weight.detach().float().cpu()                    # [h, nz]
            self.dec_wt = torch.zeros(hp, wt.size(1)).index_copy_(0, torch.arange(h), wt).to(**f32)
            wp = dec.proj.weight.detach().float().cpu()                       # [V, h]
            self.dec_wp = torch.zeros(wp.size(0), hp).index_copy_(1, torch.arange(h), wp).to(**f32)
            if precision == "bf16":
                aug = torch.zeros(wp.size(0), hp + AUG_COLS)
                aug[:, :h] = wp
                aug[:, hp] = 1.0                                               # × (−c) → shift by the target logit
                self.dec_wp_aug = aug.to(device=dev, dtype=torch.bfloat16)
                self.dec_wp_aug32 = self.dec_wp_aug.float()                    # its exact fp32 values
                self.dec_whh_bf16 = self.dec_whh.to(torch.bfloat16)

    # -------------------------------------------------------------------------------------------------
    def _lstm_state(self, rows: int, hp: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(rows, hp, device=self.device), torch.zeros(rows, hp, device=self.device))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, n+2]`` → ``(mu, logvar)`` float32 ``[B, nz]``."""
        x = x.to(self.device)
        b, t = x.shape
        hp = self.hpe
        rows = max(b, MIN_GEMM_ROWS)
        emb = self.enc_embed[x.reshape(-1)]                                    # [b*t, E]
        gx = (_mm(emb, self.enc_wih.t()) + self.enc_b).view(b, t, 4 * hp)
        h, c = self._lstm_state(rows, hp)
        gates = torch.zeros(rows, 4 * hp, device=self.device)
        for step in range(t):
            gates[:b] = gx[:, step]
            gates.addmm_(h, self.enc_whh.t())
            h = _lstm_pointwise(gates, c, hp)
        out = _mm(h, self.enc_lin.t())[:b]
        mu, logvar = out.chunk(2, dim=-1)
        return mu.contiguous(), logvar.contiguous()

    @torch.no_grad()
    def sentence_gates(self, inputs: torch.Tensor) -> torch.Tensor:
        """Per-sentence part of the decoder's input gates, ``W_e·emb(w_t) + b_ih + b_hh``: ``[B, T, 4hp]``."""
        b, t = inputs.shape
        emb = self.dec_embed[inputs.reshape(-1).to(self.device)]
        return (_mm(emb, self.dec_we.t()) + self.dec_b).view(b, t, 4 * self.hp)

    @torch.no_grad()
    def log_px(self, ge: torch.Tensor, targets: torch.Tensor, z: torch.Tensor,
               proj_rows: int = CPU_PROJ_ROWS) -> torch.Tensor:
        """log p(x | z) for ``z [b, s, nz]`` of ``b`` sentences of one length → float64 ``[b, s]``.

        ``ge [b, T, 4hp]`` from :meth:`sentence_gates`, ``targets [b, T]`` (``w_1 … w_n </s>``).
        """
        out = self._log_px(ge, targets, z, proj_rows, safe=False)
        if self.precision == "bf16" and not bool(torch.isfinite(out).all()):
            out = self._log_px(ge, targets, z, proj_rows, safe=True)    # a logit > target logit + 88
        return out

    def _log_px(self, ge: torch.Tensor, targets: torch.Tensor, z: torch.Tensor, proj_rows: int,
                safe: bool) -> torch.Tensor:
        b, s, nz = z.shape
        hp = self.hp
        t_len = targets.size(1)
        r = b * s
        rows = max(r, MIN_GEMM_ROWS)
        dev = self.device
        zf = torch.zeros(rows, nz, device=dev)
        zf[:r] = z.reshape(r, nz).to(dev)
        gz = zf @ self.dec_wz.t()                                              # [rows, 4hp]
        c = zf @ self.dec_wt.t()                                               # c0 = W z
        h = torch.tanh(c)                                                      # h0 = tanh(c0)
        gates = gz.clone()
        tgt = torch.zeros(t_len, rows, dtype=torch.long, device=dev)
        tgt[:, :r] = targets.to(dev).t().repeat_interleave(s, dim=1)
        tiles = _tiles(rows, proj_rows)
        bf16 = self.precision == "bf16"
        rec16 = self.recurrent_bf16
        if bf16:
            haug = torch.zeros(rows, hp + AUG_COLS, dtype=torch.bfloat16, device=dev)
            haug[:, :hp] = h                                                   # bf16 copy of h (next step's input)
        parts = []                                       # per tile: token NLLs (fp32/safe) or Σ_v exp(out_v)
        out_t = []                                       # bf16 fast path: the target's entry of out, per step
        fast16 = bf16 and not safe
        for step in range(t_len):
            torch.add(gz[:r].view(b, s, 4 * hp), ge[:, step, None, :], out=gates[:r].view(b, s, 4 * hp))
            if rec16:
                gates.add_(haug[:, :hp] @ self.dec_whh_bf16.t())
            else:
                gates.addmm_(h, self.dec_whh.t())
            h = _lstm_pointwise(gates, c, hp)
            tg = tgt[step]
            if bf16:
                shift = (h * self.dec_wp[tg]).sum(1)                           # fp32 target logit
                haug[:, :hp] = h
                haug[:, hp] = -shift
            if fast16:
                # out = bf16(W̃ h̃ − c̃) has its target entry ≈ 0, so −log p = log Σ_v exp(out_v) − out_t needs no
                # max-shift; the sum is accumulated in fp32. out_t is the same bf16-operand dot product in fp32.
                out_t.append((haug.float() * self.dec_wp_aug32[tg]).sum(1))
            for a, e in tiles:
                if fast16:
                    parts.append((haug[a:e] @ self.dec_wp_aug.t()).exp_().sum(1, dtype=torch.float32))
                elif bf16:
                    parts.append(F.cross_entropy((haug[a:e] @ self.dec_wp_aug.t()).float(), tg[a:e],
                                                 reduction="none"))
                else:
                    parts.append(F.cross_entropy(h[a:e] @ self.dec_wp.t(), tg[a:e], reduction="none"))
        nll = torch.cat(parts).view(t_len, rows)
        if fast16:
            nll = nll.log_().sub_(torch.stack(out_t))
        logp = torch.zeros(rows, dtype=torch.float64, device=dev)
        for step in range(t_len):                                              # fixed order, float64
            logp.sub_(nll[step])
        return logp[:r].view(b, s)


def _tiles(rows: int, tile: int) -> list[tuple[int, int]]:
    """Row ranges of at most ``tile`` rows, none shorter than MIN_GEMM_ROWS (the last absorbs a short tail)."""
    tile = max(int(tile), MIN_GEMM_ROWS)
    out = [(a, min(a + tile, rows)) for a in range(0, rows, tile)]
    if len(out) > 1 and out[-1][1] - out[-1][0] < MIN_GEMM_ROWS:
        a, _ = out[-2]
        out[-2:] = [(a, rows)]
    return out


# ----------------------------------------------------------------------------------------------------------
# Budgets
# ----------------------------------------------------------------------------------------------------------

def plan_rows(fast: FastVAE, max_len: int, budget_mb: float | None = None, max_rows: int | None = None,
              proj_rows: int | None = None) -> tuple[int, int]:
    """(rows per decoder pass, rows per projection tile) within ``budget_mb`` of working memory."""
    dev = fast.device.type
    hp, v = fast.hp, fast.V
    if budget_mb is None:
        budget_mb = DEFAULT_BUDGET_MB.get(dev, DEFAULT_BUDGET_MB["cuda"])
    budget = float(budget_mb) * 2**20
    per_row = 4 * (4 * hp * 2 + 4 * hp) + 8 * max_len + 8 + (2 * (hp + AUG_COLS) if fast.precision == "bf16" else 0)
    per_tile_row = v * (4 + 4 + 4 + (2 if fast.precision == "bf16" else 0))   # logits, log-softmax, temp
    if dev == "cpu":
        # a projection tile of ~CPU_PROJ_ROWS rows for a 10k vocabulary; more rows when the vocabulary is small
        pr = proj_rows or max(CPU_PROJ_ROWS, (CPU_PROJ_ROWS * 10_000) // max(v, 1))
        rows = max_rows or CPU_MAX_ROWS
        rows = max(MIN_GEMM_ROWS, min(rows, int((budget - pr * per_tile_row) // per_row)))
    else:
        rows = max_rows or max(MIN_GEMM_ROWS, int(budget // (per_row + per_tile_row)))
        pr = proj_rows or rows
    return int(rows), int(max(MIN_GEMM_ROWS, min(pr, rows)))


# ----------------------------------------------------------------------------------------------------------
# Library entry points
# ----------------------------------------------------------------------------------------------------------

def _fast(model: nn.Module | FastVAE, device, precision: str) -> FastVAE:
    if isinstance(model, FastVAE):
        return model
    return FastVAE(model, device or next(model.parameters()).device, precision)


def encode_all(model: nn.Module | FastVAE, examples: Sequence[Sequence[int]], batch_size: int = 32,
               device=None, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """μ, logvar (float32, split order) for every example, and the exact-length batches used (index lists)."""
    fast = _fast(model, device, precision)
    batches = make_batches(examples, batch_size)
    n = len(examples)
    mu = torch.empty(n, fast.nz, device=fast.device)
    logvar = torch.empty(n, fast.nz, device=fast.device)
    for x, idx in zip(batches.tensors, batches.index):
        m, lv = fast.encode(x)
        ii = torch.tensor(idx, device=fast.device)
        mu[ii], logvar[ii] = m, lv
    return mu, logvar, batches.index


def _posterior_samples(mu: torch.Tensor, logvar: torch.Tensor, noise: SentenceNoise, index: int, n: int
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


def iw_log_likelihood(model: nn.Module | FastVAE, examples: Sequence[Sequence[int]], K: int = 1000,
                      seed: int = DEFAULT_SEED, mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None,
                      max_rows: int | None = None, budget_mb: float | None = None, proj_rows: int | None = None,
                      encode_batch: int = 32, precision: str = "fp32", device=None, progress: bool = False,
                      index_offset: int = 0) -> torch.Tensor:
    """Importance-weighted log p̂(x) per example (float64 ``[N]``, split order), SPEC §5.2:
    log p̂(x) = logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K, z_k ~ q(z|x).

    Sentence i's samples depend only on (seed, i + index_offset). ``mu``/``logvar`` may be passed to skip the
    encoder. Rows per decoder pass: ``max_rows`` or what fits ``budget_mb``."""
    if K < 1:
        raise ConfigError(f"--iw-samples must be >= 1 (got {K})")
    fast = _fast(model, device, precision)
    n = len(examples)
    if mu is None or logvar is None:
        mu, logvar, _ = encode_all(fast, examples, encode_batch)
    max_len = max(len(x) for x in examples) - 1
    rows, pr = plan_rows(fast, max_len, budget_mb, max_rows, proj_rows)
    per_chunk = max(1, rows // K)                      # sentences per decoder pass (all K samples each)
    samples_per_pass = min(K, rows)                    # samples per pass when one sentence needs several
    noise = SentenceNoise(seed, STREAM_IW)
    out = torch.empty(n, dtype=torch.float64)
    bar = _progress(n, progress, "IW-NLL")
    for x, idx in zip(*_length_groups(examples, per_chunk)):
        inputs, targets = x[:, :-1], x[:, 1:]
        ge = fast.sentence_gates(inputs)
        b = len(idx)
        zs, lws = zip(*(_posterior_samples(mu[i], logvar[i], noise, i + index_offset, K) for i in idx))
        z = torch.stack(zs)                                            # [b, K, nz]
        lw = torch.stack(lws)                                          # [b, K] float64
        lpx = torch.empty(b, K, dtype=torch.float64)
        for a in range(0, K, samples_per_pass):
            e = min(K, a + samples_per_pass)
            lpx[:, a:e] = fast.log_px(ge, targets, z[:, a:e], pr).cpu()
        w = (lpx + lw).numpy()
        for j, i in enumerate(idx):
            out[i] = logmeanexp_exact(w[j])
        bar.update(b)
    bar.close()
    return out


def _length_groups(examples: Sequence[Sequence[int]], per_chunk: int):
    batches = make_batches(examples, per_chunk)
    return batches.tensors, batches.index


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="sent", dynamic_ncols=True, file=sys.stderr)


def elbo_terms(model: nn.Module | FastVAE, examples: Sequence[Sequence[int]], seed: int = DEFAULT_SEED,
               mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None, batch_size: int = 32,
               precision: str = "fp32", device=None, index_offset: int = 0) -> dict[str, torch.Tensor]:
    """Per-sentence (float64 ``[N]``, split order) ``rec`` = −log p(x|z) with one z ~ q(z|x) and analytic
    ``kl``; also ``mu``, ``logvar`` (SPEC §5.1)."""
    fast = _fast(model, device, precision)
    if mu is None or logvar is None:
        mu, logvar, _ = encode_all(fast, examples, batch_size)
    n = len(examples)
    noise = SentenceNoise(seed, STREAM_REC)
    rec = torch.empty(n, dtype=torch.float64)
    for x, idx in zip(*_length_groups(examples, batch_size)):
        z = torch.stack([_posterior_samples(mu[i], logvar[i], noise, i + index_offset, 1)[0] for i in idx])
        lp = fast.log_px(fast.sentence_gates(x[:, :-1]), x[:, 1:], z).cpu()
        rec[torch.tensor(idx)] = -lp[:, 0]
    kl = kl_per_dim(mu.double(), logvar.double()).sum(1).cpu()
    return {"rec": rec, "kl": kl, "mu": mu, "logvar": logvar}


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


# ----------------------------------------------------------------------------------------------------------
# Whole-checkpoint evaluation
# ----------------------------------------------------------------------------------------------------------

def _ppl(total_nll: float, tokens: int) -> float:
    try:
        return math.exp(total_nll / tokens)
    except OverflowError:
        return float("inf")


def evaluate_model(model: nn.Module, vocab: Vocab, sentences: Sequence[Sequence[str]], iw_samples: int = 1000,
                   seed: int = DEFAULT_SEED, mi_variant: str = "li", au_threshold: float = 0.01,
                   budget_mb: float | None = None, max_rows: int | None = None, proj_rows: int | None = None,
                   precision: str = "fp32", device: torch.device | str = "cpu", progress: bool = False,
                   precision_check: int = 0) -> dict:
    """All SPEC §5 metrics of one model on tokenised sentences (vocab ids from the checkpoint)."""
    t0 = time.perf_counter()
    device = torch.device(device)
    model = model.to(device).eval()
    examples = [vocab.encode(s) for s in sentences]
    n, tokens = len(examples), count_tokens(examples)
    res: dict = {"sentences": n, "tokens": tokens, "words": tokens - n, "seed": int(seed),
                 "precision": precision, "device": _device_name(device)}
    if isinstance(model, LSTMLM):
        lp = lm_log_likelihood(model, examples, device=device)
        nll_sum = float(-lp.sum())
        res.update(kind="lm", nll=nll_sum / n, ppl=_ppl(nll_sum, tokens), exact=True, precision="fp32")
        res["seconds"] = round(time.perf_counter() - t0, 3)
        return res
    if not isinstance(model, VAE):
        raise CheckpointError(f"cannot evaluate a model of type {type(model).__name__}")
    if mi_variant not in ("li", "he"):
        raise ConfigError(f"--mi-variant {mi_variant!r}: use li or he")
    fast = FastVAE(model, device, precision)
    fast32 = fast if precision == "fp32" else FastVAE(model, device, "fp32")
    mu, logvar, batch_index = encode_all(fast32, examples)
    terms = elbo_terms(fast32, examples, seed, mu=mu, logvar=logvar)
    rec, kl = terms["rec"], terms["kl"]
    # MI: Li over the whole split; He per exact-length batch of 32 (the batches of SPEC §1.5)
    z_mi = mi_samples(mu, logvar, seed).to(device)
    mi_li = mutual_information(mu, logvar, "li", z=z_mi)
    order = [i for idx in batch_index for i in idx]
    sel = torch.tensor(order, device=device)
    mi_he = mutual_information(mu[sel], logvar[sel], "he", batch_sizes=[len(i) for i in batch_index], z=z_mi[sel])
    t_iw = time.perf_counter()
    lp = iw_log_likelihood(fast, examples, iw_samples, seed, mu=mu, logvar=logvar, max_rows=max_rows,
                           budget_mb=budget_mb, proj_rows=proj_rows, progress=progress)
    t_iw = time.perf_counter() - t_iw
    nll_sum = float(-lp.sum())
    neg_elbo_sum = float((rec + kl).sum())
    res.update(
        kind="vae",
        nll=nll_sum / n, ppl=_ppl(nll_sum, tokens),
        rec=float(rec.mean()), kl=float(kl.mean()), neg_elbo=neg_elbo_sum / n, elbo_ppl=_ppl(neg_elbo_sum, tokens),
        mi=mi_li if mi_variant == "li" else mi_he, mi_variant=mi_variant, mi_li=mi_li, mi_he=mi_he,
        au=active_units(mu, au_threshold), au_threshold=au_threshold,
        au_variances=[round(float(v), 6) for v in au_variances(mu)],
        iw_samples=int(iw_samples), iw_seconds=round(t_iw, 3), iw_sentences_per_s=round(n / max(t_iw, 1e-9), 3),
    )
    rows, pr = plan_rows(fast, max(len(x) for x in examples) - 1, budget_mb, max_rows, proj_rows)
    res["iw_rows"], res["iw_proj_rows"] = rows, pr
    if precision != "fp32" and precision_check > 0:
        m = min(precision_check, n)
        sub = examples[:m]
        ref = iw_log_likelihood(fast32, sub, iw_samples, seed, mu=mu[:m], logvar=logvar[:m], max_rows=max_rows,
                                budget_mb=budget_mb, proj_rows=proj_rows)
        d = (-lp[:m]) - (-ref)
        res["precision_check"] = {"sentences": m, "reference": "fp32", "mean_diff": float(d.mean()),
                                  "mean_abs_diff": float(d.abs().mean()), "max_abs_diff": float(d.abs().max()),
                                  "tolerance": 0.05, "passed": bool(abs(float(d.mean())) < 0.05
                                                                      and float(d.abs().mean()) < 0.05)}
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def evaluate_checkpoint(ckpt: str | Path, data: str | Path, split: str = "test", iw_samples: int = 1000,
                        seed: int = DEFAULT_SEED, mi_variant: str = "li", au_threshold: float = 0.01,
                        budget_mb: float | None = None, max_rows: int | None = None, proj_rows: int | None = None,
                        precision: str = "fp32", device: str = "auto", max_examples: int | None = None,
                        progress: bool = False, precision_check: int = 0) -> dict:
    """Load ``ckpt`` (any kind the trainer writes), read ``split`` of ``data`` with the checkpoint's vocab, and
    compute every column of Tables 10/11 (SPEC §5). Returns the metrics dict (docs/architecture.md)."""
    from textvae.checkpoint import file_sha256, load_model, resolve_device
    dev = resolve_device(device)
    model, vocab, ck = load_model(ckpt, dev)
    path = split_path(data, split)
    corpus = read_corpus(path, max_examples=max_examples)
    res = evaluate_model(model, vocab, corpus.sentences, iw_samples, seed, mi_variant, au_threshold, budget_mb,
                         max_rows, proj_rows, precision, dev, progress, precision_check)
    run = ck.get("run") or {}
    res["checkpoint"] = {"path": str(ckpt), "sha256": file_sha256(ckpt), "method": run.get("method"),
                         "lam": run.get("lam"), "kind": ck.get("kind"), "epoch": ck.get("epoch"),
                         "dataset": run.get("dataset")}
    res["split"] = split
    res["data"] = str(path)
    res["dropped_empty"] = corpus.dropped_empty
    res["unk_rate"] = _unk_rate(vocab, corpus.sentences)
    res["torch"] = torch.__version__
    return res


def _unk_rate(vocab: Vocab, sentences: Iterable[Sequence[str]]) -> float:
    tot = unk = 0
    for s in sentences:
        for w in s:
            tot += 1
            unk += w not in vocab.stoi
    return unk / max(tot, 1)


def summary_line(res: dict) -> str:
    ck = (res.get("checkpoint") or {}).get("path", "?")
    head = f"{ck} [{res.get('split', '?')}: {res['sentences']} sentences, {res['tokens']} tokens]"
    if res.get("kind") == "lm":
        return f"{head} NLL {res['nll']:.2f} PPL {res['ppl']:.2f} (exact) | {res['seconds']:.1f}s"
    return (f"{head} NLL {res['nll']:.2f} PPL {res['ppl']:.2f} (K={res['iw_samples']}) | Recon {res['rec']:.2f} "
            f"KL {res['kl']:.2f} -ELBO {res['neg_elbo']:.2f} ELBO-PPL {res['elbo_ppl']:.2f} | "
            f"MI({res['mi_variant']}) {res['mi']:.2f} AU {res['au']} | {res['precision']} {res['device']} "
            f"{res['seconds']:.1f}s")


def write_json_atomic(obj: dict, path: str | Path) -> None:

    atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="test metrics of a checkpoint (IW-NLL/PPL, Recon, KL, -ELBO, ELBO-PPL, MI, AU)",
        description="Evaluate a checkpoint (VAE family, AE, IWAE or LSTM-LM) on a split and write one metrics "
                    "JSON with every column of the paper's Tables 10/11 (SPEC section 5).")
    p.add_argument("--ckpt", required=True, help="checkpoint written by `textvae train` (best.pt or last.pt)")
    p.add_argument("--data", required=True, help="prepared corpus directory (holding SPLIT.txt) or a corpus file")
    p.add_argument("--split", default="test", help="split name (default test)")
    p.add_argument("--out", required=True, help="metrics JSON to write (atomically)")
    p.add_argument("--iw-samples", type=int, default=1000, help="K importance samples per sentence (default 1000)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"noise seed (default {DEFAULT_SEED}); each "
                   "sentence's samples depend only on (seed, sentence index)")
    p.add_argument("--mi-variant", choices=["li", "he"], default="li",
                   help="MI column: li = whole split (default), he = per batch of 32 (both are recorded)")
    p.add_argument("--au-threshold", type=float, default=0.01, help="AU variance threshold (default 0.01)")
    p.add_argument("--batch-budget-mb", type=float, default=None,
                   help="working-memory budget of one decoder pass in MiB (default 1024 on CPU, 16384 on GPU)")
    p.add_argument("--max-rows", type=int, default=None,
                   help="(sentence, sample) rows of one decoder pass (default: CPU 1024, GPU from the budget)")
    p.add_argument("--proj-rows", type=int, default=None,
                   help=f"rows of one vocabulary-projection tile (default: CPU {CPU_PROJ_ROWS}, GPU = --max-rows)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bfloat16 vocabulary projection (recorded check against fp32, see --precision-check)")
    p.add_argument("--precision-check", type=int, default=None,
                   help="with --precision bf16: also run fp32 on the first N sentences and record the NLL "
                        "difference (default 50; 0 disables)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--max-examples", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_evaluate)


def _cli_evaluate(args) -> int:
    from textvae.rundir import check_writable

    if args.iw_samples < 1:
        raise ConfigError(f"--iw-samples must be >= 1 (got {args.iw_samples})")
    check_writable(args.out, "--out")   # before the evaluation, not after it
    check = args.precision_check if args.precision_check is not None else (50 if args.precision == "bf16" else 0)
    res = evaluate_checkpoint(args.ckpt, args.data, args.split, args.iw_samples, args.seed, args.mi_variant,
                              args.au_threshold, args.batch_budget_mb, args.max_rows, args.proj_rows,
                              args.precision, args.device, args.max_examples,
                              progress=not args.no_progress and sys.stderr.isatty(), precision_check=check)
    write_json_atomic(res, args.out)
    print(summary_line(res))
    return 0
