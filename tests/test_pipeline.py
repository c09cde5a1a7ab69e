"""The pipeline (issue: Snakefile + params.yaml + dvc.yaml + profiles): params validation, the job plan, the
Snakemake DAG against the plan and dvc.yaml, reruns after adding a λ, the Slurm profile, and the demo end to
end on the embedded corpus through Snakemake and through `dvc repro` with a local remote."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from textvae.workflow import dvc_stages
from textvae.plan import pipeline
from textvae.plan import tables
from textvae.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
# src/textvae: the DVC stages depend on the code they run (the commands run the installed package)
PIPELINE_FILES = ["Snakefile", "params.yaml", "workflow", "profiles", "dvc.yaml", ".gitignore", ".dvcignore", "src/textvae"]

needs_snakemake = pytest.mark.skipif(shutil.which("snakemake") is None,
                                     reason="snakemake not installed (pip install -e '.[pipeline]')")
needs_dvc = pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None,
                               reason="dvc (pip install -e '.[pipeline]') or git not installed")


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------

def copy_pipeline(dest: Path) -> Path:
    """A scratch copy of the pipeline files (the package itself is the installed one)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def edit_params(workdir: Path, fn) -> dict:
    path = workdir / "params.yaml"
    params = yaml.safe_load(path.read_text())
    fn(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def tiny_demo(params: dict) -> None:
    """The demo experiment alone, with settings small enough for a test."""
    syn = params["datasets"]["synthetic"]
    syn["prepare"] = {"examples": [300, 60, 60]}
    syn["training"] = {"max_epochs": 1, "warm_up": 1, "min_epoch": 1, "patience": 1}
    syn["evaluation"] = {"iw_samples": 3}
    syn["probing"] = {"bleu": {"max_len": 20}, "smoothness": {"pairs": 200},
                      "interpolate": {"pairs_interp": 1, "points": 3, "max_len": 20},
                      "copy": {"samples": 5, "max_len": 20}, "classify": {"labels": [50], "max_epochs": 2}}
    params["experiments"] = {"demo": params["experiments"]["demo"]}


def run(argv: list[str], cwd: Path, env: dict | None = None, timeout: float = 900, check: bool = True):
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-5000:]}")
    return proc


def snakemake(cwd: Path, *args: str, env: dict | None = None, check: bool = True, timeout: float = 900):
    return run(["snakemake", *args], cwd, env, timeout, check)


def job_stats(output: str) -> dict[str, int]:
    """The `Job stats` table of a snakemake dry run."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n(?:total|\n)", output, re.S)
    assert m, output[-2000:]
    stats = {}
    for line in m.group(1).splitlines():
        name, count = line.split()
        stats[name] = int(count)
    return stats


def dry_run_jobs(output: str) -> list[tuple[str, str]]:
    """(rule, first output) of every job a dry run lists."""
    jobs, rule = [], None
    for line in output.splitlines():
        m = re.match(r"(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"\s+output: ([^,\s]+)", line)
        if m and rule:
            jobs.append((rule, m.group(1)))
            rule = None
    return jobs


FAKE_TEXTVAE = textwrap.dedent('''\
    #!{python}
    """Stands in for `textvae`: writes each command's output files (names from textvae.plan.pipeline)."""
    import json, os, sys
    from textvae.workflow import dvc_stages
    from textvae.plan import pipeline
    argv = sys.argv[1:]
    out = argv[argv.index("--out") + 1]
    with open(os.environ["FAKE_TEXTVAE_LOG"], "a") as fh:
        fh.write(json.dumps(argv) + "\\n")
    if argv[0] in ("train", "data"):
        names = pipeline.RUN_FILES if argv[0] == "train" else pipeline.DATA_FILES
        os.makedirs(out, exist_ok=True)
        for name in names:
            with open(os.path.join(out, name), "w") as fh:
                fh.write("{{}}\\n")
    else:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w") as fh:
            fh.write("{{}}\\n")
