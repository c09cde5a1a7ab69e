"""``textvae evaluate`` in bf16 against fp32, by set size: is bf16 (with its recorded fp32 check) ever slower?

    python bench/bench_precision.py [--sizes 1 3 10 30 60] [-K 1000] [--plain] [--repeat 2] [--write BENCHMARKS.md]

For each set size N (random PTB test sentences, the same for both precisions) it times the whole
``textvae.evaluation.evaluate.evaluate_model`` call, as ``textvae evaluate`` runs it: fp32, then bf16 with the default
check (``--precision-check 50``: fp32 on min(50, N / 10) sentences, or one sentence at K / 10 samples below 10
sentences), alternating, ``--repeat`` times, best kept. ``--plain`` adds the plain test pass (the whole PTB test
set at K = 1: Recon, KL, MI, AU and a one-sample IW). Random weights of the PTB sizes (vocabulary from
ptb.train.txt, emb 256, hidden 256, nz 32): the arithmetic does not depend on them. One process, load recorded.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from bench_common import cpu_model, publish  # noqa: E402
from textvae.modeling.checkpoint import check_bf16  # noqa: E402
from textvae.corpora.data import Vocab, count_tokens, read_corpus  # noqa: E402
from textvae.evaluation.evaluate import evaluate_model  # noqa: E402
from textvae.modeling.model import VAE, ModelConfig  # noqa: E402

SHARED = Path(os.environ.get("TEXTVAE_SHARED_DATA", REPO.parent / "shared" / "data"))
HEADING = "## bf16 against fp32 by set size (`textvae evaluate`)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 10, 30, 60])
    ap.add_argument("-K", type=int, default=1000)
    ap.add_argument("--plain", action="store_true", help="also time the whole test set at K = 1")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", help="raw timings")
    ap.add_argument("--write", help="replace this section of the given markdown file")
    args = ap.parse_args()
    check_bf16(torch.device("cpu"))
    train = read_corpus(SHARED / "ptb" / "ptb.train.txt")
    test = read_corpus(SHARED / "ptb" / "ptb.test.txt").sentences
    vocab = Vocab.build(train.sentences)
    torch.manual_seed(0)
    model = VAE(ModelConfig(vocab_size=len(vocab))).eval()
    rng = random.Random(0)
    cases = [(n, args.K, sorted(rng.sample(range(len(test)), n))) for n in args.sizes]
    if args.plain:
        cases.append((len(test), 1, list(range(len(test)))))
    info = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=REPO).stdout.strip(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": "python bench/bench_precision.py " + " ".join(sys.argv[1:]), "load_before": os.getloadavg()}
    rows = []
    for n, K, idx in cases:
        sents = [test[i] for i in idx]
        tokens = count_tokens([vocab.encode(s) for s in sents])
        best: dict[str, float] = {}
        check = None
        for _ in range(args.repeat):
            for prec in ("fp32", "bf16"):
                t = time.perf_counter()
                res = evaluate_model(model, vocab, sents, iw_samples=K, precision=prec,
                                     precision_check=50 if prec == "bf16" else 0)
                sec = time.perf_counter() - t
                best[prec] = min(best.get(prec, float("inf")), sec)
                check = res.get("precision_check", check)
        row = {"sentences": n, "tokens": tokens, "K": K, "fp32_s": best["fp32"], "bf16_s": best["bf16"],
               "speedup": best["fp32"] / best["bf16"],
               "check": f"{check['sentences']} × {check['samples']}" if check else "–"}
        rows.append(row)
        print(json.dumps(row), flush=True)
    info["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=2) + "\n")
    L = [HEADING, "",
         f"Machine: {info['cpu']}, {info['threads']} torch threads, torch {info['torch']}, commit {info['commit']}, "
         f"{info['date']}; load average {info['load_before'][0]:.2f} before, {info['load_after'][0]:.2f} after.  ",
         f"Command: `{info['command']}`.  ",
         "Whole `evaluate_model` calls (every metric), random PTB test sentences, best of "
         f"{args.repeat} alternating runs; bf16 includes its fp32 check (sentences × samples).", "",
         "| sentences | tokens | K | fp32 s | bf16 s (with check) | fp32 / bf16 | check |", "|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        L.append(f"| {r['sentences']} | {r['tokens']} | {r['K']} | {r['fp32_s']:.3f} | {r['bf16_s']:.3f} | "
                 f"{r['speedup']:.2f}× | {r['check']} |")
    publish("\n".join(L) + "\n", HEADING, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
