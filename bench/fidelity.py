"""Step-by-step fidelity: textvae's training against the authors' code, method by method.

    python bench/fidelity.py --authors LI_DIR --he HE_DIR [--scenarios vae ours ...] [--json out.json]
                             [--fixture tests/data/fidelity_authors.json] [--write docs/fidelity.md]

``LI_DIR``: a checkout of https://github.com/bohanli/vae-pretraining-encoder (written against bd4affa; also
$TEXTVAE_AUTHORS_REPO), ``HE_DIR``: of https://github.com/jxhe/vae-lagging-encoder (cdc4eb9; also
$TEXTVAE_HE_REPO). Nothing of theirs is copied into this repository: each is copied to a temporary folder (Li's
with the three CPU changes of authors_checkout.py) and imported from there, in its own process.

For every scenario of fidelity_replay.py (one per training method: VAE, +anneal, FB, FBP in --fb 1 and 3, +pretrain
with and without --reset_dec, +pretrain+anneal, Ours, AE, IWAE, IWAE + pretrained encoder, LSTM-LM, aggressive,
and the epoch-level loop with an lr decay), both codebases start from the same weights and see the same batches
and the same noise (fidelity_replay.py's docstring says how); every optimiser step is recorded on both sides
(loss, Rec, KL, β, the free-bits mask, the gradient norm before clipping, the clip threshold, lr), then every
validation, every epoch's lr decay / aggressive switch-off, and the final weights. textvae runs in the authors'
mode (where a SPEC choice of ours differs on purpose: the scenario's TrainConfig, plus the padding-row quirk of
their decoder embedding emulated) and, beside it, in its own defaults.

``--fixture`` writes the authors' numbers (not their weights: a fingerprint) with the command, their commits,
the date and the machine; tests/test_fidelity.py replays textvae against it in CI, without their code.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_checkout import AUTHORS_COMMIT, SHARED, patched_copy  # noqa: E402
from bench_common import cpu_model, sh, write_section  # noqa: E402
from fidelity_replay import (AGGRESSIVE_TRAIN_LINES, EPOCHS, SCENARIOS, STEP_FIELDS, TOL, TRAIN_LINES,  # noqa: E402
                             agrees, compare, epoch_orders, fingerprint, replay, write_subset)

HE_URL = "https://github.com/jxhe/vae-lagging-encoder"
HE_COMMIT = "cdc4eb9"
HEADING = "## Step-by-step agreement"


def data_dir(work: Path, name: str) -> Path:
    return work / ("ptb_agg" if SCENARIOS[name].get("train_lines") else "ptb_main")


def worker(spec_path: str) -> int:
    """In a fresh process: the authors' side of the scenarios in the spec (all from one codebase)."""
    import torch
    torch.set_num_threads(1)
    from fidelity_authors import load_modules, run_scenario
    spec = json.loads(Path(spec_path).read_text())
    mods = load_modules(Path(spec["patched"]), spec["which"])
    out = {}
    for name in spec["scenarios"]:
        t0 = time.perf_counter()
        out[name] = run_scenario(mods, name, Path(spec["data"][name]), Path(spec["work"]), spec["orders"][name],
                                 spec["batches"][name])
        out[name]["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"  authors {name}: {len(out[name]['steps'])} steps, {out[name]['seconds']} s", file=sys.stderr,
              flush=True)
    torch.save(out, spec["out"])
    return 0


def run_authors(which: str, src: Path, names: list[str], work: Path, orders: dict, batches: dict) -> dict:
    import torch
    patched = work / f"{which}_copy"
    if patched.exists():
        shutil.rmtree(patched)
    if which == "li":
        patched_copy(src, patched)
    else:
        shutil.copytree(src, patched, ignore=lambda d, ns: [n for n in ns if n in (".git", "__pycache__")])
    spec = {"which": which, "patched": str(patched), "scenarios": names, "work": str(work),
            "data": {n: str(data_dir(work, n)) for n in names}, "orders": {n: orders[n] for n in names},
            "batches": {n: batches[n] for n in names}, "out": str(work / f"{which}.pt")}
    sp = work / f"{which}.spec.json"
    sp.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(sp)], env=env,
                          capture_output=True, text=True, cwd=str(work))
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode != 0:
        raise SystemExit(f"fidelity: the authors' side ({which}) failed:\n{proc.stdout[-2000:]}")
    return torch.load(spec["out"], weights_only=False)


