"""``textvae probe classify`` (SPEC §7, Table 8): the GMM on encoder means (0 labels) and linear classifiers on the
frozen means for several label counts, each beside its uncertainty (issue 23):

- the SPEC's linear recipe (SGD lr 1.0, the paper's column) on the paper's label subset, and again on
  ``--repeats − 1`` further subsets of the same size (sampled from the training split, also when the paper's
  subset is a file) and classifier seeds: ``linear_se`` is the spread of those accuracies;
- a converged probe (:func:`textvae.probing.classifiers.converged_probe`: multinomial logistic regression fitted
  to convergence, C chosen on validation) on the same subsets: ``converged`` (the paper's subset), ``converged_se``;
- the GMM refitted with ``--repeats`` random states: ``gmm.accuracy_se`` and the best-likelihood fit's accuracy.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from textvae.corpora.data import read_corpus, split_path
from textvae.core.errors import DataError
from textvae.probing.classifiers import (check_labels, converged_probe, gmm_accuracy, label_index, sample_label_subset,
                                         train_linear)
from textvae.probing.setup import base_record as _base_record, encode, finish as _finish, progress_bar
from textvae.probing.setup import start as _setup
from textvae.evaluation.uncertainty import spread


def _labelled(corpus, path) -> list[str]:
    if corpus.labels is None:
        raise DataError(f"{path}: classification needs a labelled file (label<TAB>text)")
    check_labels(corpus.labels, str(path))
    return corpus.labels


def _subset_files(args) -> dict[int, Path]:
    """``train.N.txt`` files of the data directory for the requested label counts (only the existing ones)."""
    data = Path(args.data)
    return {n: data / f"train.{n}.txt" for n in args.labels if (data / f"train.{n}.txt").is_file()}


def run_classify(args) -> int:
    """SPEC §7: GMM on μ (0 labels) and linear classifiers on frozen μ for several label counts."""
    t0, device, model, vocab, ckpt = _setup(args)
    warnings: list[str] = []

    def features(path: Path, desc: str, cap: bool = True):
        corpus = read_corpus(path, labelled=True, max_examples=args.max_examples if cap else None)
        labels = _labelled(corpus, path)
        ex = [vocab.encode(s) for s in corpus.sentences]
        mu, _ = encode(model, ex, device, args.batch_size, quiet=args.quiet, desc=f"encode {desc}")
        return mu.numpy(), labels, [len(x) for x in ex]

    valid_path = split_path(args.data, "valid")
    test_path = split_path(args.data, args.split)
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
            if args.labels:   # before hours of encoding: the counts must fit the labelled set
                total = len(_labelled(read_corpus(train_file, labelled=True), train_file))
                too_many = [n for n in args.labels if n > total]
                if too_many:
                    raise DataError(f"{train_file}: --labels {too_many[0]}: more than its {total} labelled "
                                    "examples")
            for n in args.labels:
                sets[str(n)] = (train_file, n)
                sources[str(n)] = (f"sample {n} of {train_file} ({args.label_sampling}, "
                                   f"numpy seed {args.subset_seed})")

    vx, vlab, _ = features(valid_path, "valid")
    sx, slab, _ = features(test_path, args.split)

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
    # the pool that the repeats of a subset file draw further subsets of its size from (the full training split)
    pool = cached(train_file, "train") if have_train and args.repeats > 1 else None
    if pool is not None:
        all_labels.append(pool[1])
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
        gm = gmm_accuracy(gx, vx, vy, sx, sy, args.gmm_components, args.gmm_rule, args.seed, inits=args.repeats)
        gm.update(fit_file=str(gmm_file), seconds=round(time.time() - t_g, 3))
        record["gmm"] = gm
        print(f"gmm ({args.gmm_rule}, {gm['components']} components) accuracy {gm['accuracy']:.2f}",
              file=sys.stderr)

    linear, details, conv = {}, {}, {}
    repeats: dict[str, dict[str, list[float]]] = {}
    for key in progress_bar(list(train_feats), quiet=args.quiet, desc="linear classifiers"):
        full_x, full_lab, full_len, n = train_feats[key]
        full_y = to_int(full_lab)
        accs: dict[str, list[float]] = {"spec": [], "converged": []}
        # repeat 0 is the paper's subset and classifier seed; the others draw subsets of the same size (from the
        # training split when the subset is a file; without it, a file's repeats change the seed only)
        for r in range(args.repeats):
            tx, ty, tlen = full_x, full_y, full_len
            if n is not None:
                idx = sample_label_subset(full_y, n, args.subset_seed + r, args.label_sampling)
                tx, ty, tlen = tx[idx], ty[idx], [tlen[i] for i in idx]
                if len(np.unique(ty)) < 2:
                    raise DataError(f"{sources[key]}: the sampled examples hold one class; classification needs "
                                    "at least two (sample more labels or --label-sampling balanced)")
            elif r > 0 and pool is not None:
                py = to_int(pool[1])
                idx = sample_label_subset(py, len(full_y), args.subset_seed + r, args.label_sampling)
                tx, ty, tlen = pool[0][idx], py[idx], [pool[2][i] for i in idx]
            res = train_linear(tx, ty, vx, vy, sx, sy, n_logits=args.n_logits, train_lengths=tlen,
                               seed=args.seed + r, batch_size=args.clf_batch_size, optimizer=args.optimizer,
                               lr=args.lr, max_epochs=args.max_epochs, quiet=True, desc=f"linear {key}")
            cres = converged_probe(tx, ty, vx, vy, sx, sy)
            accs["spec"].append(res["test_accuracy"])
            accs["converged"].append(cres["test_accuracy"])
            if r == 0:
                res["source"] = sources[key]
                linear[key], details[key], conv[key] = res["test_accuracy"], res, cres
        repeats[key] = accs
        print(f"linear {key}: test accuracy {linear[key]:.2f} (converged probe {conv[key]['test_accuracy']:.2f})",
              file=sys.stderr)
    if linear:
        record["linear"] = linear
        record["linear_se"] = {k: spread(a["spec"]) for k, a in repeats.items()}
        record["linear_details"] = details
        record["converged"] = {k: c["test_accuracy"] for k, c in conv.items()}
        record["converged_se"] = {k: spread(a["converged"]) for k, a in repeats.items()}
        record["converged_details"] = conv
        record["repeats"] = {"count": args.repeats, "accuracies": repeats,
                             "how": "r = 0: the reported subset (sampled with subset_seed, or the file) and classifier "
                                    "seed; r = 1 … count − 1: a subset of the same size sampled from the training "
                                    "split with numpy seed subset_seed + r, classifier seed seed + r; the *_se are the "
                                    "spread (std) over them"}
        record["label_sampling"] = args.label_sampling
        record["subset_seed"] = args.subset_seed
    parts = []
    if "gmm" in record:
        parts.append(f"gmm {record['gmm']['accuracy']:.2f}")
    parts += [f"{k}:{v:.2f}" for k, v in linear.items()]
    return _finish(args, record, t0, "classify " + " ".join(parts))
