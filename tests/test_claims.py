"""The paper's claims (paper_claims.yaml, textvae.reports.claims): every claim holds on the paper's own numbers, and each
verdict (holds, fails, not run, missing value) comes out on hand-made result sets."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import load_script, write_json
from textvae.reports import claims
from textvae.plan import tables
from textvae.reports import reporting
from textvae.plan.pipeline import Plan, Row
from textvae.reports.reporting import Results


def paper_results(plan: Plan, root: Path) -> None:
    """The paper's own numbers (paper_reference.yaml) written as our result files for the paper experiment."""
    ref = reporting.reference()
    exp = plan.experiment("paper")
    for table in tables.claim_tables("paper"):
        values = claims.Values(plan, exp, table, None)
        for sec in plan.sections(exp, table):
            ds = sec.paper_datasets[0]
            for row in sec.rows:
                if row.paper_only:
                    continue
                for run in plan.runs_of(exp, sec.dataset, [row]):
                    if values.kind == "lm":
                        data = ref["lm"][ds][row.key]
                    elif values.kind == "classify":
                        r = ref["classify"][ds][row.key]
                        data = {"gmm": {"accuracy": r["gmm"]}, "linear": r["linear"]}
                    else:
                        key = {"bleu": "bleu", "smoothness": "pcc"}[values.kind]
                        data = {key: ref["probes"][ds][values.kind][row.key]}
                    write_json(root, values.file(run), data)


def test_every_claim_holds_on_the_papers_own_numbers(params, tmp_path):
    """An independent reading: the claims are what the paper's tables say (a claim that fails here is misread)."""
    plan = Plan(params)
    paper_results(plan, tmp_path)
    verdicts = claims.evaluate(plan, plan.experiment("paper"), Results(tmp_path), tables.claims_for("paper"))
    assert verdicts and all(v.status == "holds" for v in verdicts), \
        [(v.claim["id"], v.section, v.status, v.evidence) for v in verdicts if v.status != "holds"]
    # every paper claim is checked on at least one section; Table 3 on both PTB and Yahoo
    ids = {v.claim["id"] for v in verdicts}
    assert ids == {c["id"] for c in tables.claims_data()["claims"]}
    assert {v.section for v in verdicts if v.claim["id"] == "ours_all_active"} == {"ptb", "yahoo"}
    # the ELBO claim is stated for PTB only
    assert {v.section for v in verdicts if v.claim["id"] == "ours_elbo_not_ppl"} == {"ptb"}


def test_a_misread_number_fails_the_claim(params, tmp_path):
    plan = Plan(params)
    paper_results(plan, tmp_path)
    # the paper's VAE with KL 0.2 would not be collapsed
    path = tmp_path / "results/ptb/vae/seed783435/eval_test.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(dict(data, kl=0.2)))
    verdicts = claims.evaluate(plan, plan.experiment("paper"), Results(tmp_path), tables.claims_for("paper"))
    bad = [v for v in verdicts if v.status != "holds"]
    assert [(v.claim["id"], v.status) for v in bad] == [("vae_collapse", "fails")]
    assert bad[0].evidence[0] == "VAE KL 0.20 < 0.1"


DEMO = {   # hand-made results of the demo experiment (λ snapped to 3 and 7): method -> eval_test.json values
    "vae": {"ppl": 20.0, "rec": 29.0, "kl": 0.01, "au": 0, "neg_elbo": 29.01},
    "anneal": {"ppl": 20.1, "rec": 29.1, "kl": 0.02, "au": 1, "neg_elbo": 29.12},
    "ae": {"rec": 12.0, "au": 32, "mi": 6.0},
}


def demo_plan(params) -> tuple[Plan, object]:
    plan = Plan(params)
    return plan, plan.experiment("demo")


def verdict(verdicts, cid):
    (v,) = [v for v in verdicts if v.claim["id"] == cid]
    return v


