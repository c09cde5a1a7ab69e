"""The textvae side of the step-by-step fidelity check: the small fixed configuration, the scenarios (one per
training method), the starting weights (a recipe both codebases load), and a replay of textvae's real ``Trainer``
on a scenario that records every optimiser step.

Used by bench/fidelity.py (which runs the authors' code on the same scenarios and compares) and by
tests/test_fidelity.py (which replays textvae against the authors' numbers recorded once in
tests/data/fidelity_authors.json, without their code). Nothing here imports the authors' code.

How the two sides are made to see the same things (docs/fidelity.md):

* weights: every scenario starts from weights made by ``recipe_state`` (a seeded CPU generator, textvae's
  parameter names; the authors' side loads them through the weight map of authors_checkout.py);
* batches: the same exact-length batches, visited in the order textvae's Trainer draws (``epoch_orders``); the
  authors' side iterates its own batch list in that order (checked identical, id for id);
* noise: torch's global generator is re-seeded at the start of every epoch (``seed_train``) and before every
  validation (``seed_val``) on both sides; both codebases then draw the posterior noise and the two dropout
  masks in the same order and shapes, so dropout stays ON (0.5) and the masks are the same. IWAE draws its
  samples differently (theirs: 5 chunks of 2), so its scenarios run with dropout off and the noise FED from
  ``EpsFeed`` (one [B, 10, nz] tensor per call, theirs takes it 2 columns at a time);
* the aggressive loop's random batches: He et al. draw them with ``np.random.random_integers``; the recorded
  sequence is fed to textvae's ``random.randrange``.
"""
from __future__ import annotations

import contextlib
import random
from pathlib import Path

import torch

SEED = 783435
SIZES = dict(enc_emb=16, dec_emb=16, enc_hidden=32, dec_hidden=32, nz=8)
TRAIN_LINES, VALID_LINES = 320, 64       # the first lines of ptb.train.txt / ptb.valid.txt
AGGRESSIVE_TRAIN_LINES = 12              # the aggressive scenario's own, smaller, training file
LAM_FB, LAM_FBP = 0.8, 0.9               # chosen from the "spread" start's KLs (bench/fidelity.py --show-kl)


def seed_train(epoch: int) -> int:
    return 1000 + epoch


def seed_val(epoch: int) -> int:
    return 2000 + epoch


# name -> scenario. argv: the authors' command line after --dataset ptb (their script in "script");
# tv: textvae TrainConfig fields; start: recipe of the starting weights ("ae" ones go through --load_path /
# --init-from); default: the TrainConfig fields of textvae's own default where the authors' mode differs.
# authors_mode lists what differs from textvae's defaults and is set for the comparison.
SCENARIOS: dict[str, dict] = {
    "vae": dict(script="text_anneal_fb.py", argv=[], tv=dict(method="vae"), start="init"),
    "anneal": dict(script="text_anneal_fb.py", argv=["--kl_start", "0", "--warm_up", "1"],
                   tv=dict(method="anneal", warm_up=1), start="init"),
    "fb": dict(script="text_anneal_fb.py", argv=["--fb", "2", "--target_kl", str(LAM_FB)],
               tv=dict(method="fb", lam=LAM_FB), start="spread"),
    "fbp": dict(script="text_anneal_fb.py", argv=["--fb", "1", "--target_kl", str(LAM_FBP)],
                tv=dict(method="fbp", lam=LAM_FBP, fbp_mode="per_example"), start="spread"),
    "fbp_batch": dict(script="text_anneal_fb.py", argv=["--fb", "3", "--target_kl", str(LAM_FBP)],
                      tv=dict(method="fbp", lam=LAM_FBP, fbp_mode="batch_mean"), start="spread",
                      default=dict(fbp_mode="per_example")),
    "pretrain": dict(script="text_anneal_fb.py", argv=["--reset_dec"], tv=dict(method="pretrain"), start="ae"),
    "pretrain_noreset": dict(script="text_anneal_fb.py", argv=[],
                             tv=dict(method="pretrain", pretrain_reset_decoder=False), start="ae",
                             default=dict(pretrain_reset_decoder=True)),
    "pretrain_anneal": dict(script="text_anneal_fb.py", argv=["--reset_dec", "--kl_start", "0", "--warm_up", "1"],
                            tv=dict(method="pretrain_anneal", warm_up=1), start="ae"),
    "ours": dict(script="text_anneal_fb.py", argv=["--fb", "2", "--target_kl", str(LAM_FB), "--kl_start", "0",
                                                   "--warm_up", "1", "--reset_dec"],
                 tv=dict(method="ours", lam=LAM_FB, warm_up=1), start="ae"),
    "ae": dict(script="text_beta.py", argv=["--beta", "0"], tv=dict(method="ae"), start="init"),
    "iwae": dict(script="text_beta.py", argv=["--iw_train_nsamples", "10"],
                 tv=dict(method="iwae", iwae_code_compat=True), start="init", dropout=0.0, eps="fed",
                 default=dict(iwae_code_compat=False)),
    "iwae_pretrain": dict(script="text_beta.py", argv=["--iw_train_nsamples", "10", "--reset_dec"],
                          tv=dict(method="iwae_pretrain", iwae_code_compat=True), start="ae", dropout=0.0,
                          eps="fed", default=dict(iwae_code_compat=False)),
    "lm": dict(script="lm.py", argv=[], tv=dict(method="lm"), start="init"),
    # the epoch-level loop: lr decay (patience 1 from epoch 0) with reload of the best model, validation
    "loop": dict(script="text_anneal_fb.py", argv=["--load_best_epoch", "0", "--lr", "1.0"],
                 tv=dict(method="vae", patience=1, min_epoch=0, lr=1.0), start="init", epochs=6, patience=1),
    "aggressive": dict(script="text.py", argv=["--aggressive", "1", "--kl_start", "0.1", "--warm_up", "1"],
                       tv=dict(method="aggressive", warm_up=1), start="init", train_lines=AGGRESSIVE_TRAIN_LINES,
                       epochs=3),
}
EPOCHS = 2       # unless the scenario says otherwise: 2 epochs of the 320-sentence file = 2 x 65 steps


