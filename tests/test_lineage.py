"""The lineage before the Transformer: Kneser–Ney n-gram, FFNN, RNN and LSTM LMs, evaluate-lm, word2vec,
and the neural members as fine-tuning bodies (encode, init_weights, resize_token_embeddings, layer groups)."""

import json
import math

import numpy as np
import pytest
import torch

from plmkit import family, load_tokenizer
from plmkit.cli import main
from plmkit.interop.hf import load_model, save_model
from plmkit.evaluation.lm import evaluate_lm, next_token_logprobs
from plmkit.models.ngram import Ngram, NgramConfig

NEURAL = ["ffnn", "rnn", "lstm", "elmo"]
SMALL = {"embedding_size": 32, "hidden_size": 32}  # ELMo needs the two equal


@pytest.fixture(scope="module")
def corpus(kjv_head):
    """The first 800 verses of the shipped King James Bible."""
    return kjv_head(800)


# --- n-gram --------------------------------------------------------------------------------------------

def test_kneser_ney_by_hand():
    # x = 0 1 0 1 2, V = 3, bigram KN. Unigram continuation counts are 1, 1, 1 (D1 = 1: uniform 1/3);
    # bigram counts (0 1) = 2, (1 0) = 1, (1 2) = 1, so D2 = n1 / (n1 + 2 n2) = 2 / 4.
    # P(1|0) = (2 − ½ + ½·1·⅓) / 2 = 5/6;  P(0|1) = P(2|1) = (1 − ½ + ½·2·⅓) / 2 = 5/12.
    lm = Ngram.from_ids(NgramConfig(vocab_size=3, order=2), [0, 1, 0, 1, 2])
    assert lm.discounts.tolist() == [1.0, 0.5]
    got = next_token_logprobs(lm, torch.tensor([[0, 1, 0, 1, 2]])).exp()[0].tolist()
    assert got == pytest.approx([5 / 6, 5 / 12, 5 / 6, 5 / 12])
    assert lm.distribution([2]) == pytest.approx([1 / 3] * 3)  # unseen context: the lower order
    # Unigram KN on 0 0 1: counts 2, 1, 0, D = 1/3 → (2 − ⅓ + ⅓·2·⅓)/3 = 17/27, 8/27 and 2/27.
    uni = Ngram.from_ids(NgramConfig(vocab_size=3, order=1), [0, 0, 1])
    assert uni.distribution([]) == pytest.approx([17 / 27, 8 / 27, 2 / 27])


def test_kneser_ney_sums_to_one_and_samples_with_a_seed():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, 3000) % (1 + rng.integers(1, 50, 3000))  # skewed, like text
    lm = Ngram.from_ids(NgramConfig(vocab_size=50, order=3), ids)
    for context in ([], [int(ids[0])], [int(ids[10]), int(ids[11])], [49, 48], [3, 49]):
        p = lm.distribution(context)
        assert p.min() > 0 and p.sum() == pytest.approx(1.0, abs=1e-12)
    # the per-token scores agree with the full distributions they come from
    x = torch.from_numpy(ids[:40])
    lp = next_token_logprobs(lm, x[None])[0]
    assert lp[5].exp().item() == pytest.approx(lm.distribution(ids[:6])[ids[6]], rel=1e-6)
    assert lm.sample([1, 2], 20, seed=3) == lm.sample([1, 2], 20, seed=3)


# --- neural members: train, save, load ------------------------------------------------------------------

@pytest.fixture(scope="module", params=["ngram", *NEURAL])
def trained(request, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    args = ["-q", "pretrain", "--model", request.param, "--corpus", str(corpus), "--out", str(out),
            "--vocab-size", "400"]
    if request.param != "ngram":
        args += ["--steps", "30", "--batch-size", "16", "--seq-len", "32", "--lr", "1e-2", "--log-every", "1",
                 "--set", "embedding_size=32", "--set", "hidden_size=32"]
    assert main(args) == 0
    return request.param, out


def test_loss_falls_and_model_reloads(trained):
    member, out = trained
    model = load_model(out)
    assert model.family_name == member
    if member != "ngram":
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        last = sum(r["loss"] for r in log[-5:]) / 5
        assert last < log[0]["loss"] - 0.5 and last < math.log(400) - 0.5  # better than a uniform guess


@pytest.mark.parametrize("member", ["ngram", *NEURAL])
def test_save_load_round_trip(member, tmp_path):
    torch.manual_seed(0)
    m = family.get(member)
    if member == "ngram":
        model = Ngram.from_ids(NgramConfig(vocab_size=40, order=3), np.arange(500) * 7 % 40)
    else:
        model = m.model_cls(m.config_cls.preset("tiny", vocab_size=40, **SMALL)).eval()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == f"plmkit-{member}"
    x = torch.randint(0, 40, (2, 12))
    assert torch.equal(next_token_logprobs(model, x), next_token_logprobs(again, x))


def test_ffnn_reads_only_its_window():
    """Changing a token more than n − 1 positions back leaves the FFNN's prediction unchanged."""
    m = family.get("ffnn")
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=30, embedding_size=8, hidden_size=8, order=3)).eval()
    x = torch.randint(0, 30, (1, 10))
    y = x.clone()
    y[0, 5] = (x[0, 5] + 1) % 30
    lx, ly = model(x).logits, model(y).logits
    assert torch.equal(lx[0, :5], ly[0, :5]) and torch.equal(lx[0, 7:], ly[0, 7:])
    assert not torch.equal(lx[0, 5], ly[0, 5])


