"""The dataset registry (SPEC §1.1): for every corpus its variants, remote sources and mirrors, the files they
hold and the pinned digests (sha256, or the git blob id where only that is known) that every input is verified
against before use."""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from typing import Mapping

from textvae.core.errors import DataError


SPLITS = ("train", "valid", "test")
LABEL_SUBSETS = (100, 500, 1000, 2000, 10000)  # SPEC §7.2
DOWNSAMPLE = (("train", 100_000), ("valid", 10_000), ("test", 10_000))  # SPEC §1.1
DATASETS = ("ptb", "yahoo", "snli", "yelp", "synthetic")


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """Expected digest(s) of one file. Any digest given must match; ``origin`` says where it comes from."""

    sha256: str | None = None
    md5: str | None = None
    git_blob: str | None = None  # sha1 of b"blob <size>\\0" + content, as `git hash-object` prints
    origin: str = ""
    provisional: bool = False  # taken from a copy whose identity with this source is not confirmed

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.md5 or self.git_blob)


NO_PIN = Pin()


@dataclass(frozen=True)
class Remote:
    """One downloadable object: an archive (``tar``/``zip``) or a single ``file``."""

    name: str  # file name in the download cache and under --url-base
    url: str | None  # None: no public URL is known (use --source)
    kind: str  # "tar" | "zip" | "file"
    pin: Pin = NO_PIN  # digest of the downloaded object itself, where known


@dataclass(frozen=True)
class FileSpec:
    """One input file of a dataset, found inside its remote (or a local source) by candidate paths."""

    role: str  # "train", "valid", "test", "train.100", "train.0", ...
    names: tuple[str, ...]  # candidate paths, matched on a '/' boundary at the end, in priority order
    pin: Pin = NO_PIN
    remote: str | None = None  # Remote.name that provides it (default: the variant's first remote)
    optional: bool = False


@dataclass(frozen=True)
class Substitute:
    """What to use when a local source lacks ``role`` (documented, recorded in stats.json)."""

    role: str
    kind: str  # "file": read ``source_role``'s file instead; "split": carve ``size`` lines out of it
    source_role: str
    size: int = 0
    text: str = ""


@dataclass(frozen=True)
class Variant:
    dataset: str
    name: str
    description: str
    labelled: bool
    builder: str  # "files" | "shen_yelp" | "snli_jsonl"
    remotes: tuple[Remote, ...]
    files: tuple[FileSpec, ...]
    substitutes: tuple[Substitute, ...] = ()
    downsample: tuple[tuple[str, int], ...] = ()  # seeded sample sizes per split ("" = none)
    sampled_subsets: bool = False  # write train.N subsets sampled (seeded) from train

    def remote(self, name: str | None) -> Remote:
        if name is None:
            return self.remotes[0]
        for r in self.remotes:
            if r.name == name:
                return r
        raise KeyError(name)

    def files_of(self, remote: Remote) -> list[FileSpec]:
        return [f for f in self.files if self.remote(f.remote).name == remote.name]


def _gdrive(file_id: str) -> str:
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


# Digests of the files in ../shared/data are from shared/data/SOURCES.md; git blob ids of the train files
# that are absent there are the ids under which their repositories list them (same file).
_SOURCES = "shared/data/SOURCES.md"
_DGVAES = f"{_SOURCES} (zhangjf-nlp/DG-VAEs copy of the authors' files)"

def _split_files(folder: str, stem: str, train: Pin, valid: Pin, test: Pin) -> tuple[FileSpec, ...]:
    """The train/valid/test files of an archive laid out as FOLDER/STEM.ROLE.txt (also found loose as
    STEM.ROLE.txt in a local source), each with its pin."""
    return tuple(FileSpec(role, (f"{folder}/{stem}.{role}.txt", f"{stem}.{role}.txt"), pin)
                 for role, pin in (("train", train), ("valid", valid), ("test", test)))


