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
  ``authors_train_step`` below repeats it statement for statement on their objects, and the bench checks at
  run time that those lines of the checkout still read as they did at the commit above (sha256). The setup
  before the loop (lines 175-215, 253-289) is repeated the same way in ``authors_setup``.
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

tests/test_bench_authors.py checks the weight copy (both models give the same log p(x|z) on the same z) and runs
--quick end to end when $TEXTVAE_AUTHORS_REPO names a checkout of the authors' repository (skipped otherwise).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_model, sh, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TEXTVAE_SHARED_DATA", REPO.parent / "shared" / "data"))
HEADING = "## Against the authors' code (interleaved)"
AUTHORS_URL = "https://github.com/bohanli/vae-pretraining-encoder"
AUTHORS_COMMIT = "bd4affa07bb01d7c673852ae1ec615f6bcae47ae"
PTB_SIZES = dict(enc_emb=256, dec_emb=256, enc_hidden=256, dec_hidden=256, nz=32)
LAM = 6.0                  # λ of the "ours" workload (target_kl of the authors' --fb 2)
FLAG_CORES = 0.05          # a timing window during which other processes used more than this is flagged

# the authors' training-loop body reproduced in authors_train_step (text_anneal_fb.py), checked at run time
LOOP = {"file": "text_anneal_fb.py", "first": 299, "last": 360,
        "sha256": "b92adecec5327775556c9b030c480d073c9553acd4c3267a47d89ab8dfd6d837"}

# CPU changes: (file, line, old, new, why); applied to a temporary copy, each checked against its line
PATCHES = [
    ("utils.py", 120, "mu, logvar = mu_batch_list[i].cuda(), logvar_batch_list[i].cuda()",
     "mu, logvar = mu_batch_list[i].cpu(), logvar_batch_list[i].cpu()",
     "calc_mi (called by test()) moves the posterior statistics to the GPU unconditionally"),
    ("utils.py", 137, "mu = torch.cat([mu_batch_list[_] for _ in indices], dim=0).cuda()",
     "mu = torch.cat([mu_batch_list[_] for _ in indices], dim=0).cpu()", "the same, in calc_mi"),
    ("utils.py", 138, "logvar = torch.cat([logvar_batch_list[_] for _ in indices], dim=0).cuda()",
     "logvar = torch.cat([logvar_batch_list[_] for _ in indices], dim=0).cpu()", "the same, in calc_mi"),
]

# the authors' VAE state_dict name -> textvae's VAE state_dict name (decoder input is [emb; z] in both;
# their trans_linear (c0 = W z, h0 = tanh c0) is our trans_z; their bias-free pred_linear is our proj)
AUTHORS_TO_TEXTVAE = {
    "encoder.embed.weight": "encoder.embed.weight",
    "encoder.lstm.weight_ih_l0": "encoder.lstm.weight_ih_l0",
    "encoder.lstm.weight_hh_l0": "encoder.lstm.weight_hh_l0",
    "encoder.lstm.bias_ih_l0": "encoder.lstm.bias_ih_l0",
    "encoder.lstm.bias_hh_l0": "encoder.lstm.bias_hh_l0",
    "encoder.linear.weight": "encoder.linear.weight",
    "decoder.embed.weight": "decoder.embed.weight",
    "decoder.trans_linear.weight": "decoder.trans_z.weight",
    "decoder.lstm.weight_ih_l0": "decoder.lstm.weight_ih_l0",
    "decoder.lstm.weight_hh_l0": "decoder.lstm.weight_hh_l0",
    "decoder.lstm.bias_ih_l0": "decoder.lstm.bias_ih_l0",
    "decoder.lstm.bias_hh_l0": "decoder.lstm.bias_hh_l0",
    "decoder.pred_linear.weight": "decoder.proj.weight",
}
# buffers of theirs with no counterpart: the all-ones class weights of their nn.CrossEntropyLoss
AUTHORS_UNMAPPED = ("decoder.loss.weight",)

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

SIDES = [("authors", "fp32"), ("textvae", "fp32"), ("textvae", "bf16")]
WORKLOADS = ("train_vae", "train_ours", "iw", "test")


# ==========================================================================================================
# Weight correspondence (imported by tests/test_bench_authors.py)
# ==========================================================================================================

