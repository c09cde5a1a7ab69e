"""The paper's claims, checked on an experiment's results (``paper_claims.yaml``).

Each claim is a list of checks on the rows of one table (see the YAML's header for the form). A claim is
evaluated on every section (dataset) of its table that the experiment runs, and gets one verdict per section:

- ``holds``: every comparison it makes is true beyond its uncertainty;
- ``fails``: at least one is false beyond its uncertainty (the false ones are listed first);
- ``within noise``: none fails, but at least one difference is smaller than its uncertainty;
- ``not run``: a row it needs is not in the experiment's table, or a result file is missing;
- ``missing value``: the result files exist but lack the metric it reads.

A comparison of two rows (``than``) decides on the difference Δ = value − (factor · other + offset) and its 95 %
interval Δ ± 1.96 · SE: it holds when the whole interval satisfies the comparison, fails when no point of it does.
The SE comes from the result files (:mod:`textvae.evaluation.uncertainty`): two rows evaluated on the same test
sentences are compared by their paired per-sentence values; otherwise the two SEs add in quadrature. With
several seeds the difference is the mean over seeds of the per-seed differences, and its SE also holds the seed
spread (std of the per-seed differences / √seeds); with one seed, seed variation is not measured, and the
evidence says so. A result file without errors gives SE 0 (the comparison is then exact). Thresholds that are
not comparisons (``value``, ``lam_factor``: AU ≥ 28, KL < 0.1) compare the mean exactly, and with several seeds
must hold for each seed too.

Classification claims (Table 8) are also evaluated on the converged probe (``converged.N``, the best-likelihood
GMM); the evidence gives that verdict and says when the two probes disagree.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np

from textvae.core.errors import ConfigError
from textvae.modeling.methods import parse_lam
from textvae.plan.pipeline import Plan
from textvae.plan.runs import Experiment, Row, Run, Section
from textvae.plan.tables import TABLE_KINDS, claims_for
from textvae.reports.formatting import getter_of, se_getter_of, short_label

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
OP_TEXT = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
MARK = {"holds": "✅ holds", "fails": "❌ fails", "within noise": "🟡 within noise", "not run": "⏳ not run",
        "missing value": "❔ missing value"}
METRIC_NAMES = {"ppl": "PPL", "nll": "NLL", "rec": "Recon", "kl": "KL", "au": "AU", "mi": "MI",
                "neg_elbo": "−ELBO", "bleu": "BLEU", "pcc": "PCC", "gmm": "GMM acc.", "gmm_best": "GMM acc. (best of inits)"}
Z95 = 1.959964                                 # the two-sided 95 % normal quantile of the intervals
CONVERGED = {"linear": "converged", "gmm": "gmm_best"}   # the SPEC probe's metric → the converged probe's


class Missing(Exception):
    """A value could not be had: ``status`` is 'not run' or 'missing value'."""

    def __init__(self, status: str, why: str):
        super().__init__(why)
        self.status, self.why = status, why


@dataclass
class Verdict:
    claim: dict
    section: str                       # dataset of the section (as run)
    status: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class Estimate:
    """One row's metric on one seed: the value, its standard error and its per-sentence influence values."""
    value: float
    se: float = 0.0
    influence: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------------------
# reading values
# ----------------------------------------------------------------------------------------------------------

def label(row: Row) -> str:
    return short_label(row)


def match_rows(sec: Section, pattern: str) -> list[Row]:
    """The section's rows (as run) that a claim's row pattern names: ``vae``, ``fbp@7`` or ``ours@*``."""
    method, _, lam = pattern.partition("@")
    out = []
    for row, prow in zip(sec.rows, sec.paper_rows):
        if row.method != method:
            continue
        if lam == "*" or (not lam and row.lam is None) or (lam and prow.lam == parse_lam(lam, pattern)):
            out.append(row)
    return list(dict.fromkeys(out))