#: the pins of the authors' archives' train, valid and test files, by stem (git blob ids where ../shared lacks one)
_AUTHORS_PINS = {
    "short_yelp": (
        Pin(git_blob="6c93efa5f9d0e3a1e71d12d0f393cbf321bfc3db", origin=_DGVAES),
        Pin(sha256="34240114bd7b8b8b016c2ea033aaf7efefbc4e5be5aa7c53f95e03260c631521", origin=_DGVAES),
        Pin(sha256="56dc9c763128e315b167870ba6714c0f528b335855b7cc469ab3018457daddeb", origin=_DGVAES),
    ),
    "snli": (
        Pin(git_blob="db0a08915e128d58cf5f9ed1bf36c72f978b16e1", origin=_DGVAES),
        Pin(sha256="8aee585ebefd01b449ce434f94374a3a0b45a77a6f6bb3eb2d0b0ced53735239", origin=_DGVAES),
        Pin(sha256="94aceee0c5a7b26319250bdd6b2d9a27e75352f3f53ab5f6e1fa6a7592c9bd59", origin=_DGVAES),
    ),
}


def _authors_archive(dataset: str, description: str, labelled: bool, drive_id: str, stem: str, *,
                     extra_files: tuple[FileSpec, ...] = (), substitutes: tuple[Substitute, ...] = ()) -> Variant:
    """A dataset as the authors share it: one tarball on Google Drive holding STEM_data/STEM.ROLE.txt (their
    pins in _AUTHORS_PINS)."""
    return Variant(
        dataset=dataset, name="authors", description=description, labelled=labelled, builder="files",
        remotes=(Remote(f"{stem}_data.tgz", _gdrive(drive_id), "tar"),),
        files=(*_split_files(f"{stem}_data", stem, *_AUTHORS_PINS[stem]), *extra_files),
        substitutes=substitutes,
    )


_PTB = Variant(
    dataset="ptb", name="simple-examples",
    description="Mikolov's preprocessed Penn Treebank from the simple-examples archive",
    labelled=False, builder="files",
    remotes=(
        Remote(
            "simple-examples.tgz",
            "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
            "tar",
            # sha256 of the archive is not known to us; its md5 is the one published with many loaders.
            Pin(md5="30177ea32e27c525793142b6bf2c8e2d", origin="md5 published by PaddlePaddle's imikolov loader"),
        ),
    ),
    files=(
        *_split_files(
            "simple-examples/data", "ptb",
            train=Pin(sha256="fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf", origin=_SOURCES),
            valid=Pin(sha256="c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2", origin=_SOURCES),
            test=Pin(sha256="dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0", origin=_SOURCES),
        ),
    ),
)

_YELP = _authors_archive(
    "yelp", "the paper's short Yelp (100k/10k/10k labelled sentences) from the authors' archive", True,
    "18h8UYr801qr-USCYRzZySi_DSbUkHW71", "short_yelp",
    extra_files=tuple(
        FileSpec(f"train.{n}", (f"short_yelp_data/short_yelp.train.{n}.txt", f"short_yelp.train.{n}.txt"),
                 Pin(sha256=h, origin=_DGVAES), optional=True)
        for n, h in (
            (100, "eb17b8855e8307badf3f4a50b467268ae21c3ec471a9d2f7a152eceff5e7a91c"),
            (500, "a11eb4bdea7bc5e58d1d316744c61d42da5a7467e4babef51c2cc5d839565a05"),
            (1000, "ceba2d95fd4ea802d2b0f873d34aff5289a453e7c3ecd63669c7186d2a077fb6"),
            (2000, "f91ae9deaffee1943c6308f9b723dab00bb87fa10c39a5fe7ec9fb9a1197716f"),
            (10000, "db61555383043e4032443c9a04bffe2129c8e181f596e437c9c9b56292578c06"),
        )
    ),
    substitutes=(
        Substitute("train", "file", "train.10000",
                   text="short_yelp.train.10000.txt (the authors' 10k labelled subset of the missing 100k train split)"),
    ),
)

