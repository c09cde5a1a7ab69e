"""Issue 26: no report built on the wrong file, no checkpoint with an altered vocabulary, no probe on meaningless
labels. A result file that belongs to another run, is malformed or holds NaN is not used and is named in the
report's notes; a checkpoint whose vocabulary changed does not load."""
from __future__ import annotations

import json
import math

import pytest

from conftest import write_json
from textvae.core.errors import CheckpointError, DataError
from textvae.core.hashing import settings_sha256
from textvae.plan.pipeline import Plan, Row, Run
from textvae.reports import claims, reporting
from textvae.reports.formatting import Results, getter_of
from textvae.workflow.dvc_stages import write_curves


def fake_eval(run: Run, ppl: float = 96.0, **checkpoint) -> dict:
    """An eval_test.json of ``run`` as `textvae evaluate` writes it (the metrics the tables read)."""
    return {"nll": 100.0, "ppl": ppl, "rec": 90.0, "kl": 5.0, "neg_elbo": 95.0, "elbo_ppl": ppl + 5, "mi": 3.0,
            "au": 32, "iw_samples": 1000, "device": "cpu",
            "checkpoint": {"path": f"{run.dir}/best.pt", "sha256": "0" * 64, **checkpoint}}


def ours_row(text: str) -> list[str]:
    row = next(line for line in text.splitlines() if line.startswith("| Ours (λ = 4)"))
    return [c.strip() for c in row.strip("|").split("|")]


# ----------------------------------------------------------------------------------------------------------
# result files tied to their run
# ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["other-run", "list", "nan", "half-json", "other-best", "other-settings"])
def test_a_result_of_another_run_or_malformed_is_named_in_the_notes_not_used(tmp_path, params, case):
    params["seeds"] = [1, 2]
    plan = Plan(params)
    exp = plan.experiment("paper")
    good, bad = Run("ptb", "ours", 4.0, 1), Run("ptb", "ours", 4.0, 2)
    write_json(tmp_path, good.eval_json, fake_eval(good, 96.0))
    reason = {"other-run": "belongs to another run: computed on results/ptb/ours/lam6/seed2/best.pt",
              "list": "not a JSON object but a list", "nan": "ppl is nan",
              "half-json": "not valid JSON", "other-best": "computed on another best.pt",
              "other-settings": "computed with other settings than config.json records"}[case]
    path = tmp_path / bad.eval_json
    if case == "other-run":   # copied from the λ = 6 run
        write_json(tmp_path, bad.eval_json, fake_eval(Run("ptb", "ours", 6.0, 2), 50.0))
    elif case == "list":
        path.parent.mkdir(parents=True)
        path.write_text("[]\n")
    elif case == "nan":
        write_json(tmp_path, bad.eval_json, fake_eval(bad, math.nan))
    elif case == "half-json":
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(fake_eval(bad, 50.0))[:40])
    elif case == "other-best":   # the run was trained again after this evaluation
        write_json(tmp_path, bad.eval_json, fake_eval(bad, 50.0))
        (tmp_path / bad.dir / "best.pt").write_bytes(b"another training")
    else:
        write_json(tmp_path, bad.eval_json, fake_eval(bad, 50.0, settings_sha256=settings_sha256({"lr": 1.0})))
        write_json(tmp_path, f"{bad.dir}/config.json", {"lr": 0.5})
    out = tmp_path / "table3.md"
    unused = reporting.render(plan, exp, "table3", out, tmp_path)
    text = out.read_text()
    assert bad.eval_json in unused and good.eval_json not in unused
    assert ours_row(text)[1] == "96.00", "the other run's number went into the mean"
    assert "result file not used" in text and f"- `{bad.eval_json}`: {reason}" in text, text[:1500]


