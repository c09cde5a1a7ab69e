"""The LSTM VAE and the LSTM language model (SPEC §2).

Shapes: ``x`` is ``[B, T]`` framed ids ``<s> w_1 … w_n </s>`` (T = n+2); ``z`` is ``[B, S, nz]`` for S samples
per sentence. All log-probabilities are natural-log and summed over the n+1 predicted tokens.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from textvae.corpora.data import EOS_ID

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    enc_emb: int = 256
    dec_emb: int = 256
    enc_hidden: int = 256
    dec_hidden: int = 256
    nz: int = 32
    dropout_in: float = 0.5
    dropout_out: float = 0.5

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


ENCODER_INITS = ("spec", "torch", "torch_forget")
FORGET_BIAS = 3.0   # `torch_forget`: added to the encoder LSTM's forget-gate bias (docs/demo.md, issue 24)


def _uniform_init(module: nn.Module, embeddings: list[nn.Embedding]) -> None:
    """Every parameter ~ U(-0.01, 0.01), then embedding tables ~ U(-0.1, 0.1) (SPEC §2.4)."""
    for p in module.parameters():
        nn.init.uniform_(p, -0.01, 0.01)
    for emb in embeddings:
        nn.init.uniform_(emb.weight, -0.1, 0.1)


# ----------------------------------------------------------------------------------------------------------
# Gaussian helpers
# ----------------------------------------------------------------------------------------------------------

def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per dimension, ``[B, nz]``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)


def log_normal_diag(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) for ``z [B, S, nz]`` and ``mu, logvar [B, nz]`` → ``[B, S]``."""
    mu, logvar = mu.unsqueeze(1), logvar.unsqueeze(1)
    nz = z.size(-1)
    return -0.5 * (nz * LOG_2PI + logvar.sum(-1) + ((z - mu).pow(2) / logvar.exp()).sum(-1))


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z.size(-1) * LOG_2PI + z.pow(2).sum(-1))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, nsamples: int = 1,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``z = mu + sigma * eps`` with ``eps ~ N(0, I)``, shape ``[B, nsamples, nz]``."""
    eps = torch.randn((mu.size(0), nsamples, mu.size(1)), dtype=mu.dtype, device=mu.device, generator=generator)
    return mu.unsqueeze(1) + (0.5 * logvar).exp().unsqueeze(1) * eps


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over time in float32: logits ``[N, T, V]``, targets ``[N, T]`` → ``[N]``.

    The plain PyTorch form (the authors' computation); the models use :func:`projected_nll`, which gives the
    same values and gradients."""
    n, t, v = logits.shape
    ce = F.cross_entropy(logits.reshape(n * t, v).float(), targets.reshape(n * t), reduction="none")
    return ce.view(n, t).sum(1)


NLL_TILE_ROWS = 64   # rows of one softmax tile: [64, V] float32 stays in a core's cache for V ≈ 10k


class _ProjectedNLL(torch.autograd.Function):
    """Per-row ``−log softmax(h Wᵀ)[target]`` fused: one matmul, then one cache-sized pass per row tile that
    turns the logits (in place) into probabilities and keeps the log-normaliser; the backward pass forms
    ``g ⊙ (p − onehot)`` once and runs the two gradient matmuls. Matmuls run in ``dtype`` (bf16 under autocast),
    everything else in float32. Against ``logits → .float() → log_softmax → nll`` it keeps one ``[N, V]``
    tensor in ``dtype`` instead of float32 ones (half the memory under bf16) and takes the target's gradient
    from ``exp(−nll)`` in float32; on a 2-core CPU it runs at the same speed (BENCHMARKS.md, per-part table)."""

    @staticmethod
    def forward(ctx, h, weight, targets, dtype):
        hc, wc = h.to(dtype), weight.to(dtype)
        probs = hc @ wc.t()                                          # [N, V] logits, overwritten below
        n = probs.size(0)
        nll = torch.empty(n, dtype=torch.float32, device=h.device)
        rows = torch.arange(n, device=h.device)
        for s in range(0, n, NLL_TILE_ROWS):
            tile = probs[s:s + NLL_TILE_ROWS]
            lf = tile.float()
            lse = torch.logsumexp(lf, dim=1)
            nll[s:s + NLL_TILE_ROWS] = lse - lf[rows[:tile.size(0)], targets[s:s + NLL_TILE_ROWS]]
            tile.copy_(lf.sub_(lse[:, None]).exp_())
        ctx.save_for_backward(hc, wc, targets, probs, nll)
        ctx.h_dtype, ctx.w_dtype = h.dtype, weight.dtype
        return nll

    @staticmethod
    def backward(ctx, g):
        hc, wc, targets, probs, nll = ctx.saved_tensors
        g = g.float()
        grad = torch.empty_like(probs)
        rows = torch.arange(probs.size(0), device=probs.device)
        # g ⊙ (p − onehot) in float32, tile by tile; the target entry from p_target = exp(−nll) in float32
        # (1 − p_target is ill-conditioned in bf16 when p_target is near 1)
        for s in range(0, probs.size(0), NLL_TILE_ROWS):
            e = min(s + NLL_TILE_ROWS, probs.size(0))
            gt = probs[s:e].float().mul_(g[s:e, None])
            gt[rows[:e - s], targets[s:e]] = g[s:e] * torch.expm1(-nll[s:e])
            grad[s:e] = gt
        dh = dw = None
        if ctx.needs_input_grad[0]:
            dh = (grad @ wc).to(ctx.h_dtype)
        if ctx.needs_input_grad[1]:
            dw = (grad.t() @ hc).to(ctx.w_dtype)
        return dh, dw, None, None