''')


def fake_textvae_env(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "textvae"
    exe.write_text(FAKE_TEXTVAE.format(python=sys.executable))
    exe.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_TEXTVAE_LOG": str(tmp_path / "calls.jsonl"),
            "TEXTVAE_FAKE_GPUS": "2", "TEXTVAE_GPU_LOCK_DIR": str(tmp_path / "locks")}


# ----------------------------------------------------------------------------------------------------------
# params.yaml and the plan
# ----------------------------------------------------------------------------------------------------------

def test_params_yaml_is_valid_and_complete():
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / pipeline.SCHEMA)
    assert set(plan.experiments) == {"paper", "demo", "demo_seeds", "demo_corpus2", "demo_early", "ptb_cpu"}
    assert plan.table_names() == list(tables.TABLE_KINDS)
    jobs = plan.all_jobs()
    names = [j.name for j in jobs]
    assert len(names) == len(set(names))
    assert all(j.argv[0] == "textvae" for j in jobs)
    assert {j.rule for j in jobs if j.gpu} == {"train", "evaluate", "probe"}
    # every output is made by exactly one job
    outs = [o for j in jobs for o in j.outputs]
    assert len(outs) == len(set(outs))
    # inputs come from other jobs, never from nowhere
    made = set(outs)
    assert all(i in made for j in jobs for i in j.inputs)


def test_table_rows_are_checked_against_the_method_registry():
    """The params check knows the methods and which of them take λ from textvae.modeling.methods alone: a method added
    there is a valid row, a λ on a method without one (or none on one that needs it) is refused."""
    from textvae.modeling import methods

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, m in methods.METHODS.items():
        row = f"{name}@3" if m.needs_lam else name
        params["tables"]["table1"]["rows"][0] = row
        pipeline.check_params(params, REPO / pipeline.SCHEMA)
        params["tables"]["table1"]["rows"][0] = name if m.needs_lam else f"{name}@3"
        with pytest.raises(ConfigError, match=r"tables\.table1\.rows\[0\]: .*λ"):
            pipeline.check_params(params, REPO / pipeline.SCHEMA)
    params["tables"]["table1"]["rows"][0] = "vea"
    with pytest.raises(ConfigError, match="unknown method 'vea'"):
        pipeline.check_params(params, REPO / pipeline.SCHEMA)
    # a method added to the registry is a row (and its λ rule applies) without touching the schema
    extra = methods.Method("extra", "a test method", needs_lam=True, label="+ extra")
    try:
        methods.METHODS["extra"] = extra
        params["tables"]["table1"]["rows"][0] = "extra@2"
        pipeline.check_params(params, REPO / pipeline.SCHEMA)
        assert methods.label("extra") == "+ extra"
    finally:
        del methods.METHODS["extra"]


def test_table3_needs_the_paper_runs_and_one_ae_per_dataset():
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / pipeline.SCHEMA)
    jobs = {j.name: j for j in plan.all_jobs(["paper"])}
    report = jobs["report-table3"]
    runs = {tuple(f.split("/")[1:-2]) for f in report.inputs if f.endswith("eval_test.json")}
    assert ("ptb", "ours", "lam8") in runs and ("yahoo", "fbp", "lam9") in runs and ("ptb", "lm") in runs
    assert len(runs) == 22
    ours = jobs["train-ptb-ours-lam8-seed783435"]
    assert "--init-from" in ours.argv and "results/ptb/ae/seed783435/best.pt" in ours.inputs
    assert ours.argv[ours.argv.index("--lam") + 1] == "8"
    assert sum(1 for n in jobs if n.startswith("train-ptb-ae-")) == 1


def test_demo_maps_every_table_onto_the_embedded_corpus():
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / pipeline.SCHEMA)
    demo = plan.experiment("demo")
    sec, = plan.sections(demo, "table3")
    assert sec.dataset == "synthetic" and sec.paper_datasets == ("ptb", "yahoo")
    assert all(r.lam in (None, 3.0, 7.0) for r in sec.rows)
    assert not any(r.paper_only for r in sec.rows)
    datasets = {j.argv[3] for j in plan.all_jobs(["demo"]) if j.rule == "data"}
    assert datasets == {"synthetic"}
    assert all(t.startswith("reports/demo/") for t in plan.report_targets("demo"))


def test_ptb_cpu_runs_only_ptb_tables_on_its_alias_with_the_paper_column():
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / pipeline.SCHEMA)
    exp = plan.experiment("ptb_cpu")
    assert exp.compares_to_paper and plan.table_names(exp) == ["table1", "table2", "table3"]
    assert plan.report_items(exp) == ["table1.md", "table2.md", "table3.md", "fig_curves_ptb_cpu.png", "claims.md",
                                      "index.md"]
    sec, = plan.sections(exp, "table3")          # Yahoo's rows are not run
    assert sec.dataset == "ptb_cpu" and sec.paper_datasets == ("ptb",)
    assert [r.key for r in sec.rows] == ["lm", "vae", "anneal", "cyclic_reported", "cyclic", "aggressive", "fbp@3",
                                         "fbp@2", "ours@8", "ours@6", "ours@4"]
    jobs = {j.name: j for j in plan.all_jobs(["ptb_cpu"])}
    assert jobs["data-ptb_cpu"].argv[:5] == ["textvae", "data", "prepare", "ptb", "--out"]
    # results of their own: nothing under results/ptb (the paper experiment's runs)
    assert not any(f.startswith("results/ptb/") for j in jobs.values() for f in j.outputs)
    # per-method budgets: the AE longer, aggressive on a slice; the other methods the dataset's common cap
    # (resolved by `textvae train` from the file, as the job's command runs it)
    from textvae.cli.dispatch import build_parser
    from textvae.cli.train import resolve

    parser = build_parser()

    def cfg(name):
        return resolve(parser.parse_args(jobs[name].argv[1:]))[0]
    assert cfg("train-ptb_cpu-ae-seed783435").max_epochs == 9
    assert cfg("train-ptb_cpu-vae-seed783435").max_epochs == 1
    assert cfg("train-ptb_cpu-aggressive-seed783435").max_train == 3000
    assert cfg("train-ptb_cpu-vae-seed783435").max_train is None
    assert cfg("train-ptb_cpu-vae-seed783435").precision == "fp32"
    # a change of one method's budget is a rerun trigger of that method's runs only
    before = {n: j.knobs_json for n, j in jobs.items() if j.rule != "report"}
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"]["ptb_cpu"]["training"]["methods"]["ae"]["max_epochs"] = 12
    after = {j.name: j.knobs_json for j in pipeline.Plan(params).all_jobs(["ptb_cpu"]) if j.rule != "report"}
    assert [n for n in before if before[n] != after[n]] == ["train-ptb_cpu-ae-seed783435"]


@pytest.mark.parametrize("edit, key", [
    (lambda p: p["training"].__setitem__("lr_decay", 2), "training.lr_decay"),
    (lambda p: p["training"].__setitem__("max_epoch", 3), "training"),
    (lambda p: p["tables"]["table1"]["rows"].__setitem__(0, "ours@x"), "tables.table1.rows[0]"),
    (lambda p: p["tables"]["table2"].__setitem__("datasets", ["ptb", "nope"]), "tables.table2.datasets[1]"),
    (lambda p: p.__setitem__("seeds", []), "seeds"),
    (lambda p: p["datasets"]["ptb"]["sizes"].__setitem__("enc_emb", -5), "datasets.ptb.sizes.enc_emb"),
    (lambda p: p["experiments"]["demo"].__setitem__("dataset", "imagenet"), "experiments.demo.dataset"),
    (lambda p: p["experiments"]["ptb_cpu"]["datasets"].__setitem__("ptb", "nope"), "experiments.ptb_cpu.datasets.ptb"),
    (lambda p: p["experiments"]["ptb_cpu"].__setitem__("dataset", "synthetic"), "experiments.ptb_cpu"),
    (lambda p: p["experiments"]["ptb_cpu"].__setitem__("tables", ["table12"]), "experiments.ptb_cpu.tables[0]"),
    (lambda p: p["datasets"]["ptb_cpu"]["training"]["methods"].__setitem__("nope", {}),
     "datasets.ptb_cpu.training.methods"),
    (lambda p: p["datasets"]["ptb_cpu"]["training"]["methods"]["ae"].__setitem__("max_epochs", 0),
     "datasets.ptb_cpu.training.methods.ae.max_epochs"),
])
def test_bad_value_is_one_line_naming_the_key(edit, key):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    with pytest.raises(ConfigError) as info:
        pipeline.check_params(params, REPO / pipeline.SCHEMA)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"params.yaml: {key}"), msg


def test_committed_dvc_run_lists_are_generated_from_params():
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / pipeline.SCHEMA)
    assert (REPO / dvc_stages.RUNS_FILE).read_text() == dvc_stages.runs_yaml(plan), \
        f"{dvc_stages.RUNS_FILE} is stale: run `textvae pipeline dvc-yaml`"


# ----------------------------------------------------------------------------------------------------------
# Snakemake
# ----------------------------------------------------------------------------------------------------------

@needs_snakemake
def test_lint_is_clean():
    proc = snakemake(REPO, "--lint", check=False)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@needs_snakemake
def test_dry_run_table3_lists_the_paper_scale_jobs():
    # `--` ends the list of --resources values (Snakemake would read the target as a resource otherwise)
    proc = snakemake(REPO, "-n", "--cores", "8", "--resources", "gpu=2", "--", "reports/table3.md")
    out = proc.stdout + proc.stderr
    assert job_stats(out) == {"prepare_data": 2, "train": 24, "evaluate": 22, "report": 1}
    jobs = dry_run_jobs(out)
    assert ("train", "results/yahoo/ours/lam9/seed783435/best.pt") in jobs
    assert ("train", "results/ptb/ae/seed783435/best.pt") in jobs
    # the paper-scale commands, with the GPU slot wrapper
    assert "--config params.yaml --dataset yahoo" in out and "textvae.workflow.gpu_slots" in out
    assert "--iw-samples 1000" in out


@needs_snakemake
def test_snakemake_dag_is_the_plan(tmp_path):
    """Every job of the Snakemake DAG is a job of the plan (the DVC stages run) with the same command and
    outputs (tests/test_dvc.py checks the DVC stages against the same plan)."""
    proc = snakemake(REPO, "-n", "--cores", "1", "--forceall", "all")
    out = proc.stdout + proc.stderr
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / pipeline.SCHEMA)
    by_output = {o: job for job in plan.all_jobs() for o in job.outputs}
    jobs = [(r, o) for r, o in dry_run_jobs(out) if r not in ("all",)]
    assert len(jobs) == len(plan.all_jobs())
    # printed with the default profile's printshellcmds; GPU jobs go through the slot wrapper
    cmds = {re.sub(r"^\S+ -m textvae\.workflow\.gpu_slots --slots-per-device \d+ -- ", "", c)
            for c in re.findall(r"Shell command: (.*?) > logs/", out)}
    assert cmds == {job.cmd for job in plan.all_jobs()}
    for rule, first_out in jobs:
        job_rule = {"prepare_data": "data", "report_index": "report"}.get(rule, rule)
        assert first_out in by_output and by_output[first_out].rule == job_rule, (rule, first_out)


@needs_snakemake
def test_a_fresh_clone_with_committed_reports_runs_the_experiment(tmp_path):
    """reports/demo/ is committed and results/ is not: the README's `snakemake demo` on a fresh clone must still
    train, evaluate and probe every run and rewrite the reports, not find them up to date."""
    work = copy_pipeline(tmp_path / "wf")
    shutil.copytree(REPO / "reports" / "demo", work / "reports" / "demo")
    out = snakemake(work, "-n", "--cores", "1", "demo").stdout
    plan = pipeline.Plan.load(REPO / "params.yaml", REPO / pipeline.SCHEMA)
    jobs = plan.all_jobs(["demo"])
    stats = job_stats(out)
    for rule in ("train", "evaluate", "probe"):
        assert stats.get(rule) == sum(1 for j in jobs if j.rule == rule), (rule, stats)
    demo = plan.experiment("demo")
    reading = [i for i in plan.report_items(demo) if plan.item_inputs(demo, i)]   # all but the sizes table
    assert stats.get("report", 0) + stats.get("report_index", 0) == len(reading) >= 14


@needs_snakemake
def test_adding_a_lambda_reruns_only_the_new_jobs_and_their_reports(tmp_path):
    work = copy_pipeline(tmp_path / "wf")

    def paper_lm_tables(p):   # the tables with λ grids, and table3 which must not rerun
        p["experiments"] = {"paper": p["experiments"]["paper"]}
        p["tables"] = {t: p["tables"][t] for t in ("table3", "table10", "table11")}
        p["figures"].pop("curves")
        for spec in (p["tables"]["table10"], p["tables"]["table11"], p["figures"]["tradeoff"]):
            spec["lams"] = [2, 3]

    edit_params(work, paper_lm_tables)
    env = fake_textvae_env(tmp_path)
    snakemake(work, "--cores", "2", "all", env=env)
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", "all", env=env).stdout

    def add_lambda_10(p):
        # what a user does in params.yaml: append 10 to lam_grid (tables 10, 11 and the figures share it)
        for spec in (p["tables"]["table10"], p["tables"]["table11"], p["figures"]["tradeoff"]):
            spec["lams"] = spec["lams"] + [10]

    edit_params(work, add_lambda_10)
    out = snakemake(work, "-n", "--cores", "1", "all", env=env).stdout
    jobs = set(dry_run_jobs(out)) - {("all", "")}
    expected = {("train", f"results/{d}/{m}/lam10/seed783435/best.pt") for d in ("ptb", "snli", "yahoo")
                for m in ("fbp", "ours")}
    expected |= {("evaluate", f"results/{d}/{m}/lam10/seed783435/eval_test.json") for d in ("ptb", "snli", "yahoo")
                 for m in ("fbp", "ours")}
    expected |= {("report", f"reports/{t}") for t in ("table10.md", "table11.md", "fig_tradeoff_ptb.png",
                                                      "fig_tradeoff_snli.png", "fig_tradeoff_yahoo.png")}
    # the claims read Table 10 (Ours against FBP at every λ), and the index shows their verdicts
    expected |= {("report", "reports/claims.md"), ("report_index", "reports/index.md")}
    assert {j for j in jobs if j[0] != "all"} == expected
    snakemake(work, "--cores", "2", "all", env=env)
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", "all", env=env).stdout


REPORT_LINK = re.compile(r"""(?:src|href)=["'](?!data:|#|https?:|mailto:)[^"']+\.(?:png|md)["']""")


def assert_html_report_complete(html: str, plan: pipeline.Plan, exp_name: str) -> None:
    """Every table, figure and index of the experiment in the report, with run times, no link to a file."""
    exp = plan.experiment(exp_name)
    for item in plan.report_items(exp):
        assert f"{exp.report_dir}/{item}" in html, f"report.html lacks {item}"
    assert "runtime" in html.lower()
    assert not REPORT_LINK.search(html)


@needs_snakemake
def test_html_report_holds_every_table_and_figure(tmp_path):
    """`snakemake --report report.html demo` (stand-in textvae commands: the real demo is the slow test)."""
    work = copy_pipeline(tmp_path / "wf")
    edit_params(work, tiny_demo)
    env = fake_textvae_env(tmp_path)
    snakemake(work, "--cores", "2", "demo", env=env)
    snakemake(work, "--cores", "1", "--report", "report.html", "demo", env=env)
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    assert_html_report_complete((work / "report.html").read_text(), plan, "demo")


@needs_snakemake
def test_bad_params_stop_snakemake_before_any_job(tmp_path):
    work = copy_pipeline(tmp_path / "wf")
    edit_params(work, lambda p: p["evaluation"].__setitem__("iw_samples", 0))
    proc = snakemake(work, "-n", "--cores", "1", "all", check=False)
    assert proc.returncode != 0
    assert re.match(r"params\.yaml:\d+: evaluation\.iw_samples: ", proc.stderr.strip().splitlines()[-1]), proc.stderr
    assert "Job stats" not in proc.stdout


SLURM_FAKES = {
    # records each call, runs the job script right away (as a one-node cluster would) and prints a job id
    "sbatch": textwrap.dedent('''\
        #!{python}
        import json, os, subprocess, sys
        log = os.environ["FAKE_SLURM_LOG"]
        args = sys.argv[1:]
        n = sum(1 for _ in open(log)) + 1 if os.path.exists(log) else 1
        with open(log, "a") as fh:
            fh.write(json.dumps(args) + "\\n")
        wrap = next((a[len("--wrap="):] for a in args if a.startswith("--wrap=")), None)
        script = sys.stdin.read() if wrap is None else "#!/bin/sh\\n" + wrap
        out = args[args.index("--output") + 1].replace("%j", str(n))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        env = dict(os.environ, SLURM_JOB_ID=str(n))
        with open(out, "w") as fh:
            rc = subprocess.run(["/bin/sh", "-c", script], env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
        with open(log + ".state", "a") as fh:
            fh.write(f"{{n}}|{{'COMPLETED' if rc == 0 else 'FAILED'}}\\n")
        print(n)
        '''),
    "sacct": "#!/bin/sh\ncase \"$*\" in *JobIdRaw*) cat \"$FAKE_SLURM_LOG.state\" 2>/dev/null;; esac\nexit 0\n",
    "squeue": "#!/bin/sh\ncat \"$FAKE_SLURM_LOG.state\" 2>/dev/null\nexit 0\n",
    "sinfo": "#!/bin/sh\nexit 0\n",
    "scontrol": "#!/bin/sh\nexit 0\n",
    "sacctmgr": "#!/bin/sh\nexit 0\n",
    "sshare": "#!/bin/sh\nexit 0\n",
    "scancel": "#!/bin/sh\nexit 0\n",
    # srun -n1 --cpu-bind=q CMD...: run CMD
    "srun": "#!/bin/sh\nwhile [ $# -gt 0 ]; do case \"$1\" in -*) shift;; *) break;; esac; done\nexec \"$@\"\n",
}


@needs_snakemake
def test_slurm_profile_dry_run(tmp_path):
    proc = snakemake(REPO, "-n", "--workflow-profile", "profiles/slurm", "--", "reports/table3.md")
    assert job_stats(proc.stdout + proc.stderr)["train"] == 24


@needs_snakemake
def test_slurm_profile_submits_gpu_jobs(tmp_path):
    """With fake Slurm commands on PATH: each train/evaluate job is one sbatch asking for one GPU on the GPU
    partition; data preparation and reports stay on the submitting node."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    work = copy_pipeline(tmp_path / "wf")
    env = fake_textvae_env(tmp_path)
    bin_dir = tmp_path / "fakebin"
    for name, text in SLURM_FAKES.items():
        (bin_dir / name).write_text(text.format(python=sys.executable) if name == "sbatch" else text)
        (bin_dir / name).chmod(0o755)
    env["FAKE_SLURM_LOG"] = str(tmp_path / "sbatch.jsonl")
    env.pop("TEXTVAE_FAKE_GPUS")
    proc = snakemake(work, "--workflow-profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "1",
                     "--seconds-between-status-checks", "1", "--", "results/ptb/ours/lam4/seed783435/eval_test.json",
                     "reports/table9.md", env=env, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    calls = [json.loads(line) for line in (tmp_path / "sbatch.jsonl").read_text().splitlines()]
    # the AE, Ours λ=4 from it, and its evaluation: three Slurm jobs
    assert len(calls) == 3
    for argv in calls:
        line = " ".join(argv)
        assert "--gpus=1" in line and "-p gpu" in line and "--cpus-per-task=4" in line
        assert re.search(r"--mem 32\d\d\d", line) and ("-t 2880" in line or "-t 720" in line)
    made = [json.loads(line)[0] for line in Path(env["FAKE_TEXTVAE_LOG"]).read_text().splitlines()]
    assert sorted(made) == ["data", "evaluate", "report", "train", "train"]
    assert (work / "reports" / "table9.md").exists()


# ----------------------------------------------------------------------------------------------------------
# the demo end to end (real textvae commands, tiny settings)
# ----------------------------------------------------------------------------------------------------------

NUMBER = re.compile(r"\|\s*-?\d+\.\d+(?: ± \d+\.\d+)?\s*\|")


def assert_reports_hold_numbers(report_dir: Path, plan: pipeline.Plan, exp_name: str = "demo",
                                verdicts: bool = True) -> None:
    exp = plan.experiment(exp_name)
    for item in plan.report_items(exp):
        path = report_dir / item
        assert path.exists() and path.stat().st_size > 0, item
        if item.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            continue
        text = path.read_text()
        if item in ("claims.md", "index.md"):
            # every claim of the paper gets a computed verdict in the demo (all its tables are run)
            assert "## The paper's claims" in text, text
            assert not verdicts or ("⏳ not run" not in text and "❔" not in text), text
        if item != "claims.md":
            assert "missing" not in text.split("## Settings")[0].split("## The paper's claims")[0], \
                f"{item}:\n{text}"
        if item == "table9.md":
            assert re.search(r"\|\s*\d+ / \d+\s*\|", text), text
        elif item == "table7.md":
            assert re.search(r"\|\s*0\.0\s*\|", text) and re.search(r"\|\s*1\.0\s*\|", text), text
        elif item not in ("index.md", "claims.md"):   # claims: verdicts checked above
            assert NUMBER.search(text), f"{item} holds no computed number:\n{text}"
        assert "(paper)" not in text


@needs_snakemake
@pytest.mark.slow
def test_demo_end_to_end_through_snakemake(tmp_path):
    work = copy_pipeline(tmp_path / "wf")
    edit_params(work, tiny_demo)
    snakemake(work, "--cores", "2", "demo", timeout=1500)
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    assert_reports_hold_numbers(work / "reports" / "demo", plan)
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", "demo").stdout
    # the HTML report: one self-contained file with every table and figure of the experiment, and run times
    snakemake(work, "--cores", "1", "--report", "report.html", "demo")
    assert_html_report_complete((work / "report.html").read_text(), plan, "demo")


@needs_dvc
@pytest.mark.slow
def test_demo_end_to_end_through_dvc_with_a_local_remote(tmp_path):
    work = copy_pipeline(tmp_path / "wf")
    edit_params(work, tiny_demo)
    run([sys.executable, "-m", "textvae", "pipeline", "dvc-yaml"], work)
    git_env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "init", "-q"], work)
    run(["dvc", "init", "-q"], work)
    run(["dvc", "config", "core.analytics", "false"], work)
    run(["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], work)
    run(["dvc", "repro"], work, {"OMP_NUM_THREADS": "1"}, timeout=1800)
    plan = pipeline.Plan.load(work / "params.yaml", work / pipeline.SCHEMA)
    assert_reports_hold_numbers(work / "reports" / "demo", plan)
    # every evaluated run's metrics (DVC `metrics`), the training curves (DVC `plots`)
    shown = run(["dvc", "metrics", "show", "--json"], work).stdout
    evaluated = [j.outputs[0] for j in plan.all_jobs() if j.rule == "evaluate"]
    metrics = {p: d["data"] for ws in json.loads(shown).values() for p, d in ws["data"].items() if "data" in d}
    assert set(evaluated) <= set(metrics)
    for p in evaluated:   # the LSTM-LM has an exact PPL and no latent
        assert ({"ppl"} if "/lm/" in p else {"ppl", "rec", "kl", "mi", "au"}) <= set(metrics[p]), p
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], work)
    assert "curves.json" in (tmp_path / "plots" / "index.html").read_text()
    run(["git", "add", "-A"], work, git_env)
    run(["git", "commit", "-q", "-m", "demo"], work, git_env)
    run(["dvc", "push"], work)
    # wipe the cache and every cached output (data, checkpoints, results), then get them back from the remote;
    # the reports are committed to git (not cached by DVC)
    shutil.rmtree(work / ".dvc" / "cache")
    for d in ("data", "results"):
        shutil.rmtree(work / d)
    assert "Data and pipelines are up to date" not in run(["dvc", "status"], work).stdout
    run(["dvc", "pull"], work)
    assert_reports_hold_numbers(work / "reports" / "demo", plan)
    assert (work / "results" / "synthetic" / "ours" / "lam3" / "seed783435" / "best.pt").exists()
    status = run(["dvc", "status"], work).stdout
    assert "Data and pipelines are up to date" in status, status
