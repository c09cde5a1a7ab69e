"""The authors' side of the step-by-step fidelity check (bench/fidelity.py): their training loops on the
scenarios of fidelity_replay.py, recording every optimiser step.

Their loops are inline in ``main()`` of each script, so they are repeated here statement for statement (line
numbers at commits bd4affa of bohanli/vae-pretraining-encoder and cdc4eb9 of jxhe/vae-lagging-encoder), on their
own objects: ``init_config()``, ``MonoTextData``, ``GaussianLSTMEncoder``/``LSTMEncoder``, ``LSTMDecoder``,
``LSTM_LM``, ``VAE.loss``, ``VAE.loss_iw``, ``LSTMDecoder.reconstruct_error``, ``decoder.reset_parameters``,
their ``test()`` and ``calc_au`` / ``calc_mi``. What the repetition adds: a record of each step (loss, Rec, KL,
β, mask, the norm ``clip_grad_norm_`` returns), the re-seeding points of fidelity_replay.py, batches visited in
the given order, and the starting weights loaded from the shared recipe. Settings changed from their configs
(as a config file would set them): sizes (SIZES), data paths, dropout 0 for IWAE.
Run in a subprocess (their top-level module names ``data``, ``modules``, ``utils`` would shadow others).
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import optim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from authors_checkout import (AUTHORS_TO_TEXTVAE, AUTHORS_UNMAPPED, authors_fb_loss,  # noqa: E402
                              import_authors)
from fidelity_replay import (SCENARIOS, SIZES, EpsFeed, lr_of, recipe_state, reseed,  # noqa: E402
                             seed_train, seed_val)

LM_TO_TEXTVAE = {"embed.weight": "embed.weight", "lstm.weight_ih_l0": "lstm.weight_ih_l0",
                 "lstm.weight_hh_l0": "lstm.weight_hh_l0", "lstm.bias_ih_l0": "lstm.bias_ih_l0",
                 "lstm.bias_hh_l0": "lstm.bias_hh_l0", "pred_linear.weight": "proj.weight"}
LM_UNMAPPED = ("loss.weight",)


def to_textvae(sd: dict, lm: bool) -> dict:
    m, un = (LM_TO_TEXTVAE, LM_UNMAPPED) if lm else (AUTHORS_TO_TEXTVAE, AUTHORS_UNMAPPED)
    extra = set(sd) - set(m) - set(un)
    if extra:
        raise ValueError(f"unmapped parameters of theirs: {sorted(extra)}")
    return {m[k]: v.detach().clone() for k, v in sd.items() if k in m}


def to_authors(tv_sd: dict, template: dict, lm: bool) -> dict:
    m = LM_TO_TEXTVAE if lm else AUTHORS_TO_TEXTVAE
    out = {k: template[k].clone() for k in template}
    for k, tk in m.items():
        if tk in tv_sd:
            out[k] = tv_sd[tk].clone()
    return out


def aligned(batches: list, seed: int = 12345) -> list:
    """The list their test() visits, through ``np.random.permutation``, in list order (same noise per batch as
    textvae's validation, which visits the batches in list order): the global numpy generator is seeded."""
    np.random.seed(seed)
    perm = np.random.permutation(len(batches))
    np.random.seed(seed)
    out = [None] * len(batches)
    for k, p in enumerate(perm):
        out[p] = batches[k]
    return out


def _feed_reparameterize(feed: EpsFeed):
    def reparameterize(mu, logvar, nsamples=1):
        eps = feed.draw(mu.size(0), nsamples, mu.size(1)).to(mu.dtype)
        return mu.unsqueeze(1).expand(-1, nsamples, -1) + torch.mul(eps, logvar.mul(0.5).exp().unsqueeze(1))
    return reparameterize


def _quiet(*a, **k):
    return None


def setup(mod, D, M, U, name: str, data: Path, work: Path) -> dict:
    """``init_config()`` of the scenario's script, then its main()'s set-up (text_anneal_fb.py 175-215,
    text_beta.py 171-211, lm.py 119-145, text.py 248-279): data, vocabulary, initialisers, model, --load_path
    and --reset_dec; the starting weights of the recipe; the optimisers."""
    sc = SCENARIOS[name]
    argv = [sc["script"], "--dataset", "yahoo" if sc["script"] == "text.py" else "ptb", *sc["argv"]]
    if "--lr" not in argv and sc["script"] != "text.py":
        argv += ["--lr", str(lr_of(name))]
    saved, sys.argv = sys.argv, argv
    try:
        args = mod.init_config()
    finally:
        sys.argv = saved
    args.train_data, args.val_data, args.test_data = (str(data / f"{s}.txt") for s in ("train", "valid", "test"))
    args.ni, args.enc_nh, args.dec_nh, args.nz = SIZES["enc_emb"], SIZES["enc_hidden"], SIZES["dec_hidden"], SIZES["nz"]
    drop = sc.get("dropout", 0.5)
    args.dec_dropout_in = args.dec_dropout_out = drop
    args.device = "cpu"
    mod.logging = _quiet
    lm = sc["script"] == "lm.py"
    train_data = D.MonoTextData(args.train_data, label=args.label if hasattr(args, "label") else False)
    vocab = train_data.vocab
    val_data = D.MonoTextData(args.val_data, label=getattr(args, "label", False), vocab=vocab)
    model_init, emb_init = U.uniform_initializer(0.01), U.uniform_initializer(0.1)
    if lm:
        model = M.LSTM_LM(args, vocab, model_init, emb_init)
    else:
        Enc = M.GaussianLSTMEncoder if hasattr(M, "GaussianLSTMEncoder") else M.LSTMEncoder
        encoder = Enc(args, len(vocab), model_init, emb_init)
        args.enc_nh = args.dec_nh
        decoder = M.LSTMDecoder(args, vocab, model_init, emb_init)
        model = M.VAE(encoder, decoder, args)
    template = to_textvae(model.state_dict(), lm)
    checks = {}
    if sc["start"] == "ae":
        ae = to_authors(recipe_state(template, "ae"), model.state_dict(), lm)
        args.load_path = str(work / f"{name}_ae.pt")
        torch.save(ae, args.load_path)
        # their lines: load_state_dict(torch.load(load_path)); if args.reset_dec: decoder.reset_parameters(...)
        model.load_state_dict(torch.load(args.load_path))
        if getattr(args, "reset_dec", False):
            model.decoder.reset_parameters(model_init, emb_init)
        sd = model.state_dict()
        checks["encoder_kept"] = all(torch.equal(sd[k], ae[k]) for k in sd if k.startswith("encoder."))
        checks["decoder_params_changed"] = sum(1 for k in sd if k.startswith("decoder.") and k not in AUTHORS_UNMAPPED
                                               and not torch.equal(sd[k], ae[k]))
        if getattr(args, "reset_dec", False):
            model.load_state_dict(to_authors(recipe_state(template, "reset"), sd, lm))
    else:
        model.load_state_dict(to_authors(recipe_state(template, sc["start"]), model.state_dict(), lm))
    feed = None
    if sc.get("eps") == "fed":
        feed = EpsFeed()
        model.encoder.reparameterize = _feed_reparameterize(feed)
    if lm:
        opts = [optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)]
    else:
        lr = 1.0 if sc["script"] == "text.py" else args.lr          # text.py line 325: lr=1.0 hard-coded
        opts = [optim.SGD(model.encoder.parameters(), lr=lr, momentum=args.momentum),
                optim.SGD(model.decoder.parameters(), lr=lr, momentum=args.momentum)]
    train_b = train_data.create_data_batch(batch_size=args.batch_size, device="cpu", batch_first=True)
    val_b = val_data.create_data_batch(batch_size=args.batch_size, device="cpu", batch_first=True)
    return {"args": args, "model": model, "opts": opts, "train": train_b, "val": val_b, "feed": feed,
            "checks": checks, "lm": lm, "lr": opts[0].param_groups[0]["lr"], "vocab_size": len(vocab),
            "template": template, "itos": [vocab.id2word(i) for i in range(len(vocab))]}


