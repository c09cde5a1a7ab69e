"""The authors' checkout as bench code uses it: a CPU-patched temporary copy, their configuration and set-up,
their training-loop body (text_anneal_fb.py) repeated statement for statement, and the weight map between their
VAE and textvae's. Shared by bench/bench_authors.py (speed, evaluation) and bench/fidelity.py (training steps).
Nothing of theirs is copied into this repository: everything here reads a checkout given at run time.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TEXTVAE_SHARED_DATA", REPO.parent / "shared" / "data"))
AUTHORS_URL = "https://github.com/bohanli/vae-pretraining-encoder"
AUTHORS_COMMIT = "bd4affa07bb01d7c673852ae1ec615f6bcae47ae"
PTB_SIZES = dict(enc_emb=256, dec_emb=256, enc_hidden=256, dec_hidden=256, nz=32)
LAM = 6.0                  # λ of the "ours" workload (target_kl of the authors' --fb 2)

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


def authors_fb_loss(vae, batch, args, kl_weight: float, dim_target_kl: float):
    """The loss of one batch as text_anneal_fb.py's training loop computes it for each ``--fb`` mode (lines
    318-338): (loss, loss_rc, loss_kl, kl_mask); kl_mask is None without free bits, and with ``--fb 2`` loss_kl
    is per dimension, as theirs."""
    kl_mask = None
    if args.fb == 0:
        loss, loss_rc, loss_kl = vae.loss(batch, kl_weight, nsamples=args.nsamples)
    elif args.fb == 1:
        loss, loss_rc, loss_kl = vae.loss(batch, kl_weight, nsamples=args.nsamples)
        kl_mask = (loss_kl > args.target_kl).float()
        loss = loss_rc + kl_mask * kl_weight * loss_kl
    elif args.fb == 2:
        mu, logvar = vae.encoder(batch)
        z = vae.encoder.reparameterize(mu, logvar, args.nsamples)
        loss_kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)
        kl_mask = (loss_kl > dim_target_kl).float()
        fake_loss_kl = (kl_mask * loss_kl).sum(dim=1)
        loss_rc = vae.decoder.reconstruct_error(batch, z).mean(dim=1)
        loss = loss_rc + kl_weight * fake_loss_kl
    elif args.fb == 3:
        loss, loss_rc, loss_kl = vae.loss(batch, kl_weight, nsamples=args.nsamples)
        kl_mask = (loss_kl.mean() > args.target_kl).float()
        loss = loss_rc + kl_mask * kl_weight * loss_kl
    return loss, loss_rc, loss_kl, kl_mask


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

    loss, loss_rc, loss_kl, _ = authors_fb_loss(vae, batch_data, args, kl_weight, st["dim_target_kl"])

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
