"""The paper's claims, checked on an experiment's results (``paper_claims.yaml``).

Each claim is a list of checks on the rows of one table (see the YAML's header for the form). A claim is
evaluated on every section (dataset) of its table that the experiment runs, and gets one verdict per section:

- ``holds``: every comparison it makes is true;
- ``fails``: at least one is false (the false ones are listed first);
- ``not run``: a row it needs is not in the experiment's table, or a result file is missing;
- ``missing value``: the result files exist but lack the metric it reads.

Values are the mean over the experiment's seeds, as in the tables.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from functools import lru_cache

from textvae.core.errors import ConfigError
from textvae.modeling.methods import parse_lam
from textvae.plan.pipeline import Plan
from textvae.plan.tables import TABLE_KINDS, claims_for
from textvae.plan.runs import Experiment, Row, Run, Section

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
OP_TEXT = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
MARK = {"holds": "✅ holds", "fails": "❌ fails", "not run": "⏳ not run", "missing value": "❔ missing value"}
METRIC_NAMES = {"ppl": "PPL", "nll": "NLL", "rec": "Recon", "kl": "KL", "au": "AU", "mi": "MI",
                "neg_elbo": "−ELBO", "bleu": "BLEU", "pcc": "PCC", "gmm": "GMM acc."}


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


# ----------------------------------------------------------------------------------------------------------
# reading values
# ----------------------------------------------------------------------------------------------------------

def label(row: Row) -> str:
    from textvae.reports.formatting import row_label

    return row_label(row).lstrip("+ ")


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


class Values:
    """Metric values of a section's rows for one experiment (mean over seeds)."""

    def __init__(self, plan: Plan, exp: Experiment, table: str, results, seed: int | None = None):
        self.plan, self.exp, self.table, self.results = plan, exp, table, results
        self.kind = TABLE_KINDS[table]
        self.seed = seed     # one seed's values, or (None) the mean over the experiment's seeds

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

    def value(self, sec: Section, row: Row, metric: str) -> float:
        runs = self.runs(sec, row)
        values = []
        for run in runs:
            data = self.results.json(self.file(run))
            if data is None:
                raise Missing("not run", f"{label(row)}: `{self.file(run)}` "
                                         f"{self.results.why_missing(self.file(run))}")
            node = data
            for key in metric.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict) and "accuracy" in node:   # the GMM record
                node = node["accuracy"]
            if not isinstance(node, (int, float)):
                raise Missing("missing value", f"{label(row)}: `{self.file(run)}` has no {metric}")
            if not math.isfinite(node):
                self.results.problems.setdefault(self.file(run), f"{metric} is {node}")
                raise Missing("missing value", f"{label(row)}: `{self.file(run)}` has {metric} = {node}")
            values.append(float(node))
        if not values:
            raise Missing("not run", f"{label(row)}: no runs")
        return sum(values) / len(values)


def metric_name(metric: str) -> str:
    head, _, tail = metric.partition(".")
    if head == "linear":
        return f"linear acc. ({tail} labels)"
    return METRIC_NAMES.get(metric, metric)


DECIMALS = {"au": 0, "pcc": 3, "gmm": 1, "linear": 1}   # as the tables print them; 2 otherwise


def fmt_value(metric: str, v: float) -> str:
    decimals = DECIMALS.get(metric.partition(".")[0], 2)
    if decimals and v != 0 and abs(v) < 0.1:
        return f"{v:.2g}"      # a KL of 0.003 stays visible
    return f"{v:.{decimals}f}"


# ----------------------------------------------------------------------------------------------------------
# evaluating
# ----------------------------------------------------------------------------------------------------------

def rows_or_missing(sec: Section, pattern: str, table: str) -> list[Row]:
    rows = match_rows(sec, pattern)
    if not rows:
        raise Missing("not run", f"no row `{pattern}` in this experiment's {table}")
    return rows


