"""The GPU slot pool (textvae.workflow.gpu_slots): device detection, and that concurrent jobs never share a slot, run
directly and under Snakemake's --resources gpu=2, all on the CPU with pretend devices."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from textvae.workflow import gpu_slots
from textvae.core.errors import ConfigError

RECORD = textwrap.dedent("""\
    import json, os, sys, time
    start = time.time()
    time.sleep(float(sys.argv[2]))
    rec = {"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "slot": os.environ.get("TEXTVAE_GPU_SLOT"),
           "start": start, "end": time.time(), "pid": os.getpid()}
    with open(sys.argv[1], "w") as fh:
        json.dump(rec, fh)
    sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
""")


@pytest.fixture
def recorder(tmp_path) -> Path:
    path = tmp_path / "record.py"
    path.write_text(RECORD)
    return path


def gpu_run_argv(*opts: str) -> list[str]:
    return [sys.executable, "-m", "textvae.workflow.gpu_slots", "--quiet", *opts, "--"]


def env_with(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", gpu_slots.ENV_FAKE,
                                                            gpu_slots.ENV_SLOTS, "SLURM_JOB_ID")}
    env[gpu_slots.ENV_LOCK_DIR] = str(tmp_path / "locks")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def overlapping(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def check_no_shared_slot(records: list[dict], slots_per_device: int) -> None:
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            if overlapping(a, b):
                assert a["slot"] != b["slot"], f"two running jobs on slot {a['slot']}: {a} {b}"
    # at any moment, at most slots_per_device jobs per device
    for a in records:
        same = [b for b in records if b["device"] == a["device"] and b["start"] <= a["start"] < b["end"]]
        assert len(same) <= slots_per_device


# ----------------------------------------------------------------------------------------------------------
# detection and ordering
# ----------------------------------------------------------------------------------------------------------

def test_detect_devices_precedence(tmp_path, monkeypatch):
    assert gpu_slots.detect_devices({gpu_slots.ENV_FAKE: "3"}) == ["0", "1", "2"]
    assert gpu_slots.detect_devices({gpu_slots.ENV_FAKE: "2", "CUDA_VISIBLE_DEVICES": "7"}) == ["0", "1"]
    assert gpu_slots.detect_devices({"CUDA_VISIBLE_DEVICES": "2, 5"}) == ["2", "5"]
    assert gpu_slots.detect_devices({"CUDA_VISIBLE_DEVICES": "GPU-1a2b,GPU-3c4d"}) == ["GPU-1a2b", "GPU-3c4d"]
    assert gpu_slots.detect_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu_slots.detect_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert gpu_slots.detect_devices({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    assert gpu_slots.detect_devices({gpu_slots.ENV_FAKE: "0"}) == []
    with pytest.raises(ConfigError, match=gpu_slots.ENV_FAKE):
        gpu_slots.detect_devices({gpu_slots.ENV_FAKE: "two"})
    # nvidia-smi when nothing is pre-set
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '0\\n1\\n'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert gpu_slots.detect_devices({}) == ["0", "1"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert gpu_slots.detect_devices({}) == []


def test_slot_order_spreads_over_devices_first():
    assert gpu_slots.slot_order(["0", "1"], 2) == [("0", 0), ("1", 0), ("0", 1), ("1", 1)]


def test_lock_dir_is_per_slurm_job(tmp_path):
    assert gpu_slots.default_lock_dir({gpu_slots.ENV_LOCK_DIR: str(tmp_path)}) == tmp_path
    assert gpu_slots.default_lock_dir({"SLURM_JOB_ID": "42"}).name.endswith("-slurm42")


def test_try_acquire_holds_until_released(tmp_path):
    a = gpu_slots.try_acquire(["0"], 1, tmp_path)
    assert a is not None and a.device == "0"
    assert gpu_slots.try_acquire(["0"], 1, tmp_path) is None
    b = gpu_slots.try_acquire(["0"], 2, tmp_path)
    assert b is not None and b.index == 1
    a.release()
    c = gpu_slots.try_acquire(["0"], 1, tmp_path)
    assert c is not None
    with pytest.raises(ConfigError, match="no free GPU slot"):
        gpu_slots.acquire(["0"], 1, tmp_path, timeout=0.3, poll=0.05)
    b.release()
    c.release()


# ----------------------------------------------------------------------------------------------------------
# the command: environment, exit status, CPU fallback
# ----------------------------------------------------------------------------------------------------------

def test_gpu_run_sets_device_and_keeps_exit_status(tmp_path, recorder):
    out = tmp_path / "r.json"
    env = env_with(tmp_path, TEXTVAE_FAKE_GPUS=2)
    proc = subprocess.run(gpu_run_argv() + [sys.executable, str(recorder), str(out), "0", "3"], env=env)
    assert proc.returncode == 3
    rec = json.loads(out.read_text())
    assert rec["device"] == "0" and rec["slot"] == "0#0"
    # the lock went away with the process
    assert gpu_slots.try_acquire(["0"], 1, tmp_path / "locks") is not None


def test_gpu_run_honours_preset_visible_devices(tmp_path, recorder):
    env = env_with(tmp_path, CUDA_VISIBLE_DEVICES="3,5")
    procs, outs = [], []
    for i in range(2):
        outs.append(tmp_path / f"r{i}.json")
        procs.append(subprocess.Popen(gpu_run_argv() + [sys.executable, str(recorder), str(outs[-1]), "0.6"], env=env))
    assert all(p.wait() == 0 for p in procs)
    assert sorted(json.loads(o.read_text())["device"] for o in outs) == ["3", "5"]


def test_gpu_run_without_gpu_runs_on_cpu(tmp_path, recorder):
    out = tmp_path / "r.json"
    env = env_with(tmp_path, TEXTVAE_FAKE_GPUS=0)
    subprocess.run(gpu_run_argv() + [sys.executable, str(recorder), str(out), "0"], env=env, check=True)
    rec = json.loads(out.read_text())
    assert rec["device"] is None and rec["slot"] is None
    assert not (tmp_path / "locks").exists()


def test_gpu_run_errors_are_one_line(tmp_path):
    env = env_with(tmp_path, TEXTVAE_FAKE_GPUS=1)
    proc = subprocess.run(gpu_run_argv() + ["/nonexistent/command"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("textvae gpu-run: error: cannot run")
    proc = subprocess.run(gpu_run_argv(), env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "give the command" in proc.stderr


# ----------------------------------------------------------------------------------------------------------
# concurrency: many jobs, never two on one slot
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("slots_per_device", [1, 2])
def test_concurrent_jobs_never_share_a_slot(tmp_path, recorder, slots_per_device):
    env = env_with(tmp_path, TEXTVAE_FAKE_GPUS=2, TEXTVAE_GPU_SLOTS_PER_DEVICE=slots_per_device)
    outs = [tmp_path / f"r{i}.json" for i in range(8)]
    procs = [subprocess.Popen(gpu_run_argv() + [sys.executable, str(recorder), str(o), "0.5"], env=env)
             for o in outs]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    records = [json.loads(o.read_text()) for o in outs]
    assert {r["device"] for r in records} == {"0", "1"}
    check_no_shared_slot(records, slots_per_device)
    # the pool was actually used concurrently (not one job at a time)
    peak = max(sum(1 for b in records if b["start"] <= a["start"] < b["end"]) for a in records)
    assert 2 <= peak <= 2 * slots_per_device


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed (pip install -e '.[pipeline]')")
def test_snakemake_gpu_resource_jobs_get_distinct_slots(tmp_path, recorder):
    """The same under Snakemake: --cores 4 --resources gpu=2, eight jobs declaring gpu=1."""
    workdir = tmp_path / "wf"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(textwrap.dedent(f"""\
        rule all:
            input: expand("out/{{i}}.json", i=range(8))

        rule job:
            output: "out/{{i}}.json"
            resources: gpu=1
            shell: "{sys.executable} -m textvae.workflow.gpu_slots --quiet -- {sys.executable} {recorder} {{output}} 0.8"
        """))
    env = env_with(tmp_path, TEXTVAE_FAKE_GPUS=2)
    proc = subprocess.run(["snakemake", "--cores", "4", "--resources", "gpu=2", "--workflow-profile", "none",
                           "--quiet", "all"], cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads((workdir / "out" / f"{i}.json").read_text()) for i in range(8)]
    check_no_shared_slot(records, 1)
    assert {r["device"] for r in records} == {"0", "1"}
