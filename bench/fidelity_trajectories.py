"""Same-budget trajectories on real PTB (docs/fidelity.md, "Same-budget trajectories"; issue 22, item 3):
VAE and Ours (λ = 6) for one epoch with several seeds in each codebase, each run with its OWN randomness
(initialisation, batch order, posterior noise, dropout), both codebases' Ours runs from one AE checkpoint
(textvae's, mapped into theirs, the decoder reset by each); the validation −ELBO, KL, MI (Li et al.'s whole-set
estimator) and AU after the epoch, and each run's wall time.

    # the issue's budget (whole PTB, the paper's PTB sizes), on a GPU, 16 runs at once:
    python bench/fidelity_trajectories.py --authors LI_DIR --full --device cuda --jobs 16 --json out.json
    # the reduced budget that fits a 2-core CPU (the first 4,000 / 500 sentences, sizes 64/128/32):
    python bench/fidelity_trajectories.py --authors LI_DIR --json out.json
    # the table and the statistics of a result file (markdown):
    python bench/fidelity_trajectories.py --render out.json

Every run is a subprocess (one torch thread); ``--jobs`` of them run at once. ``--json`` is rewritten after
each finished run, so a run cut short by a time limit leaves what finished.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_checkout import SHARED, patched_copy  # noqa: E402
from bench_common import REPO, cpu_model, emit_json, sh  # noqa: E402

SMALL = dict(enc_emb=64, dec_emb=64, enc_hidden=128, dec_hidden=128, nz=32)
PTB = dict(enc_emb=256, dec_emb=256, enc_hidden=256, dec_hidden=256, nz=32)   # config_ptb.py, params.yaml ptb
SEEDS = (783435, 101, 202)
LAM = 6.0
COLUMNS = ("neg_elbo", "kl", "mi", "au")


def authors_run(patched: str, data: str, method: str, seed: int, ae: str, sizes: dict, device: str) -> dict:
    """text_anneal_fb.py's main() for one epoch with its own seed (init_config seeds numpy and torch): set-up
    (lines 175-215, 253-289), the loop over np.random.permutation (299-360, via fidelity_authors'
    step_anneal_fb), then the validation test() and calc_au (362-367)."""
    import numpy as np
    import torch
    from authors_checkout import import_authors, textvae_to_authors_state
    from fidelity_authors import step_anneal_fb
    A = import_authors(Path(patched))
    argv = ["text_anneal_fb.py", "--dataset", "ptb", "--seed", str(seed), "--lr", "0.5"]
    if method == "ours":
        argv += ["--fb", "2", "--target_kl", str(LAM), "--kl_start", "0", "--warm_up", "10", "--reset_dec",
                 "--load_path", ae]
    saved, sys.argv = sys.argv, argv
    try:
        args = A.T.init_config()
    finally:
        sys.argv = saved
    args.train_data, args.val_data, args.test_data = (f"{data}/{s}.txt" for s in ("train", "valid", "test"))
    args.ni, args.enc_nh, args.dec_nh, args.nz = sizes["enc_emb"], sizes["enc_hidden"], sizes["dec_hidden"], sizes["nz"]
    args.cuda, args.device = device == "cuda", device
    A.T.logging = lambda *a, **k: None
    train = A.D.MonoTextData(args.train_data, label=False)
    vocab = train.vocab
    val = A.D.MonoTextData(args.val_data, label=False, vocab=vocab)
    mi, ei = A.U.uniform_initializer(0.01), A.U.uniform_initializer(0.1)
    enc = A.M.GaussianLSTMEncoder(args, len(vocab), mi, ei)
    args.enc_nh = args.dec_nh
    vae = A.M.VAE(enc, A.M.LSTMDecoder(args, vocab, mi, ei), args)
    if args.load_path:
        tv = torch.load(args.load_path)
        vae.load_state_dict(textvae_to_authors_state(tv, vae.state_dict()))
        if args.reset_dec:
            vae.decoder.reset_parameters(mi, ei)
    vae.to(device)
    st = {"model": vae, "lr": args.lr, "kl_weight": args.kl_start, "dim_target_kl": args.target_kl / float(args.nz),
          "opts": [torch.optim.SGD(vae.encoder.parameters(), lr=args.lr, momentum=args.momentum),
                   torch.optim.SGD(vae.decoder.parameters(), lr=args.lr, momentum=args.momentum)]}
    st["anneal_rate"] = (1.0 - args.kl_start) / (args.warm_up * (len(train) / args.batch_size)) if args.warm_up > 0 else 0
    tb = train.create_data_batch(batch_size=args.batch_size, device=device, batch_first=True)
    vb = val.create_data_batch(batch_size=args.batch_size, device=device, batch_first=True)
    vae.train()
    steps: list = []
    for i in np.random.permutation(len(tb)):
        step_anneal_fb(A.T, args, st, tb[i], steps)
    vae.eval()
    with torch.no_grad():
        loss, nll, kl, ppl, mi_ = A.T.test(vae, vb, "VAL", args)
        au, _ = A.U.calc_au(vae, vb)
    return {"neg_elbo": float(nll), "kl": float(kl), "mi": float(mi_), "au": int(au), "beta": st["kl_weight"],
            "steps": len(steps)}


def textvae_run(data: str, method: str, seed: int, ae: str, work: str, sizes: dict, device: str) -> dict:
    from textvae.training.trainer import TrainConfig, Trainer
    cfg = TrainConfig(method=method, seed=seed, max_epochs=1, progress=False, device=device,
                      lam=LAM if method == "ours" else None, init_from=ae if method == "ours" else None)
    r = Trainer(cfg, data, work, sizes).fit()["history"][-1]
    return {"neg_elbo": r["val_elbo"], "kl": r["val_kl"], "mi": r["val_mi"], "au": r["val_au"], "beta": r["beta"]}


def worker(spec: dict) -> dict:
    import torch
    torch.set_num_threads(1)
    t0 = time.time()
    if spec["side"] == "authors":
        res = authors_run(spec["patched"], spec["data"], spec["method"], spec["seed"], spec["ae_state"],
                          spec["sizes"], spec["device"])
    else:
        res = textvae_run(spec["data"], spec["method"], spec["seed"], spec["ae"], spec["work"], spec["sizes"],
                          spec["device"])
    res["seconds"] = round(time.time() - t0, 1)
    return res


def prepare(ptb: Path, dest: Path, n_train: int, n_valid: int) -> dict:
    """PTB's train / valid into ``dest`` (the first N sentences of each, or all with N = 0); test = valid."""
    dest.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, src, n in (("train", "ptb.train.txt", n_train), ("valid", "ptb.valid.txt", n_valid)):
        lines = (ptb / src).read_text().splitlines(keepends=True)
        lines = lines[:n] if n else lines
        (dest / f"{name}.txt").write_text("".join(lines))
        counts[name] = len(lines)
    (dest / "test.txt").write_text((dest / "valid.txt").read_text())
    return counts


