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

All failures raise :class:`textvae.errors.DataError` with a one-line message naming the dataset and the
URL, or the file and line.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import random
import re
import shutil
import socket
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from textvae import DEFAULT_SEED
from textvae.errors import ConfigError, DataError, TextvaeError
from textvae.rundir import atomic_path, check_new_or_own, hold_lock

SPLITS = ("train", "valid", "test")
LABEL_SUBSETS = (100, 500, 1000, 2000, 10000)  # SPEC §7.2
DOWNSAMPLE = (("train", 100_000), ("valid", 10_000), ("test", 10_000))  # SPEC §1.1
DATASETS = ("ptb", "yahoo", "snli", "yelp", "synthetic")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


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

_PTB = Variant(
    dataset="ptb",
    name="simple-examples",
    description="Mikolov's preprocessed Penn Treebank from the simple-examples archive",
    labelled=False,
    builder="files",
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
        FileSpec("train", ("simple-examples/data/ptb.train.txt", "ptb.train.txt"),
                 Pin(sha256="fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf", origin=_SOURCES)),
        FileSpec("valid", ("simple-examples/data/ptb.valid.txt", "ptb.valid.txt"),
                 Pin(sha256="c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2", origin=_SOURCES)),
        FileSpec("test", ("simple-examples/data/ptb.test.txt", "ptb.test.txt"),
                 Pin(sha256="dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0", origin=_SOURCES)),
    ),
)

