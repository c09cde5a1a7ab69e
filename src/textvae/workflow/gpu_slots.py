"""GPU slots for concurrent jobs: ``textvae gpu-run [--slots-per-device N] -- COMMAND ...``.

Snakemake counts a ``gpu`` resource but never says *which* device a job gets (snakemake issue 281), so two
jobs started together would both land on GPU 0. ``gpu-run`` gives each job its own slot from a pool of
lock files, sets ``CUDA_VISIBLE_DEVICES`` to that slot's device and replaces itself with the command (the
command's exit status and signals are its own; the lock is held by the command's process and released by the
kernel when it ends, however it ends).

- Devices: ``TEXTVAE_FAKE_GPUS=N`` (tests: N pretend devices ``0..N-1``), else a pre-set
  ``CUDA_VISIBLE_DEVICES`` list (honoured as given, indices or UUIDs), else ``nvidia-smi``'s GPUs. With no
  device the command runs on the CPU at once, without a slot and without touching the environment.
- Slots: ``slots_per_device`` per device (small models leave a large GPU idle; a Snakemake profile sets it,
  ``--slots-per-device`` or ``TEXTVAE_GPU_SLOTS_PER_DEVICE``). Slots are handed out device-first
  (dev0#0, dev1#0, dev0#1, ...) so jobs spread over the devices before they share one.
- Lock files ``slot-DEVICE-K.lock`` under ``TEXTVAE_GPU_LOCK_DIR`` (default ``$TMPDIR/textvae-gpu-slots-UID``,
  one pool per machine for every workflow of the user; inside a Slurm job the pool is the job's own, since
  Slurm numbers the allocated GPUs from 0 in every job). ``fcntl.flock`` locks: no stale locks after a crash.
- All slots busy: wait (polling) until one frees up, or ``--timeout`` seconds.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from textvae.core.errors import ConfigError
from textvae.core.rundir import try_lock

ENV_FAKE = "TEXTVAE_FAKE_GPUS"
ENV_SLOTS = "TEXTVAE_GPU_SLOTS_PER_DEVICE"
ENV_LOCK_DIR = "TEXTVAE_GPU_LOCK_DIR"


def detect_devices(env: dict | None = None) -> list[str]:
    """The devices jobs may use, as ``CUDA_VISIBLE_DEVICES`` entries; [] = no GPU (run on the CPU)."""
    env = os.environ if env is None else env
    fake = env.get(ENV_FAKE)
    if fake not in (None, ""):
        try:
            n = int(fake)
        except ValueError:
            raise ConfigError(f"{ENV_FAKE}={fake!r}: expected a number of pretend GPUs") from None
        return [str(i) for i in range(max(n, 0))]
    preset = env.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:
        entries = [e.strip() for e in preset.split(",") if e.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU
        out = []
        for e in entries:
            if e.startswith("-"):
                break
            out.append(e)
        return out
    return _nvidia_smi_devices()


def _nvidia_smi_devices() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        res = subprocess.run([exe, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if res.returncode != 0:
        return []
    return [line.strip() for line in res.stdout.splitlines() if line.strip().isdigit()]


def default_lock_dir(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_LOCK_DIR):
        return Path(env[ENV_LOCK_DIR])
    name = f"textvae-gpu-slots-{os.getuid()}"
    if env.get("SLURM_JOB_ID"):
        name += f"-slurm{env['SLURM_JOB_ID']}"
    return Path(tempfile.gettempdir()) / name


def slot_order(devices: list[str], slots_per_device: int) -> list[tuple[str, int]]:
    """Device-first order: (d0, 0), (d1, 0), ..., (d0, 1), ..."""
    return [(dev, k) for k in range(slots_per_device) for dev in devices]


def _lock_name(device: str, k: int) -> str:
    return f"slot-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}-{k}.lock"


class Slot:
    """A held slot; the lock lives as long as ``fd`` is open in this process or a process it exec'd."""

    def __init__(self, device: str, index: int, fd: int, path: Path):
        self.device, self.index, self.fd, self.path = device, index, fd, path

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


