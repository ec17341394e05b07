"""The decoding engine: cached decoding equals recomputation for every decoder, and the engine's search
and sampling rules."""

import pytest
import torch

from plmkit import family

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128, max_positions=64)


def _tiny(name: str):
    torch.manual_seed(0)
    m = family.get(name)
    return m.model_cls(m.config_cls(**TINY)).eval()


def _decoders() -> list[str]:
    """Every registered member that implements the decoding protocol and generates."""
    names = []
    for m in family.members():
        if hasattr(m.model_cls, "decode_step") and _tiny(m.name).generates:
            names.append(m.name)
    return names


def _prompts(lens, extra, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, 99, (n + extra,), generator=g) for n in lens]


def _left_pad(seqs):
    P = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), P, dtype=torch.long)
    mask = torch.zeros(len(seqs), P, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, P - len(s):], mask[r, P - len(s):] = s, 1
    return ids, mask


def test_the_protocol_is_implemented_by_the_causal_members():
    assert {"gpt", "gpt2"} <= set(_decoders())
    assert "bert" not in _decoders()


@pytest.mark.parametrize("name", _decoders())
def test_cached_decoding_equals_recomputing_the_sequence(name):
    """A left-padded batch of prompts, then one token per step through the cache: at every step each row's
    logits equal those of its whole unpadded sequence decoded from an empty cache in one step."""
    model = _tiny(name)
    lens, steps = [5, 9, 7], 6
    seqs = _prompts(lens, steps)
    ids, mask = _left_pad([s[:n] for s, n in zip(seqs, lens)])
    with torch.no_grad():
        cache = model.new_cache(len(lens), ids.shape[1] + steps)
        cached = [model.decode_step(ids, mask, cache)]  # (B, V) after each step
        for t in range(steps):
            nxt = torch.stack([s[n + t] for s, n in zip(seqs, lens)])[:, None]
            cached.append(model.decode_step(nxt, None, cache))
        for r, (s, n) in enumerate(zip(seqs, lens)):
            for t, logits in enumerate(cached):
                prefix = s[None, :n + t]
                again = model.decode_step(prefix, None, model.new_cache(1, prefix.shape[1]))[0]
                assert (logits[r] - again).abs().max() < 1e-5, (r, t)


@pytest.mark.parametrize("name", ["gpt", "gpt2"])
def test_cached_logits_equal_the_plain_forward(name):
    model = _tiny(name)
    seq = _prompts([12], 0)[0][None]
    with torch.no_grad():
        full = model(seq).logits[0]  # (T, V)
        cache = model.new_cache(1, 12)
        step = [model.decode_step(seq[:, :4], None, cache)]
        step += [model.decode_step(seq[:, t:t + 1], None, cache) for t in range(4, 12)]
    assert (torch.cat(step) - full[3:]).abs().max() < 1e-5
