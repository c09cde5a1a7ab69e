"""How often the demo's classification check holds: the demo's AE and Ours λ = 7 for many training seeds on each
corpus, probed as Table 8 is (docs/demo.md, "How often the classification check holds").

    python docs/diagnostics/classify_seeds.py --out DIR [--datasets synthetic synthetic_s2 synthetic_early]
        [--seeds 783435 1 2 3 ...] [--jobs N] [--lam 7]
    python docs/diagnostics/classify_seeds.py --render DIR/classify_seeds.json

Each (dataset, seed) runs, in DIR/work with a copy of params.yaml, exactly the pipeline's commands
(`textvae.plan.pipeline.Plan`: data; the AE's training and classification probe; Ours' training and
classification probe), then the η² of each factor in Ours' training means (`factor_variance.eta_squared`).
Runs are parallel subprocesses on one thread each; DIR/classify_seeds.json is rewritten after each run, so an
interrupted sweep keeps what finished, and a rerun skips what exists. `--render` prints, per dataset, how many
seeds pass each part of the check (linear ≥ 90 % at the largest label count, GMM ≥ 80 %) with a 95 %
Clopper-Pearson interval, and the GMM's accuracy beside the sentiment's share of the means' variance.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FACTORS = ("sentiment", "tense", "subject", "topic")
LINEAR_BAR, GMM_BAR = 90.0, 80.0   # the demo's acceptance check (src/textvae/plan/paper_claims.yaml, demo_classify)


def _cli(argv: list[str]) -> list[str]:
    """The plan's `textvae ...` command, run with this interpreter (the package need not be installed)."""
    return [sys.executable, "-m", "textvae", *argv[1:]] if argv[0] == "textvae" else argv


def _env() -> dict:
    """A subprocess's environment: one thread, and this checkout's package first on the path."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def _run(argv: list[str], cwd: Path, log: Path) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(argv) + "\n")
        fh.flush()
        subprocess.run(_cli(argv), cwd=cwd, env=_env(), stdout=fh, stderr=subprocess.STDOUT, check=True)


def eta_main(ckpt: str, data: str) -> None:
    """Hidden mode: print the η² of each factor in the checkpoint's training means as JSON."""
    import torch

    sys.path.insert(0, str(HERE))
    from factor_variance import eta_squared, training_means

    torch.set_num_threads(1)
    mu, groups = training_means(ckpt, data)
    print(json.dumps({k: round(eta_squared(mu, groups[k]), 4) for k in FACTORS if k in groups}))


def one(plan, work: Path, dataset: str, seed: int, lam: float) -> dict:
    from textvae.plan.runs import Run

    t0 = time.time()
    ae = Run(dataset, "ae", None, seed)
    ours = Run(dataset, "ours", lam, seed)
    log = work / "logs" / f"{dataset}-seed{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for job in (plan.train_job(ae), plan.probe_job(ae, "classify"), plan.train_job(ours),
                plan.probe_job(ours, "classify")):
        if not all((work / o).exists() for o in job.outputs):
            _run(job.argv, work, log)
    probe = json.loads((work / ours.probe_json("classify")).read_text())
    ae_probe = json.loads((work / ae.probe_json("classify")).read_text())
    eta = json.loads(subprocess.run([sys.executable, __file__, "--eta", ours.ckpt, f"data/{dataset}"], cwd=work,
                                    env=_env(), capture_output=True, text=True, check=True).stdout)
    largest = max(probe["linear"], key=int)
    gmm = probe["gmm"]
    return {"dataset": dataset, "seed": seed, "lam": lam, "seconds": round(time.time() - t0, 1),
            "linear": probe["linear"], "converged": probe["converged"], "largest": largest,
            "gmm": gmm["accuracy"], "gmm_rules": gmm["accuracies"], "gmm_inits": gmm["init_accuracies"],
            "gmm_best_of_inits": gmm["best_of_inits_accuracy"], "eta2": eta,
            "ae": {"linear": ae_probe["linear"], "converged": ae_probe["converged"],
                   "gmm": ae_probe["gmm"]["accuracy"]}}


