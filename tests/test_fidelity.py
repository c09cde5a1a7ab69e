"""textvae's training replayed, step by step, against the authors' own per-step numbers: the regression guard of
docs/fidelity.md, which runs without their code.

tests/data/fidelity_authors.json holds what the authors' code (bohanli/vae-pretraining-encoder: text_anneal_fb.py,
text_beta.py, lm.py; jxhe/vae-lagging-encoder: text.py) computed on the small fixed configuration of
bench/fidelity_replay.py (the first 320 PTB training sentences, sizes 16/32/8, every training method, 90-495
optimiser steps each), recorded once by ``python bench/fidelity.py ... --fixture`` (the command, their commits,
the date and the machine are in its ``meta``). Each test replays textvae's real Trainer on one scenario, from the
same weights with the same batches and noise, and compares every step (loss, Rec, KL, β, free-bits mask, gradient
norm before clipping, clip threshold, lr), every validation, the lr decays and the aggressive switch-off, the
decoder reset, and a fingerprint of the final weights.

Tolerances (CI_TOL): float rounding with room for another CPU's kernels. On the machine that recorded the
fixture textvae agrees with the authors to ≤ 2e-5 relative in loss (docs/fidelity.md); every planted bug listed
there moves these numbers by 1e-3 or more, or changes a discrete quantity (β, clip, mask, step count, decays).
"""
from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from fidelity_replay import (AGGRESSIVE_TRAIN_LINES, SCENARIOS, TRAIN_LINES, agrees, compare,  # noqa: E402
                             replay, write_subset)

