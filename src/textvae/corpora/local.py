"""Your own corpus (``textvae data prepare NAME --source DIR``): a folder of ``train.txt``, ``valid.txt`` and
``test.txt``, each one example per line, plain (tokens separated by whitespace) or labelled (``label<TAB>text``),
and optionally labelled subsets ``train.N.txt`` (the N labelled examples of the classification probe).

The format is the one of ``train.txt``'s first line (a TAB: labelled); every line of every file must then
follow it. A file is refused, with one line naming the file and the line, when it is missing or empty, holds
bytes that are not UTF-8, an empty line, a line of the other format, more than one TAB (one label per line), an
empty or spaced label or no text after the label; a labelled corpus must have at least 2 labels in
``train.txt`` (classification), and every label of the other files must occur in ``train.txt``.

Each file's sha256 and size go into ``stats.json`` (``files``), so the reports and DVC know which data a
result came from.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from textvae.core.errors import DataError

SPLIT_NAMES = ("train", "valid", "test")
SUBSET_FILE = re.compile(r"train\.(\d+)\.txt")
# the `corpus:` of a params.yaml dataset that reads its `source:` folder as a local corpus (any name may)
LOCAL = "local"


@dataclass
class LocalFile:
    """One checked file of a local corpus."""

    role: str                     # train, valid, test, train.N
    path: Path
    sentences: list[list[str]]
    labels: list[str] | None
    lines: list[int]              # the line of each example
    sha256: str
    size: int


def missing_source(name: str, spec: dict) -> str | None:
    """Why a dataset of params.yaml that is your own corpus lacks what it needs (its ``source:``), or None."""
    from textvae.corpora.datasets import DATASETS

    corpus = spec.get("corpus", name)
    if (corpus == LOCAL or corpus not in DATASETS) and not spec.get("source"):
        what = "`corpus: local`" if corpus == LOCAL else f"{corpus!r} is not a registered corpus ({', '.join(DATASETS)}):"
        return f"{what} give `source: DIR`, your own corpus (a folder of train.txt, valid.txt, test.txt)"
    return None


def file_names(source: str | Path) -> list[str]:
    """The paths of a local corpus' split files (what the pipeline's data job reads)."""
    return [str(Path(source) / f"{s}.txt") for s in SPLIT_NAMES]


def is_labelled(source: str | Path) -> bool | None:
    """Whether the corpus in ``source`` is labelled (a TAB on the first line of train.txt); None if unreadable."""
    try:
        with open(Path(source) / "train.txt", "rb") as fh:
            first = fh.readline()
    except OSError:
        return None
    return b"\t" in first if first.strip() else None


def read_file(path: Path, role: str, labelled: bool) -> LocalFile:
    """Read and check one file (module docstring); errors name the file and the line."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (a local corpus is a folder of train.txt, valid.txt, test.txt)")
    data = path.read_bytes()
    sentences: list[list[str]] = []
    labels: list[str] | None = [] if labelled else None
    lines: list[int] = []
    for lineno, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{lineno}: undecodable bytes (not UTF-8): {exc.reason}") from None
        if not line.strip():
            raise DataError(f"{path}:{lineno}: empty line (every line holds one example; remove it)")
        tabs = line.count("\t")
        if labelled:
            if tabs == 0:
                raise DataError(f"{path}:{lineno}: no TAB between label and text (the corpus is labelled: "
                                f"train.txt's first line is label<TAB>text)")
            if tabs > 1:
                raise DataError(f"{path}:{lineno}: {tabs} TABs; one label per line (label<TAB>text)")
            label, text = line.split("\t")
            if not label.strip() or label != label.strip() or any(ch.isspace() for ch in label):
                raise DataError(f"{path}:{lineno}: empty or spaced label {label!r} (one label per line, no spaces)")
            if not text.split():
                raise DataError(f"{path}:{lineno}: no text after the label")
            labels.append(label)
            sentences.append(text.split())
        else:
            if tabs:
                raise DataError(f"{path}:{lineno}: a TAB in a plain corpus (train.txt's first line has no label; "
                                f"label every line as label<TAB>text, or none)")
            sentences.append(line.split())
        lines.append(lineno)
    if not sentences:
        raise DataError(f"{path}:1: empty file (no examples)")
    return LocalFile(role, path, sentences, labels, lines, hashlib.sha256(data).hexdigest(), len(data))


def read_local(source: str | Path) -> tuple[bool, dict[str, LocalFile]]:
    """``(labelled, {role: LocalFile})`` of the folder ``source``: the three splits and any ``train.N.txt``."""
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: not a folder (a local corpus is a folder of train.txt, valid.txt, test.txt)")
    train = source / "train.txt"
    labelled = bool(is_labelled(source))
    files = {s: read_file(source / f"{s}.txt", s, labelled) for s in SPLIT_NAMES}
    subsets = sorted((int(m.group(1)), p) for p in source.iterdir() if (m := SUBSET_FILE.fullmatch(p.name)))
    for n, path in subsets:
        if not labelled:
            raise DataError(f"{path}:1: a labelled subset in a plain corpus (train.txt has no labels)")
        files[f"train.{n}"] = read_file(path, f"train.{n}", True)
    if labelled:
        known = set(files["train"].labels)
        if len(known) < 2:
            raise DataError(f"{train}:{files['train'].lines[0]}: one label ({next(iter(known))!r}) in the whole "
                            f"file; classification needs at least 2")
        for f in files.values():
            for lab, lineno in zip(f.labels, f.lines):
                if lab not in known:
                    raise DataError(f"{f.path}:{lineno}: label {lab!r} does not occur in {train}")
    return labelled, files
