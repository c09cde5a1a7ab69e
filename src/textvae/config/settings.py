"""params.yaml → the settings of a run: read it (one line naming the line of a YAML error or a duplicate key),
check it (the JSON schema, then the cross-key rules and the method registry), and resolve what one command
gets. Every front end takes its settings from here: the Snakefile and ``dvc.yaml`` (through
:mod:`textvae.plan.pipeline`, which writes them into the commands as options) and ``textvae train --config``
(global ``training`` and ``spec_choices``, the dataset's ``sizes``).

One route per setting, resolved in one order: the global section (``training``, ``evaluation``,
``probing``) → the dataset's section (``datasets.NAME.training`` …) → for training, the method's
(``datasets.NAME.training.methods.METHOD``). An experiment (``experiments.NAME``) chooses datasets, λ and
seeds, never a knob.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from textvae.core.errors import ConfigError
from textvae.modeling.methods import METHODS, parse_lam, row_problem

PARAMS = "params.yaml"
SCHEMA = "workflow/schemas/params.schema.yaml"
MODEL_KEYS = ("enc_emb", "dec_emb", "enc_hidden", "dec_hidden", "nz", "dropout_in", "dropout_out")


def deep_merge(base: dict, over: dict | None) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

def key_path(path) -> str:
    """A jsonschema error path as ``tables.table3.rows.ptb[2]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


# ----------------------------------------------------------------------------------------------------------
# loading and checking params.yaml
# ----------------------------------------------------------------------------------------------------------

def _unique_key_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """A SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:   # an unhashable key: the base class reports it
                    break
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}; the first is on line {first + 1}", key_node.start_mark)
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def load_params(path: str | Path = PARAMS) -> dict:
    """params.yaml as a dict; a bad file is one line naming the file and line (YAML syntax, a duplicate key)."""
    import yaml

    path = Path(path)
    try:
        params = yaml.load(path.read_text(), Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


def schema_error(params: dict, schema_path: str | Path = SCHEMA, source: str = PARAMS) -> str | None:
    """The first schema violation as one line naming the key, or None."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = list(validator_cls(schema).iter_errors(params))
    if not errors:
        return None
    err = jsonschema.exceptions.best_match(errors)
    # descend into oneOf/anyOf to name the deepest key at fault
    while err.context:
        err = jsonschema.exceptions.best_match(err.context)
    message = err.message
    if err.validator == "additionalProperties":
        message = message.replace("Additional properties are not allowed", "unknown key")
    elif err.validator == "pattern" and err.path and "row" in str(err.schema_path):
        message = row_problem(err.instance) or message
    return f"{source}: {key_path(err.absolute_path)}: {message}"


def semantic_error(params: dict, source: str = PARAMS) -> str | None:
    """Cross-key checks the schema cannot express, as one line naming the key, or None."""
    datasets = params.get("datasets") or {}
    for ds, spec in datasets.items():
        for method in (((spec or {}).get("training") or {}).get("methods") or {}):
            if method not in METHODS:
                return (f"{source}: datasets.{ds}.training.methods.{method}: unknown method; choose from "
                        f"{', '.join(METHODS)}")
    for name, table in (params.get("tables") or {}).items():
        for i, ds in enumerate(table.get("datasets", [])):
            if ds not in datasets:
                return f"{source}: tables.{name}.datasets[{i}]: unknown dataset {ds!r} (not under datasets)"
        rows = table.get("rows")
        if isinstance(rows, dict):
            for ds in rows:
                if ds not in table.get("datasets", []):
                    return f"{source}: tables.{name}.rows.{ds}: {ds!r} is not one of the table's datasets"
            for ds in table.get("datasets", []):
                if ds not in rows:
                    return f"{source}: tables.{name}.rows: no rows for dataset {ds!r}"
        for key, row_list in _row_lists(rows):
            for i, row in enumerate(row_list):
                if row_problem(row):
                    return f"{source}: tables.{name}.rows{key}[{i}]: {row_problem(row)}"
                if row.endswith("@*") and not table.get("lams"):
                    return f"{source}: tables.{name}.rows{key}[{i}]: {row!r} needs the table's `lams`"
                if _zero_lam(row):
                    return f"{source}: tables.{name}.rows{key}[{i}]: {row!r}: the target rate λ must be > 0"
    for fig, spec in (params.get("figures") or {}).items():
        for i, ds in enumerate(spec.get("datasets", [])):
            if ds not in datasets:
                return f"{source}: figures.{fig}.datasets[{i}]: unknown dataset {ds!r} (not under datasets)"
        for i, row in enumerate(spec.get("rows", [])):
            if row_problem(row):
                return f"{source}: figures.{fig}.rows[{i}]: {row_problem(row)}"
            if row.endswith("@*"):
                return f"{source}: figures.{fig}.rows[{i}]: {row!r}: give a λ"
            if _zero_lam(row):
                return f"{source}: figures.{fig}.rows[{i}]: {row!r}: the target rate λ must be > 0"
    for exp, spec in (params.get("experiments") or {}).items():
        if exp in RESERVED_NAMES:
            return f"{source}: experiments.{exp}: the name is taken by a Snakemake rule; choose another"
        if (spec or {}).get("dataset") and spec["dataset"] not in datasets:
            return f"{source}: experiments.{exp}.dataset: unknown dataset {spec['dataset']!r} (not under datasets)"
        if (spec or {}).get("dataset") and (spec or {}).get("datasets"):
            return f"{source}: experiments.{exp}: give `dataset` (replace every dataset) or `datasets` (aliases), not both"
        for paper_ds, alias in ((spec or {}).get("datasets") or {}).items():
            if alias not in datasets:
                return f"{source}: experiments.{exp}.datasets.{paper_ds}: unknown dataset {alias!r} (not under datasets)"
        for i, table in enumerate((spec or {}).get("tables") or []):
            if table not in (params.get("tables") or {}):
                return f"{source}: experiments.{exp}.tables[{i}]: {table!r} is not a table of params.yaml"
    return None


