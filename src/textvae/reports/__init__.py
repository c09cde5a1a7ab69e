"""Reports: tables with the paper's numbers beside ours, figures, the paper's claims and their verdicts, provenance. Imports plan and below."""
