"""``textvae pipeline {check,dvc-yaml,dvc-run,jobs}``: the command line of the experiment pipeline (the jobs
themselves are :mod:`textvae.plan.pipeline`'s plan; the DVC stages, :mod:`textvae.workflow.dvc_stages`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from textvae.core.errors import ConfigError
from textvae.plan.pipeline import Plan
from textvae.core.rundir import atomic_write_text
from textvae.config.settings import PARAMS, SCHEMA


def register(subparsers) -> None:
    p = subparsers.add_parser("pipeline", help="the experiment pipeline: check params.yaml, the run lists of dvc.yaml",
                              description="The jobs params.yaml asks for (the Snakefile and dvc.yaml run them).")
    sub = p.add_subparsers(dest="pipeline_command", metavar="{check,dvc-yaml,dvc-run,jobs}")
    sub.required = True

    def common(q):
        q.add_argument("--params", default=PARAMS, help="parameters file (default params.yaml)")
        q.add_argument("--schema", default=SCHEMA, help=f"JSON schema (default {SCHEMA})")

    q = sub.add_parser("check", help="validate params.yaml (one line naming the key at fault)")
    common(q)
    q.set_defaults(func=_cmd_check)

    q = sub.add_parser("dvc-yaml", help="write the run lists of dvc.yaml (workflow/dvc_runs.yaml) from params.yaml",
                       description="dvc.yaml is a template; this writes the run lists it iterates over that DVC "
                                   "cannot compute from params.yaml, and sets each stage's code dependencies in "
                                   "dvc.yaml to the modules its command imports (or --check that both are current).")
    common(q)
    q.add_argument("--out", default=None, help="output file (default workflow/dvc_runs.yaml; - for stdout)")
    q.add_argument("--check", action="store_true", help="exit 1 if the file differs from what would be written")
    q.add_argument("--stamp", metavar="FILE", help="with --check: when both are current, write FILE (dvc.yaml's "
                   "run_lists stage, on which every report stage depends)")
    q.set_defaults(func=_cmd_dvc_yaml)

    q = sub.add_parser("dvc-run", help="run one DVC stage (dvc.yaml's commands): checks the run lists first",
                       description="data DATASET | train RUN_DIR | evaluate RUN_DIR | probe NAME RUN_DIR | "
                                   "report OUT: builds the stage's command from params.yaml and runs it.")
    q.add_argument("--params", default=PARAMS, help="parameters file (default params.yaml)")
    q.add_argument("stage", choices=["data", "train", "evaluate", "probe", "report"])
    q.add_argument("target", nargs="+", help="DATASET, RUN_DIR, NAME RUN_DIR or OUT")
    q.set_defaults(func=_cmd_dvc_run)

    q = sub.add_parser("jobs", help="list the jobs (name, command) of the pipeline")
    common(q)
    q.add_argument("--experiment", action="append", help="only this experiment (repeatable)")
    q.add_argument("--json", action="store_true", help="one JSON object per job")
    q.set_defaults(func=_cmd_jobs)


def _cmd_check(args) -> int:
    plan = Plan.load(args.params, args.schema)
    n = len(plan.all_jobs())
    print(f"{args.params}: ok ({len(plan.experiments)} experiments, {n} jobs)")
    return 0


def _cmd_dvc_yaml(args) -> int:
    from textvae.workflow import dvc_stages

    args.out = args.out or dvc_stages.RUNS_FILE
    text = dvc_stages.runs_yaml(Plan.load(args.params, args.schema))
    dvc_yaml = Path(args.params).parent / "dvc.yaml"
    dvc_text = dvc_yaml.read_text() if dvc_yaml.exists() else None
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).exists() else ""
        if current != text:
            print(f"{args.out} is out of date with {args.params}: run `textvae pipeline dvc-yaml`", file=sys.stderr)
            return 1
        if dvc_text is not None and dvc_stages.with_code_deps(dvc_text) != dvc_text:
            print(f"{dvc_yaml}: a stage's code dependencies are out of date: run `textvae pipeline dvc-yaml`",
                  file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        if args.stamp:    # always the same text: the stages that depend on it rerun for reasons of their own
            atomic_write_text(f"{args.out} and dvc.yaml's code dependencies were current with {args.params}\n",
                              args.stamp)
        return 0
    if dvc_text is not None and dvc_stages.with_code_deps(dvc_text) != dvc_text:
        atomic_write_text(dvc_stages.with_code_deps(dvc_text), dvc_yaml)
        print(f"updated the code dependencies in {dvc_yaml}")
    if args.out == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(text, args.out)
        print(f"wrote {args.out}")
    return 0


def _cmd_dvc_run(args) -> int:
    from textvae.workflow import dvc_stages

    want = 2 if args.stage == "probe" else 1
    if len(args.target) != want:
        raise ConfigError(f"dvc-run {args.stage}: expected {want} argument(s), got {' '.join(args.target)}")
    probe, target = (args.target[0], args.target[1]) if args.stage == "probe" else (None, args.target[0])
    return dvc_stages.run_stage(args.stage, target, probe, args.params)


def _cmd_jobs(args) -> int:
    plan = Plan.load(args.params, args.schema)
    for job in plan.all_jobs(args.experiment):
        if args.json:
            print(json.dumps({"name": job.name, "rule": job.rule, "cmd": job.cmd, "inputs": job.inputs,
                              "outputs": job.outputs, "params": job.params, "gpu": job.gpu}))
        else:
            print(f"{job.name}\t{job.cmd}")
    return 0
