"""DVC follows params.yaml: dvc.yaml (a template) + workflow/dvc_runs.yaml (generated run lists) give exactly the
plan's jobs; appending a λ to lam_grid shows its stages with no other command; a stale run list stops a stage
with one line; every stage depends on the code its command runs; a change of the training code changes the
training stages; evaluations are DVC metrics, training curves DVC plots."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from textvae.workflow import dvc_stages
from textvae.plan import pipeline
from test_pipeline import REPO, copy_pipeline, edit_params, needs_dvc, run, tiny_demo

LAM_GRID_LINE = re.compile(r"^(lam_grid: &lam_grid \[)([^\]]*)\]", re.M)


def append_to_lam_grid(work: Path, lam: str) -> None:
    """What a user does: edit the lam_grid line of params.yaml (the tables share it through the YAML anchor)."""
    text = (work / "params.yaml").read_text()
    assert LAM_GRID_LINE.search(text), "params.yaml has no `lam_grid: &lam_grid [...]` line"
    (work / "params.yaml").write_text(LAM_GRID_LINE.sub(lambda m: f"{m.group(1)}{m.group(2)}, {lam}]", text))


def dvc_repo(work: Path) -> Path:
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    return work


def dvc_outputs(work: Path) -> set[str]:
    """The outputs of every stage dvc.yaml resolves to (curves.json, DVC's own plot file, aside)."""
    code = ("import json; from dvc.repo import Repo; r = Repo('.'); "
            "print(json.dumps(sorted(str(o.def_path) for s in r.index.stages for o in s.outs)))")
    outs = json.loads(run([sys.executable, "-c", code], work).stdout)
    return {o for o in outs if not o.endswith("/curves.json") and o != dvc_stages.RUNS_STAMP}


def plan_outputs(work: Path) -> set[str]:
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    return {o for job in plan.all_jobs() for o in (job.dvc_outs or job.outputs)}


# ----------------------------------------------------------------------------------------------------------
# without DVC
# ----------------------------------------------------------------------------------------------------------

def raw_stages() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_body(stage: dict) -> dict:
    return stage.get("do", stage)


@pytest.mark.parametrize("group", [g for g, st in raw_stages().items() if "dvc-run" in stage_body(st)["cmd"]])
def test_every_stage_depends_on_the_code_it_runs(group):
    body = stage_body(raw_stages()[group])
    rule = body["cmd"].split()[3]    # textvae pipeline dvc-run RULE …
    needed = dvc_stages.stage_code(group, rule, REPO / "src" / "textvae")
    deps = [d for d in body["deps"] if d.startswith("src/")]
    assert set(needed) <= set(deps), f"dvc.yaml: {group}: add {sorted(set(needed) - set(deps))} to deps"
    assert all((REPO / d).exists() for d in deps), deps


def test_every_report_stage_waits_for_the_run_lists_check():
    """run_lists checks the run lists after any edit of params.yaml and writes RUNS_STAMP; each report group
    depends on it (and not on params.yaml as a whole)."""
    stages = raw_stages()
    check = stages["run_lists"]
    assert check["deps"] == ["params.yaml", dvc_stages.RUNS_FILE]
    assert [next(iter(o)) if isinstance(o, dict) else o for o in check["outs"]] == [dvc_stages.RUNS_STAMP]
    assert f"--stamp {dvc_stages.RUNS_STAMP}" in check["cmd"]
    for group in ("report", "report_claims", "report_static"):
        deps = stage_body(stages[group])["deps"]
        assert dvc_stages.RUNS_STAMP in deps and "params.yaml" not in deps, group


@needs_dvc
def test_a_new_experiment_without_dvc_yaml_stops_dvc_repro_of_any_report(tmp_path):
    """No report's own keys change when an experiment is added, but run_lists' do: `dvc status` lists it and
    `dvc repro` of a report stops there with one line until `textvae pipeline dvc-yaml` has run."""
    work = dvc_repo(copy_pipeline(tmp_path / "wf"))
    run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml", "--check", "--stamp", dvc_stages.RUNS_STAMP], work)
    run(["dvc", "commit", "-f", "-q", "run_lists"], work)
    assert "run_lists:" not in run(["dvc", "status", "run_lists"], work).stdout
    edit_params(work, lambda p: p["experiments"].__setitem__("mine", {"dataset": "synthetic", "lams": [3]}))
    assert "run_lists:" in run(["dvc", "status", "run_lists"], work).stdout
    proc = run(["dvc", "repro", "--glob", "report*@demo-table1"], work, check=False)
    assert proc.returncode != 0
    assert "workflow/dvc_runs.yaml is out of date with params.yaml: run `textvae pipeline dvc-yaml`" in \
        proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert not (work / "data").exists() and not (work / "results").exists()


def test_training_stages_declare_every_run_file():
    for group in ("train", "train_pretrained", "train_grid", "train_grid_pretrained"):
        outs = [o.rsplit("/", 1)[1] for o in stage_body(raw_stages()[group])["outs"]]
        assert sorted(outs) == sorted(pipeline.RUN_FILES), f"dvc.yaml: {group}: outs must be {pipeline.RUN_FILES}"


def test_a_stale_run_list_stops_the_stage_with_one_line(tmp_path, monkeypatch):
    work = copy_pipeline(tmp_path / "wf")
    # a table row DVC's templating cannot follow (a λ outside lam_grid)
    edit_params(work, lambda p: p["tables"]["table3"]["rows"]["ptb"].append("ours@2.5"))
    proc = run([sys.executable, "-m", "textvae", "pipeline", "dvc-run", "report", "reports/table3.md"], work,
               check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "workflow/dvc_runs.yaml is out of date with params.yaml" in lines[0], proc.stderr
    run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml"], work)
    assert "ptb-ours-lam2p5-seed783435" in (work / dvc_stages.RUNS_FILE).read_text()


# ----------------------------------------------------------------------------------------------------------
# with DVC
# ----------------------------------------------------------------------------------------------------------

def dvc_stage_params(work: Path) -> dict[str, set[str]]:
    """First output of every stage → the params.yaml keys it depends on."""
    code = ("import json; from dvc.repo import Repo; from dvc.dependency.param import ParamsDependency; "
            "r = Repo('.'); print(json.dumps({str(s.outs[0].def_path): sorted(k for d in s.deps "
            "if isinstance(d, ParamsDependency) for k in d.params) for s in r.index.stages if s.outs}))")
    return {o: set(keys) for o, keys in json.loads(run([sys.executable, "-c", code], work).stdout).items()}


def dvc_stage_deps(work: Path) -> dict[str, set[str]]:
    """First output of every stage → the paths it depends on."""
    code = ("import json; from dvc.repo import Repo; from dvc.dependency.param import ParamsDependency; "
            "r = Repo('.'); print(json.dumps({str(s.outs[0].def_path): sorted(d.def_path for d in s.deps "
            "if not isinstance(d, ParamsDependency)) for s in r.index.stages if s.outs}))")
    return {o: set(p) for o, p in json.loads(run([sys.executable, "-c", code], work).stdout).items()}


@needs_dvc
def test_dvc_stages_are_the_plan_and_follow_lam_grid(tmp_path):
    work = dvc_repo(copy_pipeline(tmp_path / "wf"))
    assert dvc_outputs(work) == plan_outputs(work)
    # each stage depends on the params.yaml keys its command reads (the plan's), no more: a per-method or a
    # probing-only key is not a dependency of every training stage
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    keys = dvc_stage_params(work)
    for job in plan.all_jobs():
        if job.rule == "report":      # a page: the keys it prints (padded with its first), not all of params.yaml
            assert keys[job.outputs[0]] == set(job.params), job.name
            assert not any(d == "params.yaml" for d in dvc_stage_deps(work)[job.outputs[0]]), job.name
        else:                         # (the run list pads a stage's own keys with its dataset's sizes)
            pad = {f"datasets.{job.outputs[0].split('/')[1]}.sizes"}
            assert keys[(job.dvc_outs or job.outputs)[0]] - pad == set(job.params) - pad, job.name
    table5 = keys["reports/demo/table5.md"]
    assert "datasets.synthetic.probing.smoothness" in table5 and "datasets.synthetic.probing.bleu" not in table5
    claims_deps = dvc_stage_deps(work)
    assert dvc_stages.CLAIMS_FILE in claims_deps["reports/demo/claims.md"]
    assert dvc_stages.CLAIMS_FILE not in claims_deps["reports/demo/table5.md"]
    ae = keys["results/ptb_cpu/ae/seed783435/best.pt"]
    assert "datasets.ptb_cpu.training.methods.ae" in ae and not any(k.startswith("probing") for k in ae)
    assert "datasets.ptb_cpu.training.methods.aggressive" not in ae

    append_to_lam_grid(work, "10")
    # no other command: the run lists are still current, and DVC plans the λ = 10 runs and their evaluations
    run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml", "--check"], work)
    assert dvc_outputs(work) == plan_outputs(work)
    status = run(["dvc", "status"], work).stdout
    new = {name for name in re.findall(r"^(\S+):$", status, re.M) if "-10-" in name}
    expected = {f"{kind}{'_pretrained' if m == 'ours' else ''}@{d}-{m}-10-783435"
                for kind in ("train_grid", "evaluate_grid") for d in ("ptb", "snli", "yahoo") for m in ("fbp", "ours")}
    assert new == expected

@needs_dvc
@pytest.mark.slow
def test_code_change_reruns_training_and_evaluations_are_metrics(tmp_path):
    """One tiny demo run through DVC: its evaluation is a DVC metric and its curves a plot; a change of
    objectives.py makes its training stage (not the evaluation) changed."""
    work = copy_pipeline(tmp_path / "wf")
    edit_params(work, tiny_demo)
    run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml"], work)
    dvc_repo(work)
    stage = "evaluate@synthetic-vae-seed783435"
    run(["dvc", "repro", stage], work, {"OMP_NUM_THREADS": "1"}, timeout=900)
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], work).stdout)
    shown = {p: d["data"] for ws in metrics.values() for p, d in ws["data"].items() if "data" in d}
    assert {"ppl", "rec", "kl", "mi", "au"} <= set(shown["results/synthetic/vae/seed783435/eval_test.json"])
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], work)
    assert "results/synthetic/vae/seed783435/curves.json" in (tmp_path / "plots" / "index.html").read_text()
    assert "changed" not in run(["dvc", "status", stage], work).stdout

    obj = work / "src" / "textvae" / "modeling" / "objectives.py"
    obj.write_text(obj.read_text() + "\n# a change of the training objective\n")
    status = run(["dvc", "status", "train@synthetic-vae-seed783435", stage], work).stdout
    assert re.search(r"train@synthetic-vae-seed783435:\n\s+changed deps:\n\s+modified:\s+src/textvae/modeling/objectives.py",
                     status), status
    assert f"{stage}:" not in status


@needs_dvc
def test_dvc_dry_run_lists_the_demo_from_a_fresh_clone(tmp_path):
    """`dvc repro --dry` where nothing has run yet (README, dvc.yaml's header): DVC 3's plain --dry stops at the
    first stage whose input another stage makes (treeverse/dvc#9818); with --force it lists every stage."""
    work = copy_pipeline(tmp_path / "wf")
    edit_params(work, tiny_demo)
    run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml"], work)
    dvc_repo(work)
    out = run(["dvc", "repro", "--dry", "--force", "--glob", "report*@demo-*"], work).stdout
    listed = set(re.findall(r"^Running stage '([^']+)':", out, re.M))
    assert not (work / "data").exists() and not (work / "results").exists()
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    jobs = plan.all_jobs()        # report*@demo-*: the tables' and figures' pages, claims and index, static pages
    assert "run_lists" in listed      # the reports' check of the run lists
    listed.discard("run_lists")
    assert len(listed) == len(jobs) and {s.split("@")[0] for s in listed} >= {"data", "train", "train_pretrained",
                                                                            "evaluate", "probe", "report"}