def test_the_committed_demo_results_are_this_runs(tmp_path, params):
    """Result files written before issue 26 (no settings hash) still read: their checkpoint path is checked."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    plan = Plan(params)
    exp = plan.experiment("ptb_cpu")
    (tmp_path / "results").symlink_to(repo / "reports" / "ptb_cpu" / "runs")
    unused = reporting.render(plan, exp, "table3", tmp_path / "t.md", tmp_path)
    assert unused == []


def _vae_collapse(tmp_path, params, body: str) -> tuple[list, Results]:
    """The claim 'the VAE collapses' (Table 1, PTB) on one seed whose eval_test.json holds ``body``."""
    from textvae.plan import tables

    params["seeds"] = [1]
    plan = Plan(params)
    exp = plan.experiment("paper")
    run = Run("ptb", "vae", None, 1)
    path = tmp_path / run.eval_json
    path.parent.mkdir(parents=True)
    path.write_text(body)
    claim = [c for c in tables.claims_for("paper") if c["id"] == "vae_collapse"]
    results = Results(tmp_path)
    return [v for v in claims.evaluate(plan, exp, results, claim) if v.section == "ptb"], results


def test_a_claim_on_an_unusable_file_says_why(tmp_path, params):
    (verdict,), _ = _vae_collapse(tmp_path, params, "[]")
    assert verdict.status == "not run"
    assert verdict.evidence == ["VAE: `results/ptb/vae/seed1/eval_test.json` unusable (not a JSON object but a "
                                "list)"]


def test_nan_in_a_claims_metric_is_a_missing_value(tmp_path, params):
    body = json.dumps({**fake_eval(Run("ptb", "vae", None, 1)), "kl": math.nan})
    (verdict,), results = _vae_collapse(tmp_path, params, body)
    assert verdict.status == "missing value", verdict
    assert verdict.evidence == ["VAE: `results/ptb/vae/seed1/eval_test.json` has kl = nan"]
    assert results.problems == {"results/ptb/vae/seed1/eval_test.json": "kl is nan"}


def test_a_half_line_in_metrics_jsonl_names_the_file_and_line(tmp_path):
    from textvae.core.rundir import read_json_lines

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 0, "val_loss": 3.0}\n{"epoch": 1, "val_lo\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not a JSON line \(Unterminated string"):
        read_json_lines(run / "metrics.jsonl")
    with pytest.raises(DataError, match=r"metrics.jsonl:2: not a JSON line"):
        write_curves(run)
    assert not (run / "curves.json").exists()
    results = Results(tmp_path)
    assert results.metrics("run/metrics.jsonl") is None
    assert results.problems["run/metrics.jsonl"].startswith("line 2: not a JSON line")


def test_getter_names_its_metric():
    assert getter_of("linear", "100").name == "linear.100"


# ----------------------------------------------------------------------------------------------------------
# checkpoints carry their vocabulary's hash and size
# ----------------------------------------------------------------------------------------------------------

def _tiny_checkpoint(path):
    import torch

    from textvae.corpora.data import Vocab
    from textvae.modeling.checkpoint import atomic_save, model_payload
    from textvae.modeling.model import VAE, ModelConfig

    vocab = Vocab.build([["the", "cat", "sat"], ["a", "dog", "ran"]])
    torch.manual_seed(0)
    model = VAE(ModelConfig(vocab_size=len(vocab), enc_emb=4, dec_emb=4, enc_hidden=4, dec_hidden=4, nz=2))
    atomic_save(model_payload(model, vocab, {"method": "vae"}), path)


@pytest.mark.parametrize("edit, message", [
    ("swap", "its vocabulary was altered after training"),
    ("extra", "its vocabulary has 11 entries, the model 10"),
])
def test_a_checkpoint_with_an_altered_vocabulary_does_not_load(tmp_path, edit, message):
    from textvae.modeling.checkpoint import atomic_save, load_checkpoint

    path = tmp_path / "best.pt"
    _tiny_checkpoint(path)
    ckpt = load_checkpoint(path)
    vocab = list(ckpt["vocab"])
    if edit == "swap":
        vocab[-1], vocab[-2] = vocab[-2], vocab[-1]
    else:
        vocab.append("extra")
    atomic_save({**ckpt, "vocab": vocab}, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


# ----------------------------------------------------------------------------------------------------------
# snakemake and `dvc repro` never rebuild the same results at once
# ----------------------------------------------------------------------------------------------------------

def _dvc_and_snakemake_workdir(tmp_path):
    from test_dvc import dvc_repo
    from test_pipeline import copy_pipeline, edit_params, tiny_demo

    work = dvc_repo(copy_pipeline(tmp_path / "wf"))
    edit_params(work, tiny_demo)
    corpus = work / "data" / "synthetic"
    corpus.mkdir(parents=True)
    (corpus / "train.txt").write_text("a corpus prepared before\n")
    return work, corpus / "train.txt"


def _needs(*tools):
    import shutil

    missing = [t for t in tools if shutil.which(t) is None]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed")


@_needs("snakemake", "dvc", "git")
def test_snakemake_stops_before_any_job_while_dvc_runs(tmp_path):
    import zc.lockfile

    from test_pipeline import snakemake

    work, kept = _dvc_and_snakemake_workdir(tmp_path)
    held = zc.lockfile.LockFile(str(work / ".dvc" / "tmp" / "lock"))   # what `dvc repro` holds while it runs
    try:
        proc = snakemake(work, "--cores", "1", "--forceall", "data/synthetic/train.txt", check=False)
    finally:
        held.close()
    assert proc.returncode != 0
    assert "a dvc command (pid " in proc.stderr and "is running in this folder" in proc.stderr, proc.stderr[-2000:]
    assert kept.read_text() == "a corpus prepared before\n"   # snakemake deleted nothing


@_needs("snakemake", "dvc", "git")
def test_dvc_repro_refuses_to_start_while_snakemake_runs(tmp_path):
    import subprocess
    import sys

    from test_pipeline import run

    work, kept = _dvc_and_snakemake_workdir(tmp_path)
    # a running snakemake: its onstart holds DVC's lock shared (a second snakemake may share it)
    code = ("from textvae.workflow.dvc_stages import exclude_dvc_repro; exclude_dvc_repro(); "
            "exclude_dvc_repro(); print('held', flush=True); import time; time.sleep(300)")
    holders = [subprocess.Popen([sys.executable, "-c", code], cwd=work, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    try:
        assert all(h.stdout.readline().strip() == "held" for h in holders)
        proc = run(["dvc", "repro", "--force", "data@synthetic"], work, check=False)
    finally:
        for h in holders:
            h.kill()
            h.wait()
    assert proc.returncode != 0 and "Unable to acquire lock" in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert kept.read_text() == "a corpus prepared before\n"   # DVC deleted nothing
