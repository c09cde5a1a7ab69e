"""bench/bench_authors.py's plan (which batches and sentences are timed; pure Python, no torch), the summary
of its runs, the agreement of the two codebases, and the markdown section it writes."""
from __future__ import annotations

import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_checkout import AUTHORS_URL, LAM, LOOP, PTB_SIZES  # noqa: E402
from bench_authors_workers import _HZ  # noqa: E402

HEADING = "## Against the authors' code (interleaved)"
FLAG_CORES = 0.05          # a timing window during which other processes used more than this is flagged

# differences between the two codebases that the bench ran into (rendered with the results)
DISCREPANCIES = [
    "the authors' decoder embedding is `nn.Embedding(len(vocab), ni, padding_idx=-1)` (modules/decoders/"
    "dec_lstm.py line 28, commented \"no padding when setting padding_idx to -1\"), but PyTorch reads -1 as the "
    "last index: the decoder embedding of the last vocabulary type (PTB: `unilab`, id 10001) never receives a "
    "gradient in their training. textvae's decoder embedding has no padding index. The forward pass, and so "
    "every number on the same weights, is unaffected",
    "calc_iwnll (utils.py line 63) divides by zero (`id_ % round(len(test_data_batch) / 20)`) on fewer than "
    "11 sentences; the bench runs its loop body instead",
    "the IW estimators draw different noise: the authors re-run the encoder for every chunk of 100 samples and "
    "draw from the global torch RNG; textvae encodes once and draws each sentence's samples from its own "
    "seeded generator, accumulating log p(x|z) in float64 (theirs: a float32 sum of nn.CrossEntropyLoss with "
    "all-ones class weights). On the same weights and the same z the two log p(x|z) agree to float32 rounding "
    "(the same-z lines above)",
]



# ==========================================================================================================
# The plan (pure Python: no torch in the parent process)
# ==========================================================================================================

