"""The figures of the reports: PPL against Recon across λ (the trade-off of Ours and FB) and the validation KL,
MI and AU per epoch, as PNG files written atomically."""
from __future__ import annotations

import os
from pathlib import Path

from textvae.core.errors import ConfigError
from textvae.modeling.methods import fmt_lam
from textvae.reports.formatting import DATASET_NAMES, getter_of, reference, row_label
from textvae.core.rundir import atomic_path
from textvae.plan.runs import Row


def draw(rep, item: str, out: Path) -> list[str]:
    """Figure ``item`` (``fig_tradeoff_DATASET``, ``fig_curves_DATASET``) of ``rep``'s experiment as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, fig_name, dataset = item.split("_", 2)
    sec = next((s for s in rep.plan.figure_sections(rep.exp, fig_name) if s.dataset == dataset), None)
    if sec is None:
        raise ConfigError(f"experiment {rep.exp.name!r} has no figure {item!r}")
    name = DATASET_NAMES.get(dataset, dataset)
    if fig_name == "tradeoff":
        fig, ax = plt.subplots(figsize=(6, 4.5))
        methods = list(dict.fromkeys(r.method for r in sec.rows))
        for i, method in enumerate(methods):
            rows = sorted({r for r in sec.rows if r.method == method}, key=lambda r: r.lam)
            pts = []
            for row in rows:
                runs = rep.runs(dataset, row)
                rec = rep.results.stat(runs, lambda r: r.eval_json, getter_of("rec")).mean
                ppl = rep.results.stat(runs, lambda r: r.eval_json, getter_of("ppl")).mean
                if rec is not None and ppl is not None:
                    pts.append((rec, ppl, row.lam))
            color = f"C{i}"
            label = row_label(Row(method)).lstrip("+ ")
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=f"{label} (ours)")
                for x, y, lam in pts:
                    ax.annotate(fmt_lam(lam), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            if rep.paper:
                ref = reference()["lm"].get(sec.paper_datasets[0], {})
                ppts = [(ref[f"{method}@{fmt_lam(r.lam)}"]["rec"], ref[f"{method}@{fmt_lam(r.lam)}"]["ppl"])
                        for r in rows if f"{method}@{fmt_lam(r.lam)}" in ref]
                if ppts:
                    ax.plot([p[0] for p in ppts], [p[1] for p in ppts], "s--", color=color, alpha=0.5,
                            mfc="none", label=f"{label} (paper)")
        ax.set_xlabel("Recon (nats per sentence, lower is better)")
        ax.set_ylabel("PPL (IW estimate, lower is better)")
        ax.set_title(f"{name}: PPL–Recon trade-off across λ")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    else:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
        for i, row in enumerate(sec.rows):
            for j, run in enumerate(rep.runs(dataset, row)):
                hist = rep.results.metrics(f"{run.dir}/metrics.jsonl")
                if not hist:
                    continue
                ep = [h["epoch"] + 1 for h in hist]          # epochs trained (a one-epoch run is one point)
                for ax, key in zip(axes, ("val_kl", "val_mi", "val_au")):
                    ys = [h.get(key) for h in hist]
                    if any(y is not None for y in ys):
                        ax.plot(ep, [float("nan") if y is None else y for y in ys], "o-", ms=3, color=f"C{i % 10}",
                                alpha=1.0 if j == 0 else 0.4, label=row_label(row) if j == 0 else None)
        for ax, title in zip(axes, ("KL (validation)", "MI (validation)", "AU (validation)")):
            ax.set_title(title)
            ax.set_xlabel("epochs trained")
            ax.grid(alpha=0.3)
        if axes[0].get_legend_handles_labels()[0]:
            axes[-1].legend(fontsize=7, loc="best")
        fig.suptitle(f"{name}: training curves")
    fig.tight_layout()
    # the temporary keeps the suffix: savefig picks the format from it
    with atomic_path(out, f"{os.getpid()}{out.suffix}") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return list(dict.fromkeys(rep.results.missing)) + list(rep.results.problems)
