"""Latent-space probing and classification (SPEC §6-7): ``textvae probe {bleu,smoothness,noisy,interpolate,copy,classify}``.

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
import copy as _copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from textvae import DEFAULT_SEED
from textvae.checkpoint import file_sha256, load_model, resolve_device
from textvae.data import BOS_ID, EOS_ID, Vocab, make_batches, read_corpus, split_path
from textvae.errors import CheckpointError, ConfigError, DataError
from textvae.reporting import md_escape
from textvae.rundir import atomic_write_text



# ==========================================================================================================
# Small utilities
# ==========================================================================================================

def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN/inf become null (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj: dict, path: str | Path) -> None:
    """Atomic JSON write (temporary file in the same directory, then rename)."""
    atomic_write_text(json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n", path)


def markdown_path(json_path: str | Path) -> Path:
    """``OUT.md`` next to ``OUT.json`` (same stem)."""
    return Path(json_path).with_suffix(".md")


def _progress(iterable=None, *, quiet: bool = False, **kw):
    return tqdm(iterable, disable=quiet, file=sys.stderr, dynamic_ncols=True, **kw)


def cpu_generator(seed: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for ``(seed, stream)``; different probes / settings use different streams."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


# ==========================================================================================================
# Model access: means, posterior samples, decoding
# ==========================================================================================================

def load_vae(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, Vocab, dict]:
    model, vocab, ckpt = load_model(path, device)
    if getattr(model, "kind", None) != "vae":
        raise CheckpointError(f"{path}: probing needs a VAE checkpoint (kind 'vae'), got kind {ckpt.get('kind')!r}")
    model.eval()
    return model, vocab, ckpt


def checkpoint_info(path: str | Path, ckpt: dict) -> dict:
    run = ckpt.get("run") or {}
    return {"path": str(path), "sha256": file_sha256(path), "method": run.get("method"), "lam": run.get("lam"),
            "dataset": run.get("dataset"), "train_seed": run.get("seed"), "epoch": ckpt.get("epoch"),
            "best_val": ckpt.get("best_val")}


@torch.no_grad()
def encode(model, examples: Sequence[Sequence[int]], device: torch.device | str = "cpu", batch_size: int = 256,
           quiet: bool = True, desc: str = "encode") -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` ``[N, nz]`` on the CPU, in the order of ``examples`` (framed ids).

    Exact-length batches (SPEC §1.5): no padding, so every row equals its one-at-a-time value."""
    model.eval()
    n, nz = len(examples), model.cfg.nz
    mu = torch.empty((n, nz), dtype=torch.float32)
    logvar = torch.empty((n, nz), dtype=torch.float32)
    if n == 0:
        return mu, logvar
    batches = make_batches(examples, batch_size)
    for x, idx in _progress(zip(batches.tensors, batches.index), total=len(batches), quiet=quiet, desc=desc,
                            leave=False):
        m, lv = model.encoder(x.to(device))
        idx_t = torch.tensor(idx, dtype=torch.long)
        mu[idx_t] = m.float().cpu()
        logvar[idx_t] = lv.float().cpu()
    return mu, logvar


