"""The language-modelling tables (Tables 1-3, 10, 11: every metric of ``eval_test.json``, ± its uncertainty) and
the model sizes (Table 9)."""
from __future__ import annotations

from textvae.modeling import methods
from textvae.plan.tables import TABLES
from textvae.reports.formatting import DATASET_NAMES, fmt, md_table, reference, row_label

LM_COLUMNS = {  # key: (header, decimals)
    "nll": ("NLL", 2), "ppl": ("PPL", 2), "rec": ("Recon", 2), "mi": ("MI", 2), "au": ("AU", 0),
    "neg_elbo": ("-ELBO", 2), "elbo_ppl": ("ELBO PPL", 2), "kl": ("KL", 2),
}


def lm_table(rep, table: str) -> str:
    columns = TABLES[table].columns
    ref = reference()["lm"]
    parts = []
    for sec in rep.plan.sections(rep.exp, table):
        rep.datasets_seen.append(sec.dataset)
        body = []
        for row, prow in zip(sec.rows, sec.paper_rows):
            paper_ds = sec.paper_datasets[0]
            pref = ref.get(paper_ds, {}).get(prow.key, {}) if rep.paper else {}
            label = row_label(row, table) + ("*" if pref.get("he_et_al") else "")
            cells = [label]
            if row.paper_only:
                for c in columns:
                    cells += ["—", fmt(pref.get(c), LM_COLUMNS[c][1]) if c in pref else "—", ""]
                body.append(cells)
                continue
            runs = rep.runs(sec.dataset, row)
            # what the paper reports for the AE (SPEC §3.10) and the LSTM-LM (no latent variable)
            shown = getattr(methods.METHODS.get(row.method), "shows", None) or columns
            for c in columns:
                if c in shown:
                    cells += rep.metric_cells(runs, lambda r: r.eval_json, (c,), pref.get(c),
                                               LM_COLUMNS[c][1])
                else:
                    cells += ["—", "—", ""] if rep.paper else ["—"]
            body.append(cells)
        header = ["Method"] + rep.headers([LM_COLUMNS[c][0] for c in columns])
        parts.append(rep.section_title(sec) + md_table(header, body))
        if rep.paper and any(ref.get(sec.paper_datasets[0], {}).get(p.key, {}).get("he_et_al")
                              for p in sec.paper_rows):
            rep.notes.append("Rows marked * are He et al. (2019)'s published numbers in the paper (their MI is "
                              "computed per batch, SPEC §5.4 variant H, not comparable with the other rows).")
        if any(r.paper_only for r in sec.rows):
            rep.notes.append("+ cyclic (Liu et al. reported) is Liu et al.'s own published result; there is "
                              "no run of ours for it.")
    return "\n\n".join(parts)


def sizes_table(rep, table: str) -> str:
    ref = reference()["sizes"]
    datasets = rep.plan._table_datasets(rep.exp, table)
    paper_of = {}
    for ds in rep.plan.params["tables"][table]["datasets"]:
        paper_of.setdefault(rep.exp.map_dataset(ds), ds)
    header = ["size"] + [h for ds in datasets for h in (rep.headers([DATASET_NAMES.get(ds, ds)]))]
    body = []
    for label, keys in (("word embedding (enc / dec)", ("enc_emb", "dec_emb")),
                        ("encoder hidden", ("enc_hidden",)), ("decoder hidden", ("dec_hidden",)),
                        ("latent nz", ("nz",))):
        cells = [label]
        for ds in datasets:
            sizes = rep.plan.datasets[ds]["sizes"]
            ours = " / ".join(str(sizes.get(k, 32 if k == "nz" else "—")) for k in keys)
            if rep.paper:
                pk = {"enc_emb": "emb", "enc_hidden": "enc_hidden", "dec_hidden": "dec_hidden"}.get(keys[0])
                pv = ref.get(paper_of[ds], {}).get(pk) if pk else (32 if keys[0] == "nz" else None)
                paper = "—" if pv is None else (f"{pv} / {pv}" if len(keys) == 2 else str(pv))
                same = "" if pv is None else ("=" if ours == paper else "differs")
                cells += [ours, paper, same]
            else:
                cells.append(ours)
        body.append(cells)
    rep.datasets_seen += datasets
    rep.notes.append("Our sizes are the ones params.yaml gives each dataset (`datasets.NAME.sizes`); "
                      "1-layer LSTMs, nz = 32 (SPEC §2.3).")
    return md_table(header, body)