def train_ae(data: Path, work: Path, sizes: dict, epochs: int, init: str, device: str) -> dict:
    import torch
    from textvae.modeling.checkpoint import load_checkpoint
    from textvae.training.trainer import TrainConfig, Trainer
    t0 = time.time()
    hist = Trainer(TrainConfig(method="ae", max_epochs=epochs, progress=False, device=device, encoder_init=init),
                   data, work / "ae", sizes).fit()["history"]
    torch.save(load_checkpoint(str(work / "ae" / "best.pt"))["model"], work / "ae_state.pt")   # for their side
    return {"epochs": epochs, "encoder_init": init, "seconds": round(time.time() - t0, 1),
            "val_au": [h.get("val_au") for h in hist], "val_mi": [round(h.get("val_mi", float("nan")), 3) for h in hist],
            "val_rec": [round(h.get("val_rec", float("nan")), 3) for h in hist]}


def machine(device: str) -> dict:
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_model(),
           "cores": os.cpu_count(), "commit": sh(["git", "rev-parse", "HEAD"]), "dirty": bool(sh(["git", "status", "--porcelain"])),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
        out["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return out


def run_all(specs: list[dict], jobs: int, out: dict, json_path: str | None, work: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "bench"), os.environ.get("PYTHONPATH", "")])}
    pending, running = list(specs), []
    while pending or running:
        while pending and len(running) < jobs:
            spec = pending.pop(0)
            log = open(work / f"{spec['side']}_{spec['method']}_{spec['seed']}.log", "w")
            p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                                 stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=str(work))
            running.append((p, spec, log))
        time.sleep(0.5)
        for item in [r for r in running if r[0].poll() is not None]:
            p, spec, log = item
            running.remove(item)
            log.close()
            stdout = p.stdout.read()
            line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
            if p.returncode or line is None:
                tail = Path(log.name).read_text()[-2000:]
                out["failed"].append({"side": spec["side"], "method": spec["method"], "seed": spec["seed"],
                                      "error": tail})
                print(f"FAILED {spec['side']} {spec['method']} {spec['seed']}:\n{tail}", file=sys.stderr, flush=True)
            else:
                res = json.loads(line[7:])
                out["runs"].append({"side": spec["side"], "method": spec["method"], "seed": spec["seed"], **res})
                print(spec["side"], spec["method"], spec["seed"], res, file=sys.stderr, flush=True)
            if json_path:
                Path(json_path).write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------------------------------------------------------
