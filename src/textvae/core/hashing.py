"""The hashes that tie a result to its run: a file's sha256 (checkpoints, corpora) and the hash of a run's
settings (``config.json``, the ``run`` entry of its checkpoint), both recorded in every result file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def settings_sha256(run: dict) -> str:
    """sha256 of a run's settings as canonical JSON (sorted keys): the ``run`` entry of its checkpoint equals
    the ``config.json`` the trainer writes beside it, so a result records this and a report compares."""
    return hashlib.sha256(json.dumps(run, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
