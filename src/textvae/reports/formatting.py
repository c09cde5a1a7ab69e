"""What the reports are made of: the paper's reference numbers, row labels (from :mod:`textvae.modeling.methods`),
number formatting and seed statistics, markdown tables and cell escaping, and the reader of run results."""
from __future__ import annotations

import json
import math
import statistics
from functools import lru_cache
from pathlib import Path

from textvae.modeling import methods
from textvae.core.errors import ConfigError
from textvae.modeling.methods import fmt_lam
from textvae.plan.runs import Row, Run

# how the reports name each dataset
DATASET_NAMES = {"ptb": "PTB", "snli": "SNLI", "yahoo": "Yahoo", "yelp": "Yelp", "synthetic": "embedded corpus",
                 "synthetic_s2": "embedded corpus (corpus seed 2)", "ptb_cpu": "PTB (CPU budget)"}


# ----------------------------------------------------------------------------------------------------------
# reference numbers, labels, formatting
# ----------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def reference() -> dict:
    import yaml
    from importlib.resources import files

    return yaml.safe_load(files("textvae.reports").joinpath("paper_reference.yaml").read_text(encoding="utf-8"))


def row_label(row: Row, table: str = "") -> str:
    lam = f" (λ = {fmt_lam(row.lam)})" if row.lam is not None else ""
    return methods.label(row.method, table) + lam


def fmt(value, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{decimals}f}"


class Stat:
    """A metric over seeds: mean, sample std (None for one seed), n."""

    def __init__(self, values: list[float]):
        self.values = [float(v) for v in values if v is not None and math.isfinite(float(v))]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self, decimals: int) -> str:
        if not self.values:
            return "—"
        s = fmt(self.mean, decimals)
        return s if self.std is None else f"{s} ± {fmt(self.std, decimals)}"


def diff(ours: Stat, paper, decimals: int = 2) -> str:
    if ours.mean is None or paper is None:
        return ""
    return f"{ours.mean - float(paper):+.{max(decimals, 2)}f}"


def md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=header, tablefmt="github", disable_numparse=True,
                    colalign=align or (["left"] + ["right"] * (len(header) - 1)))


# ----------------------------------------------------------------------------------------------------------
# reading results
# ----------------------------------------------------------------------------------------------------------

class Results:
    """Reads run outputs (relative to ``root``), remembering what was missing and which devices ran them."""

    def __init__(self, root: str | Path = "."):
        self.root = Path(root)
        self.missing: list[str] = []
        self.devices: set[str] = set()
        self.iw_samples: set[int] = set()
        self._cache: dict[str, dict | None] = {}

    def json(self, rel: str) -> dict | None:
        if rel not in self._cache:
            self._cache[rel] = self._read(rel)
        return self._cache[rel]

    def _read(self, rel: str) -> dict | None:
        path = self.root / rel
        if not path.exists():
            self.missing.append(rel)
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable result ({exc})") from None
        if isinstance(data, dict):
            if data.get("device"):
                self.devices.add(str(data["device"]))
            if data.get("iw_samples"):
                self.iw_samples.add(int(data["iw_samples"]))
        return data

    def metrics(self, rel: str) -> list[dict] | None:
        path = self.root / rel
        if not path.exists():
            self.missing.append(rel)
            return None
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def stat(self, runs: list[Run], file_of, getter) -> Stat:
        values = []
        for run in runs:
            data = self.json(file_of(run))
            if data is not None:
                values.append(getter(data))
        return Stat(values)


def getter_of(*keys):
    def getter(data):
        node = data
        for k in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(k)
        return node
    return getter