def _vae_update(st, loss, loss_rc, loss_kl, kl_weight, batch, mask, clip, rec_list) -> None:
    """The end of both VAE loops' iteration: the batch mean, backward, clipping, both optimisers' steps; recorded."""
    loss = loss.mean(dim=-1)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(st["model"].parameters(), clip)
    for opt in st["opts"]:
        opt.step()
    rec_list.append(_rec(loss, loss_rc, loss_kl, kl_weight, st, batch, mask, norm, clip))


def step_anneal_fb(T, args, st, batch, rec_list) -> None:
    """text_anneal_fb.py lines 306-344 (the loop body without its report bookkeeping)."""
    vae, (enc_opt, dec_opt) = st["model"], st["opts"]
    st["kl_weight"] = kl_weight = min(1.0, st["kl_weight"] + st["anneal_rate"])
    enc_opt.zero_grad()
    dec_opt.zero_grad()
    loss, loss_rc, loss_kl, kl_mask = authors_fb_loss(vae, batch, args, kl_weight, st["dim_target_kl"])
    mask = None if kl_mask is None else int(kl_mask.sum())   # examples (fb 1), dimensions (fb 2), 0/1 (fb 3)
    if args.fb == 2:
        loss_kl = loss_kl.sum(dim=1)             # (their report sums it over everything: the same total)
    _vae_update(st, loss, loss_rc, loss_kl, kl_weight, batch, mask, T.clip_grad, rec_list)


