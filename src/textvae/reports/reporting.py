"""Reports: the paper's Tables 1-11 and Appendix B as markdown with the paper's numbers beside ours, the
figures (PPL-Recon trade-off across λ, KL/MI/AU training curves) and an index.

``textvae report ITEM --params params.yaml --experiment paper --out reports/ITEM.md`` where ITEM is
``table1`` … ``table11``, ``appendix_b``, ``fig_tradeoff_DATASET``, ``fig_curves_DATASET`` or ``index``
(``all`` writes every item of the experiment into its report directory).

Which runs a table shows comes from params.yaml through :mod:`textvae.plan.pipeline` (the same plan the Snakefile
and dvc.yaml run). Results are read from the run directories (``eval_test.json``, ``probe_NAME.json``,
``metrics.jsonl``); a run that is missing is named under the table, never filled in. With several seeds a
cell is ``mean ± std`` (sample std over seeds). The paper's numbers (``paper_reference.yaml``) are shown only
when the experiment runs on the paper's datasets; on the embedded corpus the numbers would not be comparable.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from textvae.modeling import methods
from textvae.core.errors import ConfigError
from textvae.modeling.methods import fmt_lam
from textvae.plan.pipeline import Plan
from textvae.plan.tables import TABLE_KINDS, TABLES
from textvae.core.markdown import md_escape
from textvae.reports.formatting import DATASET_NAMES, Results, diff, fmt, getter_of, md_table, reference, row_label
from textvae.core.rundir import atomic_write_text
from textvae.plan.runs import Experiment, Row, Run, Section
from textvae.config.settings import PARAMS, load_params, run_training

# SPEC §1.1: the paper's split sizes
PAPER_SPLITS = {"ptb": (42068, 3370, 3761), "snli": (100000, 10000, 10000), "yahoo": (100000, 10000, 10000),
                "yelp": (100000, 10000, 10000)}

LM_COLUMNS = {  # key: (header, decimals)
    "nll": ("NLL", 2), "ppl": ("PPL", 2), "rec": ("Recon", 2), "mi": ("MI", 2), "au": ("AU", 0),
    "neg_elbo": ("-ELBO", 2), "elbo_ppl": ("ELBO PPL", 2), "kl": ("KL", 2),
}
FIGURE_TITLES = {"tradeoff": "PPL against Recon across λ", "curves": "validation KL, MI and AU per epoch"}


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

    @property
    def paper(self) -> bool:
        return self.exp.compares_to_paper

    def runs(self, dataset: str, row: Row) -> list[Run]:
        return self.plan.runs_of(self.exp, dataset, [row])

    # ------------------------------------------------------------------ cells
    def metric_cells(self, runs: list[Run], file_of, getter, paper_value, decimals: int) -> list[str]:
        st = self.results.stat(runs, file_of, getter)
        cells = [st.text(decimals)]
        if self.paper:
            cells += [fmt(paper_value, decimals) if paper_value is not None else "—", diff(st, paper_value, decimals)]
        return cells

    def headers(self, names: list[str]) -> list[str]:
        if not self.paper:
            return names
        out = []
        for n in names:
            out += [n, f"{n} (paper)", "Δ"]
        return out

    # ------------------------------------------------------------------ table kinds
    def lm_table(self, table: str) -> str:
        columns = TABLES[table].columns
        ref = reference()["lm"]
        parts = []
        for sec in self.plan.sections(self.exp, table):
            self.datasets_seen.append(sec.dataset)
            body = []
            for row, prow in zip(sec.rows, sec.paper_rows):
                paper_ds = sec.paper_datasets[0]
                pref = ref.get(paper_ds, {}).get(prow.key, {}) if self.paper else {}
                label = row_label(row, table) + ("*" if pref.get("he_et_al") else "")
                cells = [label]
                if row.paper_only:
                    for c in columns:
                        cells += ["—", fmt(pref.get(c), LM_COLUMNS[c][1]) if c in pref else "—", ""]
                    body.append(cells)
                    continue
                runs = self.runs(sec.dataset, row)
                # what the paper reports for the AE (SPEC §3.10) and the LSTM-LM (no latent variable)
                shown = getattr(methods.METHODS.get(row.method), "shows", None) or columns
                for c in columns:
                    if c in shown:
                        cells += self.metric_cells(runs, lambda r: r.eval_json, getter_of(c), pref.get(c),
                                                   LM_COLUMNS[c][1])
                    else:
                        cells += ["—", "—", ""] if self.paper else ["—"]
                body.append(cells)
            header = ["Method"] + self.headers([LM_COLUMNS[c][0] for c in columns])
            parts.append(self.section_title(sec) + md_table(header, body))
            if self.paper and any(ref.get(sec.paper_datasets[0], {}).get(p.key, {}).get("he_et_al")
                                  for p in sec.paper_rows):
                self.notes.append("Rows marked * are He et al. (2019)'s published numbers in the paper (their MI is "
                                  "computed per batch, SPEC §5.4 variant H, not comparable with the other rows).")
            if any(r.paper_only for r in sec.rows):
                self.notes.append("+ cyclic (Liu et al. reported) is Liu et al.'s own published result; there is "
                                  "no run of ours for it.")
        return "\n\n".join(parts)

    def probe_table(self, table: str, probe: str) -> str:
        parts = []
        for sec in self.plan.sections(self.exp, table):
            self.datasets_seen.append(sec.dataset)
            ref_ds = reference()["classify" if probe == "classify" else "probes"].get(sec.paper_datasets[0], {})
            pref_ds = ref_ds if probe == "classify" else ref_ds.get(probe, {})
            body, header = [], ["Method"]
            if probe == "bleu":
                header += self.headers(["BLEU"])
            elif probe == "smoothness":
                header += self.headers(["PCC"])
            elif probe == "noisy":
                swaps = [str(k) for k in (self.plan.section("probing", sec.dataset).get("noisy") or {})
                         .get("swaps", [1, 2, 3, 4])]
                header += self.headers([f"{k} swap{'s' if k != '1' else ''}" for k in swaps])
            elif probe == "classify":
                labels = ["gmm"] + [str(n) for n in (self.plan.section("probing", sec.dataset).get("classify") or {})
                                    .get("labels", [100, 500, 1000, 2000, 10000])]
                header += self.headers(["0 (GMM)" if k == "gmm" else k for k in labels])
            for row, prow in zip(sec.rows, sec.paper_rows):
                runs = self.runs(sec.dataset, row)
                pr = pref_ds.get(prow.key) if self.paper else None
                cells = [row_label(row, table)]
                f = (lambda r: r.probe_json(probe))
                if probe == "bleu":
                    cells += self.metric_cells(runs, f, getter_of("bleu"), pr, 2)
                elif probe == "smoothness":
                    cells += self.metric_cells(runs, f, getter_of("pcc"), pr, 3)
                elif probe == "noisy":
                    for k in swaps:
                        cells += self.metric_cells(runs, f, getter_of("noisy_rec", k), (pr or {}).get(k), 2)
                elif probe == "classify":
                    for k in labels:
                        getter = getter_of("gmm", "accuracy") if k == "gmm" else getter_of("linear", k)
                        pv = None if pr is None else (pr["gmm"] if k == "gmm" else pr["linear"].get(k))
                        cells += self.metric_cells(runs, f, getter, pv, 1)
                body.append(cells)
            parts.append(self.section_title(sec) + md_table(header, body))
        if probe == "classify" and self.paper:
            self.notes.append("FBP and Ours use the λ the paper selected by average validation accuracy (FBP 9, "
                              "Ours 6); the paper's 0-label column is a GMM on the encoder means (SPEC §7.1).")
        return "\n\n".join(parts)

    def interpolation_table(self, table: str) -> str:
        ref = reference()["interpolate"]
        parts = []
        for sec in self.plan.sections(self.exp, table):
            self.datasets_seen.append(sec.dataset)
            for row, prow in zip(sec.rows, sec.paper_rows):
                runs = self.runs(sec.dataset, row)
                data = self.results.json(runs[0].probe_json("interpolate")) if runs else None
                ours: list[str] = []
                ts: list[float] = []
                if data and data.get("prior"):
                    path, t = data["prior"][0], data.get("t") or []
                    keep = [i for i, tv in enumerate(t) if abs(tv * 5 - round(tv * 5)) < 1e-6] or range(len(path))
                    ours, ts = [path[i] for i in keep], [t[i] if t else i for i in keep]
                paper_lines = ref.get(sec.paper_datasets[0], {}).get(prow.key, []) if self.paper else []
                n = max(len(ours), len(paper_lines))
                header = ["t", "ours"] + (["paper"] if self.paper else [])
                body = []
                for i in range(n):
                    t = f"{ts[i]:.1f}" if i < len(ts) else f"{i / max(n - 1, 1):.1f}"
                    cells = [t, md_escape(ours[i]) if i < len(ours) else "—"]
                    if self.paper:
                        cells.append(md_escape(paper_lines[i]) if i < len(paper_lines) else "—")
                    body.append(cells)
                seed = f", seed {runs[0].seed}" if runs else ""
                parts.append(f"#### {row_label(row, table)} ({DATASET_NAMES.get(sec.dataset, sec.dataset)}"
                             f"{seed})\n\n" + md_table(header, body, ["right"] + ["left"] * (len(header) - 1)))
        self.notes.append("Qualitative: greedy decoding along the line between two prior samples (the first of "
                          "the probe's pairs); the paper's sentences come from its own random samples.")
        return "\n\n".join(parts)

    def copy_table(self, table: str) -> str:
        ref = reference()["copy"]
        parts = []
        for sec in self.plan.sections(self.exp, table):
            self.datasets_seen.append(sec.dataset)
            pref = ref.get(sec.paper_datasets[0], {}) if self.paper else {}
            header = ["Method"] + self.headers(["mean edit distance to nearest training sentence"])
            body = []
            all_runs = []
            for row, prow in zip(sec.rows, sec.paper_rows):
                runs = self.runs(sec.dataset, row)
                all_runs += runs
                cells = [row_label(row, table)]
                cells += self.metric_cells(runs, lambda r: r.probe_json("copy"), getter_of("mean_min_edit"),
                                           pref.get(prow.method), 2)
                body.append(cells)
            cells = ["mean training sentence length (incl. </s>)"]
            cells += self.metric_cells(all_runs[:1], lambda r: r.probe_json("copy"), getter_of("mean_train_length"),
                                       pref.get("train_length"), 2)
            body.append(cells)
            parts.append(self.section_title(sec) + md_table(header, body))
        if self.paper:
            self.notes.append("The paper does not give the λ of its Appendix B model; params.yaml picks it.")
        return "\n\n".join(parts)

    def sizes_table(self, table: str) -> str:
        ref = reference()["sizes"]
        datasets = self.plan._table_datasets(self.exp, table)
        paper_of = {}
        for ds in self.plan.params["tables"][table]["datasets"]:
            paper_of.setdefault(self.exp.map_dataset(ds), ds)
        header = ["size"] + [h for ds in datasets for h in (self.headers([DATASET_NAMES.get(ds, ds)]))]
        body = []
        for label, keys in (("word embedding (enc / dec)", ("enc_emb", "dec_emb")),
                            ("encoder hidden", ("enc_hidden",)), ("decoder hidden", ("dec_hidden",)),
                            ("latent nz", ("nz",))):
            cells = [label]
            for ds in datasets:
                sizes = self.plan.datasets[ds]["sizes"]
                ours = " / ".join(str(sizes.get(k, 32 if k == "nz" else "—")) for k in keys)
                if self.paper:
                    pk = {"enc_emb": "emb", "enc_hidden": "enc_hidden", "dec_hidden": "dec_hidden"}.get(keys[0])
                    pv = ref.get(paper_of[ds], {}).get(pk) if pk else (32 if keys[0] == "nz" else None)
                    paper = "—" if pv is None else (f"{pv} / {pv}" if len(keys) == 2 else str(pv))
                    same = "" if pv is None else ("=" if ours == paper else "differs")
                    cells += [ours, paper, same]
                else:
                    cells.append(ours)
            body.append(cells)
        self.datasets_seen += datasets
        self.notes.append("Our sizes are the ones params.yaml gives each dataset (`datasets.NAME.sizes`); "
                          "1-layer LSTMs, nz = 32 (SPEC §2.3).")
        return md_table(header, body)

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
                        "as the paper)"))
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
        base = self.plan.section("training", dataset)
        per_method = (self.plan.datasets[dataset].get("training") or {}).get("methods") or {}
        groups: dict[str, list[str]] = {}
        for method in per_method:
            m = {**base, **run_training(self.plan.params, dataset, method)}
            text = f"{m['max_epochs']} epoch{'s' if m['max_epochs'] != 1 else ''}"
            if m.get("max_train"):
                text += f" on the first {int(m['max_train']):,} training sentences"
            groups.setdefault(text, []).append(row_label(Row(method)).lstrip("+ "))
        parts = [f"{', '.join(names)}: {text}" for text, names in groups.items()]
        epochs = int(base.get("max_epochs", 100))
        parts.append(f"every other row: {epochs} epoch{'s' if epochs != 1 else ''}")
        return "; ".join(parts)

    def missing_block(self) -> str:
        miss = list(dict.fromkeys(self.results.missing))
        if not miss:
            return ""
        head = (f"**{len(miss)} result file{'s' if len(miss) > 1 else ''} missing** (shown as —; run the "
                "pipeline to produce them):")
        return "\n".join([head, ""] + [f"- `{m}`" for m in miss])

    # ------------------------------------------------------------------ items
    def table(self, table: str) -> str:
        kind = TABLE_KINDS[table]
        title = TABLES[table].title
        if kind == "lm":
            body = self.lm_table(table)
        elif kind == "interpolate":
            body = self.interpolation_table(table)
        elif kind == "copy":
            body = self.copy_table(table)
        elif kind == "sizes":
            body = self.sizes_table(table)
        else:
            body = self.probe_table(table, kind)
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

    def claims_section(self, heading: str = "##") -> str:
        from textvae.reports import claims

        verdicts = claims.evaluate(self.plan, self.exp, self.results)
        return claims.section_markdown(verdicts, DATASET_NAMES, heading)

    def claims_page(self) -> str:
        out = [f"# The paper's claims: experiment `{self.exp.name}`", "",
               "Each claim of the paper (`src/textvae/plan/paper_claims.yaml`) checked on this experiment's results: "
               "holds, fails, not run (a run or row is missing) or missing value, with the numbers that decided "
               "it (mean over seeds) and the table they come from.", ""]
        body = self.claims_section()
        missing = self.missing_block()
        if missing:
            out += [missing, ""]
        return "\n".join(out + [body])

    def index(self) -> str:
        exp = self.exp
        lines = [f"# textvae reports: experiment `{exp.name}`", ""]
        if self.paper:
            lines += ["Our reproduction of Li et al. (EMNLP 2019), \"A Surprisingly Effective Fix for Deep Latent "
                      "Variable Modeling of Text\", beside the paper's numbers.", ""]
        else:
            lines += [f"The paper's tables and figures run on the "
                      f"{DATASET_NAMES.get(exp.dataset, exp.dataset)} (`{exp.dataset}`) with small settings; "
                      "there is no paper column (the numbers would not be comparable).", ""]
        if "claims.md" in self.plan.report_items(exp):
            lines += [self.claims_section(), "Details and every number: [claims.md](claims.md).", ""]
        lines += ["## Tables", ""]
        for item in self.plan.report_items(exp):
            stem = item.rsplit(".", 1)[0]
            if stem in TABLES:
                lines.append(f"- [{TABLES[stem].title}]({item})")
        figs = [i for i in self.plan.report_items(exp) if i.endswith(".png")]
        if figs:
            lines += ["", "## Figures", ""]
            for item in figs:
                _, fig_name, ds = item[:-4].split("_", 2)
                lines.append(f"- [{DATASET_NAMES.get(ds, ds)}: {FIGURE_TITLES[fig_name]}]({item})")
            lines += [""] + [f"![{i}]({i})" for i in figs]
        others = [e for e in self.plan.experiments.values() if e.name != exp.name]
        if others:
            lines += ["", "## Other experiments", ""]
            for o in others:
                rel = Path(o.report_dir).relative_to("reports") if o.report_dir != "reports" else Path(".")
                here = Path(exp.report_dir).relative_to("reports") if exp.report_dir != "reports" else Path(".")
                up = "../" * len(here.parts)
                lines.append(f"- [`{o.name}`]({up}{rel.as_posix() + '/' if str(rel) != '.' else ''}index.md)")
        p = self.plan.params
        used = {exp.map_dataset(d) for t in p.get("tables", {}).values() for d in t["datasets"]}
        overrides = [f"- {DATASET_NAMES.get(d, d)} overrides: " + "; ".join(
            f"{k} {json.dumps(v, separators=(',', ':'))}" for k, v in self.plan.datasets[d].items()
            if k in ("training", "evaluation", "probing")) for d in sorted(used)
            if any(k in self.plan.datasets[d] for k in ("training", "evaluation", "probing"))]
        lines += ["", "## Settings", "",
                  f"- seeds: {list(exp.seeds)}", *overrides,
                  "- evaluation: " + ", ".join(f"{k}={v}" for k, v in (p.get("evaluation") or {}).items()),
                  "- training: " + ", ".join(f"{k}={v}" for k, v in (p.get("training") or {}).items()),
                  "- SPEC choices: " + ", ".join(f"{k}={v}" for k, v in (p.get("spec_choices") or {}).items()),
                  "", "Every knob is in `params.yaml`; `snakemake` or `dvc repro` rebuilds these pages "
                  "(docs/pipeline.md).", ""]
        return "\n".join(lines)


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
    text = rep.index() if item == "index" else rep.claims_page() if item == "claims" else rep.table(item)
    atomic_write_text(text, out)
    return list(dict.fromkeys(rep.results.missing))


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
        note = f" ({len(missing)} result files missing)" if missing else ""
        print(f"wrote {out}{note}")
        return 0
    out_dir = Path(args.out) if args.out else Path(exp.report_dir)
    for item in items:
        stem = item.rsplit(".", 1)[0]
        missing = render(plan, exp, stem, out_dir / item, args.root)
        print(f"wrote {out_dir / item}" + (f" ({len(missing)} result files missing)" if missing else ""))
    return 0
