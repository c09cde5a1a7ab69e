"""The paper's tables, one registry: each table's kind (an evaluation, a probe, or the model sizes), its title and,
for the language-modelling tables, its metric columns. The pipeline (which runs and result files a table needs),
the Snakemake report rule (which items exist) and the reports (which renderer, which title) all read it here.

Also the paper's claims (``paper_claims.yaml``, as data): the pipeline needs to know which tables they read.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

SHORT = ("ppl", "rec", "au", "kl", "neg_elbo")                                  # Tables 1-3
FULL = ("nll", "ppl", "rec", "mi", "au", "neg_elbo", "elbo_ppl", "kl")         # Tables 10-11


@dataclass(frozen=True)
class Table:
    name: str
    kind: str                              # "lm" (evaluation), a probe's name, or "sizes"
    title: str
    columns: tuple[str, ...] | None = None  # the metrics of an "lm" table


TABLES: dict[str, Table] = {t.name: t for t in (
    Table("table1", "lm", "Table 1: language modelling on PTB test, baselines", SHORT),
    Table("table2", "lm", "Table 2: PTB test with encoder pretraining", SHORT),
    Table("table3", "lm", "Table 3: language modelling on PTB and Yahoo test", SHORT),
    Table("table4", "bleu", "Table 4: reconstruction BLEU (SNLI test)"),
    Table("table5", "smoothness", "Table 5: smoothness, PCC of latent L2 and word edit distance (SNLI test)"),
    Table("table6", "noisy", "Table 6: noisy reconstruction loss (SNLI test) by number of word swaps"),
    Table("table7", "interpolate", "Table 7: interpolation between prior samples (SNLI)"),
    Table("table8", "classify", "Table 8: classification accuracy % on Yelp by number of labelled examples"),
    Table("table9", "sizes", "Table 9: sizes of word embeddings and hidden states"),
    Table("table10", "lm", "Table 10: language modelling, all target rates (PTB, SNLI)", FULL),
    Table("table11", "lm", "Table 11: language modelling, all target rates (Yahoo)", FULL),
    Table("appendix_b", "copy", "Appendix B: copying behaviour (prior samples vs nearest training sentence)"),
)}
TABLE_KINDS = {name: t.kind for name, t in TABLES.items()}
# the report items Snakemake's report rule builds from results: a table, the claims, or a figure
REPORT_ITEM_PATTERN = r"(" + "|".join(TABLES) + r"|claims)\.md|fig_[a-z]+_[a-z0-9_]+\.png"


@lru_cache(maxsize=1)
def claims_data() -> dict:
    """The paper's claims and the experiments' acceptance checks, as data."""
    import yaml
    from importlib.resources import files

    return yaml.safe_load(files("textvae.plan").joinpath("paper_claims.yaml").read_text(encoding="utf-8"))


def claims_for(exp_name: str, data: dict | None = None) -> list[dict]:
    """The paper's claims, then the experiment's own acceptance checks (marked ``acceptance``)."""
    data = claims_data() if data is None else data
    own = [dict(c, acceptance=True) for group in data.get("acceptance") or [] if exp_name in group["experiments"]
           for c in group["claims"]]
    return list(data.get("claims") or []) + own


def claim_tables(exp_name: str, data: dict | None = None) -> list[str]:
    """The tables that the experiment's claims read, in order of first use."""
    return list(dict.fromkeys(c["table"] for c in claims_for(exp_name, data)))
