"""Transformer-XL and XLNet: the relative attention written out from the papers' formulas, recurrence over
segments = one long pass, XLNet against transformers both ways (with memory and two streams), the permutation
objective's targets and orders, streams, exact resume with the memory, evaluate-lm with a memory, and
XLNet's inputs for fine-tuning ([CLS] at the end)."""

import json
import math

import numpy as np
import pytest
import torch

import plmkit
from plmkit import family
from plmkit.interop.hf import save_model
from plmkit.workflows.pretrain import pretrain

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=64)


def _build(name: str, **extra):
    torch.manual_seed(0)
    m = family.get(name)
    return m.model_cls(m.config_cls(**{**TINY, **extra})).eval()


def _ids(shape=(3, 11), seed=0):
    return torch.randint(3, 99, shape, generator=torch.Generator().manual_seed(seed))


def _close(a, b) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", ["transformer-xl", "xlnet"])
def test_relative_attention_is_the_papers_formula(name):
    """Dai et al. 2019 §3.3 (+ Yang et al. 2019 §2.5 for XLNet's segment term), pair by pair over memory ∘ h:
    A_ij = (q_i + u)·k_j + (q_i + v)·W_R R(M + i − j) [+ (q_i + b)·s_{same or other}], softmax over the keys
    query i may see (Transformer-XL: j ≤ M + i; XLNet: all), R(d) = [sin(d f), cos(d f)], f_k = 10000^(−2k/H)."""
    model = _build(name, num_layers=1)
    attn = model.layers[0].attn
    for p in attn.parameters():  # larger weights than the init, so every term matters
        torch.nn.init.normal_(p, std=0.3)
    B, T, M, H, N, D = 2, 5, 3, 32, 4, 8
    h, mem = torch.randn(B, T, H), torch.randn(B, M, H)
    types = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 0]]) if name == "xlnet" else None
    table, rel, _, _ = model.streams(h, M, token_type_ids=types)
    c = torch.cat([mem, h], 1)  # (B, K, H)
    f = 10000.0 ** (-torch.arange(0, H, 2) / H)
    expected = torch.zeros(B, T, H)
    for b in range(B):
        for i in range(T):
            for n in range(N):
                q = h[b, i] @ attn.q[:, n]
                scores, values = [], []
                for j in range(M + T):
                    d = M + i - j
                    R = torch.cat([torch.sin(d * f), torch.cos(d * f)])
                    a = (q + attn.r_w_bias[n]) @ (c[b, j] @ attn.k[:, n]) + (q + attn.r_r_bias[n]) @ (R @ attn.r[:, n])
                    if types is not None:
                        other = int(j < M and types[b, i] != 0 or j >= M and types[b, i] != types[b, j - M])
                        a = a + (q + attn.r_s_bias[n]) @ attn.seg_embed[other, n]
                    scores.append(a / math.sqrt(D) if name == "xlnet" or j <= M + i else torch.tensor(-math.inf))
                    values.append(c[b, j] @ attn.v[:, n])
                z = torch.stack(scores).softmax(0) @ torch.stack(values)  # (D,)
                expected[b, i] += attn.o[:, n] @ z
    with torch.no_grad():
        for impl in ("sdpa", "eager"):
            assert _close(attn(h, mem, table, rel, impl)[0], expected) < 1e-5


def test_recurrence_equals_one_long_pass_and_stops_the_gradient():
    model = _build("transformer-xl", mem_len=16)
    x = _ids((2, 12))
    with torch.no_grad():
        full = model(x, output_hidden_states=True)
        a = model(x[:, :5])
        b = model(x[:, 5:9], mems=a.mems)
        c = model(x[:, 9:], mems=b.mems)
    assert _close(torch.cat([a.logits, b.logits, c.logits], 1), full.logits) < 1e-5
    # mem_len 4: each layer keeps its last 4 inputs, exactly those of the long pass
    short = model(x[:, :9], mem_len=4)
    for layer, m in enumerate(short.mems):
        assert m.shape == (2, 4, 32) and _close(m, full.hidden_states[layer][:, 5:9]) < 1e-5
    model.train()
    out = model(x[:, :5])
    assert not any(m.requires_grad for m in out.mems)
    model(x[:, 5:], mems=out.mems, labels=x[:, 5:]).loss.backward()  # nothing flows into the first segment


