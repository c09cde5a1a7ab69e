"""The figures of the reports: PPL against Recon across λ (the trade-off of Ours and FB) and the validation KL,
MI and AU per epoch, as PNG files written atomically. Error bars: the std over seeds, or one run's own standard
errors (``eval_test.json``); curves of several seeds are their mean with a ± std band."""
from __future__ import annotations

import os
from pathlib import Path

from textvae.core.errors import ConfigError
from textvae.modeling.methods import fmt_lam
from textvae.reports.formatting import DATASET_NAMES, getter_of, reference, row_label, se_getter_of, short_label, stat_of
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
                rec, ppl = (stat_of(rep.results, runs, lambda r: r.eval_json, getter_of(m), se_getter_of(m))
                            for m in ("rec", "ppl"))
                if rec.mean is not None and ppl.mean is not None:
                    pts.append((rec.mean, ppl.mean, row.lam, _error(rec), _error(ppl)))
            color = f"C{i}"
            label = short_label(Row(method))
            if pts:
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], xerr=[p[3] for p in pts],
                            yerr=[p[4] for p in pts], fmt="o-", color=color, capsize=3, label=f"{label} (ours)")
                for x, y, lam, _, _ in pts:
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
            hists = [h for run in rep.runs(dataset, row) if (h := rep.results.metrics(f"{run.dir}/metrics.jsonl"))]
            for ax, key in zip(axes, ("val_kl", "val_mi", "val_au")):
                ep, mean, std = _curve(hists, key)
                if not ep:
                    continue
                ax.plot(ep, mean, "o-", ms=3, color=f"C{i % 10}", label=row_label(row))
                if len(hists) > 1:                   # several seeds: a ± std band around their mean
                    ax.fill_between(ep, mean - std, mean + std, color=f"C{i % 10}", alpha=0.2, lw=0)
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


def _error(stat) -> float:
    """The error bar of a point: the std over seeds, else the run's own standard error, else 0."""
    if stat.std is not None:
        return stat.std
    return stat.ses[0] if len(stat.ses) == 1 else 0.0


def _curve(hists: list[list[dict]], key: str):
    """Epochs trained and the mean and std over runs of ``key`` per epoch (epochs that every run reached)."""
    import numpy as np

    series = [[float("nan") if h.get(key) is None else float(h[key]) for h in hist] for hist in hists]
    series = [s for s in series if any(np.isfinite(s))]
    if not series:
        return [], None, None
    n = min(len(s) for s in series)
    arr = np.array([s[:n] for s in series])
    ep = [h["epoch"] + 1 for h in hists[0][:n]]           # epochs trained (a one-epoch run is one point)
    return ep, np.nanmean(arr, 0), (np.nanstd(arr, 0, ddof=1) if len(arr) > 1 else np.zeros(n))
