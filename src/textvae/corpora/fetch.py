"""Fetching verified inputs: digests and pins, bounded downloads (retries, socket timeout, a total deadline; a
temporary name renamed into the cache only once verified), safe archive reading (an absolute or ``..`` member,
a link or a device member refuses the archive), and gathering every input file of a variant from the network
or a local folder. Failures raise :class:`textvae.core.errors.DataError` naming the dataset and URL."""
from __future__ import annotations

import hashlib
import http.client
import math
import os
import socket
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from textvae.corpora.datasets import FileSpec, Pin, Remote, Variant
from textvae.core.errors import DataError
from textvae.core.rundir import atomic_path

Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


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
              allow_unpinned: bool = False, log: Log = stderr_log) -> str:
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
        raise VerificationError(f"HTTP {exc.code} {one_line(exc.reason)}",
                                permanent=exc.code in _PERMANENT_HTTP) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise _timed_out(timeout, remaining(), limit) from None
        raise VerificationError(f"connection failed: {one_line(reason)}") from None
    except (socket.timeout, TimeoutError):
        raise _timed_out(timeout, remaining(), limit) from None
    except http.client.IncompleteRead as exc:
        raise VerificationError(f"truncated transfer ({len(exc.partial)} bytes, then the connection closed)") from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise VerificationError(f"transfer failed: {type(exc).__name__}: {one_line(exc)}") from None
    except ValueError as exc:  # e.g. unknown url type
        raise VerificationError(f"bad URL: {one_line(exc)}", permanent=True) from None


def _timed_out(timeout: float, remaining: float, limit: str) -> VerificationError:
    if remaining <= 0.01:
        return VerificationError(f"gave up: {limit}", permanent=True)
    return VerificationError(f"timed out (no data for {timeout:g} s)")


def download(url: str, dest: str | Path, *, dataset: str, verify: Callable[[Path], object] | None = None,
             timeout: float = 60.0, retries: int = 3, backoff: float = 1.0, max_seconds: float | None = 3600.0,
             log: Log = stderr_log) -> Path:
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
            reason = one_line(exc)
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
        raise VerificationError(f"{what}: not a readable {kind} archive ({type(exc).__name__}: {one_line(exc)})") from None
    except Exception as exc:  # zlib.error and friends from a corrupt stream
        if type(exc).__module__ in ("zlib", "gzip", "bz2", "lzma", "_lzma", "_bz2"):
            raise VerificationError(f"{what}: not a readable {kind} archive ({type(exc).__name__}: {one_line(exc)})") from None
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
class FetchOptions:
    allow_unpinned: bool = False
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0
    max_seconds: float | None = 3600.0
    log: Log = stderr_log


def _verify_archive(var: Variant, remote: Remote, path: Path, what: str, opts: FetchOptions,
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


def _verify_file(fs: FileSpec, path: Path, what: str, opts: FetchOptions) -> RawFile:
    dg = file_digests(path)
    how = check_pin(fs.pin, dg, what=what, allow_unpinned=opts.allow_unpinned, log=opts.log)
    return RawFile(fs.role, path, what, dg, how)


def gather_download(var: Variant, cache: Path, work: Path, opts: FetchOptions) -> dict[str, RawFile]:
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
                opts.log(f"{var.dataset}: cached {dest} failed verification ({one_line(exc)}); downloading again")
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
            raise DataError(f"{var.dataset}: {one_line(exc)}") from None
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


def gather_local(var: Variant, source: Path, work: Path, opts: FetchOptions) -> tuple[dict[str, RawFile], list[str]]:
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
            raise DataError(f"{ds}: {one_line(exc)}") from None
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
                raise DataError(f"{ds}: {one_line(exc)}") from None
            pending = [f for f in pending if f.role not in raw]
    paths = _list_files(source)
    missing = []
    for fs in pending:
        try:
            rel = _match(paths, fs.names, f"{source}")
        except VerificationError as exc:
            raise DataError(f"{ds}: {one_line(exc)}") from None
        if rel is None:
            if not fs.optional:
                missing.append(fs.role)
            continue
        path = source / rel
        try:
            raw[fs.role] = _verify_file(fs, path, str(path), opts)
        except VerificationError as exc:
            raise DataError(f"{ds}: {one_line(exc)}") from None
    return raw, missing


