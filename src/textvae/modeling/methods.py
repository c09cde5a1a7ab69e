"""Every training method of the paper as data (SPEC §3.12): objective, β schedule, optimiser, lr-decay constants,
what it starts from, how its rows are labelled and what they show.

A row of the results tables is one ``Method`` (plus λ where it has one). Everything else reads its facts from
here: the trainer (optimiser, schedule, decoder reset, selection criterion), the pipeline (which runs need λ or
an AE checkpoint), the params.yaml check of table rows, and the report labels. Adding a method is adding a row
here plus its objective in ``objectives.py``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from textvae.core.errors import ConfigError


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
    pretrained_encoder: bool = False   # starts from the AE checkpoint (method PRETRAIN_SOURCE) of its seed
    decoder_reset: str = "never"   # after loading the AE: always | choice (spec_choices.pretrain_reset_decoder)
    anneal_choice: bool = False    # β linear instead of constant when spec_choices.fb_baseline_anneal (SPEC 3.4)
    aggressive: bool = False
    kind: str = "vae"              # vae | lm
    label: str = ""                # the row's name in the reports ("+ FB"; λ is appended)
    label_full: str | None = None  # its name in Tables 10-11, where it differs
    shows: tuple | None = None     # the only metrics its rows show (None: every column of the table)


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ae", "autoencoder: VAE with beta = 0, z still sampled (SPEC 3.10)", beta=0.0, val="rec",
           label="AE", shows=("rec", "mi", "au")),
    Method("vae", "VAE, beta = 1 throughout (SPEC 3.1)", label="VAE"),
    Method("anneal", "VAE + linear KL annealing 0 -> 1 over warm_up epochs (SPEC 3.2)", schedule="linear",
           label="+ anneal"),
    Method("cyclic", "VAE + cyclic annealing (Liu et al. PTB schedule), Adam 1e-3 (SPEC 3.7)",
           schedule="cyclic", optimizer="adam", lr=1e-3, label="+ cyclic"),
    Method("cyclic_sgd", "VAE + cyclic annealing with the SGD setup of SPEC 4 (SPEC 3.7)", schedule="cyclic",
           label="+ cyclic (SGD)"),
    Method("aggressive", "He et al. aggressive inference-network training (SPEC 3.8)",
           schedule="linear", kl_start=0.1, lr=1.0, patience=2, aggressive=True, label="+ aggressive"),
    Method("fb", "per-dimension free bits, threshold lam/nz per example and dimension (SPEC 3.3)",
           objective="fb", needs_lam=True, anneal_choice=True, label="+ FB"),
    Method("fbp", "free bits on the whole KL (SPEC 3.4)", objective="fbp", needs_lam=True, anneal_choice=True,
           label="+ FBP"),
    Method("pretrain", "AE-pretrained encoder, new decoder, plain VAE (SPEC 3.6)", pretrained_encoder=True,
           decoder_reset="choice", label="+ pretrain", label_full="+ pretrained enc"),
    Method("pretrain_anneal", "AE-pretrained encoder, new decoder, VAE + annealing (SPEC 3.6)",
           schedule="linear", pretrained_encoder=True, decoder_reset="choice", label="+ pretrain + anneal",
           label_full="+ anneal enc (pretrain + anneal)"),
    Method("iwae", "IWAE with k samples (SPEC 3.9)", objective="iwae", val="iw", label="IWAE (k = 10)"),
    Method("iwae_pretrain", "IWAE with k samples from an AE-pretrained encoder (SPEC 3.9)",
           objective="iwae", val="iw", pretrained_encoder=True, decoder_reset="always",
           label="IWAE + pretrained enc"),
    Method("lm", "LSTM language model (SPEC 2.5, 3.11)", objective="lm", lr=1.0, patience=2, min_epoch=0,
           val="nll", kind="lm", label="LSTM-LM", shows=("nll", "ppl")),
    Method("ours", "Li et al.: AE-pretrained encoder + decoder reset + per-dim free bits + annealing (SPEC 3.5)",
           objective="fb", schedule="linear", needs_lam=True, pretrained_encoder=True, decoder_reset="always",
           label="Ours"),
]}

# the method whose best.pt the pretrained methods start from (results/DATASET/ae/seedS)
PRETRAIN_SOURCE = "ae"
LAM_METHODS = frozenset(m.name for m in METHODS.values() if m.needs_lam)
PRETRAIN_METHODS = frozenset(m.name for m in METHODS.values() if m.pretrained_encoder)
# rows with the paper's numbers and no run of ours: name -> label
PAPER_ONLY_ROWS = {"cyclic_reported": "+ cyclic (Liu et al. reported)"}
# a table row in params.yaml: a method, METHOD@λ (METHOD@* for the table's λ grid), or a paper-only row
ROW_SYNTAX = re.compile(r"^([a-z_]+)(@([0-9]+(\.[0-9]+)?|\*))?$")


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"--method: unknown method {name!r}; choose from {', '.join(METHODS)}") from None


def row_problem(text: str) -> str | None:
    """What is wrong with a table row of params.yaml (None when it is a row): an unknown method, a λ given to a
    method without one or missing from one that needs it."""
    m = ROW_SYNTAX.match(text)
    if not m:
        return f"{text!r} is not a row (METHOD, METHOD@λ or METHOD@*)"
    name, lam = m.group(1), m.group(2)
    if name in PAPER_ONLY_ROWS:
        return None if lam is None else f"{text!r}: the paper-only row {name} takes no λ"
    if name not in METHODS:
        return f"{text!r}: unknown method {name!r}; choose from {', '.join([*METHODS, *PAPER_ONLY_ROWS])}"
    if METHODS[name].needs_lam != (lam is not None):
        return f"{text!r}: {name} {'needs a λ (' + name + '@λ)' if METHODS[name].needs_lam else 'takes no λ'}"
    return None


def label(name: str, table: str = "") -> str:
    """The row label of a method or paper-only row in the reports (``table``: its name in Tables 10-11)."""
    if name in PAPER_ONLY_ROWS:
        return PAPER_ONLY_ROWS[name]
    m = METHODS.get(name)
    if m is None:
        return name
    return (m.label_full if table in ("table10", "table11") and m.label_full else m.label) or name


def fmt_lam(lam: float) -> str:
    """``7.0 -> '7'``, ``2.5 -> '2.5'`` (the λ in paths, stage names and row labels)."""
    lam = float(lam)
    return str(int(lam)) if lam.is_integer() else repr(lam)


def parse_lam(text: str, what: str = "λ") -> float:
    """λ written in a path, a row or an option (``7``, ``2.5``) as a number; the one reading of λ from text."""
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a number") from None
