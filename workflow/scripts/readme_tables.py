"""The README's two tables of the demo, rebuilt from the committed reports (they compute nothing new).

    python workflow/scripts/readme_tables.py claims demo demo_seeds demo_corpus2 --labels demo "3 seeds" "corpus 2"
    python workflow/scripts/readme_tables.py summary demo

`claims`: each paper claim, its table, the verdict of every experiment (from `reports/EXP/claims.md`) and the
numbers that decided it in the first. `summary`: the VAE, +anneal, the AE and Ours at each λ with PPL,
Recon, KL, MI, AU (Table 10), BLEU (Table 4) and classification accuracy (Table 8) of one experiment.
tests/test_claims.py checks that README.md holds exactly these outputs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from textvae.reports.formatting import md_table


def md_tables(path: Path) -> list[tuple[str, list[str], list[list[str]]]]:
    """``[(heading, header cells, row cells)]`` for every markdown table in ``path``; ``heading`` is the last
    ``#`` heading above the table."""
    tables, heading, lines = [], "", path.read_text(encoding="utf-8").splitlines() + [""]
    block: list[list[str]] = []
    for line in lines:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2:
            tables.append((heading, block[0], block[2:]))
        block = []
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
    return tables


def claims_table(reports: Path, experiments: list[str], labels: list[str]) -> str:
    tables = []
    for exp in experiments:
        claims: dict[str, dict[str, str]] = {}
        for heading, header, rows in md_tables(reports / exp / "claims.md"):
            if header[:1] != ["Claim"]:
                continue
            for text, where, verdict, numbers in rows:
                text += " *(demo check)*" if "acceptance" in heading else ""
                claims[text] = {"table": where.split("]", 1)[0].lstrip("[").replace("Table ", "T"),
                                "mark": verdict.split()[0], "numbers": numbers}
        if not claims:
            raise SystemExit(f"{reports / exp / 'claims.md'}: no claims table found")
        tables.append(claims)
    rows = [[text, c["table"], *(t.get(text, {}).get("mark", "–") for t in tables), c["numbers"]]
            for text, c in tables[0].items()]
    return md_table(["Claim", "Table", *labels, f"{labels[0]}'s numbers"], rows,
                    ["left", "left", *["center"] * len(labels), "left"])


def summary_table(reports: Path, experiment: str) -> str:
    def method_rows(table: str) -> tuple[list[str], dict[str, dict[str, str]]]:
        path = reports / experiment / f"{table}.md"
        for _, header, rows in md_tables(path):
            if header[:1] == ["Method"]:
                return header, {r[0]: dict(zip(header, r)) for r in rows}
        raise SystemExit(f"{path}: no table with a Method column")

    _, t10 = method_rows("table10")
    _, t4 = method_rows("table4")
    h8, t8 = method_rows("table8")
    wanted = ["VAE", "+ anneal", "AE"] + sorted((m for m in t10 if m.startswith("Ours")),
                                                key=lambda m: float(m.split("=")[1].rstrip(")")))
    rows = []
    for m in wanted:
        r10, r8 = t10[m], t8.get(m, {})
        linear = " / ".join(r8[k] for k in h8[2:]) if r8 else "—"
        rows.append([m, *(r10.get(k, "—") for k in ("PPL", "Recon", "KL", "MI", "AU")),
                     t4.get(m, {}).get("BLEU", "—"), r8.get("0 (GMM)", "—"), linear])
    return md_table(["Method", "PPL", "Recon", "KL", "MI", "AU", "BLEU", "GMM acc.",
                     f"linear acc., {' / '.join(h8[2:])} labels"], rows, ["left"] + ["right"] * 8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("table", choices=("claims", "summary"))
    ap.add_argument("experiments", nargs="+")
    ap.add_argument("--reports", default="reports", help="reports folder (default reports)")
    ap.add_argument("--labels", nargs="+", default=None, help="claims: column headers (default: the names)")
    args = ap.parse_args(argv)
    reports = Path(args.reports)
    if args.table == "summary":
        if len(args.experiments) != 1:
            ap.error("summary takes one experiment")
        sys.stdout.write(summary_table(reports, args.experiments[0]) + "\n")
        return 0
    labels = args.labels or args.experiments
    if len(labels) != len(args.experiments):
        ap.error("--labels needs one label per experiment")
    sys.stdout.write(claims_table(reports, args.experiments, labels) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