def test_configs_reject_what_their_member_lacks():
    from plmkit.errors import PlmkitError

    with pytest.raises(PlmkitError, match="order"):
        family.get("lstm").config_cls(order=3)
    with pytest.raises(PlmkitError, match="order"):
        family.get("ffnn").config_cls(order=1)


def test_elmo_reads_both_ways_and_mixes_its_layers(corpus):
    from plmkit.layers.scalar_mix import ScalarMix
    from plmkit.models.elmo import elmo_features
    from plmkit.tokenizers import train_tokenizer

    m = family.get("elmo")
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=50, **SMALL)).eval()
    x = torch.randint(0, 50, (1, 10))
    y = x.clone()
    y[0, 6] = (x[0, 6] + 1) % 50
    ox, oy = model(x), model(y)
    assert torch.equal(ox.logits[0, :6], oy.logits[0, :6])  # the forward LM has not read token 6 yet
    assert torch.equal(ox.backward_logits[0, 7:], oy.backward_logits[0, 7:])  # nor has the backward LM
    assert not torch.equal(ox.backward_logits[0, :6], oy.backward_logits[0, :6])
    tok = train_tokenizer("bpe", [str(corpus)], 300)
    model = m.model_cls(m.config_cls.preset("tiny", vocab_size=tok.vocab_size, **SMALL)).eval()
    feats = elmo_features(model, tok, ["In the beginning", "And God said"])
    assert feats[0].shape == (3, len(tok.encode("In the beginning")), 64)  # L + 1 layers of 2H
    mix = ScalarMix(3)
    mixed = elmo_features(model, tok, ["In the beginning"], mix=mix)[0]
    mixed.sum().backward()
    assert mixed.shape == feats[0].shape[1:] and mix.weights.grad is not None
    assert all(p.grad is None for p in model.parameters())  # the biLM stays frozen


# --- as fine-tuning bodies ------------------------------------------------------------------------------

def _tiny(member, vocab_size=40, **kw):
    torch.manual_seed(0)
    m = family.get(member)
    return m.model_cls(m.config_cls.preset("tiny", vocab_size=vocab_size, **{**SMALL, **kw})).eval()


@pytest.mark.parametrize("member", NEURAL)
def test_encode_ignores_right_padding(member):
    """A padded row's states at its real tokens equal those of the row alone, in every layer and, for
    ELMo, in both directions (the backward LM starts at the row's last real token, not at the padding)."""
    model = _tiny(member, num_layers=2) if member != "ffnn" else _tiny(member, order=3)
    x = torch.randint(1, 40, (3, 9))
    lengths = [9, 5, 2]
    mask = (torch.arange(9) < torch.tensor(lengths)[:, None]).long()
    padded = model.encode(x.masked_fill(mask == 0, 0), mask, output_hidden_states=True)
    for b, n in enumerate(lengths):
        alone = model.encode(x[b:b + 1, :n], torch.ones(1, n, dtype=torch.long), output_hidden_states=True)
        for h_pad, h_alone in zip(padded.hidden_states, alone.hidden_states):
            torch.testing.assert_close(h_pad[b, :n], h_alone[0], atol=1e-6, rtol=1e-5)
    assert torch.equal(padded.last_hidden_state, padded.hidden_states[-1])
    # encode is what the LM's softmax reads
    torch.testing.assert_close(model(x).last_hidden_state, model.encode(x).last_hidden_state)