def summary(out: dict) -> dict:
    """Per method and column: each side's values, mean and sd; Welch's t-test of the means; whether every textvae
    run lies inside the authors' min-max (and how likely that is when both sides draw from one distribution)."""
    from scipy import stats
    res = {}
    for method in ("vae", "ours"):
        for col in COLUMNS:
            a = [r[col] for r in out["runs"] if r["method"] == method and r["side"] == "authors"]
            t = [r[col] for r in out["runs"] if r["method"] == method and r["side"] == "textvae"]
            if len(a) < 2 or len(t) < 2:
                continue
            p = float(stats.ttest_ind(a, t, equal_var=False).pvalue) if statistics.pstdev(a + t) > 0 else 1.0
            m, n = len(a), len(t)
            va, vt = statistics.variance(a) / m, statistics.variance(t) / n
            se = math.sqrt(va + vt)
            df = (va + vt) ** 2 / (va ** 2 / (m - 1) + vt ** 2 / (n - 1)) if va + vt > 0 else 1.0
            half = float(stats.t.ppf(0.975, df)) * se
            diff = statistics.mean(t) - statistics.mean(a)
            res.setdefault(method, {})[col] = {
                "authors": a, "textvae": t, "authors_mean": statistics.mean(a), "textvae_mean": statistics.mean(t),
                "authors_sd": statistics.stdev(a), "textvae_sd": statistics.stdev(t),
                "welch_p": None if math.isnan(p) else p, "diff": diff, "diff_ci95": [diff - half, diff + half],
                "textvae_within_authors_range": all(min(a) <= x <= max(a) for x in t),
                # P(the pooled min and max are both the authors') for m + n exchangeable continuous values
                "p_within_if_equal": m * (m - 1) / ((m + n) * (m + n - 1))}
    return res