_SHEN = "raw.githubusercontent.com/shentianxiao/language-style-transfer/master/data/yelp"
_YELP_SHEN = Variant(
    dataset="yelp", name="shen2017",
    description="seeded 100k/10k/10k downsample of Shen et al. (2017) Yelp (train/dev/test), label = file suffix",
    labelled=True, builder="shen_yelp",
    remotes=tuple(
        Remote(f"sentiment.{split}.{lab}", f"https://{_SHEN}/sentiment.{split}.{lab}", "file")
        for split in ("train", "dev", "test") for lab in (0, 1)
    ),
    files=tuple(
        FileSpec(f"{role}.{lab}", (f"sentiment.{split}.{lab}",), pin, remote=f"sentiment.{split}.{lab}")
        for role, split, lab, pin in (
            ("train", "train", 0, Pin(git_blob="036fc63dbd061c90f6ee7239153a091e65efebaf", origin=_SOURCES)),
            ("train", "train", 1, Pin(git_blob="bacfff7637e2e98b9c37590c29e81f0ec99bf7ab", origin=_SOURCES)),
            ("valid", "dev", 0, Pin(sha256="405ef6d4bfbc8bb92c3c55b496f315069cb5edb49ed34a07b1206341b83c344b", origin=_SOURCES)),
            ("valid", "dev", 1, Pin(sha256="3509f6573411bbda2d5c071ed72ad276c12356c15c06205b8fdf74b217970c61", origin=_SOURCES)),
            ("test", "test", 0, Pin(sha256="b7466e8859e9948892a859af7938a82c801c99b69f884014082fd072a155bbf2", origin=_SOURCES)),
            ("test", "test", 1, Pin(sha256="a66e0ec3f0e1230ad4d2c822750a381cf6d99a99fa9b5ae79546f21ff79ed5c3", origin=_SOURCES)),
        )
    ),
    downsample=DOWNSAMPLE,
    sampled_subsets=True,
)

_SNLI = _authors_archive(
    "snli", "the paper's downsampled SNLI (100k/10k/10k sentences) from the authors' archive", False,
    "11NHEPxV7OrqmODozxQGezSU8093iUlUx", "snli",
    substitutes=(
        Substitute("train", "split", "valid", 8000,
                   text="seeded 8,000-sentence sample of snli.valid.txt (valid keeps the other 2,000; test unchanged)"),
    ),
)

_SNLI_1_0 = Variant(
    dataset="snli", name="snli1.0",
    description="seeded 100k/10k/10k downsample of the distinct premise and hypothesis sentences of SNLI 1.0 "
    "(tokens of the binary parse, lower-cased)",
    labelled=False, builder="snli_jsonl",
    remotes=(
        Remote("snli_1.0.zip", "https://nlp.stanford.edu/projects/snli/snli_1.0.zip", "zip",
               Pin(md5="981c3df556bbaea3f17f752456d0088c", origin="md5 published by torchtext's SNLI loader")),
    ),
    files=(
        FileSpec("train", ("snli_1.0/snli_1.0_train.jsonl", "snli_1.0_train.jsonl")),
        FileSpec("valid", ("snli_1.0/snli_1.0_dev.jsonl", "snli_1.0_dev.jsonl")),
        FileSpec("test", ("snli_1.0/snli_1.0_test.jsonl", "snli_1.0_test.jsonl")),
    ),
    downsample=DOWNSAMPLE,
)

_YAHOO_ORIGIN = (f"{_SOURCES} (fangleai/Implicit-LVM copy of the Yang et al. 2017 data; identity with the "
                 "authors' archive not confirmed)")
