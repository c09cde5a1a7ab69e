"""The standard errors beside the paper's estimators (textvae.evaluation.uncertainty), checked against brute-force
resampling on small cases, and the three-way verdicts of the claims (holds / fails / within noise) on hand-made
result sets, with a paired comparison that its unpaired version would call noise."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import write_json
from textvae.evaluation import metrics
from textvae.evaluation import uncertainty as U
from textvae.plan.pipeline import Plan
from textvae.probing import metrics as M
from textvae.reports import claims
from textvae.reports.formatting import Results


# ----------------------------------------------------------------------------------------------------------
# estimates against brute force
# ----------------------------------------------------------------------------------------------------------

def _brute_bootstrap(stat, n: int, reps: int = 4000, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    return float(np.std([stat(rng.integers(0, n, size=n)) for _ in range(reps)], ddof=1))


def test_mean_se_is_the_bootstrap_spread_of_the_mean():
    x = np.random.default_rng(0).gamma(2.0, 3.0, size=80)
    assert U.mean_se(x) == pytest.approx(_brute_bootstrap(lambda i: x[i].mean(), 80), rel=0.06)


def test_ppl_se_treats_ppl_as_a_ratio_of_sums_over_sentences():
    """PPL = exp(Σ nll / Σ tokens) over resampled sentences; taking the token count as fixed (a plausible
    wrong formula) gives a much larger number, since a sentence's NLL grows with its length."""
    rng = np.random.default_rng(1)
    t = rng.integers(3, 30, size=60)
    nll = 1.8 * t + rng.normal(0, 2.0, size=60)
    brute = _brute_bootstrap(lambda i: math.exp(nll[i].sum() / t[i].sum()), 60)
    assert U.ppl_se(nll, t) == pytest.approx(brute, rel=0.1)
    fixed_t = U.mean_se(60 * math.exp(nll.sum() / t.sum()) * nll / t.sum())
    assert fixed_t > 3 * brute


def test_iw_monte_carlo_variance_is_the_spread_of_repeated_estimates():
    """log mean_k w_k over K draws, repeated: its variance matches the delta-method value from one draw."""
    rng = np.random.default_rng(2)
    K = 400
    draws = [rng.normal(-50.0, 1.0, size=K) for _ in range(3000)]          # log weights
    brute = np.var([metrics.logmeanexp_exact(w) for w in draws], ddof=1)
    est = np.mean([U.iw_mc_variance(w) for w in draws[:200]])
    assert est == pytest.approx(brute, rel=0.1)


def test_bleu_bootstrap_is_sacrebleu_on_resampled_sentences_and_the_influence_se_agrees():
    rng = np.random.default_rng(3)
    words = list("abcdefg")
    refs = [[str(w) for w in rng.choice(words, size=rng.integers(4, 12))] for _ in range(120)]
    hyps = [r[:rng.integers(2, len(r) + 1)] + ["x"] for r in refs]
    stats = M.bleu_stats(hyps, refs)
    reps = M.bleu_bootstrap(stats, 5, seed=11)
    g = np.random.default_rng(11)
    for rep in reps:
        idx = g.integers(0, 120, size=120)
        assert rep == pytest.approx(M.corpus_bleu([hyps[i] for i in idx], [refs[i] for i in idx])[0], rel=1e-9)
    boot = np.std(M.bleu_bootstrap(stats, 2000), ddof=1)
    assert U.mean_se(M.bleu_influence(stats)) == pytest.approx(boot, rel=0.15)


def test_mi_and_au_bootstraps():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(200, 4, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0, 0.1, 0.0999], dtype=torch.float64)
    logvar = torch.full((200, 4), -1.0, dtype=torch.float64)
    mi = U.mi_bootstrap(mu, logvar, 20)
    assert mi.std(ddof=1) > 0.01 and abs(mi.mean() - metrics.mutual_information(mu, logvar, generator=g)) < 0.5
    # two units far from the 0.01 threshold, two near it: AU moves under resampling, and not beyond 2..4
    au = U.au_bootstrap(mu, 0.01, 100)
    assert au.min() >= 2 and au.max() <= 4 and au.std(ddof=1) > 0
    assert U.au_bootstrap(mu[:, :2], 0.01, 50).std() == 0