def sweep(args) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from textvae.plan.pipeline import Plan

    out = Path(args.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", work / "params.yaml")
    if not (work / "workflow").exists():   # the params schema, read relative to the params file's folder
        (work / "workflow").symlink_to(REPO / "workflow")
    os.chdir(work)                      # the plan's paths are relative to the params file's folder
    plan = Plan.load("params.yaml")
    for ds in args.datasets:
        job = plan.data_job(ds)
        if not all(Path(o).exists() for o in job.outputs):
            _run(job.argv, work, work / f"data-{ds}.log")
    result_file = out / "classify_seeds.json"
    state = json.loads(result_file.read_text()) if result_file.exists() else {"runs": []}
    done = {(r["dataset"], r["seed"], r["lam"]) for r in state["runs"]}
    state.update(host=platform.node(), processor=platform.processor() or platform.machine(),
                 cpus=os.cpu_count(), jobs=args.jobs, lam=args.lam, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 command=" ".join(sys.argv))
    todo = [(ds, s) for s in args.seeds for ds in args.datasets if (ds, s, args.lam) not in done]
    lock = threading.Lock()

    def task(item):
        ds, s = item
        try:
            row = one(plan, work, ds, s, args.lam)
        except subprocess.CalledProcessError as exc:
            print(f"{ds} seed {s}: failed ({exc}); see {work}/logs", file=sys.stderr)
            return
        with lock:
            state["runs"].append(row)
            tmp = result_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(result_file)
            print(f"{ds} seed {s}: linear {row['linear'][row['largest']]:.1f} GMM {row['gmm']:.1f} "
                  f"({row['seconds']:.0f} s)", flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(task, todo))


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import beta
    lo = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def render(path: str) -> str:
    import numpy as np

    state = json.loads(Path(path).read_text())
    lines = [f"{len(state['runs'])} runs on {state.get('processor')} ({state.get('cpus')} CPUs, {state.get('jobs')} "
             f"jobs), Ours λ = {state.get('lam')}; `{state.get('command')}`", "",
             "| corpus | seeds | linear ≥ 90 % (largest count) | GMM ≥ 80 % | both | linear: mean (min-max) | "
             "converged probe: mean (min-max) | GMM: mean (min-max) | GMM majority rule: mean | "
             "corr(GMM, η² sentiment) |", "|---|---|---|---|---|---|---|---|---|---|"]

    def frac(k, n):
        lo, hi = clopper_pearson(k, n)
        return f"{k}/{n} ({100 * lo:.0f}-{100 * hi:.0f} %)"

    def mmm(v):
        return f"{np.mean(v):.1f} ({min(v):.1f}-{max(v):.1f})"

    for ds in dict.fromkeys(r["dataset"] for r in state["runs"]):
        rows = sorted((r for r in state["runs"] if r["dataset"] == ds), key=lambda r: r["seed"])
        lin = [r["linear"][r["largest"]] for r in rows]
        conv = [r["converged"][r["largest"]] for r in rows]
        gmm = [r["gmm"] for r in rows]
        maj = [r["gmm_rules"]["majority"] for r in rows]
        sent = [r["eta2"].get("sentiment", float("nan")) for r in rows]
        n = len(rows)
        k_lin = sum(v >= LINEAR_BAR for v in lin)
        k_gmm = sum(v >= GMM_BAR for v in gmm)
        k_both = sum(a >= LINEAR_BAR and b >= GMM_BAR for a, b in zip(lin, gmm))
        corr = float(np.corrcoef(gmm, sent)[0, 1]) if n > 2 else float("nan")
        lines.append(f"| {ds} | {n} | {frac(k_lin, n)} | {frac(k_gmm, n)} | {frac(k_both, n)} | {mmm(lin)} | "
                     f"{mmm(conv)} | {mmm(gmm)} | {np.mean(maj):.1f} | {corr:+.2f} |")
    lines += ["", "Per run (GMM ≥ 80 % against the factors' η² in Ours' training means):", "",
              "| corpus | seed | AE: converged probe | linear | converged | GMM | GMM inits | "
              + " | ".join(f"η² {f}" for f in FACTORS) + " |", "|---|---|---|---|---|---|---|" + "---|" * len(FACTORS)]
    for r in sorted(state["runs"], key=lambda r: (r["dataset"], r["seed"])):
        lines.append(f"| {r['dataset']} | {r['seed']} | {r['ae']['converged'][r['largest']]:.1f} | "
                     f"{r['linear'][r['largest']]:.1f} | "
                     f"{r['converged'][r['largest']]:.1f} | {r['gmm']:.1f} | "
                     f"{' / '.join(f'{a:.0f}' for a in r['gmm_inits'])} | "
                     + " | ".join(f"{r['eta2'].get(f, float('nan')):.3f}" for f in FACTORS) + " |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--eta":
        eta_main(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="folder for the runs and classify_seeds.json")
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "synthetic_s2", "synthetic_early"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[783435, 1, 2])
    ap.add_argument("--lam", type=float, default=7.0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--render", metavar="JSON")
    args = ap.parse_args()
    if args.render:
        print(render(args.render))
    elif args.out:
        sweep(args)
    else:
        ap.error("give --out DIR or --render JSON")


if __name__ == "__main__":
    main()