def check(values: Values, sec: Section, chk: dict) -> list[tuple[bool, str]]:
    """Every comparison a check makes, as (true?, evidence)."""
    op = chk["op"]
    lhs_rows = rows_or_missing(sec, chk["row"], values.table)
    other = chk.get("than")
    other_rows = []
    if other:
        for pattern in other["rows"]:
            other_rows += [r for r in match_rows(sec, pattern) if r not in other_rows]
        if not other_rows:
            raise Missing("not run", f"none of {', '.join(other['rows'])} in this experiment's {values.table}")
    out = []
    for metric in values.submetrics(chk["metric"], sec, lhs_rows + other_rows):
        name = metric_name(metric)
        for row in lhs_rows:
            v = values.value(sec, row, metric)
            if "value" in chk or "lam_factor" in chk:
                bound = chk["value"] if "value" in chk else chk["lam_factor"] * row.lam
                what = f"{bound:g}" if "value" in chk else f"{chk['lam_factor']:g}λ = {fmt_value(metric, bound)}"
            else:
                if other.get("pair") == "lam":
                    peers = [r for r in other_rows if r.lam == row.lam]
                    if not peers:
                        continue
                else:
                    peers = [r for r in other_rows if r != row]
                pv = [(r, values.value(sec, r, metric)) for r in peers]
                agg = other.get("agg", "each")
                if agg in ("min", "max"):
                    pick = (min if agg == "min" else max)(pv, key=lambda t: t[1])
                    pv = [pick]
                for peer, p in pv:
                    bound = chk.get("factor", 1) * p + chk.get("offset", 0)
                    scale = f"{chk['factor']:g} × " if chk.get("factor", 1) != 1 else ""
                    shift = f" {'+' if chk.get('offset', 0) > 0 else '−'} {abs(chk['offset']):g}" \
                        if chk.get("offset") else ""
                    best = f" ({agg} of {len(peers)})" if agg in ("min", "max") and len(peers) > 1 else ""
                    ok = OPS[op](v, bound)
                    out.append((ok, f"{label(row)} {name} {fmt_value(metric, v)} {OP_TEXT[op]} {scale}"
                                    f"{label(peer)}{best} {fmt_value(metric, p)}{shift}"))
                continue
            out.append((OPS[op](v, bound), f"{label(row)} {name} {fmt_value(metric, v)} {OP_TEXT[op]} {what}"))
    if not out:
        raise Missing("not run", f"no {chk['row']} row has a peer of the same λ in this experiment's {values.table}")
    return out


def sections_of(plan: Plan, exp: Experiment, claim: dict) -> list[Section]:
    table = claim["table"]
    if table not in plan.table_names(exp):     # not in params.yaml, or not one of the experiment's tables
        return []
    wanted = set(claim.get("datasets") or [])
    return [s for s in plan.sections(exp, table) if not wanted or wanted & set(s.paper_datasets)]


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
        # the mean over seeds decides, and with several seeds the claim must also hold for each seed alone
        per_seed = [None] + (list(exp.seeds) if len(exp.seeds) > 1 else [])
        for sec in secs:
            comparisons = []
            try:
                for seed in per_seed:
                    values = Values(plan, exp, claim["table"], results, seed)
                    tag = "" if seed is None else f"seed {seed}: "
                    for chk in claim["checks"]:
                        comparisons += [(ok, tag + e) for ok, e in check(values, sec, chk)]
            except Missing as exc:
                out.append(Verdict(claim, sec.dataset, exc.status, [exc.why]))
                continue
            failed = [e for ok, e in comparisons if not ok]
            shown = [e for ok, e in comparisons if ok and not e.startswith("seed ")]
            if len(per_seed) > 1 and not failed:
                shown.append(f"holds for each of the {len(per_seed) - 1} seeds")
            out.append(Verdict(claim, sec.dataset, "fails" if failed else "holds", failed + shown))
    return out


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