def lr_of(name: str) -> float:
    """Learning rate of a scenario on both sides (Li et al.'s 0.5; the LM and aggressive keep their 1.0)."""
    sc = SCENARIOS[name]
    if "lr" in sc["tv"]:
        return sc["tv"]["lr"]
    return 1.0 if sc["tv"]["method"] in ("lm", "aggressive") else 0.5


# ----------------------------------------------------------------------------------------------------------
# Data and weights
# ----------------------------------------------------------------------------------------------------------

def epoch_orders(data_dir: Path, epochs: int, seed: int = SEED) -> tuple[list[list[int]], dict]:
    """The batch visiting order of each epoch as textvae's Trainer draws it, and textvae's training and
    validation batches (id lists), which the authors' side is given (their create_data_batch orders the
    sentences of one length by numpy's unstable argsort: docs/fidelity.md, data path)."""
    from textvae.corpora.data import Vocab, make_batches, read_corpus, split_path
    sents = read_corpus(split_path(data_dir, "train")).sentences
    vocab = Vocab.build(sents)
    b = make_batches([vocab.encode(s) for s in sents], 32)
    v = make_batches([vocab.encode(s) for s in read_corpus(split_path(data_dir, "valid")).sentences], 32)
    orders = [b.epoch_order(random.Random(seed * 1000003 + e)) for e in range(epochs)]
    return orders, {"train": [t.tolist() for t in b.tensors], "valid": [t.tolist() for t in v.tensors]}


