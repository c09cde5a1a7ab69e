"""Kernel-level measurements behind BENCHMARKS.md's summary (PTB shapes, CPU):

    python bench/bench_kernels.py [--reps 5] [--processes 4]

1. vocabulary padding: ``textvae.modeling.model.projected_nll`` forward + backward on [32, 22, 256] states against a
   [V, 256] projection, V = 10,002 (PTB) and 10,016 (padded to a multiple of 16), fp32 and bf16 autocast,
   interleaved, best of ``--reps``;
2. the IW fast path's per-tile operations on a [512, 10,002] tile: the bf16 matmul, a bf16 ``exp_`` with a
   widening sum, and the fp32 ``exp_`` and sum that ``FastVAE`` uses;
3. the spread of bf16 IW-NLL speed across fresh processes: ``iw_log_likelihood`` at K = 1000 on four fixed PTB
   test sentences, ``--processes`` fresh processes, without and with ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch's
   transparent-huge-page allocations).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TEXTVAE_SHARED_DATA", REPO.parent / "shared" / "data"))


def best_ms(fn, reps: int, number: int = 10) -> float:
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number * 1e3)
    return best


def padding(reps: int) -> None:
    from textvae.modeling.model import projected_nll
    torch.manual_seed(0)
    res: dict = {}
    for _ in range(reps):
        for prec in ("fp32", "bf16"):
            for v in (10002, 10016):
                h = (torch.randn(32, 22, 256) * 0.5).requires_grad_()
                w = (torch.randn(v, 256) * 0.05).requires_grad_()
                tg = torch.randint(0, 10002, (32, 22))

                def step():
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                        loss = projected_nll(h, w, tg).sum()
                    loss.backward()
                res.setdefault((prec, v), []).append(best_ms(step, 1, 10))
    print("1. projected_nll forward + backward, [704, 256] x [256, V], best of", reps, "interleaved (ms):")
    for (prec, v), ts in res.items():
        print(f"   {prec} V = {v}: {min(ts):.1f}")


def tile_ops(reps: int) -> None:
    torch.manual_seed(0)
    a16 = (torch.randn(512, 10002) * 3).bfloat16()
    h = torch.randn(512, 288).bfloat16()
    w = torch.randn(10002, 288).bfloat16()
    print("2. one [512, 10,002] IW projection tile (ms, best of", reps, "):")
    print(f"   bf16 matmul [512, 288] x [288, 10002]: {best_ms(lambda: h @ w.t(), reps):.2f}")
    print(f"   bf16 exp_ + widening sum (incl. a {best_ms(lambda: a16.clone(), reps):.2f} ms copy): "
          f"{best_ms(lambda: a16.clone().exp_().sum(1, dtype=torch.float32), reps):.2f}")
    print(f"   .float().exp_().sum(1) (FastVAE): {best_ms(lambda: a16.float().exp_().sum(1), reps):.2f}")


CHILD = """
import random, sys, time, torch
from textvae.corpora.data import Vocab, read_corpus
from textvae.evaluation.fast_vae import FastVAE, iw_log_likelihood
from textvae.modeling.model import VAE, ModelConfig
shared = sys.argv[1]
train = read_corpus(shared + '/ptb/ptb.train.txt'); test = read_corpus(shared + '/ptb/ptb.test.txt')
vocab = Vocab.build(train.sentences); torch.manual_seed(0)
model = VAE(ModelConfig(vocab_size=len(vocab))).eval()
idx = sorted(random.Random(0).sample(range(len(test.sentences)), 4))
exs = [vocab.encode(test.sentences[i]) for i in idx]
tok = sum(len(e) - 1 for e in exs)
f = FastVAE(model, 'cpu', 'bf16'); iw_log_likelihood(f, exs[:1], 1000)
best = 1e9
for _ in range(2):
    t = time.perf_counter(); iw_log_likelihood(f, exs, 1000); best = min(best, time.perf_counter() - t)
print(round(tok / best / 21.917, 2))
"""


def spread(processes: int) -> None:
    print(f"3. bf16 IW-NLL, K = 1000, 4 PTB test sentences, sentences/s at the test-mean length, "
          f"{processes} fresh processes each:")
    out: dict = {"default": [], "THP_MEM_ALLOC_ENABLE=1": []}
    for _ in range(processes):
        for name in out:
            env = dict(os.environ, **({"THP_MEM_ALLOC_ENABLE": "1"} if name != "default" else {}))
            r = subprocess.run([sys.executable, "-c", CHILD, str(SHARED)], capture_output=True, text=True, env=env,
                               cwd=REPO, check=True)
            out[name].append(float(r.stdout.strip().splitlines()[-1]))
    for name, v in out.items():
        print(f"   {name}: {', '.join(f'{x:.2f}' for x in v)} (range {min(v):.2f}-{max(v):.2f})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--processes", type=int, default=4)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    padding(args.reps)
    tile_ops(args.reps)
    spread(args.processes)
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
