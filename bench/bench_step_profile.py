"""Where a training step's time goes: torch.profiler over real PTB batches, fp32 and bf16, one table per op.

    python bench/bench_step_profile.py [--method vae] [--batches 20] [--top 12] [--write BENCHMARKS.md]

Trains the PTB configuration (emb 256, hidden 256, nz 32, batch 32) on batches of 20-26 tokens (around PTB's
mean of 22.1), 5 warm-up batches, then times ``--batches`` steps without the profiler (ms/step) and profiles the
same number with it (self CPU time per op, per step). The profiler adds a little overhead per op, so its
per-step total is somewhat above the unprofiled ms/step.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from bench_common import cpu_model, publish  # noqa: E402
from bench_train import PTB_SIZES, shared_ptb  # noqa: E402
from textvae.training.trainer import TrainConfig, Trainer  # noqa: E402

HEADING = "## Where a training step's time goes (profiler)"


def profile_steps(method: str, precision: str, batches: int, data: Path) -> dict:
    t = Trainer(TrainConfig(method=method, progress=False, device="cpu", precision=precision,
                            lam=4.0 if method in ("ours", "fb", "fbp") else None), data,
                tempfile.mkdtemp(prefix="bench_prof_"), PTB_SIZES)
    t.model.train()
    params = list(t.model.parameters())
    xs = [x for x in t.train_batches.tensors if x.size(0) == 32 and 20 <= x.size(1) - 1 <= 26]
    xs = [xs[i * len(xs) // (5 + 2 * batches)] for i in range(5 + 2 * batches)]   # spread over the lengths

    def step(x):
        loss, _, _ = t.batch_loss(x, 1.0)
        mean = loss.mean()
        t._step(mean, t.optimizers, params)
        loss.detach().sum().item()

    for x in xs[:5]:
        step(x)
    s = time.perf_counter()
    for x in xs[5:5 + batches]:
        step(x)
    ms = (time.perf_counter() - s) / batches * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x in xs[5 + batches:]:
            step(x)
    ops = sorted(((e.key, e.self_cpu_time_total / 1e3 / batches, e.count / batches) for e in prof.key_averages()),
                 key=lambda r: -r[1])
    return {"ms_per_step": ms, "profiled_ms_per_step": sum(o[1] for o in ops), "ops": ops}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--method", default="vae")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--write", help="replace this section of the given markdown file")
    args = ap.parse_args()
    data = shared_ptb()
    load0 = os.getloadavg()[0]
    res = {p: profile_steps(args.method, p, args.batches, data) for p in ("fp32", "bf16")}
    load1 = os.getloadavg()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    cpu = cpu_model()
    L = [HEADING, "",
         f"Machine: {cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, commit {commit}, "
         f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}; load average {load0:.2f} before, "
         f"{load1:.2f} after.  ",
         f"Command: `python bench/bench_step_profile.py {' '.join(sys.argv[1:])}` (method {args.method}, "
         f"{args.batches} batches of 32 sentences with 20-26 tokens).", ""]
    for p, r in res.items():
        L += [f"{p}: {r['ms_per_step']:.1f} ms per step unprofiled ({32 / r['ms_per_step'] * 1e3:.0f} sentences/s "
              f"at these lengths); under the profiler {r['profiled_ms_per_step']:.1f} ms.", "",
              "| op | ms per step (self) | share | calls per step |", "|---|---:|---:|---:|"]
        for name, msv, calls in r["ops"][:args.top]:
            L.append(f"| `{name}` | {msv:.2f} | {msv / r['profiled_ms_per_step']:.0%} | {calls:.0f} |")
        L.append("")
    publish("\n".join(L), HEADING, args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