def try_acquire(devices: list[str], slots_per_device: int, lock_dir: Path) -> Slot | None:
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--lock-dir {lock_dir}: cannot create the slot folder ({exc.strerror})") from None
    for dev, k in slot_order(devices, slots_per_device):
        path = lock_dir / _lock_name(dev, k)
        fd, _ = try_lock(path, f"--lock-dir {lock_dir}")
        if fd is None:
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return Slot(dev, k, fd, path)
    return None


def acquire(devices: list[str], slots_per_device: int, lock_dir: Path, timeout: float | None = None,
            poll: float = 0.5, log=None) -> Slot:
    """Block until a slot is free (or raise ConfigError after ``timeout`` seconds)."""
    start = time.monotonic()
    told = False
    while True:
        slot = try_acquire(devices, slots_per_device, lock_dir)
        if slot is not None:
            return slot
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            raise ConfigError(f"no free GPU slot in {lock_dir} after {timeout:g} s "
                              f"({len(devices)} devices x {slots_per_device} slots)")
        if log and not told:
            log(f"gpu-run: all {len(devices) * slots_per_device} slots busy, waiting")
            told = True
        time.sleep(poll * (0.5 + random.random()))


def run(command: list[str], slots_per_device: int | None = None, lock_dir: str | Path | None = None,
        timeout: float | None = None, quiet: bool = False) -> int:
    """Acquire a slot and exec ``command`` with CUDA_VISIBLE_DEVICES set (does not return on success)."""
    if not command:
        raise ConfigError("give the command after --")
    log = None if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if slots_per_device is None:
        raw = os.environ.get(ENV_SLOTS) or "1"
        try:
            slots_per_device = int(raw)
        except ValueError:
            raise ConfigError(f"{ENV_SLOTS}={raw!r}: expected a positive integer") from None
    if slots_per_device < 1:
        raise ConfigError(f"--slots-per-device: expected a positive integer, got {slots_per_device}")
    devices = detect_devices()
    env = dict(os.environ)
    if devices:
        lock_dir = Path(lock_dir) if lock_dir else default_lock_dir()
        slot = acquire(devices, slots_per_device, lock_dir, timeout=timeout, log=log)
        os.set_inheritable(slot.fd, True)   # the lock stays with the command after exec
        env["CUDA_VISIBLE_DEVICES"] = slot.device
        env["TEXTVAE_GPU_SLOT"] = f"{slot.device}#{slot.index}"
        if log:
            log(f"gpu-run: device {slot.device} (slot {slot.index} of {slots_per_device}) for: "
                f"{' '.join(command)[:200]}")
    elif log:
        log("gpu-run: no GPU found, running on the CPU")
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        raise ConfigError(f"cannot run {command[0]!r}: {exc.strerror}") from None
    return 127  # not reached


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slots-per-device", type=int, default=None,
                   help=f"concurrent jobs per GPU (default ${ENV_SLOTS} or 1)")
    p.add_argument("--lock-dir", default=None, help=f"slot lock files (default ${ENV_LOCK_DIR} or a per-user "
                   "directory under $TMPDIR)")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds of waiting")
    p.add_argument("--quiet", action="store_true", help="do not say which device was taken")
    # dest is not "command": the textvae CLI keeps the subcommand's name there
    p.add_argument("job", metavar="command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")


def _cmd(args) -> int:
    command = list(args.job)
    if command and command[0] == "--":
        command = command[1:]
    return run(command, args.slots_per_device, args.lock_dir, args.timeout, args.quiet)


def register(subparsers) -> None:
    p = subparsers.add_parser("gpu-run", help="run a command on a free GPU slot (lock-file pool)",
                              description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.set_defaults(func=_cmd)


def main(argv: list[str] | None = None) -> int:
    """``python -m textvae.workflow.gpu_slots [options] -- COMMAND ...`` (no torch import: starts fast)."""
    parser = argparse.ArgumentParser(prog="textvae gpu-run", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _cmd(args)
    except ConfigError as exc:
        print(f"textvae gpu-run: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("textvae gpu-run: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
