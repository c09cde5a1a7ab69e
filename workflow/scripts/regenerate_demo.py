"""Regenerate every committed demo report in one command: the runs, provenance and the README's demo tables.

    python workflow/scripts/regenerate_demo.py [--cores N] [--no-run] [--command TEXT]

1. ``snakemake --cores N demo``, then ``snakemake --cores N demo_early demo_seeds demo_corpus2`` (skipped with
   ``--no-run``: results/ already holds them);
2. ``textvae provenance EXP`` for each of the four experiments (``reports/EXP/provenance.md`` and ``runs/``);
3. the README's two demo tables rewritten in place from the new reports (``readme_tables.py``; the claims
   table has a column per experiment of EXPERIMENTS whose reports exist; tests/test_claims.py checks that
   the README holds exactly these tables).

Run it from the repository root; the reports are then ready to commit (docs/demo.md).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = {"demo": "demo", "demo_seeds": "3 seeds", "demo_corpus2": "corpus 2", "demo_early": "label early"}
SCRIPT = ROOT / "workflow" / "scripts" / "readme_tables.py"


def committed(reports: Path = ROOT / "reports") -> dict[str, str]:
    """The experiments of EXPERIMENTS whose reports are there (the README shows exactly those)."""
    return {exp: label for exp, label in EXPERIMENTS.items() if (reports / exp / "claims.md").is_file()}


def claims_command(columns: dict[str, str] | None = None) -> list[str]:
    columns = EXPERIMENTS if columns is None else columns
    return ["claims", *columns, "--labels", *columns.values()]


def table_output(args: list[str]) -> str:
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--reports", str(ROOT / "reports")], check=True,
                          capture_output=True, text=True).stdout


def replace_table(text: str, *cells: str, new: str) -> str:
    """``text`` with its markdown table whose header's first cells are ``cells`` (padding ignored) replaced by
    ``new``."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines)
                 if [c.strip() for c in line.split("|")[1:len(cells) + 1]] == list(cells) and line.startswith("|"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "".join(lines[:start]) + new + "".join(lines[end:])


def update_readme() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    text = replace_table(text, "Claim", new=table_output(claims_command(committed())))
    text = replace_table(text, "Method", "PPL", new=table_output(["summary", "demo"]))
    readme.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--no-run", action="store_true", help="results/ is complete: only provenance and README")
    ap.add_argument("--command", default=None, help="the command recorded in provenance.md")
    args = ap.parse_args(argv)
    rest = [e for e in EXPERIMENTS if e != "demo"]
    if not args.no_run:
        subprocess.run(["snakemake", "--cores", str(args.cores), "demo"], check=True, cwd=ROOT)
        subprocess.run(["snakemake", "--cores", str(args.cores), *rest], check=True, cwd=ROOT)
    command = args.command or f"python workflow/scripts/regenerate_demo.py --cores {args.cores}"
    for exp in EXPERIMENTS:
        subprocess.run(["textvae", "provenance", exp, "--command", command], check=True, cwd=ROOT)
    update_readme()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