_YELP = Variant(
    dataset="yelp",
    name="authors",
    description="the paper's short Yelp (100k/10k/10k labelled sentences) from the authors' archive",
    labelled=True,
    builder="files",
    remotes=(Remote("short_yelp_data.tgz", _gdrive("18h8UYr801qr-USCYRzZySi_DSbUkHW71"), "tar"),),
    files=(
        FileSpec("train", ("short_yelp_data/short_yelp.train.txt", "short_yelp.train.txt"),
                 Pin(git_blob="6c93efa5f9d0e3a1e71d12d0f393cbf321bfc3db", origin=_DGVAES)),
        FileSpec("valid", ("short_yelp_data/short_yelp.valid.txt", "short_yelp.valid.txt"),
                 Pin(sha256="34240114bd7b8b8b016c2ea033aaf7efefbc4e5be5aa7c53f95e03260c631521", origin=_DGVAES)),
        FileSpec("test", ("short_yelp_data/short_yelp.test.txt", "short_yelp.test.txt"),
                 Pin(sha256="56dc9c763128e315b167870ba6714c0f528b335855b7cc469ab3018457daddeb", origin=_DGVAES)),
        *(
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
    ),
    substitutes=(
        Substitute("train", "file", "train.10000",
                   text="short_yelp.train.10000.txt (the authors' 10k labelled subset of the missing 100k train split)"),
    ),
)

_SHEN = "raw.githubusercontent.com/shentianxiao/language-style-transfer/master/data/yelp"
_YELP_SHEN = Variant(
    dataset="yelp",
    name="shen2017",
    description="seeded 100k/10k/10k downsample of Shen et al. (2017) Yelp (train/dev/test), label = file suffix",
    labelled=True,
    builder="shen_yelp",
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

_SNLI = Variant(
    dataset="snli",
    name="authors",
    description="the paper's downsampled SNLI (100k/10k/10k sentences) from the authors' archive",
    labelled=False,
    builder="files",
    remotes=(Remote("snli_data.tgz", _gdrive("11NHEPxV7OrqmODozxQGezSU8093iUlUx"), "tar"),),
    files=(
        FileSpec("train", ("snli_data/snli.train.txt", "snli.train.txt"),
                 Pin(git_blob="db0a08915e128d58cf5f9ed1bf36c72f978b16e1", origin=_DGVAES)),
        FileSpec("valid", ("snli_data/snli.valid.txt", "snli.valid.txt"),
                 Pin(sha256="8aee585ebefd01b449ce434f94374a3a0b45a77a6f6bb3eb2d0b0ced53735239", origin=_DGVAES)),
        FileSpec("test", ("snli_data/snli.test.txt", "snli.test.txt"),
                 Pin(sha256="94aceee0c5a7b26319250bdd6b2d9a27e75352f3f53ab5f6e1fa6a7592c9bd59", origin=_DGVAES)),
    ),
    substitutes=(
        Substitute("train", "split", "valid", 8000,
                   text="seeded 8,000-sentence sample of snli.valid.txt (valid keeps the other 2,000; test unchanged)"),
    ),
)

_SNLI_1_0 = Variant(
    dataset="snli",
    name="snli1.0",
    description="seeded 100k/10k/10k downsample of the distinct premise and hypothesis sentences of SNLI 1.0 "
    "(tokens of the binary parse, lower-cased)",
    labelled=False,
    builder="snli_jsonl",
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
    dataset="yahoo",
    name="authors",
    description="Yahoo Answers subset of Yang et al. 2017 (100k/10k/10k documents) from the authors' archive",
    labelled=False,
    builder="files",
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


# ---------------------------------------------------------------------------------------------------------
# Digests and pins
# ---------------------------------------------------------------------------------------------------------


class VerificationError(Exception):
    """A downloaded or local object failed verification; ``permanent`` ones are not retried."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def file_digests(path: str | Path, chunk: int = 1 << 20) -> dict[str, str | int]:
    """sha256, md5, git blob id and size of a file."""
    path = Path(path)
    size = path.stat().st_size
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    blob = hashlib.sha1(b"blob %d\x00" % size)
    with open(path, "rb") as fh:
        while True:
            data = fh.read(chunk)
            if not data:
                break
            sha256.update(data)
            md5.update(data)
            blob.update(data)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest(), "git_blob": blob.hexdigest(), "bytes": size}


def check_pin(pin: Pin, digests: Mapping[str, object], *, what: str, covered: str | None = None,
              allow_unpinned: bool = False, log: Log = _stderr) -> str:
    """Compare ``digests`` with ``pin``; return how the object was verified, or raise VerificationError.

    ``covered`` names a verified container (archive) that vouches for an object without a pin of its own.
    """
    if not pin.pinned:
        if covered:
            return f"covered by the verified archive {covered}"
        if allow_unpinned:
            log(f"warning: {what}: no checksum is pinned; accepted (--allow-unpinned), sha256 {digests['sha256']}")
            return "unpinned (accepted with --allow-unpinned)"
        raise VerificationError(f"{what}: no checksum is pinned for it (pass --allow-unpinned to accept it "
                                f"and record its sha256 {digests['sha256']})", permanent=True)
    used = []
    for kind in ("sha256", "git_blob", "md5"):
        want = getattr(pin, kind)
        if not want:
            continue
        got = digests[kind]
        if got != want.lower():
            hint = ""
            if pin.provisional:
                if allow_unpinned:
                    log(f"warning: {what}: {kind} {got} differs from the provisional pin {want} "
                        f"({pin.origin}); accepted (--allow-unpinned)")
                    return f"provisional {kind} pin differs; accepted with --allow-unpinned ({kind} {got})"
                hint = (f"; this pin is provisional ({pin.origin}): if you trust the source, "
                        "rerun with --allow-unpinned to accept and record it")
            raise VerificationError(f"{what}: {kind} mismatch (expected {want}, got {got}){hint}")
        used.append(kind)
    return "pinned " + "+".join(used) + (f" ({pin.origin})" if pin.origin else "")


# ---------------------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------------------

_PERMANENT_HTTP = {400, 401, 403, 404, 405, 410, 451}


def _fetch_once(url: str, tmp: Path, timeout: float, deadline: float | None, limit: str) -> None:
    """One attempt: stream ``url`` into ``tmp``, giving up at ``deadline`` (``time.monotonic()``; ``limit``
    says which limit it is). Raises VerificationError (permanent or transient)."""
    def remaining() -> float:
        return math.inf if deadline is None else deadline - time.monotonic()

    def wait_at_most() -> float:   # each blocking socket operation ends by the deadline
        left = remaining()
        if left <= 0:
            raise VerificationError(f"gave up: {limit}", permanent=True)
        return min(timeout, left)

    req = urllib.request.Request(url, headers={"User-Agent": "textvae-data/0.1"})
    try:
        with urllib.request.urlopen(req, timeout=wait_at_most()) as resp:
            ctype = resp.headers.get("Content-Type", "") or ""
            if ctype.split(";")[0].strip().lower() == "text/html":
                raise VerificationError("the server returned an HTML page instead of the file "
                                        "(for Google Drive: quota exceeded or a confirmation page)", permanent=True)
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
            read = getattr(resp, "read1", resp.read)   # what has arrived, not a full 64 KiB: the limit holds
            received = 0
            with open(tmp, "wb") as out:
                while True:
                    if sock is not None:
                        sock.settimeout(wait_at_most())
                    elif remaining() <= 0:
                        raise VerificationError(f"gave up: {limit}", permanent=True)
                    data = read(1 << 16)
                    if not data:
                        break
                    out.write(data)
                    received += len(data)
            if expected is not None and received != expected:
                raise VerificationError(f"truncated transfer ({received} of {expected} bytes)")
    except VerificationError:
        raise
    except urllib.error.HTTPError as exc:
        raise VerificationError(f"HTTP {exc.code} {_one_line(exc.reason)}",
                                permanent=exc.code in _PERMANENT_HTTP) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise _timed_out(timeout, remaining(), limit) from None
        raise VerificationError(f"connection failed: {_one_line(reason)}") from None
    except (socket.timeout, TimeoutError):
        raise _timed_out(timeout, remaining(), limit) from None
    except http.client.IncompleteRead as exc:
        raise VerificationError(f"truncated transfer ({len(exc.partial)} bytes, then the connection closed)") from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise VerificationError(f"transfer failed: {type(exc).__name__}: {_one_line(exc)}") from None
    except ValueError as exc:  # e.g. unknown url type
        raise VerificationError(f"bad URL: {_one_line(exc)}", permanent=True) from None


def _timed_out(timeout: float, remaining: float, limit: str) -> VerificationError:
    if remaining <= 0.01:
        return VerificationError(f"gave up: {limit}", permanent=True)
    return VerificationError(f"timed out (no data for {timeout:g} s)")


def download(url: str, dest: str | Path, *, dataset: str, verify: Callable[[Path], object] | None = None,
             timeout: float = 60.0, retries: int = 3, backoff: float = 1.0, max_seconds: float | None = 3600.0,
             log: Log = _stderr) -> Path:
    """Download ``url`` to ``dest``: temporary name, ``verify(tmp)``, then an atomic rename.

    At most ``retries`` attempts (waiting ``backoff * 2**k`` s between them); permanent failures (HTTP 404,
    an unsafe archive, a missing member...) stop at once. ``timeout`` bounds every socket operation,
    ``max_seconds`` the whole download, every attempt and wait included (``--max-time``), however slowly the
    server sends. Raises DataError naming ``dataset`` and ``url``; leaves no file behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempts = max(1, int(retries))
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    limit = f"the download took longer than {max_seconds:g} s (--max-time)" if max_seconds is not None else ""
    reason = "no attempt"
    for attempt in range(1, attempts + 1):
        try:
            with atomic_path(dest) as tmp:   # renamed onto dest only once fetched and verified
                log(f"{dataset}: downloading {url} (attempt {attempt}/{attempts})")
                _fetch_once(url, tmp, timeout, deadline, limit)
                if verify is not None:
                    verify(tmp)
            return dest
        except VerificationError as exc:
            reason = _one_line(exc)
            if exc.permanent:
                raise DataError(f"{dataset}: download of {url} failed: {reason}") from None
            log(f"{dataset}: attempt {attempt} of {url} failed: {reason}")
        if attempt < attempts:
            pause = backoff * 2 ** (attempt - 1)
            if deadline is not None and time.monotonic() + pause >= deadline:
                raise DataError(f"{dataset}: download of {url} failed: {reason}; no time left for another "
                                f"attempt ({limit})")
            time.sleep(pause)
    raise DataError(f"{dataset}: download of {url} failed after {attempts} attempts: {reason}")


# ---------------------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------------------


def _safe_member_name(name: str) -> str | None:
    """The normalised member path, or None when it is absolute or climbs out with '..'."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    return "/".join(parts)


def _match(paths: Iterable[str], names: Sequence[str], what: str) -> str | None:
    """The single path equal to or ending in '/'+name for the first candidate name that matches."""
    paths = list(paths)
    for name in names:
        hits = [p for p in paths if p == name or p.endswith("/" + name)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise VerificationError(f"{what}: {name!r} is ambiguous ({', '.join(sorted(hits)[:4])})", permanent=True)
    return None


def _archive_kind(path: Path, declared: str) -> str:
    if declared in ("tar", "zip"):
        return declared
    if zipfile.is_zipfile(path):
        return "zip"
    return "tar"


def scan_archive(path: str | Path, kind: str, files: Sequence[FileSpec], *, what: str,
                 extract_to: Path | None = None) -> dict[str, tuple[str, dict, Path | None]]:
    """Check every member of an archive for safety, locate ``files`` and hash (and optionally extract) them.

    Returns ``{role: (member, digests, extracted_path or None)}``; optional files that are absent are left
    out. Raises VerificationError: unsafe members and missing files are permanent, a corrupt archive is not.
    """
    path = Path(path)
    members: dict[str, object] = {}
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    mode = info.external_attr >> 16
                    norm = _safe_member_name(info.filename)
                    if norm is None:
                        raise VerificationError(f"{what}: unsafe member {info.filename!r} (absolute path or '..'); "
                                                "refusing the archive", permanent=True)
                    if stat.S_ISLNK(mode):
                        raise VerificationError(f"{what}: member {info.filename!r} is a symbolic link; "
                                                "refusing the archive", permanent=True)
                    if not info.is_dir():
                        members[norm] = info
                found = _locate(members, files, what)
                return {role: (m, *_copy_member(lambda m=m: zf.open(members[m]), members[m].file_size, extract_to, role))
                        for role, m in found.items()}
        with tarfile.open(path, "r:*") as tf:
            for info in tf.getmembers():
                norm = _safe_member_name(info.name)
                if norm is None:
                    raise VerificationError(f"{what}: unsafe member {info.name!r} (absolute path or '..'); "
                                            "refusing the archive", permanent=True)
                if info.issym() or info.islnk():
                    raise VerificationError(f"{what}: member {info.name!r} is a {'symbolic' if info.issym() else 'hard'} "
                                            f"link to {info.linkname!r}; refusing the archive", permanent=True)
                if not (info.isfile() or info.isdir()):
                    raise VerificationError(f"{what}: member {info.name!r} is not a regular file or directory; "
                                            "refusing the archive", permanent=True)
                if info.isfile():
                    members[norm] = info
            found = _locate(members, files, what)
            return {role: (m, *_copy_member(lambda m=m: tf.extractfile(members[m]), members[m].size, extract_to, role))
                    for role, m in found.items()}
    except VerificationError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        # zlib.error is a subclass of Exception only; caught below
        raise VerificationError(f"{what}: not a readable {kind} archive ({type(exc).__name__}: {_one_line(exc)})") from None
    except Exception as exc:  # zlib.error and friends from a corrupt stream
        if type(exc).__module__ in ("zlib", "gzip", "bz2", "lzma", "_lzma", "_bz2"):
            raise VerificationError(f"{what}: not a readable {kind} archive ({type(exc).__name__}: {_one_line(exc)})") from None
        raise


def _locate(members: Mapping[str, object], files: Sequence[FileSpec], what: str) -> dict[str, str]:
    found = {}
    for fs in files:
        m = _match(members, fs.names, what)
        if m is None:
            if fs.optional:
                continue
            raise VerificationError(f"{what}: no member matches {fs.role} ({', '.join(fs.names)})", permanent=True)
        found[fs.role] = m
    return found


def _copy_member(opener: Callable[[], object], size: int, extract_to: Path | None,
                 role: str) -> tuple[dict, Path | None]:
    """Hash one archive member (declared ``size`` bytes) in one pass, writing it out when ``extract_to``."""
    out_path = None
    fh_out = None
    if extract_to is not None:
        extract_to.mkdir(parents=True, exist_ok=True)
        out_path = extract_to / f"{role}.raw"
        fh_out = open(out_path, "wb")
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    blob = hashlib.sha1(b"blob %d\x00" % size)  # a wrong declared size only makes the blob id differ
    got = 0
    try:
        src = opener()
        if src is None:
            raise VerificationError(f"member for {role} cannot be read", permanent=True)
        with src:
            while True:
                data = src.read(1 << 20)
                if not data:
                    break
                sha256.update(data)
                md5.update(data)
                blob.update(data)
                got += len(data)
                if fh_out is not None:
                    fh_out.write(data)
    finally:
        if fh_out is not None:
            fh_out.close()
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest(), "git_blob": blob.hexdigest(), "bytes": got}, out_path


# ---------------------------------------------------------------------------------------------------------
# Gathering verified input files
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RawFile:
    role: str
    path: Path
    origin: str  # URL#member or local path
    digests: dict
    verified: str


@dataclass
class _Opts:
    allow_unpinned: bool = False
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    max_seconds: float | None = 3600.0
    log: Log = _stderr


def _verify_archive(var: Variant, remote: Remote, path: Path, what: str, opts: _Opts,
                    extract_to: Path | None = None) -> dict[str, RawFile]:
    """Verify an archive (its own pin, member safety, member pins); optionally extract the wanted files."""
    digests = file_digests(path)
    covered = None
    if remote.pin.pinned:
        check_pin(remote.pin, digests, what=what, log=opts.log)
        covered = remote.name
    files = var.files_of(remote)
    found = scan_archive(path, _archive_kind(path, remote.kind), files, what=what, extract_to=extract_to)
    out = {}
    for fs in files:
        if fs.role not in found:
            continue
        member, dg, extracted = found[fs.role]
        how = check_pin(fs.pin, dg, what=f"{what} member {member}", covered=covered,
                        allow_unpinned=opts.allow_unpinned, log=opts.log)
        out[fs.role] = RawFile(fs.role, extracted if extracted is not None else path, f"{what}#{member}", dg, how)
    return out


def _verify_file(fs: FileSpec, path: Path, what: str, opts: _Opts) -> RawFile:
    dg = file_digests(path)
    how = check_pin(fs.pin, dg, what=what, allow_unpinned=opts.allow_unpinned, log=opts.log)
    return RawFile(fs.role, path, what, dg, how)


def _gather_download(var: Variant, cache: Path, work: Path, opts: _Opts) -> dict[str, RawFile]:
    raw: dict[str, RawFile] = {}
    needed = [r for r in var.remotes if var.files_of(r)]
    for remote in needed:
        if not remote.url:
            raise DataError(f"{var.dataset}: no download URL is known for {remote.name}; "
                            "pass --source PATH with the pre-downloaded files")
        url = remote.url
        dest = cache / remote.name

        if remote.kind == "file":
            (fs,) = var.files_of(remote)

            def verify(p: Path, fs=fs, url=url) -> object:
                return _verify_file(fs, p, f"{url}", opts)
        else:
            def verify(p: Path, remote=remote, url=url) -> object:
                return _verify_archive(var, remote, p, url, opts)

        if dest.is_file():
            try:
                verify(dest)
                opts.log(f"{var.dataset}: using verified cached {dest}")
            except VerificationError as exc:
                opts.log(f"{var.dataset}: cached {dest} failed verification ({_one_line(exc)}); downloading again")
                dest.unlink()
        if not dest.is_file():
            download(url, dest, dataset=var.dataset, verify=verify, timeout=opts.timeout, retries=opts.retries,
                     backoff=opts.backoff, max_seconds=opts.max_seconds, log=opts.log)
        try:
            if remote.kind == "file":
                raw[fs.role] = _verify_file(fs, dest, url, opts)
            else:
                raw.update(_verify_archive(var, remote, dest, url, opts, extract_to=work / remote.name))
        except VerificationError as exc:
            raise DataError(f"{var.dataset}: {_one_line(exc)}") from None
    return raw


def _list_files(root: Path, max_depth: int = 4) -> list[str]:
    out = []
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - root_depth
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
        rel = Path(dirpath).relative_to(root)
        for fn in sorted(filenames):
            if not fn.startswith("."):
                out.append((rel / fn).as_posix())
    return out


def _gather_local(var: Variant, source: Path, work: Path, opts: _Opts) -> tuple[dict[str, RawFile], list[str]]:
    """Verified files from a local source: a pre-downloaded archive, or a directory of files.

    Returns the files and the roles that are missing (for which substitutes may apply).
    """
    ds = var.dataset
    if not source.exists():
        raise DataError(f"{ds}: source {source} does not exist")
    raw: dict[str, RawFile] = {}
    if source.is_file():
        archives = [r for r in var.remotes if r.kind in ("tar", "zip")]
        if len(archives) != 1:
            raise DataError(f"{ds}: source {source} is a file, but variant {var.name} expects a directory")
        try:
            raw = _verify_archive(var, archives[0], source, str(source), opts, extract_to=work / "local")
        except VerificationError as exc:
            raise DataError(f"{ds}: {_one_line(exc)}") from None
        missing = [f.role for f in var.files if f.role not in raw and not f.optional]
        return raw, missing
    if (source / ds).is_dir():
        source = source / ds
    # A pre-downloaded archive inside the directory is used as if it had been downloaded.
    pending = list(var.files)
    for remote in var.remotes:
        if remote.kind in ("tar", "zip") and (source / remote.name).is_file():
            try:
                raw.update(_verify_archive(var, remote, source / remote.name, str(source / remote.name), opts,
                                           extract_to=work / remote.name))
            except VerificationError as exc:
                raise DataError(f"{ds}: {_one_line(exc)}") from None
            pending = [f for f in pending if f.role not in raw]
    paths = _list_files(source)
    missing = []
    for fs in pending:
        try:
            rel = _match(paths, fs.names, f"{source}")
        except VerificationError as exc:
            raise DataError(f"{ds}: {_one_line(exc)}") from None
        if rel is None:
            if not fs.optional:
                missing.append(fs.role)
            continue
        path = source / rel
        try:
            raw[fs.role] = _verify_file(fs, path, str(path), opts)
        except VerificationError as exc:
            raise DataError(f"{ds}: {_one_line(exc)}") from None
    return raw, missing


# ---------------------------------------------------------------------------------------------------------
# Building splits
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Split:
    """Examples of one output file: token lists, labels (labelled corpora), and where they came from."""

    sentences: list[list[str]]
    labels: list[str] | None
    origin: str
    dropped_empty: int = 0
    note: str = ""

    def subset(self, idx: Sequence[int], origin: str, note: str = "") -> "Split":
        return Split([self.sentences[i] for i in idx],
                     None if self.labels is None else [self.labels[i] for i in idx], origin, 0, note)


def _read(path: Path, labelled: bool, shown: str | None = None) -> Split:
    """Read and validate a corpus file; errors name the file and the line (via textvae.data.read_corpus)."""
    from textvae.data import read_corpus

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
                 substitutes: bool, log: Log = _stderr,
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
    return _downsample(var, splits, seed), {}


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
                                f"{_one_line(exc)})") from None
            for p in parses:
                toks = [t.lower() for t in str(p).split() if t not in ("(", ")")]
                if toks:
                    seen.setdefault(" ".join(toks))
    if not seen:
        raise DataError(f"{shown}: empty corpus (no SNLI sentences)")
    return Split([s.split() for s in seen], None, shown)


def _build_snli_jsonl(var: Variant, raw: Mapping[str, RawFile], seed: int) -> tuple[dict[str, Split], dict[str, Split]]:
    splits = {split: _snli_sentences(raw[split].path, raw[split].origin) for split in SPLITS}
    return _downsample(var, splits, seed), {}


def _downsample(var: Variant, splits: dict[str, Split], seed: int) -> dict[str, Split]:
    sizes = dict(var.downsample)
    out = {}
    for split, sp in splits.items():
        k = sizes.get(split)
        if not k:
            out[split] = sp
            continue
        idx = _sample(len(sp.sentences), k, _rng(seed, var.dataset, var.name, split))
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
# Statistics and writing
# ---------------------------------------------------------------------------------------------------------


def split_stats(sp: Split, train_vocab: set[str] | None = None) -> dict:
    lengths = Counter(len(s) for s in sp.sentences)
    types: set[str] = set()
    words = 0
    oov = 0
    for s in sp.sentences:
        types.update(s)
        words += len(s)
        if train_vocab is not None:
            oov += sum(1 for w in s if w not in train_vocab)
    n = len(sp.sentences)
    st = {
        "examples": n,
        "words": words,
        "tokens": words + n,  # predicted tokens: one </s> per example counted (SPEC §1.4)
        "vocabulary": len(types),
        "mean_length": round(words / n, 4) if n else 0.0,
        "min_length": min(lengths) if lengths else 0,
        "max_length": max(lengths) if lengths else 0,
        "length_histogram": {str(k): lengths[k] for k in sorted(lengths)},
        "dropped_empty": sp.dropped_empty,
        "origin": sp.origin,
    }
    if train_vocab is not None:
        st["oov_words"] = oov
    if sp.labels is not None:
        lab = Counter(sp.labels)
        st["labels"] = {k: lab[k] for k in sorted(lab, key=lambda x: (len(x), x))}
    if sp.note:
        st["note"] = sp.note
    return st


def _format(sp: Split) -> str:
    if sp.labels is None:
        return "".join(" ".join(s) + "\n" for s in sp.sentences)
    return "".join(f"{lab}\t{' '.join(s)}\n" for lab, s in zip(sp.labels, sp.sentences))


def write_dataset(out: Path, splits: Mapping[str, Split], extras: Mapping[str, Split], stats: dict,
                  aux: Mapping[str, str] | None = None) -> dict:
    """Write everything under a temporary directory beside ``out``, ``stats.json`` last, then swap it in."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the prepared corpus is ordinary data
        train_vocab: set[str] = set()
        for s in splits["train"].sentences:
            train_vocab.update(s)
        stats["splits"] = {}
        for split in SPLITS:
            sp = splits[split]
            (tmp / f"{split}.txt").write_text(_format(sp), encoding="utf-8")
            stats["splits"][split] = split_stats(sp, None if split == "train" else train_vocab)
        stats["vocabulary"] = len(train_vocab)
        stats["vocab_size"] = 4 + len(train_vocab - {"<pad>", "<s>", "</s>", "<unk>"})
        if extras:
            stats["subsets"] = {}
            for role in sorted(extras, key=lambda r: (len(r), r)):
                (tmp / f"{role}.txt").write_text(_format(extras[role]), encoding="utf-8")
                st = split_stats(extras[role])
                stats["subsets"][role] = {k: st[k] for k in ("examples", "words", "tokens", "origin")
                                          if k in st} | ({"labels": st["labels"]} if "labels" in st else {})
        for name, text in (aux or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        old = None
        if out.exists() or out.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "previous")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return stats


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


def _prepare(dataset: str, out: Path, *, source: str | Path | None = None,
            variant: str | None = None, seed: int = DEFAULT_SEED, url_base: str | None = None,
            cache: str | Path | None = None, timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
            max_seconds: float | None = 3600.0, allow_unpinned: bool = False, substitutes: bool = True,
            examples: Sequence[int] | None = None, spec: Variant | None = None,
            registry: Mapping[str, Mapping[str, Variant]] | None = None, log: Log = _stderr) -> dict:
    """``source``: a local directory (or pre-downloaded archive) read through the same verification as a
    download; without it the registry's URLs are downloaded (``url_base`` replaces their location, for
    mirrors and tests) into ``cache`` (default ``OUT/../.downloads``). ``spec`` replaces the registry entry.
    """
    started = time.time()
    if dataset == "synthetic" and source is not None:
        raise ConfigError("synthetic: the embedded corpus is generated; it takes no --source")
    if dataset != "synthetic" and examples is not None:
        raise ConfigError(f"{dataset}: --examples applies to the synthetic corpus only")
    if dataset == "synthetic" and spec is None:
        from textvae import synthetic

        sizes = tuple(examples) if examples else synthetic.DEFAULT_SIZES
        if len(sizes) != 3 or min(sizes) < 1:
            raise DataError(f"synthetic: --examples needs three positive sizes TRAIN,VALID,TEST, got {sizes}")
        corpus = synthetic.generate(seed=seed, sizes=dict(zip(SPLITS, sizes)))
        splits = {s: Split([ex.tokens for ex in corpus[s]], [str(ex.label) for ex in corpus[s]],
                           f"textvae.synthetic (seed {seed})") for s in SPLITS}
        extras = _sampled_subsets(splits["train"], seed, dataset)
        aux = {f"{s}.factors.jsonl": "".join(json.dumps(ex.factors, sort_keys=True) + "\n" for ex in corpus[s])
               for s in SPLITS}
        aux["factors.json"] = json.dumps(synthetic.describe(), indent=2) + "\n"
        stats = {
            "dataset": dataset,
            "variant": "grammar-v2",
            "format": "labelled",
            "description": synthetic.DESCRIPTION,
            "label": synthetic.LABEL_FACTOR,
            "seed": seed,
            "source": {"kind": "generated", "generator": "textvae.synthetic", "sizes": list(sizes)},
            "substitute": None,
        }
        stats = write_dataset(out, splits, extras, stats, aux)
        log(f"{dataset}: wrote {out} ({_summary(stats)}) in {time.time() - started:.1f} s")
        return stats

    var = spec if spec is not None else get_variant(dataset, variant, registry)
    if url_base is not None:
        var = with_overrides(var, url_base=url_base)
    opts = _Opts(allow_unpinned=allow_unpinned, timeout=timeout, retries=retries, backoff=backoff,
                 max_seconds=max_seconds, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".work", dir=out.parent))
    try:
        if source is not None:
            raw, missing = _gather_local(var, Path(source), work, opts)
            src_info = {"kind": "local", "path": str(Path(source).resolve())}
        else:
            cache_dir = Path(cache) if cache is not None else out.parent / ".downloads"
            raw, missing = _gather_download(var, cache_dir, work, opts), []
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
    pp.add_argument("dataset", choices=DATASETS)
    pp.add_argument("--source", metavar="PATH", help="local directory (e.g. ../shared/data/ptb) or pre-downloaded "
                    "archive, verified like a download")
    pp.add_argument("--out", metavar="DIR", help="output directory (default data/DATASET)")
    pp.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of downsamples, substitutes, subsets and "
                    f"the synthetic corpus (default {DEFAULT_SEED})")
    pp.add_argument("--variant", help="source variant: yelp {authors,shen2017}, snli {authors,snli1.0}")
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
                    help="synthetic corpus sizes (default 20000,2000,2000)")
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
            allow_unpinned=args.allow_unpinned, substitutes=not args.no_substitute, examples=args.examples)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m textvae.prepare data prepare DATASET ...`` (the same subcommand as ``textvae``)."""
    parser = argparse.ArgumentParser(prog="textvae")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TextvaeError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
