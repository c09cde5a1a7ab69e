"""The experiment pipeline as data: which runs each table needs, the exact command, inputs and outputs of every
job, and the DVC stages run from it.

``params.yaml`` says *what* to run (datasets, table rows, λ grids, seeds, knobs); this module turns it into
jobs. The Snakefile's rules take their commands, inputs and rerun triggers from here (``workflow/rules``), and
the stages of ``dvc.yaml`` run them through ``textvae pipeline dvc-run`` (:mod:`textvae.workflow.dvc_stages`),
so the two front ends run the same commands on the same paths and cannot drift apart. Paths: docs/architecture.md
(``data/DATASET/``, ``results/DATASET/METHOD[/lamL]/seedS/``, ``reports/[EXPERIMENT/]``).
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable

from textvae.core.errors import ConfigError
from textvae.corpora.datasets import DATASETS, LABELLED_CORPORA
from textvae.corpora.local import LOCAL, file_names, is_labelled, missing_source
from textvae.modeling.methods import PRETRAIN_METHODS, PRETRAIN_SOURCE, fmt_lam
from textvae.plan.runs import Experiment, Row, Run, Section
from textvae.config.knobs import PROBE_CHOICE_KNOBS, TRAIN_KNOBS
from textvae.plan.tables import TABLE_KINDS, claim_tables, claims_for
from textvae.config.settings import PARAMS, SCHEMA, check_params, deep_merge, load_params, param_lines, run_training, section

PROBES = ("bleu", "smoothness", "noisy", "interpolate", "copy", "classify")
FIGURES = ("tradeoff", "curves")

# spec_choices → option of the probe that implements it (textvae.config.knobs.PROBE_CHOICE_KNOBS)
CHOICE_OPTIONS = {probe: {name: k.option for name, (p, k) in PROBE_CHOICE_KNOBS.items() if p == probe}
                  for probe in dict.fromkeys(p for p, _ in PROBE_CHOICE_KNOBS.values())}
# files a training run produces, all tracked. Its resume state RUN_DIR/last.pt is not among them: Snakemake
# deletes the outputs of an interrupted job and DVC those of a stage it reruns, and the rerun (`--resume`)
# continues from last.pt (docs/reliability.md)
RUN_FILES = ("best.pt", "metrics.jsonl", "config.json", "vocab.txt", "train.log")
DATA_FILES = ("train.txt", "valid.txt", "test.txt", "stats.json")


# ----------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------

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
        for ds, spec in (params.get("datasets") or {}).items():
            if missing_source(ds, spec or {}):
                raise ConfigError(f"{params_path}: datasets.{ds}.source: {missing_source(ds, spec or {})}")
        self._check_rows()

    def _check_rows(self) -> None:
        """A row is listed once per dataset of a table (directly or through ``method@*``): a repeated row would
        be merged silently into one; ConfigError naming the key."""
        for name, spec in (self.params.get("tables") or {}).items():
            rows = (spec or {}).get("rows") or []
            lists = rows.items() if isinstance(rows, dict) else [(None, rows)]
            for ds, texts in lists:
                seen: dict[Row, str] = {}
                for text in texts or []:
                    try:
                        expanded = self._expand(str(text), spec.get("lams") or [])
                    except (ConfigError, ValueError, TypeError):
                        continue   # a malformed row: the check of params.yaml names it
                    for row in expanded:
                        if row in seen:
                            via = "" if seen[row] == text == row.key else f" (through {seen[row]!r} and {text!r})"
                            key = f"tables.{name}.rows" + (f".{ds}" if ds else "")
                            raise ConfigError(f"{self.params_path}: {key}: row {row.key!r} is listed twice{via}")
                        seen[row] = text

    @classmethod
    def load(cls, path: str | Path = PARAMS, schema: str | Path | None = SCHEMA) -> "Plan":
        params = load_params(path)
        # commands name the file as seen from the workflow's directory
        name = Path(path).name if Path(path).is_absolute() else str(path)
        if schema is not None:
            check_params(params, schema, str(path), param_lines(path))
        return cls(params, name)

    # ---------------------------------------------------------------- settings
    @property
    def datasets(self) -> dict:
        return self.params["datasets"]

    def section(self, name: str, dataset: str | None = None) -> dict:
        """A global section with the dataset's overrides merged in (:func:`textvae.config.settings.section`)."""
        return section(self.params, name, dataset)

    def run_overrides(self, run: Run) -> dict:
        """The dataset's and the method's training overrides of one run (:func:`textvae.config.settings.run_training`)."""
        return run_training(self.params, run.dataset, run.method)

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
                and any(self._shows(exp, t, d) for d in self.params["tables"][t]["datasets"])]

    def _shows(self, exp: Experiment, table: str, dataset: str) -> bool:
        """Whether the experiment runs the table's dataset (classification: only on a labelled corpus)."""
        return exp.runs_dataset(dataset) and (TABLE_KINDS[table] != "classify"
                                              or self.labelled(exp.map_dataset(dataset)))

    def sections(self, exp: Experiment, table: str) -> list[Section]:
        """The table's sections for the experiment; datasets mapped to the same one are merged."""
        spec = self.params["tables"][table]
        lams = spec.get("lams") or []
        per_dataset = []
        for ds in spec["datasets"]:
            if not self._shows(exp, table, ds):
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

        return [t for t in claim_tables(exp.name) if t in self.table_names(exp)]

    def report_targets(self, exp_name: str | None = None) -> list[str]:
        exps = [self.experiment(exp_name)] if exp_name else list(self.experiments.values())
        return [f"{e.report_dir}/{item}" for e in exps for item in self.report_items(e)]

    def experiment_targets(self, exp_name: str | None = None) -> list[str]:
        """The reports and every result file they read: a clone with committed reports but no results/ reruns
        the runs and then the reports (asking for the reports alone, Snakemake would find nothing to do)."""
        exps = [self.experiment(exp_name)] if exp_name else list(self.experiments.values())
        files = []
        for e in exps:
            for item in self.report_items(e):
                files.append(f"{e.report_dir}/{item}")
                files += [f for f in self.item_inputs(e, item) if not f.startswith(f"{e.report_dir}/")]
        return list(dict.fromkeys(files))

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
        # an alias (ptb_cpu) prepares the registry's corpus (`corpus: ptb`) into its own folder; your own corpus
        # (`corpus: local`, or a name the registry does not know) is read from its `source:` folder
        corpus = spec.get("corpus", dataset)
        argv = ["textvae", "data", "prepare", dataset if corpus == LOCAL else corpus, "--out", out]
        inputs = file_names(spec["source"]) if self.is_local(dataset) else []
        if corpus == LOCAL:
            argv.append("--local")
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
        return Job("data", f"data-{dataset}", argv, inputs, [f"{out}/{f}" for f in DATA_FILES], keys, knobs,
                   dvc_outs=[out])

    def is_local(self, dataset: str) -> bool:
        """Whether the dataset is your own corpus (textvae.corpora.local), read from its `source:` folder."""
        corpus = self.datasets[dataset].get("corpus", dataset)
        return corpus == LOCAL or (corpus not in DATASETS and bool(self.datasets[dataset].get("source")))

    def labelled(self, dataset: str) -> bool:
        """Whether the dataset's examples carry labels (the classification probe needs them): the registry's
        labelled corpora, or your own whose train.txt starts with label<TAB>text (unknown yet: assumed so)."""
        if self.is_local(dataset):
            return is_labelled(self.datasets[dataset]["source"]) is not False
        return self.datasets[dataset].get("corpus", dataset) in LABELLED_CORPORA

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
        # the dataset's and the method's settings: `textvae train` resolves them from the file (one resolver)
        argv += ["--out", run.dir, "--config", self.params_path, "--dataset", run.dataset, "--seed", str(run.seed),
                 "--no-progress", "--resume"]
        # what the run reads: the global training section, the SPEC choices of training (not the probes'), the
        # dataset's sizes, and its training overrides that apply to this method (not another method's)
        choices = {k: v for k, v in self.params["spec_choices"].items() if k in TRAIN_KNOBS and TRAIN_KNOBS[k].section == "spec_choices"}
        over = spec.get("training") or {}
        keys = ["training", *(f"spec_choices.{k}" for k in choices), f"datasets.{run.dataset}.sizes"]
        keys += [f"datasets.{run.dataset}.training.{k}" for k in over if k != "methods"]
        if run.method in (over.get("methods") or {}):
            keys.append(f"datasets.{run.dataset}.training.methods.{run.method}")
        knobs = {"training": deep_merge(self.section("training"), self.run_overrides(run)), "spec_choices": choices,
                 "sizes": spec["sizes"]}
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
        # the params.yaml keys the page prints (DVC's `params:` of its stage; `knobs` holds their resolved values)
        keys = [f"experiments.{exp.name}"] if exp.name in (self.params.get("experiments") or {}) else []
        keys += [k for k in ("seeds", "spec_choices", "evaluation", "training") if k in self.params]
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
            keys += [f"figures.{i.split('_')[1]}.datasets" if i.startswith("fig_") else f"tables.{i[:-3]}.datasets"
                     for i in knobs["items"] if i not in ("claims.md", "index.md")]
        elif stem == "claims":
            tables = self.claim_tables(exp)
            keys += [f"tables.{t}" for t in tables]
            knobs["sections"] = {t: [_sec_key(s) for s in self.sections(exp, t)] for t in tables}
            # the claims themselves (paper_claims.yaml): a changed wording or threshold rebuilds this page only
            knobs["claims"] = claims_for(exp.name)
        elif stem == "table9":
            datasets = self._table_datasets(exp, "table9")
            keys += ["tables.table9"] + [f"datasets.{ds}.sizes" for ds in datasets]
            knobs["sizes"] = {ds: self.datasets[ds]["sizes"] for ds in datasets}
        else:
            keys.append(f"tables.{stem}")
            knobs["sections"] = [_sec_key(s) for s in self.sections(exp, stem)]
            # what the page prints of its datasets' overrides: budgets, evaluation sizes, its own probe's settings
            kind = TABLE_KINDS[stem]
            knobs["overrides"] = {s.dataset: {"training": self.datasets[s.dataset].get("training"),
                                              "evaluation": self.datasets[s.dataset].get("evaluation"),
                                              kind: (self.datasets[s.dataset].get("probing") or {}).get(kind)}
                                  for s in self.sections(exp, stem)}
            keys += [f"datasets.{ds}.{'probing.' if k == kind else ''}{k}" for ds, shown in knobs["overrides"].items()
                     for k, v in shown.items() if v is not None]
        # the experiment's index job is named after it
        name = exp.name if stem == "index" else f"report-{stem}" if exp.name == "paper" else f"report-{exp.name}-{stem}"
        return Job("report", name.replace("_", "-"), argv, files, [out], list(dict.fromkeys(keys)), knobs)

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