def step_beta(B, args, st, batch, rec_list) -> None:
    """text_beta.py lines 296-314."""
    vae, (enc_opt, dec_opt) = st["model"], st["opts"]
    kl_weight = args.beta
    enc_opt.zero_grad()
    dec_opt.zero_grad()
    if args.iw_train_nsamples < 0:
        loss, loss_rc, loss_kl = vae.loss(batch, kl_weight, nsamples=args.nsamples)
    else:
        loss, loss_rc, loss_kl = vae.loss_iw(batch, kl_weight, nsamples=args.iw_train_nsamples, ns=B.ns)
    _vae_update(st, loss, loss_rc, loss_kl, kl_weight, batch, None, B.clip_grad, rec_list)


def step_lm(L, args, st, batch, rec_list) -> None:
    """lm.py lines 182-191."""
    lm, (opt,) = st["model"], st["opts"]
    opt.zero_grad()
    loss = lm.reconstruct_error(batch)
    nll = loss.detach()
    loss = loss.mean(dim=-1)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(lm.parameters(), args.clip_grad)
    opt.step()
    rec_list.append(_rec(loss, nll, torch.zeros_like(nll), None, st, batch, None, norm, args.clip_grad))


def _rec(loss, rc, kl, beta, st, batch, mask, norm, clip) -> dict:
    return {"loss": float(loss), "rec": float(rc.detach().float().mean()), "kl": float(kl.detach().float().mean()),
            "beta": None if beta is None else float(beta), "lr": st["lr"], "size": list(batch.shape),
            "mask": mask, "gnorm": float(norm), "clip": float(clip)}


def step_aggressive(H, args, st, batch, rec_list, ids) -> None:
    """text.py lines 364-424: the encoder-only inner loop while aggressive, then the outer step."""
    vae, (enc_opt, dec_opt), tb = st["model"], st["opts"], st["train"]
    st["kl_weight"] = kl_weight = min(1.0, st["kl_weight"] + st["anneal_rate"])
    sub_iter, batch_enc, burn_words, burn_pre, burn_cur = 1, batch, 0, 1e4, 0
    while st["aggressive"] and sub_iter < 100:
        enc_opt.zero_grad()
        dec_opt.zero_grad()
        bs, sl = batch_enc.size()
        burn_words += (sl - 1) * bs
        loss, loss_rc, loss_kl = vae.loss(batch_enc, kl_weight, nsamples=args.nsamples)
        burn_cur += loss.sum().item()
        loss = loss.mean(dim=-1)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), H.clip_grad)
        enc_opt.step()
        rec_list.append(_rec(loss, loss_rc, loss_kl, kl_weight, st, batch_enc, None, norm, H.clip_grad))
        id_ = np.random.random_integers(0, len(tb) - 1)
        ids.append(int(id_))
        batch_enc = tb[id_]
        if sub_iter % 15 == 0:
            burn_cur = burn_cur / burn_words
            if burn_pre - burn_cur < 0:
                break
            burn_pre = burn_cur
            burn_cur = burn_words = 0
        sub_iter += 1
    enc_opt.zero_grad()
    dec_opt.zero_grad()
    loss, loss_rc, loss_kl = vae.loss(batch, kl_weight, nsamples=args.nsamples)
    loss = loss.mean(dim=-1)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), H.clip_grad)
    if not st["aggressive"]:
        enc_opt.step()
    dec_opt.step()
    rec_list.append(_rec(loss, loss_rc, loss_kl, kl_weight, st, batch, None, norm, H.clip_grad))