def write_subset(ptb: Path, out: Path, train_lines: int = TRAIN_LINES) -> Path:
    """``out/{train,valid,test}.txt``: the first lines of PTB's train and valid files (test = valid)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, src, n in (("train", "ptb.train.txt", train_lines), ("valid", "ptb.valid.txt", VALID_LINES),
                         ("test", "ptb.valid.txt", VALID_LINES)):
        with open(Path(ptb) / src) as fh:
            lines = [next(fh) for _ in range(n)]
        (out / f"{name}.txt").write_text("".join(lines))
    return out


def _uniform(shape, bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).mul(bound).float()


def recipe_state(template: dict, kind: str, seed: int = SEED) -> dict:
    """Starting weights in textvae's names (``template``: a state_dict for the shapes), drawn parameter by
    parameter from a seeded CPU generator:

    - ``init``: the SPEC §2.4 distribution (embeddings U(±0.1), the rest U(±0.01));
    - ``spread``: the encoder larger (U(±0.5), embedding U(±1)), so posteriors differ across sentences and the
      free-bits masks are mixed; decoder as ``init``;
    - ``ae``: ``spread``'s encoder with a decoder of U(±0.05) (its "AE checkpoint"; the reset must replace it);
    - ``reset``: decoder parameters only, the weights both sides put in place after their decoder reset.
    """
    bounds = {"init": (0.01, 0.1, 0.01, 0.1), "spread": (0.5, 1.0, 0.01, 0.1), "ae": (0.5, 1.0, 0.05, 0.05),
              "reset": (None, None, 0.01, 0.1)}[kind]
    enc_w, enc_e, dec_w, dec_e = bounds
    salt = {"init": 0, "spread": 100, "ae": 100, "reset": 300}[kind]
    out = {}
    for i, (name, t) in enumerate(sorted(template.items())):
        enc = name.startswith("encoder.")
        emb = "embed" in name
        b = (enc_e if emb else enc_w) if enc else (dec_e if emb else dec_w)
        if b is None:
            continue
        dec_salt = 200 if (kind == "ae" and not enc) else 0
        gen = torch.Generator().manual_seed(seed + salt + dec_salt + i)
        out[name] = _uniform(t.shape, b, gen)
    return out


class EpsFeed:
    """Posterior noise fed to both sides (IWAE scenarios): call ``start(seed)`` at the same points on both sides;
    every request of ``n`` samples for a batch of ``B`` takes the next ``n`` columns of the current
    ``[B, total, nz]`` tensor (a new one, from a generator seeded by ``seed`` and a counter, when it is used up)."""

    def __init__(self, total: int = 10):
        self.total = total
        self.start(0)

    def start(self, seed: int) -> None:
        self.seed, self.calls, self.buf, self.pos = seed, 0, None, 0

    def draw(self, b: int, n: int, nz: int) -> torch.Tensor:
        if self.buf is None or self.pos + n > self.total or self.buf.size(0) != b:
            gen = torch.Generator().manual_seed(self.seed * 100003 + self.calls)
            self.calls += 1
            self.buf, self.pos = torch.randn((b, self.total, nz), generator=gen), 0
        out = self.buf[:, self.pos:self.pos + n]
        self.pos += n
        return out


def reseed(seed: int, feed: EpsFeed | None) -> None:
    torch.manual_seed(seed)
    if feed is not None:
        feed.start(seed)


def fingerprint(sd: dict) -> dict:
    """A compact record of final weights (textvae names): norm and 16 evenly spaced entries per tensor."""
    out = {}
    for k, v in sorted(sd.items()):
        flat = v.detach().double().flatten()
        idx = torch.linspace(0, flat.numel() - 1, min(16, flat.numel())).long()
        out[k] = {"norm": float(flat.norm()), "values": [float(x) for x in flat[idx]]}
    return out


def fp_max_diff(a: dict, b: dict) -> float:
    """max |Δ| over the sampled entries of two fingerprints."""
    return max(max(abs(x - y) for x, y in zip(a[k]["values"], b[k]["values"])) for k in a)


# ----------------------------------------------------------------------------------------------------------
# The textvae replay
# ----------------------------------------------------------------------------------------------------------

def mask_count(objective: str, kld: torch.Tensor, lam: float | None, fbp_mode: str) -> int | None:
    """How many KL terms the SPEC's rule keeps (given the batch's per-dimension KLs): per example and dimension
    (FB), per example (FBP fb 1) or one for the batch (FBP fb 3)."""
    if objective == "fb":
        return int((kld > lam / kld.size(1)).sum())
    if objective == "fbp":
        kl = kld.sum(1)
        return int((kl > lam).sum()) if fbp_mode == "per_example" else int(kl.mean() > lam)
    return None


@contextlib.contextmanager
def _patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def replay(name: str, data_dir: Path, work: Path, aggressive_ids: list[int] | None = None,
           authors_mode: bool = True, overrides: dict | None = None, epochs: int | None = None,
           nudge: bool = False) -> dict:
    """Run textvae's Trainer on scenario ``name`` and record every optimiser step, every validation and the
    final weights. ``authors_mode``: the authors' padding-row quirk emulated (no gradient for the decoder
    embedding's last row; SPEC §8.13) and the scenario's TrainConfig as given; otherwise textvae's defaults
    (``default`` of the scenario, no emulation). ``overrides``: extra TrainConfig fields (planted-bug checks).
    ``nudge``: every starting weight moved by one float32 ulp (how far rounding alone carries the run)."""
    import textvae.modeling.objectives as tobj
    import textvae.training.trainer as ttrain
    from textvae.modeling.checkpoint import atomic_save, model_payload
    from textvae.modeling.model import VAE, ModelConfig

    sc = SCENARIOS[name]
    drop = sc.get("dropout", 0.5)
    sizes = {**SIZES, "dropout_in": drop, "dropout_out": drop}
    tv = dict(sc["tv"])
    if not authors_mode:
        tv.update(sc.get("default", {}))
    tv.update(overrides or {})
    epochs = epochs or sc.get("epochs", EPOCHS)
    work.mkdir(parents=True, exist_ok=True)
    base = dict(seed=SEED, lr=lr_of(name), progress=False, device="cpu", max_epochs=epochs)
    ae_path = None
    if sc["start"] == "ae":
        # the AE checkpoint the pretrained methods start from (a textvae checkpoint of the "ae" recipe)
        probe = ttrain.Trainer(ttrain.TrainConfig(method="vae", **base), data_dir, work / "probe", sizes)
        m = VAE(ModelConfig.from_dict({**sizes, "vocab_size": len(probe.vocab)}))
        m.load_state_dict(recipe_state(m.state_dict(), "ae"))
        ae_path = work / "ae.pt"
        atomic_save(model_payload(m, probe.vocab, run={"method": "ae", "source": "fidelity recipe 'ae'"}), ae_path)
        tv["init_from"] = str(ae_path)
    cfg = ttrain.TrainConfig(**{**base, **tv})
    t = ttrain.Trainer(cfg, data_dir, work / "run", sizes)
    model = t.model
    sd = model.state_dict()
    checks = {}
    if ae_path is not None:
        ae = recipe_state(sd, "ae")
        enc_same = all(torch.equal(sd[k], ae[k]) for k in sd if k.startswith("encoder."))
        dec_changed = [k for k in sd if k.startswith("decoder.") and not torch.equal(sd[k], ae[k])]
        checks["encoder_kept"] = enc_same
        checks["decoder_params_changed"] = len(dec_changed)
        checks["decoder_params"] = sum(1 for k in sd if k.startswith("decoder."))
        if cfg.method != "pretrain" or cfg.pretrain_reset_decoder:
            model.load_state_dict({**sd, **recipe_state(sd, "reset")})
    else:
        model.load_state_dict(recipe_state(sd, sc["start"]))
    if nudge:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
    if authors_mode:
        emb = model.embed.weight if cfg.method == "lm" else model.decoder.embed.weight
        last = emb.size(0) - 1
        emb.register_hook(lambda g: g.index_fill(0, torch.tensor([last]), 0.0))

    steps, vals = [], []
    feed = EpsFeed() if sc.get("eps") == "fed" else None
    kld_box = {}
    lam, objective = cfg.lam, t.method.objective

    def kl_per_dim(mu, logvar):
        kld = orig_kl(mu, logvar)
        kld_box["kld"] = kld.detach()
        return kld

    def reparam(mu, logvar, nsamples=1, generator=None):
        if feed is None:
            return orig_reparam(mu, logvar, nsamples, generator)
        eps = feed.draw(mu.size(0), nsamples, mu.size(1)).to(mu.dtype)
        return mu.unsqueeze(1) + (0.5 * logvar).exp().unsqueeze(1) * eps

    def batch_loss(x, beta):
        kld_box.clear()
        loss, rec, kl = orig_batch_loss(x, beta)
        kld = kld_box.pop("kld", None)
        steps.append({"loss": float(loss.detach().mean()), "rec": float(rec.detach().mean()),
                      "kl": float(kl.detach().mean()),
                      "beta": float(beta), "lr": t.state["lr"], "size": list(x.shape),
                      "mask": mask_count(objective, kld, lam, cfg.fbp_mode) if kld is not None else None})
        return loss, rec, kl

    def clip(params, max_norm, *a, **k):
        norm = orig_clip(params, max_norm, *a, **k)
        if steps:
            steps[-1]["gnorm"], steps[-1]["clip"] = float(norm), float(max_norm)
        return norm

    def train_epoch():
        reseed(seed_train(t.state["epoch"]), feed)
        return orig_train_epoch()

    def validate():
        reseed(seed_val(t.state["epoch"]), feed)
        out = orig_validate()
        vals.append({"epoch": t.state["epoch"], "val_loss": out["val_loss"], "val_rec": out["val_rec"],
                     "val_kl": out.get("val_kl"), "val_mi_he": out.get("val_mi_he")})
        return out

    ids = list(aggressive_ids or [])
    extra = {"n": 0, "rng": random.Random(0)}

    def randrange(n):
        if not ids:            # more inner steps than the authors made (the runs differ by then): go on
            extra["n"] += 1
            return extra["rng"].randrange(n)
        k = ids.pop(0)
        if not 0 <= k < n:
            raise RuntimeError(f"recorded batch id {k} out of range {n}")
        return k

    orig_kl, orig_reparam = tobj.kl_per_dim, tobj.reparameterize
    orig_batch_loss, orig_clip = t.batch_loss, torch.nn.utils.clip_grad_norm_
    orig_train_epoch, orig_validate = t.train_epoch, t.validate
    t.batch_loss, t.train_epoch, t.validate = batch_loss, train_epoch, validate
    threads = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        torch.set_num_threads(1)             # as the fixture was recorded (and tiny matrices gain nothing)
        stack.callback(torch.set_num_threads, threads)
        stack.enter_context(_patched(tobj, "kl_per_dim", kl_per_dim))
        stack.enter_context(_patched(tobj, "reparameterize", reparam))
        stack.enter_context(_patched(torch.nn.utils, "clip_grad_norm_", clip))
        if sc["tv"]["method"] == "aggressive":
            stack.enter_context(_patched(random, "randrange", randrange))
        t.fit()
    hist = t.state["history"]
    return {"steps": steps, "val": vals, "checks": checks, "final": fingerprint(model.state_dict()),
            "final_state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "epochs": [{"epoch": r["epoch"], "lr": r["lr"], "decayed_to": r.get("decayed_to"),
                        "aggressive": r.get("aggressive")} for r in hist],
            "orders": [t.train_batches.epoch_order(random.Random(cfg.seed * 1000003 + e)) for e in range(epochs)],
            "config": {k: v for k, v in vars(cfg).items() if k != "init_from"}, "vocab_size": len(t.vocab),
            "left_aggressive_ids": len(ids), "extra_aggressive_ids": extra["n"]}


# ----------------------------------------------------------------------------------------------------------
# Comparison (bench/fidelity.py and tests/test_fidelity.py)
# ----------------------------------------------------------------------------------------------------------

STEP_FIELDS = ("loss", "rec", "kl", "gnorm")
# relative differences are taken against max(|a|, |b|, floor): a KL of 1e-7 nats (the U(±0.01) start) is
# compared in absolute terms (its float32 rounding is absolute: exp(lv) - lv - 1 cancels near lv = 0)
FLOOR = {"loss": 1.0, "rec": 1.0, "kl": 1.0, "gnorm": 1e-3}
# float rounding: loss, Rec, KL and the validation numbers to 1e-5 relative; the gradient norm (a root of a sum
# of ~10^5 squares, which amplifies the rounding differences of the weights) and the weights to 1e-4
TOL = {"loss": 1e-5, "rec": 1e-5, "kl": 1e-5, "gnorm": 1e-4, "val": 1e-5, "weight": 1e-4}


def _rel(a: float, b: float, floor: float = 1e-3) -> float:
    return abs(a - b) / max(abs(a), abs(b), floor)


def compare(authors: dict, ours: dict) -> dict:
    """Step by step: the number of steps, the batch shapes, max |Δ| and max relative Δ of loss, Rec, KL and the
    gradient norm before clipping, β, lr and clip threshold (exactly), the masks, the validation numbers per
    epoch, the epoch-level events (lr decays, the aggressive switch-off), and the final weights (all of them when
    both sides give ``final_state``, else the fingerprint)."""
    a, o = authors["steps"], ours["steps"]
    out = {"steps_authors": len(a), "steps_textvae": len(o), "same_count": len(a) == len(o)}
    n = min(len(a), len(o))
    out["same_shapes"] = all(a[i]["size"] == o[i]["size"] for i in range(n))
    for f in STEP_FIELDS:
        d = [abs(a[i][f] - o[i][f]) for i in range(n)]
        r = [_rel(a[i][f], o[i][f], FLOOR[f]) for i in range(n)]
        out[f"max_abs_{f}"] = max(d) if d else 0.0
        out[f"max_rel_{f}"] = max(r) if r else 0.0
        out[f"first_step_above_tol_{f}"] = next((i for i, x in enumerate(r) if x > TOL[f]), None)
        out[f"steps_above_tol_{f}"] = sum(1 for x in r if x > TOL[f])
    # (the LM has no β: the authors' side records none, textvae's Trainer passes its constant 1)
    out["max_abs_beta"] = max((abs(a[i]["beta"] - o[i]["beta"]) for i in range(n) if a[i]["beta"] is not None),
                              default=0.0)
    betas = [s["beta"] for s in a if s["beta"] is not None]
    out["beta_range"] = [min(betas), max(betas)] if betas else None
    out["same_lr"] = all(a[i]["lr"] == o[i]["lr"] for i in range(n))
    out["same_clip"] = all(a[i]["clip"] == o[i]["clip"] for i in range(n))
    out["mask_differs_at"] = [i for i in range(n) if a[i]["mask"] != o[i]["mask"]]
    masks = [s["mask"] for s in a if s["mask"] is not None]
    out["mask_range"] = [min(masks), max(masks)] if masks else None
    va, vo = authors["val"], ours["val"]
    out["val_epochs"] = [len(va), len(vo)]
    out["max_rel_val"] = max((_rel(x[k], y[k], 1.0) for x, y in zip(va, vo) for k in ("val_loss", "val_rec")),
                             default=0.0)
    if len(va) != len(vo):
        out["max_rel_val"] = float("inf")
    ea = [(e.get("decayed_to"), e.get("aggressive")) for e in authors["epochs"]]
    eo = [(e.get("decayed_to"), e.get("aggressive")) for e in ours["epochs"]]
    out["same_epoch_events"] = ea == eo
    out["decays"] = sum(1 for d, _ in ea if d)
    mi_a = [e.get("mi_he") for e in authors["epochs"]]
    mi_o = [v.get("val_mi_he") for v in ours["val"]]
    pairs = [(x, y) for x, y in zip(mi_a, mi_o) if x is not None and y is not None]
    out["mi_he"] = [[x, y] for x, y in pairs]
    out["aggressive_by_epoch"] = [g for _, g in ea]
    if "final_state" in authors and "final_state" in ours:
        fa, fo = authors["final_state"], ours["final_state"]
        out["max_abs_weight"] = max(float((fa[k] - fo[k]).abs().max()) for k in fa)
        out["max_abs_weight_param"] = max(fa, key=lambda k: float((fa[k] - fo[k]).abs().max()))
    else:
        out["max_abs_weight"] = fp_max_diff(authors["final"], ours["final"])
    out["checks_authors"], out["checks_textvae"] = authors.get("checks"), ours.get("checks")
    return out


def agrees(c: dict, tol: dict = TOL) -> list[str]:
    """What breaks float-rounding agreement (``TOL``) in a comparison (empty: it agrees)."""
    bad = [k for k in ("same_count", "same_shapes", "same_lr", "same_clip", "same_epoch_events") if not c[k]]
    bad += [f"max_rel_{f} {c[f'max_rel_{f}']:.2g}" for f in STEP_FIELDS if c[f"max_rel_{f}"] > tol[f]]
    if c["max_abs_beta"] > 1e-12:
        bad.append(f"beta {c['max_abs_beta']:.2g}")
    if c["mask_differs_at"]:
        bad.append(f"mask differs at steps {c['mask_differs_at'][:5]}")
    if c["max_rel_val"] > tol["val"]:
        bad.append(f"max_rel_val {c['max_rel_val']:.2g}")
    if c["max_abs_weight"] > tol["weight"]:
        bad.append(f"max_abs_weight {c['max_abs_weight']:.2g}")
    ca, ct = c.get("checks_authors") or {}, c.get("checks_textvae") or {}
    for k in ("encoder_kept", "decoder_params_changed"):
        if k in ca and ca[k] != ct.get(k):
            bad.append(f"{k}: authors {ca[k]} textvae {ct.get(k)}")
    return bad