def test_elmo_backward_states_read_the_real_tokens_right_to_left():
    from plmkit.layers.rnn import reverse_padded

    x = torch.arange(12.0).view(2, 6, 1)
    got = reverse_padded(x, torch.tensor([6, 4]))[..., 0]
    assert got.tolist() == [[5, 4, 3, 2, 1, 0], [9, 8, 7, 6, 10, 11]]  # padding stays where it is
    assert torch.equal(reverse_padded(reverse_padded(x, torch.tensor([6, 4])), torch.tensor([6, 4])), x)
    model = _tiny("elmo")
    ids = torch.randint(1, 40, (1, 7))
    mask = torch.ones(1, 9, dtype=torch.long)
    mask[0, 7:] = 0
    h = model.encode(torch.cat([ids, torch.zeros(1, 2, dtype=torch.long)], 1), mask).last_hidden_state
    H = SMALL["hidden_size"]
    # the last real token's backward state has read only that token: changing the one before leaves it
    other = ids.clone()
    other[0, 5] = (ids[0, 5] + 1) % 40
    h2 = model.encode(torch.cat([other, torch.zeros(1, 2, dtype=torch.long)], 1), mask).last_hidden_state
    assert torch.equal(h[0, 6, H:], h2[0, 6, H:]) and not torch.equal(h[0, 5, H:], h2[0, 5, H:])


@pytest.mark.parametrize("member", NEURAL)
def test_init_weights_and_resize_token_embeddings(member):
    model = _tiny(member)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.init_weights()
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # every tensor redrawn
    x = torch.randint(0, 40, (2, 8))
    with torch.no_grad():
        old = model(x).logits
        model.resize_token_embeddings(43)
        new = model(x).logits
    assert model.config.vocab_size == model.embeddings.num_embeddings == new.shape[-1] == 43
    torch.testing.assert_close(new[..., :40], old)  # the old tokens' rows are kept
    lowest = model.output.bias[:40].min()  # new tokens score as the least likely old one
    torch.testing.assert_close(new[..., 40:], lowest.expand(2, 8, 3))


@pytest.mark.parametrize("member, groups", [("ffnn", 2), ("lstm", 3), ("elmo", 3)])
def test_layer_groups_bottom_to_top(member, groups):
    model = _tiny(member, num_layers=2) if member != "ffnn" else _tiny(member, order=3)
    got = model.layer_groups()
    assert len(got) == groups and got[0] == [model.embeddings.weight]
    ids = [{id(p) for p in g} for g in got]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1:])
    if member == "elmo":  # layer j of both directions together
        both = [*model.rnn.layers[0].parameters(), *model.rnn_backward.layers[0].parameters()]
        assert ids[1] == {id(p) for p in both}
    output = {id(p) for p in model.output.parameters()}
    assert not any(output & g for g in ids)  # the LM's softmax is not a body layer


# --- evaluate-lm ----------------------------------------------------------------------------------------

