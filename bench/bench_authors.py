"""textvae against the authors' own code (bohanli/vae-pretraining-encoder), interleaved, on this machine.

    python bench/bench_authors.py --authors DIR [--repeat 12] [--json out.json] [--write BENCHMARKS.md]
    python bench/bench_authors.py --authors DIR --quick            # a smoke run (under a minute on 2 cores)

``DIR`` is a checkout of the authors' repository (nothing of theirs is copied into this one):

    git clone https://github.com/bohanli/vae-pretraining-encoder DIR
    git clone /work/.mirror/bohanli+vae-pretraining-encoder/repo/.git DIR     # or from a local mirror of it
    mkdir DIR && git --git-dir=MIRROR/.git archive HEAD | tar -x -C DIR     # (no .git: commit not recorded)

(written against their commit bd4affa07bb01d7c673852ae1ec615f6bcae47ae, "fix decoders/__init__.py"). The bench
copies DIR to a temporary folder, applies the CPU changes below to that copy (each one checked against the
expected source: on its line, or on the one other line holding it; the run stops otherwise) and imports their
modules from there (``sys.path``). $TEXTVAE_AUTHORS_REPO may stand for ``--authors``.

Changes made to the authors' code, and nothing else (the list is also written into the JSON and markdown):

  1.-3. utils.py lines 120, 137 and 138 (``calc_mi``, which their ``test()`` calls): ``.cuda()`` -> ``.cpu()``.
        calc_mi moves the encoder's posterior means/log-variances to the GPU unconditionally; on a CPU run
        ``.cpu()`` is what their ``device = "cuda" if args.cuda else "cpu"`` (text_anneal_fb.py line 194) means.

Everything else runs as written: their ``init_config()`` (``sys.argv`` set to the command line of the workload,
the data paths pointed at ../shared/data/ptb afterwards), ``MonoTextData``, ``GaussianLSTMEncoder``,
``LSTMDecoder``, ``VAE.loss``, ``VAE.nll_iw``, ``test()``, ``calc_au``. ``args.cuda`` is False on a CPU
machine, so their own code picks ``device = "cpu"``. What is reproduced rather than called, and why:

* the training step: their loop body is inline in ``main()`` of text_anneal_fb.py (lines 299-360: batch
  fetch, KL-weight update, ``zero_grad``, the ``fb`` branches, ``loss.mean(dim=-1)``, backward,
  ``clip_grad_norm_(…, 5.0)``, both SGD steps, the ``.item()`` bookkeeping and the ``log_niter`` log line).
  ``authors_train_step`` (authors_checkout.py) repeats it statement for statement on their objects, and the bench checks at
  run time that those lines of the checkout still read as they did at the commit above (sha256). The setup
  before the loop (lines 175-215, 253-289) is repeated the same way in ``authors_setup`` (authors_checkout.py).
* the IW-NLL: ``calc_iwnll`` (utils.py lines 50-77) is a loop over batch-size-1 batches whose body is
  ``loss = model.nll_iw(batch_data, nsamples=args.iw_nsamples, ns=ns)`` and ``report_nll_loss +=
  loss.sum().item()`` (lines 67-69) plus a progress print (line 63). The bench runs that body per sentence, to
  time each sentence and keep its NLL for the agreement check (ns = 100 as calc_iwnll's default; ns = K when
  --quick's K is below 100); calc_iwnll itself cannot be called on fewer than 11 sentences: its progress
  print computes ``id_ % round(len(test_data_batch) / 20)``, a division by zero below that (a finding, not
  changed).
* the test pass: the ``--eval`` branch of ``main()`` (lines 222-228): ``create_data_batch`` of the test set,
  ``test(vae, test_data_batch, "TEST", args)`` and ``calc_au(vae, test_data_batch)``, under ``vae.eval()``
  and ``torch.no_grad()``, with their print-only logger (``create_exp_dir(..., debug=True)``, line 167); the
  timed window holds all three (the JSON splits it), as textvae's evaluate_model builds its batches inside.

Workloads (PTB configuration: vocabulary of ptb.train.txt, 10,002 types with the 4 specials, emb 256, hidden
256, nz 32, batch 32; the authors' config/config_ptb.py), each side in a FRESH process (the script re-invokes
itself with ``--worker``), in the order authors fp32 -> textvae fp32 -> textvae bf16, the starting side rotated
each round, ``--repeat`` rounds; the tables report the MEDIAN over the rounds (every raw timing, and the best,
is in the JSON). A run during whose timing window other processes used more than 0.05 cores is flagged and
rerun at once (``--retries``, default 2, none after ``--retry-budget-min``); a cell's median is over its clean
runs when it has any (marked otherwise):

1. ``train_vae``: the VAE step (``model.loss`` with kl_weight 1, i.e. fb = 0, kl_start 1; SGD lr 1.0, momentum
   0; clip 5) vs textvae method ``vae`` (lr 1.0 to match; the speed does not depend on it), fp32 and bf16.
2. ``train_ours``: the paper's method: the authors' ``--fb 2 --target_kl 6 --kl_start 0 --warm_up 10
   --load_path INIT --reset_dec`` step (per-dimension free bits, λ = 6) vs textvae method ``ours`` (λ = 6, its
   AE checkpoint = the same initial weights). The timed body of textvae is ``Trainer.train_epoch``'s loop
   body (``batch_loss``, ``_check_finite``, ``_step``, the three ``.item()`` sums), as bench_train.py drives
   the Trainer but with the bookkeeping the real loop does (the authors' body has its own ``.item()`` calls).
   Timed batches: ``--batches`` per run after ``--warmup``, drawn one per stratum of the length-sorted batch
   list of the epoch (so they follow the epoch's length distribution), in a shuffled order, the same batch
   shapes on both sides (both codebases build the same exact-length batches; checked).
3. ``iw``: IW-NLL at K = ``-K``: the authors' ``vae.nll_iw`` (chunks of ns = 100 samples) vs
   ``textvae.evaluation.fast_vae.iw_log_likelihood`` fp32 and bf16, on the SAME weights (the authors' initialisation,
   copied into a textvae VAE; parameter map in ``AUTHORS_TO_TEXTVAE``) and the same ``--iw-sentences`` test
   sentences (one per length stratum), one sentence per timing window. Both NLLs per sentence are recorded.
4. ``test``: a plain test pass on the whole PTB test set (3,761 sentences): the authors' test() + calc_au vs
   ``textvae.evaluation.evaluate.evaluate_model(..., iw_samples=0)`` (``textvae evaluate --iw-samples 0``: Recon, KL,
   −ELBO, MI (Li and He), AU; no IW estimate, as their test()), seconds. Its metrics are all fp32 whatever the
   precision, so only the fp32 side is timed.

Headline rates are tokens/s (predicted tokens: words + </s>); sentences/s are normalised to the mean length of
the PTB file in question (computed from it). Load: /proc/loadavg before and after every run, and for every
timed window the CPU time of OTHER processes (/proc/stat busy jiffies minus this process's own utime+stime
from /proc/self/stat) over the window's wall time; windows above 0.05 cores are flagged. Both sides use the
same ``torch.set_num_threads`` (``--threads``, default: all cores). bf16 is textvae's only (the authors' code
is fp32); on a CPU without bfloat16 LSTM kernels (textvae.modeling.checkpoint.check_bf16) the bf16 rows are skipped
with the reason recorded. Also checked, untimed, in the first (``prep``) process: the same vocabulary, the
same batch shapes, the same token ids, and log p(x|z) / q(z|x) of both models on the same z.

``--quick`` (3 batches after 1 warm-up, K = 50 on 2 sentences, a 100-sentence test pass, 1 round) is a smoke
run (30 s); the defaults (40 batches after 5, K = 1000 on 6 sentences, the whole test set, 12 rounds, so that
each side starts 4 of them) take about 15-16 minutes on a quiet 2-core machine (~75 s a round, of which ~2.5 s
per process is its start-up), more with reruns.
A 2-thread run that shares the 2 cores with another busy process slows down many-fold (the OpenMP threads
wait for each other), which is why such runs are flagged and rerun rather than averaged.

The code is split by concern: authors_checkout.py (their copy, configuration, set-up, loop body, weight map;
shared with bench/fidelity.py), bench_authors_workers.py (the timed workers), bench_authors_report.py (plan,
summary, markdown); this file runs them.

tests/test_bench_authors.py checks the weight copy (both models give the same log p(x|z) on the same z) and runs
--quick end to end when $TEXTVAE_AUTHORS_REPO names a checkout of the authors' repository (skipped otherwise).
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
from authors_checkout import (AUTHORS_COMMIT, AUTHORS_URL, LOOP, PATCHES, SHARED, loop_sha,  # noqa: E402,F401
                              other_cuda_mentions, patched_copy, weight_copy_check)
from bench_authors_report import (FLAG_CORES, HEADING, agreement, batch_shapes, make_plan,  # noqa: E402,F401
                                  render, run_flagged, stratified, summarise)
from bench_authors_workers import loadavg, worker_main  # noqa: E402
from bench_common import cpu_model, sh, write_section  # noqa: E402,F401

SIDES = [("authors", "fp32"), ("textvae", "fp32"), ("textvae", "bf16")]
WORKLOADS = ("train_vae", "train_ours", "iw", "test")


def run_worker(spec: dict, work: Path, name: str, timeout: float) -> dict:
    spec_path = work / f"{name}.spec.json"
    spec = {**spec, "out": str(work / f"{name}.out.json")}
    spec_path.write_text(json.dumps(spec))
    tmp = work / "tmp"          # the runs' temporary files (textvae's run folders) go with the work folder
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"]),
           "PYTHONWARNINGS": "ignore::UserWarning", "TMPDIR": str(tmp)}
    load0 = loadavg()
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=str(work))
        rc, out_tail = proc.returncode, (proc.stdout[-1500:] + proc.stderr[-3000:])
    except subprocess.TimeoutExpired as exc:
        rc, out_tail = "timeout", str(exc)[-1000:]
    rec = {"started": dt.datetime.fromtimestamp(t0).astimezone().isoformat(timespec="seconds"),
           "wall_s": round(time.time() - t0, 2), "loadavg_before": load0, "loadavg_after": loadavg(), "rc": rc}
    if rc == 0 and Path(spec["out"]).is_file():
        rec["result"] = json.loads(Path(spec["out"]).read_text())
    else:
        rec["error"] = out_tail
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--authors", default=os.environ.get("TEXTVAE_AUTHORS_REPO"),
                    help="checkout of the authors' repository (default $TEXTVAE_AUTHORS_REPO)")
    ap.add_argument("--ptb", default=str(SHARED / "ptb"), help="folder with ptb.{train,valid,test}.txt")
    ap.add_argument("--quick", action="store_true", help="smoke run: few batches, K = 50 on 2 sentences, "
                                                         "100 test sentences, 1 round")
    ap.add_argument("--repeat", type=int, help="rounds (default 12: each side starts 4 rounds; --quick 1)")
    ap.add_argument("--batches", type=int, help="timed training batches per run (default 40; --quick 3)")
    ap.add_argument("--warmup", type=int, help="untimed training batches first (default 5; --quick 1)")
    ap.add_argument("-K", type=int, help="IW samples (default 1000; --quick 50)")
    ap.add_argument("--iw-sentences", type=int, help="IW sentences per run (default 6; --quick 2)")
    ap.add_argument("--test-sentences", type=int, help="test-pass sentences (default all 3,761; --quick 100)")
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"],
                    help="textvae's precisions (the authors' side is fp32)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of every run")
    ap.add_argument("--seed", type=int, default=0, help="seed of the batch / sentence sampling")
    ap.add_argument("--json", help="write every raw timing and the provenance here")
    ap.add_argument("--write", help="replace the section of this markdown file (BENCHMARKS.md)")
    ap.add_argument("--keep", help="keep the worker files (specs, outputs, patched copy) in this folder")
    ap.add_argument("--timeout", type=float, default=900, help="seconds allowed to one run")
    ap.add_argument("--retries", type=int, default=2,
                    help="reruns of a run whose timing window was flagged (other processes > 0.05 cores)")
    ap.add_argument("--retry-budget-min", type=float, default=25,
                    help="no more reruns once the bench has run this many minutes")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker_main(a.worker)
    q = a.quick
    a.repeat = a.repeat or (1 if q else 12)
    a.batches = a.batches or (3 if q else 40)
    a.warmup = a.warmup if a.warmup is not None else (1 if q else 5)
    a.K = a.K or (50 if q else 1000)
    a.iw_sentences = a.iw_sentences or (2 if q else 6)
    a.test_sentences = a.test_sentences or (100 if q else None)
    if a.K > 100 and a.K % 100:
        ap.error("-K: the authors' nll_iw runs K/100 chunks of 100 samples: give a multiple of 100")
    if not a.authors:
        ap.error(f"--authors DIR (or $TEXTVAE_AUTHORS_REPO): a checkout of {AUTHORS_URL}")
    src = Path(a.authors).resolve()
    if not (Path(a.ptb) / "ptb.train.txt").is_file():
        ap.error(f"--ptb {a.ptb}: ptb.train.txt not found")

    t_start = time.time()
    load_start = loadavg()
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench_authors_"))
    work.mkdir(parents=True, exist_ok=True)
    patched = work / "authors_patched"
    if patched.exists():
        shutil.rmtree(patched)
    changes = patched_copy(src, patched)
    authors_commit = sh(["git", "rev-parse", "HEAD"], cwd=src) or "unknown (not a git checkout)"
    want = LOOP["sha256"]
    got = loop_sha(src)
    loop_check = "identical to the commit measured" if got == want else f"DIFFERS (sha256 {got[:12]} vs {want[:12]})"
    if got != want:
        print(f"bench_authors: warning: {LOOP['file']} lines {LOOP['first']}-{LOOP['last']} differ from commit "
              f"{AUTHORS_COMMIT[:12]}; authors_train_step may no longer match their loop", file=sys.stderr)
    plan = make_plan(a, work)
    base = {"threads": a.threads, "ptb": str(Path(a.ptb).resolve()), "patched": str(patched),
            "init_path": str(work / "authors_init.pt"), "tv_ckpt": str(work / "textvae_from_authors.pt"),
            **{k: plan[k] for k in ("batch_ids", "batch_shapes", "warmup_ids", "iw_ids", "extra_check_ids",
                                    "test_file")}, "K": a.K}
    print(f"bench_authors: work folder {work}; preparing (authors' weights, checks)", file=sys.stderr, flush=True)
    prep_run = run_worker({**base, "workload": "prep", "side": "both", "precision": "fp32"}, work, "prep",
                          a.timeout)
    if "result" not in prep_run:
        print(prep_run.get("error", ""), file=sys.stderr)
        raise SystemExit("bench_authors: the preparation step failed")
    prep = prep_run["result"]
    for k in ("vocab", "batches", "test_ids_identical"):
        print(f"  {k}: {prep[k]}", file=sys.stderr)
    for c in prep["same_z_checks"]:
        print(f"  same z ({c['weights']}): {c['max_abs_diff']}", file=sys.stderr, flush=True)
    if not (prep["vocab"]["identical"] and prep["batches"]["same_shapes"] and prep["batches"]["plan_shapes_match"]
            and prep["test_ids_identical"]):
        raise SystemExit("bench_authors: the two sides do not see the same data (see above)")
    skipped = {}
    if prep.get("bf16") and "bf16" in a.precision:
        skipped["bf16"] = prep["bf16"]
    sides = [s for s in SIDES if s[0] == "authors" or (s[1] in a.precision and s[1] not in skipped)]

    runs = []
    for r in range(a.repeat):
        for wl in a.workloads:
            rot = r % len(sides)
            for j, (side, prec) in enumerate(sides[rot:] + sides[:rot]):
                if wl == "test" and prec != "fp32":        # a plain test pass computes everything in fp32
                    continue
                for attempt in range(1 + a.retries):
                    name = f"r{r}_{wl}_{side}_{prec}_a{attempt}"
                    spec = {**base, "workload": wl, "side": side, "precision": prec, "seed": 1000 + r}
                    rec = run_worker(spec, work, name, a.timeout)
                    res = rec.get("result")
                    rec.update(workload=wl, side=side, precision=prec, round=r, position=j, attempt=attempt,
                               flagged=bool(res) and run_flagged(res))
                    runs.append(rec)
                    if res is None:
                        msg = f"FAILED ({rec['rc']}): {rec.get('error', '')[-400:]}"
                    elif wl == "test":
                        msg = f"{res['seconds']:.2f} s"
                    else:
                        msg = f"{res['tokens_per_s']:,.0f} tokens/s ({res['sentences_per_s']:.2f} sentences/s)"
                    oc = res["window"]["other_cores"] if res else None
                    print(f"  round {r} {wl:10s} {side:7s} {prec}{f' retry {attempt}' if attempt else ''}: {msg}; "
                          f"others {oc} cores{' FLAGGED' if rec['flagged'] else ''}; load "
                          f"{rec['loadavg_before'][0]:.2f}->{rec['loadavg_after'][0]:.2f}", file=sys.stderr,
                          flush=True)
                    if not rec["flagged"] or time.time() - t_start > 60 * a.retry_budget_min:
                        break
    summ = summarise(runs, plan)
    agree = agreement(runs, prep)
    run_summaries = [{"name": f"r{rr['round']} {rr['workload']} {rr['side']} {rr['precision']} a{rr['attempt']}",
                      "other_cores": rr["result"]["window"].get("other_cores"), "flagged": rr["flagged"]}
                     for rr in runs if rr.get("result")]
    loads = [x for rr in runs for x in (rr["loadavg_before"][0], rr["loadavg_after"][0])] or [0.0]
    dirty = bool(sh(["git", "status", "--porcelain", "--untracked-files=no"]))
    meta = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": a.threads,
            "commit": sh(["git", "rev-parse", "HEAD"]), "dirty": dirty,
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "python bench/bench_authors.py " + " ".join(sys.argv[1:]), "python": sys.version.split()[0],
            "authors_dir": str(src), "authors_commit": authors_commit, "authors_expected_commit": AUTHORS_COMMIT,
            "loop_check": loop_check, "load_start": load_start, "load_end": loadavg(),
            "wall_min": (time.time() - t_start) / 60, "load_range": [min(loads), max(loads)],
            "run_summaries": run_summaries, "flag_cores": FLAG_CORES,
            "aggregate": "median over the rounds' clean runs (all runs where a cell has none); best in summary",
            "lscpu": sh(["lscpu"])}
    section = render(meta, plan, prep, summ, agree, changes, skipped, a)
    print(section)
    if a.json:
        Path(a.json).write_text(json.dumps({"provenance": meta, "settings": {k: v for k, v in vars(a).items()},
                                            "plan": plan, "changes": changes,
                                            "other_cuda_mentions": other_cuda_mentions(src), "prep": prep,
                                            "skipped": skipped, "summary": summ, "agreement": agree,
                                            "runs": runs}, indent=1, default=str))
    if a.write:
        write_section(Path(a.write), HEADING, section)
        print(f"bench_authors: updated {a.write}", file=sys.stderr)
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all("result" in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
