# Shared by every rule: the plan of jobs (textvae.plan.pipeline; the Snakefile has checked params.yaml), wildcard
# shapes, and the GPU-slot wrapper.
import sys
from pathlib import Path

from textvae.workflow import dvc_stages
from textvae.plan import pipeline, tables
from textvae.core.errors import ConfigError

try:
    P = pipeline.Plan(config, "params.yaml")
    _dvc_runs = Path(dvc_stages.RUNS_FILE)
    _dvc_stale = _dvc_runs.exists() and _dvc_runs.read_text() != dvc_stages.runs_yaml(P)
except ConfigError as exc:
    sys.exit(str(exc))
if _dvc_stale:
    print(f"textvae: note: {dvc_stages.RUNS_FILE} differs from params.yaml; run `textvae pipeline dvc-yaml` "
          "before `dvc repro` (snakemake is not affected)", file=sys.stderr)


onstart:
    # `dvc repro` deletes a stage's outputs before it runs the stage: not on this folder while snakemake runs
    # (it finds DVC's repository lock taken and refuses to start), nor snakemake while dvc runs (issue 26)
    try:
        dvc_stages.exclude_dvc_repro()
    except ConfigError as exc:
        sys.exit(str(exc))


# Runtime settings (profiles' `config:`), not experiment knobs: jobs per GPU for the slot pool.
GPU_SLOTS_PER_DEVICE = config.get("gpu_slots_per_device", 1)
# every GPU job goes through the slot pool (textvae.workflow.gpu_slots); it runs on the CPU when there is no GPU
GPU_RUN = f"{sys.executable} -m textvae.workflow.gpu_slots --slots-per-device {GPU_SLOTS_PER_DEVICE} --"
# the software of every job (used with `--sdm conda`; by default the current environment runs the jobs)
ENV = "../envs/textvae.yaml"
REPORT_DIRS = sorted({e.report_dir for e in P.experiments.values()}, key=len, reverse=True)


wildcard_constraints:
    dataset=r"[a-z][a-z0-9_]*",
    run=r"[a-z_]+(/lam[0-9]+(\.[0-9]+)?)?",
    seed=r"[0-9]+",
    probe="|".join(pipeline.PROBES),


def run_of(wc):
    return pipeline.Run.parse(wc.dataset, wc.run, wc.seed)


def report_job(wc, item=None):
    return P.report_job(P.experiment_for_report_dir(wc.root), item or wc.item)
