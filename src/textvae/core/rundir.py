"""Output folders that are safe to (re)use: one writer at a time (a lock), no temporary files left by a
killed write, no foreign files overwritten or deleted, outputs checked writable before hours of work.

Every command that owns a folder (``textvae train --out RUN_DIR``, ``textvae data prepare --out DIR``) takes
its lock first; the lock is an ``fcntl.flock`` on a small file, released by the kernel however the process
ends (no stale locks after a SIGKILL). Temporary files follow the one naming scheme of
the atomic writers below (``.NAME.tmpPID``); holding the lock, a command removes those of the names it writes.

The atomic writers (``atomic_path``, ``atomic_open``, ``atomic_write_text``; ``textvae.modeling.checkpoint.atomic_save``
for torch objects) are the one way textvae writes a file: a temporary name in the same folder, renamed onto the
target only when complete, so no reader ever sees a half-written file.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from textvae.core.errors import ConfigError, DataError


def tmp_name(path: str | Path, tag: str | int | None = None) -> Path:
    """The temporary name of an atomic write of ``path`` (``DIR/.NAME.tmpTAG``; TAG defaults to the pid)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid() if tag is None else tag}")


@contextlib.contextmanager
def atomic_path(path: str | Path, tag: str | int | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed onto ``path`` when the block ends
    without an exception, removed otherwise (for writers that take a file name: ``savefig``, a download)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path, tag)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write through a temporary file in the same directory, fsync, then rename: never a half-written file."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(text: str, path: str | Path) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def read_text_or_empty(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def restore_head(path: str | Path, head: str) -> None:
    """Make the log file ``path`` start with ``head`` (the history of earlier attempts, kept elsewhere) when
    it does not (it was deleted, or started afresh, by a workflow manager): ``head`` + what it holds now.
    Written in place, not renamed, so that a log handler appending to it (O_APPEND) goes on doing so."""
    path = Path(path)
    current = read_text_or_empty(path)
    if not head or current.startswith(head):
        return
    with open(path, "r+" if path.exists() else "w", encoding="utf-8") as fh:
        fh.write(head + current)
        fh.truncate()


def read_json_lines(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file (``metrics.jsonl``); a line that is not one JSON object (a half line
    of a damaged file, a list) is a DataError naming the file and the line."""
    path = Path(path)
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: not a JSON line ({exc.msg}: column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{n}: not a JSON object (a {type(record).__name__})")
        records.append(record)
    return records


def clean_stale_tmp(directory: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files of killed atomic writes of ``names`` in ``directory`` (call it holding the
    folder's lock, so that no live writer of these names exists). Returns what was removed."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for name in names:
        for tmp in directory.glob(f".{name}.tmp*"):
            if tmp.is_file() or tmp.is_symlink():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def try_lock(lock_path: Path, what: str) -> tuple[int | None, str]:
    """Open ``lock_path`` (created if need be) and take an exclusive lock without waiting: ``(fd, "")``, or
    ``(None, holder)`` with the pid written by the process that holds it. ConfigError, naming ``what``, when
    the file cannot be created. The one lock primitive of run folders and GPU slots."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot create the lock file {lock_path} ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        return None, holder
    return fd, ""


@contextlib.contextmanager
def hold_lock(lock_path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` for the block (the file is removed at the end); if another
    process holds it, raise ConfigError (``what`` names the folder and the option, e.g. ``--out results/x``)."""
    lock_path = Path(lock_path)
    while True:
        fd, holder = try_lock(lock_path, what)
        if fd is None:
            raise ConfigError(f"{what}: another textvae process (pid {holder}) is writing there; wait for it to "
                              "end or choose another folder") from None
        try:   # the holder before us may have removed the file between our open and our lock: start again
            current = os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock_path.unlink(missing_ok=True)   # while still holding the lock
        os.close(fd)


def check_new_or_own(out: str | Path, option: str, is_own: Callable[[str], bool]) -> None:
    """``out`` must be a new folder, an empty one, or one whose entries all pass ``is_own`` (files this
    command writes); a plain file, the current folder (or one above it), or foreign files are refused."""
    out = Path(out)
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ConfigError(f"{option} {out}: is the current folder or one above it; give a folder of its own")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"{option} {out}: exists and is not a folder; give a new or empty folder")
    if not out.exists():
        return
    foreign = sorted(p.name for p in out.iterdir() if not is_own(p.name))
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise ConfigError(f"{option} {out}: holds files textvae did not write ({foreign[0]}{more}); nothing was "
                          "changed: give a new or empty folder")


def check_writable(path: str | Path, option: str) -> None:
    """Fail now, in one line, if the file ``path`` cannot be written (before hours of work are lost)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; give a file name")
    probe = tmp_name(path, f"{os.getpid()}probe")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write there ({exc.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
