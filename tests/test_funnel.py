"""Funnel-Transformer: the same logits as transformers' FunnelForMaskedLM both ways, the encoder alone as
FunnelBaseModel reads [CLS], the pooling and up-sampling by hand, the shapes through the funnel, a few
pre-training steps in which the loss falls, and the pre-trained body fine-tuned to classify and to tag."""

import json

import pytest
import torch

import plmkit
from plmkit import family
from plmkit.interop.hf import save_model
from plmkit.layers.funnel import pool, upsample

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_heads=4, intermediate_size=64, block_sizes=(1, 2, 2), num_layers=5)


def _build(seed=0, **extra):
    torch.manual_seed(seed)
    m = family.get("funnel")
    model = m.model_cls(m.config_cls(**{**TINY, **extra})).eval()
    with torch.no_grad():  # the relative terms large enough that a wrong distance or segment would show
        for name, p in model.named_parameters():
            if any(k in name for k in ("attn.r", "seg_embed")):
                p.normal_(0, 0.5)
    return model


def _inputs(T, seed=0):
    x = torch.randint(3, 99, (3, T), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(3, T, dtype=torch.long)
    mask[1, T - 5:] = 0
    types = torch.zeros(3, T, dtype=torch.long)
    types[:, T // 2:] = 1
    types[2, 0] = 2  # a [CLS] of the released tokenizer's type 2: in both segments
    return x, mask, types


def _close(a, b) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("T", [16, 17])  # the pooled tail pairs up, or leaves a lone last vector
def test_saved_funnel_gives_same_outputs_in_transformers(T, tmp_path):
    model = _build()
    save_model(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["FunnelForMaskedLM"]
    hf = transformers.FunnelForMaskedLM.from_pretrained(tmp_path).eval()
    x, mask, types = _inputs(T)
    with torch.no_grad():
        ours = model(x, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        theirs = hf(x, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
    real = mask.bool()
    err = _close(ours.logits[real], theirs.logits[real])
    print(f"funnel → transformers, T={T}: max |Δ logits| = {err:.2e}")
    assert err < 1e-5
    assert len(ours.hidden_states) == len(theirs.hidden_states) == 1 + 5 + 1 + 2
    for a, b in zip(ours.hidden_states, theirs.hidden_states):
        assert a.shape == b.shape and _close(a[:, :1], b[:, :1]) < 1e-5  # [CLS] at every stage


def test_transformers_funnel_loads_into_plmkit_and_its_base_model_reads_cls(tmp_path):
    ours = _build()
    save_model(ours, tmp_path / "ours")  # only for a matching transformers config
    config = transformers.FunnelConfig.from_pretrained(tmp_path / "ours")
    torch.manual_seed(1)
    hf = transformers.FunnelForMaskedLM(config).eval()
    hf.save_pretrained(tmp_path / "hf")
    loaded = plmkit.load(tmp_path / "hf")
    assert type(loaded) is type(ours)
    assert {k: v for k, v in loaded.config.to_dict().items() if k != "initializer_range"} == \
        {k: v for k, v in ours.config.to_dict().items() if k != "initializer_range"}
    x, mask, types = _inputs(21, seed=3)
    with torch.no_grad():
        theirs = hf(x, attention_mask=mask, token_type_ids=types).logits
        err = _close(loaded(x, attention_mask=mask, token_type_ids=types).logits, theirs)
        print(f"transformers → funnel: max |Δ logits| = {err:.2e} on logits up to {theirs.abs().max():.1f}")
        # transformers' own init (embeddings of std 1) gives logits in the tens; its scores pass through
        # float32 even in float64, so the bound is relative to that scale
        assert err < 1e-6 * theirs.abs().max()
        # Sequence-level tasks: FunnelBaseModel (no decoder) = encode(rows=0), [CLS] after the last block
        base = transformers.FunnelBaseModel(config).eval()
        base.load_state_dict({k[len("funnel."):]: v for k, v in hf.state_dict().items()
                              if k.startswith("funnel.") and not k.startswith("funnel.decoder.")})
        cls = loaded.encode(x, mask, types, rows=torch.zeros(3, dtype=torch.long)).last_hidden_state
        assert cls.shape == (3, 1, 32)
        assert _close(cls[:, 0], base(x, attention_mask=mask, token_type_ids=types).last_hidden_state[:, 0]) < 1e-5


def test_pooling_and_upsampling_by_hand():
    x = torch.tensor([[10.0, 1, 2, 3, 4, 5]])[..., None]  # [CLS] 1 2 3 4 [SEP]
    assert pool(x)[0, :, 0].tolist() == [10, 1.5, 3.5]  # [SEP] cut, pairs averaged, [CLS] apart
    assert pool(x[:, :5])[0, :, 0].tolist() == [10, 1.5, 3]  # a lone last token pools alone
    assert pool(torch.tensor([[1, 1, 1, 0, 0, 1]]).bool(), "all").int().tolist() == [[1, 1, 0]]
    assert pool(torch.arange(7)[None], "first").tolist() == [[0, 1, 3, 5]]  # a pooled vector's position
    up = upsample(torch.tensor([[10.0, 1, 2]])[..., None], 6, 2)
    assert up[0, :, 0].tolist() == [10, 1, 1, 2, 2, 0]  # each vector back at its two tokens, the cut one 0


def test_shapes_through_the_funnel_and_eager_attention():
    model = _build()
    x, mask, types = _inputs(17)
    with torch.no_grad():
        fast = model(x, mask, types)
        slow = model(x, mask, types, attn_impl="eager", output_attentions=True, output_hidden_states=True)
        assert _close(fast.logits, slow.logits) < 1e-5
        with pytest.raises(ValueError, match="eager"):
            model(x, output_attentions=True)
    # 17 → 9 → 5 positions; each pooled block's first layer: pooled queries × unpooled keys; decoder full
    assert [h.shape[1] for h in slow.hidden_states] == [17, 17, 9, 9, 5, 5, 17, 17, 17]
    assert [tuple(a.shape[2:]) for a in slow.attentions] == [(17, 17), (9, 17), (9, 9), (5, 9), (5, 5),
                                                              (17, 17), (17, 17)]
    assert fast.logits.shape == (3, 17, 99) and fast.pooler_output is None
    rows = torch.tensor([0, 16, 7])  # a row past [CLS] goes through the decoder
    assert _close(model.encode(x, mask, types, rows=rows).last_hidden_state[:, 0],
                  model.encode(x, mask, types).last_hidden_state[torch.arange(3), rows]) < 1e-5
    assert model.encode(x[:, :2]).last_hidden_state.shape == (3, 2, 32)  # too short to pool: runs unpooled
    groups = model.layer_groups()  # ULMFiT: embeddings, 5 encoder layers, then the 2 decoder layers
    assert len(groups) == 1 + 5 + 2 and any(p is model.decoder[1].attn.q.weight for p in groups[-1])
    assert sum(p.numel() for g in groups for p in g) == model.num_parameters() - 99  # all but the LM bias


def test_funnel_config_is_berts_plus_blocks():
    cfg = family.get("funnel").config_cls
    assert cfg.preset("base").block_sizes == (6, 6, 6) and cfg.preset("base").num_layers == 18
    assert cfg.preset("tiny").block_sizes == (1, 1, 1)
    assert cfg.preset("tiny", block_sizes=[2, 1]).num_layers == 3
    assert cfg().block_sizes == (6, 6, 6) and cfg(num_layers=4).block_sizes == (2, 1, 1)
    assert cfg(num_layers=2).block_sizes == (1, 1)  # too shallow for three blocks
    c = cfg.preset("mini", vocab_size=500)
    assert cfg.from_dict(json.loads(c.to_json())) == c
    with pytest.raises(plmkit.PlmkitError, match="sum"):
        cfg(num_layers=4, block_sizes=(2, 1))
    from_hf = family.get("funnel").model_cls.hf.from_config
    with pytest.raises(plmkit.PlmkitError, match="separate_cls"):
        from_hf({"vocab_size": 9, "separate_cls": False})
    with pytest.raises(plmkit.PlmkitError, match="without its decoder"):
        from_hf({"vocab_size": 9, "architectures": ["FunnelForSequenceClassification"]})


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    from plmkit.workflows.pretrain import pretrain

    out = tmp_path_factory.mktemp("funnel") / "run"
    pretrain("funnel", [str(corpus)], out, size="tiny",
             model_overrides={"block_sizes": [1, 1], "num_decoder_layers": 1, "hidden_size": 64,
                              "intermediate_size": 128},
             train_overrides={"steps": 20, "batch_size": 16, "lr": 5e-3, "warmup_steps": 2, "log_every": 1},
             data_overrides={"seq_len": 32, "vocab_size": 400})
    return out


def test_pretraining_loss_falls(pretrained):
    log = [json.loads(line) for line in (pretrained / "train_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-5:]) / 5
    print(f"funnel: loss {first:.3f} (first 3) → {last:.3f} (last 5)")
    assert last < first - 0.5, (first, last)
    assert type(plmkit.load(pretrained)).family_name == "funnel"


def test_finetunes_to_classify_at_cls_and_to_tag_through_the_decoder(pretrained, kjv_head, tmp_path):
    from plmkit.workflows.finetune import finetune

    verses = [v for v in kjv_head(200).read_text().splitlines() if v.strip()][100:164]
    c, t = tmp_path / "classify.jsonl", tmp_path / "tag.txt"
    c.write_text("".join(json.dumps({"text": v, "label": "lord" if "LORD" in v else "other"}) + "\n"
                         for v in verses))
    t.write_text("".join("".join(f"{w}\t{'B-CAP' if w[0].isupper() else 'O'}\n" for w in v.split()) + "\n"
                         for v in verses))
    for task, data in (("classify", c), ("tag", t)):
        finetune(pretrained, task, str(data), str(data), tmp_path / task, epochs=2, lr=3e-3, batch_size=16,
                 max_length=48, progress=False)
        ev = json.loads((tmp_path / task / "eval.json").read_text())
        score = ev["dev"]["accuracy"]
        print(f"funnel {task}: dev accuracy {score:.3f}")
        assert score > 0.6