def authors_to_textvae_state(sd: dict) -> dict:
    """The authors' VAE ``state_dict`` as a textvae ``VAE`` state_dict (every tensor checked: nothing left over
    but their all-ones loss weights)."""
    extra = set(sd) - set(AUTHORS_TO_TEXTVAE) - set(AUTHORS_UNMAPPED)
    missing = set(AUTHORS_TO_TEXTVAE) - set(sd)
    if extra or missing:
        raise ValueError(f"authors' state_dict: unexpected {sorted(extra)}, missing {sorted(missing)}")
    for k in AUTHORS_UNMAPPED:
        if k in sd and not bool((sd[k] == 1).all()):
            raise ValueError(f"{k} is not all ones: their loss is weighted; textvae's is not")
    return {AUTHORS_TO_TEXTVAE[k]: v.detach().clone() for k, v in sd.items() if k in AUTHORS_TO_TEXTVAE}


def textvae_to_authors_state(sd: dict, template: dict) -> dict:
    """A textvae ``VAE`` state_dict as the authors' (``template``: their model's state_dict, for the buffers)."""
    back = {v: k for k, v in AUTHORS_TO_TEXTVAE.items()}
    if set(sd) != set(back):
        raise ValueError(f"textvae state_dict keys differ: {sorted(set(sd) ^ set(back))}")
    out = {back[k]: v.detach().clone() for k, v in sd.items()}
    for k in AUTHORS_UNMAPPED:
        if k in template:
            out[k] = template[k].clone()
    return out


def load_into_textvae(tv_model, authors_sd: dict) -> None:
    """Copy the authors' weights into a textvae VAE, checking every shape (strict load)."""
    mapped = authors_to_textvae_state(authors_sd)
    own = tv_model.state_dict()
    for k, v in mapped.items():
        if own[k].shape != v.shape:
            raise ValueError(f"{k}: textvae {tuple(own[k].shape)} vs authors {tuple(v.shape)}")
    tv_model.load_state_dict(mapped, strict=True)


# ==========================================================================================================
# The authors' code: a patched copy, their configuration, their setup
# ==========================================================================================================

def _loop_lines(src: Path) -> str:
    lines = (src / LOOP["file"]).read_text().splitlines(keepends=True)
    return "".join(lines[LOOP["first"] - 1:LOOP["last"]])


def loop_sha(src: Path) -> str:
    return hashlib.sha256(_loop_lines(src).encode()).hexdigest()


def patched_copy(src: Path, dest: Path) -> list[dict]:
    """Copy the authors' checkout ``src`` to ``dest`` and apply PATCHES there; return the changes made."""
    src = Path(src)
    if not (src / "text_anneal_fb.py").is_file() or not (src / "modules" / "vae.py").is_file():
        raise SystemExit(f"--authors {src}: not a checkout of {AUTHORS_URL} (no text_anneal_fb.py / modules/)")
    def skip(folder, names):     # their VCS, data and experiment folders are not needed
        return [n for n in names if n in (".git", "datasets", "__pycache__")
                or (n.startswith("exp_") and (Path(folder) / n).is_dir())]
    shutil.copytree(src, dest, ignore=skip)
    changes = []
    for rel, lineno, old, new, why in PATCHES:
        p = dest / rel
        lines = p.read_text().splitlines(keepends=True)
        at = lineno
        if old not in lines[lineno - 1]:
            hits = [i + 1 for i, ln in enumerate(lines) if old in ln]
            if len(hits) != 1:
                raise SystemExit(f"{rel}:{lineno}: expected {old!r} (found it on lines {hits}); the checkout "
                                 f"differs from commit {AUTHORS_COMMIT}: check the CPU changes by hand")
            at = hits[0]
        before = lines[at - 1]
        lines[at - 1] = before.replace(old, new)
        p.write_text("".join(lines))
        changes.append({"file": rel, "line": at, "before": before.strip(), "after": lines[at - 1].strip(),
                        "why": why})
    return changes


def other_cuda_mentions(src: Path) -> list[str]:
    """Every other line of their Python code that names CUDA (none of them on a path the bench runs, or
    conditional on args.cuda): listed in the JSON for the record."""
    patched = {(rel, ln) for rel, ln, *_ in PATCHES}
    out = []
    for p in sorted(Path(src).rglob("*.py")):
        rel = str(p.relative_to(src))
        for i, ln in enumerate(p.read_text(errors="replace").splitlines(), 1):
            if "cuda" in ln and not ln.strip().startswith("#") and (rel, i) not in patched:
                out.append(f"{rel}:{i}: {ln.strip()}")
    return out


