"""Latent-space probing and classification (SPEC §6-7): ``textvae probe {bleu,smoothness,noisy,interpolate,copy,classify}``,
one runner per probe on one shared set-up (:mod:`textvae.probing.setup`); the measures are in
:mod:`textvae.probing.metrics`, the classifiers in :mod:`textvae.probing.classifiers`.

Every probe loads one VAE checkpoint, runs deterministically under ``--seed`` and writes a JSON file of numbers
(atomic write) that records every setting and the checkpoint; probes that show examples also write a markdown
file next to the JSON (same stem, ``.md``).

Randomness: Gaussian noise (posterior and prior samples) is drawn on the CPU from a ``torch.Generator`` seeded
with ``--seed`` and then moved to the device, so a run gives the same latent codes on CPU and GPU. Word swaps,
sentence pairs and label subsets use numpy generators. Ancestral sampling (copy check, ``--decoding sample``)
uses a generator on the model's device.

SPEC ❓ choices made defaults here (each is an option and is recorded in the JSON):
- smoothness: pairs i != j drawn uniformly with replacement, latent = posterior mean (``--latent``);
- noisy: one swap = exchange the words at two distinct uniformly chosen positions (``--swap-mode random``);
- copy: ancestral sampling from the decoder as in [C]'s helper, at most 100 tokens (``--decoding``, ``--max-len``);
- classify: GMM with 10 components, random_state = ``--seed``, cluster label = label of the validation example
  with the highest responsibility (``--gmm-rule top``); label subsets sampled uniformly
  (``--label-sampling uniform``) with numpy seed 783435 (DEFAULT_SEED) exactly as [C]'s ``sampling_training_labels.py``;
  linear classifier on the frozen encoder's mean with 10 output logits as [C] (``--n-logits``), SGD lr 1.0.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from textvae import DEFAULT_SEED
from textvae.corpora.data import Vocab, read_corpus, split_path
from textvae.config.knobs import PROBE_KNOBS, add_probe_options
from textvae.core.errors import ConfigError, DataError
from textvae.core.markdown import md_escape
from textvae.evaluation.uncertainty import compact, mean_se, spread
from textvae.probing.metrics import (bleu_bootstrap, bleu_influence, bleu_stats, corpus_bleu, interpolation_points,
                                     min_edit_distances, noisy_reconstruction, pcc_bootstrap, smoothness_pcc)
from textvae.probing.classify import run_classify
from textvae.probing.setup import (base_record as _base_record, cpu_generator, decode, encode, finish as _finish,
                                   ids_to_tokens, progress_bar, sample_posterior, start as _setup)


# ==========================================================================================================
# Probes
# ==========================================================================================================

BOOTSTRAP_REPLICATES = 200     # BLEU (over sentences) and PCC (over pairs)

def _load_split(args, vocab: Vocab, split: str | None = None, path: str | Path | None = None):
    path = Path(path) if path is not None else split_path(args.data, split or args.split)
    corpus = read_corpus(path, max_examples=args.max_examples)
    return corpus, [vocab.encode(s) for s in corpus.sentences]


def _md_header(title: str, record: dict) -> list[str]:
    ck = record["checkpoint"]
    lines = [f"# {title}", "",
             f"- checkpoint: `{ck['path']}` (method {ck.get('method')}, λ {ck.get('lam')}, epoch {ck.get('epoch')})",
             f"- split: {record['split']}, seed: {record['seed']}", ""]
    return lines


def run_bleu(args) -> int:
    """SPEC §6.1: one posterior sample per sentence, greedy decoding, corpus BLEU."""
    t0, device, model, vocab, ckpt = _setup(args)
    corpus, examples = _load_split(args, vocab)
    mu, logvar = encode(model, examples, device, args.batch_size, quiet=args.quiet)
    z = mu if args.latent == "mean" else sample_posterior(mu, logvar, cpu_generator(args.seed, 1))
    ids = decode(model, z, args.max_len, device, greedy=True, batch_size=args.batch_size, quiet=args.quiet,
                 desc="greedy decoding")
    hyps = [ids_to_tokens(vocab, h) for h in ids]
    refs = corpus.sentences
    score, signature = corpus_bleu(hyps, refs)
    stats = bleu_stats(hyps, refs)
    record = _base_record(args, "bleu", ckpt, device)
    # uncertainty: a bootstrap over sentences; per-sentence influence values for paired comparisons
    record.update(bleu_se=spread(bleu_bootstrap(stats, BOOTSTRAP_REPLICATES)),
                  se_method=f"bootstrap over sentences ({BOOTSTRAP_REPLICATES})",
                  per_sentence={"bleu": compact(bleu_influence(stats), 2)})
    nshow = min(args.examples, len(refs))
    record.update(bleu=score, signature=signature, sentences=len(refs), latent=args.latent,
                  max_len=args.max_len, decoding="greedy",
                  hit_max_len=int(sum(len(h) >= args.max_len for h in ids)),
                  mean_hyp_length=float(np.mean([len(h) for h in hyps])),
                  mean_ref_length=float(np.mean([len(r) for r in refs])),
                  examples=[{"index": i, "reference": " ".join(refs[i]), "reconstruction": " ".join(hyps[i])}
                            for i in range(nshow)])
    what = "the posterior mean" if args.latent == "mean" else "one posterior sample"
    md = _md_header(f"Reconstruction (greedy decoding from {what})", record)
    md += [f"BLEU = **{score:.2f}** over {len(refs)} sentences (`{signature}`)", "",
           "| # | input | reconstruction |", "|---|---|---|"]
    md += [f"| {e['index']} | {md_escape(e['reference'])} | {md_escape(e['reconstruction'])} |"
           for e in record["examples"]]
    return _finish(args, record, t0, f"bleu {score:.2f}", "\n".join(md) + "\n")


def run_smoothness(args) -> int:
    """SPEC §6.2: Pearson r between latent L2 distance and word edit distance over random pairs."""
    t0, device, model, vocab, ckpt = _setup(args)
    corpus, examples = _load_split(args, vocab)
    mu, logvar = encode(model, examples, device, args.batch_size, quiet=args.quiet)
    z = mu if args.latent == "mean" else sample_posterior(mu, logvar, cpu_generator(args.seed, 2))
    sents = corpus.sentences
    r, l2, ed = smoothness_pcc(z.numpy(), sents, args.pairs, args.seed)
    if not math.isfinite(r):
        print("warning: a constant distance vector; PCC undefined (null)", file=sys.stderr)
    record = _base_record(args, "smoothness", ckpt, device)
    record.update(pcc=r, pcc_se=spread(pcc_bootstrap(l2, ed, BOOTSTRAP_REPLICATES)),
                  se_method=f"bootstrap over pairs ({BOOTSTRAP_REPLICATES})",
                  pairs=int(args.pairs), latent=args.latent, sentences=len(sents),
                  pair_sampling="i != j uniform, with replacement",
                  mean_l2=float(l2.mean()), mean_edit=float(ed.mean()))
    return _finish(args, record, t0, f"pcc {r:.4f}")


def run_noisy(args) -> int:
    t0, device, model, vocab, ckpt = _setup(args)
    corpus, examples = _load_split(args, vocab)
    results, shown, se = {}, {}, {}
    clean, _, clean_values = noisy_reconstruction(model, examples, 0, args.seed, args.swap_mode, device,
                                                  args.batch_size, True, per_sentence=True)
    for k in progress_bar(args.swaps, quiet=args.quiet, desc="swaps"):
        rec, corrupted, values = noisy_reconstruction(model, examples, k, args.seed, args.swap_mode, device,
                                                      args.batch_size, args.quiet, per_sentence=True)
        results[str(k)] = rec
        se[str(k)] = mean_se(values)
        shown[str(k)] = [" ".join(vocab.decode(c)) for c in corrupted[:args.examples]]
    record = _base_record(args, "noisy", ckpt, device)
    record.update(noisy_rec=results, noisy_rec_se=se, clean_rec=clean, clean_rec_se=mean_se(clean_values),
                  se_method="std/sqrt(N) over sentences", swap=args.swap_mode, sentences=len(examples),
                  latent="one posterior sample of the corrupted input",
                  target="-log p(x_original | z), nats per sentence")
    md = _md_header(f"Noisy reconstruction ({args.swap_mode} swaps)", record)
    md += ["| #swaps | " + " | ".join(results) + " |", "|---|" + "---|" * len(results),
           "| rec (nats) | " + " | ".join(f"{v:.2f}" for v in results.values()) + " |", "",
           f"Clean reconstruction with the same estimator: {clean:.2f} nats.", "", "## Corrupted inputs", ""]
    originals = [" ".join(vocab.decode(x)) for x in examples[:args.examples]]
    for n, orig in enumerate(originals):
        md += [f"**{n}** original: {md_escape(orig)}", ""]
        md += [f"- k={k}: {md_escape(v[n])}" for k, v in shown.items()]
        md += [""]
    summary = "noisy " + " ".join(f"k={k}:{v:.2f}" for k, v in results.items())
    return _finish(args, record, t0, summary, "\n".join(md) + "\n")


def run_interpolate(args) -> int:
    """SPEC §6.4 / App. D: 11-point linear interpolations between prior and posterior samples."""
    t0, device, model, vocab, ckpt = _setup(args)
    nz, npairs, npts = model.cfg.nz, args.pairs_interp, args.points
    t = torch.linspace(0.0, 1.0, npts).tolist()
    record = _base_record(args, "interpolate", ckpt, device)
    record.update(t=[round(v, 6) for v in t], points=npts, pairs=npairs, decoding="greedy", max_len=args.max_len)
    md = _md_header("Interpolation (greedy decoding)", record)

    def decode_paths(z0: torch.Tensor, z1: torch.Tensor) -> list[list[str]]:
        zs = torch.cat([interpolation_points(z0[p], z1[p], npts) for p in range(z0.size(0))])
        ids = decode(model, zs, args.max_len, device, greedy=True, batch_size=args.batch_size, quiet=True)
        sents = [" ".join(ids_to_tokens(vocab, s)) for s in ids]
        return [sents[p * npts:(p + 1) * npts] for p in range(z0.size(0))]

    if "prior" in args.source:
        g = cpu_generator(args.seed, 3)
        z = torch.randn((npairs, 2, nz), generator=g)
        prior = decode_paths(z[:, 0], z[:, 1])
        record["prior"] = prior
        md += ["## Between prior samples", ""]
        for p, path in enumerate(prior):
            md += [f"### Example {p + 1}", "", "| t | decoded |", "|---|---|"]
            md += [f"| {tv:.2f} | {md_escape(s)} |" for tv, s in zip(t, path)]
            md += [""]
    if "posterior" in args.source:
        corpus, examples = _load_split(args, vocab)
        if len(examples) < 2:
            raise DataError(f"{corpus.path}: posterior interpolation needs at least 2 sentences")
        rng = np.random.default_rng([int(args.seed), 4])
        pick = np.stack([rng.choice(len(examples), size=2, replace=False) for _ in range(npairs)])
        flat = pick.reshape(-1).tolist()
        mu, logvar = encode(model, [examples[i] for i in flat], device, args.batch_size)
        z = sample_posterior(mu, logvar, cpu_generator(args.seed, 5)).view(npairs, 2, nz)
        post = decode_paths(z[:, 0], z[:, 1])
        record["posterior"] = post
        record["posterior_inputs"] = [{"source_index": int(a), "target_index": int(b),
                                       "source": " ".join(corpus.sentences[a]),
                                       "target": " ".join(corpus.sentences[b])} for a, b in pick]
        md += ["## Between posterior samples", ""]
        for p, (path, inp) in enumerate(zip(post, record["posterior_inputs"])):
            md += [f"### Example {p + 1}", "", "| | sentence |", "|---|---|",
                   f"| SOURCE INPUT | {md_escape(inp['source'])} |",
                   f"| TARGET INPUT | {md_escape(inp['target'])} |",
                   f"| POSTERIOR-SAMPLED SOURCE (t=0) | {md_escape(path[0])} |"]
            md += [f"| INTERPOLATION t={tv:.2f} | {md_escape(s)} |" for tv, s in zip(t[1:-1], path[1:-1])]
            md += [f"| POSTERIOR-SAMPLED TARGET (t=1) | {md_escape(path[-1])} |", ""]
    return _finish(args, record, t0, f"interpolate {npairs} pairs x {npts} points", "\n".join(md) + "\n")


def run_copy(args) -> int:
    """SPEC §6.5 / App. B: prior samples, minimum word edit distance to the training set."""
    t0, device, model, vocab, ckpt = _setup(args)
    train_path = Path(args.train) if args.train else split_path(args.data, "train")
    train = read_corpus(train_path).sentences  # the whole training set, never capped
    z = torch.randn((args.samples, model.cfg.nz), generator=cpu_generator(args.seed, 6))
    ids = decode(model, z, args.max_len, device, greedy=args.decoding == "greedy", seed=args.seed,
                 batch_size=args.batch_size, quiet=args.quiet, desc=f"{args.decoding} decoding")
    samples = [ids_to_tokens(vocab, s) for s in ids]
    t1 = time.time()
    mins, arg = min_edit_distances(samples, train, workers=args.workers, quiet=args.quiet)
    t_nn = time.time() - t1
    record = _base_record(args, "copy", ckpt, device)
    record.update(mean_min_edit=float(mins.mean()), samples=len(samples), decoding=args.decoding,
                  max_len=args.max_len, train_file=str(train_path), train_sentences=len(train),
                  mean_train_length=float(np.mean([len(s) + 1 for s in train])),
                  mean_train_words=float(np.mean([len(s) for s in train])),
                  mean_sample_words=float(np.mean([len(s) for s in samples])),
                  hit_max_len=int(sum(len(s) >= args.max_len for s in ids)),
                  exact_copies=int((mins == 0).sum()), nearest_neighbour_seconds=round(t_nn, 3),
                  min_edit=mins.tolist())
    md = _md_header(f"Copying check ({args.decoding} decoding of prior samples)", record)
    md += [f"Mean minimum edit distance to the {len(train)} training sentences: **{mins.mean():.2f}** "
           f"(mean training length {record['mean_train_length']:.2f} incl. `</s>`; exact copies: "
           f"{record['exact_copies']}).", "", "| # | sample | nearest training sentence | edit distance |",
           "|---|---|---|---|"]
    md += [f"| {n} | {md_escape(' '.join(samples[n]))} | {md_escape(' '.join(train[arg[n]]))} | {mins[n]} |"
           for n in range(min(args.examples, len(samples)))]
    return _finish(args, record, t0, f"copy mean_min_edit {mins.mean():.2f}", "\n".join(md) + "\n")


# ==========================================================================================================
# CLI
# ==========================================================================================================

def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v


def _common(p: argparse.ArgumentParser, probe: str) -> None:
    p.add_argument("--ckpt", required=True, help="VAE checkpoint (best.pt)")
    p.add_argument("--data", required=True, help="prepared data directory data/DATASET (or a corpus file)")
    p.add_argument("--out", required=True, help="output JSON (a markdown file with examples goes next to it)")
    p.add_argument("--split", default="test", help="split to probe (default test)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto)")
    p.add_argument("--batch-size", type=_positive, default=256, help="encoding / decoding batch size (results unchanged)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_probe_options(p, probe)   # the declared settings (textvae.config.knobs.PROBE_KNOBS) and SPEC choices


def _checked(probe: str, run):
    """``run`` after the declared rule of each of the probe's settings (one line naming the option)."""
    def checked(args) -> int:
        for k in PROBE_KNOBS[probe].values():
            msg = k.problem(getattr(args, k.name))
            if msg:
                raise ConfigError(f"{k.flag}: {msg}")
        return run(args)
    return checked


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``textvae probe {bleu,smoothness,noisy,interpolate,copy,classify}``."""
    probe = subparsers.add_parser("probe", help="latent-space probes and classification (SPEC §6-7)",
                                  description="Latent-space probing (SPEC §6) and Yelp classification (SPEC §7).")
    sub = probe.add_subparsers(dest="probe_command", metavar="PROBE")
    sub.required = True

    def add(name: str, help: str, run) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        _common(p, name)
        p.set_defaults(func=_checked(name, run))
        return p

    p = add("bleu", "reconstruction BLEU (Table 4)", run_bleu)
    p.add_argument("--examples", type=int, default=20, help="examples written to JSON/markdown")
    add("smoothness", "PCC of latent L2 vs word edit distance (Table 5)", run_smoothness)
    p = add("noisy", "noisy reconstruction loss after k word swaps (Table 6)", run_noisy)
    p.add_argument("--examples", type=int, default=5, help="corrupted examples written to markdown")
    p = add("interpolate", "interpolation between prior / posterior samples (Tables 7, 12, 13)", run_interpolate)
    p.add_argument("--source", nargs="+", choices=("prior", "posterior"), default=["prior", "posterior"])
    p = add("copy", "copying check: prior samples vs nearest training sentence (App. B)", run_copy)
    p.add_argument("--train", default=None, help="training corpus (default DATA/train.txt)")
    p.add_argument("--workers", type=int, default=-1, help="rapidfuzz threads (-1 = all cores)")
    p.add_argument("--examples", type=int, default=10, help="samples written to markdown")
    p = add("classify", "GMM / linear classification on encoder means (Table 8)", run_classify)
    p.add_argument("--gmm-fit", default=None,
                   help="labelled file whose means fit the GMM (default DATA/train.txt; if missing, the largest "
                        "DATA/train.N.txt, with a warning)")
    p.add_argument("--subset-source", choices=("auto", "files", "sample"), default="auto",
                   help="files = DATA/train.N.txt (the paper's subsets); sample = from DATA/train.txt; "
                        "auto = files when all exist")
    p.add_argument("--subset-seed", type=int, default=DEFAULT_SEED, help=f"numpy seed of the subsets ({DEFAULT_SEED})")
    p.add_argument("--train-labelled", nargs="+", default=None, metavar="PATH",
                   help="explicit labelled training files (one classifier each, keyed by size)")
    p.add_argument("--n-logits", type=_positive, default=10,
                   help="classifier outputs (default 10 as [C]; at least the number of classes)")
    return probe