def read_lengths(path: Path) -> list[int]:
    """Words per non-empty line (both codebases drop empty lines)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            n = len(line.split())
            if n:
                out.append(n)
    return out


def batch_shapes(lengths: list[int], batch_size: int = 32) -> list[list[int]]:
    """Shapes of the exact-length batches both codebases build (sorted by length, chunks of batch_size)."""
    counts: dict[int, int] = {}
    for n in lengths:
        counts[n] = counts.get(n, 0) + 1
    out = []
    for n in sorted(counts):
        c = counts[n]
        for s in range(0, c, batch_size):
            out.append([min(batch_size, c - s), n + 2])
    return out


def stratified(n: int, k: int, rng: random.Random) -> list[int]:
    """One random index from each of ``k`` equal strata of ``range(n)`` (items sorted by length)."""
    k = min(k, n)
    edges = [round(i * n / k) for i in range(k + 1)]
    return [rng.randrange(edges[i], edges[i + 1]) for i in range(k)]


def make_plan(a, work: Path) -> dict:
    """Which batches and sentences every run times (the same for every side and round)."""
    ptb = Path(a.ptb)
    train_len = read_lengths(ptb / "ptb.train.txt")
    full_test_len = read_lengths(ptb / "ptb.test.txt")
    rng = random.Random(a.seed)
    shapes = batch_shapes(train_len)
    ids = stratified(len(shapes), a.batches, rng)      # batches are sorted by length: strata = length bands
    rng.shuffle(ids)
    rest = sorted(set(range(len(shapes))) - set(ids))
    warm = rng.sample(rest, min(a.warmup, len(rest)))
    test_file, test_len = ptb / "ptb.test.txt", full_test_len
    if a.test_sentences and a.test_sentences < len(full_test_len):
        by_len = sorted(range(len(full_test_len)), key=lambda i: (full_test_len[i], i))
        keep = sorted(by_len[j] for j in stratified(len(by_len), a.test_sentences, rng))
        lines = [ln for ln in (ptb / "ptb.test.txt").read_text(encoding="utf-8").splitlines() if ln.split()]
        test_file = work / "test_subset.txt"
        test_file.write_text("".join(lines[i] + "\n" for i in keep), encoding="utf-8")
        test_len = [full_test_len[i] for i in keep]
    # IW sentences (and the same-z check's extra ones): one per length stratum of the test-pass file
    by_len = sorted(range(len(test_len)), key=lambda i: (test_len[i], i))
    iw_ids = [by_len[j] for j in stratified(len(by_len), a.iw_sentences, rng)]
    extra = [by_len[j] for j in stratified(len(by_len), 6, random.Random(a.seed + 1))]
    timed = [shapes[k] for k in ids]
    return {
        "batch_ids": ids, "batch_shapes": timed, "warmup_ids": warm, "iw_ids": iw_ids, "extra_check_ids": extra,
        "test_file": str(test_file), "test_sentences": len(test_len),
        "train_mean_tokens": (sum(train_len) + len(train_len)) / len(train_len),
        "test_mean_tokens": (sum(full_test_len) + len(full_test_len)) / len(full_test_len),
        "train_batches_in_epoch": len(shapes), "train_sentences": len(train_len),
        "timed_batch_mean_tokens": sum(b * (t - 1) for b, t in timed) / max(1, sum(b for b, _ in timed)),
        "iw_tokens_per_sentence": [test_len[i] + 1 for i in iw_ids],
    }


# ==========================================================================================================
# The parent: interleaved runs, summary, markdown
# ==========================================================================================================

def _med(xs):
    return statistics.median(xs) if xs else None


def window_flagged(w: dict) -> bool:
    """Other processes used more than FLAG_CORES during the window (and more than the 2-jiffy read-out
    resolution of /proc/stat, which a sub-second window could otherwise exceed by rounding alone)."""
    return (w.get("other_cores") or 0.0) > FLAG_CORES and (w.get("other_cpu_s") or 0.0) > 2.0 / _HZ


def run_flagged(res: dict) -> bool:
    return window_flagged(res["window"]) or any(window_flagged(w) for w in res.get("windows", []))


def summarise(runs: list[dict], plan: dict) -> dict:
    """Per workload × side: the median (and best) over the rounds' clean runs (all runs where none is clean)."""
    groups: dict = {}
    for r in runs:
        groups.setdefault(f"{r['workload']}|{r['side']}|{r['precision']}", []).append(r)
    out: dict = {}
    for key, rs in groups.items():
        wl = key.split("|")[0]
        ok = [r for r in rs if r.get("result")]
        clean = [r for r in ok if not r["flagged"]]
        use = clean or ok
        d = {"runs": len(rs), "failed": len(rs) - len(ok), "flagged": len(ok) - len(clean),
             "clean": len(clean), "used": "clean runs" if clean else "all runs (no clean run)",
             "other_cores": [r["result"]["window"].get("other_cores") for r in ok]}
        if wl == "test":
            d["values"] = [r["result"]["seconds"] for r in use]
            d["without_iw"] = [r["result"]["seconds_without_iw"] for r in use]
            d["median_without_iw"] = _med(d["without_iw"])
        else:
            d["values"] = [r["result"]["tokens_per_s"] for r in use]
        d["median"] = _med(d["values"])
        d["best"] = ((min if wl == "test" else max)(d["values"])) if d["values"] else None
        if d["median"] and wl != "test":
            mean = plan["train_mean_tokens"] if wl.startswith("train") else plan["test_mean_tokens"]
            d["median_sentences_per_s_at_mean_length"] = d["median"] / mean
        out[key] = d
    return out


def agreement(runs: list[dict], prep: dict) -> dict:
    """NLL per sentence of both sides on the same weights (IW runs), and the test-pass metrics."""
    res: dict = {"same_z": prep.get("same_z_checks")}
    last: dict = {}     # one run per round and side (the last successful attempt; a rerun repeats its noise)
    for r in runs:
        if r.get("result"):
            last[(r["workload"], r["side"], r["precision"], r["round"])] = r
    iw = {}
    for (wl, side, prec, _), r in sorted(last.items()):
        if wl == "iw":
            iw.setdefault(f"{side} {prec}", []).append(r["result"]["nll"])
    if "authors fp32" in iw:
        a = [statistics.mean(c) for c in zip(*iw["authors fp32"])]
        spread = [max(c) - min(c) for c in zip(*iw["authors fp32"])] if len(iw["authors fp32"]) > 1 else None
        res["iw"] = {"authors_nll_per_sentence": a, "authors_mc_spread_across_rounds": spread}
        for k, v in iw.items():
            if k == "authors fp32":
                continue
            t = [statistics.mean(c) for c in zip(*v)]
            d = [ti - ai for ti, ai in zip(t, a)]
            res["iw"][k] = {"nll_per_sentence": t, "diff_vs_authors": d,
                            "mean_abs_diff": statistics.mean(abs(x) for x in d), "max_abs_diff": max(abs(x) for x in d),
                            "mean_nll_authors": statistics.mean(a), "mean_nll": statistics.mean(t)}
    tp = {}
    for (wl, side, prec, _), r in sorted(last.items()):
        if wl == "test":
            tp.setdefault(f"{side} {prec}", r["result"]["metrics"])
    res["test_pass"] = tp
    return res


