"""Every knob of a run, declared once: name, type, default, rule (range or choices), help, where params.yaml may
set it (the global section, a dataset's, a method's within a dataset) and its command-line option.

Derived from these declarations, nowhere written again:

- the options of ``textvae train`` (:func:`add_options`) and ``textvae evaluate``, and the size and SPEC-choice
  options of ``textvae probe`` (``--pairs``, ``--latent`` …, :func:`add_probe_options`) with their defaults;
- the value checks of a job (:func:`textvae.training.trainer.check_run`) and of the pre-flight check of
  params.yaml (:func:`textvae.config.settings.check_params`): one rule per knob (:mod:`textvae.config.checks`);
- the ``training``, ``train_overrides``, ``sizes``, ``spec_choices``, ``evaluation``, ``probing`` and ``seeds`` parts of
  workflow/schemas/params.schema.yaml (:func:`schema_defs`, put in place when settings loads the schema).

The training settings are :class:`TrainConfig`'s fields (their metadata is the declaration); the model sizes
are :class:`textvae.modeling.model.ModelConfig`'s fields (name, type, default) with their rule and help here.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable

from textvae import DEFAULT_SEED
from textvae.config.checks import problem, rule_schema
from textvae.modeling.methods import METHODS, PRETRAIN_SOURCE
from textvae.modeling.model import ENCODER_INITS, ModelConfig

GLOBAL, DATASET, METHOD = "global", "dataset", "method"
ANYWHERE = (GLOBAL, DATASET, METHOD)


@dataclass(frozen=True)
class Knob:
    name: str
    kind: type                   # int | float | bool | str (a value of params.yaml is coerced to it)
    default: Any                 # None: unset (the method's default, SPEC §3.12, or none)
    rule: str | tuple | None     # a textvae.config.checks.RULES name, or the choices
    help: str
    section: str | None          # params.yaml section (training, spec_choices, sizes, evaluation); None: CLI only
    where: tuple[str, ...]       # the layers of params.yaml that may set it (GLOBAL, DATASET, METHOD)
    option: str | None           # the option of its command, without the dashes (None: no option)
    required: bool = False       # the schema requires it in its global section (sizes: in every dataset's)
    many: str | None = None      # a list of values: "+" one or more, "*" any number (the rule holds for each)

    @property
    def flag(self) -> str:
        return "--" + (self.option or self.name).replace("_", "-")

    def problem(self, value: Any) -> str | None:
        if self.rule is None or value is None:
            return None
        if self.many:
            if not isinstance(value, list) or (self.many == "+" and not value):
                return f"expected a list of {'one or more' if self.many == '+' else 'any number of'} values, " \
                       f"got {value!r}"
            return next(filter(None, (problem(self.rule, v) for v in value)), None)
        return problem(self.rule, value)

    def schema(self) -> dict:
        """The JSON-schema fragment of a value (a list: each item's)."""
        one = rule_schema(self.rule)
        return {"type": "array", "items": one, **({"minItems": 1} if self.many == "+" else {})} if self.many else one

    def coerce(self, value: Any) -> Any:
        """A params.yaml value as the option would give it (``warm_up: 2`` → 2.0)."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value

    def add_to(self, parser: argparse.ArgumentParser, default: Any = None, dest: str | None = None) -> None:
        """The knob's option (``default`` None: unset, so a lower layer's value stands; ``dest``: the
        attribute, default the knob's name)."""
        text = self.help + ("" if default is None and self.default is None else
                            f" (default {self.default if default is None else default})")
        dest = dest or self.name
        if self.kind is bool:
            parser.add_argument(self.flag, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                                help=text)
        elif self.many:
            parser.add_argument(self.flag, dest=dest, type=self.kind, nargs=self.many, default=default, help=text)
        elif isinstance(self.rule, tuple):
            parser.add_argument(self.flag, dest=dest, choices=list(self.rule), default=default, help=text)
        else:
            parser.add_argument(self.flag, dest=dest, type=self.kind, default=default, help=text)


def knob(default: Any, rule: str | tuple | None, help: str, section: str | None = "training",
         where: tuple[str, ...] = ANYWHERE, option: str | None = "") -> Any:
    """A TrainConfig field and its declaration (``option=""``: the field's name; None: no option)."""
    return field(default=default, metadata={"knob": (rule, help, section, where, option)})


_NEEDS_LAM = ", ".join(m.name for m in METHODS.values() if m.needs_lam)
_PRETRAINED = ", ".join(m.name for m in METHODS.values() if m.pretrained_encoder)
_SPEC = (GLOBAL,)   # a SPEC choice holds for every run (spec_choices)


@dataclass
class TrainConfig:
    """Everything a run needs besides the data. Fields left ``None`` take the method's default (SPEC §3.12)."""

    method: str
    # λ's rule depends on the method (trainer.check_run): no rule here
    lam: float | None = knob(None, None, f"target rate λ in nats ({_NEEDS_LAM}); FB uses λ/nz per dimension",
                             section=None, where=())
    init_from: str | None = knob(None, "text", f"AE checkpoint (best.pt of method {PRETRAIN_SOURCE}) for "
                                 f"{_PRETRAINED}", section=None, where=())
    seed: int = knob(DEFAULT_SEED, "seed", "random seed (the pipeline's: params.yaml `seeds`)", section=None,
                     where=())
    batch_size: int = knob(32, "pos_int", "batch size (exact-length batches, SPEC §1.5)")
    max_epochs: int = knob(100, "pos_int", "maximum epochs", option="epochs")
    lr: float | None = knob(None, "pos", "initial learning rate (default: the method's, SPEC §4)")
    encoder_init: str = knob("spec", ENCODER_INITS, "initialise a new encoder as SPEC §2.4 (spec) or with "
                             "PyTorch's defaults (torch; docs/demo.md: the AE saddle), or those with the LSTM "
                             "forget-gate bias raised by 3 (torch_forget: reads whole sentences, docs/demo.md)")
    patience: int | None = knob(None, "pos_int", "lr-decay patience in epochs (default: the method's)")
    min_epoch: int | None = knob(None, "nonneg_int", "no lr decay before this epoch (default: the method's)")
    lr_decay: float = knob(0.5, "unit", "lr ← lr·lr_decay after `patience` bad epochs, reloading the best "
                           "checkpoint", where=(GLOBAL,))
    max_decays: int = knob(5, "pos_int", "stop after this many lr decays", where=(GLOBAL,))
    clip_grad: float = knob(5.0, "pos", "global gradient-norm clipping", where=(GLOBAL,))
    warm_up: float = knob(10.0, "nonneg", "linear KL annealing length in epochs (SPEC §3.2)")
    kl_start: float | None = knob(None, "prob", "first β of linear annealing (default: the method's)")
    cyclic_epochs: int = knob(10, "pos_int", "cyclic annealing: cycle length in epochs (SPEC §3.7)",
                              where=(GLOBAL,))
    cyclic_start: float = knob(0.1, "prob", "cyclic annealing: β at each cycle start", where=(GLOBAL,))
    cyclic_ramp_epochs: float = knob(5.0, "pos", "cyclic annealing: epochs to ramp β to 1", where=(GLOBAL,))
    fbp_mode: str = knob("per_example", ("per_example", "batch_mean"), "SPEC §3.4 ❓: FBP mask per example "
                         "(code fb 1) or batch mean (fb 3)", "spec_choices", _SPEC)
    fb_baseline_anneal: bool = knob(False, "bool", "SPEC §3.4 ❓: FB/FBP baselines with KL annealing",
                                    "spec_choices", _SPEC)
    pretrain_reset_decoder: bool = knob(True, "bool", "SPEC §3.6 ❓: +pretrain baselines re-initialise the "
                                        "decoder like Ours", "spec_choices", _SPEC)
    iwae_k: int = knob(10, "pos_int", "IWAE training samples (SPEC §3.9)")
    iwae_code_compat: bool = knob(False, "bool", "SPEC §3.9 ⚠: train IWAE with the authors' sign-flipped bound",
                                  "spec_choices", _SPEC)
    aggressive_max_steps: int = knob(100, "pos_int", "aggressive: at most this many encoder steps per batch, "
                                     "minus one (SPEC §3.8)")
    aggressive_check_every: int = knob(15, "pos_int", "aggressive: inner encoder steps between the checks "
                                       "of the stopping rule (the loss no longer falls)", where=(GLOBAL,))
    aggressive_clip: str = knob("all", ("all", "encoder"), "SPEC §3.8: inner steps clip over all gradients "
                                "(He et al.) or the encoder's only (faster)", "spec_choices", _SPEC)
    max_train: int | None = knob(None, "pos_int", "use only the first N training examples")
    max_valid: int | None = knob(None, "pos_int", "use only the first N validation examples")
    device: str = knob("auto", "text", "auto, cpu or cuda[:N]", section=None, where=())
    precision: str = knob("fp32", ("fp32", "bf16"), "bf16: autocast with float32 weights and losses")
    progress: bool = knob(True, "bool", "progress bar", section=None, where=(), option=None)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


def _field_knobs(cls) -> dict[str, Knob]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if "knob" not in f.metadata:
            continue
        rule, text, section, where, option = f.metadata["knob"]
        kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        out[f.name] = Knob(f.name, kind, f.default, rule, text, section, where,
                           f.name if option == "" else option)
    return out


TRAIN_KNOBS: dict[str, Knob] = _field_knobs(TrainConfig)

# the model sizes: ModelConfig's fields (name, type, default) with their rule and help
_SIZE_RULES = {"enc_emb": ("pos_int", "encoder embedding size"), "dec_emb": ("pos_int", "decoder embedding size"),
               "enc_hidden": ("pos_int", "encoder LSTM hidden size"),
               "dec_hidden": ("pos_int", "decoder LSTM hidden size"), "nz": ("pos_int", "latent dimensions"),
               "dropout_in": ("dropout", "decoder input dropout"), "dropout_out": ("dropout", "decoder output dropout")}
SIZE_KNOBS: dict[str, Knob] = {
    f.name: Knob(f.name, typing.get_type_hints(ModelConfig)[f.name], f.default, *_SIZE_RULES[f.name], "sizes",
                 (DATASET,), f.name, required=f.name in ("enc_emb", "dec_emb", "enc_hidden", "dec_hidden"))
    for f in dataclasses.fields(ModelConfig) if f.name != "vocab_size"}
MODEL_KEYS = tuple(SIZE_KNOBS)

_EVAL = (GLOBAL, DATASET)
EVAL_KNOBS: dict[str, Knob] = {k.name: k for k in (
    Knob("iw_samples", int, 1000, "nonneg_int", "K importance samples per sentence of the IW-NLL/PPL (paper 1000; "
         "0: a plain test pass without the IW-NLL, as the authors' test())", "evaluation", _EVAL, "iw_samples",
         required=True),
    Knob("mi_variant", str, "li", ("li", "he"), "MI column: li = whole split, he = per batch of 32 (both are "
         "recorded; SPEC §5.4)", "evaluation", _EVAL, "mi_variant"),
    Knob("au_threshold", float, 0.01, "pos", "AU variance threshold", "evaluation", _EVAL, "au_threshold"),
    Knob("max_examples", int, None, "pos_int", "evaluate only the first N examples", "evaluation", _EVAL,
         "max_examples"),
)}

# SPEC choices of the probes: (command, option) of each, e.g. bleu_latent → `textvae probe bleu --latent`
PROBE_CHOICE_KNOBS: dict[str, tuple[str, Knob]] = {name: (probe, Knob(name, kind, default, rule, text,
                                                                      "spec_choices", _SPEC, option))
                                                   for name, probe, option, kind, default, rule, text in (
    ("bleu_latent", "bleu", "latent", str, "sample", ("sample", "mean"),
     "SPEC §6.1: decode from one posterior sample (authors' code) or from the mean"),
    ("smoothness_latent", "smoothness", "latent", str, "mean", ("mean", "sample"),
     "SPEC §6.2: latent distance between posterior means or one posterior sample each"),
    ("noisy_swap_mode", "noisy", "swap_mode", str, "random", ("random", "adjacent"),
     "SPEC §6.3: one swap = two distinct random positions or a random adjacent pair"),
    ("copy_decoding", "copy", "decoding", str, "sample", ("sample", "greedy"),
     "SPEC §6.5: ancestral sampling from the prior (authors' helper) or greedy"),
    ("gmm_components", "classify", "gmm_components", int, 10, "nonneg_int",
     "SPEC §7.1: GMM components (authors' default; 0 = skip the GMM)"),
    ("gmm_rule", "classify", "gmm_rule", str, "top", ("top", "majority", "hungarian"),
     "SPEC §7.1: component → label rule reported as gmm.accuracy (all three are logged)"),
    ("label_sampling", "classify", "label_sampling", str, "uniform", ("uniform", "balanced"),
     "SPEC §7.2: labelled subsets sampled uniformly or class-balanced from DATA/train.txt"),
    ("classifier_optimizer", "classify", "optimizer", str, "sgd", ("sgd", "adam"),
     "SPEC §7.2: optimiser of the classifier on the frozen encoder mean"),
)}

# The size settings of the probes, probe -> {name: Knob}: `textvae probe PROBE --NAME`, and params.yaml's
# probing.PROBE.NAME (globally or in a dataset's section); every probe also takes max_examples
_PROBING = (GLOBAL, DATASET)


def _probe_knobs(*rows: tuple) -> dict[str, Knob]:
    rows += (("max_examples", int, None, "pos_int", "use only the first N examples of each split"),)
    return {row[0]: Knob(*row[:5], "probing", _PROBING, row[0], many=row[5] if len(row) > 5 else None)
            for row in rows}


_MAX_LEN = ("max_len", int, 99, "pos_int", "maximum generated tokens")
PROBE_KNOBS: dict[str, dict[str, Knob]] = {
    "bleu": _probe_knobs(_MAX_LEN),
    "smoothness": _probe_knobs(("pairs", int, 100_000, "pos_int", "random sentence pairs")),
    "noisy": _probe_knobs(("swaps", int, [1, 2, 3, 4], "pos_int", "numbers of word swaps", "+")),
    "interpolate": _probe_knobs(("pairs_interp", int, 10, "pos_int", "pairs per source"),
                                ("points", int, 11, "int_ge2", "points per path incl. the endpoints"), _MAX_LEN),
    "copy": _probe_knobs(("samples", int, 300, "pos_int", "prior samples"),
                         ("max_len", int, 100, "pos_int", "maximum generated tokens (as [C])")),
    "classify": _probe_knobs(
        ("labels", int, [100, 500, 1000, 2000, 10000], "pos_int",
         "label counts of the linear classifier (none: skip it)", "*"),
        ("max_epochs", int, 100, "pos_int", "classifier epochs at most"),
        ("clf_batch_size", int, 16, "pos_int", "classifier batch size (SPEC §7.2)"),
        ("lr", float, None, "pos", "classifier learning rate (default 1.0 with sgd, 1e-3 with adam)"),
        ("repeats", int, 3, "pos_int", "label subsets × classifier seeds, and GMM random states, behind each "
         "standard error (the first is the reported SPEC number)")),
}


def add_probe_options(parser: argparse.ArgumentParser, probe: str) -> None:
    """The size options of ``textvae probe PROBE`` (``--max-len`` …) and its SPEC-choice options (``--latent``
    …), with their declared defaults."""
    for k in PROBE_KNOBS[probe].values():
        k.add_to(parser, k.default)
    for p, k in PROBE_CHOICE_KNOBS.values():
        if p == probe:
            k.add_to(parser, k.default, dest=k.option)


SEED_KNOB = TRAIN_KNOBS["seed"]


def train_defaults() -> dict:
    """Every training setting's declared default (what a run gets where neither params.yaml nor an option sets it)."""
    return {k.name: k.default for k in TRAIN_KNOBS.values()}


def section_knobs(section: str, layer: str = GLOBAL) -> dict[str, Knob]:
    """The knobs params.yaml may set in a section at a layer (``training`` at METHOD: the per-method ones)."""
    every = [*TRAIN_KNOBS.values(), *SIZE_KNOBS.values(), *EVAL_KNOBS.values(),
             *(k for _, k in PROBE_CHOICE_KNOBS.values())]
    return {k.name: k for k in every if k.section == section and layer in k.where}


def add_options(parser: argparse.ArgumentParser, knobs: Iterable[Knob], defaults: bool = False) -> None:
    """The options of ``knobs`` (``defaults``: the declared default, else None = unset)."""
    for k in knobs:
        if k.option is not None:
            k.add_to(parser, k.default if defaults else None)


# ----------------------------------------------------------------------------------------------------------
# the generated parts of params.schema.yaml
# ----------------------------------------------------------------------------------------------------------

def _object(knobs: dict[str, Knob], required: Iterable[str] = ()) -> dict:
    out = {"type": "object", "additionalProperties": False,
           "properties": {name: k.schema() for name, k in knobs.items()}}
    if required:
        out["required"] = list(required)
    return out


def schema_defs() -> dict[str, dict]:
    """The ``$defs`` of params.schema.yaml that the declarations give."""
    overrides = _object(section_knobs("training", DATASET))
    assert set(section_knobs("training", METHOD)) == set(overrides["properties"])   # one override object
    overrides["properties"]["methods"] = {"type": "object"}
    spec = {**section_knobs("spec_choices")}
    evaluation = section_knobs("evaluation", DATASET)
    return {
        "training": _object(section_knobs("training")),
        "train_overrides": overrides,
        "sizes": _object(SIZE_KNOBS, [k.name for k in SIZE_KNOBS.values() if k.required]),
        "spec_choices": _object(spec, list(spec)),
        "evaluation": _object(evaluation),
        "evaluation_global": _object(section_knobs("evaluation"),
                                     [k.name for k in EVAL_KNOBS.values() if k.required]),
        "seed": rule_schema(SEED_KNOB.rule),
        "probing": {"type": "object", "additionalProperties": False,
                    "properties": {probe: _object(knobs) for probe, knobs in PROBE_KNOBS.items()}},
    }
