"""params.yaml → the settings of a run: read it (one line naming the line of a YAML error or a duplicate key),
check it (the JSON schema, the knobs' value rules, the cross-key rules and the method registry), and resolve
what one run gets. Every front end takes its settings from here: ``textvae train --config`` (:func:`resolve_train`),
the Snakefile and ``dvc.yaml`` (through :mod:`textvae.plan.pipeline`, whose training commands name the dataset
and method and let ``textvae train`` resolve them) and the reports (the budgets they print).

One route per setting, resolved in one order: the global section (``training``, ``evaluation``,
``probing``) → the dataset's section (``datasets.NAME.training`` …) → for training, the method's
(``datasets.NAME.training.methods.METHOD``) → the command line's options. Which knob may be set where, its
type, default and rule are declared once in :mod:`textvae.config.knobs`. An experiment (``experiments.NAME``)
chooses datasets, λ and seeds, never a knob.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from textvae.config import knobs as K
from textvae.config.knobs import MODEL_KEYS  # noqa: F401 - re-exported
from textvae.core.errors import ConfigError
from textvae.corpora.datasets import request_problem
from textvae.modeling.methods import METHODS, parse_lam, row_problem

PARAMS = "params.yaml"
SCHEMA = "workflow/schemas/params.schema.yaml"
Lines = dict   # key path (tuple of keys and list indices) -> line number in the file


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


def param_lines(path: str | Path = PARAMS) -> Lines:
    """The line of every key and list item of a YAML file that :func:`load_params` has read (for messages)."""
    import yaml

    lines: Lines = {}

    def walk(node, at: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = at + (key.value,)
                lines.setdefault(sub, key.start_mark.line + 1)
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault(at + (i,), item.start_mark.line + 1)
                walk(item, at + (i,))

    walk(yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader), ())
    return lines


def where(source: str | Path, path: tuple, lines: Lines | None = None) -> str:
    """``params.yaml:57: training.lr`` (the line of the key, or of the nearest key above it)."""
    for n in range(len(path), 0, -1):
        if lines and tuple(path[:n]) in lines:
            return f"{source}:{lines[tuple(path[:n])]}: {key_path(path)}"
    return f"{source}: {key_path(path)}"


def load_schema(schema_path: str | Path = SCHEMA) -> dict:
    """The JSON schema with its generated parts (``$defs`` whose ``$comment`` says so) put in from the knobs'
    declarations (:func:`textvae.config.knobs.schema_defs`)."""
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    defs = schema.setdefault("$defs", {})
    for name, part in K.schema_defs().items():
        if "generated" not in str((defs.get(name) or {}).get("$comment", "")):
            raise ConfigError(f"{schema_path}: $defs.{name}: expected a placeholder generated from "
                              "textvae.config.knobs ($comment: generated ...)")
        defs[name] = {"$comment": defs[name]["$comment"], **part}
    return schema


def schema_error(params: dict, schema_path: str | Path = SCHEMA, source: str = PARAMS,
                 lines: Lines | None = None) -> str | None:
    """The first schema violation as one line naming the key (and its line), or None."""
    import jsonschema

    schema = load_schema(schema_path)
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = list(validator_cls(schema).iter_errors(params))
    if not errors:
        return None
    found = []
    for err in errors:
        err = jsonschema.exceptions.best_match([err])
        # descend into oneOf/anyOf to name the deepest key at fault
        while err.context:
            err = jsonschema.exceptions.best_match(err.context)
        path, message = tuple(err.absolute_path), err.message
        if err.validator == "additionalProperties":
            path += (sorted(set(err.instance) - set(err.schema.get("properties") or {}), key=str)[0],)
            message = "unknown key"
        elif err.validator == "pattern" and err.path and "row" in str(err.schema_path):
            message = row_problem(err.instance) or message
        found.append((path, message))
    # the first in the file (a value shared through a YAML alias: under the key where it is written)
    path, message = min(found, key=lambda f: _line_key(f[0], lines or {}))
    return f"{where(source, path, lines)}: {message}"


def _line_key(path: tuple, lines: Lines) -> tuple:
    marks = [lines.get(path[:n], 0) for n in range(1, len(path) + 1)]
    return (marks[-1] if marks else 0, *marks)


def knob_error(params: dict) -> tuple[tuple, str] | None:
    """The first value that its knob's rule refuses (the rule the job applies: NaN, inf, out of range, a seed
    beyond the RNG's range), or a corpus request that ``textvae data prepare`` refuses: (key path, message)."""
    layers = [(("training",), "training", K.GLOBAL), (("spec_choices",), "spec_choices", K.GLOBAL),
              (("evaluation",), "evaluation", K.GLOBAL)]
    for ds, spec in (params.get("datasets") or {}).items():
        at = ("datasets", ds)
        layers += [(at + ("sizes",), "sizes", K.DATASET), (at + ("training",), "training", K.DATASET),
                   (at + ("evaluation",), "evaluation", K.DATASET)]
        layers += [(at + ("training", "methods", m), "training", K.METHOD)
                   for m in (((spec or {}).get("training") or {}).get("methods") or {})]
    for path, name, layer in layers:
        allowed = K.section_knobs(name, layer)
        for key, value in (_get(params, path) or {}).items():
            if layer == K.DATASET and name == "training" and key == "methods":
                continue
            if key not in allowed:
                return path + (key,), f"not a setting of {name} here (choose from {', '.join(allowed)})"
            msg = allowed[key].problem(value)
            if msg:
                return path + (key,), msg
    probing = [(("probing",), params.get("probing"))] + [
        (("datasets", ds, "probing"), (spec or {}).get("probing")) for ds, spec in (params.get("datasets") or {}).items()]
    for path, section in probing:
        for probe, values in (section or {}).items():
            allowed = K.PROBE_KNOBS.get(probe, {})
            for key, value in (values or {}).items():
                msg = allowed[key].problem(value) if key in allowed else \
                    f"not a setting of probe {probe} (choose from {', '.join(allowed)})"
                if msg:
                    return path + (probe, key), msg
    seed_lists = [(("seeds",), params.get("seeds"))] + [
        (("experiments", e, "seeds"), (spec or {}).get("seeds")) for e, spec in (params.get("experiments") or {}).items()]
    for path, seeds in seed_lists:
        for i, seed in enumerate(seeds or []):
            msg = K.SEED_KNOB.problem(seed)
            if msg:
                return path + (i,), msg
    for ds, spec in (params.get("datasets") or {}).items():
        spec = spec or {}
        bad = request_problem(spec.get("corpus", ds), spec.get("source"), (spec.get("prepare") or {}).get("examples"))
        if bad:
            key = {"dataset": "corpus", "examples": "prepare"}.get(bad[0], bad[0])
            return ("datasets", ds, key), bad[1].replace("--source", "source").replace("--examples", "examples")
    return None