def import_authors(patched: Path):
    """Their modules, imported from the patched copy (top-level names data, modules, utils, exp_utils)."""
    sys.path.insert(0, str(patched))
    import text_anneal_fb  # noqa: F401  (imports data, modules, exp_utils, utils)
    import data as A_data
    import exp_utils as A_exp
    import modules as A_modules
    import utils as A_utils
    for m in (text_anneal_fb, A_data, A_exp, A_modules, A_utils):
        if not str(Path(m.__file__).resolve()).startswith(str(Path(patched).resolve())):
            raise SystemExit(f"{m.__name__} was imported from {m.__file__}, not from the authors' copy")
    return argparse.Namespace(T=text_anneal_fb, D=A_data, E=A_exp, M=A_modules, U=A_utils)


def authors_args(A, argv: list[str], train: str, valid: str, test: str):
    """Their ``init_config()`` on ``--dataset ptb ARGV`` (it seeds numpy/torch and loads config/config_ptb.py),
    then the data paths, and ``args.device`` as main() sets it (text_anneal_fb.py lines 194-195)."""
    saved = sys.argv
    sys.argv = ["text_anneal_fb.py", "--dataset", "ptb", *argv]
    try:
        args = A.T.init_config()
    finally:
        sys.argv = saved
    args.train_data, args.val_data, args.test_data = train, valid, test
    args.device = "cuda" if args.cuda else "cpu"
    return args


def authors_setup(A, args, with_optim: bool = True) -> dict:
    """main()'s set-up, text_anneal_fb.py lines 173-215 and 253-289, statement for statement (the validation
    and test batches, unused by the training loop, are not built)."""
    import torch
    from torch import optim
    T = A.T
    T.logging = A.E.create_exp_dir(args.exp_dir, scripts_to_save=None, debug=True)   # line 167 (no exp dir)
    opt_dict = {"not_improved": 0, "lr": 1., "best_loss": 1e4}
    train_data = A.D.MonoTextData(args.train_data, label=args.label)
    vocab = train_data.vocab
    vocab_size = len(vocab)
    log_niter = (len(train_data) // args.batch_size) // 10
    model_init = A.U.uniform_initializer(0.01)
    emb_init = A.U.uniform_initializer(0.1)
    device = "cuda" if args.cuda else "cpu"
    args.device = device
    encoder = A.M.GaussianLSTMEncoder(args, vocab_size, model_init, emb_init)
    args.enc_nh = args.dec_nh
    decoder = A.M.LSTMDecoder(args, vocab, model_init, emb_init)
    vae = A.M.VAE(encoder, decoder, args).to(device)
    if args.load_path:
        loaded_state_dict = torch.load(args.load_path)
        vae.load_state_dict(loaded_state_dict)
        if args.reset_dec:
            vae.decoder.reset_parameters(model_init, emb_init)
    st = {"vae": vae, "vocab": vocab, "train_data": train_data, "device": device, "log_niter": log_niter,
          "model_init": model_init, "emb_init": emb_init, "opt_dict": opt_dict}
    if not with_optim:
        return st
    enc_optimizer = optim.SGD(vae.encoder.parameters(), lr=args.lr, momentum=args.momentum)
    dec_optimizer = optim.SGD(vae.decoder.parameters(), lr=args.lr, momentum=args.momentum)
    vae.train()
    kl_weight = args.kl_start
    if args.warm_up > 0:
        anneal_rate = (1.0 - args.kl_start) / (args.warm_up * (len(train_data) / args.batch_size))
    else:
        anneal_rate = 0
    st.update(enc_optimizer=enc_optimizer, dec_optimizer=dec_optimizer, iter_=0, kl_weight=kl_weight,
              anneal_rate=anneal_rate, dim_target_kl=args.target_kl / float(args.nz), start=time.time(),
              epoch=0, report_kl_loss=0, report_rec_loss=0, report_loss=0, report_num_words=0,
              report_num_sents=0,
              train_data_batch=train_data.create_data_batch(batch_size=args.batch_size, device=device,
                                                            batch_first=True))
    return st


def authors_train_step(A, args, st: dict, i: int) -> None:
    """One iteration of the training loop of text_anneal_fb.py main(), lines 299-360, statement for
    statement (the loop variables live in ``st``; ``i`` is the batch index their permutation would give)."""
    import torch
    clip_grad = A.T.clip_grad
    vae, enc_optimizer, dec_optimizer = st["vae"], st["enc_optimizer"], st["dec_optimizer"]

    batch_data = st["train_data_batch"][i]
    batch_size, sent_len = batch_data.size()

    # not predict start symbol
    st["report_num_words"] += (sent_len - 1) * batch_size
    st["report_num_sents"] += batch_size

    st["kl_weight"] = kl_weight = min(1.0, st["kl_weight"] + st["anneal_rate"])

    enc_optimizer.zero_grad()
    dec_optimizer.zero_grad()

    if args.fb == 0:
        loss, loss_rc, loss_kl = vae.loss(batch_data, kl_weight, nsamples=args.nsamples)
    elif args.fb == 1:
        loss, loss_rc, loss_kl = vae.loss(batch_data, kl_weight, nsamples=args.nsamples)
        kl_mask = (loss_kl > args.target_kl).float()
        loss = loss_rc + kl_mask * kl_weight * loss_kl
    elif args.fb == 2:
        mu, logvar = vae.encoder(batch_data)
        z = vae.encoder.reparameterize(mu, logvar, args.nsamples)
        loss_kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)
        kl_mask = (loss_kl > st["dim_target_kl"]).float()
        fake_loss_kl = (kl_mask * loss_kl).sum(dim=1)
        loss_rc = vae.decoder.reconstruct_error(batch_data, z).mean(dim=1)
        loss = loss_rc + kl_weight * fake_loss_kl
    elif args.fb == 3:
        loss, loss_rc, loss_kl = vae.loss(batch_data, kl_weight, nsamples=args.nsamples)
        kl_mask = (loss_kl.mean() > args.target_kl).float()
        loss = loss_rc + kl_mask * kl_weight * loss_kl

    loss = loss.mean(dim=-1)

    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), clip_grad)

    loss_rc = loss_rc.sum()
    loss_kl = loss_kl.sum()

    enc_optimizer.step()
    dec_optimizer.step()

    st["report_rec_loss"] += loss_rc.item()
    st["report_kl_loss"] += loss_kl.item()
    st["report_loss"] += loss_rc.item() + loss_kl.item()

    if st["iter_"] % st["log_niter"] == 0:
        train_loss = st["report_loss"] / st["report_num_sents"]
        A.T.logging('epoch: %d, iter: %d, avg_loss: %.4f, kl: %.4f, recon: %.4f,'
                    'time %.2fs, kl_weight %.4f' %
                    (st["epoch"], st["iter_"], train_loss, st["report_kl_loss"] / st["report_num_sents"],
                     st["report_rec_loss"] / st["report_num_sents"], time.time() - st["start"], kl_weight))
        st["report_rec_loss"] = st["report_kl_loss"] = st["report_loss"] = 0
        st["report_num_words"] = st["report_num_sents"] = 0

    st["iter_"] += 1


