"""Yelp classification on a frozen encoder (SPEC §7): label subsets, the GMM with its component → label rules,
and the linear classifier on the posterior mean."""
from __future__ import annotations

import copy as _copy
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textvae import DEFAULT_SEED
from textvae.core.errors import ConfigError, DataError
from textvae.probing.setup import progress_bar


# ==========================================================================================================
# Classification helpers (SPEC §7)
# ==========================================================================================================

MAX_CLASSES = 100   # a label column is a small set of classes (Yelp: 5); integer labels are class indices below it


def check_labels(labels: Sequence[str], source: str) -> None:
    """A label column must name at least two classes and be a small set of them; an integer label is a class
    index ([C]: ``int(label)``) and must be below MAX_CLASSES (so that no classifier or count is sized by a
    stray number). DataError naming ``source`` otherwise."""
    classes = sorted(set(labels))
    if len(classes) < 2:
        shown = f"every label is {classes[0]!r}" if classes else "no labels"
        raise DataError(f"{source}: {shown}; classification needs at least two classes")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{source}: {len(classes)} distinct labels ({', '.join(map(repr, classes[:3]))}, …) are not "
                        f"a set of classes (at most {MAX_CLASSES})")
    for label in classes:
        if label.lstrip("-").isdigit() and int(label) >= MAX_CLASSES:
            raise DataError(f"{source}: label {label!r} is not a class index (integer labels are indices below "
                            f"{MAX_CLASSES})")


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
                 seed: int = DEFAULT_SEED, all_rules: bool = True, inits: int = 1) -> dict:
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
    if inits > 1:
        out.update(_gmm_inits(train_x, valid_x, valid_y, test_x, test_y, out["components"], rule, seed, inits))
    return out


def _gmm_inits(train_x, valid_x, valid_y, test_x, test_y, n_components: int, rule: str, seed: int, inits: int
               ) -> dict:
    """The GMM refitted with random states ``seed, seed + 1, …`` (the first is the SPEC's single fit): the
    accuracy of each, their spread (the SPEC number's standard error over random states), and the accuracy of
    the fit with the best training log-likelihood (a GMM with several initialisations), with the binomial standard
    error of that accuracy over the test sentences."""
    tx = np.asarray(train_x, dtype=np.float64)
    vx, sx = np.asarray(valid_x, dtype=np.float64), np.asarray(test_x, dtype=np.float64)
    accs, lls = [], []
    for r in range(inits):
        gmm = fit_gmm(tx, n_components, seed + r)
        resp = gmm.predict_proba(vx)
        m = map_components(rule, n_components, valid_y, resp, resp.argmax(axis=1))
        accs.append(100.0 * float(np.mean(m[gmm.predict(sx)] == np.asarray(test_y))))
        lls.append(float(gmm.score(tx)))
    best = int(np.argmax(lls))
    p, n = accs[best] / 100.0, len(sx)
    return {"inits": inits, "init_accuracies": accs, "init_log_likelihoods": lls,
            "accuracy_se": float(np.std(accs, ddof=1)), "best_init": best, "best_of_inits_accuracy": accs[best],
            "best_of_inits_accuracy_se": 100.0 * math.sqrt(p * (1 - p) / n)}     # over test sentences (binomial)


