"""Evaluation of a checkpoint (SPEC §5): importance-weighted NLL/PPL, Recon, KL, −ELBO, ELBO-PPL, MI (Li and
He), AU; exact NLL/PPL for the LSTM-LM; the ``textvae evaluate`` subcommand. The formulas are in
:mod:`textvae.evaluation.metrics`, their fast paths in :mod:`textvae.evaluation.fast_vae`.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from textvae import DEFAULT_SEED
from textvae.corpora.data import Vocab, count_tokens, read_corpus, split_path
from textvae.config.knobs import EVAL_KNOBS, add_options
from textvae.core.errors import CheckpointError, ConfigError
from textvae.evaluation.fast_vae import CPU_PROJ_ROWS, FastVAE, elbo_terms, encode_all, iw_log_likelihood, plan_rows
from textvae.evaluation.metrics import active_units, au_variances, lm_log_likelihood, mi_samples, mutual_information
from textvae.evaluation.uncertainty import au_bootstrap, compact, mean_se, mi_bootstrap, ppl_se, spread
from textvae.modeling.model import LSTMLM, VAE
from textvae.core.rundir import atomic_write_text


# ----------------------------------------------------------------------------------------------------------
# Whole-checkpoint evaluation
# ----------------------------------------------------------------------------------------------------------

def _ppl(total_nll: float, tokens: int) -> float:
    try:
        return math.exp(total_nll / tokens)
    except OverflowError:
        return float("inf")


def evaluate_model(model: nn.Module, vocab: Vocab, sentences: Sequence[Sequence[str]], iw_samples: int = 1000,
                   seed: int = DEFAULT_SEED, mi_variant: str = "li", au_threshold: float = 0.01,
                   budget_mb: float | None = None, max_rows: int | None = None, proj_rows: int | None = None,
                   precision: str = "fp32", device: torch.device | str = "cpu", progress: bool = False,
                   precision_check: int = 0) -> dict:
    """All SPEC §5 metrics of one model on tokenised sentences (vocab ids from the checkpoint)."""
    t0 = time.perf_counter()
    device = torch.device(device)
    model = model.to(device).eval()
    examples = [vocab.encode(s) for s in sentences]
    n, tokens = len(examples), count_tokens(examples)
    res: dict = {"sentences": n, "tokens": tokens, "words": tokens - n, "seed": int(seed),
                 "precision": precision, "device": _device_name(device)}
    if isinstance(model, LSTMLM):
        lp = lm_log_likelihood(model, examples, device=device)
        nll_sum = float(-lp.sum())
        res.update(kind="lm", nll=nll_sum / n, ppl=_ppl(nll_sum, tokens), exact=True, precision="fp32")
        nll, lengths = (-lp).numpy(), [len(x) - 1 for x in examples]
        res["se"] = {"nll": mean_se(nll), "ppl": ppl_se(nll, lengths)}
        res["per_sentence"] = {"tokens": lengths, "nll": compact(nll)}
        res["seconds"] = round(time.perf_counter() - t0, 3)
        return res
    if not isinstance(model, VAE):
        raise CheckpointError(f"cannot evaluate a model of type {type(model).__name__}")
    if mi_variant not in ("li", "he"):
        raise ConfigError(f"--mi-variant {mi_variant!r}: use li or he")
    fast = FastVAE(model, device, precision)
    fast32 = fast.fp32()
    mu, logvar, batch_index = encode_all(fast32, examples)
    terms = elbo_terms(fast32, examples, seed, mu=mu, logvar=logvar)
    rec, kl = terms["rec"], terms["kl"]
    # MI: Li over the whole split; He per exact-length batch of 32 (the batches of SPEC §1.5)
    z_mi = mi_samples(mu, logvar, seed).to(device)
    mi_li = mutual_information(mu, logvar, "li", z=z_mi)
    order = [i for idx in batch_index for i in idx]
    sel = torch.tensor(order, device=device)
    mi_he = mutual_information(mu[sel], logvar[sel], "he", batch_sizes=[len(i) for i in batch_index], z=z_mi[sel])
    neg_elbo_sum = float((rec + kl).sum())
    res.update(
        kind="vae",
        rec=float(rec.mean()), kl=float(kl.mean()), neg_elbo=neg_elbo_sum / n, elbo_ppl=_ppl(neg_elbo_sum, tokens),
        mi=mi_li if mi_variant == "li" else mi_he, mi_variant=mi_variant, mi_li=mi_li, mi_he=mi_he,
        au=active_units(mu, au_threshold), au_threshold=au_threshold,
        au_variances=[round(float(v), 6) for v in au_variances(mu)], iw_samples=int(iw_samples),
    )
    lengths = [len(x) - 1 for x in examples]               # predicted tokens per sentence (SPEC §1.4)
    res["se"], res["per_sentence"] = _test_set_errors(mu, logvar, rec, kl, lengths, au_threshold)
    if iw_samples == 0:                      # a plain test pass: Recon, KL, −ELBO, MI, AU; no IW estimate
        res["seconds"] = round(time.perf_counter() - t0, 3)
        return res
    t_iw = time.perf_counter()
    lp, mc_var = iw_log_likelihood(fast, examples, iw_samples, seed, mu=mu, logvar=logvar, max_rows=max_rows,
                                   budget_mb=budget_mb, proj_rows=proj_rows, progress=progress, mc_var=True)
    t_iw = time.perf_counter() - t_iw
    nll_sum = float(-lp.sum())
    nll = (-lp).numpy()
    res["se"].update(nll=mean_se(nll), ppl=ppl_se(nll, lengths), nll_mc=float(mc_var.sum().sqrt()) / n)
    res["per_sentence"]["nll"] = compact(nll)
    res.update(nll=nll_sum / n, ppl=_ppl(nll_sum, tokens), iw_seconds=round(t_iw, 3),
               iw_sentences_per_s=round(n / max(t_iw, 1e-9), 3))
    rows, pr = plan_rows(fast, max(len(x) for x in examples) - 1, budget_mb, max_rows, proj_rows)
    res["iw_rows"], res["iw_proj_rows"] = rows, pr
    if precision != "fp32" and precision_check > 0:
        res["precision_check"] = _precision_check(fast32, fast, examples, lp, mu, logvar, iw_samples, seed,
                                                  precision_check, max_rows, budget_mb, proj_rows)
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


MI_REPLICATES, AU_REPLICATES = 30, 100


def _test_set_errors(mu, logvar, rec, kl, lengths: list[int], au_threshold: float) -> tuple[dict, dict]:
    """Standard errors over the test sentences (textvae.evaluation.uncertainty) and the per-sentence values
    that paired comparisons need. MI: bootstrap over sentences with fresh samples; AU: the spread of AU over
    bootstrap resamples, with its range."""
    rec_np, kl_np = rec.double().cpu().numpy(), kl.double().cpu().numpy()
    neg_elbo = rec_np + kl_np
    mi_reps = mi_bootstrap(mu, logvar, MI_REPLICATES)
    au_reps = au_bootstrap(mu, au_threshold, AU_REPLICATES)
    se = {"rec": mean_se(rec_np), "kl": mean_se(kl_np), "neg_elbo": mean_se(neg_elbo),
          "elbo_ppl": ppl_se(neg_elbo, lengths), "mi": spread(mi_reps), "au": spread(au_reps),
          "au_range": [int(au_reps.min()), int(au_reps.max())],
          "method": f"test sentences: std/sqrt(N); PPL: delta method (ratio over sentences); MI: bootstrap ({MI_REPLICATES}, fresh samples); "
                    f"AU: bootstrap ({AU_REPLICATES})"}
    return se, {"tokens": lengths, "rec": compact(rec_np), "kl": compact(kl_np, 4)}


CHECK_FRACTION = 10      # the bf16 check recomputes at most 1/10 of the IW work in fp32
CHECK_TOLERANCE = 0.05   # nats per sentence, mean and mean |difference|


def _precision_check(fast32: FastVAE, fast: FastVAE, examples, lp: torch.Tensor, mu, logvar, K: int, seed: int,
                     max_sentences: int, max_rows, budget_mb, proj_rows) -> dict:
    """bf16 against fp32 on the same samples, at a tenth of the IW work at most (so bf16 with its check is
    never slower than fp32): the first ``min(max_sentences, N // 10)`` sentences with all K samples; a set
    of fewer than 10 sentences checks its first sentence with K // 10 samples in both precisions (none when
    K < 10)."""
    n = len(examples)
    m = min(max_sentences, n // CHECK_FRACTION)
    kw = dict(max_rows=max_rows, budget_mb=budget_mb, proj_rows=proj_rows)
    if m >= 1:
        k, sub = K, examples[:m]
        test = lp[:m]
    elif K // CHECK_FRACTION >= 1:
        m, k, sub = 1, K // CHECK_FRACTION, examples[:1]
        test = iw_log_likelihood(fast, sub, k, seed, mu=mu[:1], logvar=logvar[:1], **kw)
    else:
        return {"sentences": 0, "samples": 0, "reference": "fp32", "passed": None,
                "skipped": f"{n} sentences and K = {K}: a tenth of the work is less than one sample"}
    ref = iw_log_likelihood(fast32, sub, k, seed, mu=mu[:m], logvar=logvar[:m], **kw)
    d = (-test) - (-ref)
    mean, mean_abs = float(d.mean()), float(d.abs().mean())
    return {"sentences": m, "samples": k, "reference": "fp32", "mean_diff": mean, "mean_abs_diff": mean_abs,
            "max_abs_diff": float(d.abs().max()), "tolerance": CHECK_TOLERANCE,
            "passed": bool(abs(mean) < CHECK_TOLERANCE and mean_abs < CHECK_TOLERANCE)}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    import platform
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def evaluate_checkpoint(ckpt: str | Path, data: str | Path, split: str = "test", iw_samples: int = 1000,
                        seed: int = DEFAULT_SEED, mi_variant: str = "li", au_threshold: float = 0.01,
                        budget_mb: float | None = None, max_rows: int | None = None, proj_rows: int | None = None,
                        precision: str = "fp32", device: str = "auto", max_examples: int | None = None,
                        progress: bool = False, precision_check: int = 0) -> dict:
    """Load ``ckpt`` (any kind the trainer writes), read ``split`` of ``data`` with the checkpoint's vocab, and
    compute every column of Tables 10/11 (SPEC §5). Returns the metrics dict (docs/architecture.md)."""
    from textvae.modeling.checkpoint import file_sha256, load_model, resolve_device, settings_sha256
    dev = resolve_device(device)
    model, vocab, ck = load_model(ckpt, dev)
    path = split_path(data, split)
    corpus = read_corpus(path, max_examples=max_examples)
    res = evaluate_model(model, vocab, corpus.sentences, iw_samples, seed, mi_variant, au_threshold, budget_mb,
                         max_rows, proj_rows, precision, dev, progress, precision_check)
    run = ck.get("run") or {}
    res["checkpoint"] = {"path": str(ckpt), "sha256": file_sha256(ckpt), "method": run.get("method"),
                         "lam": run.get("lam"), "kind": ck.get("kind"), "epoch": ck.get("epoch"),
                         "dataset": run.get("dataset"), "settings_sha256": settings_sha256(run)}
    res["split"] = split
    res["data"] = str(path)
    res["dropped_empty"] = corpus.dropped_empty
    res["unk_rate"] = _unk_rate(vocab, corpus.sentences)
    res["torch"] = torch.__version__
    return res


def _unk_rate(vocab: Vocab, sentences: Iterable[Sequence[str]]) -> float:
    tot = unk = 0
    for s in sentences:
        for w in s:
            tot += 1
            unk += w not in vocab.stoi
    return unk / max(tot, 1)


def summary_line(res: dict) -> str:
    ck = (res.get("checkpoint") or {}).get("path", "?")
    head = f"{ck} [{res.get('split', '?')}: {res['sentences']} sentences, {res['tokens']} tokens]"
    if res.get("kind") == "lm":
        return f"{head} NLL {res['nll']:.2f} PPL {res['ppl']:.2f} (exact) | {res['seconds']:.1f}s"
    iw = (f"NLL {res['nll']:.2f} PPL {res['ppl']:.2f} (K={res['iw_samples']})" if res.get("iw_samples")
          else "no IW-NLL (K=0)")
    return (f"{head} {iw} | Recon {res['rec']:.2f} "
            f"KL {res['kl']:.2f} -ELBO {res['neg_elbo']:.2f} ELBO-PPL {res['elbo_ppl']:.2f} | "
            f"MI({res['mi_variant']}) {res['mi']:.2f} AU {res['au']} | {res['precision']} {res['device']} "
            f"{res['seconds']:.1f}s")


def write_json_atomic(obj: dict, path: str | Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", path)


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="test metrics of a checkpoint (IW-NLL/PPL, Recon, KL, -ELBO, ELBO-PPL, MI, AU)",
        description="Evaluate a checkpoint (VAE family, AE, IWAE or LSTM-LM) on a split and write one metrics "
                    "JSON with every column of the paper's Tables 10/11 (SPEC section 5).")
    p.add_argument("--ckpt", required=True, help="checkpoint written by `textvae train` (best.pt or last.pt)")
    p.add_argument("--data", required=True, help="prepared corpus directory (holding SPLIT.txt) or a corpus file")
    p.add_argument("--split", default="test", help="split name (default test)")
    p.add_argument("--out", required=True, help="metrics JSON to write (atomically)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"noise seed (default {DEFAULT_SEED}); each "
                   "sentence's samples depend only on (seed, sentence index)")
    add_options(p, EVAL_KNOBS.values(), defaults=True)   # --iw-samples, --mi-variant, --au-threshold, --max-examples
    p.add_argument("--batch-budget-mb", type=float, default=None,
                   help="working-memory budget of one decoder pass in MiB (default 1024 on CPU, 16384 on GPU)")
    p.add_argument("--max-rows", type=int, default=None,
                   help="(sentence, sample) rows of one decoder pass (default: CPU 1024, GPU from the budget)")
    p.add_argument("--proj-rows", type=int, default=None,
                   help=f"rows of one vocabulary-projection tile (default: CPU {CPU_PROJ_ROWS}, GPU = --max-rows)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bfloat16 decoder matmuls (recorded check against fp32, see --precision-check)")
    p.add_argument("--precision-check", type=int, default=None,
                   help="with --precision bf16: also run fp32 on the first min(N, sentences/10) sentences and "
                        "record the NLL difference (default 50; 0 disables); a set of under 10 sentences "
                        "checks one sentence with K/10 samples")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_evaluate)


def _cli_evaluate(args) -> int:
    from textvae.core.rundir import check_writable

    for knob in EVAL_KNOBS.values():
        msg = knob.problem(getattr(args, knob.name))
        if msg:
            raise ConfigError(f"{knob.flag}: {msg}")
    check_writable(args.out, "--out")   # before the evaluation, not after it
    check = args.precision_check if args.precision_check is not None else (50 if args.precision == "bf16" else 0)
    res = evaluate_checkpoint(args.ckpt, args.data, args.split, args.iw_samples, args.seed, args.mi_variant,
                              args.au_threshold, args.batch_budget_mb, args.max_rows, args.proj_rows,
                              args.precision, args.device, args.max_examples,
                              progress=not args.no_progress and sys.stderr.isatty(), precision_check=check)
    write_json_atomic(res, args.out)
    print(summary_line(res))
    return 0
