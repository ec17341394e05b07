"""The decoding engine: cached decoding equals recomputation for every decoder, and the engine's search
and sampling rules."""

import pytest
import torch

from plmkit import family

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128, max_positions=64)


def _tiny(name: str):
    torch.manual_seed(0)
    m = family.get(name)
    extra = {"mask_token_id": 4} if "mask_token_id" in m.config_cls.field_names() else {}  # UniLM's [MASK]
    return m.model_cls(m.config_cls(**TINY, **extra)).eval()


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
    assert {"gpt", "gpt2", "unilm"} <= set(_decoders())
    assert "bert" not in _decoders()


@pytest.mark.parametrize("name", _decoders())
def test_cached_decoding_equals_recomputing_the_sequence(name):
    """A left-padded batch of prompts, then one token per step through the cache: at every step each row's
    logits equal those of its own unpadded prompt and continuation recomputed from an empty cache, the
    continuation in one step (so that a member whose prompt is read differently, UniLM's source, is too)."""
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
                again = model.new_cache(1, n + t)
                recomputed = model.decode_step(s[None, :n], None, again)[0]
                if t:
                    recomputed = model.decode_step(s[None, n:n + t], None, again)[0]
                assert (logits[r] - recomputed).abs().max() < 1e-5, (r, t)


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


class IdTokenizer:
    """Text is token ids written out ("5 17 9"), so tests choose every token; 3 separates documents."""

    doc_sep_id = 3

    def encode_batch(self, texts):
        return [[int(t) for t in text.split()] for text in texts]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(f" {i}" for i in ids if not (skip_special_tokens and i == self.doc_sep_id))


def _spread_gpt2():
    """A tiny GPT-2 whose logits are spread (init std 0.2), so argmax ties cannot flip between two
    implementations that round differently."""
    torch.manual_seed(0)
    from plmkit.models.gpt2 import Gpt2, Gpt2Config

    return Gpt2(Gpt2Config(**{**TINY, "max_positions": 128}, initializer_range=0.2)).eval()