def test_evaluate_lm_equals_the_direct_nll(trained, tmp_path, capsys):
    member, out = trained
    text = tmp_path / "held.txt"
    text.write_text("In the beginning God created the heaven.\nAnd the earth was void.\n\nLet there be light.\n")
    capsys.readouterr()
    assert main(["evaluate-lm", "--model", str(out), "--data", str(text), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    model, tok = load_model(out), load_tokenizer(out)
    sep = tok.doc_sep_id
    stream = [sep] + tok.encode("In the beginning God created the heaven.") + tok.encode(
        "And the earth was void.") + [sep] + tok.encode("Let there be light.") + [sep]
    with torch.no_grad():
        nll = -next_token_logprobs(model, torch.tensor([stream])).double().sum().item()
    assert got["tokens"] == len(stream) - 1 and got["words"] == 16
    assert got["perplexity"] == pytest.approx(math.exp(nll / 16), rel=1e-5)
    assert got["bits_per_byte"] == pytest.approx(nll / math.log(2) / text.stat().st_size, rel=1e-5)
    # `plmkit evaluate --task lm` is the same report.
    assert main(["evaluate", "--task", "lm", "--model", str(out), "--data", str(text), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == got


def test_sliding_windows_score_every_token_once(corpus):
    """With windows longer than the n-gram's reach, windowed scoring equals scoring the whole stream."""
    from plmkit.tokenizers import train_tokenizer

    tok = train_tokenizer("bpe", [str(corpus)], 300)
    text = [ln for ln in corpus.read_text().split("\n\n") if ln.strip()][:3]
    stream = [tok.doc_sep_id]
    for doc in text:
        stream += [t for ids in tok.encode_batch(doc.splitlines()) for t in ids] + [tok.doc_sep_id]
    lm = Ngram.from_ids(NgramConfig(vocab_size=tok.vocab_size, order=3), stream)
    full = -next_token_logprobs(lm, torch.tensor([stream])).double().sum().item()
    path = corpus.parent / "three-docs.txt"
    path.write_text("\n\n".join(text) + "\n")
    for window, stride in ((8, 3), (16, 8), (5000, None)):
        got = evaluate_lm(lm, tok, path, window=window, stride=stride, show_progress=False)
        assert got["tokens"] == len(stream) - 1
        assert got["nll"] == pytest.approx(full, rel=1e-9)


def test_evaluate_lm_on_gpt(corpus, tmp_path):
    """GPT is scored the same way: the stream opens with its separator, windows of at most max_positions."""
    from plmkit.models.gpt import Gpt, GptConfig
    from plmkit.tokenizers import train_tokenizer

    tok = train_tokenizer("bpe", [str(corpus)], 300)
    torch.manual_seed(0)
    gpt = Gpt(GptConfig(vocab_size=tok.vocab_size, hidden_size=32, num_layers=1, num_heads=2,
                        intermediate_size=128, max_positions=64)).eval()
    path = tmp_path / "t.txt"
    path.write_text("And God saw the light, that it was good.\n")
    stream = [tok.doc_sep_id] + tok.encode("And God saw the light, that it was good.") + [tok.doc_sep_id]
    with torch.no_grad():
        logits = gpt(torch.tensor([stream[:-1]])).logits[0].log_softmax(-1)
    nll = -logits[torch.arange(len(stream) - 1), torch.tensor(stream[1:])].double().sum().item()
    got = evaluate_lm(gpt, tok, path, window=1024, show_progress=False)
    assert got["window"] == 64 and got["nll"] == pytest.approx(nll, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(nll / 9), rel=1e-5)


# --- word2vec -------------------------------------------------------------------------------------------

def test_probes_on_vectors_built_by_hand(tmp_path):
    from plmkit.evaluation.word_probes import _ranks, analogies, similarity

    vocab = {"<unk>": 0, "athens": 1, "greece": 2, "rome": 3, "italy": 4, "noise": 5}
    e = np.zeros((6, 4))
    e[1:] = [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 1, 1, 0], [0.7, 0.7, 0.1, 0.1]]  # capital + (0,1,0,0)
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"relation": "capital", "subject": "Athens", "object": "Greece"}\n'
                     '{"relation": "capital", "subject": "Rome", "object": "Italy"}\n'
                     '{"relation": "capital", "subject": "Paris", "object": "France"}\n')
    res = analogies(e, vocab, facts)
    assert res["accuracy"] == 1.0 and res["questions"] == 2 and res["coverage"] == pytest.approx(2 / 6)
    pairs = tmp_path / "sim.tsv"
    pairs.write_text("word1\tword2\tscore\nathens\tgreece\t9\nrome\titaly\t9\nathens\trome\t1\nathens\tparis\t5\n")
    sim = similarity(e, vocab, pairs)
    assert sim["pairs"] == 3 and sim["spearman"] == pytest.approx(1.0)
    assert _ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]


def test_word2vec_trains_probes_and_initialises_embeddings(corpus, shared_data, tmp_path):
    pytest.importorskip("gensim")
    from plmkit.models.gpt import Gpt, GptConfig
    from plmkit.models.word2vec import init_input_embeddings
    from plmkit.tokenizers import train_tokenizer
    from plmkit.evaluation.word_probes import probe

    out = tmp_path / "w2v"
    assert main(["-q", "pretrain", "--model", "word2vec", "--corpus", str(corpus), "--out", str(out),
                 "--vocab-size", "300", "--set", "embedding_size=32", "--set", "min_count=3",
                 "--set", "epochs=2"]) == 0
    w2v, wtok = load_model(out), load_tokenizer(out)
    assert wtok.token_to_id("god") and w2v.vectors(["God"], wtok).abs().sum() > 0
    res = probe(w2v.embeddings.weight.detach().numpy(), wtok.backend.get_vocab(), shared_data / "probes")
    assert res["wordsim353"]["pairs"] > 0 and -1 <= res["wordsim353"]["spearman"] <= 1
    assert 0 <= res["analogies"]["coverage"] <= 1
    # any member can start from the vectors: GPT's token embedding here, then frozen
    tok = train_tokenizer("wordpiece", [str(corpus)], 300)
    gpt = Gpt(GptConfig(vocab_size=tok.vocab_size, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64))
    before = gpt.embeddings.tokens.weight.detach().clone()
    n = init_input_embeddings(gpt, tok, w2v, wtok, freeze=True)
    after = gpt.embeddings.tokens.weight.detach()
    i = tok.token_to_id("god")
    copied = (after != before).any(1)
    assert n > 20 and int(copied.sum()) == n and copied[i]
    # the vectors keep their direction and take the scale of the rows they replace
    cos = torch.nn.functional.cosine_similarity(after[i], w2v.vectors(["god"], wtok)[0], dim=0)
    assert cos.item() == pytest.approx(1.0, abs=1e-5)
    assert after[copied].std().item() == pytest.approx(before[copied].std().item(), rel=1e-4)
    assert not gpt.embeddings.tokens.weight.requires_grad
