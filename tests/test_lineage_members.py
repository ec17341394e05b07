"""AWD-LSTM, the sequence autoencoder (SA-LSTM) and context2vec: pre-training, save/load, and what each
adds to its parent (weight drop, locked dropout, tied softmax, AR/TAR; a decoder sharing the encoder's
weights; biLSTM contexts ranking words for a blank)."""

import json

import pytest
import torch

from plmkit import family, load_tokenizer
from plmkit.cli import main
from plmkit.errors import PlmkitError
from plmkit.interop.hf import load_model, save_model
from plmkit.evaluation.lm import next_token_logprobs
from plmkit.workflows.pretrain import pretrain

MEMBERS = ["awd-lstm", "sa-lstm", "context2vec"]
TINY = {"embedding_size": 32, "hidden_size": 32}


def tiny(member: str, vocab_size: int = 50, **overrides):
    m = family.get(member)
    return m.model_cls(m.config_cls.preset("tiny", vocab_size=vocab_size, **{**TINY, **overrides}))


@pytest.fixture(scope="module", params=MEMBERS)
def trained(request, kjv_head, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "run"
    pretrain(request.param, [str(kjv_head(400))], out, model_overrides=TINY,
             train_overrides={"steps": 30, "batch_size": 16, "lr": 2e-2, "log_every": 1},
             data_overrides={"seq_len": 32, "vocab_size": 300})
    return request.param, out


def test_pretrain_loss_falls_and_the_model_reloads(trained, tmp_path, capsys):
    member, out = trained
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-3:]) / 3
    assert last < first - 0.3, (member, first, last)
    model = load_model(out)
    assert model.family_name == member and json.loads((out / "plmkit.json").read_text())["member"] == member
    if member == "awd-lstm":  # AR and TAR are logged beside the LM loss they are added to
        assert all(r["loss"] >= r["lm_loss"] and r["ar"] > 0 and r["tar"] > 0 for r in log)
        text = tmp_path / "held.txt"
        text.write_text("In the beginning God created the heaven.\n\nLet there be light.\n")
        capsys.readouterr()
        assert main(["evaluate-lm", "--model", str(out), "--data", str(text), "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["model"] == "awd-lstm" and 1 < got["perplexity"] < 1e6


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    x = torch.randint(0, 50, (2, 12))
    for member in MEMBERS:
        model = tiny(member).eval()
        if member == "context2vec":  # the target vectors start at zero: give them values to save
            torch.nn.init.normal_(model.embeddings.weight)
        save_model(model, tmp_path / member)
        again = load_model(tmp_path / member)
        assert again.config == model.config
        with torch.no_grad():
            if member == "context2vec":  # context · target scores over the vocabulary
                assert torch.equal(model(x).logits, again(x).logits)
            else:
                assert torch.equal(next_token_logprobs(model, x), next_token_logprobs(again, x))
            if member == "sa-lstm":
                a, b = model(x, decoder_input_ids=x), again(x, decoder_input_ids=x)
                assert torch.equal(a.logits, b.logits)


def test_family_lists_the_members(capsys):
    assert main(["family", "--json"]) == 0
    got = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert {n: got[n]["parent"] for n in MEMBERS} == {"awd-lstm": "lstm", "sa-lstm": "lstm",
                                                      "context2vec": "word2vec"}
    assert (got["awd-lstm"]["year"], got["sa-lstm"]["year"], got["context2vec"]["year"]) == (2018, 2015, 2016)
    assert main(["diff", "awd-lstm"]) == 0
    assert "weight drop" in capsys.readouterr().out


@pytest.mark.parametrize("member", ["awd-lstm", "sa-lstm"])
def test_recurrent_children_encode_as_their_parent_lstm(member):
    """As fine-tuning bodies they are LSTMs: right padding leaves every real token's states unchanged, and
    encode's top layer is what the softmax reads."""
    torch.manual_seed(0)
    model = tiny(member).eval()
    x = torch.randint(1, 50, (2, 9))
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5])
    with torch.no_grad():
        padded = model.encode(x.masked_fill(mask == 0, 0), mask, output_hidden_states=True)
        alone = model.encode(x[1:, :4], torch.ones(1, 4, dtype=torch.long), output_hidden_states=True)
        for h_pad, h_alone in zip(padded.hidden_states, alone.hidden_states):
            torch.testing.assert_close(h_pad[1, :4], h_alone[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(model(x).last_hidden_state, model.encode(x).last_hidden_state)


# --- AWD-LSTM -------------------------------------------------------------------------------------------

def test_weight_drop_only_in_training():
    from plmkit.layers.rnn import WeightDropLSTM

    torch.manual_seed(0)
    x = torch.randn(3, 7, 8)
    wd = WeightDropLSTM(8, 16, 0.5, batch_first=True)
    plain = torch.nn.LSTM(8, 16, batch_first=True)
    plain.load_state_dict(wd.state_dict())  # the same parameter names as nn.LSTM's
    raw = wd.weight_hh_l0.detach().clone()
    wd.eval()
    assert torch.equal(wd(x)[0], wd(x)[0]) and torch.allclose(wd(x)[0], plain(x)[0])
    wd.train()
    a, b = wd(x)[0], wd(x)[0]
    assert not torch.equal(a, b) and not torch.allclose(a, plain(x)[0])  # a new mask on W_hh each pass
    a.sum().backward()
    assert wd.weight_hh_l0.grad.abs().sum() > 0 and torch.equal(wd.weight_hh_l0, raw)  # the raw weight is kept
    # The mask is one per pass, on W_hh only: the first step (h_0 = 0 never meets W_hh) is not dropped.
    assert torch.allclose(a[:, 0], plain(x)[0][:, 0], atol=1e-6)


def test_awd_lstm_regularises_only_in_training_and_ties_the_softmax():
    model = tiny("awd-lstm", vocab_size=40, embedding_size=16, hidden_size=24)
    names = dict(model.named_parameters())
    assert "output.weight" not in names and model.rnn.layers[-1].hidden_size == 16  # last layer = E
    assert [layer.hidden_size for layer in model.rnn.layers] == [24, 24, 16]
    x = torch.randint(0, 40, (2, 9))
    model.eval()
    assert torch.equal(model(x).logits, model(x).logits)
    # tied: the logits are the last layer against the embedding, plus the bias
    out = model(x)
    assert torch.allclose(out.logits, out.last_hidden_state @ model.embeddings.weight.T + model.output_bias)
    model.train()
    assert not torch.equal(model(x).logits, model(x).logits)
    # each dropout alone changes the training output; with all off, training equals evaluation
    off = dict(dropout=0.0, input_dropout=0.0, hidden_dropout=0.0, embedding_dropout=0.0, weight_drop=0.0)
    ref = tiny("awd-lstm", vocab_size=40, **off)
    state = ref.state_dict()
    for name in off:
        m = tiny("awd-lstm", vocab_size=40, **{**off, name: 0.5})
        m.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(m.eval()(x).logits, ref.eval()(x).logits)
            assert not torch.allclose(m.train()(x).logits, ref(x).logits), name
    with torch.no_grad():
        assert torch.allclose(ref.train()(x).logits, ref.eval()(x).logits, atol=1e-6)


def test_locked_dropout_keeps_one_mask_per_sequence():
    from plmkit.layers.rnn import LockedDropout

    drop = LockedDropout(0.5).train()
    y = drop(torch.ones(4, 10, 6))
    assert torch.equal(y, y[:, :1].expand_as(y)) and set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(y), y)


def test_awd_objective_adds_ar_and_tar():
    from types import SimpleNamespace

    from plmkit.models.awd_lstm import ActivationRegularizedLM

    torch.manual_seed(0)
    obj = ActivationRegularizedLM(SimpleNamespace(vocab_size=40), seq_len=8)  # the step reads only the batch
    w = torch.randint(0, 40, (2, 9))
    batch = {"input_ids": w[:, :-1], "labels": w[:, 1:]}
    model = tiny("awd-lstm", vocab_size=40).eval()
    out = obj.step(model, batch)
    h = model(batch["input_ids"]).last_hidden_state
    ar, tar = h.pow(2).mean(), (h[:, 1:] - h[:, :-1]).pow(2).mean()  # in eval the output is not dropped
    assert out["loss"].item() == pytest.approx((out["lm_loss"] + 2.0 * ar + 1.0 * tar).item(), rel=1e-5)
    plain = tiny("awd-lstm", vocab_size=40, ar_alpha=0.0, tar_beta=0.0).eval()
    plain.load_state_dict(model.state_dict())
    assert obj.step(plain, batch)["loss"].item() == pytest.approx(out["lm_loss"].item(), rel=1e-6)


def test_awd_configs_reject_bad_values():
    with pytest.raises(PlmkitError, match="weight_drop"):
        tiny("awd-lstm", weight_drop=1.0)
    with pytest.raises(PlmkitError, match="ar_alpha"):
        tiny("awd-lstm", ar_alpha=-1.0)


# --- SA-LSTM --------------------------------------------------------------------------------------------

def test_sequence_autoencoder_reconstructs_a_repeated_corpus(tmp_path):
    lines = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn today"] * 60
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n".join(lines) + "\n")
    out = tmp_path / "sa"
    pretrain("sa-lstm", [str(corpus)], out, model_overrides=TINY,
             train_overrides={"steps": 40, "batch_size": 8, "lr": 2e-2, "log_every": 1},
             data_overrides={"seq_len": 12, "vocab_size": 100})
    log = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert sum(log[-5:]) / 5 < sum(log[:5]) / 5 - 1.0


def test_sa_lstm_reconstructs_random_sequences_through_the_encoder():
    """Uniform random windows have no structure an LM could use (its loss stays ≥ ln 11): only reading the
    encoder's final state brings the reconstruction loss below that."""
    import math

    import torch.nn.functional as F

    torch.manual_seed(0)
    V, T, B = 12, 5, 32
    model = tiny("sa-lstm", vocab_size=V, hidden_size=64, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(70):
        x = torch.randint(1, V, (B, T))
        dec = torch.cat([torch.zeros(B, 1, dtype=torch.long), x[:, :-1]], 1)
        loss = F.cross_entropy(model(x, decoder_input_ids=dec).logits.reshape(-1, V), x.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < math.log(V - 1) - 0.8, losses[-5:]


def test_sa_lstm_decoder_shares_the_encoder_and_initialises_an_lstm():
    torch.manual_seed(0)
    sa = tiny("sa-lstm").eval()
    x = torch.randint(1, 50, (2, 8))
    dec = torch.cat([torch.zeros(2, 1, dtype=torch.long), x[:, :-1]], 1)
    y = x.clone()
    y[:, 3] = (x[:, 3] + 1) % 50
    with torch.no_grad():
        a, b = sa(x, decoder_input_ids=dec), sa(y, decoder_input_ids=dec)
        # the decoder's first prediction reads nothing but the encoder's final state
        assert a.logits.shape == (2, 8, 50) and not torch.allclose(a.logits[:, 0], b.logits[:, 0])
        # one network: encoding then decoding is the LSTM reading [x; decoder input]
        full = sa(torch.cat([x, dec], 1)).logits[:, 8:]
        assert torch.allclose(a.logits, full, atol=1e-6)
    lstm = tiny("lstm")
    lstm.load_state_dict(sa.state_dict())  # same names: the pre-trained weights start an LSTM body
    with torch.no_grad():
        assert torch.equal(lstm.eval().encode(x).last_hidden_state, sa.encode(x).last_hidden_state)


# --- context2vec ----------------------------------------------------------------------------------------

def test_context2vec_context_excludes_the_target_and_ignores_padding():
    torch.manual_seed(0)
    model = tiny("context2vec", input_size=16).eval()
    x = torch.randint(1, 50, (1, 9))
    y = x.clone()
    y[0, 4] = (x[0, 4] + 1) % 50
    with torch.no_grad():
        cx, cy = model.encode(x).last_hidden_state, model.encode(y).last_hidden_state
        assert torch.allclose(cx[0, 4], cy[0, 4]) and not torch.allclose(cx[0, 3], cy[0, 3])
        assert not torch.allclose(cx[0, 5], cy[0, 5])  # both sides read the whole window
        padded = torch.cat([x, torch.zeros(1, 3, dtype=torch.long)], 1)
        mask = torch.cat([torch.ones(1, 9), torch.zeros(1, 3)], 1).long()
        cp = model.encode(torch.cat([padded, padded]), torch.cat([mask, torch.ones_like(mask)])).last_hidden_state
        assert torch.allclose(cp[0, :9], cx[0], atol=1e-6)


def test_context2vec_fills_a_blank_after_training(tmp_path, capsys):
    from plmkit.models.context2vec import context_vector, fill

    lines = ["the cat sat on the mat", "the dog ran in the park", "a bird flew over the tree",
             "the cow ate the grass"] * 50
    corpus = tmp_path / "tiny.txt"
    corpus.write_text("\n\n".join(lines) + "\n")  # one sentence per document, framed as `fill` frames it
    out = tmp_path / "c2v"
    pretrain("context2vec", [str(corpus)], out, model_overrides={**TINY, "input_size": 16},
             train_overrides={"steps": 100, "batch_size": 8, "lr": 3e-2, "log_every": 10},
             data_overrides={"seq_len": 16, "vocab_size": 100})
    model, tok = load_model(out), load_tokenizer(out)
    ranked = fill(model, tok, "the [] sat on the mat", candidates=["park", "grass", "cat", "zebra"])
    assert ranked[0][0] == "cat" and ranked[-1] == ("zebra", float("-inf")), ranked  # not in the vocabulary
    assert fill(model, tok, "the [] sat on the mat", top_k=3)[0][0] == "cat"
    assert context_vector(model, tok, "the [] ran").shape == (32,)
    with pytest.raises(PlmkitError, match="exactly one blank"):
        fill(model, tok, "no blank here")
    # `plmkit embed` pools the context vectors
    capsys.readouterr()
    assert main(["embed", "--model", str(out), "--text", "the cat sat", "the dog ran", "--json"]) == 0
    vectors = json.loads(capsys.readouterr().out)
    assert len(vectors) == 2 and len(vectors[0]["vector"]) == 32


def test_context2vec_config_rejects_word2vec_settings():
    with pytest.raises(PlmkitError, match="no window"):
        tiny("context2vec", window=5)
    with pytest.raises(PlmkitError, match="noise_power"):
        tiny("context2vec", noise_power=2.0)
