"""What the reports are made of: the paper's reference numbers, row labels (from :mod:`textvae.modeling.methods`),
number formatting and seed statistics, markdown tables and cell escaping, and the reader of run results."""
from __future__ import annotations

import json
import math
import statistics
from functools import lru_cache
from pathlib import Path, PurePath

from textvae.modeling import methods
from textvae.core.errors import ConfigError, DataError
from textvae.core.hashing import file_sha256, settings_sha256
from textvae.core.rundir import read_json_lines
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


def short_label(row: Row) -> str:
    """The row's label without the "+ " of a baseline's variant (claims, figure legends, budgets)."""
    return row_label(row).lstrip("+ ")


def fmt(value, decimals: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{decimals}f}"


class Stat:
    """A metric over seeds: mean, sample std (None for one seed), n; ``ses``: each run's own standard error
    (shown as ± for a single run)."""

    def __init__(self, values: list[float], ses: list | None = None):
        self.values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        self.ses = [float(e) for e in (ses or []) if e is not None and math.isfinite(float(e))]

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
        if self.std is not None:
            return f"{s} ± {fmt(self.std, decimals)}"
        if len(self.values) == 1 and len(self.ses) == 1:
            return f"{s} ± {fmt(self.ses[0], decimals)}"
        return s


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
    """Reads run outputs (relative to ``root``), remembering what was missing, what was unusable and which
    devices ran them.

    A result file is used only when it is this run's: a JSON object whose ``checkpoint.path`` lies in the run's
    own folder, whose ``checkpoint.sha256`` is that of the run's checkpoint and whose ``settings_sha256`` that
    of its ``config.json`` (where those files are at hand; older files record only the path and sha256). A file
    that is malformed (not a JSON object, a half line in ``metrics.jsonl``), belongs to another run, or holds a
    non-finite value where a metric is read is not used and is listed in ``problems`` with the reason: the
    reports name it in their notes, never a silent blank."""

    def __init__(self, root: str | Path = "."):
        self.root = Path(root)
        self.missing: list[str] = []
        self.problems: dict[str, str] = {}
        self.devices: set[str] = set()
        self.iw_samples: set[int] = set()
        self._cache: dict[str, dict | None] = {}
        self._hashes: dict[Path, str] = {}

    def json(self, rel: str) -> dict | None:
        if rel not in self._cache:
            self._cache[rel] = self._read(rel)
        return self._cache[rel]

    def why_missing(self, rel: str) -> str:
        """``rel`` was not used: 'missing' or 'unusable (REASON)'."""
        return f"unusable ({self.problems[rel]})" if rel in self.problems else "missing"

    def _read(self, rel: str) -> dict | None:
        path = self.root / rel
        if not path.exists():
            self.missing.append(rel)
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable result ({exc})") from None
        except json.JSONDecodeError as exc:
            return self._unusable(rel, f"not valid JSON: {exc.msg} at line {exc.lineno}")
        if not isinstance(data, dict):
            return self._unusable(rel, f"not a JSON object but a {type(data).__name__}")
        foreign = self._foreign(rel, data)
        if foreign:
            return self._unusable(rel, foreign)
        if data.get("device"):
            self.devices.add(str(data["device"]))
        if data.get("iw_samples"):
            self.iw_samples.add(int(data["iw_samples"]))
        return data

    def _unusable(self, rel: str, reason: str) -> None:
        self.problems.setdefault(rel, reason)
        return None

    def _foreign(self, rel: str, data: dict) -> str | None:
        """Why ``data`` (read from ``rel``) is another run's result, or None."""
        ck = data.get("checkpoint")
        if not isinstance(ck, dict) or not ck.get("path"):
            return None   # not a per-checkpoint result
        run_dir = PurePath(rel).parent
        theirs = PurePath(str(ck["path"])).parent
        n = min(len(run_dir.parts), len(theirs.parts))
        if n and run_dir.parts[-n:] != theirs.parts[-n:]:
            return f"belongs to another run: computed on {ck['path']}"
        folder = self.root / run_dir
        ckpt = folder / PurePath(str(ck["path"])).name
        if ck.get("sha256") and ckpt.is_file() and self._sha256(ckpt) != ck["sha256"]:
            return (f"computed on another {ckpt.name} (sha256 {str(ck['sha256'])[:12]}…; the run's is "
                    f"{self._sha256(ckpt)[:12]}…)")
        config = folder / "config.json"
        if ck.get("settings_sha256") and config.is_file():
            try:
                ours = settings_sha256(json.loads(config.read_text()))
            except (OSError, ValueError):
                ours = None
            if ours != ck["settings_sha256"]:
                return f"computed with other settings than {config.name} records (settings_sha256 differs)"
        return None

    def _sha256(self, path: Path) -> str:
        if path not in self._hashes:
            self._hashes[path] = file_sha256(path)
        return self._hashes[path]

    def metrics(self, rel: str) -> list[dict] | None:
        path = self.root / rel
        if not path.exists():
            self.missing.append(rel)
            return None
        try:
            return read_json_lines(path)
        except DataError as exc:   # "PATH:N: not a JSON line (…)"
            return self._unusable(rel, "line " + str(exc)[len(str(path)) + 1:])

    def stat(self, runs: list[Run], file_of, getter, se_getter=None) -> Stat:
        """The metric of ``runs`` over seeds, with each run's standard error (``se_getter``); a non-finite value
        makes its file unusable (named in the report's notes), never part of the mean."""
        values, ses = [], []
        for run in runs:
            rel = file_of(run)
            data = self.json(rel)
            if data is not None:
                value = getter(data)
                if isinstance(value, (int, float)) and not math.isfinite(value):
                    self._unusable(rel, f"{getattr(getter, 'name', 'a value')} is {value}")
                    continue
                values.append(value)
                ses.append(se_getter(data) if se_getter else None)
        return Stat(values, ses)


def stat_of(results: Results, runs: list[Run], file_of, getter, se_getter=None) -> Stat:
    """The metric of ``runs`` over seeds, with each run's standard error (:meth:`Results.stat`)."""
    return results.stat(runs, file_of, getter, se_getter)


# where each metric's standard error is in a result file (textvae.evaluation.uncertainty, the probes)
SE_KEYS = {"bleu": ("bleu_se",), "pcc": ("pcc_se",), "noisy_rec": ("noisy_rec_se",), "linear": ("linear_se",),
           "converged": ("converged_se",), "gmm": ("gmm", "accuracy_se")}


def se_getter_of(*keys):
    """The getter of the standard error of the metric at ``keys`` (see :func:`getter_of`), or None when the
    result files carry none for it."""
    head = keys[0]
    if head == "mean_min_edit":             # the copy check: a mean over prior samples
        def copy_se(data):
            v = data.get("min_edit") if isinstance(data, dict) else None
            return statistics.stdev(v) / math.sqrt(len(v)) if isinstance(v, list) and len(v) > 1 else None
        return copy_se
    if keys == ("gmm", "best_of_inits_accuracy"):
        return getter_of("gmm", "best_of_inits_accuracy_se")
    if head in SE_KEYS:
        return getter_of(*SE_KEYS[head], *keys[1:][:1 if head in ("noisy_rec", "linear", "converged") else 0])
    if len(keys) == 1 and head not in ("mean_train_length",):
        return getter_of("se", head)        # an evaluation metric (eval_test.json "se")
    return None


def getter_of(*keys):
    def getter(data):
        node = data
        for k in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(k)
        return node
    getter.name = ".".join(keys)
    return getter