def test_active_units_count_a_variance_equal_to_the_threshold():
    """AU = #{d : Var ≥ threshold}: a unit whose variance is exactly the threshold is active."""
    mu = torch.tensor([[0.0, 1.0, 3.0], [0.3, 2.0, 0.0], [0.1, 0.5, 1.0]], dtype=torch.float64)
    var = metrics.au_variances(mu)
    assert metrics.active_units(mu, float(var[1])) == 2          # the unit at the threshold and the larger one
    assert metrics.active_units(mu, float(var[1]) + 1e-12) == 1


# ----------------------------------------------------------------------------------------------------------
# three-way verdicts
# ----------------------------------------------------------------------------------------------------------

def test_decide_on_the_interval():
    assert claims.decide("<", -1.0, 0.2)[0] == "holds"
    assert claims.decide("<", 1.0, 0.2)[0] == "fails"
    assert claims.decide("<", -0.1, 0.2)[0] == "within noise"
    assert claims.decide(">", 0.1, 0.2)[0] == "within noise"
    # exact numbers (no recorded error): a tie fails a strict comparison and satisfies a non-strict one
    assert claims.decide("<", 0.0, 0.0)[0] == "fails" and claims.decide(">", 0.0, 0.0)[0] == "fails"
    assert claims.decide("<=", 0.0, 0.0)[0] == "holds" and claims.decide(">=", 0.0, 0.0)[0] == "holds"
    status, lo, hi = claims.decide(">", 1.0, 0.5)
    assert status == "holds" and lo == pytest.approx(1 - 1.959964 * 0.5) and hi == pytest.approx(1 + 1.959964 * 0.5)


def _demo(params):
    plan = Plan(params)
    return plan, plan.experiment("demo")


def _verdict(plan, exp, root, cid):
    (v,) = [v for v in claims.evaluate(plan, exp, Results(root)) if v.claim["id"] == cid]
    return v


RECON = "results/synthetic/{}/seed783435/eval_test.json"


@pytest.mark.parametrize("ours,fbp,status", [(20.0, 22.0, "holds"), (21.9, 22.0, "within noise"),
                                              (23.0, 22.0, "fails"), (22.0, 22.0, "fails")])
def test_three_verdicts_on_hand_made_results(params, tmp_path, ours, fbp, status):
    """Table 10's "Ours reconstructs better than FBP at the same λ" with SE 0.1 nats on each Recon (the last
    case with no recorded error: a tie fails the strict "<")."""
    plan, exp = _demo(params)
    se = {"se": {"rec": 0.1}} if ours != fbp else {}
    for lam in (3, 7):
        write_json(tmp_path, RECON.format(f"ours/lam{lam}"), {"rec": ours, **se})
        write_json(tmp_path, RECON.format(f"fbp/lam{lam}"), {"rec": fbp, **se})
    v = _verdict(plan, exp, tmp_path, "ours_recon_vs_fbp")
    assert v.status == status, v.evidence
    if se:
        assert "95 % [" in v.evidence[0] and "unpaired" in v.evidence[0]
        assert v.evidence[-1] == "one seed: seed variation not measured (within-run errors only)"


def test_a_paired_comparison_decides_where_the_unpaired_one_is_noise(params, tmp_path):
    """Ours' Recon is 0.05 nats below FBP's on every one of 400 sentences whose Recon varies by ±5 nats: the
    unpaired SEs (0.25 each) cannot tell, the per-sentence differences can."""
    plan, exp = _demo(params)
    rng = np.random.default_rng(0)
    base = rng.normal(30.0, 5.0, size=400)
    for lam in (3, 7):
        mine = base - 0.05 + rng.normal(0, 0.01, size=400)
        for run, rec in ((f"ours/lam{lam}", mine), (f"fbp/lam{lam}", base)):
            write_json(tmp_path, RECON.format(run), {"rec": float(rec.mean()), "se": {"rec": U.mean_se(rec)}})
    v = _verdict(plan, exp, tmp_path, "ours_recon_vs_fbp")
    assert v.status == "within noise" and "unpaired" in v.evidence[0]
    for lam in (3, 7):
        for run in (f"ours/lam{lam}", f"fbp/lam{lam}"):
            path = tmp_path / RECON.format(run)
            data = __import__("json").loads(path.read_text())
            rec = base - 0.05 + rng.normal(0, 0.01, size=400) if run.startswith("ours") else base
            data.update(rec=float(rec.mean()), per_sentence={"rec": U.compact(rec)})
            path.write_text(__import__("json").dumps(data))
    v = _verdict(plan, exp, tmp_path, "ours_recon_vs_fbp")
    assert v.status == "holds" and "paired" in v.evidence[0] and "unpaired" not in v.evidence[0]