def sample_posterior(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One ``z ~ q(z|x)`` per row (``[N, nz]``), noise drawn from a CPU generator in row order."""
    eps = torch.randn(mu.shape, generator=generator, dtype=torch.float32)
    return mu.cpu() + (0.5 * logvar.cpu()).exp() * eps


@torch.no_grad()
def decode(model, z: torch.Tensor, max_len: int, device: torch.device | str = "cpu", greedy: bool = True,
           seed: int = 0, batch_size: int = 256, quiet: bool = True, desc: str = "decode") -> list[list[int]]:
    """Decode every row of ``z [N, nz]`` (chunks of ``batch_size``) → token ids without ``</s>``."""
    model.eval()
    device = torch.device(device)
    gen = None
    if not greedy:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
    out: list[list[int]] = []
    starts = range(0, z.size(0), batch_size)
    for s in _progress(starts, quiet=quiet, desc=desc, leave=False):
        zz = z[s:s + batch_size].to(device=device, dtype=torch.float32)
        out.extend(model.decoder.generate(zz, max_len, BOS_ID, EOS_ID, greedy=greedy, generator=gen))
    return out


def ids_to_tokens(vocab: Vocab, ids: Sequence[int]) -> list[str]:
    """Generated ids → tokens (``generate`` already stops before ``</s>``; nothing else is stripped)."""
    return [vocab.itos[int(i)] for i in ids]


# ==========================================================================================================
# Metrics
# ==========================================================================================================

def corpus_bleu(hyps: Sequence[Sequence[str]], refs: Sequence[Sequence[str]]) -> tuple[float, str]:
    """Corpus BLEU-4 ×100 with sacreBLEU, tokenize ``none``, no smoothing (SPEC §6.1) → ``(score, signature)``."""
    from sacrebleu.metrics import BLEU

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    bleu = BLEU(tokenize="none", smooth_method="none", force=True)  # force: no "tokenized period" warning
    score = bleu.corpus_score([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]]).score
    # sacreBLEU returns 100.00000000000004 for a perfect match; clip rounding noise only
    return float(min(max(score, 0.0), 100.0)), str(bleu.get_signature())


class TokenCoder:
    """Maps each distinct token to one Unicode code point so that a token list becomes a string and
    character-level Levenshtein (rapidfuzz, C++) equals word-level Levenshtein. Surrogates are skipped."""

    LIMIT = 0x110000 - 0x800

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    def char(self, token: str) -> str:
        c = self.codes.get(token)
        if c is None:
            i = len(self.codes)
            if i >= self.LIMIT:
                raise ValueError("more distinct tokens than Unicode code points")
            cp = i if i < 0xD800 else i + 0x800
            c = self.codes[token] = chr(cp)
        return c

    def encode(self, tokens: Sequence[str]) -> str:
        return "".join(self.char(t) for t in tokens)

    def encode_all(self, sentences: Sequence[Sequence[str]]) -> list[str]:
        return [self.encode(s) for s in sentences]


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Word-level Levenshtein distance (unit insert/delete/substitute) between two token lists."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(list(a), list(b)))


def pairwise_edit_distances(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]], workers: int = -1) -> np.ndarray:
    """Element-wise word-level edit distances ``d(a[k], b[k])``."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    if len(a) != len(b):
        raise ValueError("pairwise_edit_distances needs equally long lists")
    coder = TokenCoder()
    sa, sb = coder.encode_all(a), coder.encode_all(b)
    if hasattr(process, "cpdist"):
        return np.asarray(process.cpdist(sa, sb, scorer=Levenshtein.distance, workers=workers, dtype=np.int32),
                          dtype=np.int64)
    return np.fromiter((Levenshtein.distance(x, y) for x, y in zip(sa, sb)), dtype=np.int64, count=len(sa))


def min_edit_distances(queries: Sequence[Sequence[str]], corpus: Sequence[Sequence[str]], workers: int = -1,
                       chunk: int = 16, quiet: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """For each query the minimum word-level edit distance to any corpus sentence and the index of the
    (first) nearest one. ``rapidfuzz.process.cdist`` in C++ threads, ``chunk`` queries at a time."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    if not corpus:
        raise ValueError("empty corpus")
    coder = TokenCoder()
    cs = coder.encode_all(corpus)
    qs = coder.encode_all(queries)
    mins = np.empty(len(qs), dtype=np.int64)
    arg = np.empty(len(qs), dtype=np.int64)
    for s in _progress(range(0, len(qs), chunk), quiet=quiet, desc="nearest neighbours",
                       total=(len(qs) + chunk - 1) // chunk, leave=False):
        d = process.cdist(qs[s:s + chunk], cs, scorer=Levenshtein.distance, workers=workers, dtype=np.int32)
        arg[s:s + chunk] = d.argmin(axis=1)
        mins[s:s + chunk] = d.min(axis=1)
    return mins, arg


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson r; NaN when either vector is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError("pearson needs two 1-d vectors of equal length >= 2")
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float((xc * xc).sum()) * float((yc * yc).sum()))
    return float((xc * yc).sum() / den) if den > 0 else float("nan")


def random_pairs(n: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pairs (i, j), i != j, each uniform over the n(n-1) ordered pairs, with replacement."""
    if n < 2:
        raise DataError("smoothness needs at least 2 sentences")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=count)
    j = (i + rng.integers(1, n, size=count)) % n
    return i, j


def smoothness_pcc(latents: np.ndarray, sentences: Sequence[Sequence[str]], pairs: int, seed: int
                   ) -> tuple[float, np.ndarray, np.ndarray]:
    """SPEC §6.2: Pearson r between ``||z_i - z_j||_2`` and the word edit distance of sentences i, j over
    ``pairs`` random pairs → ``(r, l2 distances, edit distances)``."""
    z = np.asarray(latents, dtype=np.float64)
    if len(z) != len(sentences):
        raise ValueError("one latent per sentence expected")
    i, j = random_pairs(len(z), pairs, seed)
    l2 = np.sqrt(((z[i] - z[j]) ** 2).sum(axis=1))
    ed = pairwise_edit_distances([sentences[a] for a in i], [sentences[b] for b in j])
    return pearson(l2, ed), l2, ed


def swap_words(tokens: Sequence[Any], k: int, rng: np.random.Generator, mode: str = "random") -> list:
    """``k`` successive swaps (SPEC §6.3). ``random``: exchange the words at two distinct uniformly chosen
    positions; ``adjacent``: exchange the words at a uniform position i and i+1. Sentences of < 2 words stay
    unchanged. The multiset of words is always kept."""
    out = list(tokens)
    n = len(out)
    if n < 2:
        return out
    for _ in range(k):
        if mode == "random":
            i, j = rng.choice(n, size=2, replace=False)
        elif mode == "adjacent":
            i = int(rng.integers(0, n - 1))
            j = i + 1
        else:
            raise ConfigError(f"unknown swap mode {mode!r} (random|adjacent)")
        out[i], out[j] = out[j], out[i]
    return out


def interpolation_points(z0: torch.Tensor, z1: torch.Tensor, points: int) -> torch.Tensor:
    """``z_t = (1-t) z0 + t z1`` for ``t = 0, 1/(points-1), …, 1`` → ``[points, nz]`` (endpoints exact)."""
    if points < 2:
        raise ConfigError("--points must be >= 2")
    t = torch.linspace(0.0, 1.0, points, dtype=z0.dtype).unsqueeze(1)
    return (1.0 - t) * z0.unsqueeze(0) + t * z1.unsqueeze(0)


# ==========================================================================================================
# Classification helpers (SPEC §7)
# ==========================================================================================================

def label_index(*label_lists: Sequence[str]) -> dict[str, int]:
    """One label → class-index map for all splits: integer labels keep their value (``"1"`` → 1, as [C]
    converts with ``int``); any non-integer label switches to sorted-string order."""
    labels = sorted({l for lst in label_lists for l in lst})
    try:
        vals = {l: int(l) for l in labels}
        if all(v >= 0 for v in vals.values()):
            return vals
    except ValueError:
        pass
    return {l: i for i, l in enumerate(labels)}


def sample_label_subset(labels: Sequence[int], n: int, seed: int = DEFAULT_SEED, mode: str = "uniform") -> np.ndarray:
    """Indices of ``n`` labelled training examples, without replacement ([C] ``sampling_training_labels.py``):
    ``uniform`` = ``np.random.seed(seed); np.random.choice(N, n, replace=False)`` (so the subsets for different
    n are nested); ``balanced`` = ``n // #classes`` per class, classes in increasing order, same generator."""
    labels = np.asarray(labels)
    total = len(labels)
    rs = np.random.RandomState(seed)
    if mode == "uniform":
        if n > total:
            raise DataError(f"cannot sample {n} labelled examples from {total}")
        return rs.choice(total, n, replace=False)
    if mode == "balanced":
        classes = np.unique(labels)
        per = n // len(classes)
        out = []
        for c in classes:
            idx = np.flatnonzero(labels == c)
            if per > len(idx):
                raise DataError(f"cannot sample {per} examples of class {c} (only {len(idx)})")
            out.append(idx[rs.choice(len(idx), per, replace=False)])
        return np.concatenate(out)
    raise ConfigError(f"unknown label sampling {mode!r} (uniform|balanced)")


def fit_gmm(train_x: np.ndarray, n_components: int, seed: int):
    """sklearn GaussianMixture with [C]'s settings (SPEC §7.1) and a recorded random_state.

    Fitted with one BLAS/OpenMP thread: on a shared machine multi-threaded k-means + EM on 100k×32 ran 10×
    slower (112 s vs 11 s measured); a fixed thread count also keeps the fit independent of the machine."""
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    gmm = GaussianMixture(n_components=n_components, covariance_type="full", tol=1e-3, max_iter=200, n_init=1,
                          init_params="kmeans", random_state=seed)
    with threadpool_limits(1):
        gmm.fit(np.asarray(train_x, dtype=np.float64))
    return gmm


def map_components(rule: str, n_components: int, valid_y: np.ndarray, valid_resp: np.ndarray | None = None,
                   valid_pred: np.ndarray | None = None) -> np.ndarray:
    """Component → label map from the validation set.

    ``top`` ([C] default): label of the single validation example with the highest responsibility for the
    component; ``majority``: most frequent label among the validation examples assigned to it (ties → smallest
    label; an empty component falls back to ``top``); ``hungarian``: one-to-one assignment maximising the
    validation counts (components without a partner get -1, which never matches)."""
    valid_y = np.asarray(valid_y)
    if rule == "top":
        return valid_y[np.argmax(valid_resp, axis=0)]
    if rule == "majority":
        top = valid_y[np.argmax(valid_resp, axis=0)] if valid_resp is not None else None
        out = np.empty(n_components, dtype=valid_y.dtype)
        for c in range(n_components):
            ys = valid_y[valid_pred == c]
            if ys.size == 0:
                out[c] = top[c] if top is not None else -1
            else:
                vals, counts = np.unique(ys, return_counts=True)
                out[c] = vals[np.argmax(counts)]
        return out
    if rule == "hungarian":
        from scipy.optimize import linear_sum_assignment

        classes = np.unique(valid_y)
        counts = np.zeros((n_components, len(classes)))
        for k, c in enumerate(classes):
            counts[:, k] = np.bincount(valid_pred[valid_y == c], minlength=n_components)[:n_components]
        rows, cols = linear_sum_assignment(-counts)
        out = np.full(n_components, -1, dtype=np.int64)
        out[rows] = classes[cols]
        return out
    raise ConfigError(f"unknown GMM rule {rule!r} (top|majority|hungarian)")


def gmm_accuracy(train_x, valid_x, valid_y, test_x, test_y, n_components: int = 10, rule: str = "top",
                 seed: int = DEFAULT_SEED, all_rules: bool = True) -> dict:
    """Unsupervised accuracy (%) of a GMM fitted on training features (SPEC §7.1).

    ``top`` and ``majority`` use the ``n_components`` GMM; ``hungarian`` a separate GMM with one component per
    class (one-to-one matching, [C] ``--one2one``). The primary ``rule`` gives ``accuracy``."""
    valid_y, test_y = np.asarray(valid_y), np.asarray(test_y)
    n_classes = len(np.unique(np.concatenate([valid_y, test_y])))
    out: dict[str, Any] = {"components": n_components, "rule": rule, "random_state": seed,
                           "covariance_type": "full", "tol": 1e-3, "max_iter": 200, "n_init": 1,
                           "init_params": "kmeans", "fit_examples": int(len(train_x)), "accuracies": {}}
    rules = ["top", "majority", "hungarian"] if all_rules else [rule]
    if any(r in rules for r in ("top", "majority")):
        gmm = fit_gmm(train_x, n_components, seed)
        resp = gmm.predict_proba(np.asarray(valid_x, dtype=np.float64))
        vpred = resp.argmax(axis=1)
        tpred = gmm.predict(np.asarray(test_x, dtype=np.float64))
        out.update(converged=bool(gmm.converged_), n_iter=int(gmm.n_iter_))
        for r in ("top", "majority"):
            if r in rules:
                m = map_components(r, n_components, valid_y, resp, vpred)
                out["accuracies"][r] = 100.0 * float(np.mean(m[tpred] == test_y))
                out.setdefault("maps", {})[r] = m.tolist()
        out["test_component_sizes"] = np.bincount(tpred, minlength=n_components).tolist()
    if "hungarian" in rules:
        g2 = fit_gmm(train_x, n_classes, seed)
        vpred2 = g2.predict(np.asarray(valid_x, dtype=np.float64))
        tpred2 = g2.predict(np.asarray(test_x, dtype=np.float64))
        m = map_components("hungarian", n_classes, valid_y, None, vpred2)
        out["accuracies"]["hungarian"] = 100.0 * float(np.mean(m[tpred2] == test_y))
        out.setdefault("maps", {})["hungarian"] = m.tolist()
        out["hungarian_components"] = n_classes
    if rule == "hungarian":
        out["components"] = n_classes
    out["accuracy"] = out["accuracies"][rule]
    return out


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """SPEC §1.5 batching by index: stable sort by length, each exact-length group cut into chunks."""
    by_len: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        by_len.setdefault(int(n), []).append(i)
    out = []
    for n in sorted(by_len):
        ids = by_len[n]
        out.extend(np.asarray(ids[s:s + batch_size]) for s in range(0, len(ids), batch_size))
    return out


def train_linear(train_x, train_y, valid_x, valid_y, test_x, test_y, *, n_logits: int | None = None,
                 train_lengths: Sequence[int] | None = None, seed: int = DEFAULT_SEED, batch_size: int = 16,
                 optimizer: str = "sgd", lr: float | None = None, max_epochs: int = 100, patience: int = 2,
                 max_decays: int = 5, clip: float = 5.0, quiet: bool = True, desc: str = "linear") -> dict:
    """Linear classifier ``A·μ + b`` on frozen features (SPEC §7.2): CE, batches of ``batch_size``
    (length-bucketed when ``train_lengths`` are given), grad-norm clip, SGD (lr 1.0) or Adam (1e-3), lr ×0.5
    after ``patience`` epochs with validation CE above the reference (reload best), stop after ``max_decays``
    decays or ``max_epochs``; selection by validation CE on the full validation set. Accuracies in %."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: intra-op threads only add overhead (and stall on a busy machine)
    try:
        return _train_linear(train_x, train_y, valid_x, valid_y, test_x, test_y, n_logits=n_logits,
                             train_lengths=train_lengths, seed=seed, batch_size=batch_size, optimizer=optimizer,
                             lr=lr, max_epochs=max_epochs, patience=patience, max_decays=max_decays, clip=clip,
                             quiet=quiet, desc=desc)
    finally:
        torch.set_num_threads(threads)


def _train_linear(train_x, train_y, valid_x, valid_y, test_x, test_y, *, n_logits, train_lengths, seed,
                  batch_size, optimizer, lr, max_epochs, patience, max_decays, clip, quiet, desc) -> dict:
    tx = torch.as_tensor(np.asarray(train_x), dtype=torch.float32)
    ty = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    vx = torch.as_tensor(np.asarray(valid_x), dtype=torch.float32)
    vy = torch.as_tensor(np.asarray(valid_y), dtype=torch.long)
    sx = torch.as_tensor(np.asarray(test_x), dtype=torch.float32)
    sy = torch.as_tensor(np.asarray(test_y), dtype=torch.long)
    n_classes = int(max(ty.max(), vy.max(), sy.max())) + 1
    n_logits = max(n_logits or n_classes, n_classes)
    if lr is None:
        lr = 1.0 if optimizer == "sgd" else 1e-3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clf = nn.Linear(tx.size(1), n_logits)

    def make_opt(rate: float):
        if optimizer == "sgd":
            return torch.optim.SGD(clf.parameters(), lr=rate)
        if optimizer == "adam":
            return torch.optim.Adam(clf.parameters(), lr=rate)
        raise ConfigError(f"unknown optimizer {optimizer!r} (sgd|adam)")

    if train_lengths is None:
        batches = [np.arange(s, min(s + batch_size, len(tx))) for s in range(0, len(tx), batch_size)]
    else:
        batches = length_buckets(train_lengths, batch_size)
    batches_t = [torch.as_tensor(b, dtype=torch.long) for b in batches]
    rng = np.random.RandomState(seed)
    opt = make_opt(lr)

    @torch.no_grad()
    def evaluate(x, y) -> tuple[float, float]:
        logits = clf(x)
        return float(F.cross_entropy(logits, y).item()), 100.0 * float((logits.argmax(1) == y).double().mean())

    best_loss, best_state, best_epoch = float("inf"), _copy.deepcopy(clf.state_dict()), -1
    ref, bad, decays, epoch = 1e4, 0, 0, 0
    bar = _progress(range(max_epochs), quiet=quiet, desc=desc, leave=False)
    for epoch in bar:
        for k in rng.permutation(len(batches_t)):
            b = batches_t[k]
            loss = F.cross_entropy(clf(tx[b]), ty[b])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clf.parameters(), clip)
            opt.step()
        val_loss, _ = evaluate(vx, vy)
        bar.set_postfix(val_ce=f"{val_loss:.4f}", lr=f"{lr:g}")
        if val_loss < best_loss:
            best_loss, best_state, best_epoch = val_loss, _copy.deepcopy(clf.state_dict()), epoch
        if val_loss > ref:
            bad += 1
            if bad >= patience:
                lr *= 0.5
                clf.load_state_dict(best_state)
                opt = make_opt(lr)
                ref, bad, decays = val_loss, 0, decays + 1
        else:
            bad, ref = 0, val_loss
        if decays >= max_decays:
            break
    bar.close()
    clf.load_state_dict(best_state)
    val_loss, val_acc = evaluate(vx, vy)
    test_loss, test_acc = evaluate(sx, sy)
    return {"test_accuracy": test_acc, "valid_accuracy": val_acc, "valid_ce": val_loss, "test_ce": test_loss,
            "best_epoch": best_epoch, "epochs": epoch + 1, "decays": decays, "final_lr": lr,
            "examples": int(len(tx)), "n_logits": n_logits, "optimizer": optimizer,
            "label_counts": {str(c): int(n) for c, n in zip(*np.unique(ty.numpy(), return_counts=True))}}


# ==========================================================================================================
# Probes
# ==========================================================================================================

def _load_split(args, vocab: Vocab, split: str | None = None, path: str | Path | None = None):
    path = Path(path) if path is not None else split_path(args.data, split or args.split)
    corpus = read_corpus(path, max_examples=args.max_examples)
    return corpus, [vocab.encode(s) for s in corpus.sentences]


def _base_record(args, probe: str, ckpt: dict, device: torch.device) -> dict:
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "command", "probe_command") and
                not callable(v)}
    return {"probe": probe, "checkpoint": checkpoint_info(args.ckpt, ckpt), "split": args.split,
            "seed": args.seed, "device": str(device), "settings": settings}


def _finish(args, record: dict, t0: float, summary: str, markdown: str | None = None) -> int:
    record["seconds"] = round(time.time() - t0, 3)
    if markdown is not None:
        md = markdown_path(args.out)
        atomic_write_text(markdown, md)
        record["markdown"] = str(md)
    write_json(record, args.out)
    print(f"{summary} -> {args.out}")
    return 0


def _md_header(title: str, record: dict) -> list[str]:
    ck = record["checkpoint"]
    lines = [f"# {title}", "",
             f"- checkpoint: `{ck['path']}` (method {ck.get('method')}, λ {ck.get('lam')}, epoch {ck.get('epoch')})",
             f"- split: {record['split']}, seed: {record['seed']}", ""]
    return lines


def run_bleu(args) -> int:
    """SPEC §6.1: one posterior sample per sentence, greedy decoding, corpus BLEU."""
    t0 = time.time()
    device = resolve_device(args.device)
    model, vocab, ckpt = load_vae(args.ckpt, device)
    corpus, examples = _load_split(args, vocab)
    mu, logvar = encode(model, examples, device, args.batch_size, quiet=args.quiet)
    z = mu if args.latent == "mean" else sample_posterior(mu, logvar, cpu_generator(args.seed, 1))
    ids = decode(model, z, args.max_len, device, greedy=True, batch_size=args.batch_size, quiet=args.quiet,
                 desc="greedy decoding")
    hyps = [ids_to_tokens(vocab, h) for h in ids]
    refs = corpus.sentences
    score, signature = corpus_bleu(hyps, refs)
    record = _base_record(args, "bleu", ckpt, device)
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
    t0 = time.time()
    device = resolve_device(args.device)
    model, vocab, ckpt = load_vae(args.ckpt, device)
    corpus, examples = _load_split(args, vocab)
    mu, logvar = encode(model, examples, device, args.batch_size, quiet=args.quiet)
    z = mu if args.latent == "mean" else sample_posterior(mu, logvar, cpu_generator(args.seed, 2))
    sents = corpus.sentences
    r, l2, ed = smoothness_pcc(z.numpy(), sents, args.pairs, args.seed)
    if not math.isfinite(r):
        print("warning: a constant distance vector; PCC undefined (null)", file=sys.stderr)
    record = _base_record(args, "smoothness", ckpt, device)
    record.update(pcc=r, pairs=int(args.pairs), latent=args.latent, sentences=len(sents),
                  pair_sampling="i != j uniform, with replacement",
                  mean_l2=float(l2.mean()), mean_edit=float(ed.mean()))
    return _finish(args, record, t0, f"pcc {r:.4f}")


@torch.no_grad()
def noisy_reconstruction(model, examples: Sequence[Sequence[int]], k: int, seed: int, mode: str = "random",
                         device: torch.device | str = "cpu", batch_size: int = 256, quiet: bool = True
                         ) -> tuple[float, list[list[int]]]:
    """Mean over sentences of −log p(x | z), z ~ q(z | x̃), x̃ = x after k swaps (SPEC §6.3); k = 0 = clean.

    Returns ``(mean, corrupted framed ids)``. Swaps use numpy ``default_rng([seed, k])`` in sentence order;
    the posterior noise a CPU generator on stream ``100 + k``."""
    rng = np.random.default_rng([int(seed), int(k)])
    corrupted = [[x[0]] + swap_words(x[1:-1], k, rng, mode) + [x[-1]] for x in examples]
    mu, logvar = encode(model, corrupted, device, batch_size, quiet=True)
    z = sample_posterior(mu, logvar, cpu_generator(seed, 100 + k))
    batches = make_batches(examples, batch_size)
    total = 0.0
    for x, idx in _progress(zip(batches.tensors, batches.index), total=len(batches), quiet=quiet,
                            desc=f"noisy k={k}", leave=False):
        zz = z[torch.tensor(idx)].to(device).unsqueeze(1)
        total += float(-model.decoder.log_prob(x.to(device), zz).sum())
    return total / len(examples), corrupted


def run_noisy(args) -> int:
    t0 = time.time()
    device = resolve_device(args.device)
    model, vocab, ckpt = load_vae(args.ckpt, device)
    corpus, examples = _load_split(args, vocab)
    results, shown = {}, {}
    clean, _ = noisy_reconstruction(model, examples, 0, args.seed, args.swap_mode, device, args.batch_size, True)
    for k in _progress(args.swaps, quiet=args.quiet, desc="swaps"):
        if k < 0:
            raise ConfigError(f"--swaps {k}: must be >= 0")
        rec, corrupted = noisy_reconstruction(model, examples, k, args.seed, args.swap_mode, device,
                                              args.batch_size, args.quiet)
        results[str(k)] = rec
        shown[str(k)] = [" ".join(vocab.decode(c)) for c in corrupted[:args.examples]]
    record = _base_record(args, "noisy", ckpt, device)
    record.update(noisy_rec=results, clean_rec=clean, swap=args.swap_mode, sentences=len(examples),
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
    t0 = time.time()
    device = resolve_device(args.device)
    model, vocab, ckpt = load_vae(args.ckpt, device)
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
    t0 = time.time()
    device = resolve_device(args.device)
    model, vocab, ckpt = load_vae(args.ckpt, device)
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


def _labelled(corpus, path) -> list[str]:
    if corpus.labels is None:
        raise DataError(f"{path}: classification needs a labelled file (label<TAB>text)")
    return corpus.labels


def _subset_files(args) -> dict[int, Path]:
    """``train.N.txt`` files of the data directory for the requested label counts (only the existing ones)."""
    data = Path(args.data)
    return {n: data / f"train.{n}.txt" for n in args.labels if (data / f"train.{n}.txt").is_file()}


def run_classify(args) -> int:
    """SPEC §7: GMM on μ (0 labels) and linear classifiers on frozen μ for several label counts."""
    t0 = time.time()
    device = resolve_device(args.device)
    model, vocab, ckpt = load_vae(args.ckpt, device)
    warnings: list[str] = []

    def features(path: Path, desc: str, cap: bool = True):
        corpus = read_corpus(path, labelled=True, max_examples=args.max_examples if cap else None)
        labels = _labelled(corpus, path)
        ex = [vocab.encode(s) for s in corpus.sentences]
        mu, _ = encode(model, ex, device, args.batch_size, quiet=args.quiet, desc=f"encode {desc}")
        return mu.numpy(), labels, [len(x) for x in ex]

    valid_path = split_path(args.data, "valid")
    test_path = split_path(args.data, args.split)
    vx, vlab, _ = features(valid_path, "valid")
    sx, slab, _ = features(test_path, args.split)
    train_file = Path(args.data) / "train.txt"
    have_train = train_file.is_file()

    # which labelled sets train the linear classifiers
    sets: dict[str, Path | tuple[Path, int]] = {}
    sources: dict[str, str] = {}
    if args.train_labelled:
        for p in args.train_labelled:
            n = len(read_corpus(p, labelled=True).sentences)
            sets[str(n)] = Path(p)
            sources[str(n)] = f"file {p}"
    else:
        files = _subset_files(args)
        mode = args.subset_source
        if mode == "auto":
            mode = "files" if files and len(files) == len(args.labels) else "sample"
        if mode == "files":
            missing = [n for n in args.labels if n not in files]
            if missing:
                raise DataError(f"{args.data}: no train.N.txt for N = {missing} (--subset-source files)")
            for n in args.labels:
                sets[str(n)] = files[n]
                sources[str(n)] = f"file {files[n]}"
        else:
            if args.labels and not have_train:
                raise DataError(f"{train_file}: file not found; sampling labelled subsets needs the full training "
                                f"split (or use --subset-source files / --train-labelled)")
            for n in args.labels:
                sets[str(n)] = (train_file, n)
                sources[str(n)] = (f"sample {n} of {train_file} ({args.label_sampling}, "
                                   f"numpy seed {args.subset_seed})")

    # GMM training features
    gmm_file = Path(args.gmm_fit) if args.gmm_fit else train_file
    if args.gmm_components > 0 and not gmm_file.is_file():
        cands = sorted(Path(args.data).glob("train.*.txt"),
                       key=lambda p: int(p.stem.split(".")[1]) if p.stem.split(".")[1].isdigit() else -1)
        if not cands:
            raise DataError(f"{gmm_file}: file not found; the GMM needs training features (--gmm-fit PATH)")
        gmm_file = cands[-1]
        warnings.append(f"{train_file} missing: the GMM is fitted on {gmm_file} instead of the full training split")
        print(f"warning: {warnings[-1]}", file=sys.stderr)

    cache: dict[str, tuple] = {}

    def cached(path: Path, desc: str, cap: bool = True):
        key = f"{path}|{cap}"
        if key not in cache:
            cache[key] = features(path, desc, cap)
        return cache[key]

    all_labels = [vlab, slab]
    train_feats = {}
    for key, spec in sets.items():
        if isinstance(spec, tuple):
            tx, tlab, tlen = cached(spec[0], "train")
            train_feats[key] = (tx, tlab, tlen, spec[1])
        else:
            tx, tlab, tlen = cached(spec, spec.name)
            train_feats[key] = (tx, tlab, tlen, None)
        all_labels.append(tlab)
    lab_map = label_index(*all_labels)
    to_int = lambda labs: np.array([lab_map[l] for l in labs], dtype=np.int64)  # noqa: E731
    vy, sy = to_int(vlab), to_int(slab)

    record = _base_record(args, "classify", ckpt, device)
    record.update(features="encoder mean (frozen)", valid_examples=len(vy), test_examples=len(sy),
                  label_map=lab_map, warnings=warnings,
                  test_majority_baseline=100.0 * float(np.bincount(sy).max() / len(sy)))

    if args.gmm_components > 0:
        gx, _, _ = cached(gmm_file, gmm_file.stem)
        t_g = time.time()
        if not args.quiet:
            print(f"fitting GMM ({args.gmm_components} components) on {len(gx)} means of {gmm_file} ...",
                  file=sys.stderr)
        gm = gmm_accuracy(gx, vx, vy, sx, sy, args.gmm_components, args.gmm_rule, args.seed)
        gm.update(fit_file=str(gmm_file), seconds=round(time.time() - t_g, 3))
        record["gmm"] = gm
        print(f"gmm ({args.gmm_rule}, {gm['components']} components) accuracy {gm['accuracy']:.2f}",
              file=sys.stderr)

    linear, details = {}, {}
    for key in _progress(list(train_feats), quiet=args.quiet, desc="linear classifiers"):
        tx, tlab, tlen, n = train_feats[key]
        ty = to_int(tlab)
        if n is not None:
            idx = sample_label_subset(ty, n, args.subset_seed, args.label_sampling)
            tx, ty, tlen = tx[idx], ty[idx], [tlen[i] for i in idx]
        res = train_linear(tx, ty, vx, vy, sx, sy, n_logits=args.n_logits, train_lengths=tlen, seed=args.seed,
                           batch_size=args.clf_batch_size, optimizer=args.optimizer, lr=args.lr,
                           max_epochs=args.max_epochs, quiet=args.quiet, desc=f"linear {key}")
        res["source"] = sources[key]
        linear[key] = res["test_accuracy"]
        details[key] = res
        print(f"linear {key}: test accuracy {res['test_accuracy']:.2f}", file=sys.stderr)
    if linear:
        record["linear"] = linear
        record["linear_details"] = details
        record["label_sampling"] = args.label_sampling
        record["subset_seed"] = args.subset_seed
    parts = []
    if "gmm" in record:
        parts.append(f"gmm {record['gmm']['accuracy']:.2f}")
    parts += [f"{k}:{v:.2f}" for k, v in linear.items()]
    return _finish(args, record, t0, "classify " + " ".join(parts))


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


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="VAE checkpoint (best.pt)")
    p.add_argument("--data", required=True, help="prepared data directory data/DATASET (or a corpus file)")
    p.add_argument("--out", required=True, help="output JSON (a markdown file with examples goes next to it)")
    p.add_argument("--split", default="test", help="split to probe (default test)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    p.add_argument("--max-examples", type=_positive, default=None, help="use only the first N examples of each split")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto)")
    p.add_argument("--batch-size", type=_positive, default=256, help="encoding / decoding batch size (results unchanged)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``textvae probe {bleu,smoothness,noisy,interpolate,copy,classify}``."""
    probe = subparsers.add_parser("probe", help="latent-space probes and classification (SPEC §6-7)",
                                  description="Latent-space probing (SPEC §6) and Yelp classification (SPEC §7).")
    sub = probe.add_subparsers(dest="probe_command", metavar="PROBE")
    sub.required = True

    p = sub.add_parser("bleu", help="reconstruction BLEU (Table 4)")
    _common(p)
    p.add_argument("--max-len", type=_positive, default=99, help="maximum generated tokens (default 99)")
    p.add_argument("--latent", choices=("sample", "mean"), default="sample",
                   help="decode from one posterior sample (SPEC, default) or from the mean")
    p.add_argument("--examples", type=int, default=20, help="examples written to JSON/markdown")
    p.set_defaults(func=run_bleu)

    p = sub.add_parser("smoothness", help="PCC of latent L2 vs word edit distance (Table 5)")
    _common(p)
    p.add_argument("--pairs", type=_positive, default=100_000, help="random sentence pairs (default 100000)")
    p.add_argument("--latent", choices=("mean", "sample"), default="mean",
                   help="posterior mean (default) or one posterior sample")
    p.set_defaults(func=run_smoothness)

    p = sub.add_parser("noisy", help="noisy reconstruction loss after k word swaps (Table 6)")
    _common(p)
    p.add_argument("--swaps", type=int, nargs="+", default=[1, 2, 3, 4], help="numbers of swaps (default 1 2 3 4)")
    p.add_argument("--swap-mode", choices=("random", "adjacent"), default="random",
                   help="one swap = two distinct random positions (default) or a random adjacent pair")
    p.add_argument("--examples", type=int, default=5, help="corrupted examples written to markdown")
    p.set_defaults(func=run_noisy)

    p = sub.add_parser("interpolate", help="interpolation between prior / posterior samples (Tables 7, 12, 13)")
    _common(p)
    p.add_argument("--pairs-interp", type=_positive, default=10, help="pairs per source (default 10)")
    p.add_argument("--points", type=int, default=11, help="points per path incl. endpoints (default 11)")
    p.add_argument("--max-len", type=_positive, default=99, help="maximum generated tokens (default 99)")
    p.add_argument("--source", nargs="+", choices=("prior", "posterior"), default=["prior", "posterior"])
    p.set_defaults(func=run_interpolate)

    p = sub.add_parser("copy", help="copying check: prior samples vs nearest training sentence (App. B)")
    _common(p)
    p.add_argument("--samples", type=_positive, default=300, help="prior samples (default 300)")
    p.add_argument("--decoding", choices=("sample", "greedy"), default="sample",
                   help="ancestral sampling as [C]'s helper (default) or greedy")
    p.add_argument("--max-len", type=_positive, default=100, help="maximum generated tokens (default 100, as [C])")
    p.add_argument("--train", default=None, help="training corpus (default DATA/train.txt)")
    p.add_argument("--workers", type=int, default=-1, help="rapidfuzz threads (-1 = all cores)")
    p.add_argument("--examples", type=int, default=10, help="samples written to markdown")
    p.set_defaults(func=run_copy)

    p = sub.add_parser("classify", help="GMM / linear classification on encoder means (Table 8)")
    _common(p)
    p.add_argument("--labels", type=_positive, nargs="*", default=[100, 500, 1000, 2000, 10000],
                   help="label counts for the linear classifier (default 100 500 1000 2000 10000; none = skip)")
    p.add_argument("--gmm-components", type=int, default=10, help="GMM components (default 10; 0 = skip the GMM)")
    p.add_argument("--gmm-rule", choices=("top", "majority", "hungarian"), default="top",
                   help="component→label rule reported as gmm.accuracy (all three are logged)")
    p.add_argument("--gmm-fit", default=None,
                   help="labelled file whose means fit the GMM (default DATA/train.txt; if missing, the largest "
                        "DATA/train.N.txt, with a warning)")
    p.add_argument("--label-sampling", choices=("uniform", "balanced"), default="uniform",
                   help="how labelled subsets are sampled from DATA/train.txt (default uniform)")
    p.add_argument("--subset-source", choices=("auto", "files", "sample"), default="auto",
                   help="files = DATA/train.N.txt (the paper's subsets); sample = from DATA/train.txt; "
                        "auto = files when all exist")
    p.add_argument("--subset-seed", type=int, default=DEFAULT_SEED, help=f"numpy seed of the subsets ({DEFAULT_SEED})")
    p.add_argument("--train-labelled", nargs="+", default=None, metavar="PATH",
                   help="explicit labelled training files (one classifier each, keyed by size)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--lr", type=float, default=None, help="default 1.0 (sgd) / 1e-3 (adam)")
    p.add_argument("--max-epochs", type=_positive, default=100)
    p.add_argument("--clf-batch-size", type=_positive, default=16)
    p.add_argument("--n-logits", type=_positive, default=10,
                   help="classifier outputs (default 10 as [C]; at least the number of classes)")
    p.set_defaults(func=run_classify)
    return probe


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m textvae.probing probe bleu …``)."""
    parser = argparse.ArgumentParser(prog="textvae")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
