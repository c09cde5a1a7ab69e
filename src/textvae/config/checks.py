"""Value checks for training options and params.yaml keys: a bad value is one line naming the option or key
(``--batch-size: expected a positive integer, got 0``, ``params.yaml: training.max_epochs: expected a positive
integer, got 'ten'``), raised before anything is read or written. The rules mirror the ``training`` part of
workflow/schemas/params.schema.yaml, which checks the same keys for the pipeline.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from textvae.core.errors import ConfigError
from textvae.modeling.model import ENCODER_INITS

# rule name -> (test, what a good value is)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "pos_int": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "nonneg_int": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "pos": (lambda v: _is_num(v) and v > 0, "a finite number > 0"),
    "nonneg": (lambda v: _is_num(v) and v >= 0, "a finite number >= 0"),
    "unit": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "prob": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "dropout": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
}

# `textvae train` options whose name differs from the params key
TRAIN_OPTION_NAMES = {"max_epochs": "epochs"}

TRAIN_RULES = {
    "seed": "nonneg_int", "batch_size": "pos_int", "max_epochs": "pos_int", "lr": "pos", "patience": "pos_int",
    "min_epoch": "nonneg_int", "lr_decay": "unit", "max_decays": "pos_int", "clip_grad": "pos", "warm_up": "nonneg",
    "kl_start": "prob", "cyclic_epochs": "pos_int", "cyclic_start": "prob", "cyclic_ramp_epochs": "pos",
    "iwae_k": "pos_int", "aggressive_max_steps": "pos_int", "aggressive_check_every": "pos_int",
    "max_train": "pos_int", "max_valid": "pos_int", "fb_baseline_anneal": "bool", "pretrain_reset_decoder": "bool",
    "iwae_code_compat": "bool", "progress": "bool",
    "fbp_mode": ("per_example", "batch_mean"), "aggressive_clip": ("all", "encoder"), "precision": ("fp32", "bf16"),
    "encoder_init": ENCODER_INITS,
}
MODEL_RULES = {"enc_emb": "pos_int", "dec_emb": "pos_int", "enc_hidden": "pos_int", "dec_hidden": "pos_int",
               "nz": "pos_int", "dropout_in": "dropout", "dropout_out": "dropout"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def problem(rule: str | tuple, value: Any) -> str | None:
    """What is wrong with ``value`` under ``rule`` (None when it is fine)."""
    if isinstance(rule, tuple):
        return None if value in rule else f"expected one of {', '.join(rule)}, got {value!r}"
    test, good = RULES[rule]
    return None if test(value) else f"expected {good}, got {value!r}"


def check_values(values: Mapping[str, Any], rules: Mapping[str, str | tuple], label: Callable[[str], str]) -> None:
    """Raise ConfigError for the first value (None = unset, skipped) that breaks its rule; ``label(key)``
    names it (an option or a params.yaml key path)."""
    for key, value in values.items():
        if key in rules and value is not None:
            msg = problem(rules[key], value)
            if msg:
                raise ConfigError(f"{label(key)}: {msg}")


def option_label(renamed: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """``batch_size -> '--batch-size'`` (``renamed`` maps keys whose option differs, e.g. max_epochs -> epochs)."""
    return lambda key: "--" + (renamed or {}).get(key, key).replace("_", "-")
