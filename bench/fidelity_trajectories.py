"""Same-budget trajectories on real PTB at a reduced budget (docs/fidelity.md, "Same-budget trajectories"):
VAE and Ours (λ = 6) for one epoch with 3 seeds in each codebase, each with its OWN randomness (initialisation,
batch order, posterior noise, dropout), both Ours runs from one AE checkpoint (mapped); the validation −ELBO,
KL, MI (Li et al.'s whole-set estimator) and AU after the epoch.

    python bench/fidelity_trajectories.py --authors LI_DIR [--train 4000 --valid 500] [--json out.json]

The budget is reduced from the issue's (the whole PTB, PTB sizes) to what the shared 2-core machine allows:
the first ``--train`` PTB training sentences, the first ``--valid`` validation sentences, sizes 64/128/32
(embedding / LSTM / nz), batch 32, lr 0.5, annealing over 10 epochs as the paper (β reaches 0.1 after this one
epoch). The AE: textvae's AE trained ``--ae-epochs`` epochs on the same subset.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_checkout import SHARED, patched_copy  # noqa: E402
from bench_common import emit_json  # noqa: E402

SIZES = dict(enc_emb=64, dec_emb=64, enc_hidden=128, dec_hidden=128, nz=32)
SEEDS = (783435, 101, 202)
LAM = 6.0


def authors_run(patched: str, data: str, method: str, seed: int, ae: str) -> dict:
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
    args.ni, args.enc_nh, args.dec_nh, args.nz = SIZES["enc_emb"], SIZES["enc_hidden"], SIZES["dec_hidden"], SIZES["nz"]
    args.device = "cpu"
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
    st = {"model": vae, "lr": args.lr, "kl_weight": args.kl_start, "dim_target_kl": args.target_kl / float(args.nz),
          "opts": [torch.optim.SGD(vae.encoder.parameters(), lr=args.lr, momentum=args.momentum),
                   torch.optim.SGD(vae.decoder.parameters(), lr=args.lr, momentum=args.momentum)]}
    st["anneal_rate"] = (1.0 - args.kl_start) / (args.warm_up * (len(train) / args.batch_size)) if args.warm_up > 0 else 0
    tb = train.create_data_batch(batch_size=args.batch_size, device="cpu", batch_first=True)
    vb = val.create_data_batch(batch_size=args.batch_size, device="cpu", batch_first=True)
    vae.train()
    steps = []
    for i in np.random.permutation(len(tb)):
        step_anneal_fb(A.T, args, st, tb[i], steps)
    vae.eval()
    with torch.no_grad():
        loss, nll, kl, ppl, mi_ = A.T.test(vae, vb, "VAL", args)
        au, _ = A.U.calc_au(vae, vb)
    return {"neg_elbo": nll, "kl": kl, "mi": float(mi_), "au": int(au), "beta": st["kl_weight"]}


def textvae_run(data: Path, method: str, seed: int, ae: str, work: Path) -> dict:
    from textvae.training.trainer import TrainConfig, Trainer
    cfg = TrainConfig(method=method, seed=seed, max_epochs=1, progress=False, device="cpu",
                      lam=LAM if method == "ours" else None, init_from=ae if method == "ours" else None)
    t = Trainer(cfg, data, work, SIZES)
    r = t.fit()["history"][-1]
    return {"neg_elbo": r["val_elbo"], "kl": r["val_kl"], "mi": r["val_mi"], "au": r["val_au"], "beta": r["beta"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", default=os.environ.get("TEXTVAE_AUTHORS_REPO"))
    ap.add_argument("--ptb", default=str(SHARED / "ptb"))
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--valid", type=int, default=500)
    ap.add_argument("--ae-epochs", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(authors_run(a.worker[0], a.worker[1], a.worker[2], int(a.worker[3]), a.worker[4])))
        return 0
    import torch
    torch.set_num_threads(1)
    from textvae.training.trainer import TrainConfig, Trainer
    work = Path(tempfile.mkdtemp(prefix="fidelity_traj_"))
    data = work / "ptb"
    data.mkdir()
    for name, src, n in (("train", "ptb.train.txt", a.train), ("valid", "ptb.valid.txt", a.valid),
                         ("test", "ptb.valid.txt", a.valid)):
        with open(Path(a.ptb) / src) as fh:
            (data / f"{name}.txt").write_text("".join(next(fh) for _ in range(n)))
    ae = Trainer(TrainConfig(method="ae", max_epochs=a.ae_epochs, progress=False, device="cpu"), data, work / "ae",
                 SIZES)
    ae.fit()
    ae_path = str(work / "ae" / "best.pt")
    ae_state = work / "ae_state.pt"            # the AE's weights alone (textvae names), for the authors' side
    from textvae.modeling.checkpoint import load_checkpoint
    torch.save(load_checkpoint(ae_path)["model"], ae_state)
    patched = work / "li_copy"
    patched_copy(Path(a.authors), patched)
    out = {"budget": {"train": a.train, "valid": a.valid, "sizes": SIZES, "ae_epochs": a.ae_epochs, "lam": LAM,
                      "seeds": SEEDS}, "runs": []}
    for method in ("vae", "ours"):
        for seed in SEEDS:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
            p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(patched), str(data),
                                method, str(seed), str(ae_state)], capture_output=True, text=True, env=env,
                               cwd=str(work))
            if p.returncode:
                raise SystemExit(p.stderr[-3000:])
            au_res = json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))[7:])
            tv_res = textvae_run(data, method, seed, ae_path, work / f"tv_{method}_{seed}")
            out["runs"].append({"method": method, "seed": seed, "authors": au_res, "textvae": tv_res})
            print(method, seed, au_res, tv_res, file=sys.stderr, flush=True)
    for method in ("vae", "ours"):
        rs = [r for r in out["runs"] if r["method"] == method]
        for k in ("neg_elbo", "kl", "mi", "au"):
            av = [r["authors"][k] for r in rs]
            tv = [r["textvae"][k] for r in rs]
            out.setdefault("summary", {}).setdefault(method, {})[k] = {
                "authors_min": min(av), "authors_max": max(av), "authors_mean": statistics.mean(av),
                "textvae_min": min(tv), "textvae_max": max(tv), "textvae_mean": statistics.mean(tv),
                "textvae_within_authors_range": all(min(av) <= x <= max(av) for x in tv)}
    return emit_json(out, a.json)


if __name__ == "__main__":
    sys.exit(main())