def authors_argv(workload: str, init_path: str, K: int = 1000) -> list[str]:
    """The authors' command line (after ``--dataset ptb``) of a workload."""
    if workload == "train_ours":   # their README's "Ours" command, PTB, λ = 6 (lr 1.0 as the VAE row)
        return ["--fb", "2", "--target_kl", str(LAM), "--kl_start", "0", "--warm_up", "10",
                "--load_path", init_path, "--reset_dec"]
    if workload == "iw":
        return ["--iw_nsamples", str(K)]
    return []      # train_vae / test: their defaults (fb 0, kl_start 1.0 -> kl_weight 1, SGD lr 1.0, momentum 0)


# ==========================================================================================================
# Load accounting
# ==========================================================================================================

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat() -> tuple[float, float]:
    """(busy, steal) seconds of the whole machine from /proc/stat (busy: user+nice+system+irq+softirq)."""
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6]) / _HZ, (v[7] if len(v) > 7 else 0) / _HZ
    except (OSError, ValueError, IndexError):
        return float("nan"), float("nan")


def _self_cpu() -> float:
    """utime + stime of this process (all its threads) from /proc/self/stat, seconds."""
    try:
        with open("/proc/self/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / _HZ
    except (OSError, ValueError, IndexError):
        t = os.times()
        return t.user + t.system


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return list(os.getloadavg())


class Window:
    """One timed window: wall seconds, load average at both ends, CPU used by other processes (cores)."""

    def __init__(self):
        self.load0 = loadavg()
        self.busy0, self.steal0 = _proc_stat()
        self.self0 = _self_cpu()
        self.t0 = time.perf_counter()

    def stop(self, **extra) -> dict:
        sec = time.perf_counter() - self.t0
        busy, steal = _proc_stat()
        own = _self_cpu() - self.self0
        other = max(0.0, (busy - self.busy0) - own)
        return {"seconds": sec, "own_cpu_s": round(own, 3), "other_cpu_s": round(other, 3),
                "other_cores": round(other / sec, 4) if sec > 0 else None,
                "steal_cores": round((steal - self.steal0) / sec, 4) if sec > 0 else None,
                "load_before": self.load0, "load_after": loadavg(), **extra}


def merge_windows(ws: list[dict]) -> dict:
    sec = sum(w["seconds"] for w in ws)
    other = sum(w["other_cpu_s"] for w in ws)
    return {"seconds": sec, "other_cpu_s": round(other, 3), "other_cores": round(other / sec, 4) if sec else None,
            "max_window_other_cores": max((w["other_cores"] or 0) for w in ws) if ws else None}


# ==========================================================================================================
# Workers (each in a fresh process)
# ==========================================================================================================

def _torch(threads: int):
    import torch
    torch.set_num_threads(threads)
    return torch


def _paths(spec: dict) -> tuple[str, str, str]:
    ptb = Path(spec["ptb"])
    return str(ptb / "ptb.train.txt"), str(ptb / "ptb.valid.txt"), spec["test_file"]


def worker_prep(spec: dict) -> dict:
    """Untimed: the authors' initial weights (their init, their seed), the same weights as a textvae
    checkpoint, and the checks that both sides see the same data and compute the same model."""
    torch = _torch(spec["threads"])
    from textvae.modeling.checkpoint import atomic_save, check_bf16, model_payload
    from textvae.corpora.data import Vocab, make_batches, read_corpus
    from textvae.core.errors import ConfigError
    from textvae.modeling.model import VAE, ModelConfig
    A = import_authors(Path(spec["patched"]))
    train_f, valid_f, test_f = _paths(spec)
    args = authors_args(A, [], train_f, valid_f, test_f)
    st = authors_setup(A, args, with_optim=False)
    vae, vocab = st["vae"], st["vocab"]
    torch.save(vae.state_dict(), spec["init_path"])
    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                 "authors_config": str(Path(sys.modules["config.config_ptb"].__file__)),
                 "authors_args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}}

    tv_train = read_corpus(train_f)
    tv_vocab = Vocab.build(tv_train.sentences)
    theirs = [vocab.id2word(i) for i in range(len(vocab))]
    out["vocab"] = {"authors": len(vocab), "textvae": len(tv_vocab), "identical": tv_vocab.itos == theirs,
                    "last_type": theirs[-1]}
    tv = VAE(ModelConfig(vocab_size=len(tv_vocab), **PTB_SIZES))
    load_into_textvae(tv, vae.state_dict())
    atomic_save(model_payload(tv, tv_vocab, run={"method": "ae", "source": "the authors' initialisation"}),
                spec["tv_ckpt"])

    # the same exact-length batches (shapes) on both sides, in the same order
    a_shapes = [list(b.shape) for b in st["train_data"].create_data_batch(batch_size=args.batch_size,
                                                                           device="cpu", batch_first=True)]
    tv_b = make_batches([tv_vocab.encode(s) for s in tv_train.sentences], 32)
    tv_shapes = [list(t.shape) for t in tv_b.tensors]
    out["batches"] = {"authors": len(a_shapes), "textvae": len(tv_shapes), "same_shapes": a_shapes == tv_shapes,
                      "plan_shapes_match": all(a_shapes[k] == s for k, s in zip(spec["batch_ids"],
                                                                                 spec["batch_shapes"]))}
    # the same token ids for the IW sentences and the test-pass sentences
    a_test = A.D.MonoTextData(test_f, label=args.label, vocab=vocab)
    tv_test = read_corpus(test_f)
    same_ids = len(a_test.data) == len(tv_test.sentences)
    picks = spec["iw_ids"] + list(range(min(50, len(a_test.data))))
    for i in picks:
        a_ids = a_test._to_tensor([a_test.data[i]], True, "cpu")[0][0].tolist()
        same_ids &= a_ids == tv_vocab.encode(tv_test.sentences[i])
    out["test_ids_identical"] = bool(same_ids)
    out["test_sentences"] = len(a_test.data)

    xs = [a_test._to_tensor([a_test.data[i]], True, "cpu")[0] for i in spec["iw_ids"] + spec["extra_check_ids"]]
    out["same_z_checks"] = same_z_checks(vae, tv, xs)
    try:
        check_bf16(torch.device("cpu"))
        out["bf16"] = None
    except ConfigError as exc:
        out["bf16"] = str(exc)
    return out


def same_z_checks(vae, tv, xs: list, samples: int = 8, seed: int = 7, scales=(0.0, 0.1),
                  mismap: bool = False) -> list[dict]:
    """q(z|x) and log p(x|z) of the authors' ``vae`` and textvae's ``tv`` given the same weights, on the same z
    (``samples`` draws from the authors' q(z|x) per sentence ``x`` [1, T]), in eval mode: with the weights
    ``vae`` holds, then with every weight perturbed by N(0, scale²) (U(±0.01) weights hardly let z matter; the
    perturbation makes every parameter count). ``mismap``: swap the [emb; z] column blocks of textvae's decoder
    input weights after the copy (a deliberately wrong correspondence: the check must catch it)."""
    import torch
    checks = []
    gen = torch.Generator().manual_seed(seed)
    sd0 = {k: v.clone() for k, v in vae.state_dict().items()}
    for scale in scales:
        sd = {k: (v + scale * torch.randn(v.shape, generator=gen) if k not in AUTHORS_UNMAPPED else v)
              for k, v in sd0.items()}
        vae.load_state_dict(sd)
        load_into_textvae(tv, sd)
        if mismap:
            w = tv.decoder.lstm.weight_ih_l0.data
            e = tv.decoder.embed.weight.size(1)
            w.copy_(torch.cat([w[:, e:], w[:, :e]], 1))      # as if the input were [z; emb]
        vae.eval()
        tv.eval()
        worst = {"mu": 0.0, "logvar": 0.0, "log_px_z": 0.0, "log_px_z_rel": 0.0}
        mags = []
        with torch.no_grad():
            for x in xs:
                mu_a, lv_a = vae.encoder(x)
                mu_t, lv_t = tv.encoder(x)
                eps = torch.randn(1, samples, mu_a.size(1), generator=gen)
                z = mu_a.unsqueeze(1) + eps * (0.5 * lv_a).exp().unsqueeze(1)
                lp_a = vae.decoder.log_probability(x, z)
                lp_t = tv.decoder.log_prob(x, z)
                worst["mu"] = max(worst["mu"], float((mu_a - mu_t).abs().max()))
                worst["logvar"] = max(worst["logvar"], float((lv_a - lv_t).abs().max()))
                d = (lp_a - lp_t).abs()
                worst["log_px_z"] = max(worst["log_px_z"], float(d.max()))
                worst["log_px_z_rel"] = max(worst["log_px_z_rel"], float((d / lp_a.abs()).max()))
                mags.append(float(lp_a.abs().mean()))
        label = "authors' initialisation" if scale == 0 else f"perturbed: + N(0, {scale:g}^2) on every weight"
        checks.append({"weights": label, "sentences": len(mags), "samples_per_sentence": samples,
                       "mean_abs_log_px_z": round(statistics.mean(mags), 3),
                       "max_abs_diff": {k: float(f"{v:.3g}") for k, v in worst.items()}})
    vae.load_state_dict(sd0)
    return checks


def weight_copy_check(patched: str, train_file: str, test_file: str, sentences: int = 8,
                      mismap: bool = False) -> dict:
    """The weight correspondence on a corpus of one's choice (tests/test_bench_authors.py runs it in a
    subprocess: it imports the authors' top-level modules ``data``, ``modules``, ``utils``)."""
    import torch
    from textvae.corpora.data import Vocab, read_corpus
    from textvae.modeling.model import VAE, ModelConfig
    A = import_authors(Path(patched))
    args = authors_args(A, [], train_file, train_file, test_file)
    st = authors_setup(A, args, with_optim=False)
    vae, vocab = st["vae"], st["vocab"]
    tv_vocab = Vocab.build(read_corpus(train_file).sentences)
    tv = VAE(ModelConfig(vocab_size=len(tv_vocab), enc_emb=args.ni, dec_emb=args.ni, enc_hidden=args.enc_nh,
                         dec_hidden=args.dec_nh, nz=args.nz))
    a_test = A.D.MonoTextData(test_file, label=args.label, vocab=vocab)
    xs = [a_test._to_tensor([a_test.data[i]], True, "cpu")[0] for i in range(min(sentences, len(a_test.data)))]
    torch.manual_seed(0)
    return {"vocab_identical": tv_vocab.itos == [vocab.id2word(i) for i in range(len(vocab))],
            "sizes": {"ni": args.ni, "nh": args.dec_nh, "nz": args.nz, "vocab": len(vocab)},
            "checks": same_z_checks(vae, tv, xs, mismap=mismap)}


def worker_train(spec: dict) -> dict:
    _torch(spec["threads"])
    workload, side, precision = spec["workload"], spec["side"], spec["precision"]
    ids, warm = spec["batch_ids"], spec["warmup_ids"]
    per_batch = []
    if side == "authors":
        A = import_authors(Path(spec["patched"]))
        train_f, valid_f, test_f = _paths(spec)
        args = authors_args(A, authors_argv(workload, spec["init_path"]), train_f, valid_f, test_f)
        st = authors_setup(A, args)
        shapes = [list(st["train_data_batch"][k].shape) for k in ids]

        def step(k):
            authors_train_step(A, args, st, k)
            b = st["train_data_batch"][k]
            return b.size(0), b.size(0) * (b.size(1) - 1)
        info = {"loop": f"text_anneal_fb.py lines {LOOP['first']}-{LOOP['last']} (authors_train_step)",
                "fb": args.fb, "target_kl": args.target_kl, "kl_start": args.kl_start, "lr": args.lr}
    else:
        sys.path.insert(0, str(REPO / "bench"))
        import inspect

        from bench_train import shared_ptb
        from textvae.training.trainer import TrainConfig, Trainer
        ours = workload == "train_ours"
        cfg = TrainConfig(method="ours" if ours else "vae", lam=LAM if ours else None,
                          init_from=spec["tv_ckpt"] if ours else None, precision=precision, progress=False,
                          device="cpu", lr=1.0)
        t = Trainer(cfg, shared_ptb(), tempfile.mkdtemp(prefix="bench_authors_run_"), PTB_SIZES)
        t.model.train()
        shapes = [list(t.train_batches.tensors[k].shape) for k in ids]
        all_params = list(t.model.parameters())
        acc = {"tot_loss": 0.0, "tot_rec": 0.0, "tot_kl": 0.0, "n": 0}
        src, first = inspect.getsourcelines(Trainer.train_epoch)

        def step(k):
            # Trainer.train_epoch's loop body (non-aggressive branch), statement for statement
            st = t.state
            x = t.train_batches.tensors[k]
            st["step"] += 1
            beta = t.beta(st["step"])
            loss, rec, kl = t.batch_loss(x, beta)
            mean = loss.mean()
            t._check_finite(mean)
            t._step(mean, t.optimizers, all_params)
            b = x.size(0)
            acc["tot_loss"] += loss.detach().sum().item()
            acc["tot_rec"] += rec.detach().sum().item()
            acc["tot_kl"] += kl.detach().sum().item()
            acc["n"] += b
            return b, b * (x.size(1) - 1)
        info = {"loop": f"textvae.training.trainer.Trainer.train_epoch (src/textvae/training/trainer.py lines {first}-"
                        f"{first + len(src) - 1})", "method": cfg.method, "lam": cfg.lam, "lr": t.lr0}
    if shapes != spec["batch_shapes"]:
        raise SystemExit(f"batch shapes differ from the plan: {shapes[:5]} vs {spec['batch_shapes'][:5]}")
    for k in warm:
        step(k)
    w = Window()
    sents = toks = 0
    for k in ids:
        t0 = time.perf_counter()
        s, n = step(k)
        per_batch.append([k, round(time.perf_counter() - t0, 5)])
        sents += s
        toks += n
    win = w.stop()
    return {**info, "window": win, "sentences": sents, "tokens": toks, "tokens_per_s": toks / win["seconds"],
            "sentences_per_s": sents / win["seconds"], "per_batch_s": per_batch}


def worker_iw(spec: dict) -> dict:
    torch = _torch(spec["threads"])
    K, ids, seed = spec["K"], spec["iw_ids"], spec["seed"]
    ns = min(100, K)          # calc_iwnll's default chunk (ns=100); K below 100 only in --quick
    windows, nll, toks = [], [], []
    if spec["side"] == "authors":
        A = import_authors(Path(spec["patched"]))
        train_f, valid_f, test_f = _paths(spec)
        args = authors_args(A, authors_argv("iw", spec["init_path"], K), train_f, valid_f, test_f)
        st = authors_setup(A, args, with_optim=False)
        vae = st["vae"]
        vae.load_state_dict(torch.load(spec["init_path"]))      # as --eval does (line 220)
        vae.eval()
        test_data = A.D.MonoTextData(args.test_data, label=args.label, vocab=st["vocab"])
        # the [1, T] tensors create_data_batch(batch_size=1) gives (line 232), via the function it uses
        xs = [test_data._to_tensor([test_data.data[i]], True, st["device"])[0] for i in ids]
        torch.manual_seed(seed)
        report_nll_loss = 0
        with torch.no_grad():
            vae.nll_iw(min(xs, key=lambda x: x.size(1)), nsamples=ns, ns=ns)    # warm-up (untimed)
            for x in xs:
                w = Window()
                loss = vae.nll_iw(x, nsamples=args.iw_nsamples, ns=ns)           # utils.py line 67
                report_nll_loss += loss.sum().item()                              # utils.py line 69
                windows.append(w.stop())
                nll.append(float(loss.sum()))
                toks.append(x.size(1) - 1)
        info = {"call": "VAE.nll_iw per sentence (calc_iwnll's loop body, utils.py lines 67-69)", "ns": ns}
    else:
        from textvae.modeling.checkpoint import load_model
        from textvae.corpora.data import read_corpus
        from textvae.evaluation.fast_vae import FastVAE, iw_log_likelihood
        model, vocab, _ = load_model(spec["tv_ckpt"])
        sents = read_corpus(spec["test_file"]).sentences
        exs = [vocab.encode(sents[i]) for i in ids]
        t0 = time.perf_counter()
        fast = FastVAE(model, "cpu", spec["precision"])
        build = time.perf_counter() - t0
        iw_log_likelihood(fast, [min(exs, key=len)], min(K, 100), seed=seed)     # warm-up (untimed)
        for ex in exs:
            w = Window()
            lp = iw_log_likelihood(fast, [ex], K, seed=seed)
            windows.append(w.stop())
            nll.append(-float(lp[0]))
            toks.append(len(ex) - 1)
        info = {"call": "textvae.evaluation.fast_vae.iw_log_likelihood(FastVAE, [sentence], K) per sentence",
                "fastvae_build_s": round(build, 4)}
    m = merge_windows(windows)
    return {**info, "K": K, "window": m, "windows": windows, "nll": nll, "tokens_per_sentence": toks,
            "sentences": len(ids), "tokens": sum(toks), "tokens_per_s": sum(toks) / m["seconds"],
            "sentences_per_s": len(ids) / m["seconds"]}


def worker_test(spec: dict) -> dict:
    torch = _torch(spec["threads"])
    if spec["side"] == "authors":
        A = import_authors(Path(spec["patched"]))
        train_f, valid_f, test_f = _paths(spec)
        args = authors_args(A, authors_argv("test", spec["init_path"]), train_f, valid_f, test_f)
        st = authors_setup(A, args, with_optim=False)
        vae, device = st["vae"], st["device"]
        test_data = A.D.MonoTextData(args.test_data, label=args.label, vocab=st["vocab"])
        vae.load_state_dict(torch.load(spec["init_path"]))      # line 220
        vae.eval()
        with torch.no_grad():
            w = Window()
            test_data_batch = test_data.create_data_batch(batch_size=args.batch_size, device=device,
                                                          batch_first=True)          # line 223
            t1 = time.perf_counter()
            test_loss, nll, kl, ppl, mi = A.T.test(vae, test_data_batch, "TEST", args)   # line 227
            t2 = time.perf_counter()
            au, au_var = A.U.calc_au(vae, test_data_batch)                          # line 228
            t3 = time.perf_counter()
            win = w.stop()
        n = len(test_data.data)
        return {"call": "text_anneal_fb.py --eval branch, lines 222-228: create_data_batch, test(), calc_au",
                "window": win, "sentences": n, "seconds": win["seconds"], "seconds_without_iw": win["seconds"],
                "parts_s": {"create_data_batch": t1 - w.t0, "test": t2 - t1, "calc_au": t3 - t2},
                "metrics": {"neg_elbo": nll, "kl": kl, "rec": nll - kl, "mi": float(mi), "au": int(au),
                            "ppl_elbo": float(ppl)}}
    from textvae.modeling.checkpoint import load_model
    from textvae.corpora.data import read_corpus
    from textvae.evaluation.evaluate import evaluate_model
    model, vocab, _ = load_model(spec["tv_ckpt"])
    sents = read_corpus(spec["test_file"]).sentences
    w = Window()
    res = evaluate_model(model, vocab, sents, iw_samples=0, precision=spec["precision"], device="cpu")
    win = w.stop()
    return {"call": "textvae.evaluation.evaluate.evaluate_model(model, vocab, sentences, iw_samples=0)", "window": win,
            "sentences": len(sents), "seconds": win["seconds"], "seconds_without_iw": win["seconds"],
            "evaluate_model_seconds": res["seconds"],
            "metrics": {"neg_elbo": res["neg_elbo"], "kl": res["kl"], "rec": res["rec"], "mi": res["mi_li"],
                        "mi_he": res["mi_he"], "au": res["au"], "ppl_elbo": res["elbo_ppl"]}}


WORKERS = {"prep": worker_prep, "train_vae": worker_train, "train_ours": worker_train, "iw": worker_iw,
           "test": worker_test}


def worker_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    t0 = time.perf_counter()
    res = WORKERS[spec["workload"]](spec)
    res["process_seconds"] = round(time.perf_counter() - t0, 3)
    Path(spec["out"]).write_text(json.dumps(res, indent=1))
    return 0


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
