"""The markdown summary of bench/gpu_check.py's results (gpu_check.json → gpu_check.md, ready for BENCHMARKS.md).

Floors the measured rates are compared with (bench/gpu_check.py's one home for them): an H200's dense bf16 matrix
rate as measured on such a machine of this workplace (about 790 TFLOP/s, the device notes' KINDS.md) and its
plain fp32 rate by the datasheet (about 67 TFLOP/s, the device notes' H200.md). FLOPs per sentence come from
bench/bench_train.py (training) and bench/bench_evaluate.py (IW-NLL at K = 1000).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import AGG_INNER, train_flops_per_token  # noqa: E402

FLOOR_TFLOPS = {"bf16": 790.0, "fp32": 67.0}
PTB_TEST_SENTENCES = 3761
PTB_TEST_TOKENS_PER_SENT = 82430 / 3761
PTB_TRAIN_SENTENCES = 42068
ONE_SAMPLE = ("ae", "vae", "ours")      # rows whose FLOPs are the one-sample formula of train_flops_per_token


def _f(v, fmt="{:.1f}", none="–") -> str:
    return none if v is None else fmt.format(v)


def render(res: dict) -> str:
    info = res.get("info", {})
    steps = res.get("steps", {})
    smoke = res.get("mode") == "cpu-smoke"
    L = ["### GPU check results (bench/gpu_check.sh)" + (" — CPU smoke run, toy sizes: not a measurement" if smoke else ""),
         "",
         f"- machine: {info.get('gpu') or 'no GPU'} ({_f(info.get('gpu_mib'), '{:,} MiB')}, capability "
         f"{info.get('capability')}), {info.get('cores')} CPU cores; nvidia-smi: {info.get('nvidia_smi')}",
         f"- torch {info.get('torch')} (CUDA {info.get('cuda')}), Python {info.get('python')}; TF32 allowed: matmul "
         f"{info.get('tf32_matmul')}, cuDNN {info.get('tf32_cudnn')}; pytest {info.get('has_pytest')}, snakemake "
         f"{info.get('has_snakemake')}, dvc {info.get('has_dvc')}",
         f"- commit `{info.get('commit')}`{' (uncommitted changes)' if info.get('dirty') else ''}; started "
         f"{res.get('started')}; {res.get('elapsed_s')} s of a {res.get('budget_s')} s budget; data: "
         f"{res.get('data', {}).get('source')} ({_f(res.get('data', {}).get('train_sentences'), '{:,}')} "
         "training sentences)", "",
         "| step | status | seconds |", "|---|---|---:|"]
    for name, s in steps.items():
        L.append(f"| {name} | {s.get('status')} | {s.get('seconds', '–')} |")
    L += _tests(steps.get("cuda_tests", {})) + _train(steps.get("train", {})) + _iw(steps.get("iw", {}))
    L += _packing(steps.get("packing", {})) + _tables(steps.get("tables", {}), steps.get("iw", {}))
    return "\n".join(L) + "\n"


def _tests(s: dict) -> list[str]:
    t = s.get("tests")
    if not t:
        return []
    c = t["counts"]
    L = ["", f"CUDA tests (tests/test_cuda.py): {c['passed']} passed, {c['failure']} failed, {c['error']} errors, "
         f"{c['skipped']} skipped."]
    for case in t["cases"]:
        if case["outcome"] != "passed":
            L.append(f"- {case['name']}: {case['outcome']} — {case['detail']}")
    return L


def _train(s: dict) -> list[str]:
    rows = s.get("rows")
    if not rows:
        return []
    sz = (s.get("info") or {}).get("sizes") or {}
    L = ["", f"Training throughput, PTB data (emb {sz.get('enc_emb', 256)}, hidden {sz.get('enc_hidden', 256)}, "
         f"nz {sz.get('nz', 32)}, batch 32, one job at a time): "
         "timed windows after a warm-up; aggressive as the outer rate at 60 encoder + 1 decoder passes per batch. "
         "% of floor = tokens/s × FLOPs per token (3 × 2 × [4H(E+H) + 4H(E+nz+H) + H·V]) over "
         f"{FLOOR_TFLOPS['fp32']:.0f} TFLOP/s (fp32) or {FLOOR_TFLOPS['bf16']:.0f} TFLOP/s (bf16), one-sample "
         "methods only.", "",
         "| method | precision | sentences/s | tokens/s | vs fp32 | peak GPU MiB | % of floor |", "|---|---|---:|---:|---:|---:|---:|"]
    fp32 = {r["method"]: r for r in rows if r["precision"] == "fp32"}
    for r in rows:
        agg = r["method"].startswith("aggressive")
        rate = r.get("sentences_per_s_at_61_passes") if agg else r["sentences_per_s"]
        base = fp32.get(r["method"])
        base_rate = (base.get("sentences_per_s_at_61_passes") if agg else base["sentences_per_s"]) if base else None
        frac = None
        if r["method"] in ONE_SAMPLE and r["precision"] in FLOOR_TFLOPS:
            frac = 100 * r["tokens_per_s"] * train_flops_per_token(r.get("vocab", 10002)) / (
                FLOOR_TFLOPS[r["precision"]] * 1e12)
        L.append(f"| {r['method']} | {r['precision']} | {_f(rate)} | {r['tokens_per_s']:,} | "
                 f"{_f(rate / base_rate if base_rate and rate else None, '{:.2f}×')} | {_f(r.get('peak_gpu_mib'), '{:,}')} | "
                 f"{_f(frac, '{:.3f} %')} |")
    L.append(f"\n(aggressive rows: passes per outer batch assumed {AGG_INNER} + 1, as in BENCHMARKS.md's CPU table)")
    for precision, why in (s.get("skipped") or {}).items():
        L.append(f"\n{precision} rows not run: {why}")
    return L


def iw_rates(s: dict) -> dict:
    """sentences/s at the PTB-test mean length, per evaluator row of bench_evaluate's JSON."""
    return {name: r["tokens"] / r["seconds"] / PTB_TEST_TOKENS_PER_SENT for name, r in (s.get("rows") or {}).items()
            if r.get("seconds")}


