"""The set-up every probe shares (SPEC §6-7): loading the VAE of a checkpoint, posterior means and samples,
decoding, and the JSON / markdown outputs. Gaussian noise is drawn on the CPU from a seeded ``torch.Generator``
and then moved to the device, so a run gives the same latent codes on CPU and GPU.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from textvae.modeling.checkpoint import file_sha256, load_model, resolve_device, settings_sha256
from textvae.corpora.data import BOS_ID, EOS_ID, Vocab, make_batches
from textvae.core.errors import CheckpointError
from textvae.core.rundir import atomic_write_text


# ==========================================================================================================
# Small utilities
# ==========================================================================================================

def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN/inf become null (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(obj: dict, path: str | Path) -> None:
    """Atomic JSON write (temporary file in the same directory, then rename)."""
    atomic_write_text(json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n", path)


def markdown_path(json_path: str | Path) -> Path:
    """``OUT.md`` next to ``OUT.json`` (same stem)."""
    return Path(json_path).with_suffix(".md")


def progress_bar(iterable=None, *, quiet: bool = False, **kw):
    return tqdm(iterable, disable=quiet, file=sys.stderr, dynamic_ncols=True, **kw)


def cpu_generator(seed: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for ``(seed, stream)``; different probes / settings use different streams."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


# ==========================================================================================================
# Model access: means, posterior samples, decoding
# ==========================================================================================================

def load_vae(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, Vocab, dict]:
    model, vocab, ckpt = load_model(path, device)
    if getattr(model, "kind", None) != "vae":
        raise CheckpointError(f"{path}: probing needs a VAE checkpoint (kind 'vae'), got kind {ckpt.get('kind')!r}")
    model.eval()
    return model, vocab, ckpt


def checkpoint_info(path: str | Path, ckpt: dict) -> dict:
    run = ckpt.get("run") or {}
    return {"path": str(path), "sha256": file_sha256(path), "method": run.get("method"), "lam": run.get("lam"),
            "dataset": run.get("dataset"), "train_seed": run.get("seed"), "epoch": ckpt.get("epoch"),
            "best_val": ckpt.get("best_val"), "settings_sha256": settings_sha256(run)}


@torch.no_grad()
def encode(model, examples: Sequence[Sequence[int]], device: torch.device | str = "cpu", batch_size: int = 256,
           quiet: bool = True, desc: str = "encode") -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` ``[N, nz]`` on the CPU, in the order of ``examples`` (framed ids).

    Exact-length batches (SPEC §1.5): no padding, so every row equals its one-at-a-time value."""
    model.eval()
    n, nz = len(examples), model.cfg.nz
    mu = torch.empty((n, nz), dtype=torch.float32)
    logvar = torch.empty((n, nz), dtype=torch.float32)
    if n == 0:
        return mu, logvar
    batches = make_batches(examples, batch_size)
    for x, idx in progress_bar(zip(batches.tensors, batches.index), total=len(batches), quiet=quiet, desc=desc,
                            leave=False):
        m, lv = model.encoder(x.to(device))
        idx_t = torch.tensor(idx, dtype=torch.long)
        mu[idx_t] = m.float().cpu()
        logvar[idx_t] = lv.float().cpu()
    return mu, logvar


def sample_posterior(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One ``z ~ q(z|x)`` per row (``[N, nz]``), noise drawn from a CPU generator in row order."""
    eps = torch.randn(mu.shape, generator=generator, dtype=torch.float32)
    return mu.cpu() + (0.5 * logvar.cpu()).exp() * eps


@torch.no_grad()
def decode(model, z: torch.Tensor, max_len: int, device: torch.device | str = "cpu", greedy: bool = True,
           seed: int = 0, batch_size: int = 256, quiet: bool = True, desc: str = "decode") -> list[list[int]]:
    """Decode every row of ``z [N, nz]`` (chunks of ``batch_size``) → token ids without ``</s>``."""
    model.eval()
    device = torch.device(device)
    gen = None
    if not greedy:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
    out: list[list[int]] = []
    starts = range(0, z.size(0), batch_size)
    for s in progress_bar(starts, quiet=quiet, desc=desc, leave=False):
        zz = z[s:s + batch_size].to(device=device, dtype=torch.float32)
        out.extend(model.decoder.generate(zz, max_len, BOS_ID, EOS_ID, greedy=greedy, generator=gen))
    return out


def ids_to_tokens(vocab: Vocab, ids: Sequence[int]) -> list[str]:
    """Generated ids → tokens (``generate`` already stops before ``</s>``; nothing else is stripped)."""
    return [vocab.itos[int(i)] for i in ids]


# ==========================================================================================================
# A probe's start and finish
# ==========================================================================================================

def start(args) -> tuple[float, torch.device, torch.nn.Module, Vocab, dict]:
    """What every probe starts with: the clock, the device, the VAE of ``--ckpt`` with its vocabulary."""
    t0 = time.time()
    device = resolve_device(args.device)
    model, vocab, ckpt = load_vae(args.ckpt, device)
    return t0, device, model, vocab, ckpt


def base_record(args, probe: str, ckpt: dict, device: torch.device) -> dict:
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "command", "probe_command") and
                not callable(v)}
    return {"probe": probe, "checkpoint": checkpoint_info(args.ckpt, ckpt), "split": args.split,
            "seed": args.seed, "device": str(device), "settings": settings}


def finish(args, record: dict, t0: float, summary: str, markdown: str | None = None) -> int:
    record["seconds"] = round(time.time() - t0, 3)
    if markdown is not None:
        md = markdown_path(args.out)
        atomic_write_text(markdown, md)
        record["markdown"] = str(md)
    write_json(record, args.out)
    print(f"{summary} -> {args.out}")
    return 0