def test_paired_ppl_comparison_uses_the_ratio_influence(params, tmp_path):
    """A PPL comparison on the same sentences: paired per-sentence NLLs and token counts; the paired interval
    is narrower than the unpaired one."""
    plan, exp = _demo(params)
    rng = np.random.default_rng(1)
    t = rng.integers(5, 25, size=300)
    nll_vae = 2.0 * t + rng.normal(0, 3.0, size=300)
    nll_ours = nll_vae - 0.02 * t + rng.normal(0, 0.05, size=300)
    est = {}
    for name, nll in (("vae", nll_vae), ("ours", nll_ours)):
        est[name] = claims.Estimate(math.exp(nll.sum() / t.sum()), U.ppl_se(nll, t),
                                    claims.influence({"per_sentence": {"nll": nll.tolist(), "tokens": t.tolist()}},
                                                     "ppl"))
    paired = claims.difference({1: est["ours"]}, {1: est["vae"]}, 1, 0)
    unpaired = claims.difference({1: claims.Estimate(est["ours"].value, est["ours"].se)},
                                 {1: claims.Estimate(est["vae"].value, est["vae"].se)}, 1, 0)
    assert paired[0] == pytest.approx(unpaired[0]) and paired[0] < 0
    assert paired[1] < unpaired[1] / 3 and paired[2] == "paired"
    # the paired SE against a brute-force bootstrap of the PPL difference
    brute = _brute_bootstrap(lambda i: math.exp(nll_ours[i].sum() / t[i].sum())
                             - math.exp(nll_vae[i].sum() / t[i].sum()), 300, 2000)
    assert paired[1] == pytest.approx(brute, rel=0.1)


def test_several_seeds_add_the_seed_spread(params, tmp_path):
    params["experiments"]["demo"]["seeds"] = [1, 2, 3]
    plan, exp = _demo(params)
    # within-run errors tiny, but the seeds disagree on the sign of the difference: within noise
    for seed, (ours, fbp) in zip((1, 2, 3), ((20.0, 21.0), (22.0, 21.0), (20.5, 21.0))):
        for lam in (3, 7):
            write_json(tmp_path, f"results/synthetic/ours/lam{lam}/seed{seed}/eval_test.json",
                       {"rec": ours, "se": {"rec": 0.01}})
            write_json(tmp_path, f"results/synthetic/fbp/lam{lam}/seed{seed}/eval_test.json",
                       {"rec": fbp, "se": {"rec": 0.01}})
    v = _verdict(plan, exp, tmp_path, "ours_recon_vs_fbp")
    assert v.status == "within noise" and "3 seeds" in v.evidence[0]
    assert not any("seed variation not measured" in e for e in v.evidence)


def test_classification_claims_say_when_the_two_probes_disagree(params, tmp_path):
    """The SPEC recipe says Ours beats every baseline; the converged probe, on the same encoders, says the AE's
    features are as good: the verdict is the SPEC recipe's, and the evidence gives the other and the disagreement."""
    plan, exp = _demo(params)
    base = "results/synthetic/{}/seed783435/probe_classify.json"
    for run, (spec, conv) in {"ae": (80, 95), "vae": (50, 60), "anneal": (50, 60), "cyclic": (60, 70),
                              "aggressive": (55, 65), "fbp/lam7": (65, 75), "ours/lam7": (95, 95.5)}.items():
        write_json(tmp_path, base.format(run),
                   {"gmm": {"accuracy": spec, "accuracy_se": 1.0, "best_of_inits_accuracy": conv,
                            "best_of_inits_accuracy_se": 1.0},
                    "linear": {"100": spec, "500": spec}, "linear_se": {"100": 1.0, "500": 1.0},
                    "converged": {"100": conv, "500": conv}, "converged_se": {"100": 1.0, "500": 1.0}})
    v = _verdict(plan, exp, tmp_path, "ours_classify")
    assert v.status == "holds"
    note = [e for e in v.evidence if e.startswith("converged probe:")]
    assert note and note[0].startswith("converged probe: within noise (the probes disagree: the SPEC recipe's "
                                       "verdict is holds); Ours (λ = 7) converged-probe acc. (100 labels) 95.5 > AE")