NUMERIC = ("max_rel_loss", "max_rel_rec", "max_rel_kl", "max_rel_gnorm", "max_rel_val", "max_abs_weight")


def verdict(c: dict, sens: dict | None) -> str:
    """✅ within TOL (fidelity_replay.py); "rounding-limited" when every number past TOL is within 3× of how far
    textvae moves from ITSELF when every starting weight is moved by one float32 ulp (``sens``) and every
    discrete thing (step count, shapes, β, lr, clip, masks, decays, switch-off) agrees; ❌ otherwise."""
    bad = agrees(c)
    if not bad:
        return "✅ float rounding"
    discrete = [b for b in bad if not b.startswith(("max_rel_", "max_abs_weight"))]
    over = [m for m in NUMERIC if any(b.startswith(m) for b in bad)]
    isolated = [m for m in over if m[8:] in STEP_FIELDS and c[f"steps_above_tol_{m[8:]}"] <= 2 and c[m] <= 3 * TOL[m[8:]]]
    if not discrete and len(isolated) == len(over):
        return "≈ float rounding: " + ", ".join(f"{m[4:]} {c[m]:.2g} at {c[f'steps_above_tol_{m[8:]}']} isolated step(s)"
                                              for m in over)
    if sens is not None and not discrete and all(c[m] <= 3 * sens[m] for m in over):
        return ("≈ rounding-limited: " + ", ".join(f"{m[4:]} {c[m]:.2g} (1-ulp self: {sens[m]:.2g})" for m in over))
    return "❌ " + "; ".join(bad)