def _texts(lens, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [" ".join(str(int(t)) for t in torch.randint(5, 99, (n,), generator=g)) for n in lens]


def _flat(results):
    return [r for res in results for r in (res if isinstance(res, list) else [res])]


def test_greedy_and_beam_search_choose_the_tokens_transformers_does(tmp_path):
    """A left-padded batch of two prompts; the end-of-text id is also set to a token the model does produce,
    so some beams finish early and others run to the length limit."""
    from plmkit.generation import generate
    from plmkit.interop.hf import save_model

    transformers = pytest.importorskip("transformers")
    model, tok = _spread_gpt2(), IdTokenizer()
    prompts = _texts([4, 7])
    save_model(model, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    finishes = set()
    for settings in (dict(), dict(num_beams=3, length_penalty=0.5),
                     dict(num_beams=4, early_stopping=True, num_return_sequences=2),
                     dict(num_beams=3, no_repeat_ngram_size=2, repetition_penalty=1.5),
                     dict(no_repeat_ngram_size=2, repetition_penalty=1.5, min_new_tokens=5)):
        for eos in (3, 8):
            tok.doc_sep_id = eos
            ours = _flat(generate(model, tok, prompts, max_new_tokens=12, temperature=0, **settings))
            x, mask = _left_pad([torch.tensor([eos, *map(int, p.split())]) for p in prompts])
            out = hf.generate(x, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=eos,
                              pad_token_id=0, **settings)[:, x.shape[1]:].tolist()
            theirs = [row[:row.index(eos)] if eos in row else row for row in out]
            assert [r["tokens"] for r in ours] == theirs, (settings, eos)
            finishes |= {r["finish"] for r in ours}
    assert finishes == {"eos", "length"}


def test_a_batch_decodes_each_row_as_it_would_alone():
    from plmkit.generation import generate

    model, tok = _spread_gpt2(), IdTokenizer()
    prompts = _texts([3, 9, 6])
    batch = generate(model, tok, prompts, max_new_tokens=10, temperature=0)
    assert [r["tokens"] for r in batch] == [generate(model, tok, p, max_new_tokens=10, temperature=0)["tokens"]
                                            for p in prompts]


def test_sampling_is_reproducible_and_top_k_1_is_greedy():
    from plmkit.generation import generate

    model, tok = _spread_gpt2(), IdTokenizer()
    prompts = _texts([3, 5])
    a = generate(model, tok, prompts, max_new_tokens=15, seed=7, top_p=0.9, num_return_sequences=2)
    assert a == generate(model, tok, prompts, max_new_tokens=15, seed=7, top_p=0.9, num_return_sequences=2)
    b = generate(model, tok, prompts, max_new_tokens=15, seed=8, top_p=0.9, num_return_sequences=2)
    assert [r["tokens"] for r in _flat(a)] != [r["tokens"] for r in _flat(b)]
    greedy = generate(model, tok, prompts, max_new_tokens=15, temperature=0)
    assert [r["tokens"] for r in generate(model, tok, prompts, max_new_tokens=15, top_k=1, seed=1)] == \
        [r["tokens"] for r in greedy]


def test_stop_strings_minimum_length_and_streaming():
    from plmkit.generation import generate

    model, tok = _spread_gpt2(), IdTokenizer()
    prompt = _texts([5])[0]
    free = generate(model, tok, prompt, max_new_tokens=20, seed=3)
    stop = f" {free['tokens'][4]} {free['tokens'][5]}"  # a string the free continuation reaches
    cut = generate(model, tok, prompt, max_new_tokens=20, seed=3, stop=stop)
    assert cut["finish"] == "stop" and stop not in cut["completion"]
    assert free["completion"].startswith(cut["completion"]) and cut["tokens"] == free["tokens"][:len(cut["tokens"])]
    pieces = []
    streamed = generate(model, tok, prompt, max_new_tokens=20, seed=3, stop=stop,
                        on_text=lambda i, text: pieces.append((i, text)))
    assert "".join(t for _, t in pieces) == streamed["completion"] == cut["completion"] and len(pieces) > 1
    tok.doc_sep_id = generate(model, tok, prompt, max_new_tokens=1, temperature=0)["tokens"][0]
    # the most likely first token now ends the text, unless the minimum forbids it
    assert generate(model, tok, prompt, max_new_tokens=20, temperature=0)["finish"] == "eos"
    held = generate(model, tok, prompt, max_new_tokens=20, temperature=0, min_new_tokens=6)
    assert len(held["tokens"]) >= 6


def test_score_rules_by_hand():
    from plmkit.generation.processors import penalize_repetition, repeated_ngram_tokens, top_k_filter, top_p_filter

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = top_p_filter(probs.log(), 0.7).isfinite()
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7 ≤ 0.8: the first two
    assert top_p_filter(probs.log(), 0.5).isfinite().tolist() == [[True, False, False, False]]
    assert top_k_filter(probs.log(), 3).isfinite().tolist() == [[True, True, True, False]]
    scores = torch.tensor([[2.0, -2.0, 1.0]])
    present = torch.tensor([[True, True, False]])
    assert penalize_repetition(scores, present, 2.0).tolist() == [[1.0, -4.0, 1.0]]
    assert sorted(repeated_ngram_tokens([1, 2, 3, 1, 2, 4, 1, 2], 3)) == [3, 4]
    assert repeated_ngram_tokens([1, 2, 3], 3) == []


def test_models_without_a_cache_decode_by_recomputing():
    """The recurrent LMs have no decode_step: the engine runs their forward on the whole sequence."""
    from plmkit.generation import generate

    m = family.get("lstm")
    torch.manual_seed(0)
    model = m.model_cls(m.config_cls(vocab_size=99, embedding_size=16, hidden_size=16)).eval()
    tok, prompts = IdTokenizer(), _texts([2, 6])
    batch = generate(model, tok, prompts, max_new_tokens=6, temperature=0)
    for prompt, res in zip(prompts, batch):
        ids = [3, *map(int, prompt.split())]
        for t in res["tokens"]:
            with torch.no_grad():
                assert model(torch.tensor([ids])).logits[0, -1].argmax() == t
            ids.append(t)


def test_settings_that_cannot_work_are_errors():
    from plmkit.errors import PlmkitError
    from plmkit.generation import generate

    model, tok = _spread_gpt2(), IdTokenizer()
    for bad in (dict(num_beams=2, temperature=1.0), dict(num_return_sequences=2, temperature=0),
                dict(num_beams=2, num_return_sequences=3), dict(top_p=0), dict(max_new_tokens=0),
                dict(max_new_tokens=200)):
        with pytest.raises(PlmkitError):
            generate(model, tok, "5 6", **bad)
    with pytest.raises(PlmkitError, match="masked LM"):
        generate(_tiny("bert"), tok, "5 6")


@pytest.fixture(scope="module")
def wordpiece(corpus):
    from plmkit.tokenizers import train_tokenizer

    return train_tokenizer("wordpiece", [corpus], 300, show_progress=False)


def _tiny_bert(tok):
    from plmkit.models.bert import Bert, BertConfig

    torch.manual_seed(0)
    return Bert(BertConfig(**{**TINY, "vocab_size": tok.vocab_size}, initializer_range=0.2)).eval()


def test_gibbs_top_1_is_the_argmax_of_each_conditional(wordpiece):
    """With top_k = 1 the sequential pass takes, left to right, the MLM's argmax (special tokens aside) with
    the positions to the right still masked; one parallel iteration takes every argmax of the all-[MASK]
    input at once."""
    from plmkit.generation import gibbs

    tok, model = wordpiece, _tiny_bert(wordpiece)
    seq = gibbs(model, tok, "and god [MASK] unto", 4, mode="sequential", top_k=1)[0]["sequence"]
    x = torch.tensor([[tok.cls_id, *tok.encode("and god [MASK] unto"), *[tok.mask_id] * 4, tok.sep_id]])
    free = (x[0] == tok.mask_id).nonzero()[:, 0].tolist()
    specials = sorted(tok.special_ids)
    with torch.no_grad():
        for p in free:
            logits = model(x).logits[0, p]
            logits[specials] = float("-inf")
            x[0, p] = logits.argmax()
        assert seq == x[0, 1:-1].tolist()
        x[0, free] = tok.mask_id
        logits = model(x).logits[0, free]
        logits[:, specials] = float("-inf")
        best = logits.argmax(-1)
    par = gibbs(model, tok, "and god [MASK] unto", 4, mode="parallel", iterations=1, burnin=0, top_k=1)[0]
    assert par["tokens"] == best.tolist()


def test_gibbs_samples_only_the_free_positions_reproducibly(wordpiece):
    from plmkit.errors import PlmkitError
    from plmkit.generation import gibbs

    tok, model = wordpiece, _tiny_bert(wordpiece)
    a = gibbs(model, tok, "in the [MASK] god", 3, iterations=60, burnin=30, top_k=20, num_samples=3, seed=5)
    assert a == gibbs(model, tok, "in the [MASK] god", 3, iterations=60, burnin=30, top_k=20, num_samples=3, seed=5)
    fixed = tok.encode("in the")
    assert all(r["sequence"][:2] == fixed and tok.mask_id not in r["sequence"] for r in a)
    assert len({tuple(r["tokens"]) for r in a}) > 1  # three chains, three samples
    with pytest.raises(PlmkitError, match="nothing to sample"):
        gibbs(model, tok, "no masks here")
    with pytest.raises(PlmkitError, match="masked LM"):
        gibbs(_spread_gpt2(), tok, "", 3)
