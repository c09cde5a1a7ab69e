"""Every training method of the paper as data (SPEC §3.12): objective, β schedule, optimiser, lr-decay constants.

A row of the results tables is one ``Method`` (plus λ where it has one). The trainer reads nothing else to know
how to train a method, so adding a method is adding a row here.
"""
from __future__ import annotations

from dataclasses import dataclass

from textvae.errors import ConfigError


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    objective: str = "elbo"        # elbo | fb | fbp | iwae | lm
    schedule: str = "const"        # const | linear | cyclic
    beta: float = 1.0              # β for the const schedule (0 for the AE)
    kl_start: float = 0.0          # first β of the linear schedule
    optimizer: str = "sgd"         # sgd | adam
    lr: float = 0.5
    patience: int = 5
    min_epoch: int = 15
    val: str = "elbo"              # validation criterion: elbo | rec | iw | nll
    needs_lam: bool = False
    pretrained_encoder: bool = False   # starts from an AE checkpoint (decoder reset)
    aggressive: bool = False
    kind: str = "vae"              # vae | lm


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ae", "autoencoder: VAE with beta = 0, z still sampled (SPEC 3.10)", beta=0.0, val="rec"),
    Method("vae", "VAE, beta = 1 throughout (SPEC 3.1)"),
    Method("anneal", "VAE + linear KL annealing 0 -> 1 over warm_up epochs (SPEC 3.2)", schedule="linear"),
    Method("cyclic", "VAE + cyclic annealing (Liu et al. PTB schedule), Adam 1e-3 (SPEC 3.7)",
           schedule="cyclic", optimizer="adam", lr=1e-3),
    Method("cyclic_sgd", "VAE + cyclic annealing with the SGD setup of SPEC 4 (SPEC 3.7)", schedule="cyclic"),
    Method("aggressive", "He et al. aggressive inference-network training (SPEC 3.8)",
           schedule="linear", kl_start=0.1, lr=1.0, patience=2, aggressive=True),
    Method("fb", "per-dimension free bits, threshold lam/nz per example and dimension (SPEC 3.3)",
           objective="fb", needs_lam=True),
    Method("fbp", "free bits on the whole KL (SPEC 3.4)", objective="fbp", needs_lam=True),
    Method("pretrain", "AE-pretrained encoder, new decoder, plain VAE (SPEC 3.6)", pretrained_encoder=True),
    Method("pretrain_anneal", "AE-pretrained encoder, new decoder, VAE + annealing (SPEC 3.6)",
           schedule="linear", pretrained_encoder=True),
    Method("iwae", "IWAE with k samples (SPEC 3.9)", objective="iwae", val="iw"),
    Method("iwae_pretrain", "IWAE with k samples from an AE-pretrained encoder (SPEC 3.9)",
           objective="iwae", val="iw", pretrained_encoder=True),
    Method("lm", "LSTM language model (SPEC 2.5, 3.11)", objective="lm", lr=1.0, patience=2, min_epoch=0,
           val="nll", kind="lm"),
    Method("ours", "Li et al.: AE-pretrained encoder + decoder reset + per-dim free bits + annealing (SPEC 3.5)",
           objective="fb", schedule="linear", needs_lam=True, pretrained_encoder=True),
]}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"--method: unknown method {name!r}; choose from {', '.join(METHODS)}") from None