def test_hand_made_verdicts(params, tmp_path):
    plan, exp = demo_plan(params)
    for method, data in DEMO.items():
        write_json(tmp_path, f"results/synthetic/{method}/seed783435/eval_test.json", data)
    # Ours λ = 7 with all units active; Ours λ = 3 with its result file lacking AU
    write_json(tmp_path, "results/synthetic/ours/lam7/seed783435/eval_test.json",
               {"ppl": 19.0, "rec": 25.0, "kl": 9.0, "au": 32, "neg_elbo": 34.0})
    write_json(tmp_path, "results/synthetic/ours/lam3/seed783435/eval_test.json",
               {"ppl": 19.5, "rec": 27.0, "kl": 4.0, "neg_elbo": 31.0})
    vs = claims.evaluate(plan, exp, Results(tmp_path))

    v = verdict(vs, "vae_collapse")
    assert v.status == "holds" and v.evidence == ["VAE KL 0.01 < 0.1", "VAE AU 0 ≤ 2"]
    assert verdict(vs, "anneal_collapse").status == "holds"
    # Table 1's AE claim needs the other Table 1 rows (cyclic, aggressive, FB, FBP): not run
    v = verdict(vs, "ae_reconstructs")
    assert v.status == "not run" and "cyclic" in v.evidence[0]
    # Ours λ = 3 has no AU in its file
    v = verdict(vs, "ours_all_active")
    assert v.status == "missing value" and "has no au" in v.evidence[0]
    # a claim whose table is not run at all (Table 8 probes)
    assert verdict(vs, "ours_classify").status == "not run"
    # acceptance checks of the demo: KL between 0.5λ and 3λ (λ = 7: 9.0 within 3.5..21; λ = 3: 4.0 within 1.5..9)
    v = verdict(vs, "demo_ours_rate")
    assert v.status == "holds"
    assert "Ours (λ = 7) KL 9.00 ≥ 0.5λ = 3.50" in v.evidence
    # Recon 1 nat below the VAE's: 25 ≤ 28 and 27 ≤ 28
    assert verdict(vs, "demo_ours_recon").status == "holds"

    # Ours λ = 3's Recon 28.5 is not 1 nat below the VAE's 29.0: fails, with the failing comparison first
    write_json(tmp_path, "results/synthetic/ours/lam3/seed783435/eval_test.json",
               {"ppl": 19.5, "rec": 28.5, "kl": 4.0, "au": 30, "neg_elbo": 32.5})
    vs = claims.evaluate(plan, exp, Results(tmp_path))
    v = verdict(vs, "demo_ours_recon")
    assert v.status == "fails"
    assert v.evidence[0] == "Ours (λ = 3) Recon 28.50 ≤ VAE 29.00 − 1 (Δ +0.50, no uncertainty recorded)"
    assert verdict(vs, "ours_all_active").status == "holds"


def test_classification_claims_read_every_label_count(params, tmp_path):
    plan, exp = demo_plan(params)
    base = "results/synthetic/{}/seed783435/probe_classify.json"
    accs = {"ae": (70, 80), "vae": (50, 55), "anneal": (50, 52), "cyclic": (60, 66), "aggressive": (55, 60),
            "fbp/lam7": (65, 70), "ours/lam7": (91, 95)}
    for run, (a100, a500) in accs.items():
        write_json(tmp_path, base.format(run), {"gmm": {"accuracy": a100 - 5}, "linear": {"100": a100, "500": a500}})
    vs = claims.evaluate(plan, exp, Results(tmp_path))
    v = verdict(vs, "ours_classify")
    assert v.status == "holds"
    assert "Ours (λ = 7) linear acc. (100 labels) 91.0 > AE (max of 6) 70.0 (Δ +21.0, no uncertainty recorded)" in v.evidence
    assert "Ours (λ = 7) linear acc. (500 labels) 95.0 > AE (max of 6) 80.0 (Δ +15.0, no uncertainty recorded)" in v.evidence
    v = verdict(vs, "demo_classify")
    assert v.status == "holds"
    assert v.evidence[:3] == ["Ours (λ = 7) linear acc. (500 labels) 95.0 ≥ 90", "Ours (λ = 7) GMM acc. 86.0 ≥ 80",
                              "VAE linear acc. (500 labels) 55.0 ≤ 65"]
    assert v.evidence[3].startswith("converged probe: missing value")      # result files without the new probe
    # the baseline beats Ours at one label count: the claim fails at that count only
    write_json(tmp_path, base.format("cyclic"), {"gmm": {"accuracy": 50}, "linear": {"100": 92, "500": 66}})
    v = verdict(claims.evaluate(plan, exp, Results(tmp_path)), "ours_classify")
    assert v.status == "fails"
    assert v.evidence[0] == "Ours (λ = 7) linear acc. (100 labels) 91.0 > cyclic (max of 6) 92.0 (Δ −1.0, no uncertainty recorded)"