def summary_row(name: str, c: dict, cd: dict | None, sens: dict | None = None) -> str:
    v = verdict(c, sens)
    dflt = "–"
    if cd is not None:
        dflt = (f"{cd['max_abs_loss']:.3g} / {cd['max_abs_weight']:.3g}" if cd["same_count"]
                else f"{cd['steps_textvae']} vs {cd['steps_authors']} steps")
    sc = SCENARIOS[name]
    extra = []
    if c["beta_range"] and c["beta_range"][0] != c["beta_range"][1]:
        extra.append(f"β {c['beta_range'][0]:.2f}→{c['beta_range'][1]:.2f}")
    if c["mask_range"]:
        extra.append(f"mask {c['mask_range'][0]}-{c['mask_range'][1]}")
    if c["decays"]:
        extra.append(f"{c['decays']} lr decay(s)")
    if sc["tv"]["method"] == "aggressive":
        extra.append("aggressive by epoch " + "/".join("on" if g else "off" for g in c["aggressive_by_epoch"]))
    return (f"| {name} | `{sc['script']} {' '.join(sc['argv'])}` | {c['steps_authors']} | "
            f"{c['max_abs_loss']:.2g} ({c['max_rel_loss']:.1g}) | {c['max_rel_gnorm']:.1g} | "
            f"{c['max_rel_val']:.1g} | {c['max_abs_weight']:.2g} | {', '.join(extra) or '–'} | {v} | {dflt} | "
            f"{'–' if sens is None else format(sens['max_rel_loss'], '.1g')} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", default=os.environ.get("TEXTVAE_AUTHORS_REPO"), help="Li et al.'s checkout")
    ap.add_argument("--he", default=os.environ.get("TEXTVAE_HE_REPO"), help="He et al.'s checkout")
    ap.add_argument("--ptb", default=str(SHARED / "ptb"))
    ap.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    ap.add_argument("--json", help="every per-step number of both sides")
    ap.add_argument("--fixture", help="write the authors' numbers for tests/test_fidelity.py here")
    ap.add_argument("--write", help="replace the agreement section of this markdown file")
    ap.add_argument("--keep", help="keep the work folder here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker)
    import torch
    torch.set_num_threads(1)
    if not a.authors:
        ap.error("--authors DIR (or $TEXTVAE_AUTHORS_REPO): a checkout of bohanli/vae-pretraining-encoder")
    he_names = [n for n in a.scenarios if SCENARIOS[n]["script"] == "text.py"]
    if he_names and not a.he:
        ap.error("--he DIR (or $TEXTVAE_HE_REPO): a checkout of jxhe/vae-lagging-encoder (or leave out aggressive)")
    t_start = time.time()
    work = Path(a.keep or tempfile.mkdtemp(prefix="fidelity_"))
    work.mkdir(parents=True, exist_ok=True)
    write_subset(Path(a.ptb), work / "ptb_main", TRAIN_LINES)
    write_subset(Path(a.ptb), work / "ptb_agg", AGGRESSIVE_TRAIN_LINES)
    orders, batches = {}, {}
    for n in a.scenarios:
        orders[n], batches[n] = epoch_orders(data_dir(work, n), SCENARIOS[n].get("epochs", EPOCHS))
    li_names = [n for n in a.scenarios if n not in he_names]
    authors = {}
    if li_names:
        authors.update(run_authors("li", Path(a.authors), li_names, work, orders, batches))
    if he_names:
        authors.update(run_authors("he", Path(a.he), he_names, work, orders, batches))
    results, rows = {}, []
    for n in a.scenarios:
        au = authors[n]
        t0 = time.perf_counter()
        ours = replay(n, data_dir(work, n), work / "tv" / n, aggressive_ids=au["aggressive_ids"])
        secs = time.perf_counter() - t0
        c = compare(au, ours)
        cd = None
        if "default" in SCENARIOS[n] or SCENARIOS[n]["tv"]["method"] != "aggressive":
            dflt = replay(n, data_dir(work, n), work / "tvd" / n, aggressive_ids=au["aggressive_ids"],
                          authors_mode=False)
            cd = compare(au, dflt)
        nudged = replay(n, data_dir(work, n), work / "tvn" / n, aggressive_ids=au["aggressive_ids"], nudge=True)
        sens = compare(ours, nudged)
        results[n] = {"compare": c, "compare_default": cd, "sensitivity": sens, "authors": au, "textvae": ours,
                      "textvae_seconds": secs}
        rows.append(summary_row(n, c, cd, sens))
        print(rows[-1], file=sys.stderr, flush=True)
    meta = {"command": "python bench/fidelity.py " + " ".join(sys.argv[1:]),
            "authors_commit": sh(["git", "rev-parse", "HEAD"], cwd=Path(a.authors)) or AUTHORS_COMMIT,
            "he_commit": (sh(["git", "rev-parse", "HEAD"], cwd=Path(a.he)) if a.he else None),
            "textvae_commit": sh(["git", "rev-parse", "HEAD"]), "dirty": bool(sh(["git", "status", "--porcelain",
                                                                                  "--untracked-files=no"])),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_model(),
            "torch": torch.__version__, "python": sys.version.split()[0], "minutes": round((time.time() - t_start) / 60, 2)}
    L = [HEADING, "", f"`{meta['command']}` — Li et al. at `{meta['authors_commit'][:12]}`, He et al. at "
         f"`{(meta['he_commit'] or '')[:12]}`; textvae `{meta['textvae_commit'][:12]}`{' (uncommitted changes)' if meta['dirty'] else ''}; "
         f"{meta['cpu']}, torch {meta['torch']}, 1 thread; {meta['date']}; {meta['minutes']} min.", "",
         "| scenario | authors' command (after `--dataset ptb`) | steps | max abs Δloss (rel) | max rel Δ grad norm | "
         "max rel Δ val | max abs Δweight (end) | crosses | authors' mode | textvae default: max abs Δloss / Δweight | "
         "1-ulp sensitivity: max rel Δloss |", "|---|---|---:|---:|---:|---:|---:|---|---|---|---:|", *rows, ""]
    section = "\n".join(L)
    print(section)
    if a.write:
        write_section(Path(a.write), HEADING, section)
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "results": {n: {k: v for k, v in r.items() if k in (
            "compare", "compare_default", "sensitivity", "textvae_seconds")} for n, r in results.items()}}, indent=1, default=str))
    if a.fixture:
        fx = {"meta": {**meta, "what": "the authors' per-step numbers for tests/test_fidelity.py "
                       "(bench/fidelity_replay.py's configuration)", "li_url": "https://github.com/bohanli/vae-pretraining-encoder",
                       "he_url": HE_URL},
              "scenarios": {n: {"steps": r["authors"]["steps"], "val": r["authors"]["val"],
                                "epochs": r["authors"]["epochs"], "checks": r["authors"]["checks"],
                                "aggressive_ids": r["authors"]["aggressive_ids"],
                                "final": fingerprint(r["authors"]["final_state"]),
                                "agreement_here": {k: r["compare"][k] for k in ("max_abs_loss", "max_rel_loss",
                                                                                  "max_abs_weight")}}
                            for n, r in results.items()}}
        Path(a.fixture).parent.mkdir(parents=True, exist_ok=True)
        Path(a.fixture).write_text(json.dumps(fx, separators=(",", ":")) + "\n")
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(not verdict(r["compare"], r["sensitivity"]).startswith("❌") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
