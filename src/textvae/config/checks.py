"""Value rules of the knobs (:mod:`textvae.config.knobs`): a bad value is one line naming the option or key
(``--batch-size: expected a positive integer, got 0``, ``params.yaml:57: training.max_epochs: expected a positive
integer, got 'ten'``), raised before anything is read or written. Each rule also gives the JSON-schema fragment
of params.yaml's generated parts (the schema cannot express finiteness: the pre-flight check applies the rule
itself, see :func:`textvae.config.settings.check_params`).
"""
from __future__ import annotations

import math
from typing import Any, Callable

SEED_MAX = 2**64 - 1   # torch.manual_seed's range (a larger seed overflows inside the job)

# rule name -> (test, what a good value is, JSON-schema fragment)
RULES: dict[str, tuple[Callable[[Any], bool], str, dict]] = {
    "pos_int": (lambda v: _is_int(v) and v >= 1, "a positive integer", {"type": "integer", "minimum": 1}),
    "int_ge2": (lambda v: _is_int(v) and v >= 2, "an integer >= 2", {"type": "integer", "minimum": 2}),
    "nonneg_int": (lambda v: _is_int(v) and v >= 0, "an integer >= 0", {"type": "integer", "minimum": 0}),
    "seed": (lambda v: _is_int(v) and 0 <= v <= SEED_MAX, "an integer in [0, 2^64 - 1]",
             {"type": "integer", "minimum": 0, "maximum": SEED_MAX}),
    "pos": (lambda v: _is_num(v) and v > 0, "a finite number > 0", {"type": "number", "exclusiveMinimum": 0}),
    "nonneg": (lambda v: _is_num(v) and v >= 0, "a finite number >= 0", {"type": "number", "minimum": 0}),
    "unit": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]",
             {"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
    "prob": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]", {"type": "number", "minimum": 0, "maximum": 1}),
    "dropout": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)",
                {"type": "number", "minimum": 0, "exclusiveMaximum": 1}),
    "bool": (lambda v: isinstance(v, bool), "true or false", {"type": "boolean"}),
    "text": (lambda v: isinstance(v, str), "a string", {"type": "string"}),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def problem(rule: str | tuple, value: Any) -> str | None:
    """What is wrong with ``value`` under ``rule`` (a RULES name or a tuple of choices; None when it is fine)."""
    if isinstance(rule, tuple):
        return None if value in rule and not isinstance(value, bool) else \
            f"expected one of {', '.join(map(str, rule))}, got {value!r}"
    test, good, _ = RULES[rule]
    return None if test(value) else f"expected {good}, got {value!r}"


def rule_schema(rule: str | tuple) -> dict:
    """The JSON-schema fragment of a rule (structure and bounds; finiteness is :func:`problem`'s)."""
    return {"enum": list(rule)} if isinstance(rule, tuple) else dict(RULES[rule][2])