def _get(params: dict, path: tuple):
    for key in path:
        params = (params or {}).get(key)
    return params


def semantic_error(params: dict) -> tuple[tuple, str] | None:
    """Cross-key checks the schema cannot express: (key path, message), or None."""
    datasets = params.get("datasets") or {}
    for at in [("evaluation",), *(("datasets", ds, "evaluation") for ds in datasets)]:
        if (_get(params, at) or {}).get("iw_samples") == 0:   # the evaluate command's plain test pass
            return at + ("iw_samples",), ("expected a positive integer (0, a plain test pass, gives no IW-NLL: "
                                          "the tables show it), got 0")
    for ds, spec in datasets.items():
        for method in (((spec or {}).get("training") or {}).get("methods") or {}):
            if method not in METHODS:
                return ("datasets", ds, "training", "methods", method), \
                    f"unknown method; choose from {', '.join(METHODS)}"
    for name, table in (params.get("tables") or {}).items():
        at = ("tables", name)
        for i, ds in enumerate(table.get("datasets", [])):
            if ds not in datasets:
                return at + ("datasets", i), f"unknown dataset {ds!r} (not under datasets)"
        rows = table.get("rows")
        if isinstance(rows, dict):
            for ds in rows:
                if ds not in table.get("datasets", []):
                    return at + ("rows", ds), f"{ds!r} is not one of the table's datasets"
            for ds in table.get("datasets", []):
                if ds not in rows:
                    return at + ("rows",), f"no rows for dataset {ds!r}"
        for key, row_list in _row_lists(rows):
            for i, row in enumerate(row_list):
                if row_problem(row):
                    return at + ("rows", *key, i), row_problem(row)
                if row.endswith("@*") and not table.get("lams"):
                    return at + ("rows", *key, i), f"{row!r} needs the table's `lams`"
                if _zero_lam(row):
                    return at + ("rows", *key, i), f"{row!r}: the target rate λ must be > 0"
    for fig, spec in (params.get("figures") or {}).items():
        at = ("figures", fig)
        for i, ds in enumerate(spec.get("datasets", [])):
            if ds not in datasets:
                return at + ("datasets", i), f"unknown dataset {ds!r} (not under datasets)"
        for i, row in enumerate(spec.get("rows", [])):
            if row_problem(row):
                return at + ("rows", i), row_problem(row)
            if row.endswith("@*"):
                return at + ("rows", i), f"{row!r}: give a λ"
            if _zero_lam(row):
                return at + ("rows", i), f"{row!r}: the target rate λ must be > 0"
    for exp, spec in (params.get("experiments") or {}).items():
        at, spec = ("experiments", exp), spec or {}
        if exp in RESERVED_NAMES:
            return at, "the name is taken by a Snakemake rule; choose another"
        if spec.get("dataset") and spec["dataset"] not in datasets:
            return at + ("dataset",), f"unknown dataset {spec['dataset']!r} (not under datasets)"
        if spec.get("dataset") and spec.get("datasets"):
            return at, "give `dataset` (replace every dataset) or `datasets` (aliases), not both"
        for paper_ds, alias in (spec.get("datasets") or {}).items():
            if alias not in datasets:
                return at + ("datasets", paper_ds), f"unknown dataset {alias!r} (not under datasets)"
        for i, table in enumerate(spec.get("tables") or []):
            if table not in (params.get("tables") or {}):
                return at + ("tables", i), f"{table!r} is not a table of params.yaml"
    return None