def _iw(s: dict) -> list[str]:
    rates = iw_rates(s)
    if not rates:
        return []
    k = (s.get("info") or {}).get("K", 1000)
    flops = 2 * s["floor"]["macs_ours"] if s.get("floor") else None     # per sentence at K = 1000, test-mean length
    L = ["", f"IW-NLL (bench/bench_evaluate.py, K = {k}, {s['rows'].get('ours (fp32)', {}).get('sentences')} random "
         "PTB test sentences in one call, the GPU row budget; authors' loop: one sentence at a time). Goal: the "
         "full PTB test (3,761 sentences) in under one minute. % of floor: our FLOPs per sentence at K = 1000 "
         f"({_f(flops and flops / 1e9, '{:.0f}')} GFLOP) over the precision's floor (bf16: the projection and "
         "recurrent matmuls).", "",
         "| evaluator | sentences/s (test-mean length) | full PTB test | goal < 60 s | % of floor |",
         "|---|---:|---:|---|---:|"]
    for name, sps in rates.items():
        full = PTB_TEST_SENTENCES / sps * (1000 / k)
        prec = "bf16" if "bf16" in name else "fp32"
        frac = 100 * sps * (k / 1000) * flops / (FLOOR_TFLOPS[prec] * 1e12) if flops and "ours" in name else None
        L.append(f"| {name} | {sps * k / 1000:.2f} (at K = 1000) | {full:.1f} s | {'met' if full < 60 else 'not met'} "
                 f"| {_f(frac, '{:.2f} %')} |")
    return L


