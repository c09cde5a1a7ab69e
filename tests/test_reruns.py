"""Reruns only where a result can change (issue 27): after a completed run of a small experiment (stand-in
textvae commands for Snakemake, `dvc commit` for DVC's lock file), each kind of edit — (a) one method's epochs,
(b) a probe setting, (c) a claim's wording, (d) a λ appended to lam_grid — makes `snakemake -n` and
`dvc status` list exactly the jobs that read what was edited (and, for Snakemake, what reads their results).

DVC's report stages depend on the params.yaml keys their page prints, so `dvc status` lists exactly the pages
that show an edit; after `dvc repro` of changed runs, DVC rebuilds every page of their datasets (a page depends
on its datasets' whole results folders: DVC's templating cannot give a stage a list of files), seconds of work."""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from textvae.plan import pipeline
from textvae.workflow import dvc_stages
from test_dvc import dvc_repo
from test_pipeline import (copy_pipeline, dry_run_jobs, edit_params, fake_textvae_env, needs_dvc, needs_snakemake,
                           run, snakemake, tiny_demo)

pytestmark = pytest.mark.slow     # a completed (stand-in) run first: a few minutes

RUN = "results/synthetic/{}/seed783435"
CLAIMS = Path("src") / "textvae" / "plan" / "paper_claims.yaml"


def small(params: dict) -> None:
    """The demo's Table 5 (a probe, and the claims on it) and a λ-grid experiment (Table 10's VAE, FBP and Ours
    on the embedded corpus at λ = 3, no snapping)."""
    tiny_demo(params)
    params["datasets"]["synthetic"]["training"]["methods"] = {"aggressive": {"max_epochs": 1},
                                                              "ae": {"max_epochs": 2}}
    params["lam_grid"] = [3]
    params["tables"]["table10"]["lams"] = [3]
    params["tables"]["table10"]["rows"]["ptb"] = ["vae", "fbp@*", "ours@*"]
    params["figures"]["tradeoff"]["lams"] = [3]
    params["experiments"] = {"demo": {**params["experiments"]["demo"], "tables": ["table5"],
                                      "figures": []},
                             "grid": {"datasets": {"ptb": "synthetic"}, "tables": ["table10"], "figures": []}}


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> tuple[Path, dict]:
    """A completed run of `small` (stand-in commands), with DVC's lock file of the same outputs."""
    if shutil.which("snakemake") is None or shutil.which("dvc") is None:
        pytest.skip("snakemake or dvc not installed")
    tmp = tmp_path_factory.mktemp("reruns")   # the edits of the tests below are undone after each
    work = copy_pipeline(tmp / "wf")
    edit_params(work, small)
    env = fake_textvae_env(tmp)
    # the copy's package (its paper_claims.yaml) is the one the plan reads
    env["PYTHONPATH"] = f"{work / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml"], work, env)
    snakemake(work, "--cores", "2", "demo", "grid", env=env)
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", "demo", "grid", env=env).stdout
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    for job in plan.all_jobs():            # DVC's plots of the training stages
        if job.rule == "train":
            (work / Path(job.outputs[0]).parent / "curves.json").write_text("[]\n")
    dvc_repo(work)
    run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml", "--check", "--stamp", dvc_stages.RUNS_STAMP],
        work, env)
    run(["dvc", "commit", "-f", "-q"], work, env)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], work, env).stdout
    return work, env


def after(done, edit) -> tuple[set, set, pipeline.Plan]:
    """(Snakemake's dry-run jobs, DVC's changed stages, the plan) after ``edit(work)`` of the completed run;
    the edit is undone afterwards (and the run is up to date again)."""
    work, env = done
    saved = {p: p.read_bytes() for p in (work / "params.yaml", work / CLAIMS, work / "workflow" / "dvc_runs.yaml")}
    try:
        edit(work)
        run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml"], work, env)   # the run lists, if runs changed
        out = snakemake(work, "-n", "--cores", "1", "demo", "grid", env=env).stdout
        jobs = {j for j in dry_run_jobs(out) if j[0] not in ("demo", "grid")}
        status = run(["dvc", "status"], work, env).stdout
        plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
        params_edited = (work / "params.yaml").read_bytes() != saved[work / "params.yaml"]
    finally:
        for path, data in saved.items():
            path.write_bytes(data)
    stages = set(re.findall(r"^(\S+):$", status, re.M))
    # the check of the run lists follows any edit of params.yaml (it writes nothing the results depend on)
    assert ("run_lists" in stages) == params_edited, status
    return jobs, stages - {"run_lists"}, plan


def runs_of(jobs: set) -> set:
    return {j for j in jobs if j[0] in ("train", "evaluate", "probe")}


def reports_of(jobs: set) -> set:
    return {o for rule, o in jobs if rule.startswith("report")}