def test_transformer_xl_saves_under_plmkit_names_and_keeps_the_parents_checks(tmp_path):
    model = _build("transformer-xl")
    save_model(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "plmkit-transformer-xl"
    back = plmkit.load(tmp_path)
    x = _ids()
    with torch.no_grad():
        fast = model(x)
        assert type(back) is type(model) and torch.equal(back(x).logits, fast.logits)
        slow = model(x, attn_impl="eager", output_attentions=True)
        assert _close(fast.logits, slow.logits) < 1e-5 and slow.attentions[0].shape == (3, 4, 11, 11)
        y = x.clone()
        y[:, 6:] = (y[:, 6:] + 1) % 99  # causal: the future does not change the past
        assert _close(model(y).logits[:, :6], fast.logits[:, :6]) < 1e-6
        at = torch.zeros_like(x, dtype=torch.bool)
        at[0, 3] = at[2, 5] = True
        assert _close(model(x, logits_at=at).logits, fast.logits[at]) < 1e-6
    assert not any("position" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("name", ["transformer-xl", "xlnet"])
def test_cached_decoding_equals_the_forward_pass(name):
    """The decoding protocol's cache (plmkit.generation) against the plain forward: Transformer-XL's logits
    at every position; XLNet's query stream at an appended position, in the left-to-right order (each token
    sees those before it, the appended one is seen by none), as its decode_step predicts."""
    model = _build(name)
    seq = _ids((1, 12))
    with torch.no_grad():
        cache = model.new_cache(1, 12)
        steps = [model.decode_step(seq[:, :4], None, cache)]
        steps += [model.decode_step(seq[:, t:t + 1], None, cache) for t in range(4, 12)]
        if name == "transformer-xl":
            full = model(seq).logits[0, 3:]
        else:
            full = []
            for t in range(4, 13):
                x = torch.cat([seq[:, :t], torch.zeros(1, 1, dtype=torch.long)], 1)
                order = torch.ones(t + 1, t + 1, dtype=torch.bool).triu(1)[None]
                order[..., -1] = True
                full.append(model(x, perm_mask=order, target_positions=torch.tensor([[t]])).logits[0, 0])
            full = torch.stack(full)
    assert _close(torch.cat(steps), full) < 1e-5


@pytest.fixture
def xlnet_pair(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = _build("xlnet", mem_len=0, max_positions=512)  # transformers' XLNet has no length limit to save
    save_model(model, tmp_path / "ours")
    return model, transformers, tmp_path


def test_xlnet_saved_gives_same_logits_in_transformers(xlnet_pair):
    model, transformers, tmp_path = xlnet_pair
    hf = transformers.XLNetLMHeadModel.from_pretrained(tmp_path / "ours").eval()
    x, mask = _ids(), torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    types = torch.zeros_like(x)
    types[:, 5:], types[:, -1] = 1, 2
    perm = torch.rand(3, 11, 11, generator=torch.Generator().manual_seed(1)) < 0.4
    targets = torch.tensor([[1, 4], [0, 10], [3, 7]])
    mapping = torch.nn.functional.one_hot(targets, 11).float()
    with torch.no_grad():
        ours, theirs = model(x, attention_mask=mask, token_type_ids=types), hf(x, attention_mask=mask,
                                                                               token_type_ids=types)
        assert _close(ours.logits[mask.bool()], theirs.logits[mask.bool()]) < 1e-5
        for impl in ("sdpa", "eager"):  # two streams, a factorization order, segments
            ours = model(x, token_type_ids=types, perm_mask=perm, target_positions=targets, attn_impl=impl)
            theirs = hf(x, token_type_ids=types, perm_mask=perm.float(), target_mapping=mapping)
            assert ours.logits.shape == (3, 2, 99) and _close(ours.logits, theirs.logits) < 1e-5
        first, first_hf = model(x, mem_len=64), hf(x, use_mems=True)  # the next segment reads the memory
        y = _ids((3, 5), seed=2)
        perm, targets = perm[:, :5, :5], targets.clamp(max=4)
        ours = model(y, mems=first.mems, perm_mask=perm, target_positions=targets)
        theirs = hf(y, mems=first_hf.mems, perm_mask=perm.float(),
                    target_mapping=torch.nn.functional.one_hot(targets, 5).float())
        assert _close(ours.logits, theirs.logits) < 1e-5


def test_transformers_xlnet_checkpoint_loads_into_plmkit(xlnet_pair):
    model, transformers, tmp_path = xlnet_pair
    torch.manual_seed(1)
    hf = transformers.XLNetLMHeadModel(transformers.XLNetConfig.from_pretrained(tmp_path / "ours")).eval()
    hf.save_pretrained(tmp_path / "hf")
    loaded = plmkit.load(tmp_path / "hf")
    assert type(loaded) is type(model) and loaded.config == model.config
    x = _ids()
    targets = torch.tensor([[2], [5], [9]])
    with torch.no_grad():
        assert _close(loaded(x).logits, hf(x).logits) < 1e-5
        assert _close(loaded(x, target_positions=targets).logits,
                      hf(x, target_mapping=torch.nn.functional.one_hot(targets, 11).float()).logits) < 1e-5


def test_xlnet_query_stream_knows_the_position_not_the_token():
    """Two-stream attention (§2.3): the prediction at a target never reads the token there; with the target
    hidden from every content position (as when it is last in the order) nothing else does either."""
    model = _build("xlnet")
    x = _ids((1, 9))
    y = x.clone()
    y[0, 4] = (y[0, 4] + 7) % 99
    hidden = torch.zeros(1, 9, 9, dtype=torch.bool)
    hidden[0, :, 4] = True
    at = torch.tensor([[4]])
    with torch.no_grad():
        assert _close(model(x, perm_mask=hidden, target_positions=at).logits,
                      model(y, perm_mask=hidden, target_positions=at).logits) < 1e-6
        assert _close(model(x, target_positions=at).logits, model(y, target_positions=at).logits) > 1e-4


@pytest.fixture(scope="module")
def unigram_dir(corpus, tmp_path_factory):
    from plmkit.tokenizers import train_tokenizer

    d = tmp_path_factory.mktemp("tok")
    train_tokenizer("unigram", [str(corpus)], 300, out_dir=d, show_progress=False)
    return d


@pytest.fixture(scope="module")
def unigram(unigram_dir):
    from plmkit.tokenizers import load_tokenizer

    return load_tokenizer(unigram_dir)


def test_permutation_targets_are_spans_and_orders_are_partial_predictions(unigram):
    from plmkit.objectives.plm import PermutationLM
    from plmkit.objectives.wwm import WordBoundaries

    plm = PermutationLM(unigram, 60)
    ids = np.stack([np.array(unigram.encode("And God said, Let there be light: and there was light. " * 3)[:60])] * 8)
    examples = [(i, row) for i, row in enumerate(ids)]
    batch = plm.collate(examples, torch.Generator().manual_seed(0))
    assert torch.equal(batch["segments"], torch.arange(8))
    P = plm.n_targets
    assert P == 10 and batch["target_positions"].shape == (8, P)
    assert torch.equal(batch["labels"], batch["input_ids"].gather(1, batch["target_positions"]))
    perm, starts = batch["perm_mask"], WordBoundaries(unigram).starts(batch["input_ids"])
    runs = 0
    for r in range(8):
        target = torch.zeros(60, dtype=torch.bool)
        target[batch["target_positions"][r]] = True
        assert not perm[r][:, ~target].any()  # every position sees every non-target
        assert perm[r][~target][:, target].all()  # a non-target sees no target
        seen = (~perm[r][target][:, target]).sum(1)  # targets before each target in the order
        assert sorted(seen.tolist()) == list(range(P))  # a strict order: the first sees none, the last P − 1
        begins = target & ~torch.nn.functional.pad(target, (1, 0))[:-1]
        runs += int(begins.sum())
        assert starts[r][begins].float().mean() > 0.5  # spans start at words
    assert P * 8 / runs > 1.3  # spans, not single tokens
    again = plm.collate(examples, torch.Generator().manual_seed(0))
    assert all(torch.equal(batch[k], again[k]) for k in batch)


def test_streams_give_each_row_consecutive_segments(unigram, corpus, tmp_path):
    from plmkit.data import StreamSampler, TokenCorpus, build_shards
    from plmkit.objectives.recurrent import RecurrentCausalLM

    build_shards([str(corpus)], unigram, tmp_path / "data", num_workers=1, show_progress=False)
    data = RecurrentCausalLM(unigram, 16).dataset(TokenCorpus(tmp_path / "data"))
    i, first = data[7]
    assert i == 7 and len(first) == 17 and data[8][1][0] == first[-1]  # inputs meet without gap
    ranks = [StreamSampler(len(data), 4, rank=r, world_size=2) for r in (0, 1)]
    n = ranks[0].per_stream
    for s in (0, 1, n - 1, n, n + 3):
        rows = ranks[0].indices(s) + ranks[1].indices(s)
        assert rows == [k * n + s % n for k in range(8)]  # stream k, segment s mod n
    assert ranks[0].epoch(2 * n) == 2.0
    with pytest.raises(plmkit.PlmkitError, match="streams"):
        StreamSampler(7, 4, world_size=2)


def _pretrain(name, corpus, out, steps, resume=False, tokenizer=None, **train):
    return pretrain(name, [str(corpus)], out, size="tiny",
                    model_overrides={"num_layers": 1, "hidden_size": 64, "num_heads": 2, "intermediate_size": 128,
                                     "max_positions": 64, "mem_len": 24},
                    train_overrides={"steps": steps, "batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "log_every": 1,
                                     **train},
                    data_overrides={"seq_len": 24, "vocab_size": 300, "tokenizer": tokenizer}, resume=resume)


@pytest.mark.parametrize("name", ["transformer-xl", "xlnet"])
def test_pretraining_loss_falls(name, corpus, tmp_path):
    _pretrain(name, corpus, tmp_path / name, 20)
    log = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-5:]) / 5
    print(f"{name}: loss {first:.3f} (first 3) → {last:.3f} (last 5)")
    assert last < first - 0.4, (first, last)  # XLNet predicts a sixth of the tokens: a noisier loss
    assert type(plmkit.load(tmp_path / name)).family_name == name


def test_resume_is_bit_identical_with_the_memory(corpus, tmp_path):
    from safetensors.torch import load_file
    from plmkit.tokenizers import train_tokenizer

    train_tokenizer("bpe", [str(corpus)], 300, out_dir=tmp_path / "tok", show_progress=False)  # one for both runs
    # a constant rate: a run cut at step 3 then sees the learning rates of the whole one
    constant = {"schedule": "constant", "tokenizer": str(tmp_path / "tok")}
    _pretrain("transformer-xl", corpus, tmp_path / "whole", 6, **constant)
    _pretrain("transformer-xl", corpus, tmp_path / "cut", 3, **constant)
    carried = load_file(tmp_path / "cut" / "checkpoints" / "step-3" / "trainer.safetensors")
    assert carried["rank0.carry.mems.0"].shape == (8, 24, 64)  # the memory is in the checkpoint
    _pretrain("transformer-xl", corpus, tmp_path / "cut", 6, resume=True, **constant)
    whole, cut = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "cut"))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    losses = [[json.loads(line)["loss"] for line in (tmp_path / d / "train_log.jsonl").read_text().splitlines()]
              for d in ("whole", "cut")]
    assert losses[0] == losses[1]


