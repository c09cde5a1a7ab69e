"""Shared test fixtures: where ../shared/data lives, small corpus slices, the textvae CLI as a subprocess."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import json

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("TEXTVAE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not (d / "ptb" / "ptb.train.txt").is_file():
        pytest.skip(f"shared corpora not found at {d} (set TEXTVAE_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def ptb_slice(shared_data, tmp_path_factory) -> Path:
    """The first 2,000 PTB training sentences and 200 validation/test sentences."""
    out = tmp_path_factory.mktemp("ptb_slice")
    for split, src, n in (("train", "ptb.train.txt", 2000), ("valid", "ptb.valid.txt", 200),
                          ("test", "ptb.test.txt", 200)):
        with open(shared_data / "ptb" / src) as fh:
            lines = [next(fh) for _ in range(n)]
        (out / f"{split}.txt").write_text("".join(lines))
    return out


def run_cli(*args: str, check: bool = True, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m textvae ARGS`` and return the completed process (stdout/stderr as text)."""
    proc = subprocess.run([sys.executable, "-m", "textvae", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"textvae {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def load_script(path: Path):
    """A script outside the package (docs/diagnostics/, workflow/scripts/) imported as a module from its path."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def params() -> dict:
    """params.yaml of the repository, as data (tests edit their own copy)."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


def write_json(root: Path, rel: str, data: dict) -> None:
    """A fabricated result file ``root/rel``."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread (torch and the BLAS under scikit-learn) is fastest and keeps the tests
    quick on a busy machine."""
    import torch
    from threadpoolctl import threadpool_limits  # scikit-learn dependency

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)
