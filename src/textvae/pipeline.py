"""The experiment pipeline as data: which runs each table needs, the exact command, inputs and outputs of every
job, and the DVC stages run from it.

``params.yaml`` says *what* to run (datasets, table rows, λ grids, seeds, knobs); this module turns it into
jobs. The Snakefile's rules take their commands, inputs and rerun triggers from here (``workflow/rules``), and
the stages of ``dvc.yaml`` run them through ``textvae pipeline dvc-run`` (:mod:`textvae.dvc_stages`), so the two
front ends run the same commands on the same paths and cannot drift apart.

Paths (docs/architecture.md):

- ``data/DATASET/{train,valid,test}.txt, stats.json`` (``textvae data prepare``);
- ``results/DATASET/METHOD[/lamL]/seedS/{best.pt,metrics.jsonl,config.json,vocab.txt,train.log}``
  (``textvae train``; its resume state ``last.pt`` beside them is untracked), ``…/eval_test.json`` (``textvae evaluate``), ``…/probe_NAME.json`` (``textvae probe``);
- ``reports/{table1..table11,appendix_b,index}.md`` and ``reports/fig_*_DATASET.png`` for the ``paper``
  experiment, ``reports/EXPERIMENT/…`` for the others (``textvae report``).
"""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable

from textvae.errors import ConfigError
from textvae.methods import (LAM_METHODS, METHODS, PAPER_ONLY_ROWS, PRETRAIN_METHODS, PRETRAIN_SOURCE, parse_lam,
                             row_problem)
from textvae.rundir import atomic_write_text

PARAMS = "params.yaml"
SCHEMA = "workflow/schemas/params.schema.yaml"


# what each report item shows: an evaluation ("lm"), a probe (its name), or the model sizes
TABLE_KINDS = {
    "table1": "lm", "table2": "lm", "table3": "lm", "table4": "bleu", "table5": "smoothness", "table6": "noisy",
    "table7": "interpolate", "table8": "classify", "table9": "sizes", "table10": "lm", "table11": "lm",
    "appendix_b": "copy",
}
PROBES = ("bleu", "smoothness", "noisy", "interpolate", "copy", "classify")
FIGURES = ("tradeoff", "curves")

# spec_choices → option of the command that implements it
CHOICE_OPTIONS = {
    "bleu": {"bleu_latent": "latent"},
    "smoothness": {"smoothness_latent": "latent"},
    "noisy": {"noisy_swap_mode": "swap_mode"},
    "copy": {"copy_decoding": "decoding"},
    "classify": {"gmm_components": "gmm_components", "gmm_rule": "gmm_rule", "label_sampling": "label_sampling",
                 "classifier_optimizer": "optimizer"},
}
# `textvae train` options whose name differs from the params key
TRAIN_OPTION_NAMES = {"max_epochs": "epochs"}
# files a training run produces, all tracked. Its resume state RUN_DIR/last.pt is not among them: Snakemake
# deletes the outputs of an interrupted job and DVC those of a stage it reruns, and the rerun (`--resume`)
# continues from last.pt (docs/reliability.md)
RUN_FILES = ("best.pt", "metrics.jsonl", "config.json", "vocab.txt", "train.log")
DATA_FILES = ("train.txt", "valid.txt", "test.txt", "stats.json")


# ----------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------

def fmt_lam(lam: float) -> str:
    """``7.0 -> '7'``, ``2.5 -> '2.5'`` (the λ in paths, stage names and row labels)."""
    lam = float(lam)
    return str(int(lam)) if lam.is_integer() else repr(lam)


def deep_merge(base: dict, over: dict | None) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def options(values: dict, rename: dict | None = None) -> list[str]:
    """``{'max_len': 99, 'swaps': [1, 2]} -> ['--max-len', '99', '--swaps', '1', '2']`` (sorted by key)."""
    argv: list[str] = []
    for key in sorted(values):
        value = values[key]
        if value is None:
            continue
        flag = "--" + (rename or {}).get(key, key).replace("_", "-")
        if isinstance(value, bool):
            if value:
                argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv.append(flag)
            argv += [_num(v) for v in value]
        else:
            argv += [flag, _num(value)]
    return argv


