"""CUDA paths against the CPU: a training step (fp32 tight, bf16 its own tolerance), the IW-NLL (same seed, and
invariant to the row budget), ``textvae gpu-run`` with real devices, and checkpoints written on CUDA read back on
the CPU and on CUDA again. Skipped (with the reason) where CUDA is absent; bench/gpu_check.sh runs them on a GPU.

Noise is made equal on both devices (dropout 0; the reparameterisation's ε drawn on the CPU) so that the only
difference left is the arithmetic. The fp32 comparison turns TF32 off (true fp32 on both sides)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from textvae.workflow import gpu_slots
from textvae.modeling import objectives
from textvae.modeling.checkpoint import load_model
from textvae.evaluation.fast_vae import iw_log_likelihood
from textvae.modeling.model import VAE, ModelConfig
from textvae.training.trainer import Trainer, TrainConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (torch.cuda.is_available() is False here); "
                                       "bench/gpu_check.sh runs these on a lent GPU")

PTB_SIZES = dict(enc_emb=256, dec_emb=256, enc_hidden=256, dec_hidden=256, nz=32)
NO_DROPOUT = dict(PTB_SIZES, dropout_in=0.0, dropout_out=0.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A random corpus with a 3,000-word vocabulary: 640 training and 96 validation sentences of 4-30 words."""
    rng = random.Random(13)
    words = [f"w{i}" for i in range(3000)]
    d = tmp_path_factory.mktemp("cuda_corpus")
    for split, n in (("train", 640), ("valid", 96), ("test", 96)):
        lines = (" ".join(rng.choice(words) for _ in range(rng.randint(4, 30))) for _ in range(n))
        (d / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture
def true_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def cpu_noise(monkeypatch):
    """ε of every reparameterisation from one CPU generator, identical on both devices."""
    def reparameterize(mu, logvar, nsamples=1, generator=None):
        g = torch.Generator().manual_seed(4321)
        eps = torch.randn((mu.size(0), nsamples, mu.size(1)), generator=g).to(mu.device, mu.dtype)
        return mu.unsqueeze(1) + (0.5 * logvar).exp().unsqueeze(1) * eps
    monkeypatch.setattr(objectives, "reparameterize", reparameterize)


def train_step(corpus: Path, out: Path, method: str, device: str, precision: str) -> dict:
    """Loss, clipped gradients and weight updates of one training step on the longest batch (float64, CPU)."""
    t = Trainer(TrainConfig(method=method, device=device, precision=precision, progress=False, seed=7),
                corpus, out, NO_DROPOUT)
    t.model.train()
    before = {n: p.detach().double().cpu() for n, p in t.model.named_parameters()}
    x = max(t.train_batches.tensors, key=lambda b: b.numel())
    loss, _, _ = t.batch_loss(x, 0.5)
    mean = loss.mean()
    t._step(mean, t.optimizers, list(t.model.parameters()))
    named = list(t.model.named_parameters())
    return {"loss": mean.item(),
            "grads": {n: p.grad.detach().double().cpu() for n, p in named if p.grad is not None},
            "updates": {n: p.detach().double().cpu() - before[n] for n, p in named}}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def flat(d: dict) -> torch.Tensor:
    return torch.cat([v.flatten() for _, v in sorted(d.items())])


@pytest.mark.parametrize("method", ["vae", "iwae", "lm"])
def test_training_step_fp32_matches_cpu(corpus, tmp_path, true_fp32, cpu_noise, method):
    cpu = train_step(corpus, tmp_path / "cpu", method, "cpu", "fp32")
    gpu = train_step(corpus, tmp_path / "gpu", method, "cuda", "fp32")
    assert abs(gpu["loss"] - cpu["loss"]) <= 2e-5 * abs(cpu["loss"])
    assert gpu["grads"].keys() == cpu["grads"].keys()
    for name, g in cpu["grads"].items():
        assert rel(gpu["grads"][name], g) < 1e-3, name
    assert rel(flat(gpu["updates"]), flat(cpu["updates"])) < 1e-3


@pytest.mark.parametrize("method", ["vae", "lm"])
def test_training_step_bf16_within_its_tolerance(corpus, tmp_path, true_fp32, cpu_noise, method):
    """bf16 autocast on CUDA against the fp32 CPU step: the loss within 1 %, all gradients within 5 % (norm)."""
    ref = train_step(corpus, tmp_path / "cpu", method, "cpu", "fp32")
    gpu = train_step(corpus, tmp_path / "gpu", method, "cuda", "bf16")
    assert abs(gpu["loss"] - ref["loss"]) <= 1e-2 * abs(ref["loss"])
    assert rel(flat(gpu["grads"]), flat(ref["grads"])) < 5e-2
    assert all(torch.isfinite(g).all() for g in gpu["grads"].values())


@pytest.fixture(scope="module")
def iw_setup(corpus):
    """A VAE of the PTB sizes with weights far from the near-uniform initialisation (peaked p(x|z), a posterior
    that matters), and 16 sentences of several lengths."""
    from textvae.corpora.data import Vocab, read_corpus
    train = read_corpus(corpus / "train.txt")
    vocab = Vocab.build(train.sentences)
    torch.manual_seed(3)
    model = VAE(ModelConfig(vocab_size=len(vocab), **PTB_SIZES)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.15, 0.15)
    examples = [vocab.encode(s) for s in read_corpus(corpus / "test.txt").sentences[:16]]
    return model, examples


def test_iw_nll_cuda_matches_cpu_and_row_budget(iw_setup):
    model, examples = iw_setup
    k = 200
    cpu = iw_log_likelihood(model, examples, k, seed=11, device="cpu")
    other_seed = iw_log_likelihood(model, examples, k, seed=12, device="cpu")
    gpu_model = VAE(model.cfg).eval()
    gpu_model.load_state_dict(model.state_dict())
    gpu_model.cuda()
    gpu = iw_log_likelihood(gpu_model, examples, k, seed=11)               # the GPU row budget
    small = iw_log_likelihood(gpu_model, examples, k, seed=11, max_rows=64)  # several passes per sentence
    bf16 = iw_log_likelihood(gpu_model, examples, k, seed=11, precision="bf16")
    mc = float((other_seed - cpu).abs().mean())
    # the comparison is meaningful: Monte-Carlo noise (another seed) is far above the tolerances below
    assert mc > 0.05, f"Monte-Carlo spread {mc:.4f} too small for the test to discriminate"
    assert float((gpu - cpu).abs().max()) < 2e-3
    assert float((small - gpu).abs().max()) < 1e-3
    assert float((bf16 - cpu).abs().max()) < 0.05


def _gpu_run(*opts, command, env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "textvae.workflow.gpu_slots", *opts, "--", *command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


REPORT = ("import json, os, sys, time, torch; json.dump({'visible': os.environ.get('CUDA_VISIBLE_DEVICES'), "
          "'slot': os.environ.get('TEXTVAE_GPU_SLOT'), 'count': torch.cuda.device_count(), "
          "'name': torch.cuda.get_device_name(0)}, open(sys.argv[1], 'w')); time.sleep(float(sys.argv[2]))")


def test_gpu_run_assigns_real_devices(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", gpu_slots.ENV_FAKE,
                                                            gpu_slots.ENV_SLOTS, "SLURM_JOB_ID")}
    env[gpu_slots.ENV_LOCK_DIR] = str(tmp_path / "locks")
    devices = gpu_slots.detect_devices(env)
    assert devices, "nvidia-smi lists no GPU although torch sees one"
    holders = []
    try:
        # one job per device, each holding its slot while it runs
        for i in range(len(devices)):
            rec = tmp_path / f"job{i}.json"
            holders.append((rec, _gpu_run("--slots-per-device", "1", command=[sys.executable, "-c", REPORT,
                                                                                 str(rec), "60"], env=env)))
            end = time.monotonic() + 120
            while not rec.exists() and holders[-1][1].poll() is None and time.monotonic() < end:
                time.sleep(0.1)
        seen = [json.loads(rec.read_text()) for rec, _ in holders]
        for r in seen:
            assert r["visible"] in devices and r["count"] == 1 and r["name"]
            assert r["slot"] == f"{r['visible']}#0"
        assert sorted(r["visible"] for r in seen) == sorted(devices)    # every device once
        # every slot is busy: one more job waits, then gives up
        late = _gpu_run("--slots-per-device", "1", "--timeout", "1", command=[sys.executable, "-c", "pass"], env=env)
        _, err = late.communicate(timeout=60)
        assert late.returncode == 1 and "no free GPU slot" in err
    finally:
        for _, p in holders:
            p.kill()
            p.wait()


def test_checkpoint_cuda_to_cpu_and_back(corpus, tmp_path):
    """A run trained on CUDA resumes on the CPU and then on CUDA again (Adam state, RNG state, best model), and
    its best.pt loads on both."""
    out = tmp_path / "run"

    def fit(device: str, epochs: int, resume: bool) -> dict:
        cfg = TrainConfig(method="cyclic", device=device, max_epochs=epochs, progress=False, max_train=320,
                          max_valid=64)
        return Trainer(cfg, corpus, out, PTB_SIZES).fit(resume=resume)

    first = fit("cuda", 1, resume=False)
    second = fit("cpu", 2, resume=True)
    third = fit("cuda", 3, resume=True)
    assert [r["epoch"] for r in third["history"]] == [0, 1, 2]
    assert second["history"][0] == first["history"][0] == third["history"][0]
    assert all(r["train_loss"] == r["train_loss"] for r in third["history"])   # no NaN
    m_cpu, vocab_cpu, _ = load_model(out / "best.pt", "cpu")
    m_gpu, vocab_gpu, _ = load_model(out / "best.pt", "cuda")
    assert vocab_cpu == vocab_gpu
    assert next(m_gpu.parameters()).is_cuda
    for (n, a), (_, b) in zip(m_cpu.state_dict().items(), m_gpu.state_dict().items()):
        assert torch.equal(a, b.cpu()), n
