"""The model's fused projection + cross-entropy against the plain PyTorch form (the authors' computation)."""
import pytest
import torch

import textvae.modeling.model as model_mod
from textvae.modeling.model import LSTMLM, VAE, ModelConfig, projected_nll, reparameterize, token_nll


def _case(seed=0, n=5, t=7, h=16, v=50):
    g = torch.Generator().manual_seed(seed)
    hid = (torch.randn(n, t, h, generator=g) * 2).requires_grad_()
    w = (torch.randn(v, h, generator=g) * 0.5).requires_grad_()
    tgt = torch.randint(0, v, (n, t), generator=g)
    upstream = torch.randn(n, generator=g)       # a per-sentence upstream gradient, as β-weighted losses give
    return hid, w, tgt, upstream


def _value_and_grads(fn, hid, w, tgt, upstream, bf16=False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = fn(hid, w, tgt)
    return out.detach(), torch.autograd.grad((out * upstream).sum(), [hid, w])


def _plain(hid, w, tgt):
    return token_nll(hid @ w.t(), tgt)


@pytest.mark.parametrize("tile", [1, 3, 64])
def test_fused_nll_equals_plain_cross_entropy_in_fp32(tile, monkeypatch):
    monkeypatch.setattr(model_mod, "NLL_TILE_ROWS", tile)     # tiles that split and do not split the rows
    hid, w, tgt, up = _case()
    ref, ref_g = _value_and_grads(_plain, hid, w, tgt, up)
    out, out_g = _value_and_grads(projected_nll, hid, w, tgt, up)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-4)
    for a, b in zip(out_g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_fused_nll_under_bf16_autocast_is_as_accurate_as_autocast_linear():
    hid, w, tgt, up = _case(seed=1, n=8, t=9, h=32, v=300)
    exact, exact_g = _value_and_grads(_plain, hid, w, tgt, up)
    ref, ref_g = _value_and_grads(_plain, hid, w, tgt, up, bf16=True)
    out, out_g = _value_and_grads(projected_nll, hid, w, tgt, up, bf16=True)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)          # same bf16 logits, same normaliser
    for a, b, e in zip(out_g, ref_g, exact_g):
        err_fused = float((a - e).norm() / e.norm())
        err_plain = float((b - e).norm() / e.norm())
        assert err_fused < 0.02 and err_fused <= 1.5 * err_plain, (err_fused, err_plain)


def test_confident_targets_keep_their_gradient_in_bf16():
    # p(target) ≈ 0.999: 1 − p is ill-conditioned in bf16; the fused form takes it from exp(−nll) in float32
    hid = torch.zeros(1, 1, 2)
    hid[0, 0, 0] = 1.0
    hid.requires_grad_()
    w = torch.zeros(4, 2)
    w[2, 0] = 8.0
    w.requires_grad_()
    tgt = torch.tensor([[2]])
    exact, exact_g = _value_and_grads(_plain, hid, w, tgt, torch.ones(1))
    out, out_g = _value_and_grads(projected_nll, hid, w, tgt, torch.ones(1), bf16=True)
    torch.testing.assert_close(out_g[1][2], exact_g[1][2], rtol=1e-2, atol=0)


def test_decoder_and_lm_log_prob_use_the_projection_exactly():
    cfg = ModelConfig(vocab_size=40, enc_emb=8, dec_emb=8, enc_hidden=12, dec_hidden=12, nz=4)
    torch.manual_seed(0)
    vae, lm = VAE(cfg).eval(), LSTMLM(cfg).eval()
    x = torch.randint(4, 40, (3, 6))
    x[:, 0], x[:, -1] = 1, 2
    mu, logvar = vae.encoder(x)
    z = reparameterize(mu, logvar, 2)
    targets = x[:, 1:].unsqueeze(1).expand(3, 2, 5).reshape(6, 5)
    torch.testing.assert_close(vae.decoder.log_prob(x, z), -token_nll(vae.decoder(x[:, :-1], z), targets).view(3, 2))
    out, _ = lm.lstm(lm.embed(x[:, :-1]))
    torch.testing.assert_close(lm.log_prob(x), -token_nll(lm.proj(out), x[:, 1:]))