def test_evaluate_lm_with_memory_reads_segments_as_one_pass(unigram, tmp_path, capsys):
    from plmkit.cli import main
    from plmkit.evaluation.lm import evaluate_lm

    text = tmp_path / "held.txt"
    text.write_text("In the beginning God created the heaven and the earth.\nAnd the earth was without form.\n\n"
                    "And God said, Let there be light: and there was light.\n")
    model = _build("transformer-xl", vocab_size=unigram.vocab_size)
    save_model(model, tmp_path / "txl", unigram)
    whole = evaluate_lm(model, unigram, text, window=64, show_progress=False)  # the text fits one window
    segments = evaluate_lm(model, unigram, text, window=5, mem_len=64, show_progress=False)
    none = evaluate_lm(model, unigram, text, window=5, mem_len=0, show_progress=False)
    assert whole["tokens"] == segments["tokens"] == none["tokens"]
    same, without = abs(whole["nll"] - segments["nll"]), abs(whole["nll"] - none["nll"])
    assert same < 1e-4 and without > 100 * same  # a random model leans little on context, but the memory counts
    assert main(["evaluate-lm", "--model", str(tmp_path / "txl"), "--data", str(text), "--window", "5",
                 "--mem-len", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mem_len"] == 10
    gpt = family.get("gpt")
    save_model(gpt.model_cls(gpt.config_cls(**{**TINY, "vocab_size": unigram.vocab_size})), tmp_path / "gpt", unigram)
    assert main(["evaluate-lm", "--model", str(tmp_path / "gpt"), "--data", str(text), "--mem-len", "8"]) == 2
    assert "memory" in capsys.readouterr().err


def test_xlnet_fine_tunes_with_its_cls_at_the_end(unigram, fits_one_batch):
    from plmkit.data.tasks import Example
    from plmkit.heads import HeadConfig, build, collate, encode

    body = _build("xlnet", vocab_size=unigram.vocab_size, dropout=0.0, attention_dropout=0.0)
    sep, cls = unigram.sep_id, unigram.cls_id
    verses = ["In the beginning God created the heaven", "And the earth was without form",
              "And God said Let there be light", "and there was light"] * 4
    examples = [Example(text=v, label=str(i % 2), text_b=verses[i + 1 if i < 15 else 0]) for i, v in enumerate(verses)]
    torch.manual_seed(0)
    model = build(body, unigram, HeadConfig(task="pair", labels=("0", "1"), dropout=0.0, max_length=32))
    features = encode(examples, model, unigram)
    a, b = unigram.encode(verses[0]), unigram.encode(verses[1])
    assert features[0]["input_ids"] == [*a, sep, *b, sep, cls]
    assert features[0]["token_type_ids"] == [0] * (len(a) + 1) + [1] * (len(b) + 1) + [2]
    batch = collate(features, unigram.pad_id)
    assert not batch["attention_mask"].all() and model.rows_only
    fast = model(batch)["logits"]
    model.rows_only = False  # pooling the whole last layer at [CLS], the last real token, gives the same
    assert _close(fast, model(batch)["logits"]) < 1e-5
    fits_one_batch(model, batch, lr=1e-2, steps=20)  # a slow start: at the init's scale every [CLS] looks alike
    tag = build(_build("xlnet", vocab_size=unigram.vocab_size), unigram,
                HeadConfig(task="tag", labels=("O", "B"), max_length=32))
    words = verses[0].split()
    f = encode([Example(tokens=words, tags=["O"] * len(words))], tag, unigram)[0]
    assert f["input_ids"][-2:] == [sep, cls] and f["first"][-2:] == [0, 0] and sum(f["first"]) == len(words)


def test_transformer_xl_fine_tunes_as_a_causal_body(unigram_dir, fits_one_batch):
    """GPT's input transformation ([start] a [extract], tokens added to the vocabulary), pooled at [extract]."""
    from plmkit.data.tasks import Example
    from plmkit.heads import GPT_TOKENS, HeadConfig, build, collate, encode
    from plmkit.tokenizers import load_tokenizer

    unigram = load_tokenizer(unigram_dir)  # a copy of its own: the GPT tokens are added to it

    verses = ["In the beginning God created the heaven", "And the earth was without form",
              "And God said Let there be light", "and there was light"] * 4
    examples = [Example(text=v, label=str(i % 2)) for i, v in enumerate(verses)]
    body = _build("transformer-xl", vocab_size=unigram.vocab_size, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    model = build(body, unigram, HeadConfig(task="classify", labels=("0", "1"), dropout=0.0, max_length=32))
    assert model.config.gpt_tokens == GPT_TOKENS and body.config.vocab_size == unigram.vocab_size
    batch = collate(encode(examples, model, unigram), unigram.pad_id)
    fast = model(batch)["logits"]
    model.rows_only = False
    assert _close(fast, model(batch)["logits"]) < 1e-5
    fits_one_batch(model, batch, lr=1e-2, steps=20)


def test_registry_places_both_in_the_autoregressive_branch():
    txl, xlnet = family.get("transformer-xl"), family.get("xlnet")
    assert (txl.parent, xlnet.parent, xlnet.influences) == ("gpt", "transformer-xl", ("bert",))
    assert issubclass(xlnet.model_cls, txl.model_cls) and issubclass(xlnet.config_cls, txl.config_cls)
    assert (txl.objective, xlnet.objective, xlnet.tokenizer) == ("recurrent-clm", "plm", "unigram")
    for m in (txl, xlnet):
        cfg = m.config_cls.preset("mini", vocab_size=500)
        assert m.config_cls.from_dict(json.loads(cfg.to_json())) == cfg
        with pytest.raises(plmkit.PlmkitError, match="unknown config key"):
            m.config_cls.from_dict({"hidden_size": 32, "mem_lne": 3})
    with pytest.raises(plmkit.PlmkitError, match="relative positions"):
        txl.config_cls(position="learned")
