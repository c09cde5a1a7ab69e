"""Reports: the paper's Tables 1-11 and Appendix B as markdown with the paper's numbers beside ours, the
figures (PPL-Recon trade-off across λ, KL/MI/AU training curves) and an index.

``textvae report ITEM --params params.yaml --experiment paper --out reports/ITEM.md`` where ITEM is
``table1`` … ``table11``, ``appendix_b``, ``fig_tradeoff_DATASET``, ``fig_curves_DATASET`` or ``index``
(``all`` writes every item of the experiment into its report directory).

The :class:`Reporter` holds what every page shares (the plan, the results read, notes, the settings block);
each table kind of the registry (:data:`textvae.plan.tables.TABLES`) has its renderer, in :data:`RENDERERS`
(:mod:`textvae.reports.lm_tables`, :mod:`textvae.reports.probe_tables`); the index and the claims page are in
:mod:`textvae.reports.pages`.

Which runs a table shows comes from params.yaml through :mod:`textvae.plan.pipeline` (the same plan the Snakefile
and dvc.yaml run). Results are read from the run directories (``eval_test.json``, ``probe_NAME.json``,
``metrics.jsonl``); a run that is missing is named under the table, never filled in. With several seeds a
cell is ``mean ± std`` (sample std over seeds); with one, ``value ± SE``, the run's own standard error (test
sentences, bootstraps, repeats: :mod:`textvae.evaluation.uncertainty`). The paper's numbers (``paper_reference.yaml``) are shown only
when the experiment runs on the paper's datasets; on the embedded corpus the numbers would not be comparable.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from textvae.core.errors import ConfigError
from textvae.core.markdown import md_escape
from textvae.core.rundir import atomic_write_text
from textvae.modeling.methods import fmt_lam
from textvae.plan.pipeline import Plan
from textvae.plan.runs import Experiment, Row, Run, Section
from textvae.config.knobs import train_defaults
from textvae.config.settings import PARAMS, load_params, resolve_train
from textvae.plan.tables import TABLE_KINDS, TABLES
from textvae.reports import lm_tables, pages, probe_tables
from textvae.reports.formatting import (DATASET_NAMES, Results, diff, fmt, getter_of, md_table, reference,  # noqa: F401
                                        row_label, se_getter_of, short_label, stat_of)

# SPEC §1.1: the paper's split sizes
PAPER_SPLITS = {"ptb": (42068, 3370, 3761), "snli": (100000, 10000, 10000), "yahoo": (100000, 10000, 10000),
                "yelp": (100000, 10000, 10000)}

# the one map from a table's kind (textvae.plan.tables) to its renderer: f(reporter, table) → markdown body
RENDERERS = {
    "lm": lm_tables.lm_table, "sizes": lm_tables.sizes_table,
    "bleu": probe_tables.bleu_table, "smoothness": probe_tables.smoothness_table, "noisy": probe_tables.noisy_table,
    "classify": probe_tables.classify_table, "interpolate": probe_tables.interpolation_table,
    "copy": probe_tables.copy_table,
}


# ----------------------------------------------------------------------------------------------------------
# the report builder
# ----------------------------------------------------------------------------------------------------------

class Reporter:
    def __init__(self, plan: Plan, exp: Experiment, root: str | Path = "."):
        self.plan, self.exp = plan, exp
        self.root = Path(root)
        self.results = Results(root)
        self.notes: list[str] = []
        self.datasets_seen: list[str] = []
        self._paper_columns = True

    @property
    def paper(self) -> bool:
        return self.exp.compares_to_paper

    @contextmanager
    def without_paper(self):
        """Tables rendered inside have no paper and Δ columns (a probe the paper did not run)."""
        self._paper_columns = False
        try:
            yield
        finally:
            self._paper_columns = True

    def runs(self, dataset: str, row: Row) -> list[Run]:
        return self.plan.runs_of(self.exp, dataset, [row])

    # ------------------------------------------------------------------ cells
    def metric_cells(self, runs: list[Run], file_of, keys: tuple, paper_value, decimals: int) -> list[str]:
        """The cell of the metric at ``keys`` of each run's result file (± its uncertainty), and with the paper
        column its paper value and Δ."""
        st = stat_of(self.results, runs, file_of, getter_of(*keys), se_getter_of(*keys))
        cells = [st.text(decimals)]
        if self.paper and self._paper_columns:
            cells += [fmt(paper_value, decimals) if paper_value is not None else "—", diff(st, paper_value, decimals)]
        return cells

    def headers(self, names: list[str]) -> list[str]:
        if not (self.paper and self._paper_columns):
            return names
        out = []
        for n in names:
            out += [n, f"{n} (paper)", "Δ"]
        return out

    # ------------------------------------------------------------------ page parts
    def section_title(self, sec: Section) -> str:
        name = DATASET_NAMES.get(sec.dataset, sec.dataset)
        if not self.paper:
            stands = ", ".join(DATASET_NAMES.get(d, d) for d in sec.paper_datasets)
            return f"### {name} (in place of {stands})\n\n"
        return f"### {name}\n\n"

    def data_notes(self) -> list[str]:
        out = []
        for ds in dict.fromkeys(self.datasets_seen):
            path = self.root / "data" / ds / "stats.json"
            if not path.exists():
                out.append(f"- {DATASET_NAMES.get(ds, ds)}: `data/{ds}/stats.json` missing (data not prepared)")
                continue
            stats = json.loads(path.read_text())
            splits = stats.get("splits") or {}
            sizes = tuple(int((splits.get(s) or {}).get("examples", 0)) for s in ("train", "valid", "test"))
            line = (f"- {DATASET_NAMES.get(ds, ds)}: train / valid / test = "
                    + " / ".join(f"{n:,}" for n in sizes))
            paper = PAPER_SPLITS.get(ds)
            if paper and sizes != paper:
                line += " (paper: " + " / ".join(f"{n:,}" for n in paper) + ")"
            if stats.get("substitute"):
                sub = stats["substitute"]
                line += f"; **differs from the paper's data**: {sub if isinstance(sub, str) else json.dumps(sub)}"
            elif stats.get("description") and ds not in PAPER_SPLITS:
                line += f"; {stats['description']}"
            if stats.get("downsample"):
                down = stats["downsample"]
                line += (f"; downsampled (seed {stats.get('seed')}) to at most "
                         + " / ".join(f"{down[s]:,}" for s in ("train", "valid", "test") if s in down))
            if (stats.get("source") or {}).get("kind") == "local" and stats.get("files"):
                line += "; sha256 " + ", ".join(f"{role}.txt {f['sha256'][:12]}…"
                                                for role, f in stats["files"].items() if "." not in role)
            out.append(line)
        return out

    def settings(self) -> str:
        p = self.plan.params
        lines = ["## Settings", ""]
        lines.append(f"- experiment `{self.exp.name}`; seeds {list(self.exp.seeds)}"
                     + (" (cells: mean ± std over seeds)" if len(self.exp.seeds) > 1 else " (single run per row, "
                        "as the paper; ± is the run's own standard error: over test sentences, by bootstrap or over "
                        "repeats; seed variation not measured)"))
        if not self.paper:
            name = DATASET_NAMES.get(self.exp.dataset)
            lines.append("- every dataset replaced by " + (f"the {name} (`{self.exp.dataset}`)" if name else
                                                           f"`{self.exp.dataset}`")
                         + "; no paper column: the numbers are not comparable with the paper's")
            if self.exp.lams:
                lines.append(f"- λ of every row snapped to the nearest of {[fmt_lam(x) for x in self.exp.lams]}")
        ks = sorted(self.results.iw_samples)
        datasets = list(dict.fromkeys(self.datasets_seen))
        cfg_k = sorted({self.plan.section("evaluation", d).get("iw_samples") for d in datasets} - {None})
        lines.append(f"- IW samples K = {', '.join(map(str, ks or cfg_k)) or '—'}"
                     + ("" if not self.paper else " (paper: 1000)"))
        lines.append(f"- device: {', '.join(sorted(self.results.devices)) or 'unknown (no results read)'}")
        for d in datasets:
            over = self.plan.datasets[d].get("training")
            if over:
                lines.append(f"- {DATASET_NAMES.get(d, d)} training overrides: "
                             + ", ".join(f"{k}={v}" for k, v in sorted(over.items())))
                lines.append(f"- {DATASET_NAMES.get(d, d)} budgets: {self.budgets(d)}")
            ev = self.plan.datasets[d].get("evaluation") or {}
            if ev.get("max_examples"):
                lines.append(f"- {DATASET_NAMES.get(d, d)}: every test metric on the first {ev['max_examples']:,} "
                             f"test sentences (paper: the whole test set)")
        lines.append("- training: " + ", ".join(f"{k}={v}" for k, v in (p.get("training") or {}).items()))
        lines.append("- SPEC choices: " + ", ".join(f"{k}={v}" for k, v in (p.get("spec_choices") or {}).items()))
        data = self.data_notes()
        if data:
            lines += ["", "Data:", ""] + data
        return "\n".join(lines)

    def budgets(self, dataset: str) -> str:
        """Training budget per method on a dataset with overrides (resolved as ``textvae train`` gets them):
        epochs (at most; the lr-decay rule may stop a run earlier) and, where capped, the training sentences."""
        per_method = (self.plan.datasets[dataset].get("training") or {}).get("methods") or {}
        groups: dict[str, list[str]] = {}
        for method in [*per_method, None]:
            m = {**train_defaults(), **resolve_train(self.plan.params, dataset, method, self.plan.params_path)[0]}
            if method is None:   # a method without overrides of its own
                epochs = m["max_epochs"]
                break
            text = f"{m['max_epochs']} epoch{'s' if m['max_epochs'] != 1 else ''}"
            if m.get("max_train"):
                text += f" on the first {int(m['max_train']):,} training sentences"
            groups.setdefault(text, []).append(short_label(Row(method)))
        parts = [f"{', '.join(names)}: {text}" for text, names in groups.items()]
        parts.append(f"every other row: {epochs} epoch{'s' if epochs != 1 else ''}")
        return "; ".join(parts)

    def missing_block(self) -> str:
        miss = list(dict.fromkeys(self.results.missing))
        bad = self.results.problems
        out = []
        if miss:
            head = (f"**{len(miss)} result file{'s' if len(miss) > 1 else ''} missing** (shown as —; run the "
                    "pipeline to produce them):")
            out += [head, ""] + [f"- `{m}`" for m in miss]
        if bad:
            head = (f"**{len(bad)} result file{'s' if len(bad) > 1 else ''} not used** (shown as — or left out of "
                    "the mean; rerun the job that writes it):")
            out += ([""] if out else []) + [head, ""] + [f"- `{rel}`: {md_escape(why)}" for rel, why in bad.items()]
        return "\n".join(out)

    # ------------------------------------------------------------------ items
    def table(self, table: str) -> str:
        kind = TABLE_KINDS[table]
        title = TABLES[table].title
        body = RENDERERS[kind](self, table)
        out = [f"# {title}", ""]
        if not self.paper:
            out += [f"Experiment `{self.exp.name}`: the paper's table, run on the "
                    f"{DATASET_NAMES.get(self.exp.dataset, self.exp.dataset)}.", ""]
        elif kind not in ("sizes",):
            out += ["Ours beside the paper's numbers; Δ = ours − paper.", ""]
        missing = self.missing_block()
        if missing:
            out += [missing, ""]
        out += [body, ""]
        if self.notes:
            out += ["Notes:", ""] + [f"- {n}" for n in dict.fromkeys(self.notes)] + [""]
        out += [self.settings(), ""]
        return "\n".join(out)

    def figure(self, item: str, out: Path) -> list[str]:
        """Draw one figure (:func:`textvae.reports.figures.draw`); return the result files that were missing."""
        from textvae.reports.figures import draw

        return draw(self, item, out)

# ----------------------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------------------

def render(plan: Plan, exp: Experiment, item: str, out: Path, root: str | Path = ".") -> list[str]:
    """Write one report item; return the result files that were missing."""
    items = [i.rsplit(".", 1)[0] for i in plan.report_items(exp)]
    if item not in items:
        raise ConfigError(f"experiment {exp.name!r} has no report {item!r}; it has {', '.join(items)}")
    rep = Reporter(plan, exp, root)
    if item.startswith("fig_"):
        return rep.figure(item, out)
    text = pages.index(rep) if item == "index" else pages.claims_page(rep) if item == "claims" else rep.table(item)
    atomic_write_text(text, out)
    return list(dict.fromkeys(rep.results.missing)) + list(rep.results.problems)


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="render tables, figures and the index of an experiment",
                              description="Render a report page from the run results (docs/pipeline.md).")
    p.add_argument("item", help="table1 … table11, appendix_b, fig_tradeoff_DATASET, fig_curves_DATASET, claims, "
                   "index, or all")
    p.add_argument("--params", default=PARAMS, help="parameters file (default params.yaml)")
    p.add_argument("--experiment", default="paper", help="experiment of params.yaml (default paper)")
    p.add_argument("--out", help="output file (default: the experiment's report directory); a directory for all")
    p.add_argument("--root", default=".", help="directory holding data/ and results/ (default .)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    plan = Plan(load_params(args.params), args.params)
    exp = plan.experiment(args.experiment)
    items = [i for i in plan.report_items(exp)] if args.item == "all" else None
    if items is None:
        item = args.item
        suffix = ".png" if item.startswith("fig_") else ".md"
        out = Path(args.out) if args.out else Path(exp.report_dir) / (item + suffix)
        missing = render(plan, exp, item, out, args.root)
        note = f" ({len(missing)} result files missing or not used)" if missing else ""
        print(f"wrote {out}{note}")
        return 0
    out_dir = Path(args.out) if args.out else Path(exp.report_dir)
    for item in items:
        stem = item.rsplit(".", 1)[0]
        missing = render(plan, exp, stem, out_dir / item, args.root)
        print(f"wrote {out_dir / item}" + (f" ({len(missing)} result files missing or not used)" if missing else ""))
    return 0