def not_reports(stages: set) -> set:
    return {s for s in stages if not s.startswith("report")}


def method_epochs(work: Path) -> None:
    edit_params(work, lambda p: p["datasets"]["synthetic"]["training"]["methods"]["aggressive"].update(max_epochs=2))


def probe_setting(work: Path) -> None:
    edit_params(work, lambda p: p["datasets"]["synthetic"]["probing"]["smoothness"].update(pairs=300))


def claim_wording(work: Path) -> None:
    path = work / CLAIMS
    text = path.read_text()
    assert "The VAE's posterior collapses" in text
    path.write_text(text.replace("The VAE's posterior collapses", "The VAE's posterior collapses (reworded)"))


def lam_grid(work: Path) -> None:
    def add(p):   # what appending 5 to `lam_grid: &lam_grid [...]` does (the tables share it by the anchor)
        for spec in (p, p["tables"]["table10"], p["figures"]["tradeoff"]):
            key = "lam_grid" if spec is p else "lams"
            spec[key] = spec[key] + [5]
    edit_params(work, add)


# ----------------------------------------------------------------------------------------------------------
# Snakemake
# ----------------------------------------------------------------------------------------------------------

@needs_snakemake
def test_one_methods_epochs_rerun_its_runs_only(done):
    jobs, stages, _ = after(done, method_epochs)
    agg = RUN.format("aggressive")
    assert runs_of(jobs) == {("train", f"{agg}/best.pt"), ("probe", f"{agg}/probe_smoothness.json")}
    # (every table of the dataset prints its budgets: they are rebuilt, in seconds)
    assert "reports/demo/table5.md" in reports_of(jobs)
    assert not_reports(stages) == {"train@synthetic-aggressive-seed783435"}


@needs_snakemake
def test_a_probe_setting_reruns_that_probe_only(done):
    jobs, stages, plan = after(done, probe_setting)
    probes = [j for j in plan.all_jobs() if j.rule == "probe"]
    assert runs_of(jobs) == {("probe", j.outputs[0]) for j in probes}
    assert "reports/grid/table10.md" not in reports_of(jobs) and "reports/demo/table5.md" in reports_of(jobs)
    assert not_reports(stages) == {f"probe@{j.name[len('probe_'):]}" for j in probes}


@needs_snakemake
def test_a_claims_wording_rebuilds_the_claims_pages_only(done):
    jobs, stages, _ = after(done, claim_wording)
    assert jobs == {("report", "reports/demo/claims.md"), ("report_index", "reports/demo/index.md"),
                    ("report", "reports/grid/claims.md"), ("report_index", "reports/grid/index.md")}
    assert not_reports(stages) == set()


@needs_snakemake
def test_a_lambda_appended_to_lam_grid_runs_the_new_runs_only(done):
    jobs, stages, _ = after(done, lam_grid)
    new = {RUN.format(f"{m}/lam5") for m in ("fbp", "ours")}
    assert runs_of(jobs) == {(rule, f"{d}/{f}") for d in new for rule, f in (("train", "best.pt"),
                                                                             ("evaluate", "eval_test.json"))}
    assert reports_of(jobs) <= {"reports/grid/table10.md", "reports/grid/claims.md", "reports/grid/index.md"}
    assert "reports/grid/table10.md" in reports_of(jobs)
    assert not_reports(stages) == {f"{kind}@synthetic-{m}-lam5-seed783435" for kind in ("evaluate",)
                                   for m in ("fbp", "ours")} | {"train@synthetic-fbp-lam5-seed783435",
                                                                "train_pretrained@synthetic-ours-lam5-seed783435"}


# ----------------------------------------------------------------------------------------------------------
# DVC's report stages: a page is listed when a key it prints changes (the claims pages when the claims do)
# ----------------------------------------------------------------------------------------------------------

@needs_dvc
@pytest.mark.parametrize("edit, pages", [
    (method_epochs, {"report@demo-table5", "report@grid-table10"}),       # both print the corpus' budgets
    (probe_setting, {"report@demo-table5"}),                              # the only page of a smoothness probe
    (claim_wording, {"report_claims@demo-claims", "report_claims@demo-index", "report_claims@grid-claims",
                     "report_claims@grid-index"}),
    (lam_grid, {"report@grid-table10", "report_claims@grid-claims"}),     # the rows of table 10, and its claims
], ids=["method-epochs", "probe-setting", "claim-wording", "lam-grid"])
def test_dvc_lists_only_the_reports_that_show_an_edit(done, edit, pages):
    jobs, stages, _ = after(done, edit)
    assert {s for s in stages if s.startswith("report")} == pages
    # each of them is a page Snakemake rebuilds too (which also rebuilds the pages whose runs rerun)
    assert {"reports/" + s.split("@", 1)[1].replace("-", "/", 1) + ".md" for s in pages} <= reports_of(jobs)
