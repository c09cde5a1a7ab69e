"""The pages of an experiment's report that are not tables: the claims page and its section of the index, and
the index itself (links to every table and figure, the other experiments, the settings)."""
from __future__ import annotations

import json
from pathlib import Path

from textvae.plan.tables import TABLES
from textvae.reports.formatting import DATASET_NAMES

FIGURE_TITLES = {"tradeoff": "PPL against Recon across λ", "curves": "validation KL, MI and AU per epoch"}


def claims_section(rep, heading: str = "##") -> str:
    from textvae.reports import claims

    verdicts = claims.evaluate(rep.plan, rep.exp, rep.results)
    return claims.section_markdown(verdicts, DATASET_NAMES, heading)

def claims_page(rep) -> str:
    out = [f"# The paper's claims: experiment `{rep.exp.name}`", "",
           "Each claim of the paper (`src/textvae/plan/paper_claims.yaml`) checked on this experiment's results: "
           "holds, fails, within noise, not run (a run or row is missing) or missing value, with the numbers that "
           "decided it (mean over seeds) and the table they come from. A comparison of two rows holds when the "
           "95 % interval of their difference Δ lies wholly on its side, fails when it lies wholly on the other, "
           "and is within noise otherwise; the interval comes from the runs' own errors (paired over the same "
           "test sentences where the result files hold per-sentence values) and, with several seeds, the seed "
           "spread. With one seed, seed variation is not measured. Thresholds (AU ≥ 28, KL < 0.1, …) compare "
           "the number itself.", ""]
    body = claims_section(rep)
    missing = rep.missing_block()
    if missing:
        out += [missing, ""]
    return "\n".join(out + [body])

def index(rep) -> str:
    exp = rep.exp
    lines = [f"# textvae reports: experiment `{exp.name}`", ""]
    if rep.paper:
        lines += ["Our reproduction of Li et al. (EMNLP 2019), \"A Surprisingly Effective Fix for Deep Latent "
                  "Variable Modeling of Text\", beside the paper's numbers.", ""]
    else:
        lines += [f"The paper's tables and figures run on the "
                  f"{DATASET_NAMES.get(exp.dataset, exp.dataset)} (`{exp.dataset}`) with small settings; "
                  "there is no paper column (the numbers would not be comparable).", ""]
    if "claims.md" in rep.plan.report_items(exp):
        lines += [claims_section(rep), "Details and every number: [claims.md](claims.md).", ""]
    lines += ["## Tables", ""]
    for item in rep.plan.report_items(exp):
        stem = item.rsplit(".", 1)[0]
        if stem in TABLES:
            lines.append(f"- [{TABLES[stem].title}]({item})")
    figs = [i for i in rep.plan.report_items(exp) if i.endswith(".png")]
    if figs:
        lines += ["", "## Figures", ""]
        for item in figs:
            _, fig_name, ds = item[:-4].split("_", 2)
            lines.append(f"- [{DATASET_NAMES.get(ds, ds)}: {FIGURE_TITLES[fig_name]}]({item})")
        lines += [""] + [f"![{i}]({i})" for i in figs]
    others = [e for e in rep.plan.experiments.values() if e.name != exp.name]
    if others:
        lines += ["", "## Other experiments", ""]
        for o in others:
            rel = Path(o.report_dir).relative_to("reports") if o.report_dir != "reports" else Path(".")
            here = Path(exp.report_dir).relative_to("reports") if exp.report_dir != "reports" else Path(".")
            up = "../" * len(here.parts)
            lines.append(f"- [`{o.name}`]({up}{rel.as_posix() + '/' if str(rel) != '.' else ''}index.md)")
    p = rep.plan.params
    used = {exp.map_dataset(d) for t in p.get("tables", {}).values() for d in t["datasets"]}
    overrides = [f"- {DATASET_NAMES.get(d, d)} overrides: " + "; ".join(
        f"{k} {json.dumps(v, separators=(',', ':'))}" for k, v in rep.plan.datasets[d].items()
        if k in ("training", "evaluation", "probing")) for d in sorted(used)
        if any(k in rep.plan.datasets[d] for k in ("training", "evaluation", "probing"))]
    lines += ["", "## Settings", "",
              f"- seeds: {list(exp.seeds)}", *overrides,
              "- evaluation: " + ", ".join(f"{k}={v}" for k, v in (p.get("evaluation") or {}).items()),
              "- training: " + ", ".join(f"{k}={v}" for k, v in (p.get("training") or {}).items()),
              "- SPEC choices: " + ", ".join(f"{k}={v}" for k, v in (p.get("spec_choices") or {}).items()),
              "", "Every knob is in `params.yaml`; `snakemake` or `dvc repro` rebuilds these pages "
              "(docs/pipeline.md).", ""]
    return "\n".join(lines)