FIXTURE = REPO / "tests" / "data" / "fidelity_authors.json"
CI_TOL = {"loss": 1e-4, "rec": 1e-4, "kl": 2e-4, "gnorm": 1e-3, "val": 1e-4, "weight": 2e-3}
# The epoch-level loop runs 270 steps (three epochs, two lr decays): float rounding that differs between CPUs
# grows along it. On a 2-core AMD EPYC with AVX-512 (2026-12-04) its KL drifted to 6.8e-4 relative by step 158
# (KL 0.041 against 0.041; loss within 2.4e-5), against ≤ 2e-5 on the machine that recorded the fixture; its
# planted bug (an lr decay without reloading the best checkpoint) moves the KL by far more than 2e-3.
SCENARIO_TOL = {"loop": {**CI_TOL, "kl": 2e-3}}


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def subsets(shared_data, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fidelity_data")
    return {"main": write_subset(shared_data / "ptb", root / "main", TRAIN_LINES),
            "agg": write_subset(shared_data / "ptb", root / "agg", AGGRESSIVE_TRAIN_LINES)}


def test_fixture_covers_every_scenario(recorded):
    assert set(recorded["scenarios"]) == set(SCENARIOS)
    meta = recorded["meta"]
    assert meta["authors_commit"].startswith("bd4affa") and meta["he_commit"].startswith("cdc4eb9")
    assert meta["command"].startswith("python bench/fidelity.py")
    for name, sc in recorded["scenarios"].items():
        assert len(sc["steps"]) >= 50, name


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_training_steps_match_the_authors(name, recorded, subsets, tmp_path):
    au = recorded["scenarios"][name]
    data = subsets["agg" if SCENARIOS[name].get("train_lines") else "main"]
    ours = replay(name, data, tmp_path, aggressive_ids=au["aggressive_ids"])
    c = compare(au, ours)
    problems = agrees(c, SCENARIO_TOL.get(name, CI_TOL))
    assert not problems, f"{name}: {problems}; first steps past tolerance: " + str(
        {k: v for k, v in c.items() if k.startswith("first_step")})


def test_the_comparison_sees_a_changed_step(recorded, subsets, tmp_path):
    """The replay compared against another scenario's numbers fails (the check can fail)."""
    au = recorded["scenarios"]["anneal"]
    ours = replay("vae", subsets["main"], tmp_path)
    assert agrees(compare(au, ours), CI_TOL)


def test_cyclic_schedule_follows_liu_et_al_ptb_schedule():
    """Liu et al.'s code (haofuml/cyclical_annealing) is not available here, so the cyclic schedule is checked
    against SPEC §3.7 (b) written as their PTB script steps it: every cycle of 10 epochs starts at β = 0.1 and adds
    1/(5 · batches per epoch) per iteration, clamped at 1 until the cycle ends (two whole cycles, every step)."""
    from textvae.modeling.objectives import BetaSchedule
    bpe = 37
    s = BetaSchedule("cyclic", batches_per_epoch=bpe, cycle_epochs=10, cyclic_start=0.1, ramp_epochs=5)
    beta = None
    for step in range(1, 2 * 10 * bpe + 1):
        beta = 0.1 if (step - 1) % (10 * bpe) == 0 else min(1.0, beta + 1 / (5 * bpe))
        assert s(step) == pytest.approx(beta, abs=1e-12), step


@pytest.mark.slow
def test_bench_against_the_authors_code(shared_data, tmp_path):
    """bench/fidelity.py end to end on two scenarios, when $TEXTVAE_AUTHORS_REPO names a checkout of
    bohanli/vae-pretraining-encoder (skipped otherwise): both agree to float rounding."""
    import os
    import subprocess
    src = os.environ.get("TEXTVAE_AUTHORS_REPO")
    if not src:
        pytest.skip("$TEXTVAE_AUTHORS_REPO is not set: give it a checkout of "
                    "https://github.com/bohanli/vae-pretraining-encoder to compare with the authors' code")
    md = tmp_path / "F.md"
    md.write_text("# F\n\n## Other\n\nkept\n")
    p = subprocess.run([sys.executable, str(REPO / "bench" / "fidelity.py"), "--authors", src, "--scenarios", "vae",
                        "ours", "--ptb", str(shared_data / "ptb"), "--write", str(md)], capture_output=True,
                       text=True, timeout=900, cwd=REPO)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    rows = [ln for ln in md.read_text().splitlines() if ln.startswith(("| vae |", "| ours |"))]
    assert len(rows) == 2 and all("✅ float rounding" in r for r in rows), rows
    assert "## Other\n\nkept" in md.read_text()


LINEAR_FIXTURE = REPO / "tests" / "data" / "fidelity_linear.json"
LINEAR_TOL = {"loss": 1e-5, "val": 1e-5, "weight": 1e-4}   # measured: ≤ 2.4e-7, ≤ 8.4e-8 and 0 (docs/fidelity.md)


def test_linear_probe_matches_the_authors(tmp_path):
    """textvae's linear probe (train_linear, 10 logits) replayed on the batches the authors' text_ss_ft.py drew,
    from the same initial weights, against what their code computed (tests/data/fidelity_linear.json, recorded by
    ``python bench/fidelity_linear.py --fixture``): every step's loss, every epoch's validation CE, accuracy, lr
    and decay, the test accuracy of the selected classifier and its weights."""
    import torch

    from fidelity_linear import linear_data
    from textvae.probing.classifiers import train_linear
    rec = json.loads(LINEAR_FIXTURE.read_text())
    assert rec["meta"]["authors_commit"].startswith("bd4affa")
    d = linear_data(tmp_path)
    tr, va, te = d["train"], d["val"], d["test"]

    def order(epoch):
        assert epoch < len(rec["orders"]), f"textvae trains an epoch {epoch + 1}; the authors stopped after {epoch}"
        return [rec["batches"][k] for k in rec["orders"][epoch]]

    trace: dict = {}
    res = train_linear(tr["x"], tr["y"], va["x"], va["y"], te["x"], te["y"], n_logits=rec["meta"]["n_logits"],
                       train_lengths=list(tr["lengths"]), seed=rec["meta"]["seed"], batch_order=order, trace=trace)
    for k, v in rec["init"].items():
        assert torch.equal(trace["init"][k], torch.tensor(v)), f"textvae's initial {k} moved: the fixture's premise"
    assert len(trace["steps"]) == len(rec["steps"])
    worst = max(abs(a - b) for a, b in zip(rec["steps"], trace["steps"]))
    assert worst <= LINEAR_TOL["loss"], f"step loss differs by {worst:.3g}"
    assert len(trace["epochs"]) == len(rec["epochs"])
    for i, (a, b) in enumerate(zip(rec["epochs"], trace["epochs"])):
        assert abs(a["val_loss"] - b["val_loss"]) <= LINEAR_TOL["val"], (i, a, b)
        assert (a["lr"], a["decay"]) == (b["lr"], b["decay"]) and a["val_acc"] == pytest.approx(b["val_acc"]), (i, a, b)
    assert res["test_accuracy"] == pytest.approx(rec["test_accuracy"], abs=1e-9)
    for k, v in rec["final"].items():
        assert float((trace["final"][k] - torch.tensor(v)).abs().max()) <= LINEAR_TOL["weight"], k


def test_default_iwae_bound_with_equal_weights_is_one_sample_bound(monkeypatch):
    """textvae's own (SPEC) IW bound, which the replays above do not run (they use the authors' form): with all K
    samples at μ every importance weight is the same w, so −(logsumexp_k log w − log K) must equal −log w exactly
    (the authors' form likewise gives −log w); a lost or doubled log K moves it by log 10."""
    import math

    import torch

    import textvae.modeling.objectives as tobj
    from textvae.modeling.model import VAE, ModelConfig, log_normal_diag, log_standard_normal
    torch.manual_seed(0)
    model = VAE(ModelConfig(vocab_size=30, enc_emb=8, dec_emb=8, enc_hidden=16, dec_hidden=16, nz=4,
                            dropout_in=0.0, dropout_out=0.0)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, 0, 0.3)
    x = torch.randint(4, 30, (3, 7))
    monkeypatch.setattr(tobj, "reparameterize", lambda mu, lv, n=1, generator=None: mu.unsqueeze(1).expand(-1, n, -1))
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        z = mu.unsqueeze(1)
        log_w = model.decoder.log_prob(x, z)[:, 0] + log_standard_normal(z)[:, 0] - log_normal_diag(z, mu, logvar)[:, 0]
        for compat in (False, True):
            loss = tobj.vae_loss(model, x, "iwae", 1.0, iwae_k=10, iwae_code_compat=compat).loss
            assert torch.allclose(loss, -log_w, atol=1e-4), (compat, loss, -log_w, math.log(10))
