"""One table of the paper's claims across experiments, from their committed `reports/EXP/claims.md`.

    python workflow/scripts/claims_overview.py demo demo_seeds demo_corpus2 [--labels demo "3 seeds" "corpus 2"]

prints a markdown table: each claim, its table, the verdict mark of every experiment and the numbers that
decided it in the first one (the README's "What the demo shows" table is this output). It reads the
claims.md files that `textvae report` wrote and computes nothing new.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textvae.report_format import md_table


def read_claims(path: Path) -> dict[str, dict[str, str]]:
    """``{claim text: {"table", "mark", "numbers"}}`` of one claims.md, in its order."""
    out: dict[str, dict[str, str]] = {}
    acceptance = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            acceptance = "acceptance" in line
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("Claim", "") or set(cells[0]) <= set("-:"):
            continue
        text, where, verdict, numbers = cells
        table = where.split("]", 1)[0].lstrip("[").replace("Table ", "T")
        out[text + (" *(demo check)*" if acceptance else "")] = {
            "table": table, "mark": verdict.split()[0], "numbers": numbers}
    if not out:
        raise SystemExit(f"{path}: no claims table found")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiments", nargs="+")
    ap.add_argument("--reports", default="reports", help="reports folder (default reports)")
    ap.add_argument("--labels", nargs="+", default=None, help="column headers (default: the experiment names)")
    args = ap.parse_args(argv)
    labels = args.labels or args.experiments
    if len(labels) != len(args.experiments):
        ap.error("--labels needs one label per experiment")
    tables = [read_claims(Path(args.reports) / e / "claims.md") for e in args.experiments]
    rows = [[text, c["table"], *(t.get(text, {}).get("mark", "–") for t in tables), c["numbers"]]
            for text, c in tables[0].items()]
    sys.stdout.write(md_table(["Claim", "Table", *labels, f"{labels[0]}'s numbers"], rows,
                              ["left", "left", *["center"] * len(labels), "left"]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