def render(out: dict) -> str:
    fmt = {"neg_elbo": "{:.2f}", "kl": "{:.3f}", "mi": "{:.3f}", "au": "{:.0f}"}
    rows = ["| method | seed | −ELBO authors / textvae | KL authors / textvae | MI authors / textvae | "
            "AU authors / textvae | seconds authors / textvae |", "|---|---:|---:|---:|---:|---:|---:|"]
    by = {(r["side"], r["method"], r["seed"]): r for r in out["runs"]}
    seeds = sorted({r["seed"] for r in out["runs"]}, key=lambda s: out["budget"]["seeds"].index(s))
    for method in ("vae", "ours"):
        for s in seeds:
            a, t = by.get(("authors", method, s)), by.get(("textvae", method, s))
            cell = lambda k, f: " / ".join("—" if r is None else f.format(r[k]) for r in (a, t))  # noqa: E731
            rows.append(f"| {method.upper() if method == 'vae' else 'Ours'} | {s} | "
                        + " | ".join(cell(k, fmt[k]) for k in COLUMNS) + f" | {cell('seconds', '{:.0f}')} |")
    summ = summary(out)
    for method, cols in summ.items():
        cells = []
        for k in COLUMNS:
            c = cols[k]
            f = fmt[k] if k != "au" else "{:.1f}"
            p = "–" if c["welch_p"] is None else f"{c['welch_p']:.2f}"
            cells.append(f"{f.format(c['authors_mean'])} ± {f.format(c['authors_sd'])} / "
                         f"{f.format(c['textvae_mean'])} ± {f.format(c['textvae_sd'])} (p = {p})")
        rows.append(f"| {'VAE' if method == 'vae' else 'Ours'} | mean ± sd | " + " | ".join(cells) + " | |")
    rows.append("")
    rows.append("| textvae − authors (95 % Welch interval) | " + " | ".join(COLUMNS) + " |")
    rows.append("|---|" + "---:|" * len(COLUMNS))
    for method, cols in summ.items():
        rows.append(f"| {'VAE' if method == 'vae' else 'Ours'} | " + " | ".join(
            f"{cols[k]['diff']:+.3f} [{cols[k]['diff_ci95'][0]:+.3f}, {cols[k]['diff_ci95'][1]:+.3f}]" for k in COLUMNS)
            + " |")
    within = [f"{'VAE' if m == 'vae' else 'Ours'} {k}: {'yes' if c['textvae_within_authors_range'] else 'no'}"
              for m, cols in summ.items() for k, c in cols.items()]
    p_eq = next((c["p_within_if_equal"] for cols in summ.values() for c in cols.values()), None)
    text = "\n".join(rows) + "\n\nEvery textvae run inside the authors' min-max: " + "; ".join(within)
    if p_eq is not None:
        text += f" (chance that this holds for one column when both sides draw from one distribution: {p_eq:.2f})"
    return text + ".\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", default=os.environ.get("TEXTVAE_AUTHORS_REPO"))
    ap.add_argument("--ptb", default=str(SHARED / "ptb"))
    ap.add_argument("--full", action="store_true", help="the issue's budget: all of PTB's train and valid, PTB sizes")
    ap.add_argument("--train", type=int, default=4000, help="the first N training sentences (0: all)")
    ap.add_argument("--valid", type=int, default=500, help="the first N validation sentences (0: all)")
    ap.add_argument("--sizes", choices=("small", "ptb"), default="small")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--ae-epochs", type=int, default=3)
    ap.add_argument("--ae-init", default="spec", help="the AE's encoder_init (spec, torch, torch_forget)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each one process, one torch thread)")
    ap.add_argument("--json")
    ap.add_argument("--render", metavar="JSON", help="print the markdown table of a result file and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(json.loads(a.worker))), flush=True)
        return 0
    if a.render:
        print(render(json.loads(Path(a.render).read_text())), end="")
        return 0
    if a.full:
        a.train, a.valid, a.sizes = 0, 0, "ptb"
    if not a.authors:
        raise SystemExit("fidelity_trajectories: give --authors (a checkout of bohanli/vae-pretraining-encoder)")
    import torch
    torch.set_num_threads(1)
    sizes = PTB if a.sizes == "ptb" else SMALL
    work = Path(tempfile.mkdtemp(prefix="fidelity_traj_"))
    data = work / "ptb"
    counts = prepare(Path(a.ptb), data, a.train, a.valid)
    patched = work / "li_copy"
    patched_copy(Path(a.authors), patched)
    out = {"budget": {**counts, "sizes": sizes, "lam": LAM, "seeds": a.seeds, "epochs": 1, "lr": 0.5,
                      "warm_up_epochs": 10, "batch_size": 32},
           "command": " ".join(["python", "bench/fidelity_trajectories.py"] + sys.argv[1:]),
           "machine": machine(a.device), "runs": [], "failed": []}
    print(f"AE: {a.ae_epochs} epochs ({a.ae_init}) on {counts}", file=sys.stderr, flush=True)
    out["ae"] = train_ae(data, work, sizes, a.ae_epochs, a.ae_init, a.device)
    print("AE", out["ae"], file=sys.stderr, flush=True)
    common = {"patched": str(patched), "data": str(data), "sizes": sizes, "device": a.device,
              "ae": str(work / "ae" / "best.pt"), "ae_state": str(work / "ae_state.pt")}
    specs = [{**common, "side": side, "method": method, "seed": seed, "work": str(work / f"tv_{method}_{seed}")}
             for method in ("vae", "ours") for seed in a.seeds for side in ("authors", "textvae")]
    t0 = time.time()
    run_all(specs, a.jobs, out, a.json, work)
    out["runs_seconds"] = round(time.time() - t0, 1)
    out["summary"] = summary(out)
    return emit_json(out, a.json)


if __name__ == "__main__":
    sys.exit(main())