def _num(v) -> str:
    return fmt_lam(v) if isinstance(v, float) else str(v)


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def shell_join(argv: Iterable[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


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
# runs, rows, experiments
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Run:
    """One training run = one row of a results table for one seed."""
    dataset: str
    method: str
    lam: float | None
    seed: int

    @property
    def run_id(self) -> str:
        return self.method if self.lam is None else f"{self.method}/lam{fmt_lam(self.lam)}"

    @property
    def dir(self) -> str:
        return f"results/{self.dataset}/{self.run_id}/seed{self.seed}"

    @property
    def slug(self) -> str:
        """For DVC stage names (letters, digits, - and _ only)."""
        lam = "" if self.lam is None else "-lam" + fmt_lam(self.lam).replace(".", "p")
        return f"{self.dataset}-{self.method}{lam}-seed{self.seed}"

    @property
    def ckpt(self) -> str:
        return f"{self.dir}/best.pt"

    @property
    def eval_json(self) -> str:
        return f"{self.dir}/eval_test.json"

    def probe_json(self, probe: str) -> str:
        return f"{self.dir}/probe_{probe}.json"

    @property
    def ae(self) -> "Run":
        """The AE run the pretrained methods start from."""
        return Run(self.dataset, PRETRAIN_SOURCE, None, self.seed)

    @classmethod
    def parse(cls, dataset: str, run_id: str, seed) -> "Run":
        method, _, lam = run_id.partition("/lam")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r} in run {run_id!r}")
        if (method in LAM_METHODS) != bool(lam):
            raise ConfigError(f"run {run_id!r}: {method} {'needs' if method in LAM_METHODS else 'takes no'} λ")
        return cls(dataset, method, parse_lam(lam, run_id) if lam else None, int(seed))


@dataclass(frozen=True)
class Row:
    """A row of a table: a method (+ λ), or a paper-only row."""
    method: str
    lam: float | None = None

    @property
    def key(self) -> str:
        """The row's name in params.yaml and in the paper reference data (``fbp@7``)."""
        return self.method if self.lam is None else f"{self.method}@{fmt_lam(self.lam)}"

    @property
    def paper_only(self) -> bool:
        return self.method in PAPER_ONLY_ROWS

    @classmethod
    def parse(cls, text: str) -> "Row":
        method, _, lam = text.partition("@")
        return cls(method, parse_lam(lam, text) if lam else None)


@dataclass(frozen=True)
class Section:
    """The rows of one dataset in a table, as run for one experiment."""
    dataset: str            # the dataset the runs use
    paper_datasets: tuple   # the paper's dataset(s) this section stands for
    rows: tuple             # Row, in table order (λ snapped for the experiment)
    paper_rows: tuple       # the paper's Row for each row (before snapping), same order


@dataclass(frozen=True)
class Experiment:
    name: str
    dataset: str | None     # replaces every dataset (no paper column then)
    lams: tuple | None      # λ snapped to the nearest of these
    seeds: tuple
    aliases: tuple = ()     # ((paper dataset, dataset run in its place), ...): only these, paper column kept
    tables: tuple | None = None   # only these tables (default: every table of params.yaml)
    figures: tuple | None = None  # only these figures (default: every figure of params.yaml)

    def runs_dataset(self, dataset: str) -> bool:
        """Does the experiment run the paper dataset's sections (an aliased experiment runs only its own)?"""
        return not self.aliases or dataset in dict(self.aliases)

    @property
    def report_dir(self) -> str:
        return "reports" if self.name == "paper" else f"reports/{self.name}"

    @property
    def compares_to_paper(self) -> bool:
        return self.dataset is None

    def map_dataset(self, dataset: str) -> str:
        return self.dataset or dict(self.aliases).get(dataset, dataset)

    def map_lam(self, lam: float | None) -> float | None:
        if lam is None or not self.lams:
            return lam
        return min(self.lams, key=lambda g: (abs(g - lam), g))


# ----------------------------------------------------------------------------------------------------------
# jobs
# ----------------------------------------------------------------------------------------------------------

@dataclass
class Job:
    rule: str                     # data | train | evaluate | probe | report
    name: str                     # unique; the DVC stage name
    argv: list[str]               # the command (run by Snakemake and by DVC)
    inputs: list[str]
    outputs: list[str]
    params: list[str]             # params.yaml keys the command reads (DVC `params:`)
    knobs: dict = field(default_factory=dict)   # resolved values of those keys (Snakemake rerun trigger)
    gpu: bool = False
    dvc_outs: list[str] | None = None           # what DVC caches, if not `outputs` (a whole directory)

    @property
    def cmd(self) -> str:
        return shell_join(self.argv)

    @property
    def knobs_json(self) -> str:
        return canonical(self.knobs)


class Plan:
    """params.yaml → experiments, table sections, runs and jobs."""

    def __init__(self, params: dict, params_path: str = PARAMS):
        self.params = params
        self.params_path = params_path

    @classmethod
    def load(cls, path: str | Path = PARAMS, schema: str | Path | None = SCHEMA) -> "Plan":
        params = load_params(path)
        # commands name the file as seen from the workflow's directory
        name = Path(path).name if Path(path).is_absolute() else str(path)
        if schema is not None:
            check_params(params, schema, name)
        return cls(params, name)

    # ---------------------------------------------------------------- settings
    @property
    def datasets(self) -> dict:
        return self.params["datasets"]

    def section(self, name: str, dataset: str | None = None) -> dict:
        """A global section (training, evaluation, probing) with the dataset's overrides merged in."""
        base = self.params.get(name) or {}
        if dataset is None:
            return dict(base)
        return deep_merge(base, self.datasets[dataset].get(name))

    def run_overrides(self, run: Run) -> dict:
        """The dataset's training overrides for one run: its common ones, then those of the run's method
        (``datasets.NAME.training.methods.METHOD``), e.g. a longer AE or a shorter aggressive run."""
        over = dict(self.datasets[run.dataset].get("training") or {})
        per_method = over.pop("methods", None) or {}
        return {**over, **(per_method.get(run.method) or {})}

    @cached_property
    def experiments(self) -> dict[str, Experiment]:
        out = {}
        for name, spec in (self.params.get("experiments") or {"paper": {}}).items():
            spec = spec or {}
            lams = tuple(float(x) for x in spec["lams"]) if spec.get("lams") else None
            seeds = tuple(spec.get("seeds") or self.params["seeds"])
            aliases = tuple(sorted((spec.get("datasets") or {}).items()))
            tables = tuple(spec["tables"]) if spec.get("tables") else None
            figures = tuple(spec["figures"]) if spec.get("figures") is not None else None
            out[name] = Experiment(name, spec.get("dataset"), lams, seeds, aliases, tables, figures)
        return out

    def experiment(self, name: str) -> Experiment:
        try:
            return self.experiments[name]
        except KeyError:
            raise ConfigError(f"unknown experiment {name!r}; {self.params_path} defines "
                              f"{', '.join(self.experiments)}") from None

    def experiment_for_report_dir(self, report_dir: str) -> Experiment:
        for exp in self.experiments.values():
            if exp.report_dir == report_dir.rstrip("/"):
                return exp
        raise ConfigError(f"no experiment writes its reports to {report_dir!r}")

    # ---------------------------------------------------------------- tables → runs
    def table_names(self, exp: Experiment | None = None) -> list[str]:
        """The tables of params.yaml (in the paper's order), or those an experiment renders."""
        names = [t for t in TABLE_KINDS if t in (self.params.get("tables") or {})]
        if exp is None:
            return names
        return [t for t in names if (exp.tables is None or t in exp.tables)
                and any(exp.runs_dataset(d) for d in self.params["tables"][t]["datasets"])]

    def sections(self, exp: Experiment, table: str) -> list[Section]:
        """The table's sections for the experiment; datasets mapped to the same one are merged."""
        spec = self.params["tables"][table]
        lams = spec.get("lams") or []
        per_dataset = []
        for ds in spec["datasets"]:
            if not exp.runs_dataset(ds):
                continue
            rows = spec.get("rows") or []
            if isinstance(rows, dict):
                rows = rows[ds]
            per_dataset.append((ds, [row for text in rows for row in self._expand(text, lams)]))
        return self._merge(exp, per_dataset)

    def figure_sections(self, exp: Experiment, figure: str) -> list[Section]:
        spec = self.params["figures"][figure]
        if figure == "tradeoff":
            rows = [Row(m, float(lam)) for m in spec["methods"] for lam in sorted(spec["lams"])]
        else:
            rows = [Row.parse(r) for r in spec["rows"]]
        return self._merge(exp, [(ds, rows) for ds in spec["datasets"] if exp.runs_dataset(ds)])

    @staticmethod
    def _expand(text: str, lams) -> list[Row]:
        if text.endswith("@*"):
            method = text[:-2]
            return [Row(method, float(lam)) for lam in sorted(lams, reverse=True)]
        return [Row.parse(text)]

    @staticmethod
    def _merge(exp: Experiment, per_dataset: list[tuple[str, list[Row]]]) -> list[Section]:
        """Map datasets and λ for the experiment; sections that land on one dataset become one (rows deduped,
        in order); paper-only rows are dropped where there is no paper column."""
        merged: dict[str, dict] = {}
        for ds, paper_rows in per_dataset:
            sec = merged.setdefault(exp.map_dataset(ds), {"paper": [], "rows": {}})
            sec["paper"].append(ds)
            for pr in paper_rows:
                if pr.paper_only and not exp.compares_to_paper:
                    continue
                sec["rows"].setdefault(Row(pr.method, exp.map_lam(pr.lam)), pr)
        return [Section(ds, tuple(s["paper"]), tuple(s["rows"]), tuple(s["rows"].values()))
                for ds, s in merged.items()]

    def runs_of(self, exp: Experiment, dataset: str, rows: Iterable[Row]) -> list[Run]:
        return [Run(dataset, r.method, r.lam, seed) for r in rows if not r.paper_only for seed in exp.seeds]

    # ---------------------------------------------------------------- report items
    def report_items(self, exp: Experiment) -> list[str]:
        """File names of the experiment's reports, index.md last."""
        items = [f"{t}.md" for t in self.table_names(exp)]
        for fig in FIGURES:
            if fig in (self.params.get("figures") or {}) and (exp.figures is None or fig in exp.figures):
                items += [f"fig_{fig}_{sec.dataset}.png" for sec in self.figure_sections(exp, fig)]
        if self.claim_tables(exp):
            items.append("claims.md")
        return items + ["index.md"]

    def claim_tables(self, exp: Experiment) -> list[str]:
        """The experiment's tables that the paper's claims (and its acceptance checks) read."""
        from textvae.claims import claim_tables

        return [t for t in claim_tables(exp.name) if t in self.table_names(exp)]

    def report_targets(self, exp_name: str | None = None) -> list[str]:
        exps = [self.experiment(exp_name)] if exp_name else list(self.experiments.values())
        return [f"{e.report_dir}/{item}" for e in exps for item in self.report_items(e)]

    def item_runs(self, exp: Experiment, item: str) -> tuple[list[Run], str | None]:
        """The runs a report item shows and what it reads of each: ``evaluate`` (eval_test.json), a probe name
        (probe_NAME.json), ``train`` (metrics.jsonl) or None (no runs)."""
        stem = item.rsplit(".", 1)[0]
        if stem in ("index", "claims"):
            return [], None
        if stem.startswith("fig_"):
            _, fig, dataset = stem.split("_", 2)
            sec = next(s for s in self.figure_sections(exp, fig) if s.dataset == dataset)
            return self.runs_of(exp, dataset, sec.rows), ("evaluate" if fig == "tradeoff" else "train")
        kind = TABLE_KINDS[stem]
        if kind == "sizes":
            return [], None
        runs = [run for sec in self.sections(exp, stem) for run in self.runs_of(exp, sec.dataset, sec.rows)]
        return runs, ("evaluate" if kind == "lm" else kind)

    @staticmethod
    def product(run: Run, what: str) -> str:
        """The file of a run that a report reads."""
        if what == "evaluate":
            return run.eval_json
        if what == "train":
            return f"{run.dir}/metrics.jsonl"
        return run.probe_json(what)

    def item_inputs(self, exp: Experiment, item: str) -> list[str]:
        stem = item.rsplit(".", 1)[0]
        if stem == "index":
            return [f"{exp.report_dir}/{i}" for i in self.report_items(exp) if i != "index.md"]
        if stem == "claims":
            return list(dict.fromkeys(f for t in self.claim_tables(exp) for f in self.item_inputs(exp, f"{t}.md")))
        runs, what = self.item_runs(exp, item)
        files = [self.product(run, what) for run in runs]
        if stem in TABLE_KINDS and TABLE_KINDS[stem] != "sizes":
            files = [f"data/{sec.dataset}/stats.json" for sec in self.sections(exp, stem)] + files
        return files

    # ---------------------------------------------------------------- jobs
    def data_job(self, dataset: str) -> Job:
        if dataset not in self.datasets:
            raise ConfigError(f"{self.params_path}: datasets.{dataset} is not defined")
        spec = self.datasets[dataset]
        out = f"data/{dataset}"
        # an alias (ptb_cpu) prepares the registry's corpus (`corpus: ptb`) into its own folder
        argv = ["textvae", "data", "prepare", spec.get("corpus", dataset), "--out", out]
        if spec.get("source"):
            argv += ["--source", spec["source"]]
        prep = dict(spec.get("prepare") or {})
        if "examples" in prep:
            prep["examples"] = ",".join(str(n) for n in prep["examples"])
        argv += options(prep)
        keys = [f"datasets.{dataset}.{k}" for k in ("source", "prepare", "corpus") if k in spec]
        knobs = {"source": spec.get("source"), "prepare": spec.get("prepare")}
        if "corpus" in spec:
            knobs["corpus"] = spec["corpus"]
        return Job("data", f"data-{dataset}", argv, [], [f"{out}/{f}" for f in DATA_FILES], keys, knobs,
                   dvc_outs=[out])

    def train_job(self, run: Run) -> Job:
        spec = self.datasets.get(run.dataset)
        if spec is None:
            raise ConfigError(f"{self.params_path}: datasets.{run.dataset} is not defined")
        data = f"data/{run.dataset}"
        argv = ["textvae", "train", "--data", data, "--method", run.method]
        inputs = [f"{data}/train.txt", f"{data}/valid.txt"]
        if run.lam is not None:
            argv += ["--lam", fmt_lam(run.lam)]
        if run.method in PRETRAIN_METHODS:
            argv += ["--init-from", run.ae.ckpt]
            inputs.append(run.ae.ckpt)
        overrides = self.run_overrides(run)
        argv += ["--out", run.dir, "--config", self.params_path, "--dataset", run.dataset, "--seed", str(run.seed),
                 *options(overrides, TRAIN_OPTION_NAMES), "--no-progress", "--resume"]
        keys = ["training", "spec_choices", f"datasets.{run.dataset}.sizes"]
        if spec.get("training"):
            keys.append(f"datasets.{run.dataset}.training")
        knobs = {"training": deep_merge(self.section("training"), overrides),
                 "spec_choices": self.params["spec_choices"], "sizes": spec["sizes"]}
        return Job("train", f"train-{run.slug}", argv, inputs, [f"{run.dir}/{f}" for f in RUN_FILES], keys, knobs,
                   gpu=True)

    def evaluate_job(self, run: Run) -> Job:
        data = f"data/{run.dataset}"
        ev = self.section("evaluation", run.dataset)
        argv = ["textvae", "evaluate", "--ckpt", run.ckpt, "--data", data, "--split", "test", "--out",
                run.eval_json, *options(ev), "--no-progress"]
        keys = ["evaluation"] + ([f"datasets.{run.dataset}.evaluation"]
                                 if self.datasets[run.dataset].get("evaluation") else [])
        return Job("evaluate", f"evaluate-{run.slug}", argv, [run.ckpt, f"{data}/test.txt"], [run.eval_json],
                   keys, {"evaluation": ev}, gpu=True)

    def probe_job(self, run: Run, probe: str) -> Job:
        if probe not in PROBES:
            raise ConfigError(f"unknown probe {probe!r}; choose from {', '.join(PROBES)}")
        data = f"data/{run.dataset}"
        settings = dict(self.section("probing", run.dataset).get(probe) or {})
        choices = self.params["spec_choices"]
        for choice, option in CHOICE_OPTIONS.get(probe, {}).items():
            settings[option] = choices[choice]
        argv = ["textvae", "probe", probe, "--ckpt", run.ckpt, "--data", data, "--out", run.probe_json(probe),
                *options(settings), "--quiet"]
        inputs = [run.ckpt, f"{data}/test.txt"]
        if probe in ("copy", "classify"):
            inputs.append(f"{data}/train.txt")
        if probe == "classify":
            inputs.append(f"{data}/valid.txt")
        keys = [f"probing.{probe}"] if probe in (self.params.get("probing") or {}) else []
        if probe in ((self.datasets[run.dataset].get("probing")) or {}):
            keys.append(f"datasets.{run.dataset}.probing.{probe}")
        keys += [f"spec_choices.{c}" for c in CHOICE_OPTIONS.get(probe, {})]
        return Job("probe", f"probe_{probe}-{run.slug}", argv, inputs, [run.probe_json(probe)], keys, settings,
                   gpu=True)

    def report_job(self, exp: Experiment, item: str) -> Job:
        stem = item.rsplit(".", 1)[0]
        if item not in self.report_items(exp):
            raise ConfigError(f"{self.params_path}: experiment {exp.name!r} has no report {item!r}")
        out = f"{exp.report_dir}/{item}"
        files = self.item_inputs(exp, item)
        argv = ["textvae", "report", stem, "--params", self.params_path, "--experiment", exp.name, "--out", out]
        keys = [f"experiments.{exp.name}", "seeds", "spec_choices", "evaluation", "training"]
        knobs = {"experiment": [exp.name, exp.dataset, exp.lams, exp.seeds, list(exp.aliases), exp.tables,
                                exp.figures],
                 "settings": {k: self.params.get(k) for k in ("spec_choices", "evaluation", "training")}}
        # what the page shows, resolved (a λ that snaps onto an existing row changes nothing here)
        if stem.startswith("fig_"):
            fig = stem.split("_")[1]
            keys.append(f"figures.{fig}")
            knobs["sections"] = [_sec_key(s) for s in self.figure_sections(exp, fig) if f"fig_{fig}_{s.dataset}" == stem]
        elif stem == "index":
            knobs["items"] = self.report_items(exp)
        elif stem == "claims":
            tables = self.claim_tables(exp)
            keys += [f"tables.{t}" for t in tables]
            knobs["sections"] = {t: [_sec_key(s) for s in self.sections(exp, t)] for t in tables}
        elif stem == "table9":
            datasets = self._table_datasets(exp, "table9")
            keys += ["tables.table9"] + [f"datasets.{ds}.sizes" for ds in datasets]
            knobs["sizes"] = {ds: self.datasets[ds]["sizes"] for ds in datasets}
        else:
            keys.append(f"tables.{stem}")
            knobs["sections"] = [_sec_key(s) for s in self.sections(exp, stem)]
            knobs["overrides"] = {s.dataset: {k: self.datasets[s.dataset].get(k) for k in ("training", "evaluation",
                                                                                          "probing")}
                                  for s in self.sections(exp, stem)}
        name = f"report-{stem}" if exp.name == "paper" else f"report-{exp.name}-{stem}"
        if stem == "index":
            name = exp.name   # the experiment's index job
        return Job("report", name.replace("_", "-"), argv, files, [out], keys, knobs)

    def _table_datasets(self, exp: Experiment, table: str) -> list[str]:
        return list(dict.fromkeys(exp.map_dataset(d) for d in self.params["tables"][table]["datasets"]
                                  if exp.runs_dataset(d)))

    # ---------------------------------------------------------------- the whole DAG
    def run_job(self, run: Run, what: str) -> Job:
        if what == "train":
            return self.train_job(run)
        if what == "evaluate":
            return self.evaluate_job(run)
        return self.probe_job(run, what)

    def all_jobs(self, experiments: Iterable[str] | None = None) -> list[Job]:
        """Every job the experiments' reports need, in a valid run order, without duplicates."""
        jobs: dict[str, Job] = {}

        def add(job: Job) -> None:
            jobs.setdefault(job.name, job)

        reports = []
        for exp_name in experiments or self.experiments:
            exp = self.experiment(exp_name)
            for item in self.report_items(exp):
                reports.append(self.report_job(exp, item))
                runs, what = self.item_runs(exp, item)
                for run in runs:
                    add(self.data_job(run.dataset))
                    if run.method in PRETRAIN_METHODS:
                        add(self.train_job(run.ae))
                    add(self.train_job(run))
                    add(self.run_job(run, what))
                for f in reports[-1].inputs:
                    if f.startswith("data/"):
                        add(self.data_job(f.split("/")[1]))
        for job in reports:
            add(job)
        order = {"data": 0, "train": 1, "evaluate": 2, "probe": 3, "report": 4}
        # AE runs first among the training runs (the pretrained ones start from them); otherwise stable
        return sorted(jobs.values(), key=lambda j: (order[j.rule], not (j.rule == "train" and f"-{PRETRAIN_SOURCE}-seed" in j.name)))


def _sec_key(sec: Section) -> list:
    return [sec.dataset, list(sec.paper_datasets), [r.key for r in sec.rows], [r.key for r in sec.paper_rows]]


# ----------------------------------------------------------------------------------------------------------
# CLI: textvae pipeline {check,dvc-yaml,dvc-run,jobs}
# ----------------------------------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser("pipeline", help="the experiment pipeline: check params.yaml, the run lists of dvc.yaml",
                              description="The jobs params.yaml asks for (the Snakefile and dvc.yaml run them).")
    sub = p.add_subparsers(dest="pipeline_command", metavar="{check,dvc-yaml,dvc-run,jobs}")
    sub.required = True

    def common(q):
        q.add_argument("--params", default=PARAMS, help="parameters file (default params.yaml)")
        q.add_argument("--schema", default=SCHEMA, help=f"JSON schema (default {SCHEMA})")

    q = sub.add_parser("check", help="validate params.yaml (one line naming the key at fault)")
    common(q)
    q.set_defaults(func=_cmd_check)

    q = sub.add_parser("dvc-yaml", help="write the run lists of dvc.yaml (workflow/dvc_runs.yaml) from params.yaml",
                       description="dvc.yaml is a template; this writes the run lists it iterates over that DVC "
                                   "cannot compute from params.yaml (or --check that they are current).")
    common(q)
    q.add_argument("--out", default=None, help="output file (default workflow/dvc_runs.yaml; - for stdout)")
    q.add_argument("--check", action="store_true", help="exit 1 if the file differs from what would be written")
    q.set_defaults(func=_cmd_dvc_yaml)

    q = sub.add_parser("dvc-run", help="run one DVC stage (dvc.yaml's commands): checks the run lists first",
                       description="data DATASET | train RUN_DIR | evaluate RUN_DIR | probe NAME RUN_DIR | "
                                   "report OUT: builds the stage's command from params.yaml and runs it.")
    q.add_argument("--params", default=PARAMS, help="parameters file (default params.yaml)")
    q.add_argument("stage", choices=["data", "train", "evaluate", "probe", "report"])
    q.add_argument("target", nargs="+", help="DATASET, RUN_DIR, NAME RUN_DIR or OUT")
    q.set_defaults(func=_cmd_dvc_run)

    q = sub.add_parser("jobs", help="list the jobs (name, command) of the pipeline")
    common(q)
    q.add_argument("--experiment", action="append", help="only this experiment (repeatable)")
    q.add_argument("--json", action="store_true", help="one JSON object per job")
    q.set_defaults(func=_cmd_jobs)