def _zero_lam(row: str) -> bool:
    """``ours@0`` (the schema's row pattern admits 0; a run needs λ > 0)."""
    _, at, lam = row.partition("@")
    return bool(at) and lam != "*" and parse_lam(lam, row) <= 0


def _row_lists(rows) -> list[tuple[str, list]]:
    if isinstance(rows, dict):
        return [(f".{ds}", lst) for ds, lst in rows.items()]
    return [("", rows or [])]


# Snakemake rule names (an experiment's target rule is named after it)
RESERVED_NAMES = frozenset({"all", "prepare_data", "train", "evaluate", "probe", "report", "report_index"})

# keys a Snakemake profile may add to the config (`config:`): runtime settings, not knobs
RUNTIME_KEYS = frozenset({"gpu_slots_per_device"})


def check_same_knobs(config: dict, on_disk: dict, source: str = PARAMS) -> None:
    """Snakemake's config must be params.yaml itself (plus runtime keys): the commands read the file."""
    for key in sorted(set(config) | set(on_disk)):
        if key in RUNTIME_KEYS:
            continue
        if config.get(key) != on_disk.get(key):
            raise ConfigError(f"{source}: {key}: differs from the config Snakemake was given; experiment knobs are "
                              f"set in {source} only (the textvae commands read the file), not with --config or "
                              "--configfile")


def check_params(params: dict, schema_path: str | Path = SCHEMA, source: str = PARAMS) -> None:
    """Raise ConfigError with one line naming the key at fault."""
    msg = schema_error(params, schema_path, source) or semantic_error(params, source)
    if msg:
        raise ConfigError(msg)



# ----------------------------------------------------------------------------------------------------------
# resolving: global → dataset → method
# ----------------------------------------------------------------------------------------------------------

def section(params: dict, name: str, dataset: str | None = None) -> dict:
    """A global section (training, evaluation, probing) with the dataset's overrides merged in."""
    base = params.get(name) or {}
    if dataset is None:
        return dict(base)
    return deep_merge(base, params["datasets"][dataset].get(name))


def run_training(params: dict, dataset: str, method: str) -> dict:
    """The dataset's training overrides for one run: its common ones, then those of the run's method
    (``datasets.NAME.training.methods.METHOD``), e.g. a longer AE or a shorter aggressive run."""
    over = dict(params["datasets"][dataset].get("training") or {})
    per_method = over.pop("methods", None) or {}
    return {**over, **(per_method.get(method) or {})}


def train_settings(params: dict, dataset: str, fields: Iterable[str], source: str | Path = PARAMS
                   ) -> tuple[dict, dict]:
    """``(training settings, model sizes)`` that ``textvae train --config`` reads: the ``training`` and
    ``spec_choices`` sections (keys among ``fields``) and ``datasets.<dataset>.sizes``, each value checked."""
    from textvae.config.checks import MODEL_RULES, TRAIN_RULES, check_values   # imports torch (model.ENCODER_INITS)

    datasets = params.get("datasets") or {}
    if dataset not in datasets:
        raise ConfigError(f"{source}: datasets.{dataset} is not defined (known: {', '.join(datasets)})")
    sizes = dict((datasets[dataset] or {}).get("sizes") or {})
    bad = set(sizes) - set(MODEL_KEYS)
    if bad:
        raise ConfigError(f"{source}: datasets.{dataset}.sizes.{sorted(bad)[0]} is not a model size key")
    check_values(sizes, MODEL_RULES, lambda k: f"{source}: datasets.{dataset}.sizes.{k}")
    names = set(fields)
    train: dict[str, Any] = {}
    for name in ("training", "spec_choices"):
        values = params.get(name) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {name}: expected a mapping of keys, got {values!r}")
        check_values(values, TRAIN_RULES, lambda k: f"{source}: {name}.{k}")
        train.update({k: v for k, v in values.items() if k in names})
    return train, sizes