def influence(data: dict, metric: str) -> np.ndarray | None:
    """Per-sentence influence values of ``metric`` in a result file (paired comparisons), or None."""
    from textvae.evaluation.uncertainty import ppl_influence

    per = data.get("per_sentence") if isinstance(data, dict) else None
    if not isinstance(per, dict):
        return None
    arr = {k: np.asarray(v, dtype=np.float64) for k, v in per.items() if isinstance(v, list)}
    if metric in ("nll", "rec", "kl", "bleu"):
        return arr.get(metric)
    if metric == "neg_elbo" and "rec" in arr and "kl" in arr:
        return arr["rec"] + arr["kl"]
    tokens = arr.get("tokens")
    if metric == "ppl" and "nll" in arr and tokens is not None:
        return ppl_influence(arr["nll"], tokens)
    if metric == "elbo_ppl" and "rec" in arr and "kl" in arr and tokens is not None:
        return ppl_influence(arr["rec"] + arr["kl"], tokens)
    return None


class Values:
    """Metric values of a section's rows for one experiment: per seed (:meth:`estimates`) or their mean."""

    def __init__(self, plan: Plan, exp: Experiment, table: str, results, seed: int | None = None):
        self.plan, self.exp, self.table, self.results = plan, exp, table, results
        self.kind = TABLE_KINDS[table]
        self.seed = seed     # one seed's values, or (None) every seed of the experiment

    def runs(self, sec: Section, row: Row) -> list[Run]:
        runs = self.plan.runs_of(self.exp, sec.dataset, [row])
        return [r for r in runs if self.seed is None or r.seed == self.seed]

    def file(self, run: Run) -> str:
        return run.eval_json if self.kind == "lm" else run.probe_json(self.kind)

    def submetrics(self, metric: str, sec: Section, rows: list[Row]) -> list[str]:
        """``linear.*`` → every label count the runs report; ``linear.max`` → the largest one."""
        if not metric.endswith((".*", ".max")):
            return [metric]
        head = metric.rsplit(".", 1)[0]
        keys: list[str] = []
        for row in rows:
            for run in self.runs(sec, row):
                data = self.results.json(self.file(run))
                if data is None:
                    raise Missing("not run", f"`{self.file(run)}` {self.results.why_missing(self.file(run))}")
                node = data.get(head)
                if not isinstance(node, dict) or not node:
                    raise Missing("missing value", f"`{self.file(run)}` has no {head}")
                keys += [k for k in node if k not in keys]
        keys.sort(key=lambda k: float(k) if k.replace(".", "", 1).isdigit() else k)
        return [f"{head}.{k}" for k in (keys[-1:] if metric.endswith(".max") else keys)]

    def estimates(self, sec: Section, row: Row, metric: str) -> dict[int, Estimate]:
        """seed → the row's estimate of ``metric`` on that seed."""
        keys = metric.split(".")
        if keys == ["gmm"]:
            keys = ["gmm", "accuracy"]
        elif keys == ["gmm_best"]:
            keys = ["gmm", "best_of_inits_accuracy"]
        value_of, se_of = getter_of(*keys), se_getter_of(*keys)
        out = {}
        for run in self.runs(sec, row):
            data = self.results.json(self.file(run))
            if data is None:
                raise Missing("not run", f"{label(row)}: `{self.file(run)}` "
                                         f"{self.results.why_missing(self.file(run))}")
            v = value_of(data)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise Missing("missing value", f"{label(row)}: `{self.file(run)}` has no {metric}")
            if not math.isfinite(v):
                self.results.problems.setdefault(self.file(run), f"{metric} is {v}")
                raise Missing("missing value", f"{label(row)}: `{self.file(run)}` has {metric} = {v}")
            se = se_of(data) if se_of else None
            out[run.seed] = Estimate(float(v), float(se) if isinstance(se, (int, float)) else 0.0,
                                     influence(data, metric))
        if not out:
            raise Missing("not run", f"{label(row)}: no runs")
        return out

    def value(self, sec: Section, row: Row, metric: str) -> float:
        """The mean over the seeds."""
        ests = self.estimates(sec, row, metric)
        return sum(e.value for e in ests.values()) / len(ests)


