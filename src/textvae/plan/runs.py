"""The names of what a table shows: a training ``Run`` (dataset, method, λ, seed) and its paths, a table
``Row``, a ``Section`` (one dataset's rows in a table) and an ``Experiment`` (which datasets, λ and seeds a set
of reports runs). Paths follow docs/architecture.md: ``results/DATASET/METHOD[/lamL]/seedS/``.
"""
from __future__ import annotations

from dataclasses import dataclass

from textvae.core.errors import ConfigError
from textvae.modeling.methods import LAM_METHODS, METHODS, PAPER_ONLY_ROWS, PRETRAIN_SOURCE, fmt_lam, parse_lam


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