CONVERGED_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def converged_probe(train_x, train_y, valid_x, valid_y, test_x, test_y, Cs: Sequence[float] = CONVERGED_CS) -> dict:
    """Multinomial logistic regression fitted to convergence (scikit-learn, lbfgs) on standardised features, its
    L2 regularisation C chosen by validation accuracy (ties → the stronger regularisation): a probe that measures
    the features rather than an optimiser's budget. Accuracies in %."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    tx = np.asarray(train_x, dtype=np.float64)
    scaler = StandardScaler().fit(tx)
    tx, vx, sx = (scaler.transform(np.asarray(a, dtype=np.float64)) for a in (tx, valid_x, test_x))
    ty, vy, sy = (np.asarray(a) for a in (train_y, valid_y, test_y))
    if len(np.unique(ty)) < 2:           # one class among the labels: the probe predicts it
        only = ty[0]
        return {"test_accuracy": 100.0 * float(np.mean(sy == only)), "valid_accuracy": 100.0 * float(np.mean(vy == only)),
                "C": None, "converged": True, "n_iter": 0, "examples": int(len(ty))}
    best = None
    with threadpool_limits(1):
        for C in Cs:
            clf = LogisticRegression(C=C, max_iter=10_000).fit(tx, ty)
            acc = 100.0 * float(np.mean(clf.predict(vx) == vy))
            if best is None or acc > best[0]:
                best = (acc, C, clf)
    acc, C, clf = best
    return {"test_accuracy": 100.0 * float(np.mean(clf.predict(sx) == sy)), "valid_accuracy": acc, "C": C,
            "converged": bool(np.all(clf.n_iter_ < clf.max_iter)), "n_iter": int(np.max(clf.n_iter_)),
            "examples": int(len(ty)), "Cs": list(Cs)}


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
                 max_decays: int = 5, clip: float = 5.0, quiet: bool = True, desc: str = "linear",
                 batch_order: Callable[[int], Sequence[Sequence[int]]] | None = None,
                 trace: dict | None = None) -> dict:
    """Linear classifier ``A·μ + b`` on frozen features (SPEC §7.2): CE, batches of ``batch_size``
    (length-bucketed when ``train_lengths`` are given), grad-norm clip, SGD (lr 1.0) or Adam (1e-3), lr ×0.5
    after ``patience`` epochs with validation CE above the reference (reload best), stop after ``max_decays``
    decays or ``max_epochs``; selection by validation CE on the full validation set. Accuracies in %.

    For fidelity checks (bench/fidelity_linear.py): ``batch_order(epoch)`` gives the index batches of an epoch
    in the order to train on (instead of the buckets in a permutation drawn from ``RandomState(seed)``);
    ``trace``, a dict, receives the initial and final weights (``init``, ``final``), every step's loss
    (``steps``) and every epoch's validation CE and accuracy, lr and decay (``epochs``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: intra-op threads only add overhead (and stall on a busy machine)
    try:
        return _train_linear(train_x, train_y, valid_x, valid_y, test_x, test_y, n_logits=n_logits,
                             train_lengths=train_lengths, seed=seed, batch_size=batch_size, optimizer=optimizer,
                             lr=lr, max_epochs=max_epochs, patience=patience, max_decays=max_decays, clip=clip,
                             quiet=quiet, desc=desc, batch_order=batch_order, trace=trace)
    finally:
        torch.set_num_threads(threads)


def _train_linear(train_x, train_y, valid_x, valid_y, test_x, test_y, *, n_logits, train_lengths, seed,
                  batch_size, optimizer, lr, max_epochs, patience, max_decays, clip, quiet, desc, batch_order,
                  trace) -> dict:
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
    bar = progress_bar(range(max_epochs), quiet=quiet, desc=desc, leave=False)
    if trace is not None:
        trace.update(init=_copy.deepcopy(clf.state_dict()), steps=[], epochs=[])
    for epoch in bar:
        if batch_order is None:
            order = [batches_t[k] for k in rng.permutation(len(batches_t))]
        else:
            order = [torch.as_tensor(np.asarray(b), dtype=torch.long) for b in batch_order(epoch)]
        for b in order:
            loss = F.cross_entropy(clf(tx[b]), ty[b])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(clf.parameters(), clip)
            opt.step()
            if trace is not None:
                trace["steps"].append(loss.item())
        val_loss, val_acc = evaluate(vx, vy)
        bar.set_postfix(val_ce=f"{val_loss:.4f}", lr=f"{lr:g}")
        epoch_lr, decayed = lr, False
        if val_loss < best_loss:
            best_loss, best_state, best_epoch = val_loss, _copy.deepcopy(clf.state_dict()), epoch
        if val_loss > ref:
            bad += 1
            if bad >= patience:
                lr *= 0.5
                clf.load_state_dict(best_state)
                opt = make_opt(lr)
                ref, bad, decays, decayed = val_loss, 0, decays + 1, True
        else:
            bad, ref = 0, val_loss
        if trace is not None:
            trace["epochs"].append({"val_loss": val_loss, "val_acc": val_acc, "lr": epoch_lr, "decay": decayed})
        if decays >= max_decays:
            break
    bar.close()
    clf.load_state_dict(best_state)
    if trace is not None:
        trace["final"] = _copy.deepcopy(clf.state_dict())
    val_loss, val_acc = evaluate(vx, vy)
    test_loss, test_acc = evaluate(sx, sy)
    return {"test_accuracy": test_acc, "valid_accuracy": val_acc, "valid_ce": val_loss, "test_ce": test_loss,
            "best_epoch": best_epoch, "epochs": epoch + 1, "decays": decays, "final_lr": lr,
            "examples": int(len(tx)), "n_logits": n_logits, "optimizer": optimizer,
            "label_counts": {str(c): int(n) for c, n in zip(*np.unique(ty.numpy(), return_counts=True))}}