def test_pairs_by_lambda(params, tmp_path):
    """Table 10's Ours-vs-FBP claim compares rows of the same λ, and says 'not run' without a pair."""
    plan, exp = demo_plan(params)
    base = "results/synthetic/{}/seed783435/eval_test.json"
    write_json(tmp_path, base.format("ours/lam7"), {"rec": 20.0})
    write_json(tmp_path, base.format("ours/lam3"), {"rec": 24.0})
    write_json(tmp_path, base.format("fbp/lam7"), {"rec": 22.0})
    write_json(tmp_path, base.format("fbp/lam3"), {"rec": 23.0})
    v = verdict(claims.evaluate(plan, exp, Results(tmp_path)), "ours_recon_vs_fbp")
    assert v.status == "fails"
    assert v.evidence[:2] == ["Ours (λ = 3) Recon 24.00 < FBP (λ = 3) 23.00 (Δ +1.00, no uncertainty recorded)",
                               "Ours (λ = 7) Recon 20.00 < FBP (λ = 7) 22.00 (Δ −2.00, no uncertainty recorded)"]


def test_claims_page_and_index_section(params, tmp_path):
    plan, exp = demo_plan(params)
    for method, data in DEMO.items():
        write_json(tmp_path, f"results/synthetic/{method}/seed783435/eval_test.json", data)
    assert "claims.md" in plan.report_items(exp)
    assert plan.report_items(exp)[-2:] == ["claims.md", "index.md"]
    reporting.render(plan, exp, "claims", tmp_path / "claims.md", tmp_path)
    page = (tmp_path / "claims.md").read_text()
    assert "| The VAE's posterior collapses: KL &lt; 0.1 and AU ≤ 2." in page
    assert "✅ holds" in page and "⏳ not run" in page
    assert "## This experiment's acceptance checks" in page
    reporting.render(plan, exp, "index", tmp_path / "index.md", tmp_path)
    index = (tmp_path / "index.md").read_text()
    assert index.index("## The paper's claims") < index.index("## Tables")
    # the claims page depends on the results of every table a claim reads
    inputs = plan.item_inputs(exp, "claims.md")
    assert "results/synthetic/vae/seed783435/eval_test.json" in inputs
    assert "results/synthetic/ours/lam7/seed783435/probe_classify.json" in inputs


def test_match_rows_after_snapping(params):
    plan, exp = demo_plan(params)
    (sec,) = plan.sections(exp, "table3")
    assert claims.match_rows(sec, "ours@*") == [Row("ours", 7.0), Row("ours", 3.0)]
    # the paper's ours@8 is run as λ = 7 in the demo
    assert claims.match_rows(sec, "ours@8") == [Row("ours", 7.0)]
    assert claims.match_rows(sec, "fb@*") == []


