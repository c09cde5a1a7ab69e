"""The trainer as a user runs it: every method for one epoch on a PTB slice, kill-and-resume, bad inputs."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from textvae.modeling.checkpoint import atomic_save, load_checkpoint, load_model, model_payload
from textvae.core.errors import TrainingError
from textvae.modeling.methods import METHODS
from textvae.modeling.model import VAE, ModelConfig
from textvae.modeling.objectives import BetaSchedule, vae_loss
from textvae.training.trainer import Trainer, TrainConfig

TINY = ["--enc-emb", "32", "--dec-emb", "32", "--enc-hidden", "32", "--dec-hidden", "32"]
TINY_SIZES = dict(enc_emb=32, dec_emb=32, enc_hidden=32, dec_hidden=32)


@pytest.fixture(scope="module")
def ae_ckpt(ptb_slice, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ae")
    run_cli("train", "--data", ptb_slice, "--method", "ae", "--out", out, "--epochs", "1", *TINY)
    return out / "best.pt"


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_one_epoch_on_ptb_slice(method, ptb_slice, ae_ckpt, tmp_path):
    m = METHODS[method]
    args = ["train", "--data", ptb_slice, "--method", method, "--out", tmp_path, "--epochs", "1", *TINY]
    if m.needs_lam:
        args += ["--lam", "3"]
    if m.pretrained_encoder:
        args += ["--init-from", ae_ckpt]
    if m.aggressive:  # a shorter inner loop keeps the test quick; the switch-off rule is still exercised
        args += ["--aggressive-max-steps", "16"]
    run_cli(*args)
    model, vocab, ckpt = load_model(tmp_path / "best.pt")
    assert ckpt["kind"] == m.kind and ckpt["run"]["method"] == method
    words = {w for line in (ptb_slice / "train.txt").read_text().splitlines() for w in line.split()}
    assert len(vocab) == 4 + len(words - {"<unk>"})  # a literal <unk> in PTB is the reserved id 3
    (rec,) = _records(tmp_path)
    assert math.isfinite(rec["train_loss"]) and math.isfinite(rec["val_loss"])
    if m.kind == "vae":
        assert 0 <= rec["val_au"] <= 32 and rec["val_kl"] >= 0
        expected_beta = {"ae": 0.0, "vae": 1.0, "fb": 1.0, "fbp": 1.0, "pretrain": 1.0, "iwae": 1.0,
                         "iwae_pretrain": 1.0}.get(method)
        if expected_beta is not None:
            assert rec["beta"] == expected_beta
        else:  # annealed or cyclic: still ramping after one epoch of a 2k slice
            assert 0 < rec["beta"] < 1
    assert (tmp_path / "train.log").read_text().count("epoch") >= 1


def test_ours_keeps_ae_encoder_and_resets_decoder(ptb_slice, ae_ckpt):
    ae = load_checkpoint(ae_ckpt)
    cfg = TrainConfig(method="ours", lam=4, init_from=str(ae_ckpt), max_train=2000, progress=False)
    t = Trainer(cfg, ptb_slice, ae_ckpt.parent / "ours_probe", TINY_SIZES)
    sd = t.model.state_dict()
    for k, v in ae["model"].items():
        if k.startswith("encoder."):
            assert torch.equal(sd[k], v), k
        else:
            assert not torch.equal(sd[k], v), k
            limit = 0.1 if "embed" in k else 0.01
            assert sd[k].abs().max() <= limit


def test_pretrained_run_refuses_other_vocabulary_or_size(ptb_slice, ae_ckpt, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    lines = (ptb_slice / "train.txt").read_text().splitlines()
    (other / "train.txt").write_text("\n".join(lines[:500]) + "\n")
    (other / "valid.txt").write_text((ptb_slice / "valid.txt").read_text())
    p = run_cli("train", "--data", other, "--method", "ours", "--lam", "4", "--init-from", ae_ckpt, "--out",
                tmp_path / "r", *TINY, check=False)
    assert p.returncode == 1 and "vocabulary differs" in p.stderr and str(ae_ckpt) in p.stderr
    p = run_cli("train", "--data", ptb_slice, "--method", "ours", "--lam", "4", "--init-from", ae_ckpt, "--out",
                tmp_path / "r2", "--enc-emb", "32", "--dec-emb", "32", "--enc-hidden", "32", "--dec-hidden", "64",
                check=False)
    assert p.returncode == 1 and "model sizes differ" in p.stderr


# ------------------------------------------------------------------------------------------------------------
# Resume: a killed run continues to the same final weights and metrics
# ------------------------------------------------------------------------------------------------------------

def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "textvae", "train", "--data", str(data), "--method", "anneal", "--out", str(out),
            "--epochs", "4", "--min-epoch", "0", "--patience", "1", "--max-train", "1200", *TINY, *extra]


def test_killed_run_resumes_to_identical_result(ptb_slice, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run(_train_cmd(ptb_slice, full), check=True, capture_output=True, env=env, timeout=600)

    cut = tmp_path / "cut"
    proc = subprocess.Popen(_train_cmd(ptb_slice, cut), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        metrics = cut / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    time.sleep(0.3)  # into the third epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len((cut / "metrics.jsonl").read_text().splitlines())
    assert killed_at < 4, "the run finished before it could be killed"
    assert not (cut / "best.pt").exists(), "best.pt must only appear when a run finishes"
    assert load_checkpoint(cut / "last.pt")["trainer_state"]["epoch"] == killed_at

    subprocess.run(_train_cmd(ptb_slice, cut, "--resume"), check=True, capture_output=True, env=env, timeout=600)
    a, b = load_checkpoint(full / "best.pt"), load_checkpoint(cut / "best.pt")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    timing = {"seconds", "sentences_per_s"}
    ra = [{k: v for k, v in r.items() if k not in timing} for r in _records(full)]
    rb = [{k: v for k, v in r.items() if k not in timing} for r in _records(cut)]
    assert ra == rb
    assert any("decayed_to" in r for r in ra), "the run should exercise lr decay with reload-best"


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(ptb_slice, tmp_path):
    cfg = TrainConfig(method="vae", max_train=300, max_valid=50, max_epochs=3, progress=False)
    t = Trainer(cfg, ptb_slice, tmp_path, TINY_SIZES)
    real = t.batch_loss

    def poisoned(x, beta):
        loss, rec, kl = real(x, beta)
        if t.state["epoch"] == 1:
            loss = loss * float("nan")
        return loss, rec, kl

    t.batch_loss = poisoned
    with pytest.raises(TrainingError, match="non-finite training loss .* last good checkpoint"):
        t.fit()
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["trainer_state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert not (tmp_path / "best.pt").exists()


# ------------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and line, or the option; non-zero exit
# ------------------------------------------------------------------------------------------------------------

def _corpus(tmp_path: Path, train: bytes, valid: bytes = b"a b c\n") -> Path:
    d = tmp_path / "corpus"
    d.mkdir(exist_ok=True)
    (d / "train.txt").write_bytes(train)
    (d / "valid.txt").write_bytes(valid)
    return d


@pytest.mark.parametrize("train, expect", [
    (b"", "empty corpus"),
    (b"the cat\nsat \xff\xfe here\n", "train.txt:2: undecodable bytes"),
    (b"1\tgood line\n0\tanother\n1\tthird\nno tab here\n", "train.txt:4: labelled line has no TAB"),
])
def test_bad_corpus_files_name_file_and_line(tmp_path, train, expect):
    d = _corpus(tmp_path, train)
    p = run_cli("train", "--data", d, "--method", "vae", "--out", tmp_path / "run", *TINY, check=False)
    assert p.returncode == 1
    assert expect in p.stderr and len(p.stderr.strip().splitlines()) <= 2, p.stderr


def test_missing_file(tmp_path):
    p = run_cli("train", "--data", tmp_path / "nowhere", "--method", "vae", "--out", tmp_path / "run", check=False)
    assert p.returncode == 1 and "nowhere" in p.stderr and "not found" in p.stderr


@pytest.mark.parametrize("args, expect", [
    (["--method", "vea"], "--method: unknown method 'vea'"),
    (["--method", "ours", "--lam", "0", "--init-from", "x.pt"], "--lam: method 'ours' needs a target rate λ > 0"),
    (["--method", "fb", "--lam", "-1"], "--lam: method 'fb' needs a target rate"),
    (["--method", "fb"], "--lam"),
    (["--method", "ours", "--lam", "4"], "--init-from"),
    (["--method", "ours", "--lam", "4", "--init-from", "missing.pt"], "missing.pt: checkpoint not found"),
])
def test_bad_options(tmp_path, args, expect):
    d = _corpus(tmp_path, b"a b c\nd e\n")
    p = run_cli("train", "--data", d, "--out", tmp_path / "run", *TINY, *args, check=False)
    assert p.returncode == 1 and expect in p.stderr, p.stderr


def test_init_from_a_non_vae_checkpoint_is_refused(tmp_path):
    from textvae.corpora.data import Vocab
    from textvae.modeling.model import LSTMLM

    d = _corpus(tmp_path, b"a b c\nd e\n")
    lm = LSTMLM(ModelConfig(vocab_size=9, **TINY_SIZES))
    atomic_save(model_payload(lm, Vocab.build([["a", "b", "c"], ["d", "e"]])), tmp_path / "lm.pt")
    p = run_cli("train", "--data", d, "--out", tmp_path / "run", "--method", "pretrain", "--init-from",
                tmp_path / "lm.pt", *TINY, check=False)
    assert p.returncode == 1 and "needs a VAE-family (AE) checkpoint" in p.stderr


# ------------------------------------------------------------------------------------------------------------
# Objectives and schedules
# ------------------------------------------------------------------------------------------------------------

def _tiny_vae(seed=0, nz=4):
    torch.manual_seed(seed)
    return VAE(ModelConfig(vocab_size=12, enc_emb=8, dec_emb=8, enc_hidden=8, dec_hidden=8, nz=nz)).eval()


def _x():
    x = torch.randint(4, 12, (5, 6))
    x[:, 0], x[:, -1] = 1, 2
    return x


def test_fb_threshold_is_per_example_and_dimension():
    model = _tiny_vae()
    x = _x()
    mu = torch.tensor([[0.1, 2.0, 0.0, 3.0]] * 5, requires_grad=True)   # KL_d: 0.005, 2, 0, 4.5
    logvar = torch.zeros(5, 4, requires_grad=True)
    model.encoder.forward = lambda inp: (mu, logvar)
    t = vae_loss(model, x, "fb", beta=0.5, lam=4.0)                       # threshold 4/4 = 1 per dimension
    assert torch.allclose(t.loss - t.rec, 0.5 * torch.full((5,), 2.0 + 4.5))
    (t.loss - t.rec).sum().backward()
    assert (mu.grad[:, [0, 2]] == 0).all() and (mu.grad[:, [1, 3]] != 0).all()


def test_fbp_modes():
    model = _tiny_vae()
    x = _x()
    torch.manual_seed(2)
    per = vae_loss(model, x, "fbp", beta=1.0, lam=1e-9)
    assert torch.allclose(per.loss, per.rec + per.kl)
    torch.manual_seed(2)
    none = vae_loss(model, x, "fbp", beta=1.0, lam=1e9, fbp_mode="batch_mean")
    assert torch.allclose(none.loss, none.rec)


def test_iwae_with_one_sample_is_the_elbo_and_compat_flips_sign():
    model = _tiny_vae()
    x = _x()
    torch.manual_seed(3)
    iw = vae_loss(model, x, "iwae", 1.0, iwae_k=1)
    torch.manual_seed(3)
    elbo_z = vae_loss(model, x, "elbo", 1.0)
    # with one sample: -log w = rec + log q - log p(z); its expectation is rec + KL. Same sample → same rec.
    assert torch.allclose(iw.rec, elbo_z.rec)
    torch.manual_seed(3)
    compat = vae_loss(model, x, "iwae", 1.0, iwae_k=1, iwae_code_compat=True)
    assert torch.allclose(compat.loss, iw.loss)  # k = 1: both forms coincide
    torch.manual_seed(4)
    k10 = vae_loss(model, x, "iwae", 1.0, iwae_k=10)
    torch.manual_seed(4)
    k10c = vae_loss(model, x, "iwae", 1.0, iwae_k=10, iwae_code_compat=True)
    assert (k10c.loss >= k10.loss - 1e-5).all()  # log-mean of 1/w >= -log-mean of w (Jensen)


def test_linear_schedule_matches_spec_rate():
    s = BetaSchedule("linear", kl_start=0.0, warm_up=10, n_train=42068, batch_size=32)
    r = 1 / (10 * 42068 / 32)
    assert s(1) == pytest.approx(r)
    assert s(13146) < 1.0 <= s(13147) + 1e-12 or s(13147) == 1.0
    agg = BetaSchedule("linear", kl_start=0.1, warm_up=10, n_train=42068, batch_size=32)
    assert agg(1) == pytest.approx(0.1 + 0.9 * r)


def test_cyclic_schedule_restarts_each_cycle():
    s = BetaSchedule("cyclic", batches_per_epoch=100, cycle_epochs=10, cyclic_start=0.1, ramp_epochs=5)
    assert s(1) == pytest.approx(0.1)
    assert s(451) == pytest.approx(1.0)
    assert s(1000) == 1.0
    assert s(1001) == pytest.approx(0.1)


def _mu_spread(model: VAE, batches) -> float:
    with torch.no_grad():
        mu = torch.cat([model.encoder(x)[0] for x in batches])
    return mu.var(0).mean().item()


def test_encoder_init_torch_only_changes_a_new_encoder(ptb_slice, ae_ckpt, tmp_path):
    """The AE-saddle finding (docs/demo.md): the SPEC's encoder starts input-independent (posterior means that
    vary ~1e-10 across sentences), PyTorch's default initialisation does not; decoders keep the SPEC's."""
    spec = Trainer(TrainConfig("ae", max_epochs=1), ptb_slice, tmp_path / "spec", TINY_SIZES)
    torch_init = Trainer(TrainConfig("ae", max_epochs=1, encoder_init="torch"), ptb_slice, tmp_path / "t", TINY_SIZES)
    batches = list(spec.valid_batches)[:20]
    assert _mu_spread(spec.model, batches) < 1e-8
    assert _mu_spread(torch_init.model, batches) > 1e-5
    emb = torch_init.model.encoder.embed.weight
    assert 0.9 < emb.std().item() < 1.1                      # N(0, 1), not U(-0.1, 0.1)
    assert spec.model.encoder.embed.weight.abs().max() <= 0.1
    for model in (spec.model, torch_init.model):
        assert all(p.abs().max() <= 0.1 for p in model.decoder.parameters())
    # same seed, same decoder: only the encoder differs
    assert all(torch.equal(a, b) for a, b in zip(spec.model.decoder.parameters(), torch_init.model.decoder.parameters()))
    # a pretrained encoder is never re-initialised
    ours = Trainer(TrainConfig("ours", lam=3, init_from=str(ae_ckpt), encoder_init="torch"), ptb_slice,
                   tmp_path / "ours", TINY_SIZES)
    ae_model, _, _ = load_model(ae_ckpt)
    assert all(torch.equal(a, b) for a, b in zip(ours.model.encoder.parameters(), ae_model.encoder.parameters()))
    with pytest.raises(Exception, match="--encoder-init"):
        Trainer(TrainConfig("ae", encoder_init="xavier"), ptb_slice, tmp_path / "bad", TINY_SIZES)


def test_encoder_init_torch_forget_raises_only_the_forget_gate_bias(ptb_slice, tmp_path):
    """`torch_forget` (issue 24) is `torch` with FORGET_BIAS added to the encoder LSTM's forget-gate bias only."""
    from textvae.modeling.model import FORGET_BIAS

    plain = Trainer(TrainConfig("ae", max_epochs=1, encoder_init="torch"), ptb_slice, tmp_path / "t", TINY_SIZES)
    forget = Trainer(TrainConfig("ae", max_epochs=1, encoder_init="torch_forget"), ptb_slice, tmp_path / "f",
                     TINY_SIZES)
    a, b = dict(plain.model.encoder.named_parameters()), dict(forget.model.encoder.named_parameters())
    h = plain.model.encoder.lstm.hidden_size
    diff = b["lstm.bias_ih_l0"] - a["lstm.bias_ih_l0"]
    assert torch.allclose(diff[h:2 * h], torch.full((h,), FORGET_BIAS)) and FORGET_BIAS == 3.0
    assert torch.equal(diff[:h], torch.zeros(h)) and torch.equal(diff[2 * h:], torch.zeros(2 * h))
    assert all(torch.equal(a[k], b[k]) for k in a if k != "lstm.bias_ih_l0")
    assert all(torch.equal(x, y) for x, y in zip(plain.model.decoder.parameters(), forget.model.decoder.parameters()))


