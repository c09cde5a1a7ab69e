"""Tests of SPEC §5 evaluation: IW-NLL against quadrature, K behaviour, bit-identity under re-chunking, MI/AU
closed forms, the PTB token count, and `textvae evaluate` on VAE and LM checkpoints."""
from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from textvae.modeling.checkpoint import atomic_save, model_payload
from textvae.cli.dispatch import main as cli_main
from textvae.corpora.data import Vocab, count_tokens, read_corpus
from textvae.corpora.data import make_batches
from textvae.evaluation.evaluate import evaluate_model
from textvae.evaluation.fast_vae import FastVAE, elbo_terms, encode_all, iw_log_likelihood
from textvae.evaluation.metrics import (STREAM_MI, STREAM_REC, SentenceNoise, active_units, iw_log_likelihood_reference, iw_noise,
                             mi_samples, mutual_information)
from textvae.modeling.model import LSTMLM, VAE, ModelConfig, kl_per_dim

SHARED_DATA = Path(os.environ.get("TEXTVAE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _tiny_vae(vocab_size=6, emb=4, hidden=8, nz=1, scale=1.0, seed=0) -> VAE:
    torch.manual_seed(seed)
    m = VAE(ModelConfig(vocab_size=vocab_size, enc_emb=emb, dec_emb=emb, enc_hidden=hidden, dec_hidden=hidden,
                        nz=nz))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, scale)
    return m.eval()


def _examples(words, n, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        L = lengths[i % len(lengths)]
        out.append([1] + [words[int(j)] for j in torch.randint(len(words), (L,), generator=g)] + [2])
    return out


# ---------------------------------------------------------------------------------------------------------
# quadrature reference for a 1-d latent
# ---------------------------------------------------------------------------------------------------------

GRID = torch.linspace(-8.0, 8.0, 4001, dtype=torch.float64)


@torch.no_grad()
def _quadrature(model: VAE, ex: list[int]) -> dict:
    """Exact log p(x) = log ∫ p(x|z) N(z;0,1) dz on a dense grid, the posterior's mean/var, and
    log p(x|z) on the grid (with the model's own decoder)."""
    x = torch.tensor([ex])
    lpx = model.decoder.log_prob(x, GRID.float().view(1, -1, 1))[0].double()
    lprior = -0.5 * (math.log(2 * math.pi) + GRID ** 2)
    dz = float(GRID[1] - GRID[0])
    joint = lpx + lprior
    log_px = float(torch.logsumexp(joint, 0)) + math.log(dz)
    w = torch.softmax(joint, 0)
    mean = float((w * GRID).sum())
    var = float((w * (GRID - mean) ** 2).sum())
    return {"log_px": log_px, "mean": mean, "var": var, "lpx_grid": lpx, "dz": dz}


def _elbo_quad(q: dict, mu: float, logvar: float) -> float:
    """ELBO = E_q log p(x|z) − KL(q||p) by quadrature (q Gaussian)."""
    qz = torch.exp(-0.5 * (math.log(2 * math.pi) + logvar + (GRID - mu) ** 2 / math.exp(logvar)))
    e_lpx = float((qz * q["lpx_grid"]).sum() * q["dz"])
    kl = 0.5 * (mu ** 2 + math.exp(logvar) - logvar - 1.0)
    return e_lpx - kl


# ---------------------------------------------------------------------------------------------------------

def test_fast_path_matches_model_modules():
    m = _tiny_vae(vocab_size=23, emb=12, hidden=20, nz=3, scale=0.5, seed=1)
    fast = FastVAE(m)
    x = torch.tensor(_examples(list(range(3, 23)), 6, [5]))
    mu, lv = fast.encode(x)
    mu_ref, lv_ref = m.encoder(x)
    assert torch.allclose(mu, mu_ref, atol=1e-5) and torch.allclose(lv, lv_ref, atol=1e-5)
    z = torch.randn(6, 7, 3)
    lp = fast.log_px(fast.sentence_gates(x[:, :-1]), x[:, 1:], z)
    ref = m.decoder.log_prob(x, z).double()
    assert torch.allclose(lp, ref, atol=1e-4, rtol=1e-6)


def _iw_se(q: dict, mu: float, logvar: float, K: int) -> float:
    """Monte Carlo standard error of log p̂(x) at K samples from q = N(mu, exp(logvar)), by quadrature:
    Var_q[w]/p(x)² = ∫ p(x,z)²/q(z) dz / p(x)² − 1 (delta method)."""
    lprior = -0.5 * (math.log(2 * math.pi) + GRID ** 2)
    lq = -0.5 * (math.log(2 * math.pi) + logvar + (GRID - mu) ** 2 / math.exp(logvar))
    log_m2 = float(torch.logsumexp(2 * (q["lpx_grid"] + lprior) - lq, 0)) + math.log(q["dz"])
    return math.sqrt(max(math.exp(log_m2 - 2 * q["log_px"]) - 1.0, 0.0) / K)


def test_bf16_projection_close_and_overflow_safe():
    m = _tiny_vae(vocab_size=40, emb=8, hidden=16, nz=2, scale=1.0, seed=2)
    x = torch.tensor(_examples(list(range(4, 40)), 3, [4], seed=3))
    z = torch.randn(3, 50, 2, generator=torch.Generator().manual_seed(0))
    f32, f16 = FastVAE(m), FastVAE(m, precision="bf16")
    a = f32.log_px(f32.sentence_gates(x[:, :-1]), x[:, 1:], z)
    b = f16.log_px(f16.sentence_gates(x[:, :-1]), x[:, 1:], z)
    assert float((a - b).abs().max()) < 0.1
    with torch.no_grad():                       # logits far above the target's: exp overflows in the fast path
        m.decoder.proj.weight.mul_(30.0)
    f32, f16 = FastVAE(m), FastVAE(m, precision="bf16")
    a = f32.log_px(f32.sentence_gates(x[:, :-1]), x[:, 1:], z)
    b = f16.log_px(f16.sentence_gates(x[:, :-1]), x[:, 1:], z)
    assert bool(torch.isfinite(b).all()) and float(((a - b).abs() / a.abs()).max()) < 0.01
    # fp32 too: logits above 88 overflow its shift-free fast path, and the safe pass gives the model's values
    unsafe = f32._log_px(f32.sentence_gates(x[:, :-1]), x[:, 1:], z, 512, safe=False)
    assert not bool(torch.isfinite(unsafe).all())
    ref = m.decoder.log_prob(x, z).double()
    assert torch.allclose(a, ref, rtol=1e-5, atol=1e-3)


def test_iw_matches_quadrature_1d_latent():
    m = _tiny_vae(scale=1.0, seed=3)
    exs = _examples([4, 5], 6, [2, 3, 2], seed=4)
    quads = [_quadrature(m, e) for e in exs]
    exact = torch.tensor([q["log_px"] for q in quads], dtype=torch.float64)
    # (a) a good proposal, given in place of the encoder's: the true posterior's mean, its variance widened
    # (×1.5, 2 or 3, whichever gives the smallest Monte Carlo error: the posterior has a prior-like tail)
    mu = torch.tensor([[q["mean"]] for q in quads], dtype=torch.float32)
    lv = torch.tensor([[min((math.log(c * q["var"]) for c in (1.5, 2.0, 3.0)),
                            key=lambda l: _iw_se(q, q["mean"], l, 1000))] for q in quads], dtype=torch.float32)
    se = torch.tensor([_iw_se(q, float(a), float(b), 1000) for q, a, b in zip(quads, mu[:, 0], lv[:, 0])])
    assert float(se.max()) < 0.03
    zsq = []
    for seed in (11, 12, 13):
        iw = iw_log_likelihood(m, exs, K=1000, seed=seed, mu=mu, logvar=lv)
        assert bool(((iw - exact).abs() < 4 * se + 2e-4).all()), (iw - exact, se)
        zsq.append(((iw - exact) / se) ** 2)
    assert float(torch.cat(zsq).mean()) < 3.0          # χ²/dof of 18 standardised errors
    # the recorded Monte Carlo variance of each estimate (from its own K weights) is the quadrature's
    _, mc_var = iw_log_likelihood(m, exs, K=1000, seed=11, mu=mu, logvar=lv, mc_var=True)
    assert torch.allclose(mc_var.sqrt(), se.double(), rtol=0.25), (mc_var.sqrt(), se)
    # (b) the full pipeline with the model's own encoder, here one that outputs the prior (a random encoder
    # can give an infinite-variance proposal): within its Monte Carlo error, and much closer to log p(x) than
    # the ELBO of the same posterior
    with torch.no_grad():
        m.encoder.linear.weight.zero_()
    mu_e, lv_e, _ = encode_all(m, exs)
    se_e = torch.tensor([_iw_se(q, float(a), float(b), 1000) for q, a, b in zip(quads, mu_e[:, 0], lv_e[:, 0])])
    elbo_e = torch.tensor([_elbo_quad(q, float(a), float(b)) for q, a, b in zip(quads, mu_e[:, 0], lv_e[:, 0])])
    iw = iw_log_likelihood(m, exs, K=1000, seed=1)
    assert bool(((iw - exact).abs() < 4 * se_e + 2e-4).all()), (iw - exact, se_e)
    assert bool(((iw - exact).abs() < 0.5 * (exact - elbo_e)).all()), (iw - exact, exact - elbo_e)
    assert bool((elbo_e <= exact + 1e-6).all())


def test_k1_is_elbo_in_expectation_and_iw_grows_with_k():
    m = _tiny_vae(scale=1.0, seed=3)
    ex = _examples([4, 5], 1, [3], seed=7)[0]
    q = _quadrature(m, ex)
    mu0, lv0 = encode_all(m, [ex])[:2]
    reps = 3000
    mu, lv = mu0.expand(reps, 1).contiguous(), lv0.expand(reps, 1).contiguous()
    k1 = iw_log_likelihood(m, [ex] * reps, K=1, seed=5, mu=mu, logvar=lv)
    elbo = _elbo_quad(q, float(mu0), float(lv0))
    se = float(k1.std()) / math.sqrt(reps)
    assert abs(float(k1.mean()) - elbo) < 4 * se + 1e-4, (float(k1.mean()), elbo, se)
    means = [float(k1.mean())]
    for K, n in ((10, 600), (100, 150)):
        means.append(float(iw_log_likelihood(m, [ex] * n, K=K, seed=5, mu=mu[:n], logvar=lv[:n]).mean()))
    assert means[0] < means[1] < means[2] <= q["log_px"] + 0.01, (means, q["log_px"])


def test_bit_identical_across_batch_and_chunk_sizes():
    # hidden sizes that need padding (24, 40) and lengths 1..6 so that groups of many sizes occur
    torch.manual_seed(0)
    m = VAE(ModelConfig(vocab_size=30, enc_emb=10, dec_emb=12, enc_hidden=24, dec_hidden=40, nz=5)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.5)
    exs = _examples(list(range(3, 30)), 24, [1, 3, 6, 3, 2, 3], seed=2)
    ref = iw_log_likelihood(m, exs, K=64, seed=9)
    for kw in ({"max_rows": 40, "encode_batch": 3, "proj_rows": 32},      # 40 + 24 samples, padded tail
               {"max_rows": 33, "encode_batch": 1, "proj_rows": 100},
               {"max_rows": 100_000, "encode_batch": 24, "proj_rows": 5000},
               {"max_rows": 200, "encode_batch": 7, "proj_rows": 64}):
        out = iw_log_likelihood(m, exs, K=64, seed=9, **kw)
        assert torch.equal(out, ref), kw
    ref16 = iw_log_likelihood(m, exs, K=64, seed=9, precision="bf16")
    for kw in ({"max_rows": 40, "encode_batch": 3, "proj_rows": 32}, {"max_rows": 100_000, "encode_batch": 24}):
        assert torch.equal(iw_log_likelihood(m, exs, K=64, seed=9, precision="bf16", **kw), ref16), kw
    other = iw_log_likelihood(m, exs, K=64, seed=10)
    assert not torch.equal(other, ref)
    a = elbo_terms(m, exs, seed=4, batch_size=32)
    b = elbo_terms(m, exs, seed=4, batch_size=2)
    assert torch.equal(a["rec"], b["rec"]) and torch.equal(a["kl"], b["kl"])


def test_mi_and_au_closed_forms():
    g = torch.Generator().manual_seed(0)
    n = 2000
    # two far-apart clusters (±20, σ = 1) in 1-d: I(x; z) = log 2
    mu = torch.where(torch.arange(n) % 2 == 0, 20.0, -20.0).double().view(n, 1)
    lv = torch.zeros(n, 1, dtype=torch.float64)
    assert abs(mutual_information(mu, lv, "li", generator=g) - math.log(2)) < 0.05
    # N far-apart posteriors: MI = log N (Li); He per batch: batch-size-weighted log b
    mu = (torch.arange(n, dtype=torch.float64) * 50.0).view(n, 1).repeat(1, 2)
    lv = torch.zeros(n, 2, dtype=torch.float64)
    assert abs(mutual_information(mu, lv, "li", generator=g) - math.log(n)) < 0.15
    sizes = [32] * 60 + [80]
    he = mutual_information(mu, lv, "he", batch_sizes=sizes, generator=g)
    expect = (60 * 32 * math.log(32) + 80 * math.log(80)) / n
    assert abs(he - expect) < 0.15
    # an encoder whose output ignores x: MI ≈ 0 (through the model's encoder)
    m = _tiny_vae(vocab_size=12, emb=6, hidden=8, nz=4, seed=5)
    with torch.no_grad():
        m.encoder.linear.weight.zero_()
    exs = _examples(list(range(4, 12)), 400, [2, 5, 7], seed=1)
    mu0, lv0, _ = encode_all(m, exs)
    assert float(mu0.abs().max()) == 0.0
    mi0 = mutual_information(mu0, lv0, "li", z=mi_samples(mu0, lv0, seed=3))
    assert abs(mi0) < 0.2
    # AU: per-dimension variances exactly 0, 0.005, 0.02, 1 (N − 1 denominator)
    u = torch.randn(500, generator=g, dtype=torch.float64)
    u = (u - u.mean()) / u.std(unbiased=True)
    mu = torch.stack([u * math.sqrt(v) for v in (0.0, 0.005, 0.02, 1.0)], 1)
    assert active_units(mu) == 2
    assert active_units(mu, threshold=0.001) == 3
    assert active_units(mu, threshold=0.5) == 1


def test_token_count_rule(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("a b c\n\nd e\nf\n")
    corpus = read_corpus(p)
    vocab = Vocab.build(corpus.sentences)
    assert count_tokens([vocab.encode(s) for s in corpus.sentences]) == 3 + 2 + 1 + 3


def test_ptb_test_token_count():
    path = SHARED_DATA / "ptb" / "ptb.test.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present (set TEXTVAE_SHARED_DATA)")
    corpus = read_corpus(path)
    vocab = Vocab.build(read_corpus(SHARED_DATA / "ptb" / "ptb.train.txt").sentences)
    examples = [vocab.encode(s) for s in corpus.sentences]
    assert len(examples) == 3761
    assert sum(len(s) for s in corpus.sentences) == 78669
    assert count_tokens(examples) == 82430
    assert len(vocab) == 10002


# ---------------------------------------------------------------------------------------------------------
# CLI on checkpoints of both kinds
# ---------------------------------------------------------------------------------------------------------

def _write_corpus(d: Path) -> Vocab:
    lines = ["the cat sat", "a dog ran far", "the dog sat", "cats run", "a cat ran far away", "the end"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.txt").write_text("\n".join(lines) + "\n")
    (d / "test.txt").write_text("the cat ran\nan unseen word\nthe dog sat\na cat\n")
    return Vocab.build([s.split() for s in lines])


def test_cli_evaluate_vae_and_lm(tmp_path, capsys):
    data = tmp_path / "data"
    vocab = _write_corpus(data)
    cfg = ModelConfig(vocab_size=len(vocab), enc_emb=8, dec_emb=8, enc_hidden=16, dec_hidden=16, nz=4)
    torch.manual_seed(0)
    vae = VAE(cfg).eval()
    atomic_save(model_payload(vae, vocab, {"method": "fb", "lam": 4.0}, epoch=3, best_val=1.0), tmp_path / "vae.pt")
    lm = LSTMLM(cfg).eval()
    atomic_save(model_payload(lm, vocab, {"method": "lm"}, epoch=1, best_val=1.0), tmp_path / "lm.pt")

    out = tmp_path / "eval_vae.json"
    rc = cli_main(["evaluate", "--ckpt", str(tmp_path / "vae.pt"), "--data", str(data), "--out", str(out),
                   "--iw-samples", "50", "--no-progress", "--seed", "3"])
    assert rc == 0
    res = json.loads(out.read_text())
    for k in ("nll", "ppl", "rec", "kl", "neg_elbo", "elbo_ppl", "mi", "mi_variant", "au", "au_threshold",
              "sentences", "tokens", "iw_samples", "seed", "precision", "device", "checkpoint", "split", "seconds"):
        assert k in res, k
    assert res["sentences"] == 4 and res["tokens"] == 4 + 3 + 3 + 3 + 2
    assert res["iw_samples"] == 50 and res["seed"] == 3 and res["split"] == "test"
    assert res["checkpoint"]["method"] == "fb" and res["checkpoint"]["lam"] == 4.0
    assert len(res["checkpoint"]["sha256"]) == 64
    assert res["unk_rate"] > 0
    assert math.isclose(res["neg_elbo"], res["rec"] + res["kl"], rel_tol=1e-9)
    assert math.isclose(res["ppl"], math.exp(res["nll"] * res["sentences"] / res["tokens"]), rel_tol=1e-9)
    assert math.isclose(res["elbo_ppl"], math.exp(res["neg_elbo"] * res["sentences"] / res["tokens"]),
                        rel_tol=1e-9)
    assert res["nll"] <= res["neg_elbo"] + 0.5            # the IW bound is (stochastically) tighter
    assert "NLL" in capsys.readouterr().out
    # same seed → same file content for the metrics; He variant selectable
    out2 = tmp_path / "eval_vae_he.json"
    cli_main(["evaluate", "--ckpt", str(tmp_path / "vae.pt"), "--data", str(data), "--out", str(out2),
              "--iw-samples", "50", "--no-progress", "--seed", "3", "--mi-variant", "he", "--max-rows", "33"])
    res2 = json.loads(out2.read_text())
    assert res2["nll"] == res["nll"] and res2["mi"] == res["mi_he"] and res2["mi_variant"] == "he"
    # --iw-samples 0: a plain test pass, the same Recon/KL/MI/AU and no IW estimate
    out0 = tmp_path / "eval_vae_plain.json"
    assert cli_main(["evaluate", "--ckpt", str(tmp_path / "vae.pt"), "--data", str(data), "--out", str(out0),
                     "--iw-samples", "0", "--no-progress", "--seed", "3"]) == 0
    res0 = json.loads(out0.read_text())
    assert "nll" not in res0 and "ppl" not in res0 and res0["iw_samples"] == 0
    assert all(res0[k] == res[k] for k in ("rec", "kl", "neg_elbo", "elbo_ppl", "mi_li", "mi_he", "au"))
    assert "no IW-NLL" in capsys.readouterr().out

    out_lm = tmp_path / "eval_lm.json"
    assert cli_main(["evaluate", "--ckpt", str(tmp_path / "lm.pt"), "--data", str(data), "--out", str(out_lm),
                     "--no-progress"]) == 0
    r = json.loads(out_lm.read_text())
    exs = [vocab.encode(line.split()) for line in (data / "test.txt").read_text().splitlines()]
    with torch.no_grad():
        exact = sum(float(-lm.log_prob(torch.tensor([e]))[0]) for e in exs)
    assert r["kind"] == "lm" and r["tokens"] == 15
    assert math.isclose(r["nll"], exact / 4, rel_tol=1e-5)
    assert math.isclose(r["ppl"], math.exp(exact / 15), rel_tol=1e-5)


def test_cli_bf16_records_check(tmp_path):
    data = tmp_path / "data"
    vocab = _write_corpus(data)
    cfg = ModelConfig(vocab_size=len(vocab), enc_emb=8, dec_emb=8, enc_hidden=16, dec_hidden=16, nz=4)
    torch.manual_seed(1)
    atomic_save(model_payload(VAE(cfg).eval(), vocab, {"method": "vae"}), tmp_path / "vae.pt")
    out = tmp_path / "e.json"
    assert cli_main(["evaluate", "--ckpt", str(tmp_path / "vae.pt"), "--data", str(data), "--out", str(out),
                     "--iw-samples", "40", "--precision", "bf16", "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["precision"] == "bf16"
    chk = res["precision_check"]          # 4 sentences: one sentence with K / 10 samples in both precisions
    assert (chk["sentences"], chk["samples"]) == (1, 4) and chk["passed"] and chk["mean_abs_diff"] < 0.05


def test_bf16_check_is_a_tenth_of_the_work():
    # the fp32 check never costs more than a tenth of the IW pass: N // 10 sentences with all K samples (at most
    # the given cap); under 10 sentences, one sentence with K // 10 samples; nothing when that is < 1 sample
    m = _tiny_vae(vocab_size=40, emb=8, hidden=16, nz=2, scale=0.3, seed=2)
    vocab = Vocab.build([[f"w{i}"] for i in range(36)])
    words = [f"w{i}" for i in range(36)]
    rng = random.Random(0)
    sents = [[rng.choice(words) for _ in range(rng.randint(2, 6))] for _ in range(57)]
    for n, K, cap, expect in ((57, 30, 50, (5, 30)), (57, 30, 3, (3, 30)), (9, 30, 50, (1, 3)), (9, 5, 50, (0, 0))):
        res = evaluate_model(m, vocab, sents[:n], iw_samples=K, precision="bf16", precision_check=cap)
        chk = res["precision_check"]
        assert (chk["sentences"], chk["samples"]) == expect, (n, K, cap, chk)
        assert chk["passed"] is (None if expect[0] == 0 else True), chk


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = cli_main(["evaluate", "--ckpt", str(tmp_path / "missing.pt"), "--data", str(tmp_path), "--out",
                   str(tmp_path / "o.json")])
    assert rc == 1
    assert "checkpoint not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# the fast path against the plain formulas
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, seed", [((17, 6, 10, 2), 11), ((30, 12, 24, 5), 12), ((9, 4, 70, 3), 13)])
def test_fast_iw_agrees_with_the_reference_on_random_models(sizes, seed):
    """iw_log_likelihood (FastVAE, tiling, row budgets, per-sentence noise) = iw_log_likelihood_reference (the
    model's encoder and decoder.log_prob, SPEC §5.2 written out) with the same noise, to float32 rounding."""
    vocab_size, emb, hidden, nz = sizes
    m = _tiny_vae(vocab_size=vocab_size, emb=emb, hidden=hidden, nz=nz, scale=0.4, seed=seed)
    exs = _examples(list(range(4, vocab_size)), 13, [1, 4, 9], seed=seed)
    K = 24
    ref = torch.empty(len(exs), dtype=torch.float64)
    batches = make_batches(exs, 5)
    for x, idx in zip(batches.tensors, batches.index):
        ref[torch.tensor(idx)] = iw_log_likelihood_reference(m, x, iw_noise(7, idx, K, nz))
    for max_rows in (33, 64, 1000):   # one sentence over several passes, several sentences per pass
        fast = iw_log_likelihood(m, exs, K, seed=7, max_rows=max_rows, proj_rows=40)
        assert torch.allclose(fast, ref, rtol=0, atol=2e-4), (max_rows, (fast - ref).abs().max())
    # another seed is other noise: the comparison can tell
    assert not torch.allclose(iw_log_likelihood(m, exs, K, seed=8), ref, rtol=0, atol=1e-2)


# ---------------------------------------------------------------------------------------------------------
# `textvae evaluate` against an independent computation
# ---------------------------------------------------------------------------------------------------------

def _mi_by_definition(mu: np.ndarray, lv: np.ndarray, z: np.ndarray) -> float:
    """I(x; z) = mean_i E_q(z|x_i) log q(z|x_i) − mean_i log (1/N Σ_j q(z_i|x_j)), z_i ~ q(z|x_i) (numpy)."""
    n, nz = mu.shape
    neg_entropy = np.mean(-0.5 * nz * math.log(2 * math.pi) - 0.5 * (1.0 + lv).sum(1))
    log_q = -0.5 * (nz * math.log(2 * math.pi) + lv[None, :, :].sum(-1)
                    + ((z[:, None, :] - mu[None, :, :]) ** 2 / np.exp(lv[None, :, :])).sum(-1))   # [i, j]
    top = log_q.max(1, keepdims=True)
    log_agg = (top[:, 0] + np.log(np.exp(log_q - top).sum(1))) - math.log(n)
    return float(neg_entropy - log_agg.mean())


def test_cli_evaluate_matches_an_independent_computation(tmp_path):
    """Recon, KL, MI (Li and He) and AU of `textvae evaluate` equal the definitions computed here from the
    model's own encoder and decoder: KL in closed form (numpy), Recon from log p(x|z) of the sample drawn with
    the evaluation's noise, MI by its definition (per batch for He's, weighted by batch size), AU from the
    variances of the posterior means."""
    words = [f"w{i}" for i in range(14)]
    rng = np.random.default_rng(0)
    # exact-length batches of 32 + 9 (length 3) and 7 (length 6): He's batches differ in size
    sentences = [[str(w) for w in rng.choice(words, k)] for k in [3] * 41 + [6] * 7]
    order = rng.permutation(len(sentences))
    sentences = [sentences[i] for i in order]
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.txt").write_text("".join(" ".join(s) + "\n" for s in sentences))
    vocab = Vocab.build(sentences)
    nz = 4
    m = _tiny_vae(vocab_size=len(vocab), emb=8, hidden=16, nz=nz, scale=0.5, seed=3)
    atomic_save(model_payload(m, vocab, {"method": "vae"}, epoch=1, best_val=1.0), tmp_path / "vae.pt")
    seed = 5
    out = tmp_path / "eval.json"
    assert cli_main(["evaluate", "--ckpt", str(tmp_path / "vae.pt"), "--data", str(data), "--out", str(out),
                     "--iw-samples", "5", "--no-progress", "--seed", str(seed), "--au-threshold", "0.05"]) == 0
    res = json.loads(out.read_text())

    exs = [vocab.encode(s) for s in sentences]
    n = len(exs)
    with torch.no_grad():
        enc = [m.encoder(torch.tensor([e])) for e in exs]
        mu = torch.cat([a for a, _ in enc]).double().numpy()
        lv = torch.cat([b for _, b in enc]).double().numpy()
        assert lv.std() > 0.3 and np.abs(lv).mean() > 0.3     # σ ≠ 1 and spread: the KL checks can tell
        kl = 0.5 * (mu ** 2 + np.exp(lv) - lv - 1.0).sum(1)
        rec = []
        for i, e in enumerate(exs):
            eps = SentenceNoise(seed, STREAM_REC)(i, 1, nz).double().numpy()
            z = torch.from_numpy(mu[i] + np.exp(0.5 * lv[i]) * eps).float().view(1, 1, nz)
            rec.append(-float(m.decoder.log_prob(torch.tensor([e]), z)))
    eps_mi = np.concatenate([SentenceNoise(seed, STREAM_MI)(i, 1, nz).double().numpy() for i in range(n)])
    z_mi = mu + np.exp(0.5 * lv) * eps_mi
    batches = make_batches(exs, 32).index           # the exact-length batches of SPEC §1.5
    assert sorted(len(b) for b in batches) == [7, 9, 32]
    mi_he = sum(len(b) * _mi_by_definition(mu[b], lv[b], z_mi[b]) for b in batches) / n
    variances = mu.var(0, ddof=1)

    assert res["kl"] == pytest.approx(kl.mean(), abs=1e-5)
    assert res["rec"] == pytest.approx(np.mean(rec), abs=1e-4)
    assert res["mi_li"] == pytest.approx(_mi_by_definition(mu, lv, z_mi), abs=1e-4)
    assert res["mi_he"] == pytest.approx(mi_he, abs=1e-4)
    assert res["mi"] == res["mi_li"] and res["mi_variant"] == "li"
    assert res["au_variances"] == pytest.approx(variances.tolist(), abs=2e-6)
    assert res["au"] == int((variances >= 0.05).sum())
    # the standard errors beside them, and the per-sentence values that paired comparisons read
    lengths = [len(e) - 1 for e in exs]
    nll = -iw_log_likelihood(m, exs, K=5, seed=seed).numpy()
    assert res["per_sentence"]["tokens"] == lengths
    assert res["per_sentence"]["rec"] == pytest.approx(rec, abs=1e-3)
    assert res["per_sentence"]["nll"] == pytest.approx(nll.tolist(), abs=1e-3)
    assert res["se"]["rec"] == pytest.approx(np.std(rec, ddof=1) / math.sqrt(n), rel=1e-4)
    assert res["se"]["kl"] == pytest.approx(np.std(kl, ddof=1) / math.sqrt(n), rel=1e-4)
    t, L = np.array(lengths), nll.sum() / sum(lengths)          # PPL = exp(L): a ratio over sentences
    u = n * math.exp(L) * (nll - L * t) / t.sum()
    assert res["se"]["ppl"] == pytest.approx(np.std(u, ddof=1) / math.sqrt(n), rel=1e-4)
    assert 0 < res["se"]["nll_mc"] < res["se"]["nll"] and res["se"]["mi"] > 0