def test_several_seeds_must_each_hold(params, tmp_path):
    """With several seeds the mean decides the numbers shown, and one failing seed fails the claim."""
    params["experiments"]["demo"]["seeds"] = [1, 2]
    plan, exp = demo_plan(params)
    for seed, kl in ((1, 0.01), (2, 0.03)):
        write_json(tmp_path, f"results/synthetic/vae/seed{seed}/eval_test.json", {"kl": kl, "au": 0})
    v = verdict(claims.evaluate(plan, exp, Results(tmp_path)), "vae_collapse")
    assert v.status == "holds"
    assert v.evidence == ["VAE KL 0.02 < 0.1", "VAE AU 0 ≤ 2", "thresholds hold for each of the 2 seeds"]
    # mean KL 0.09 < 0.1, but seed 2 alone has 0.17
    write_json(tmp_path, "results/synthetic/vae/seed2/eval_test.json", {"kl": 0.17, "au": 0})
    v = verdict(claims.evaluate(plan, exp, Results(tmp_path)), "vae_collapse")
    assert v.status == "fails" and v.evidence[0] == "seed 2: VAE KL 0.17 < 0.1"


def test_a_table_outside_the_experiment_is_not_run_and_asks_for_no_file(params, tmp_path):
    """ptb_cpu renders Tables 1-3 only: the Table 10 claim (PTB's λ grid) is "not part of this experiment", and the
    claims page does not list grid runs the experiment never plans as missing result files."""
    plan = Plan(params)
    exp = plan.experiment("ptb_cpu")
    assert "table10" not in plan.table_names(exp)
    by_table = {v.claim["table"]: v for v in claims.evaluate(plan, exp, Results(tmp_path))}
    assert by_table["table10"].status == "not run"
    assert by_table["table10"].evidence == ["table10 is not part of this experiment"]
    reporting.render(plan, exp, "claims", tmp_path / "claims.md", tmp_path)
    assert "lam9" not in (tmp_path / "claims.md").read_text()


def test_readme_demo_tables_are_the_committed_reports():
    """The README's two demo tables are workflow/scripts/readme_tables.py's output on the committed
    reports/{demo,demo_seeds,demo_corpus2,demo_early}/, not numbers typed by hand (workflow/scripts/
    regenerate_demo.py writes them)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    script = [sys.executable, str(root / "workflow/scripts/readme_tables.py")]
    columns = _regenerate_demo().committed(root / "reports")
    assert list(columns)[:3] == ["demo", "demo_seeds", "demo_corpus2"]
    claims_table = subprocess.run(script + _regenerate_demo().claims_command(columns) + ["--reports",
                                                                                         str(root / "reports")],
                                  check=True, capture_output=True, text=True).stdout
    summary = subprocess.run(script + ["summary", "demo", "--reports", str(root / "reports")],
                             check=True, capture_output=True, text=True).stdout
    assert claims_table.count("\n") >= 15 and summary.count("\n") >= 6
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert claims_table in readme
    assert summary in readme


def _regenerate_demo():
    return load_script(Path(__file__).resolve().parents[1] / "workflow/scripts/regenerate_demo.py")


def test_regenerate_demo_rewrites_the_readme_tables_in_place(tmp_path):
    """workflow/scripts/regenerate_demo.py: the README's tables are replaced whole, the text around them kept;
    its claims columns are the experiments whose reports exist."""
    regen = _regenerate_demo()
    text = "intro\n\n| Claim | x |\n|---|---|\n| old | 1 |\n| older | 2 |\n\nafter\n| Method | y |\n|---|---|\n"
    new = "| Claim | x |\n|---|---|\n| new | 3 |\n"
    assert regen.replace_table(text, "Claim", new=new) == "intro\n\n" + new + "\nafter\n| Method | y |\n|---|---|\n"
    # the header found whatever its padding (a column widens when its numbers do)
    wide = "| Method        |    PPL |\n|---|---|\n| a | 1 |\n"
    assert regen.replace_table("x\n" + wide, "Method", "PPL", new="| Method | PPL |\n") == "x\n| Method | PPL |\n"
    assert regen.claims_command() == ["claims", "demo", "demo_seeds", "demo_corpus2", "demo_early", "--labels",
                                      "demo", "3 seeds", "corpus 2", "label early"]
    for exp in ("demo", "demo_early"):
        (tmp_path / exp).mkdir()
        (tmp_path / exp / "claims.md").write_text("x")
    assert regen.committed(tmp_path) == {"demo": "demo", "demo_early": "label early"}