def metric_name(metric: str) -> str:
    head, _, tail = metric.partition(".")
    if head == "linear":
        return f"linear acc. ({tail} labels)"
    if head == "converged":
        return f"converged-probe acc. ({tail} labels)"
    return METRIC_NAMES.get(metric, metric)


DECIMALS = {"au": 0, "pcc": 3, "gmm": 1, "gmm_best": 1, "linear": 1, "converged": 1}   # as the tables print them


def fmt_value(metric: str, v: float, signed: bool = False) -> str:
    decimals = DECIMALS.get(metric.partition(".")[0], 2)
    sign = "+" if signed else ""
    if decimals and v != 0 and abs(v) < 0.1:
        text = f"{v:{sign}.2g}"      # a KL of 0.003 stays visible
    else:
        text = f"{v:{sign}.{decimals}f}"
    return text.replace("-", "−") if signed else text


# ----------------------------------------------------------------------------------------------------------
# deciding
# ----------------------------------------------------------------------------------------------------------

def decide(op: str, delta: float, se: float) -> tuple[str, float, float]:
    """The verdict on "Δ op 0" with Δ's 95 % interval: ``(status, low, high)``."""
    lo, hi = delta - Z95 * se, delta + Z95 * se
    worst, best = (hi, lo) if op in ("<", "<=") else (lo, hi)
    if OPS[op](worst, 0.0):
        return "holds", lo, hi
    if not OPS[op](best, 0.0):
        return "fails", lo, hi
    return "within noise", lo, hi


def difference(a: dict[int, Estimate], b: dict[int, Estimate], factor: float, offset: float
               ) -> tuple[float, float, str]:
    """Δ = a − (factor · b + offset), the mean over the seeds both rows have, with its SE and how it was had."""
    seeds = [s for s in a if s in b] or None
    if seeds is None:                     # no common seed: compare the means over each row's own seeds
        ma = sum(e.value for e in a.values()) / len(a)
        mb = sum(e.value for e in b.values()) / len(b)
        se_a = math.sqrt(sum(e.se ** 2 for e in a.values())) / len(a)
        se_b = math.sqrt(sum(e.se ** 2 for e in b.values())) / len(b)
        return ma - factor * mb - offset, math.hypot(se_a, factor * se_b), "unpaired"
    deltas, ses, paired = [], [], True
    for s in seeds:
        ea, eb = a[s], b[s]
        deltas.append(ea.value - factor * eb.value - offset)
        if ea.influence is not None and eb.influence is not None and len(ea.influence) == len(eb.influence) > 1:
            d = ea.influence - factor * eb.influence
            ses.append(float(d.std(ddof=1) / math.sqrt(len(d))))
        else:
            paired = False
            ses.append(math.hypot(ea.se, factor * eb.se))
    n = len(deltas)
    within = math.sqrt(sum(x * x for x in ses)) / n
    how = "paired" if paired else "unpaired"
    if n > 1:
        seed_se = float(np.std(deltas, ddof=1) / math.sqrt(n))
        return float(np.mean(deltas)), math.hypot(within, seed_se), f"{how}, {n} seeds"
    return deltas[0], within, how


# ----------------------------------------------------------------------------------------------------------
# evaluating
# ----------------------------------------------------------------------------------------------------------

def rows_or_missing(sec: Section, pattern: str, table: str) -> list[Row]:
    rows = match_rows(sec, pattern)
    if not rows:
        raise Missing("not run", f"no row `{pattern}` in this experiment's {table}")
    return rows


