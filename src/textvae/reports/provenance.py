"""``textvae provenance EXPERIMENT``: the audit trail of an experiment's reports.

Copies the small result files that the experiment's tables and figures read (``eval_test.json``,
``probe_*.json``; with each run's ``config.json``, ``metrics.jsonl`` and ``train.log``, never checkpoints) from
``results/`` to ``REPORT_DIR/runs/`` under the same relative paths, and writes ``REPORT_DIR/provenance.md``:
the commit, the command, the machine, and per run the epochs trained, the training and evaluation wall time
and the sha256 of the checkpoint that was evaluated. ``results/`` is DVC's and git ignores it; the copies are
what a reader audits in the repository.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

from textvae.core.errors import DataError
from textvae.plan.pipeline import Plan
from textvae.core.rundir import atomic_write_text
from textvae.plan.runs import Run
from textvae.config.settings import PARAMS, load_params

STAMP = "%Y-%m-%d %H:%M:%S"   # the training log's timestamps (training.py)


def experiment_runs(plan: Plan, exp) -> tuple[list[Run], list[str]]:
    """The runs the experiment's tables and figures show, and every result file of theirs that they read."""
    runs = [run for item in plan.report_items(exp) for run in plan.item_runs(exp, item)[0]]
    files = [f for f in plan.experiment_targets(exp.name) if f.startswith("results/")]
    return list(dict.fromkeys(runs)), files


def _log_span(log: Path) -> tuple[str | None, str | None, float | None]:
    """First and last timestamp of a training log and the seconds between them."""
    if not log.is_file():
        return None, None, None
    stamps = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            stamps.append(dt.datetime.strptime(line[:19], STAMP))
        except ValueError:
            continue
    if not stamps:
        return None, None, None
    return stamps[0].strftime(STAMP), stamps[-1].strftime(STAMP), (stamps[-1] - stamps[0]).total_seconds()


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _code_changed() -> bool:
    """Whether tracked files outside ``reports/`` differ from HEAD (the reports being rewritten are outputs,
    not a change of what produced them)."""
    return _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports") not in ("", "unknown")


def run_rows(root: Path, runs: list[Run]) -> list[dict]:
    rows = []
    for run in runs:
        d = root / run.dir
        metrics = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()] \
            if (d / "metrics.jsonl").is_file() else []
        cfg = json.loads((d / "config.json").read_text()) if (d / "config.json").is_file() else {}
        ev = json.loads((d / "eval_test.json").read_text()) if (d / "eval_test.json").is_file() else {}
        start, end, train_s = _log_span(d / "train.log")
        rows.append({"run": run.run_id, "epochs": len(metrics), "max_epochs": cfg.get("max_epochs"),
                     "train_examples": cfg.get("train_examples"), "precision": cfg.get("precision"),
                     "train_start": start, "train_end": end, "train_seconds": train_s,
                     "sentences_per_s": (sum(m.get("sentences_per_s", 0) for m in metrics) / len(metrics)
                                         if metrics else None),
                     "eval_seconds": ev.get("seconds"), "eval_sentences": ev.get("sentences"),
                     "iw_samples": ev.get("iw_samples"), "device": ev.get("device"),
                     "checkpoint_sha256": (ev.get("checkpoint") or {}).get("sha256")})
    return rows


def _count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _minutes(s: float | None) -> str:
    return "—" if s is None else f"{s / 60:.1f}"


def write(plan: Plan, exp_name: str, root: str | Path = ".", command: str | None = None) -> Path:
    exp = plan.experiment(exp_name)
    root = Path(root)
    out = Path(exp.report_dir)
    runs, files = experiment_runs(plan, exp)
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise DataError(f"{len(missing)} result files of experiment {exp_name!r} are missing, e.g. {missing[0]}; "
                        f"run `snakemake {exp_name}` first")
    copies = files + [f"{run.dir}/{name}" for run in runs for name in ("config.json", "metrics.jsonl", "train.log")
                      if (root / run.dir / name).is_file()]
    dest = out / "runs"
    if dest.exists():
        shutil.rmtree(dest)
    for rel in dict.fromkeys(copies):
        target = dest / Path(rel).relative_to("results")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
    rows = run_rows(root, runs)
    total_train = sum(r["train_seconds"] or 0 for r in rows)
    total_eval = sum(r["eval_seconds"] or 0 for r in rows)
    starts = [r["train_start"] for r in rows if r["train_start"]]
    import torch

    lines = [f"# Provenance: experiment `{exp_name}`", "",
             f"- command: `{command or f'snakemake --cores {os.cpu_count()} {exp_name}'}`",
             f"- commit: `{_git('rev-parse', 'HEAD')}`" + (" (with uncommitted changes outside reports/)"
                                                          if _code_changed() else ""),
             f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
             f"Python {platform.python_version()}, torch {torch.__version__}",
             f"- first training started {min(starts) if starts else '—'}; this page written "
             f"{dt.datetime.now().strftime(STAMP)}",
             f"- job time summed over runs: training {total_train / 3600:.2f} h, evaluation {total_eval / 3600:.2f} h "
             f"(jobs ran side by side, so the wall time is shorter)",
             f"- the result files behind every table: [`runs/`](runs/) (same paths as under `results/`, "
             f"{len(dict.fromkeys(copies))} files; no checkpoints)", "",
             "| run | epochs (max) | training sentences | precision | training min | sentences/s | "
             "eval sentences | K | eval min | device | checkpoint sha256 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['run']}` | {r['epochs']} ({r['max_epochs']}) | {_count(r['train_examples'])} | "
                     f"{r['precision'] or '—'} | {_minutes(r['train_seconds'])} | "
                     f"{'—' if r['sentences_per_s'] is None else round(r['sentences_per_s'])} | "
                     f"{r['eval_sentences'] or '—'} | {r['iw_samples'] or '—'} | {_minutes(r['eval_seconds'])} | "
                     f"{r['device'] or '—'} | `{(r['checkpoint_sha256'] or '—')[:12]}` |")
    lines.append("")
    atomic_write_text("\n".join(lines), out / "provenance.md")
    return out / "provenance.md"


def register(subparsers) -> None:
    p = subparsers.add_parser("provenance", help="copy an experiment's result files next to its reports and "
                              "write provenance.md", description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", help="experiment of params.yaml")
    p.add_argument("--params", default=PARAMS, help="parameters file (default params.yaml)")
    p.add_argument("--root", default=".", help="directory holding results/ (default .)")
    p.add_argument("--command", dest="produced_by",   # not args.command: that is the subcommand's name
                   help="the command that produced the results (default snakemake --cores N EXP)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    plan = Plan(load_params(args.params), args.params)
    print(f"wrote {write(plan, args.experiment, args.root, args.produced_by)}")
    return 0