_YAHOO = Variant(
    dataset="yahoo", name="authors",
    description="Yahoo Answers subset of Yang et al. 2017 (100k/10k/10k documents) from the authors' archive",
    labelled=False, builder="files",
    remotes=(Remote("yahoo_data.tgz", _gdrive("13azGlTuGdzWLCmgDmQPmvb_jcexVWX7i"), "tar"),),
    files=(
        FileSpec("train", ("yahoo_data/yahoo.train.txt", "yahoo.train.txt", "train.txt"),
                 Pin(git_blob="ae7d4fc4d07e520dffdbd835868a1d7c7a6eb471", origin=_YAHOO_ORIGIN, provisional=True)),
        FileSpec("valid", ("yahoo_data/yahoo.valid.txt", "yahoo.valid.txt", "val.txt", "valid.txt"),
                 Pin(sha256="6129c0622bd0a12b092814e7b660f70c20481788f42860d980431c0a614006ef",
                     origin=_YAHOO_ORIGIN, provisional=True)),
        FileSpec("test", ("yahoo_data/yahoo.test.txt", "yahoo.test.txt", "test.txt"),
                 Pin(sha256="54dd2d2de3843cc701faebf793ab72253ff2286b00879d25790ad087a74917a1",
                     origin=_YAHOO_ORIGIN, provisional=True)),
    ),
    substitutes=(
        Substitute("train", "split", "valid", 8000,
                   text="seeded 8,000-document sample of the valid file (valid keeps the other 2,000; test unchanged)"),
    ),
)

#: dataset -> variant name -> Variant. The first variant of a dataset is its default.
REGISTRY: dict[str, dict[str, Variant]] = {
    "ptb": {_PTB.name: _PTB},
    "yahoo": {_YAHOO.name: _YAHOO},
    "snli": {_SNLI.name: _SNLI, _SNLI_1_0.name: _SNLI_1_0},
    "yelp": {_YELP.name: _YELP, _YELP_SHEN.name: _YELP_SHEN},
}

#: the corpora whose examples carry labels (the classification probe's), the embedded one included
LABELLED_CORPORA = frozenset({d for d, vs in REGISTRY.items() if all(v.labelled for v in vs.values())} | {"synthetic"})


def get_variant(dataset: str, variant: str | None = None,
                registry: Mapping[str, Mapping[str, Variant]] | None = None) -> Variant:
    reg = REGISTRY if registry is None else registry
    if dataset not in reg:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(sorted(reg))}, synthetic")
    variants = reg[dataset]
    if variant is None:
        return next(iter(variants.values()))
    if variant not in variants:
        raise DataError(f"{dataset}: unknown variant {variant!r}; known: {', '.join(variants)}")
    return variants[variant]


def with_overrides(var: Variant, *, url_base: str | None = None, remote_pins: Mapping[str, Pin] | None = None,
                   file_pins: Mapping[str, Pin] | None = None) -> Variant:
    """A copy of ``var`` with remote URLs under ``url_base`` and/or other pins (mirrors, tests).

    The returned variant goes through exactly the same download and verification code as the original.
    """
    remotes = []
    for r in var.remotes:
        url = r.url if url_base is None else f"{url_base.rstrip('/')}/{urllib.parse.quote(r.name)}"
        pin = r.pin if remote_pins is None or r.name not in remote_pins else remote_pins[r.name]
        remotes.append(replace(r, url=url, pin=pin))
    files = [f if file_pins is None or f.role not in file_pins else replace(f, pin=file_pins[f.role])
             for f in var.files]
    return replace(var, remotes=tuple(remotes), files=tuple(files))


def request_problem(dataset: str, source, examples) -> tuple[str, str] | None:
    """(option, what is wrong) with a request that ``textvae data prepare`` refuses before it reads anything (the
    pre-flight check of params.yaml asks it too), or None."""
    if examples is not None and (len(examples) != 3 or min(examples) < 1):
        return "examples", f"--examples needs three positive sizes TRAIN,VALID,TEST, got {tuple(examples)}"
    if dataset == "synthetic" and source is not None:
        return "source", "the embedded corpus is generated; it takes no --source"
    return None   # a name the registry does not know is your own corpus (corpora.local): it needs a source
