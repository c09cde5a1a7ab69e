"""Datasets (SPEC §1.1): the registry of sources and checksums, verified downloads, safe extraction, and
``textvae data prepare DATASET``.

``prepare`` writes ``OUT/{train,valid,test}.txt`` (labelled corpora as ``label<TAB>text``), extra labelled
subsets ``OUT/train.N.txt`` where a dataset has them, and ``OUT/stats.json``. The output directory is built
under a temporary name beside ``OUT`` and renamed into place only when complete, so a half-prepared dataset
is never taken as done.

Every input file is verified before use: against its own pinned digest (sha256, or the git blob id where
only that is known), or against the pinned digest of the archive it came from. A download is retried a
bounded number of times with a bounded socket timeout, written to a temporary name, and renamed into the
download cache only once verified. Archives are read member by member; an archive with an absolute or
``..`` member, a link, or a device member is refused as a whole.

All failures raise :class:`textvae.core.errors.DataError` with a one-line message naming the dataset and the
URL, or the file and line.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from textvae import DEFAULT_SEED
from textvae.corpora.datasets import (DATASETS, LABEL_SUBSETS, REGISTRY, SPLITS, Variant, get_variant,
                                      request_problem, with_overrides)
from textvae.core.errors import ConfigError, DataError, TextvaeError
from textvae.corpora.fetch import FetchOptions, Log, RawFile, gather_download, gather_local, one_line, stderr_log
from textvae.corpora.local import LOCAL, read_local
from textvae.corpora.splits import Split, write_dataset
from textvae.core.rundir import check_new_or_own, hold_lock


# ---------------------------------------------------------------------------------------------------------
# Building splits
# ---------------------------------------------------------------------------------------------------------


def _read(path: Path, labelled: bool, shown: str | None = None) -> Split:
    """Read and validate a corpus file; errors name the file and the line (via textvae.corpora.data.read_corpus)."""
    from textvae.corpora.data import read_corpus

    try:
        corpus = read_corpus(path, labelled=labelled)
    except DataError as exc:
        msg = str(exc)
        if shown and str(path) != shown:
            msg = msg.replace(str(path), shown)
        raise DataError(msg) from None
    if labelled:
        for i, lab in enumerate(corpus.labels or []):
            if not lab or any(ch.isspace() for ch in lab):
                line = _line_of_example(path, i)
                raise DataError(f"{shown or path}:{line}: empty or malformed label {lab!r}")
    return Split(corpus.sentences, corpus.labels, shown or str(path), corpus.dropped_empty)


def _line_of_example(path: Path, index: int) -> int:
    """1-based line number of the ``index``-th non-empty example of a labelled file."""
    k = -1
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if text.split("\t", 2)[1:2] and text.split("\t", 2)[1].split():
                k += 1
                if k == index:
                    return lineno
    return 0


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def _sample(n: int, k: int, rng: random.Random) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted(rng.sample(range(n), k))


def _build_files(var: Variant, raw: Mapping[str, RawFile], missing: Sequence[str], seed: int,
                 substitutes: bool, log: Log = stderr_log,
                 where: str = "the source") -> tuple[dict[str, Split], dict[str, Split], dict[str, str]]:
    ds = var.dataset
    subst_used: dict[str, str] = {}
    for role in missing:
        sub = next((s for s in var.substitutes if s.role == role), None)
        names = next(f.names for f in var.files if f.role == role)
        if sub is None or not substitutes or sub.source_role not in raw:
            why = "substitutes are disabled" if (sub and not substitutes) else "no substitute is available"
            raise DataError(f"{ds}: missing {role} file in {where} (looked for {', '.join(names)}); {why}")
    splits: dict[str, Split] = {}
    extras: dict[str, Split] = {}
    for role, rf in raw.items():
        sp = _read(rf.path, var.labelled, shown=rf.origin)
        if role in SPLITS:
            splits[role] = sp
        else:
            extras[role] = sp
    for role in missing:
        sub = next(s for s in var.substitutes if s.role == role)
        src_split = splits.get(sub.source_role) or extras.get(sub.source_role)
        if sub.kind == "file":
            splits[role] = Split(src_split.sentences, src_split.labels, src_split.origin, src_split.dropped_empty,
                                 note=f"substitute: {sub.text}")
            subst_used[role] = sub.text
        elif sub.kind == "split":
            n = len(src_split.sentences)
            take = set(_sample(n, sub.size, _rng(seed, ds, "substitute", role)))
            keep = [i for i in range(n) if i not in take]
            splits[role] = src_split.subset(sorted(take), src_split.origin, note=f"substitute: {sub.text}")
            splits[sub.source_role] = src_split.subset(keep, src_split.origin,
                                                       note=f"the {len(keep)} lines not used for {role}")
            subst_used[role] = sub.text + f" (seed {seed})"
            subst_used[sub.source_role] = f"the remaining {len(keep)} lines of the original {sub.source_role} file"
        else:  # pragma: no cover - registry error
            raise DataError(f"{ds}: unknown substitute kind {sub.kind!r}")
        log(f"warning: {ds}: {role} split is missing from the source; substitute: {subst_used[role]}")
    return splits, extras, subst_used


def _build_shen(var: Variant, raw: Mapping[str, RawFile], seed: int) -> tuple[dict[str, Split], dict[str, Split]]:
    splits = {}
    for split in SPLITS:
        sents, labels, origins, dropped = [], [], [], 0
        for lab in ("0", "1"):
            rf = raw[f"{split}.{lab}"]
            sp = _read(rf.path, False, shown=rf.origin)
            sents += sp.sentences
            labels += [lab] * len(sp.sentences)
            origins.append(rf.origin)
            dropped += sp.dropped_empty
        splits[split] = Split(sents, labels, " + ".join(origins), dropped)
    return _downsample(splits, dict(var.downsample), seed, var.dataset, var.name), {}


def _snli_sentences(path: Path, shown: str) -> Split:
    seen: dict[str, None] = {}
    with open(path, "rb") as fh:
        for lineno, rawline in enumerate(fh, start=1):
            if not rawline.strip():
                continue
            try:
                obj = json.loads(rawline.decode("utf-8"))
                parses = [obj["sentence1_binary_parse"], obj["sentence2_binary_parse"]]
            except UnicodeDecodeError as exc:
                raise DataError(f"{shown}:{lineno}: undecodable bytes (not UTF-8): {exc.reason}") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{shown}:{lineno}: not an SNLI JSON record ({type(exc).__name__}: "
                                f"{one_line(exc)})") from None
            for p in parses:
                toks = [t.lower() for t in str(p).split() if t not in ("(", ")")]
                if toks:
                    seen.setdefault(" ".join(toks))
    if not seen:
        raise DataError(f"{shown}: empty corpus (no SNLI sentences)")
    return Split([s.split() for s in seen], None, shown)


def _build_snli_jsonl(var: Variant, raw: Mapping[str, RawFile], seed: int) -> tuple[dict[str, Split], dict[str, Split]]:
    splits = {split: _snli_sentences(raw[split].path, raw[split].origin) for split in SPLITS}
    return _downsample(splits, dict(var.downsample), seed, var.dataset, var.name), {}


def _downsample(splits: dict[str, Split], sizes: Mapping[str, int], seed: int, *key: str) -> dict[str, Split]:
    """A seeded sample of ``sizes[split]`` examples of each split (all of a split that has no more)."""
    out = {}
    for split, sp in splits.items():
        k = sizes.get(split)
        if not k:
            out[split] = sp
            continue
        idx = _sample(len(sp.sentences), k, _rng(seed, *key, split))
        out[split] = sp.subset(idx, sp.origin, note=f"seeded sample of {len(idx)} of {len(sp.sentences)} "
                               f"examples (seed {seed})")
        out[split].dropped_empty = sp.dropped_empty
    return out


def _sampled_subsets(train: Split, seed: int, dataset: str) -> dict[str, Split]:
    out = {}
    for n in LABEL_SUBSETS:
        if n <= len(train.sentences):
            idx = _sample(len(train.sentences), n, _rng(seed, dataset, f"train.{n}"))
            out[f"train.{n}"] = train.subset(idx, "train", note=f"seeded uniform sample of {n} training examples")
    return out


# ---------------------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------------------


# the files `prepare` writes into OUT; a folder holding anything else is refused, never emptied
CORPUS_FILE = re.compile(r"(train|valid|test)(\.\d+)?\.txt|(train|valid|test)\.factors\.jsonl|stats\.json|factors\.json")


def prepare(dataset: str, out: str | Path | None = None, **kwargs) -> dict:
    """Prepare ``dataset`` into ``out`` (default ``data/DATASET``) and return its statistics (``_prepare``).

    ``out`` must be new, empty, or a corpus this command wrote (foreign files are refused, nothing deleted);
    one prepare at a time per ``out`` (a lock); work folders left beside it by a killed prepare are removed."""
    out = Path(out) if out is not None else Path("data") / dataset
    check_new_or_own(out, "--out", lambda name: CORPUS_FILE.fullmatch(name) is not None)
    with hold_lock(out.parent / f".{out.name}.lock", f"--out {out}"):
        stale = re.compile(rf"\.{re.escape(out.name)}\.[A-Za-z0-9_]{{8}}\.(tmp|work|old)")
        for p in out.parent.iterdir():
            if stale.fullmatch(p.name) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
        check_new_or_own(out, "--out", lambda name: CORPUS_FILE.fullmatch(name) is not None)
        return _prepare(dataset, out, **kwargs)


# the embedded grammars: `textvae data prepare synthetic --variant NAME`
GRAMMARS = ("default", "early")


def grammar(variant: str | None = None):
    """The module that generates the embedded corpus of ``variant``: grammar-v3 (``textvae.corpora.synthetic``)
    for ``None`` or ``default``, ``textvae.corpora.synthetic_early`` (the label only in the first half of a
    sentence) for ``early``."""
    from textvae.corpora import synthetic, synthetic_early

    modules = dict(zip(GRAMMARS, (synthetic, synthetic_early)))
    if (variant or "default") not in modules:
        raise DataError(f"synthetic: unknown variant {variant!r}; known: {', '.join(GRAMMARS)}")
    return modules[variant or "default"]


def _prepare(dataset: str, out: Path, *, source: str | Path | None = None,
            variant: str | None = None, seed: int = DEFAULT_SEED, url_base: str | None = None,
            cache: str | Path | None = None, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
            max_seconds: float | None = 3600.0, allow_unpinned: bool = False, substitutes: bool = True,
            examples: Sequence[int] | None = None, spec: Variant | None = None, local: bool = False,
            registry: Mapping[str, Mapping[str, Variant]] | None = None, log: Log = stderr_log) -> dict:
    """``source``: a local directory (or pre-downloaded archive) read through the same verification as a
    download; without it the registry's URLs are downloaded (``url_base`` replaces their location, for
    mirrors and tests) into ``cache`` (default ``OUT/../.downloads``). ``spec`` replaces the registry entry.
    A name the registry does not know, or ``local``, reads ``source`` as a local corpus (textvae.corpora.local).
    ``examples`` (TRAIN, VALID, TEST) downsamples every split to a seeded sample of at most that many examples
    (for the synthetic corpus: the sizes generated).
    """
    started = time.time()
    bad = request_problem(dataset, source, examples)
    if bad:
        raise ConfigError(f"{dataset}: {bad[1]}")
    if local or (spec is None and dataset != "synthetic" and dataset not in (registry or REGISTRY)):
        return _prepare_local(dataset, out, source, seed, examples, started, log, registry)
    if dataset == "synthetic" and spec is None:
        synthetic = grammar(variant)   # the default grammar, or `--variant early` (textvae.corpora.synthetic_early)
        sizes = tuple(examples) if examples else synthetic.DEFAULT_SIZES
        corpus = synthetic.generate(seed=seed, sizes=dict(zip(SPLITS, sizes)))
        splits = {s: Split([ex.tokens for ex in corpus[s]], [str(ex.label) for ex in corpus[s]],
                           f"{synthetic.__name__} (seed {seed})") for s in SPLITS}
        extras = _sampled_subsets(splits["train"], seed, dataset)
        aux = {f"{s}.factors.jsonl": "".join(json.dumps(ex.factors, sort_keys=True) + "\n" for ex in corpus[s])
               for s in SPLITS}
        aux["factors.json"] = json.dumps(synthetic.describe(), indent=2) + "\n"
        stats = {
            "dataset": dataset,
            "variant": synthetic.GRAMMAR,
            "format": "labelled",
            "description": synthetic.DESCRIPTION,
            "label": synthetic.LABEL_FACTOR,
            "seed": seed,
            "source": {"kind": "generated", "generator": synthetic.__name__, "sizes": list(sizes)},
            "substitute": None,
        }
        stats = write_dataset(out, splits, extras, stats, aux)
        log(f"{dataset}: wrote {out} ({_summary(stats)}) in {time.time() - started:.1f} s")
        return stats

    var = spec if spec is not None else get_variant(dataset, variant, registry)
    if examples is not None:
        var = replace(var, downsample=tuple(zip(SPLITS, examples)))
    if url_base is not None:
        var = with_overrides(var, url_base=url_base)
    opts = FetchOptions(allow_unpinned=allow_unpinned, timeout=timeout, retries=retries, backoff=backoff,
                 max_seconds=max_seconds, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".work", dir=out.parent))
    try:
        if source is not None:
            raw, missing = gather_local(var, Path(source), work, opts)
            src_info = {"kind": "local", "path": str(Path(source).resolve())}
        else:
            cache_dir = Path(cache) if cache is not None else out.parent / ".downloads"
            raw, missing = gather_download(var, cache_dir, work, opts), []
            src_info = {"kind": "download", "urls": [r.url for r in var.remotes if var.files_of(r)],
                        "cache": str(cache_dir)}
        subst: dict[str, str] = {}
        if var.builder == "files":
            splits, extras, subst = _build_files(var, raw, missing, seed, substitutes, log, where=str(source))
        elif missing:
            names = {f.role: f.names for f in var.files}
            role = missing[0]
            raise DataError(f"{dataset}: missing {role} file in {source} (looked for {', '.join(names[role])})")
        elif var.builder == "shen_yelp":
            splits, extras = _build_shen(var, raw, seed)
        elif var.builder == "snli_jsonl":
            splits, extras = _build_snli_jsonl(var, raw, seed)
        else:  # pragma: no cover - registry error
            raise DataError(f"{dataset}: unknown builder {var.builder!r}")
        if var.builder == "files" and var.downsample:
            splits = _downsample(splits, dict(var.downsample), seed, var.dataset, var.name)
        if var.sampled_subsets and var.labelled:
            extras = {**_sampled_subsets(splits["train"], seed, dataset), **extras}
        stats = {
            "dataset": dataset,
            "variant": var.name,
            "format": "labelled" if var.labelled else "plain",
            "description": var.description,
            "seed": seed,
            "source": src_info,
            "files": {role: {"origin": rf.origin, "sha256": rf.digests["sha256"], "bytes": rf.digests["bytes"],
                             "verified": rf.verified} for role, rf in sorted(raw.items())},
            "downsample": dict(var.downsample) or None,
            "substitute": subst or None,
        }
        stats = write_dataset(out, splits, extras, stats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{dataset}: wrote {out} ({_summary(stats)}) in {time.time() - started:.1f} s")
    return stats


def _prepare_local(dataset: str, out: Path, source: str | Path | None, seed: int, examples: Sequence[int] | None,
                   started: float, log: Log, registry: Mapping | None) -> dict:
    """A folder of train.txt, valid.txt, test.txt (and train.N.txt) read and checked as your own corpus."""
    if source is None:
        known = ", ".join([*(registry or REGISTRY), "synthetic"])
        raise ConfigError(f"{dataset}: not a registered corpus ({known}); a local corpus needs --source DIR "
                          "(a folder of train.txt, valid.txt, test.txt)")
    labelled, files = read_local(source)
    parts = {role: Split(f.sentences, f.labels, str(f.path)) for role, f in files.items()}
    splits = {s: parts.pop(s) for s in SPLITS}
    sizes = dict(zip(SPLITS, examples)) if examples else {}
    splits = _downsample(splits, sizes, seed, dataset, LOCAL)
    extras = parts or (_sampled_subsets(splits["train"], seed, dataset) if labelled else {})
    stats = {
        "dataset": dataset,
        "variant": LOCAL,
        "format": "labelled" if labelled else "plain",
        "description": f"your own corpus from {source}",
        "seed": seed,
        "source": {"kind": "local", "path": str(Path(source).resolve())},
        "files": {role: {"origin": str(f.path), "sha256": f.sha256, "bytes": f.size}
                  for role, f in sorted(files.items())},
        "downsample": sizes or None,
        "substitute": None,
    }
    stats = write_dataset(out, splits, extras, stats)
    log(f"{dataset}: wrote {out} ({_summary(stats)}) in {time.time() - started:.1f} s")
    return stats


def _summary(stats: dict) -> str:
    sp = stats["splits"]
    return " / ".join(f"{s} {sp[s]['examples']:,}" for s in SPLITS) + f" examples, vocabulary {stats['vocabulary']:,}"


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


def _parse_examples(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TRAIN,VALID,TEST integers, got {text!r}") from None
    if len(vals) != 3 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers TRAIN,VALID,TEST, got {text!r}")
    return vals


def register(subparsers) -> None:
    """Add ``textvae data prepare DATASET ...``."""
    p = subparsers.add_parser("data", help="prepare corpora", description="Corpus preparation (SPEC §1).")
    sub = p.add_subparsers(dest="data_command", metavar="{prepare}")
    sub.required = True
    pp = sub.add_parser(
        "prepare", help="download or read, verify and prepare a corpus into data/DATASET",
        description="Write OUT/{train,valid,test}.txt (+ train.N.txt subsets for labelled corpora) and "
        "OUT/stats.json. Without --source the registry's URLs are downloaded and verified.")
    pp.add_argument("dataset", metavar="DATASET",
                    help=f"a registered corpus ({', '.join(DATASETS)}) or any name with --source DIR: your own "
                    "corpus, a folder of train.txt, valid.txt, test.txt (plain or label<TAB>text)")
    pp.add_argument("--local", action="store_true", help="read --source as your own corpus even if DATASET is "
                    "a registered name")
    pp.add_argument("--source", metavar="PATH", help="local directory (e.g. ../shared/data/ptb) or pre-downloaded "
                    "archive, verified like a download")
    pp.add_argument("--out", metavar="DIR", help="output directory (default data/DATASET)")
    pp.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of downsamples, substitutes, subsets and "
                    f"the synthetic corpus (default {DEFAULT_SEED})")
    pp.add_argument("--variant", help="source variant: yelp {authors,shen2017}, snli {authors,snli1.0}; the "
                    "synthetic corpus's grammar: default (grammar-v3) or early (the label at the start)")
    pp.add_argument("--url-base", metavar="URL", help="download every remote file from URL/NAME instead (mirror)")
    pp.add_argument("--cache", metavar="DIR", help="download cache (default OUT/../.downloads)")
    pp.add_argument("--timeout", type=float, default=60.0, help="socket timeout in seconds (default 60)")
    pp.add_argument("--retries", type=int, default=3, help="download attempts (default 3)")
    pp.add_argument("--max-time", type=float, default=3600.0, metavar="SECONDS",
                    help="total time limit of each download, every attempt included (default 3600)")
    pp.add_argument("--allow-unpinned", action="store_true",
                    help="accept files without a pinned checksum (or differing from a provisional pin); "
                    "their sha256 is recorded in stats.json")
    pp.add_argument("--no-substitute", action="store_true",
                    help="fail when a local source lacks a split instead of using the documented substitute")
    pp.add_argument("--examples", type=_parse_examples, metavar="TRAIN,VALID,TEST",
                    help="downsample each split to a seeded sample (--seed) of at most this many examples; "
                    "for the synthetic corpus the sizes generated (default 20000,2000,2000)")
    pp.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args: argparse.Namespace) -> int:
    for option, value in (("--timeout", args.timeout), ("--max-time", args.max_time)):
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{option}: expected a number of seconds > 0, got {value:g}")
    if args.retries < 1:
        raise ConfigError(f"--retries: expected a positive integer, got {args.retries}")
    prepare(args.dataset, args.out, source=args.source, variant=args.variant, seed=args.seed,
            url_base=args.url_base, cache=args.cache, timeout=args.timeout, retries=args.retries,
            max_seconds=args.max_time,
            allow_unpinned=args.allow_unpinned, substitutes=not args.no_substitute, examples=args.examples,
            local=args.local)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m textvae.corpora.prepare data prepare DATASET ...`` (the same subcommand as ``textvae``)."""
    parser = argparse.ArgumentParser(prog="textvae")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TextvaeError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