def _same_batches(theirs: list, ours: list) -> dict:
    """Their create_data_batch list against textvae's: identical, or the same sentences per batch in another
    row order, or other compositions (counts)."""
    a = [b.tolist() for b in theirs]
    rows_same = sum(1 for x, y in zip(a, ours) if x == y)
    sets_same = sum(1 for x, y in zip(a, ours) if sorted(x) == sorted(y))
    return {"batches": [len(a), len(ours)], "identical": a == ours, "identical_batches": rows_same,
            "same_sentences_other_row_order": sets_same - rows_same, "other_composition": len(a) - sets_same}


def mi_same_noise(mod, model, val: list, epoch: int, nz: int) -> float:
    """Their calc_mi (text.py lines 189-197, He's per-batch MI) with the posterior samples textvae's validation
    draws for its He-variant MI: after re-seeding, textvae draws one [B, 1, nz] sample per validation batch (its
    validation loss), then one float64 [N, nz] tensor for the Li-variant MI and one for the He variant
    (textvae.evaluation.metrics.mutual_information); the same draws are made here and the last one is given to their
    encoder's reparameterize, batch by batch in list order (as calc_mi visits them)."""
    reseed(seed_val(epoch), None)
    for b in val:
        torch.randn((b.size(0), 1, nz))
    n = sum(b.size(0) for b in val)
    torch.randn((n, nz), dtype=torch.float64)
    eps = torch.randn((n, nz), dtype=torch.float64)
    pos = [0]

    def reparameterize(mu, logvar, nsamples=1):
        e = eps[pos[0]:pos[0] + mu.size(0)].to(mu.dtype).unsqueeze(1)
        pos[0] += mu.size(0)
        return mu.unsqueeze(1) + e * logvar.mul(0.5).exp().unsqueeze(1)
    enc = model.encoder
    enc.reparameterize = reparameterize
    try:
        return float(mod.calc_mi(model, val))
    finally:
        del enc.reparameterize