def fmt_rate(v: float, mean: float) -> str:
    """tokens/s (sentences/s at the mean length, 3 significant digits)."""
    sps = v / mean
    return f"{v:,.0f} ({sps:,.{max(0, 2 - int(math.floor(math.log10(sps))))}f})" if sps > 0 else f"{v:,.0f}"


def render(meta: dict, plan: dict, prep: dict, summ: dict, agree: dict, changes: list[dict], skipped: dict,
           a) -> str:
    L = [HEADING, ""]
    L.append(f"The authors' own code ([{AUTHORS_URL.split('github.com/')[1]}]({AUTHORS_URL}) at "
             f"`{meta['authors_commit'][:12]}`, imported from a checkout with the CPU changes listed below; none of "
             "it is in this repository) against textvae on the same machine in one run: every workload × side in "
             "a fresh process, in the order authors → textvae fp32 → textvae bf16 with the first side rotated "
             f"each round, {a.repeat} round(s); each cell is the **median over the rounds** (every timing is in "
             "the JSON). Ratios are textvae's speed over the authors' (> 1: textvae faster).")
    L.append("")
    L.append(f"- machine: {meta['cpu']}, {meta['cores']} cores, {meta['threads']} torch threads on both sides; "
             f"torch {prep.get('torch')}; textvae commit `{meta['commit'] or 'unknown'}`"
             f"{' (uncommitted changes)' if meta.get('dirty') else ''}; {meta['date']}")
    L.append(f"- command: `{meta['command']}` ({meta['wall_min']:.1f} min)")
    ws = [r for r in meta["run_summaries"] if r.get("other_cores") is not None]
    flagged = sum(1 for r in ws if r["flagged"])
    L.append(f"- load: load average {meta['load_start'][0]:.2f} at the start, {meta['load_end'][0]:.2f} at the "
             f"end (range over the runs {meta['load_range'][0]:.2f}-{meta['load_range'][1]:.2f}); other "
             f"processes used at most {max((r['other_cores'] for r in ws), default=0):.3f} cores during a timed "
             f"run (median {_med([r['other_cores'] for r in ws]) or 0:.3f}); {flagged} of {len(ws)} runs had a "
             f"timing window above {FLAG_CORES} cores: such a run is rerun at once (up to {a.retries} times) and "
             "left out of the median when its cell has clean runs; † marks a cell without any (its median is "
             "over flagged runs)")
    L.append(f"- data: PTB, vocabulary {prep['vocab']['authors']:,} (identical on both sides: "
             f"{prep['vocab']['identical']}); training: {len(plan['batch_ids'])} timed batches per run after "
             f"{len(plan['warmup_ids'])} warm-up, one per stratum of the epoch's {plan['train_batches_in_epoch']:,} "
             f"length-sorted batches ({plan['timed_batch_mean_tokens']:.1f} predicted tokens per sentence; PTB "
             f"train mean {plan['train_mean_tokens']:.3f}), same batch shapes on both sides: "
             f"{prep['batches']['same_shapes']}; IW: {len(plan['iw_ids'])} test sentences per run, one per length "
             f"stratum ({', '.join(map(str, plan['iw_tokens_per_sentence']))} tokens), K = {a.K}; test pass: "
             f"{plan['test_sentences']:,} sentences")
    if skipped:
        L.append(f"- skipped: {'; '.join(f'{k}: {v}' for k, v in skipped.items())}")
    L += ["", "| workload | authors fp32 | textvae fp32 (ratio) | textvae bf16 (ratio) |", "|---|---:|---:|---:|"]

    def cell(wl, side, prec, field="median", base=None, lower=False, unit=""):
        d = summ.get(f"{wl}|{side}|{prec}")
        if not d or d.get(field) is None:
            return "skipped" if prec in skipped else "–"
        v = d[field]
        mean = plan["train_mean_tokens"] if wl.startswith("train") else plan["test_mean_tokens"]
        s = f"{v:.2f} s" if wl == "test" else fmt_rate(v, mean)
        if not d["clean"]:
            s += " †"
        if base is not None and base:
            ratio = base / v if lower else v / base
            s += f" ({ratio:.2f}×)"
        return s

    rows = [("train_vae", "VAE training: tokens/s (sentences/s at the PTB-train mean length)"),
            ("train_ours", f"Ours training (λ = {LAM:g}, per-dimension free bits): tokens/s (sentences/s)"),
            ("iw", f"IW-NLL, K = {a.K}: tokens/s (sentences/s at the PTB-test mean length)")]
    for wl, label in rows:
        base = (summ.get(f"{wl}|authors|fp32") or {}).get("median")
        L.append(f"| {label} | {cell(wl, 'authors', 'fp32')} | {cell(wl, 'textvae', 'fp32', base=base)} | "
                 f"{cell(wl, 'textvae', 'bf16', base=base)} |")
    base = (summ.get("test|authors|fp32") or {}).get("median")
    L.append(f"| plain test pass ({plan['test_sentences']:,} sentences): seconds — authors: test() + calc_au; "
             f"textvae: `evaluate --iw-samples 0` (all fp32) | {cell('test', 'authors', 'fp32')} | "
             f"{cell('test', 'textvae', 'fp32', base=base, lower=True)} | – |")

    L += ["", "Agreement on the same weights (the authors' initialisation, copied into a textvae VAE):", ""]
    for c in agree.get("same_z") or []:
        m = c["max_abs_diff"]
        L.append(f"- same z, {c['weights']}: max |Δ| over {c['sentences']} sentences × "
                 f"{c['samples_per_sentence']} samples: log p(x|z) {m['log_px_z']:.2g} nats "
                 f"(|log p| ≈ {c['mean_abs_log_px_z']:.0f}; relative {m['log_px_z_rel']:.2g}), "
                 f"μ {m['mu']:.2g}, log σ² {m['logvar']:.2g}")
    iw = agree.get("iw") or {}
    for k in ("textvae fp32", "textvae bf16"):
        if k in iw:
            d = iw[k]
            L.append(f"- IW-NLL (K = {a.K}), {k} − authors per sentence: mean |Δ| {d['mean_abs_diff']:.4f}, "
                     f"max |Δ| {d['max_abs_diff']:.4f} nats (mean NLL {d['mean_nll']:.3f} vs "
                     f"{d['mean_nll_authors']:.3f}; different Monte-Carlo noise on the two sides)")
    if iw.get("authors_mc_spread_across_rounds"):
        sp = iw["authors_mc_spread_across_rounds"]
        L.append(f"- the authors' own Monte-Carlo spread across rounds (max − min per sentence): mean "
                 f"{statistics.mean(sp):.4f}, max {max(sp):.4f} nats")
    tp = agree.get("test_pass") or {}
    if "authors fp32" in tp and "textvae fp32" in tp:
        x, y = tp["authors fp32"], tp["textvae fp32"]
        L.append(f"- test pass, authors vs textvae fp32: −ELBO {x['neg_elbo']:.4f} vs {y['neg_elbo']:.4f}, KL "
                 f"{x['kl']:.5f} vs {y['kl']:.5f}, MI {x['mi']:.4f} vs {y['mi']:.4f}, AU {x['au']} vs {y['au']} "
                 "(one z sample per sentence on each side, different noise; with q(z|x) ≈ p(z), as at this "
                 f"initialisation, the MI estimate's noise is about √(nz/2/N) = "
                 f"{math.sqrt(PTB_SIZES['nz'] / 2 / plan['test_sentences']):.3f} nats)")
    L += ["", "What runs on the authors' side: their `init_config()`, `MonoTextData`, `GaussianLSTMEncoder`, "
          "`LSTMDecoder`, `VAE`; the training step is the loop body of `main()` in text_anneal_fb.py (lines "
          f"{LOOP['first']}-{LOOP['last']}) repeated statement for statement in `authors_train_step` "
          f"(checked against the checkout: {meta.get('loop_check')}); the IW-NLL is `VAE.nll_iw` per sentence, "
          "calc_iwnll's loop body (utils.py lines 67-69; calc_iwnll itself divides by zero on fewer than 11 "
          "sentences); the test pass is the `--eval` branch (lines 222-228). textvae's training step is "
          "`Trainer.train_epoch`'s loop body.", "",
          "Changes made to the authors' code (in a temporary copy), and nothing else:", ""]
    for c in changes:
        L.append(f"- {c['file']} line {c['line']}: `{c['before']}` → `{c['after']}` ({c['why']})")
    L += ["", "Differences between the two codebases found on the way:", ""]
    L += [f"- {d}" for d in DISCREPANCIES]
    L.append("")
    return "\n".join(L)
