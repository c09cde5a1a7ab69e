"""The fast, row-invariant evaluator of a VAE: :class:`FastVAE` (an inference-only re-layout of the model),
row budgets, and the fast paths of the IW log-likelihood and of Recon. Tested against the plain formulas of
:mod:`textvae.evaluation.metrics` (``iw_log_likelihood_reference``, the model's own ``decoder.log_prob``).

How the importance-weighted estimate is made fast (SPEC §5.2 asks for K = 1000 samples per sentence):

* the encoder runs once per sentence (never once per chunk of samples);
* the rows of one decoder pass are (sentence, sample) pairs of sentences of one exact length, as many as the
  row budget allows; the decoder is an explicit LSTM loop over padded, pre-split weights:
  ``W_ih·[emb(w); z] = W_e·emb(w) + W_z·z``, so the embedding part (and both biases) is computed once per
  sentence and the z part once per sample, leaving one ``[rows, H] × [H, 4H]`` matmul per step;
* the vocabulary projection is done in row tiles that stay in cache, and only the per-row −log p of the target
  survives: ``log Σ_v exp(l_v) − l_t`` (two passes over the logits, no max-shift: float32 holds logits below
  88, and a pass whose sum overflows is rerun with ``cross_entropy``); log p(x|z) is accumulated in float64;
* steps with few rows (a short length group, as in Recon's one sample per sentence) are stacked into one tile
  of about ``proj_rows`` rows, so the projection is always a full-size matmul; the encoder and Recon run on
  groups of up to a pass's rows of one length (not batches of 32);
* every sentence's noise comes from its own generator seeded from ``(seed, stream, sentence index)`` and all
  K log-weights of a sentence are combined by one exactly rounded float64 log-sum-exp, so the estimate does
  not depend on how sentences and samples are grouped into batches and chunks. On CPU it is bit-identical for
  any batch size / row budget (matmuls are padded to >= 32 rows and LSTM widths to multiples of 64, which
  keeps every row on the same kernel path); on GPU it agrees up to floating-point reassociation.
* ``precision="bf16"``: the vocabulary projection (≈ 90 % of the arithmetic) and the decoder's recurrent
  matmul (``BF16_RECURRENT``) run in bfloat16; the LSTM's gates and state stay float32. To keep the bfloat16
  *output* rounding small, the projection computes ``W h − c`` with c the float32 target logit (an extra input
  column), so the logits that carry the probability mass are near 0. A recorded check against float32 on at
  most a tenth of the work (``evaluation._precision_check``) is part of ``textvae evaluate``'s output.
"""
from __future__ import annotations

import copy
import sys
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from textvae import DEFAULT_SEED
from textvae.corpora.data import make_batches
from textvae.core.errors import ConfigError
from textvae.evaluation.metrics import STREAM_IW, STREAM_REC, SentenceNoise, logmeanexp_exact, posterior_samples
from textvae.evaluation.uncertainty import iw_mc_variance
from textvae.modeling.model import VAE, kl_per_dim

DEFAULT_BUDGET_MB = {"cpu": 1024, "cuda": 16384}   # a 2-core/24 GiB CPU box; an 80 GB GPU
CPU_MAX_ROWS = 1024          # rows of one decoder pass on CPU (bench/bench_evaluate.py measured the optimum)
CPU_PROJ_ROWS = 512          # rows of one vocabulary-projection tile on CPU (bench/bench_evaluate.py --sweep)
MIN_GEMM_ROWS = 32           # fp32 CPU matmuls take another kernel path below ~12 rows (not row-invariant)
WIDTH_MULTIPLE = 64          # LSTM widths padded so elementwise kernels never hit a scalar tail mid-row
AUG_COLS = 32                # extra input columns of the bf16 projection (shift column + zero padding)
BF16_RECURRENT = True        # --precision bf16 also runs the decoder's recurrent matmul in bf16


# ----------------------------------------------------------------------------------------------------------
# The fast VAE
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


