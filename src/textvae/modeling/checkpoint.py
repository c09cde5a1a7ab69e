"""Checkpoints: atomic saves, ``weights_only=True`` loads, one way to get a model back (docs/architecture.md)."""
from __future__ import annotations

import functools
import hashlib
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textvae.corpora.data import Vocab
from textvae.core.errors import CheckpointError, ConfigError
from textvae.modeling.model import ModelConfig, build_model
from textvae.core.hashing import file_sha256, settings_sha256  # noqa: F401 (imported from here)
from textvae.core.rundir import atomic_open

FORMAT = "textvae-checkpoint-v1"
REQUIRED_KEYS = ("kind", "model_config", "vocab", "model")


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through ``rundir.atomic_open`` (never a half-written checkpoint). torch's zip writer turns
    a failed write (disk full, quota) into a RuntimeError about stream positions; the OSError behind it is
    raised instead, naming ``path``, so that the CLI reports it in one line."""
    try:
        with atomic_open(path, "wb") as fh:
            torch.save(obj, fh)
    except RuntimeError as exc:
        cause = _os_error(exc)
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from None


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError in ``exc``'s chain of causes and contexts, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise CheckpointError(f"{path}: unreadable checkpoint ({_load_failure(exc)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a textvae checkpoint (format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint (no {missing[0]!r} entry)")
    if not isinstance(ckpt["model"], dict) or not isinstance(ckpt["model_config"], dict):
        raise CheckpointError(f"{path}: incomplete checkpoint (its 'model' or 'model_config' entry is empty)")
    _check_vocab(path, ckpt)
    return ckpt


def vocab_sha256(itos) -> str:
    """The hash a checkpoint records of its vocabulary (the entries in order, one per line)."""
    return hashlib.sha256("\n".join(itos).encode("utf-8")).hexdigest()


def _check_vocab(path: Path, ckpt: dict) -> None:
    """The vocabulary must be the one the model was trained with: as many entries as the model's embedding
    rows, and (checkpoints since issue 26 record it) the same entries in the same order."""
    vocab, size = ckpt["vocab"], ckpt["model_config"].get("vocab_size")
    if not isinstance(vocab, (list, tuple)) or not all(isinstance(w, str) for w in vocab):
        raise CheckpointError(f"{path}: damaged checkpoint (its 'vocab' entry is not a list of words)")
    if size is not None and len(vocab) != size:
        raise CheckpointError(f"{path}: its vocabulary has {len(vocab)} entries, the model {size}; the vocabulary "
                              "was altered (or belongs to another model)")
    recorded = ckpt.get("vocab_sha256")
    if recorded is not None and recorded != vocab_sha256(vocab):
        raise CheckpointError(f"{path}: its vocabulary was altered after training (sha256 "
                              f"{vocab_sha256(vocab)[:12]}… is not the recorded {str(recorded)[:12]}…)")


def _load_failure(exc: Exception) -> str:
    """The useful part of a load error as one line. torch's weights-only refusal opens with advice to retry
    with ``weights_only=False`` (which would run the file's code); keep only what was refused."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it asks to load {found.group(1)}, which a checkpoint never holds; refused, nothing was executed"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln.lower()
             and "weights only" not in ln.lower()]
    detail = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return f"damaged, or not written by torch.save: {detail}"


def resolve_device(name: str | None) -> torch.device:
    """``--device``: auto (or None: CUDA when there is one), cpu, cuda or cuda:N; anything else is one line."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"--device {name}: expected auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def _bf16_lstm_probe(device: torch.device) -> None:
    """A two-step LSTM and linear layer forward and backward under bfloat16 autocast (raises where unsupported)."""
    lstm = torch.nn.LSTM(4, 4, batch_first=True).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out, _ = lstm(torch.zeros(1, 2, 4, device=device))
    out.float().sum().backward()


@functools.lru_cache(maxsize=None)
def check_bf16(device: torch.device) -> None:
    """``--precision bf16`` needs bfloat16 LSTM kernels on ``device`` (on CPUs, oneDNN has them only with
    AVX-512 BF16 or AMX); where there are none, one line saying so instead of a kernel traceback mid-run."""
    try:
        _bf16_lstm_probe(device)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--precision bf16: this machine's {device.type} has no bfloat16 LSTM kernels "
                          f"({reason}); use --precision fp32 (params.yaml: training.precision)") from None


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether ``--precision bf16`` can run on ``device`` (see :func:`check_bf16`)."""
    try:
        check_bf16(torch.device(device))
    except ConfigError:
        return False
    return True


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Vocab, dict]:
    """``(model in eval mode on device, vocab, checkpoint dict)``."""
    ckpt = load_checkpoint(path, map_location="cpu")
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    model = build_model(ckpt["kind"], cfg)
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, Vocab(ckpt["vocab"]), ckpt


def model_payload(model: torch.nn.Module, vocab: Vocab, run: dict | None = None, **extra: Any) -> dict:
    """The checkpoint dict for a model (``best.pt``); ``last.pt`` adds optimiser, trainer and RNG state."""
    return {
        "format": FORMAT,
        "kind": model.kind,
        "model_config": model.cfg.to_dict(),
        "vocab": list(vocab.itos),
        "vocab_sha256": vocab_sha256(vocab.itos),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "run": dict(run or {}),
        **extra,
    }


def rng_state() -> dict:
    """The random generators' states (python, numpy, torch, CUDA) a resume state carries."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    # numpy's key array travels as a tensor: checkpoints must load with weights_only=True
    state = {"python": random.getstate(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                      int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
