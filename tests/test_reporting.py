"""Reports: the paper's reference numbers, tables with paper / ours / Δ, mean ± std over seeds, named missing
runs, figures and the index — on fabricated run results (no training)."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import write_json
from textvae.plan import pipeline
from textvae.plan import tables
from textvae.reports import reporting
from textvae.plan.pipeline import Plan, Row, Run


def fake_eval(ppl: float, rec: float = 90.0, kl: float = 5.0) -> dict:
    return {"nll": 100.0, "ppl": ppl, "rec": rec, "kl": kl, "neg_elbo": rec + kl, "elbo_ppl": ppl + 5, "mi": 3.0,
            "au": 32, "iw_samples": 1000, "device": "cuda:0 (test GPU)"}


def test_reference_covers_every_row_of_the_paper_tables(params):
    ref = reporting.reference()
    plan = Plan(params)
    paper = plan.experiment("paper")
    for table, kind in tables.TABLE_KINDS.items():
        if kind == "sizes":
            continue
        for sec in plan.sections(paper, table):
            for row in sec.paper_rows:
                ds = sec.paper_datasets[0]
                if kind == "lm":
                    assert row.key in ref["lm"][ds], (table, ds, row.key)
                elif kind in ("bleu", "smoothness", "noisy"):
                    assert row.key in ref["probes"][ds][kind], (table, row.key)
                elif kind == "classify":
                    assert row.key in ref["classify"][ds], (table, row.key)
                elif kind == "interpolate":
                    assert len(ref["interpolate"][ds][row.key]) == 6
                elif kind == "copy":
                    assert row.method in ref["copy"][ds]


def test_reference_spot_values():
    ref = reporting.reference()
    assert ref["lm"]["ptb"]["ours@4"]["ppl"] == 96.17 and ref["lm"]["ptb"]["ours@4"]["au"] == 32
    assert ref["lm"]["ptb"]["fb@7"] == {"ppl": 104.06, "rec": 98.97, "au": 32, "kl": 6.74, "neg_elbo": 105.72}
    assert ref["lm"]["yahoo"]["aggressive"]["he_et_al"] is True
    assert ref["lm"]["snli"]["fbp@7"]["nll"] == 33.07
    assert ref["probes"]["snli"]["noisy"]["ours@4"]["4"] == 30.85
    assert ref["classify"]["yelp"]["ours@6"]["linear"]["100"] == 83.8
    assert ref["copy"]["ptb"] == {"vae": 13.68, "ours": 14.11, "train_length": 22.1}


def test_lm_table_paper_ours_diff_and_seeds(tmp_path, params):
    params["seeds"] = [1, 2]
    plan = Plan(params)
    exp = plan.experiment("paper")
    # two seeds of Ours λ=4 on PTB; everything else of table 3 missing
    write_json(tmp_path, Run("ptb", "ours", 4.0, 1).eval_json, fake_eval(96.0))
    write_json(tmp_path, Run("ptb", "ours", 4.0, 2).eval_json, fake_eval(98.0))
    out = tmp_path / "reports" / "table3.md"
    missing = reporting.render(plan, exp, "table3", out, tmp_path)
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| Ours (λ = 4)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # PPL: ours mean ± std, paper, Δ
    assert cells[1] == "97.00 ± 1.41" and cells[2] == "96.17" and cells[3] == "+0.83"
    # missing runs are named, not invented
    assert "results/ptb/lm/seed1/eval_test.json" in text and len(missing) == 2 * 21
    lm_row = next(line for line in text.splitlines() if line.startswith("| LSTM-LM "))
    assert [c.strip() for c in lm_row.strip("|").split("|")][1:3] == ["—", "100.47"]
    # paper-only row and He et al. rows are marked
    assert "+ cyclic (Liu et al. reported)" in text and "| + aggressive* " in text
    assert "cuda:0 (test GPU)" in text and "seeds [1, 2]" in text and "fbp_mode=per_example" in text


def test_demo_tables_have_no_paper_column(tmp_path, params):
    plan = Plan(params)
    exp = plan.experiment("demo")
    sec, = plan.sections(exp, "table1")
    for row in sec.rows:
        for run in plan.runs_of(exp, "synthetic", [row]):
            write_json(tmp_path, run.eval_json, fake_eval(20.0))
    write_json(tmp_path, "data/synthetic/stats.json", {"splits": {s: {"examples": n} for s, n in
                                                                  (("train", 10), ("valid", 2), ("test", 2))},
                                                       "description": "the embedded corpus"})
    out = tmp_path / "table1.md"
    assert reporting.render(plan, exp, "table1", out, tmp_path) == []
    text = out.read_text()
    assert "(paper)" not in text and "Δ" not in text and "missing" not in text
    assert "in place of PTB" in text and "train / valid / test = 10 / 2 / 2" in text
    assert re.search(r"\| \+ FB \(λ = 7\) +\| +20\.00 \|", text)


def test_probe_tables_and_appendix(tmp_path, params):
    plan = Plan(params)
    exp = plan.experiment("paper")
    run = Run("snli", "ours", 4.0, 783435)
    write_json(tmp_path, run.probe_json("noisy"), {"noisy_rec": {"1": 28.0, "2": 29.0, "3": 30.0, "4": 31.0}})
    write_json(tmp_path, run.probe_json("bleu"), {"bleu": 9.0})
    yelp = Run("yelp", "ours", 6.0, 783435)
    write_json(tmp_path, yelp.probe_json("classify"), {"gmm": {"accuracy": 70.0},
                                                       "linear": {"100": 80.0, "500": 85.0}})
    copy = Run("ptb", "ours", 8.0, 783435)
    write_json(tmp_path, copy.probe_json("copy"), {"mean_min_edit": 14.0, "mean_train_length": 22.1})
    for table in ("table4", "table6", "table8", "appendix_b"):
        reporting.render(plan, exp, table, tmp_path / f"{table}.md", tmp_path)
    t6 = (tmp_path / "table6.md").read_text()
    ours = next(line for line in t6.splitlines() if line.startswith("| Ours (λ = 4)"))
    assert [c.strip() for c in ours.strip("|").split("|")][1:4] == ["28.00", "27.92", "+0.08"]
    t8 = (tmp_path / "table8.md").read_text()
    ours = next(line for line in t8.splitlines() if line.startswith("| Ours (λ = 6)"))
    assert "70.0" in ours and "67.2" in ours and "+2.80" in ours
    assert "| Ours (λ = 8)" in (tmp_path / "appendix_b.md").read_text()


def test_figures_and_index(tmp_path, params):
    plan = Plan(params)
    exp = plan.experiment("demo")
    for lam, (ppl, rec) in {3.0: (20.0, 30.0), 7.0: (21.0, 25.0)}.items():
        for method in ("fbp", "ours"):
            run = Run("synthetic", method, lam, 783435)
            write_json(tmp_path, run.eval_json, fake_eval(ppl + (method == "fbp"), rec))
            path = tmp_path / run.dir / "metrics.jsonl"
            path.write_text("".join(json.dumps({"epoch": e, "val_kl": e, "val_mi": 0.5 * e, "val_au": 4 * e}) + "\n"
                                    for e in range(3)))
    for item in ("fig_tradeoff_synthetic", "fig_curves_synthetic"):
        out = tmp_path / f"{item}.png"
        reporting.render(plan, exp, item, out, tmp_path)
        assert out.read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "index.md"
    reporting.render(plan, exp, "index", out, tmp_path)
    text = out.read_text()
    for item in plan.report_items(exp):
        if item != "index.md":
            assert f"({item})" in text
    assert "[`paper`](../index.md)" in text


def test_report_cli_all_writes_every_item_even_without_results(tmp_path, params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from textvae.cli.dispatch import main

    assert main(["report", "all", "--params", str(tmp_path / "params.yaml"), "--experiment", "demo", "--out",
                 str(tmp_path / "out"), "--root", str(tmp_path)]) == 0
    plan = Plan(params)
    for item in plan.report_items(plan.experiment("demo")):
        assert (tmp_path / "out" / item).exists()
    assert "result files missing" in (tmp_path / "out" / "table3.md").read_text()
    assert main(["report"]) == 1   # argparse's refusal: one line, exit 1 (cli.dispatch)
    assert main(["report", "table99", "--params", str(tmp_path / "params.yaml")]) == 1


def test_row_labels():
    assert reporting.row_label(Row("fbp", 7.0)) == "+ FBP (λ = 7)"
    assert reporting.row_label(Row("ours", 2.5)) == "Ours (λ = 2.5)"
    assert reporting.row_label(Row("pretrain_anneal"), "table10") == "+ anneal enc (pretrain + anneal)"


def test_settings_state_each_rows_budget_and_test_subset(tmp_path, params):
    """A reduced-budget experiment says, per row, what it trained on and how much of the test set it scored."""
    params["datasets"]["ptb_cpu"]["training"] = {"max_epochs": 2, "warm_up": 1, "methods": {
        "ae": {"max_epochs": 7}, "fb": {"max_epochs": 1}, "fbp": {"max_epochs": 1},
        "aggressive": {"max_epochs": 1, "max_train": 3000}}}
    params["datasets"]["ptb_cpu"]["evaluation"] = {"iw_samples": 100, "max_examples": 500}
    plan = Plan(params)
    out = tmp_path / "table1.md"
    reporting.render(plan, plan.experiment("ptb_cpu"), "table1", out, tmp_path)
    text = out.read_text()
    assert ("budgets: AE: 7 epochs; FB, FBP: 1 epoch; aggressive: 1 epoch on the first 3,000 training sentences; "
            "every other row: 2 epochs") in text
    assert "every test metric on the first 500 test sentences" in text
    # the paper experiment trains with the global settings: no budget line
    reporting.render(plan, plan.experiment("paper"), "table1", out, tmp_path)
    assert "budgets:" not in out.read_text()


def test_every_table_kind_has_one_renderer():
    assert set(reporting.RENDERERS) == set(tables.TABLE_KINDS.values())


def test_single_seed_cells_show_the_runs_own_error_and_table8_both_probes(params, tmp_path):
    plan = Plan(params)
    exp = plan.experiment("demo")
    base = "results/synthetic/{}/seed783435/"
    write_json(tmp_path, base.format("vae") + "eval_test.json",
               dict(fake_eval(20.0), se={"ppl": 0.31, "rec": 0.5, "kl": 0.001, "au": 0.0}))
    for run in ("vae", "ours/lam7"):
        write_json(tmp_path, base.format(run) + "probe_classify.json",
                   {"gmm": {"accuracy": 80.0, "accuracy_se": 4.0, "best_of_inits_accuracy": 85.0,
                            "best_of_inits_accuracy_se": 1.6},
                    "linear": {"100": 70.0, "500": 75.0}, "linear_se": {"100": 2.5, "500": 1.0},
                    "converged": {"100": 72.0, "500": 80.0}, "converged_se": {"100": 1.5, "500": 0.5}})
    reporting.render(plan, exp, "table1", tmp_path / "t1.md", tmp_path)
    t1 = (tmp_path / "t1.md").read_text()
    assert "| 20.00 ± 0.31 |" in t1 and "90.00 ± 0.50" in t1 and "seed variation not measured" in t1
    reporting.render(plan, exp, "table8", tmp_path / "t8.md", tmp_path)
    t8 = re.sub(r" +", " ", (tmp_path / "t8.md").read_text())
    assert "| Ours (λ = 7) | 80.0 ± 4.0 | 70.0 ± 2.5 | 75.0 ± 1.0 |" in t8
    assert t8.index("The SPEC's recipe") < t8.index("Converged probe")
    assert "| Ours (λ = 7) | 85.0 ± 1.6 | 72.0 ± 1.5 | 80.0 ± 0.5 |" in t8
