"""`textvae provenance`: the result files behind an experiment's reports are copied beside them (never a
checkpoint), and provenance.md's wall times and epochs are those of the runs' own logs."""
from __future__ import annotations

import json

import pytest

from conftest import write_json
from textvae.reports import provenance
from textvae.core.errors import DataError
from textvae.plan.pipeline import Plan


def fabricate(root, plan, exp):
    runs, files = provenance.experiment_runs(plan, exp)
    for rel in files:
        if not rel.endswith("metrics.jsonl"):
            write_json(root, rel, {"seconds": 90.0, "sentences": 500, "iw_samples": 100, "device": "cpu",
                                   "checkpoint": {"sha256": "ab" * 32}})
    for run in runs:
        d = root / run.dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps({"max_epochs": 3, "train_examples": 42068, "precision": "bf16"}))
        (d / "train.log").write_text("gpu-run: no GPU found\n2026-12-01 04:40:47 method x\n"
                                     "2026-12-01 04:45:01 epoch 0\n2026-12-01 04:52:47 done after 3 epochs\n")
        (d / "best.pt").write_bytes(b"not copied")
        (d / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "sentences_per_s": 100.0 + e}) + "\n"
                                                 for e in range(3)))
    return runs, files


def test_copies_result_files_and_times_runs(tmp_path, params, monkeypatch):
    plan = Plan(params)
    exp = plan.experiment("ptb_cpu")
    runs, files = fabricate(tmp_path, plan, exp)   # tables 1-3: 16 runs (the curves figure reads the same)
    assert len(runs) == 16 and any(f.endswith("metrics.jsonl") for f in files)
    monkeypatch.chdir(tmp_path)
    out = provenance.write(plan, "ptb_cpu", tmp_path, command="snakemake --cores 2 ptb_cpu")
    text = out.read_text()
    copied = {p.relative_to(tmp_path / "reports/ptb_cpu/runs").as_posix()
              for p in (tmp_path / "reports/ptb_cpu/runs").rglob("*") if p.is_file()}
    assert {f[len("results/"):] for f in files} <= copied
    assert {"ptb_cpu/ours/lam8/seed783435/train.log", "ptb_cpu/ours/lam8/seed783435/metrics.jsonl"} <= copied and not any(c.endswith(".pt") for c in copied)
    # 04:40:47 → 04:52:47 is 12.0 minutes; 3 epochs of 3 at 101 sentences/s on average
    row = next(line for line in text.splitlines() if line.startswith("| `ours/lam8`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:6] == ["3 (3)", "42,068", "bf16", "12.0", "101"] and cells[8] == "1.5"
    assert "`snakemake --cores 2 ptb_cpu`" in text and "training 3.20 h" in text   # 16 runs × 12 min


def test_refuses_with_missing_results(tmp_path, params, monkeypatch):
    plan = Plan(params)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="missing, e.g. results/ptb_cpu/"):
        provenance.write(plan, "ptb_cpu", tmp_path)
    assert not (tmp_path / "reports").exists()


def test_commit_line_ignores_rewritten_reports(tmp_path, monkeypatch):
    """Rewriting reports/ (what `textvae report` does) is not a code change; a changed tracked file elsewhere is."""
    import subprocess

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "table1.md").write_text("old\n")
    (tmp_path / "train.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    monkeypatch.chdir(tmp_path)
    assert not provenance._code_changed()
    (tmp_path / "reports" / "table1.md").write_text("new\n")
    assert not provenance._code_changed()
    (tmp_path / "train.py").write_text("x = 2\n")
    assert provenance._code_changed()