def run_scenario(mods, name: str, data: Path, work: Path, orders: list[list[int]], batches: dict) -> dict:
    """One scenario on the authors' side: every epoch in the given batch orders, then their validation and the
    lr-decay rule (text_anneal_fb.py lines 362-398; patience = the scenario's or their constant)."""
    sc = SCENARIOS[name]
    mod, D, M, U = mods[sc["script"]]
    st = setup(mod, D, M, U, name, data, work)
    args, model, feed = st["args"], st["model"], st["feed"]
    from textvae.corpora.data import Vocab, read_corpus
    tv_vocab = Vocab.build(read_corpus(data / "train.txt").sentences)
    same = {"vocab_identical": tv_vocab.itos == st["itos"], "train": _same_batches(st["train"], batches["train"]), "valid": _same_batches(st["val"], batches["valid"])}
    # the batches textvae builds, given to their loop and their test() (the same vocabulary ids: checked above)
    st["train"] = [torch.tensor(b, dtype=torch.long) for b in batches["train"]]
    st["val"] = [torch.tensor(b, dtype=torch.long) for b in batches["valid"]]
    st["kl_weight"] = getattr(args, "kl_start", 1.0)
    warm = getattr(args, "warm_up", 0)
    st["anneal_rate"] = (1.0 - st["kl_weight"]) / (warm * (len(D.MonoTextData(args.train_data).data) / args.batch_size)) \
        if warm > 0 else 0
    st["dim_target_kl"] = getattr(args, "target_kl", -1) / float(args.nz)
    st["aggressive"] = bool(getattr(args, "aggressive", 0))
    patience = sc.get("patience", getattr(mod, "decay_epoch", getattr(args, "decay_epoch", 2)))
    min_epoch = 15 if sc["script"] == "text.py" else getattr(args, "load_best_epoch", 0)
    steps, vals, epochs, ids = [], [], [], []
    opt_dict = {"not_improved": 0, "lr": st["lr"], "best_loss": 1e4}
    best_loss, decay_cnt, pre_mi = 1e4, 0, 0
    save_path = work / f"{name}_best.pt"
    model.train()
    for epoch in range(len(orders)):
        reseed(seed_train(epoch), feed)
        np.random.seed(seed_train(epoch))      # the aggressive loop's random batches (text.py line 389)
        ep = {"epoch": epoch, "lr": opt_dict["lr"], "aggressive": st["aggressive"]}
        for i in orders[epoch]:
            b = st["train"][i]
            if sc["script"] == "text_anneal_fb.py":
                step_anneal_fb(mod, args, st, b, steps)
            elif sc["script"] == "text_beta.py":
                step_beta(mod, args, st, b, steps)
            elif sc["script"] == "lm.py":
                step_lm(mod, args, st, b, steps)
            else:
                step_aggressive(mod, args, st, b, steps, ids)
        model.eval()
        if st["aggressive"]:                    # text.py lines 455-464 (at the epoch's last iteration)
            cur_mi = mi_same_noise(mod, model, st["val"], epoch, args.nz)
            ep["mi_he"] = float(cur_mi)
            if cur_mi - pre_mi < 0:
                st["aggressive"] = False
            pre_mi = cur_mi
        reseed(seed_val(epoch), feed)
        with torch.no_grad():
            if st["lm"]:
                nll, _ = mod.test(model, aligned(st["val"]), args)
                loss, rec, kl = nll, nll, None
            else:
                loss, nll, kl, _, _ = mod.test(model, aligned(st["val"]), "VAL", args)
                rec = nll - kl
        vals.append({"epoch": epoch, "val_loss": float(loss), "val_rec": float(rec),
                     "val_kl": None if kl is None else float(kl)})
        if loss < best_loss:
            best_loss = loss
            torch.save(model.state_dict(), save_path)
        if loss > opt_dict["best_loss"]:
            opt_dict["not_improved"] += 1
            if opt_dict["not_improved"] >= patience and epoch >= min_epoch:
                opt_dict["best_loss"] = loss
                opt_dict["not_improved"] = 0
                opt_dict["lr"] = opt_dict["lr"] * 0.5
                model.load_state_dict(torch.load(save_path))
                decay_cnt += 1
                ep["decayed_to"] = opt_dict["lr"]
                ps = [model.parameters()] if st["lm"] else [model.encoder.parameters(), model.decoder.parameters()]
                st["opts"] = [optim.SGD(p, lr=opt_dict["lr"], momentum=args.momentum) for p in ps]
                st["lr"] = opt_dict["lr"]
        else:
            opt_dict["not_improved"] = 0
            opt_dict["best_loss"] = loss
        epochs.append(ep)
        model.train()
    final = to_textvae(model.state_dict(), st["lm"])
    return {"steps": steps, "val": vals, "epochs": epochs, "checks": st["checks"], "same_batches": same,
            "aggressive_ids": ids, "final_state": final, "vocab_size": st["vocab_size"],
            "argv": SCENARIOS[name]["argv"], "script": sc["script"], "patience": patience, "min_epoch": min_epoch}


def load_modules(patched: Path, which: str) -> dict:
    """Their scripts and modules from a copy: Li et al.'s three scripts, or He et al.'s text.py."""
    if which == "li":
        A = import_authors(patched)
        tb, lm = importlib.import_module("text_beta"), importlib.import_module("lm")
        return {"text_anneal_fb.py": (A.T, A.D, A.M, A.U), "text_beta.py": (tb, A.D, A.M, A.U),
                "lm.py": (lm, A.D, A.M, A.U)}
    sys.path.insert(0, str(patched))
    os.chdir(patched)                            # their init_config creates models/ and logs/ in the cwd
    text = importlib.import_module("text")
    import data as D
    import modules as M

    class U:                                     # text.py defines its initialiser inside main() (lines 232-236)
        class uniform_initializer:
            def __init__(self, stdv):
                self.stdv = stdv

            def __call__(self, tensor):
                torch.nn.init.uniform_(tensor, -self.stdv, self.stdv)
    if not str(Path(text.__file__).resolve()).startswith(str(patched.resolve())):
        raise SystemExit(f"text.py imported from {text.__file__}, not from the copy")
    return {"text.py": (text, D, M, U)}
