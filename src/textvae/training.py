"""The one training loop (SPEC §4): SGD/Adam, gradient clipping, lr decay with reload-best, aggressive inner loop,
atomic resumable checkpoints, per-epoch metrics.

Run directory layout (docs/architecture.md): ``last.pt`` (resume state, written after every epoch),
``best.pt`` (written once, when the run finishes), ``metrics.jsonl``, ``train.log``, ``vocab.txt``, ``config.json``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from textvae import DEFAULT_SEED
from textvae.checkpoint import (atomic_save, check_bf16, file_sha256, load_checkpoint, model_payload,
                                resolve_device)
from textvae.checks import MODEL_RULES, TRAIN_RULES, check_values, option_label
from textvae.data import Vocab, make_batches, read_corpus, split_path
from textvae.errors import CheckpointError, ConfigError, TrainingError
from textvae.methods import Method, get_method
from textvae.model import VAE, ModelConfig, build_model
from textvae.objectives import BetaSchedule, vae_loss
from textvae.pipeline import TRAIN_OPTION_NAMES
from textvae.rundir import atomic_write_text, clean_stale_tmp, hold_lock

log = logging.getLogger("textvae.train")


@dataclass
class TrainConfig:
    """Everything a run needs besides the data. Fields left ``None`` take the method's default (SPEC §3.12)."""

    method: str
    lam: float | None = None
    init_from: str | None = None
    seed: int = DEFAULT_SEED
    batch_size: int = 32
    max_epochs: int = 100
    lr: float | None = None
    encoder_init: str = "spec"           # spec (SPEC 2.4) | torch (PyTorch's defaults; docs/demo.md: the AE saddle)
                                         # | torch_forget (and forget-gate bias +3: reads whole sentences)
    patience: int | None = None
    min_epoch: int | None = None
    lr_decay: float = 0.5
    max_decays: int = 5
    clip_grad: float = 5.0
    warm_up: float = 10
    kl_start: float | None = None
    cyclic_epochs: int = 10
    cyclic_start: float = 0.1
    cyclic_ramp_epochs: float = 5
    fbp_mode: str = "per_example"        # SPEC 3.4 ❓: per_example (fb 1) | batch_mean (fb 3)
    fb_baseline_anneal: bool = False     # SPEC 3.4 ❓: anneal β for the FB/FBP baselines
    pretrain_reset_decoder: bool = True  # SPEC 3.6 ❓: reset the decoder for +pretrain baselines
    iwae_k: int = 10
    iwae_code_compat: bool = False       # SPEC 3.9 ⚠: the authors' sign-flipped IW loss
    aggressive_max_steps: int = 100
    aggressive_check_every: int = 15
    aggressive_clip: str = "all"         # all: clip over encoder+decoder grads (He et al.) | encoder: fast path
    max_train: int | None = None         # use the first N training examples (slices for tests)
    max_valid: int | None = None
    device: str = "auto"
    precision: str = "fp32"              # fp32 | bf16 (autocast; float32 master weights and losses)
    progress: bool = True

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # numpy's key array travels as a tensor: checkpoints must load with weights_only=True
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                      int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True   # SPEC §4
    torch.backends.cudnn.benchmark = False


# files a run writes in its folder (their temporaries of a killed write are removed at the next start)
OWN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "config.json", "vocab.txt")
LOCK_FILE = ".textvae-train.lock"
# settings that may change between a killed run and its resumption without changing its result
RESUME_FREE = ("device", "progress", "max_epochs", "init_from")


def run_lock(out: str | Path):
    """One training at a time in a run folder (a second one on the same --out is refused)."""
    return hold_lock(Path(out) / LOCK_FILE, f"--out {out}")


def check_run(cfg: TrainConfig, data_dir: str | Path, model_cfg: dict[str, Any]) -> Method:
    """Every option checked before anything is read or written; one line naming the option at fault."""
    m = get_method(cfg.method)
    check_values(dataclasses.asdict(cfg), TRAIN_RULES, option_label(TRAIN_OPTION_NAMES))
    check_values(model_cfg, MODEL_RULES, option_label())
    if m.needs_lam and (cfg.lam is None or not 0 < cfg.lam < math.inf):
        raise ConfigError(f"--lam: method {m.name!r} needs a target rate λ > 0 (got {cfg.lam})")
    if not m.needs_lam and cfg.lam is not None:
        raise ConfigError(f"--lam: method {m.name!r} takes no target rate")
    if m.pretrained_encoder and not cfg.init_from:
        raise ConfigError(f"--init-from: method {m.name!r} starts from an AE checkpoint; give its best.pt")
    if Path(data_dir).is_file():
        raise ConfigError(f"--data {data_dir}: is a file; give the corpus folder holding train.txt and valid.txt "
                          "(one file for both would validate on the training data)")
    return m