def projected_nll(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the bias-free projection ``h Wᵀ`` summed over time: ``h [N, T, H]``, ``W [V, H]``,
    targets ``[N, T]`` → ``[N]`` float32. Equals ``token_nll(h @ W.T, targets)`` (under autocast: with the
    matmuls in its dtype, as ``nn.Linear`` would run them)."""
    n, t, hdim = h.shape
    dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else h.dtype
    with torch.autocast(h.device.type, enabled=False):
        nll = _ProjectedNLL.apply(h.reshape(n * t, hdim), weight, targets.reshape(n * t), dtype)
    return nll.view(n, t).sum(1)


# ----------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------

class Encoder(nn.Module):
    """Embedding → 1-layer LSTM → last hidden state → bias-free linear to ``[mu; logvar]`` (SPEC §2.1)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.enc_emb)
        self.lstm = nn.LSTM(cfg.enc_emb, cfg.enc_hidden, batch_first=True)
        self.linear = nn.Linear(cfg.enc_hidden, 2 * cfg.nz, bias=False)
        self.reset_parameters()

    def reset_parameters(self, init: str = "spec") -> None:
        """``spec``: SPEC §2.4. ``torch``: PyTorch's own defaults (embedding N(0, 1), LSTM and linear
        U(±1/√fan-in)), whose final state depends on the sentence from the first step (docs/demo.md).
        ``torch_forget``: the same, with ``FORGET_BIAS`` added to the LSTM's forget-gate bias (Gers et al. 2000;
        Jozefowicz et al. 2015 use 1), so that the final state keeps the start of a sentence from the first
        step: with ``torch`` the demo's AE learns a sentence from its end backwards and has not reached the
        first words after 80 epochs (docs/demo.md, "Reading the whole sentence")."""
        if init in ("torch", "torch_forget"):
            for module in (self.embed, self.lstm, self.linear):
                module.reset_parameters()
            if init == "torch_forget":
                h = self.lstm.hidden_size
                with torch.no_grad():
                    self.lstm.bias_ih_l0[h:2 * h] += FORGET_BIAS   # gate order i, f, g, o
        elif init == "spec":
            _uniform_init(self, [self.embed])
        else:
            raise ValueError(f"unknown encoder initialisation {init!r}; choose from {', '.join(ENCODER_INITS)}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (h, _) = self.lstm(self.embed(x))
        mu, logvar = self.linear(h[-1]).float().chunk(2, dim=-1)
        return mu, logvar


def _language_model_layers(m: nn.Module, cfg: "ModelConfig", z_size: int) -> None:
    """The layers the decoder (``z_size`` = nz: z joins every input) and the LSTM-LM (0) share, created in
    this order (the order draws PyTorch's default initialisation from the RNG): embedding, input and output
    dropout, LSTM (SPEC §2.2, §2.5)."""
    m.cfg = cfg
    m.embed = nn.Embedding(cfg.vocab_size, cfg.dec_emb)
    m.drop_in = nn.Dropout(cfg.dropout_in)
    m.drop_out = nn.Dropout(cfg.dropout_out)
    m.lstm = nn.LSTM(cfg.dec_emb + z_size, cfg.dec_hidden, batch_first=True)


class Decoder(nn.Module):
    """z-conditioned LSTM decoder: ``c0 = W z``, ``h0 = tanh(c0)``, z concatenated to every input (SPEC §2.2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _language_model_layers(self, cfg, cfg.nz)
        self.trans_z = nn.Linear(cfg.nz, cfg.dec_hidden, bias=False)
        self.proj = nn.Linear(cfg.dec_hidden, cfg.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_init(self, [self.embed])

    def _init_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c0 = self.trans_z(z).unsqueeze(0)
        return torch.tanh(c0), c0

    def forward(self, inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[B*S, T, V]`` for decoder ``inputs [B, T]`` and ``z [B, S, nz]``."""
        return self.proj(self.hidden(inputs, z))

    def hidden(self, inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The (output-dropped) LSTM states ``[B*S, T, H]`` that the vocabulary projection reads.

        The input-dropout mask is drawn once per sentence and shared by its S samples (SPEC §2.2).
        """
        b, s, nz = z.shape
        t = inputs.size(1)
        emb = self.drop_in(self.embed(inputs))                       # [B, T, E]
        emb = emb.unsqueeze(1).expand(b, s, t, emb.size(-1)).reshape(b * s, t, -1)
        zf = z.reshape(b * s, nz)
        # under autocast the embedding stays float32 while z may not; concatenate in one dtype
        rnn_in = torch.cat([emb, zf.unsqueeze(1).expand(b * s, t, nz).to(emb.dtype)], dim=-1)
        out, _ = self.lstm(rnn_in, self._init_state(zf))
        return self.drop_out(out)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) summed over the n+1 targets → ``[B, S]``."""
        b, s, _ = z.shape
        targets = x[:, 1:].unsqueeze(1).expand(b, s, x.size(1) - 1).reshape(b * s, -1)
        return -projected_nll(self.hidden(x[:, :-1], z), self.proj.weight, targets).view(b, s)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, max_len: int, bos: int, eos: int = EOS_ID, greedy: bool = True,
                 generator: torch.Generator | None = None) -> list[list[int]]:
        """Decode from ``z [B, nz]``: greedy (argmax) or ancestral sampling. Each row stops at ``</s>``
        (not included) or after ``max_len`` tokens. Batched; equals one-at-a-time decoding row by row."""
        b = z.size(0)
        state = self._init_state(z)
        tok = torch.full((b,), bos, dtype=torch.long, device=z.device)
        done = torch.zeros(b, dtype=torch.bool, device=z.device)
        out = torch.zeros((b, max_len), dtype=torch.long, device=z.device)
        lengths = torch.full((b,), max_len, dtype=torch.long, device=z.device)
        for step in range(max_len):
            inp = torch.cat([self.embed(tok), z], dim=-1).unsqueeze(1)
            h, state = self.lstm(inp, state)
            logits = self.proj(h[:, 0]).float()
            if greedy:
                tok = logits.argmax(-1)
            else:
                tok = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
            out[:, step] = tok
            newly = (tok == eos) & ~done
            lengths[newly] = step
            done |= tok == eos
            if bool(done.all()):
                break
        out, lengths = out.tolist(), lengths.tolist()
        return [row[:n] for row, n in zip(out, lengths)]


class VAE(nn.Module):
    kind = "vae"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    sample = staticmethod(reparameterize)

    def reset_decoder(self) -> None:
        """Re-initialise every decoder parameter, keeping the encoder (SPEC §3.5)."""
        self.decoder.reset_parameters()

    def rec_kl(self, x: torch.Tensor, nsamples: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-example Rec ``[B]`` (mean over samples), per-dim KL ``[B, nz]``, and ``mu, logvar``."""
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, nsamples)
        rec = -self.decoder.log_prob(x, z).mean(1)
        return rec, kl_per_dim(mu, logvar), mu, logvar


class LSTMLM(nn.Module):
    """Embedding → dropout → LSTM (zero state) → dropout → bias-free projection (SPEC §2.5)."""

    kind = "lm"

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        _language_model_layers(self, cfg, 0)
        self.proj = nn.Linear(cfg.dec_hidden, cfg.vocab_size, bias=False)
        _uniform_init(self, [self.embed])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) summed over the n+1 targets → ``[B]``."""
        out, _ = self.lstm(self.drop_in(self.embed(x[:, :-1])))
        return -projected_nll(self.drop_out(out), self.proj.weight, x[:, 1:])


def build_model(kind: str, cfg: ModelConfig) -> nn.Module:
    if kind == "vae":
        return VAE(cfg)
    if kind == "lm":
        return LSTMLM(cfg)
    raise ValueError(f"unknown model kind {kind!r}")