def check(values: Values, sec: Section, chk: dict, metric_map: dict | None = None) -> list[tuple[str, str]]:
    """Every comparison a check makes, as (status, evidence). ``metric_map`` swaps a metric's head (the
    converged probe's metrics for the SPEC probe's)."""
    op = chk["op"]
    lhs_rows = rows_or_missing(sec, chk["row"], values.table)
    other = chk.get("than")
    other_rows = []
    if other:
        for pattern in other["rows"]:
            other_rows += [r for r in match_rows(sec, pattern) if r not in other_rows]
        if not other_rows:
            raise Missing("not run", f"none of {', '.join(other['rows'])} in this experiment's {values.table}")
    metric = chk["metric"]
    if metric_map:
        head, dot, tail = metric.partition(".")
        metric = metric_map.get(head, head) + dot + tail
    out = []
    for metric in values.submetrics(metric, sec, lhs_rows + other_rows):
        name = metric_name(metric)
        for row in lhs_rows:
            if not other:                                   # a threshold: exact, on the mean
                v = values.value(sec, row, metric)
                bound = chk["value"] if "value" in chk else chk["lam_factor"] * row.lam
                what = f"{bound:g}" if "value" in chk else f"{chk['lam_factor']:g}λ = {fmt_value(metric, bound)}"
                out.append(("holds" if OPS[op](v, bound) else "fails",
                            f"{label(row)} {name} {fmt_value(metric, v)} {OP_TEXT[op]} {what}"))
                continue
            if other.get("pair") == "lam":
                peers = [r for r in other_rows if r.lam == row.lam]
                if not peers:
                    continue
            else:
                peers = [r for r in other_rows if r != row]
            mine = values.estimates(sec, row, metric)
            v = sum(e.value for e in mine.values()) / len(mine)
            pv = [(r, values.value(sec, r, metric)) for r in peers]
            agg = other.get("agg", "each")
            if agg in ("min", "max"):
                pv = [(min if agg == "min" else max)(pv, key=lambda t: t[1])]
            factor, offset = chk.get("factor", 1), chk.get("offset", 0)
            for peer, p in pv:
                scale = f"{factor:g} × " if factor != 1 else ""
                shift = f" {'+' if offset > 0 else '−'} {abs(offset):g}" if offset else ""
                best = f" ({agg} of {len(peers)})" if agg in ("min", "max") and len(peers) > 1 else ""
                delta, se, how = difference(mine, values.estimates(sec, peer, metric), factor, offset)
                status, lo, hi = decide(op, delta, se)
                interval = (f"Δ {fmt_value(metric, delta, True)}, 95 % [{fmt_value(metric, lo, True)}, "
                            f"{fmt_value(metric, hi, True)}], {how}" if se > 0 else
                            f"Δ {fmt_value(metric, delta, True)}, no uncertainty recorded")
                out.append((status, f"{label(row)} {name} {fmt_value(metric, v)} {OP_TEXT[op]} {scale}"
                                    f"{label(peer)}{best} {fmt_value(metric, p)}{shift} ({interval})"))
    if not out:
        raise Missing("not run", f"no {chk['row']} row has a peer of the same λ in this experiment's {values.table}")
    return out


def sections_of(plan: Plan, exp: Experiment, claim: dict) -> list[Section]:
    table = claim["table"]
    if table not in plan.table_names(exp):     # not in params.yaml, or not one of the experiment's tables
        return []
    wanted = set(claim.get("datasets") or [])
    return [s for s in plan.sections(exp, table) if not wanted or wanted & set(s.paper_datasets)]


def overall(statuses: list[str]) -> str:
    return "fails" if "fails" in statuses else "within noise" if "within noise" in statuses else "holds"