def test_bf16_on_a_machine_without_bf16_lstm_kernels_is_one_line(tmp_path, monkeypatch):
    """oneDNN has no bfloat16 LSTM on AVX2-only CPUs: the trainer says so up front, naming the knob and the fix."""
    import textvae.modeling.checkpoint as ck
    from textvae.core.errors import ConfigError

    def no_kernels(device):
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive.\n"
                           "Run workload with environment variable ONEDNN_VERBOSE=all")
    monkeypatch.setattr(ck, "_bf16_lstm_probe", no_kernels)
    ck.check_bf16.cache_clear()
    try:
        d = _corpus(tmp_path, b"a b c\nd e\n")
        with pytest.raises(ConfigError, match=r"^--precision bf16: this machine's cpu has no bfloat16 LSTM kernels "
                                              r"\(could not create a primitive descriptor for the LSTM forward "
                                              r"propagation primitive\.\); use --precision fp32"):
            Trainer(TrainConfig(method="vae", device="cpu", precision="bf16", progress=False), d, tmp_path / "run",
                    TINY_SIZES)
        assert not (tmp_path / "run" / "last.pt").exists()
    finally:
        ck.check_bf16.cache_clear()


def test_bf16_cli_trains_or_refuses_as_this_machine_allows(tmp_path):
    """`textvae train --precision bf16` here: trains where bfloat16 LSTM kernels exist, else exits 1 with one line."""
    import textvae.modeling.checkpoint as ck
    supported = ck.bf16_supported("cpu")
    d = _corpus(tmp_path, b"a b c\nd e\n")
    p = run_cli("train", "--data", d, "--out", tmp_path / "run", "--method", "vae", "--epochs", "1",
                "--precision", "bf16", "--device", "cpu", *TINY, check=False)
    if supported:
        assert p.returncode == 0 and (tmp_path / "run" / "best.pt").exists(), p.stderr
    else:
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1 and "use --precision fp32" in lines[0], p.stderr