def _pad_to(w: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``w`` (2-d) zero-padded along ``dim`` to ``size`` (a contiguous copy; ``w`` itself when no padding)."""
    if w.size(dim) == size:
        return w.contiguous()
    return F.pad(w, (0, size - w.size(1)) if dim == 1 else (0, 0, 0, size - w.size(0)))


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
    """Inference-only re-layout of a :class:`textvae.modeling.model.VAE` (eval mode: no dropout).

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
            self.enc_lin = _pad_to(lin, 1, hpe).to(**f32)
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
            self.dec_wt = _pad_to(wt, 0, hp).to(**f32)
            wp = dec.proj.weight.detach().float().cpu()                       # [V, h]
            self.dec_wp = _pad_to(wp, 1, hp).to(**f32)
            if precision == "bf16":
                aug = torch.zeros(wp.size(0), hp + AUG_COLS, dtype=torch.bfloat16, device=dev)
                aug[:, :h] = wp.to(dev)
                aug[:, hp] = 1.0                                               # × (−c) → shift by the target logit
                self.dec_wp_aug = aug
                self.dec_whh_bf16 = self.dec_whh.to(torch.bfloat16)

    def fp32(self) -> "FastVAE":
        """The same model in float32, sharing this one's tensors (no second re-layout)."""
        if self.precision == "fp32":
            return self
        other = copy.copy(self)
        other.precision, other.recurrent_bf16 = "fp32", False
        return other

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
        if not bool(torch.isfinite(out).all()):                        # exp overflowed (or the sum underflowed)
            out = self._log_px(ge, targets, z, proj_rows, safe=True)
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
        bf16 = self.precision == "bf16"
        rec16 = self.recurrent_bf16
        if bf16:
            haug = torch.zeros(rows, hp + AUG_COLS, dtype=torch.bfloat16, device=dev)
            haug[:, :hp] = h                                                   # bf16 copy of h (next step's input)
        parts = []                                       # per tile: token NLLs (fp32/safe) or Σ_v exp(out_v)
        out_t = []                                       # fast paths: the target's logit (or out entry), per step
        fast16 = bf16 and not safe
        fast32 = not bf16 and not safe
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []   # (h or h̃, targets) of steps not yet projected

        def project() -> None:
            # the vocabulary projection of the pending steps, stacked (step-major) into tiles of ~proj_rows
            # rows: few rows per step (short groups, Recon) still make full-size matmuls; each row's result
            # does not depend on its tile (MIN_GEMM_ROWS), so the stacking changes no number
            hh = pending[0][0] if len(pending) == 1 else torch.cat([a for a, _ in pending])
            tt = pending[0][1] if len(pending) == 1 else torch.cat([b for _, b in pending])
            pending.clear()
            m = hh.size(0)
            if m < MIN_GEMM_ROWS:                                              # zero rows, dropped below
                hh = torch.cat([hh, hh.new_zeros(MIN_GEMM_ROWS - m, hh.size(1))])
                tt = torch.cat([tt, tt.new_zeros(MIN_GEMM_ROWS - m)])
            n_parts = len(parts)
            for a, e in _tiles(hh.size(0), proj_rows):
                if fast16:
                    parts.append((hh[a:e] @ self.dec_wp_aug.t()).float().exp_().sum(1))   # exp in fp32
                elif bf16:
                    parts.append(F.cross_entropy((hh[a:e] @ self.dec_wp_aug.t()).float(), tt[a:e],
                                                 reduction="none"))
                elif fast32:
                    parts.append((hh[a:e] @ self.dec_wp.t()).exp_().sum(1))
                else:
                    parts.append(F.cross_entropy(hh[a:e] @ self.dec_wp.t(), tt[a:e], reduction="none"))
            if m < MIN_GEMM_ROWS:
                parts[n_parts:] = [torch.cat(parts[n_parts:])[:m]]

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
                # max-shift; exp and the sum run in fp32 (on CPU faster than a bf16 exp and a widening sum).
                # out_t is the same bf16-operand dot product in fp32.
                out_t.append((haug[:r].float() * self.dec_wp_aug[tg[:r]].float()).sum(1))
            elif fast32:
                # −log p = log Σ_v exp(l_v) − l_t without a max-shift (float32 holds logits below 88; the safe
                # path reruns the pass otherwise): two passes over the logits instead of log_softmax's four
                out_t.append((h[:r] * self.dec_wp[tg[:r]]).sum(1))
            pending.append((haug[:r] if bf16 else h[:r], tg[:r]))             # the padding rows are not projected
            if len(pending) * r >= proj_rows:
                project()
            elif bf16:
                pending[-1] = (haug[:r].clone(), tg[:r])                       # h̃ is rewritten next step
        if pending:
            project()
        nll = torch.cat(parts).view(t_len, r)
        if fast16 or fast32:
            nll = nll.log_().sub_(torch.stack(out_t))
        logp = torch.zeros(r, dtype=torch.float64, device=dev)
        for step in range(t_len):                                              # fixed order, float64
            logp.sub_(nll[step])
        return logp.view(b, s)


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
# The fast paths of the metrics
# ----------------------------------------------------------------------------------------------------------

def _fast(model: nn.Module | FastVAE, device, precision: str) -> FastVAE:
    if isinstance(model, FastVAE):
        return model
    return FastVAE(model, device or next(model.parameters()).device, precision)


def encode_all(model: nn.Module | FastVAE, examples: Sequence[Sequence[int]], batch_size: int = 32,
               device=None, precision: str = "fp32", group_rows: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """μ, logvar (float32, split order) for every example, and the exact-length batches of ``batch_size``
    (index lists: SPEC §1.5's batches, which He's MI uses). The encoder runs on groups of up to ``group_rows``
    sentences of one length (default: a decoder pass's rows, CPU_MAX_ROWS on CPU); its per-row results do not
    depend on the grouping."""
    fast = _fast(model, device, precision)
    n = len(examples)
    mu = torch.empty(n, fast.nz, device=fast.device)
    logvar = torch.empty(n, fast.nz, device=fast.device)
    if n:
        rows = group_rows or plan_rows(fast, max(len(x) for x in examples) - 1)[0]
        for x, idx in zip(*_length_groups(examples, rows)):
            m, lv = fast.encode(x)
            ii = torch.tensor(idx, device=fast.device)
            mu[ii], logvar[ii] = m, lv
    return mu, logvar, make_batches(examples, batch_size).index


def iw_log_likelihood(model: nn.Module | FastVAE, examples: Sequence[Sequence[int]], K: int = 1000,
                      seed: int = DEFAULT_SEED, mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None,
                      max_rows: int | None = None, budget_mb: float | None = None, proj_rows: int | None = None,
                      encode_batch: int = 32, precision: str = "fp32", device=None, progress: bool = False,
                      index_offset: int = 0, mc_var: bool = False):
    """Importance-weighted log p̂(x) per example (float64 ``[N]``, split order), SPEC §5.2:
    log p̂(x) = logsumexp_k [log p(x|z_k) + log p(z_k) − log q(z_k|x)] − log K, z_k ~ q(z|x).

    Sentence i's samples depend only on (seed, i + index_offset). ``mu``/``logvar`` may be passed to skip the
    encoder. Rows per decoder pass: ``max_rows`` or what fits ``budget_mb``. ``mc_var``: also return each
    sentence's Monte Carlo variance of the estimate (:func:`textvae.evaluation.uncertainty.iw_mc_variance`)."""
    if K < 1:
        raise ConfigError(f"--iw-samples must be >= 1 (got {K})")
    fast = _fast(model, device, precision)
    n = len(examples)
    if mu is None or logvar is None:
        mu, logvar, _ = encode_all(fast, examples, group_rows=encode_batch)
    max_len = max(len(x) for x in examples) - 1
    rows, pr = plan_rows(fast, max_len, budget_mb, max_rows, proj_rows)
    per_chunk = max(1, rows // K)                      # sentences per decoder pass (all K samples each)
    samples_per_pass = min(K, rows)                    # samples per pass when one sentence needs several
    noise = SentenceNoise(seed, STREAM_IW)
    out = torch.empty(n, dtype=torch.float64)
    var = torch.zeros(n, dtype=torch.float64)
    bar = _progress(n, progress, "IW-NLL")
    for x, idx in zip(*_length_groups(examples, per_chunk)):
        inputs, targets = x[:, :-1], x[:, 1:]
        ge = fast.sentence_gates(inputs)
        b = len(idx)
        zs, lws = zip(*(posterior_samples(mu[i], logvar[i], noise, i + index_offset, K) for i in idx))
        z = torch.stack(zs)                                            # [b, K, nz]
        lw = torch.stack(lws)                                          # [b, K] float64
        lpx = torch.empty(b, K, dtype=torch.float64)
        for a in range(0, K, samples_per_pass):
            e = min(K, a + samples_per_pass)
            lpx[:, a:e] = fast.log_px(ge, targets, z[:, a:e], pr).cpu()
        w = (lpx + lw).numpy()
        for j, i in enumerate(idx):
            out[i] = logmeanexp_exact(w[j])
            if mc_var:
                var[i] = iw_mc_variance(w[j])
        bar.update(b)
    bar.close()
    return (out, var) if mc_var else out


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
               mu: torch.Tensor | None = None, logvar: torch.Tensor | None = None, batch_size: int | None = None,
               precision: str = "fp32", device=None, index_offset: int = 0) -> dict[str, torch.Tensor]:
    """Per-sentence (float64 ``[N]``, split order) ``rec`` = −log p(x|z) with one z ~ q(z|x) and analytic
    ``kl``; also ``mu``, ``logvar`` (SPEC §5.1). ``batch_size``: sentences of one length per decoder pass
    (default: a pass's rows from :func:`plan_rows`); the values do not depend on it."""
    fast = _fast(model, device, precision)
    if mu is None or logvar is None:
        mu, logvar, _ = encode_all(fast, examples, group_rows=batch_size)
    n = len(examples)
    noise = SentenceNoise(seed, STREAM_REC)
    rec = torch.empty(n, dtype=torch.float64)
    if n == 0:
        return {"rec": rec, "kl": torch.empty(0, dtype=torch.float64), "mu": mu, "logvar": logvar}
    rows, pr = plan_rows(fast, max(len(x) for x in examples) - 1)
    for x, idx in zip(*_length_groups(examples, batch_size or rows)):
        z = torch.stack([posterior_samples(mu[i], logvar[i], noise, i + index_offset, 1)[0] for i in idx])
        lp = fast.log_px(fast.sentence_gates(x[:, :-1]), x[:, 1:], z, pr).cpu()
        rec[torch.tensor(idx)] = -lp[:, 0]
    kl = kl_per_dim(mu.double(), logvar.double()).sum(1).cpu()
    return {"rec": rec, "kl": kl, "mu": mu, "logvar": logvar}