def _cmd_check(args) -> int:
    plan = Plan.load(args.params, args.schema)
    n = len(plan.all_jobs())
    print(f"{args.params}: ok ({len(plan.experiments)} experiments, {n} jobs)")
    return 0


def _cmd_dvc_yaml(args) -> int:
    from textvae import dvc_stages

    args.out = args.out or dvc_stages.RUNS_FILE
    text = dvc_stages.runs_yaml(Plan.load(args.params, args.schema))
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).exists() else ""
        if current != text:
            print(f"{args.out} is out of date with {args.params}: run `textvae pipeline dvc-yaml`", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    if args.out == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(text, args.out)
        print(f"wrote {args.out}")
    return 0


def _cmd_dvc_run(args) -> int:
    from textvae import dvc_stages

    want = 2 if args.stage == "probe" else 1
    if len(args.target) != want:
        raise ConfigError(f"dvc-run {args.stage}: expected {want} argument(s), got {' '.join(args.target)}")
    probe, target = (args.target[0], args.target[1]) if args.stage == "probe" else (None, args.target[0])
    return dvc_stages.run_stage(args.stage, target, probe, args.params)


def _cmd_jobs(args) -> int:
    plan = Plan.load(args.params, args.schema)
    for job in plan.all_jobs(args.experiment):
        if args.json:
            print(json.dumps({"name": job.name, "rule": job.rule, "cmd": job.cmd, "inputs": job.inputs,
                              "outputs": job.outputs, "params": job.params, "gpu": job.gpu}))
        else:
            print(f"{job.name}\t{job.cmd}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m textvae.pipeline ...`` is ``textvae pipeline ...``."""
    from textvae.cli import main as cli_main

    return cli_main(["pipeline", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