def _first_difference(old: dict, new: dict, prefix: str = "") -> str | None:
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{prefix}{k}.")
            if found:
                return found
        elif a != b:
            hashed = prefix.startswith("data.") or k == "init_from_sha256"
            return f"{prefix}{k} changed" if hashed else f"{prefix}{k} was {a!r}, is {b!r}"
    return None


class Trainer:
    def __init__(self, cfg: TrainConfig, data_dir: str | Path, out_dir: str | Path, model_cfg: dict[str, Any]):
        self.cfg = cfg
        self.method: Method = check_run(cfg, data_dir, model_cfg)
        m = self.method
        self.data_dir = Path(data_dir)
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(cfg.device)
        self.lr0 = cfg.lr if cfg.lr is not None else m.lr
        self.patience = cfg.patience if cfg.patience is not None else m.patience
        self.min_epoch = cfg.min_epoch if cfg.min_epoch is not None else m.min_epoch
        if cfg.precision not in ("fp32", "bf16"):
            raise ConfigError(f"--precision: expected fp32 or bf16, got {cfg.precision!r}")
        if cfg.precision == "bf16":
            check_bf16(self.device)

        train = read_corpus(split_path(data_dir, "train"), max_examples=cfg.max_train)
        valid = read_corpus(split_path(data_dir, "valid"), max_examples=cfg.max_valid)
        self.vocab = Vocab.build(train.sentences)
        self.train_examples = [self.vocab.encode(s) for s in train.sentences]
        self.valid_examples = [self.vocab.encode(s) for s in valid.sentences]
        self.train_batches = make_batches(self.train_examples, cfg.batch_size, self.device)
        self.valid_batches = make_batches(self.valid_examples, cfg.batch_size, self.device)

        self.model_cfg = ModelConfig.from_dict({**model_cfg, "vocab_size": len(self.vocab)})
        seed_everything(cfg.seed)
        self.model = build_model(m.kind, self.model_cfg).to(self.device)
        if cfg.encoder_init != "spec" and isinstance(self.model, VAE) and not m.pretrained_encoder:
            self.model.encoder.reset_parameters(cfg.encoder_init)
        if m.pretrained_encoder:
            self._load_pretrained(cfg.init_from)

        kind = m.schedule
        kl_start = cfg.kl_start if cfg.kl_start is not None else m.kl_start
        if m.anneal_choice and cfg.fb_baseline_anneal:
            kind = "linear"
        self.beta = BetaSchedule(kind, beta=m.beta, kl_start=kl_start, warm_up=cfg.warm_up,
                                 n_train=len(self.train_examples), batch_size=cfg.batch_size,
                                 batches_per_epoch=len(self.train_batches), cycle_epochs=cfg.cyclic_epochs,
                                 cyclic_start=cfg.cyclic_start, ramp_epochs=cfg.cyclic_ramp_epochs)
        self.schedule_kind = kind
        self.state = {"epoch": 0, "step": 0, "lr": self.lr0, "best": math.inf, "ref": 1e4, "bad": 0,
                      "decays": 0, "aggressive": m.aggressive, "prev_mi": 0.0, "history": []}
        self.best_model: dict[str, torch.Tensor] | None = None
        self._build_optimizers()

    # ------------------------------------------------------------------------------------------------------
    def _load_pretrained(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.get("kind") != "vae":
            raise CheckpointError(f"{path}: --init-from needs a VAE-family (AE) checkpoint, got kind {ckpt.get('kind')!r}")
        if list(ckpt["vocab"]) != self.vocab.itos:
            raise CheckpointError(f"{path}: vocabulary differs from the one built from this training data "
                                  f"({len(ckpt['vocab'])} vs {len(self.vocab)} types)")
        theirs = ModelConfig.from_dict(ckpt["model_config"])
        if theirs != self.model_cfg:
            raise CheckpointError(f"{path}: model sizes differ: checkpoint {theirs.to_dict()} vs run {self.model_cfg.to_dict()}")
        self.model.load_state_dict(ckpt["model"])
        # the method says: always (Ours, IWAE + pretrained enc) or as spec_choices.pretrain_reset_decoder (SPEC 3.6)
        reset = self.method.decoder_reset
        if reset == "always" or (reset == "choice" and self.cfg.pretrain_reset_decoder):
            self.model.reset_decoder()

    def _build_optimizers(self) -> None:
        lr = self.state["lr"]
        make = (lambda ps: torch.optim.Adam(ps, lr=lr)) if self.method.optimizer == "adam" else \
            (lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0))
        if isinstance(self.model, VAE):
            self.enc_opt = make(self.model.encoder.parameters())
            self.dec_opt = make(self.model.decoder.parameters())
            self.optimizers = [self.enc_opt, self.dec_opt]
        else:
            self.optimizers = [make(self.model.parameters())]

    def _autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------------------------------------------
    def batch_loss(self, x: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-example (loss, rec, kl) of the training objective."""
        m = self.method
        with self._autocast():
            if m.kind == "lm":
                nll = -self.model.log_prob(x)
                return nll, nll, torch.zeros_like(nll)
            t = vae_loss(self.model, x, m.objective, beta, self.cfg.lam, self.cfg.fbp_mode, self.cfg.iwae_k,
                         self.cfg.iwae_code_compat)
        return t.loss, t.rec, t.kl

    def _step(self, loss: torch.Tensor, optimizers: list, clip_params) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clip_params, self.cfg.clip_grad)
        for opt in optimizers:
            opt.step()

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite training loss ({loss.item()}) at epoch {self.state['epoch']} step "
                                f"{self.state['step']}; {self._last_good()}")

    def _aggressive_inner(self, x: torch.Tensor, beta: float) -> None:
        """He et al.'s encoder-only inner loop (SPEC §3.8)."""
        cfg, enc, dec = self.cfg, self.model.encoder, self.model.decoder
        fast = cfg.aggressive_clip == "encoder"
        if fast:
            dec.requires_grad_(False)
        clip_params = list(enc.parameters()) if fast else list(self.model.parameters())
        try:
            sub, s_loss, s_words, prev = 1, 0.0, 0, 1e4
            batch = x
            while sub < cfg.aggressive_max_steps:
                loss, _, _ = self.batch_loss(batch, beta)
                s_loss += loss.sum().item()
                s_words += batch.size(0) * (batch.size(1) - 1)
                mean = loss.mean()
                self._check_finite(mean)
                self._step(mean, [self.enc_opt], clip_params)
                batch = self.train_batches.tensors[random.randrange(len(self.train_batches))]
                if sub % cfg.aggressive_check_every == 0:
                    cur = s_loss / s_words
                    if cur > prev:
                        break
                    prev, s_loss, s_words = cur, 0.0, 0
                sub += 1
        finally:
            if fast:
                dec.requires_grad_(True)

    def train_epoch(self) -> dict:
        self.model.train()
        st = self.state
        order = self.train_batches.epoch_order(random.Random(self.cfg.seed * 1000003 + st["epoch"]))
        tot_loss = tot_rec = tot_kl = 0.0
        n = 0
        all_params = list(self.model.parameters())
        bar = tqdm(order, desc=f"epoch {st['epoch']}", unit="batch", leave=False, mininterval=2,
                   disable=not self.cfg.progress, file=sys.stderr)
        for k in bar:
            x = self.train_batches.tensors[k]
            st["step"] += 1
            beta = self.beta(st["step"])
            if st["aggressive"]:
                self._aggressive_inner(x, beta)
                loss, rec, kl = self.batch_loss(x, beta)
                mean = loss.mean()
                self._check_finite(mean)
                self._step(mean, [self.dec_opt], all_params)
            else:
                loss, rec, kl = self.batch_loss(x, beta)
                mean = loss.mean()
                self._check_finite(mean)
                self._step(mean, self.optimizers, all_params)
            b = x.size(0)
            tot_loss += loss.detach().sum().item()
            tot_rec += rec.detach().sum().item()
            tot_kl += kl.detach().sum().item()
            n += b
        return {"train_loss": tot_loss / n, "train_rec": tot_rec / n, "train_kl": tot_kl / n,
                "beta": self.beta(st["step"])}

    @torch.no_grad()
    def validate(self) -> dict:
        """Validation in eval mode with one z sample (SPEC §4); MI (Li, whole split), MI (He, per batch), AU."""
        from textvae.metrics import active_units, mutual_information

        self.model.eval()
        m = self.method
        tot_rec = tot_kl = tot_iw = 0.0
        mus, logvars, sizes = [], [], []
        n = 0
        for x in self.valid_batches:
            b = x.size(0)
            n += b
            with self._autocast():
                if m.kind == "lm":
                    tot_rec += (-self.model.log_prob(x)).sum().item()
                    continue
                if m.val == "iw":
                    t = vae_loss(self.model, x, "iwae", 1.0, iwae_k=self.cfg.iwae_k,
                                 iwae_code_compat=self.cfg.iwae_code_compat)
                    tot_iw += t.loss.sum().item()
                else:
                    t = vae_loss(self.model, x, "elbo", 1.0)
            tot_rec += t.rec.sum().item()
            tot_kl += t.kl.sum().item()
            mu, logvar = self.model.encoder(x)
            mus.append(mu.float())
            logvars.append(logvar.float())
            sizes.append(b)
        out = {"val_rec": tot_rec / n}
        if m.kind == "lm":
            out["val_loss"] = out["val_nll"] = tot_rec / n
            return out
        out["val_kl"] = tot_kl / n
        out["val_elbo"] = out["val_rec"] + out["val_kl"]
        if m.val == "iw":
            out["val_iw"] = tot_iw / n
        out["val_loss"] = {"elbo": out["val_elbo"], "rec": out["val_rec"], "iw": out.get("val_iw")}[m.val]
        mu, logvar = torch.cat(mus), torch.cat(logvars)
        out["val_au"] = int(active_units(mu))
        # the AE saddle (docs/demo.md): spread of the posterior means across sentences vs. the posterior noise
        out["val_mu_var"] = float(mu.var(dim=0).mean())
        out["val_sigma"] = float((0.5 * logvar).exp().mean())
        out["val_mi"] = float(mutual_information(mu, logvar, variant="li"))
        out["val_mi_he"] = float(mutual_information(mu, logvar, variant="he", batch_sizes=sizes))
        return out

    # ------------------------------------------------------------------------------------------------------
    def _resume_state(self) -> dict:
        return {
            **model_payload(self.model, self.vocab, self.run_info(), epoch=self.state["epoch"],
                            best_val=self.state["best"]),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "trainer_state": self.state,
            "best_model": self.best_model,
            "rng": _rng_state(),
            "resume_key": self.resume_key,
        }

    @functools.cached_property
    def resume_key(self) -> dict:
        """What a resume state must share with this run to continue it: the settings that shape the result,
        the model sizes, and the content of the data and of the AE checkpoint it starts from."""
        cfg = {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in RESUME_FREE}
        return {"config": cfg, "model_config": self.model_cfg.to_dict(),
                "data": {s: file_sha256(split_path(self.data_dir, s)) for s in ("train", "valid")},
                "init_from_sha256": file_sha256(self.cfg.init_from) if self.cfg.init_from else None}

    def _restore(self, ckpt: dict) -> None:
        if list(ckpt["vocab"]) != self.vocab.itos or ckpt["model_config"] != self.model_cfg.to_dict():
            raise CheckpointError(f"{self.out / 'last.pt'}: resume state belongs to another vocabulary or model size")
        if ckpt["run"].get("method") != self.method.name or ckpt["run"].get("lam") != self.cfg.lam:
            raise CheckpointError(f"{self.out / 'last.pt'}: resume state is for method {ckpt['run'].get('method')} "
                                  f"λ={ckpt['run'].get('lam')}, not {self.method.name} λ={self.cfg.lam}")
        self.model.load_state_dict(ckpt["model"])
        self.state = ckpt["trainer_state"]
        self.best_model = ckpt["best_model"]
        self._build_optimizers()
        for opt, sd in zip(self.optimizers, ckpt["optimizers"]):
            opt.load_state_dict(sd)
        _set_rng_state(ckpt["rng"])

    def run_info(self) -> dict:
        return {**dataclasses.asdict(self.cfg), "method": self.method.name, "lr0": self.lr0,
                "patience": self.patience, "min_epoch": self.min_epoch, "schedule": self.schedule_kind,
                "objective": self.method.objective, "train_examples": len(self.train_examples),
                "train_batches": len(self.train_batches), "vocab_size": len(self.vocab),
                "device_used": str(self.device), "torch": str(torch.__version__)}

    def _write_metrics(self) -> None:
        atomic_write_text("".join(json.dumps(r) + "\n" for r in self.state["history"]), self.out / "metrics.jsonl")

    def _last_good(self) -> str:
        if self.state["epoch"] > 0:
            return f"the last good checkpoint is {self.out / 'last.pt'} (after epoch {self.state['epoch'] - 1})"
        return "no checkpoint was written (the run failed in its first epoch)"

    def fit(self, resume: bool = False, locked: bool = False) -> dict:
        """Train to the end (``resume``: continue from ``last.pt`` when it is a state of this very run).
        ``locked``: the caller already holds the run folder's lock (``run_lock``)."""
        if locked:
            return self._fit(resume)
        with run_lock(self.out):
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict:
        cfg, st, m = self.cfg, self.state, self.method
        last = self.out / "last.pt"
        for tmp in clean_stale_tmp(self.out, OWN_FILES):
            log.info("removed %s (left by a killed write)", tmp)
        ckpt = load_checkpoint(last) if resume and last.exists() else None
        differs = ckpt and ckpt.get("resume_key") and _first_difference(ckpt["resume_key"], self.resume_key)
        if differs:
            log.warning("%s is the state of another run (%s); starting from epoch 0", last, differs)
            ckpt = None
        if ckpt is not None:
            self._restore(ckpt)
            log.info("resumed from %s at epoch %d (step %d)", last, self.state["epoch"], self.state["step"])
            st = self.state
            self._write_metrics()   # rows the killed run saved in last.pt but not yet in metrics.jsonl
        else:
            (self.out / "best.pt").unlink(missing_ok=True)
        self.vocab.save(self.out / "vocab.txt")
        atomic_write_text(json.dumps(self.run_info(), indent=2) + "\n", self.out / "config.json")
        log.info("method %s (%s); %d train / %d valid examples, %d train batches, vocab %d, device %s",
                 m.name, m.description, len(self.train_examples), len(self.valid_examples),
                 len(self.train_batches), len(self.vocab), self.device)
        while st["epoch"] < cfg.max_epochs and st["decays"] < cfg.max_decays:
            epoch = st["epoch"]
            t0 = time.perf_counter()
            rec = {"epoch": epoch, **self.train_epoch()}
            seconds = time.perf_counter() - t0
            rec.update(self.validate())
            rec.update(lr=st["lr"], aggressive=st["aggressive"], seconds=round(seconds, 3),
                       sentences_per_s=round(len(self.train_examples) / seconds, 1))
            val = rec["val_loss"]
            if not math.isfinite(val):
                raise TrainingError(f"non-finite validation loss at epoch {epoch}; {self._last_good()}")
            if val < st["best"]:
                st["best"] = val
                self.best_model = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
                rec["new_best"] = True
            # He et al.'s switch-off rule for aggressive training (SPEC §3.8)
            if st["aggressive"]:
                if rec["val_mi_he"] < st["prev_mi"]:
                    st["aggressive"] = False
                    log.info("aggressive training switched off after epoch %d", epoch)
                st["prev_mi"] = rec["val_mi_he"]
            # lr decay with reload-best (SPEC §4)
            if val > st["ref"]:
                st["bad"] += 1
                if st["bad"] >= self.patience and epoch >= self.min_epoch:
                    st["lr"] *= cfg.lr_decay
                    st["decays"] += 1
                    st["ref"], st["bad"] = val, 0
                    self.model.load_state_dict(self.best_model)
                    self._build_optimizers()
                    rec["decayed_to"] = st["lr"]
            else:
                st["bad"], st["ref"] = 0, val
            rec["best_val"] = st["best"]
            st["history"].append(rec)
            st["epoch"] = epoch + 1
            atomic_save(self._resume_state(), last)
            self._write_metrics()
            log.info(_format_epoch(rec))
        if self.best_model is None:
            raise TrainingError(f"{last}: the run ended without a finished epoch; nothing to write to best.pt")
        final = model_payload(self.model, self.vocab, self.run_info(), epoch=st["epoch"], best_val=st["best"])
        final["model"] = self.best_model
        atomic_save(final, self.out / "best.pt")
        log.info("done after %d epochs; best validation %s = %.4f", st["epoch"], m.val, st["best"])
        return {"best_val": st["best"], "epochs": st["epoch"], "history": st["history"]}


def _format_epoch(r: dict) -> str:
    parts = [f"epoch {r['epoch']:3d}", f"train {r['train_loss']:.3f}"]
    if "val_elbo" in r:
        parts += [f"rec {r['train_rec']:.3f}", f"kl {r['train_kl']:.3f}", f"beta {r['beta']:.3f}",
                  f"| val -elbo {r['val_elbo']:.3f} rec {r['val_rec']:.3f} kl {r['val_kl']:.3f}",
                  f"au {r['val_au']}", f"mi {r['val_mi']:.3f}"]
    else:
        parts.append(f"| val nll {r['val_loss']:.3f}")
    parts += [f"lr {r['lr']:.4g}", f"{r['sentences_per_s']:.0f} sent/s"]
    if r.get("new_best"):
        parts.append("*")
    if "decayed_to" in r:
        parts.append(f"(lr -> {r['decayed_to']:.4g}, reloaded best)")
    return " ".join(parts)