def judge(plan: Plan, exp: Experiment, results, claim: dict, sec: Section, metric_map: dict | None = None
          ) -> tuple[str, list[str]]:
    """One claim on one section: (status, evidence, failing comparisons first). Raises :class:`Missing`."""
    comparisons = []
    values = Values(plan, exp, claim["table"], results)
    for chk in claim["checks"]:
        comparisons += check(values, sec, chk, metric_map)
    seeds = list(exp.seeds)
    thresholds = [c for c in claim["checks"] if "than" not in c]
    if len(seeds) > 1 and thresholds:          # a threshold must also hold for each seed alone
        for seed in seeds:
            one = Values(plan, exp, claim["table"], results, seed)
            for chk in thresholds:
                comparisons += [(s, f"seed {seed}: {e}") for s, e in check(one, sec, chk, metric_map)]
    order = {"fails": 0, "within noise": 1, "holds": 2}
    status = overall([s for s, _ in comparisons])
    shown = [e for s, e in sorted(comparisons, key=lambda c: order[c[0]])
             if s != "holds" or not e.startswith("seed ")]
    if len(seeds) > 1 and thresholds and not any(s == "fails" for s, e in comparisons if e.startswith("seed ")):
        shown.append(f"thresholds hold for each of the {len(seeds)} seeds")
    if len(seeds) == 1 and len(thresholds) < len(claim["checks"]):
        shown.append("one seed: seed variation not measured (within-run errors only)")
    return status, shown


def evaluate(plan: Plan, exp: Experiment, results, claims: list[dict] | None = None) -> list[Verdict]:
    """One verdict per claim and section of its table."""
    out = []
    for claim in claims_for(exp.name) if claims is None else claims:
        if claim["table"] not in TABLE_KINDS:
            raise ConfigError(f"paper_claims.yaml: claim {claim.get('id')!r}: unknown table {claim['table']!r}")
        secs = sections_of(plan, exp, claim)
        if not secs:
            out.append(Verdict(claim, "—", "not run", [f"{claim['table']} is not part of this experiment"]))
            continue
        for sec in secs:
            try:
                status, evidence = judge(plan, exp, results, claim, sec)
            except Missing as exc:
                out.append(Verdict(claim, sec.dataset, exc.status, [exc.why]))
                continue
            if TABLE_KINDS[claim["table"]] == "classify":
                evidence += converged_note(plan, exp, results, claim, sec, status)
            out.append(Verdict(claim, sec.dataset, status, evidence))
    return out


def converged_note(plan: Plan, exp: Experiment, results, claim: dict, sec: Section, status: str) -> list[str]:
    """The classification claim on the converged probe (and the best-likelihood GMM), as evidence."""
    try:
        other, evidence = judge(plan, exp, results, claim, sec, CONVERGED)
    except Missing as exc:
        return [f"converged probe: {exc.status} ({exc.why})"]
    agree = "the two probes agree" if other == status else f"the probes disagree: the SPEC recipe's verdict is {status}"
    return [f"converged probe: {other} ({agree}); {evidence[0]}"]


# ----------------------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------------------

def summary(verdicts: list[Verdict]) -> str:
    counts = {s: sum(v.status == s for v in verdicts) for s in MARK}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def section_markdown(verdicts: list[Verdict], dataset_names: dict, heading: str = "##") -> str:
    from textvae.core.markdown import md_escape
    from textvae.reports.formatting import md_table

    lines = []
    for title, keep in (("The paper's claims", False), ("This experiment's acceptance checks", True)):
        vs = [v for v in verdicts if bool(v.claim.get("acceptance")) == keep]
        if not vs:
            continue
        body = []
        for v in vs:
            where = v.claim["table"].replace("table", "Table ") if v.claim["table"].startswith("table") \
                else v.claim["table"]
            link = f"[{where}]({v.claim['table']}.md)"
            data = dataset_names.get(v.section, v.section)
            evidence = "; ".join(md_escape(e) for e in v.evidence[:6])
            if len(v.evidence) > 6:
                evidence += f"; … ({len(v.evidence) - 6} more)"
            body.append([md_escape(v.claim["text"]), f"{link}, {data}", MARK[v.status], evidence])
        lines += [f"{heading} {title} ({summary(vs)})", "",
                  md_table(["Claim", "Table, data", "Verdict", "Numbers that decided it"], body,
                           ["left", "left", "left", "left"]), ""]
    return "\n".join(lines)
