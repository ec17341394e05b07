"""The fused, chunked LM cross-entropy equals the plain one, values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from plmkit import family
from plmkit.layers.lm_loss import lm_cross_entropy


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk_bytes", [4 * 97 * 16, 1 << 27])  # 2 chunks of 16: 21 rows + 11 pad; or 1
def test_matches_cross_entropy_of_the_full_logits(bias, chunk_bytes):
    torch.manual_seed(0)
    h = torch.randn(3, 7, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(97, 16, dtype=torch.float64, requires_grad=True)
    b = torch.randn(97, dtype=torch.float64, requires_grad=True) if bias else None
    y = torch.randint(0, 97, (3, 7))
    y[0, :4] = -100
    params = [h, w] + ([b] if bias else [])
    want = F.cross_entropy(F.linear(h, w, b).reshape(-1, 97), y.reshape(-1))
    got = lm_cross_entropy(h, w, y, b, chunk_bytes=chunk_bytes)
    assert torch.allclose(got.double(), want, atol=1e-6)
    for g_got, g_want in zip(torch.autograd.grad(2 * got, params), torch.autograd.grad(2 * want, params)):
        assert g_got.dtype == g_want.dtype and torch.allclose(g_got, g_want, atol=1e-6)


def test_gpt_with_labels_gives_the_loss_of_its_logits_without_them():
    m = family.get("gpt2")
    torch.manual_seed(0)
    net = m.model_cls(m.config_cls.preset("tiny", vocab_size=300, max_positions=64, dropout=0.0,
                                          attention_dropout=0.0))
    x, y = torch.randint(0, 300, (2, 2, 12)).unbind(0)
    out = net(x, labels=y)
    assert out.logits is None
    want = F.cross_entropy(net(x).logits.reshape(-1, 300), y.reshape(-1))
    assert torch.allclose(out.loss, want, atol=1e-5)
    out.loss.backward()
    fused = net.embeddings.tokens.weight.grad.clone()
    net.zero_grad()
    want.backward()
    assert torch.allclose(fused, net.embeddings.tokens.weight.grad, atol=1e-6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert abs(float(net(x, labels=y).loss) - float(want)) < 0.05


def test_bert_mlm_loss_at_masked_positions_equals_the_loss_of_its_logits():
    """BERT's labels path runs the MLM transform and the output bias, as its logits do."""
    m = family.get("bert")
    torch.manual_seed(0)
    net = m.model_cls(m.config_cls.preset("tiny", vocab_size=300, max_positions=64, dropout=0.0,
                                          attention_dropout=0.0))
    x = torch.randint(0, 300, (2, 12))
    at = torch.rand(2, 12) < 0.3
    y = torch.randint(0, 300, (int(at.sum()),))
    with torch.no_grad():
        net.mlm_bias.normal_()  # zero at init: make it count
    out = net(x, logits_at=at, labels=y)
    assert out.logits is None and out.seq_relationship_logits is not None
    want = F.cross_entropy(net(x, logits_at=at).logits, y)
    assert torch.allclose(out.loss, want, atol=1e-5)
    params = [net.mlm_bias, net.mlm_transform.weight, net.embeddings.tokens.weight]
    for got, ref in zip(torch.autograd.grad(out.loss, params), torch.autograd.grad(want, params)):
        assert torch.allclose(got, ref, atol=1e-6)
