"""Checkpoints: atomic writes, ``weights_only=True`` loads, one way to get a model back (docs/architecture.md)."""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import IO, Any, Iterator

import torch

from textvae.data import Vocab
from textvae.errors import CheckpointError
from textvae.model import ModelConfig, build_model

FORMAT = "textvae-checkpoint-v1"


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write through a temporary file in the same directory, fsync, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save(obj: Any, path: str | Path) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def atomic_write_text(text: str, path: str | Path) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a textvae checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__})")
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Vocab, dict]:
    """``(model in eval mode on device, vocab, checkpoint dict)``."""
    ckpt = load_checkpoint(path, map_location="cpu")
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(ckpt["kind"], cfg)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, Vocab(ckpt["vocab"]), ckpt


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_payload(model: torch.nn.Module, vocab: Vocab, run: dict | None = None, **extra: Any) -> dict:
    """The checkpoint dict for a model (``best.pt``); ``last.pt`` adds optimiser, trainer and RNG state."""
    return {
        "format": FORMAT,
        "kind": model.kind,
        "model_config": model.cfg.to_dict(),
        "vocab": list(vocab.itos),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "run": dict(run or {}),
        **extra,
    }