def _packing(s: dict) -> list[str]:
    levels = [lv for lv in s.get("levels") or [] if lv.get("rows")]
    if not levels:
        return []
    one = levels[0].get("aggregate_sentences_per_s")
    L = ["", "Packing: N concurrent PTB training jobs (VAE, fp32, batch 32) on the one GPU, each through "
         "`python -m textvae.workflow.gpu_slots --slots-per-device N`, timed together (a barrier starts every job's window "
         "at once). Aggregate = all sentences over the span of the windows.", "",
         "| jobs | aggregate sentences/s | per job | vs 1 job | GPU memory used (max) | per job | peak reserved "
         "per job | mean GPU util |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for lv in levels:
        gpu = lv.get("gpu") or {}
        agg = lv.get("aggregate_sentences_per_s")
        used = gpu.get("max_used_mib")
        L.append(f"| {lv['jobs']}{'' if lv['status'] == 'ok' else ' (' + lv['status'] + ')'} | {_f(agg)} | "
                 f"{_f(lv.get('per_job_sentences_per_s'))} | {_f(agg / one if one and agg else None, '{:.2f}×')} | "
                 f"{_f(used, '{:,.0f} MiB')} | {_f(used / lv['jobs'] if used else None, '{:,.0f} MiB')} | "
                 f"{_f(lv.get('peak_reserved_mib_per_job'), '{:,} MiB')} | {_f(gpu.get('mean_util_pct'), '{:.0f} %')} |")
    return L


def _tables(s: dict, iw: dict) -> list[str]:
    phases = [p for p in s.get("phases") or [] if p.get("rows")]
    if not phases:
        return []
    L = ["", "Tables 1-3, PTB rows (params.yaml), the real `textvae train` commands through the slot pool, "
         "shortened (`--epochs/--max-train/--max-valid`; the vocabulary is that of the slice): the AE alone, "
         "then every other row at once.", "",
         "| phase | run | epochs done | train sentences | vocab | sentences/s (last epoch) | epoch of full PTB |",
         "|---|---|---:|---:|---:|---:|---:|"]
    worst = {}
    for p in phases:
        for r in p["rows"]:
            sps = r.get("sentences_per_s")
            epoch = PTB_TRAIN_SENTENCES / sps if sps else None
            if epoch:
                worst[p["phase"]] = max(worst.get(p["phase"], 0.0), epoch)
            L.append(f"| {p['phase']} | {r['run']} | {r['epochs']} | {_f(r.get('train_examples'), '{:,}')} | "
                     f"{_f(r.get('vocab'), '{:,}')} | {_f(sps)} | {_f(epoch and epoch / 60, '{:.1f} min')} |")
    epoch_h = sum(worst.values()) / 3600
    runs = sum(len(p["rows"]) for p in phases)
    missing = [r["run"] for p in phases for r in p["rows"] if not r.get("sentences_per_s")]
    iw_sps = iw_rates(iw).get("ours (fp32)")           # the pipeline's evaluate jobs run in fp32 (the default)
    eval_h = runs * PTB_TEST_SENTENCES / iw_sps / 3600 * (1000 / (iw.get("info") or {}).get("K", 1000)) \
        if iw_sps else None
    cap = s.get("max_epochs") or 100
    L += ["", f"Projection for one GPU: one epoch of every run = the slowest AE epoch + the slowest epoch of the "
          f"others running together = {epoch_h:.2f} h per epoch; at the {cap}-epoch cap of params.yaml at most "
          f"{cap * epoch_h:.0f} h (runs stop earlier when the learning rate has decayed 5 times; a run finishing "
          "early speeds up the rest, so this is an upper bound, and the aggressive rows' rate is that of their "
          "aggressive phase; validation adds to the training-only epoch times). IW-NLL of the "
          f"{runs} runs at K = 1000 in fp32, one after another: {_f(eval_h and eval_h * 60, '{:.1f} min')}."]
    if missing:
        L.append(f"Not in the projection (no epoch finished in the time box): {', '.join(missing)}.")
    return L