def _zero_lam(row: str) -> bool:
    """``ours@0`` (the schema's row pattern admits 0; a run needs λ > 0)."""
    _, at, lam = row.partition("@")
    return bool(at) and lam != "*" and parse_lam(lam, row) <= 0


def _row_lists(rows) -> list[tuple[tuple, list]]:
    if isinstance(rows, dict):
        return [((ds,), lst) for ds, lst in rows.items()]
    return [((), rows or [])]


# Snakemake rule names (an experiment's target rule is named after it)
RESERVED_NAMES = frozenset({"all", "prepare_data", "train", "evaluate", "probe", "report", "report_index"})

# keys a Snakemake profile may add to the config (`config:`): runtime settings, not knobs
RUNTIME_KEYS = frozenset({"gpu_slots_per_device"})
# how messages name values that Snakemake got with --config or --configfile rather than from params.yaml
SNAKEMAKE_CONFIG = "snakemake --config/--configfile"


def check_same_knobs(config: dict, on_disk: dict, source: str = PARAMS) -> None:
    """Snakemake's config must be params.yaml itself (plus runtime keys): the commands read the file."""
    for key in sorted(set(config) | set(on_disk)):
        if key in RUNTIME_KEYS:
            continue
        if config.get(key) != on_disk.get(key):
            raise ConfigError(f"{SNAKEMAKE_CONFIG}: {key}: differs from {source}; experiment knobs are set in "
                              f"{source} only (the textvae commands read the file), not with --config or "
                              "--configfile")


def check_params(params: dict, schema_path: str | Path = SCHEMA, source: str = PARAMS,
                 lines: Lines | None = None) -> None:
    """The pre-flight check, every rule a job applies to these values: raise ConfigError with one line naming
    the file, line (``lines``, from :func:`param_lines`) and key at fault."""
    msg = schema_error(params, schema_path, source, lines)
    if msg:
        raise ConfigError(msg)
    bad = knob_error(params) or semantic_error(params)
    if bad:
        raise ConfigError(f"{where(source, bad[0], lines)}: {bad[1]}")


def load_checked(path: str | Path = PARAMS, schema_path: str | Path = SCHEMA, source: str | None = None) -> dict:
    """params.yaml read and checked (:func:`check_params`), errors naming ``source`` (default: the path) and line."""
    params = load_params(path)
    check_params(params, schema_path, source or str(path), param_lines(path))
    return params


# ----------------------------------------------------------------------------------------------------------
# resolving: global → dataset → method (→ the command line's options, which the caller lays on top)
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


def resolve_train(params: dict, dataset: str, method: str | None, source: str | Path = PARAMS,
                  lines: Lines | None = None) -> tuple[dict, dict]:
    """``(training settings, model sizes)`` of one run as params.yaml gives them: ``training`` → the dataset's
    ``training`` → its ``methods.METHOD``, the ``spec_choices`` and ``datasets.DATASET.sizes``; each value
    checked by its knob's rule and given the knob's type. Keys not set stay out (the TrainConfig default)."""
    datasets = params.get("datasets") or {}
    if dataset not in datasets:
        raise ConfigError(f"{source}: datasets.{dataset} is not defined (known: {', '.join(datasets)})")
    spec = datasets[dataset] or {}
    over = dict(spec.get("training") or {})
    per_method = over.pop("methods", None) or {}
    layers = [(("training",), params.get("training"), K.GLOBAL),
              (("spec_choices",), params.get("spec_choices"), K.GLOBAL),
              (("datasets", dataset, "training"), over, K.DATASET),
              (("datasets", dataset, "training", "methods", method), per_method.get(method), K.METHOD)]
    train: dict[str, Any] = {}
    for path, values, layer in layers:
        name = "spec_choices" if path == ("spec_choices",) else "training"
        checked = _checked(values, K.section_knobs(name, layer), path, source, lines, name)
        train.update({k: v for k, v in checked.items() if k in K.TRAIN_KNOBS})   # not the probes' choices
    sizes = _checked(spec.get("sizes"), K.SIZE_KNOBS, ("datasets", dataset, "sizes"), source, lines, "sizes")
    return train, sizes


def _checked(values, allowed: dict, path: tuple, source, lines, name: str) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where(source, path, lines)}: expected a mapping of keys, got {values!r}")
    out = {}
    for key, value in values.items():
        knob = allowed.get(key)
        if knob is None:
            raise ConfigError(f"{where(source, path + (key,), lines)}: not a setting of {name} here")
        msg = knob.problem(value)
        if msg:
            raise ConfigError(f"{where(source, path + (key,), lines)}: {msg}")
        out[key] = knob.coerce(value)
    return out
