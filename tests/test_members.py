"""The BERT family as diffs: each member against its `transformers` counterpart both ways, its parent's
tests re-run on it, its own diff checked, and a few pre-training steps in which the loss falls."""

import json
import sys

import pytest
import torch

import plmkit
from plmkit import family
from plmkit.interop.hf import save_model
from plmkit.workflows.pretrain import pretrain

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128, max_positions=64)

# case → (member, config beyond TINY)
CASES = {
    "roberta": ("roberta", {}),
    "albert": ("albert", {"embedding_size": 16}),
    "albert-unshared": ("albert", {"embedding_size": 16, "share_layers": False}),
    "distilbert": ("distilbert", {}),
    "electra": ("electra", {"embedding_size": 16}),
    "bert-wwm": ("bert-wwm", {}),
    "ernie": ("ernie", {}),
    "ernie2": ("ernie2", {}),  # its task ids against transformers: tests/test_ernie2.py
    "nezha": ("nezha", {"max_relative_distance": 5}),
    "xlm": ("xlm", {}),  # its transformers parity needs language ids: tests/test_xling.py
    "unilm": ("unilm", {}),
    "ernie-thu": ("ernie-thu", {"entity_size": 8, "entity_heads": 2, "entity_vocab_size": 5}),  # tests/test_knowledge.py
    "zen": ("zen", {"ngram_vocab_size": 5, "max_ngram_length": 3}),  # its n-gram path: tests/test_zen.py
}
# case → (HF class, the HF output field that holds plmkit's `logits`); NEZHA is no longer in transformers, and
# UniLM's checkpoints are BERT's (tests/test_unilm.py checks its four masks against BertForPreTraining)
HF = {
    "roberta": ("RobertaForMaskedLM", "logits"),
    "albert": ("AlbertForPreTraining", "prediction_logits"),
    "albert-unshared": ("AlbertForPreTraining", "prediction_logits"),
    "distilbert": ("DistilBertForMaskedLM", "logits"),
    "electra": ("ElectraForPreTraining", "logits"),
    "bert-wwm": ("BertForPreTraining", "prediction_logits"),
    "ernie": ("ErnieForPreTraining", "prediction_logits"),
    "ernie2": ("ErnieForPreTraining", "prediction_logits"),
}


def _ids(vocab=99, shape=(3, 17), seed=0):
    return torch.randint(3, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _build(case: str, **extra):
    torch.manual_seed(0)
    name, config = CASES[case]
    m = family.get(name)
    return m.model_cls(m.config_cls(**{**TINY, **config, **extra})).eval()


@pytest.fixture(params=sorted(CASES))
def member(request):
    return request.param


@pytest.fixture(params=sorted(HF))
def hf_member(request):
    return request.param


def _close(a, b) -> float:
    return (a - b).abs().max().item()


def test_saved_member_gives_same_logits_in_transformers(hf_member, tmp_path):
    model = _build(hf_member)
    hf_name, field = HF[hf_member]
    save_model(model, tmp_path)
    hf = getattr(transformers, hf_name).from_pretrained(tmp_path).eval()
    x, mask = _ids(), torch.ones(3, 17, dtype=torch.long)
    mask[1, 11:] = 0
    with torch.no_grad():
        ours, theirs = model(x, attention_mask=mask), hf(x, attention_mask=mask)
    real = mask.bool()
    assert _close(ours.logits[real], getattr(theirs, field)[real]) < 1e-4


def test_transformers_checkpoint_loads_into_plmkit(hf_member, tmp_path):
    model = _build(hf_member)
    hf_name, field = HF[hf_member]
    save_model(model, tmp_path / "ours")  # only to get a matching HF config
    hf_cls = getattr(transformers, hf_name)
    torch.manual_seed(1)
    hf = hf_cls(hf_cls.config_class.from_pretrained(tmp_path / "ours")).eval()
    hf.save_pretrained(tmp_path / "hf")
    loaded = plmkit.load(tmp_path / "hf")
    # An HF `bert` directory loads as BERT: that it was pre-trained with whole-word masking is not in it.
    assert isinstance(model, type(loaded)) and loaded.config.to_dict() == model.config.to_dict()
    x = _ids()
    with torch.no_grad():
        assert _close(loaded(x).logits, getattr(hf(x), field)) < 1e-4


def test_member_saves_and_loads_with_its_config_and_weights(member, tmp_path):
    model = _build(member)
    save_model(model, tmp_path)
    back = plmkit.load(tmp_path)
    assert type(back) is type(model) and back.config == model.config
    x = _ids()
    with torch.no_grad():
        assert torch.equal(back(x).logits, model(x).logits)


def test_member_runs_its_parents_tests(member):
    """BERT's own checks on the child: eager = SDPA with weights returned, bidirectional, logits_at."""
    model = _build(member)
    x = _ids()
    with torch.no_grad():
        fast = model(x)
        slow = model(x, attn_impl="eager", output_attentions=True, output_hidden_states=True)
        assert _close(fast.logits, slow.logits) < 1e-5
        assert len(slow.attentions) == model.config.num_layers and slow.attentions[0].shape == (3, 4, 17, 17)
        assert len(slow.hidden_states) == model.config.num_layers + 1
        with pytest.raises(ValueError, match="eager"):
            model(x, output_attentions=True)
        y = x.clone()
        y[:, 10:] = (y[:, 10:] + 1) % 99
        assert not torch.allclose(model(y).logits[:, :10], fast.logits[:, :10], atol=1e-6)
        at = torch.zeros_like(x, dtype=torch.bool)
        at[0, 3] = at[2, 5] = True
        assert _close(model(x, logits_at=at).logits, fast.logits[at]) < 1e-6
        rows = torch.tensor([0, 16, 7])  # the last layer at one position per sequence only
        assert _close(model.encode(x, rows=rows).last_hidden_state[:, 0],
                      model.encode(x).last_hidden_state[torch.arange(3), rows]) < 1e-5


def test_member_config_is_its_parents_plus_a_diff(member):
    m = family.get(CASES[member][0])
    parent = family.get(m.parent)
    assert issubclass(m.config_cls, parent.config_cls) and issubclass(m.model_cls, parent.model_cls)
    first_line = sys.modules[m.model_cls.__module__].__doc__.splitlines()[0]
    assert f" = {parent.model_cls.__name__.upper()} " in first_line.upper() and m.paper in first_line
    cfg = m.config_cls.preset("mini", vocab_size=500)
    assert m.config_cls.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(plmkit.PlmkitError, match="unknown config key"):
        m.config_cls.from_dict({"hidden_size": 32, "nmu_layers": 3})


def test_roberta_has_no_nsp_and_counts_positions_from_padding():
    model = _build("roberta")
    assert model.nsp is None and model(_ids()).seq_relationship_logits is None
    assert model.embeddings.positions.num_embeddings == 64 + 2  # rows 0 (<s>) and 1 (<pad>) reserved
    m = family.get("roberta")
    assert (m.objective, m.tokenizer) == ("mlm", "bytebpe")


def test_albert_shares_one_block_and_factorizes_the_embedding():
    shared, unshared = _build("albert"), _build("albert-unshared")
    assert len(shared.layers) == 1 and len(shared.stack()) == 2 and shared.stack()[0] is shared.stack()[1]
    block = sum(p.numel() for p in shared.layers[0].parameters())
    assert unshared.num_parameters() - shared.num_parameters() == block
    assert shared.embeddings.tokens.weight.shape == (99, 16) and shared.mlm_transform.out_features == 16


@pytest.fixture(scope="module")
def tokens(corpus, tmp_path_factory):
    from plmkit.data import TokenCorpus, build_shards
    from plmkit.tokenizers import train_tokenizer

    d = tmp_path_factory.mktemp("shards")
    tok = train_tokenizer("wordpiece", [str(corpus)], 400, out_dir=d / "tok")
    build_shards([str(corpus)], tok, d / "data", num_workers=1)
    return tok, TokenCorpus(d / "data")


def test_sentence_order_pairs_are_consecutive_and_swapped_half_the_time(tokens):
    from plmkit.data.pretrain import SegmentPairs
    from plmkit.objectives.sop import SentenceOrderPairs

    _, corpus = tokens
    sop, nsp = SentenceOrderPairs(corpus, 29, seed=3), SegmentPairs(corpus, 29, seed=3, random_next_prob=0.0)
    swapped = 0
    for i in range(100):
        a, b, in_order = sop[i]
        a0, b0, is_next = nsp[i]
        assert is_next == 1  # B is always the real continuation
        first, second = (a, b) if in_order else (b, a)
        assert first.tolist() == a0.tolist() and second.tolist() == b0.tolist()
        swapped += 1 - in_order
    assert 30 <= swapped <= 70


def test_ngram_masking_takes_whole_units_within_the_budget():
    from plmkit.objectives.spans import mask_spans

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (64, 101), generator=g)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False
    starts = torch.zeros_like(maskable)
    starts[:, 1::2] = True  # two-token words
    corrupted, chosen = mask_spans(ids, maskable, 3, 1000, g, starts=starts, max_n=3)
    assert not chosen[:, 0].any() and (chosen.sum(1) <= 15).all() and chosen.sum() > 64 * 10
    assert (chosen[:, 1::2] == chosen[:, 2::2]).all()  # a word is masked whole or not at all
    assert (corrupted[~chosen] == ids[~chosen]).all()
    _, single = mask_spans(ids, maskable, 3, 1000, g, max_n=3)
    runs = torch.diff(single.int(), dim=1).eq(-1).sum() + single[:, -1].sum()  # maximal masked runs
    assert single.sum() / runs > 1.3  # spans of 1–3 tokens, mean length 1/Σ(1/n) × 3 = 1.64, not 1


def test_distilbert_halves_the_layers_and_drops_types_and_pooler():
    from plmkit.models.distilbert import DistilBertConfig

    assert DistilBertConfig().num_layers == 6 and DistilBertConfig.preset("base").num_layers == 6
    assert DistilBertConfig.preset("tiny").num_layers == 1
    assert DistilBertConfig.preset("tiny", num_layers=3).num_layers == 3
    model = _build("distilbert")
    out = model(_ids())
    assert model.embeddings.token_types is None and out.pooler_output is None and out.seq_relationship_logits is None


def test_electra_generator_matches_transformers_both_ways(tmp_path):
    model = _build("electra")
    save_model(model, tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "generator" / "config.json").read_text())["hidden_size"] == 8  # 32 / 4
    x = _ids()
    with torch.no_grad():
        hf_gen = transformers.ElectraForMaskedLM.from_pretrained(tmp_path / "ours" / "generator").eval()
        assert _close(model(x, generator=True).logits, hf_gen(x).logits) < 1e-4
    # transformers → plmkit: a discriminator and a generator with shared embeddings, saved the ELECTRA way
    torch.manual_seed(1)
    disc = transformers.ElectraForPreTraining(transformers.ElectraConfig.from_pretrained(tmp_path / "ours")).eval()
    gen = transformers.ElectraForMaskedLM(
        transformers.ElectraConfig.from_pretrained(tmp_path / "ours" / "generator")).eval()
    gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
    disc.save_pretrained(tmp_path / "hf")
    gen.save_pretrained(tmp_path / "hf" / "generator")
    loaded = plmkit.load(tmp_path / "hf")
    assert loaded.config == model.config
    with torch.no_grad():
        assert _close(loaded(x).logits, disc(x).logits) < 1e-4
        assert _close(loaded(x, generator=True).logits, gen(x).logits) < 1e-4


def test_electra_generator_is_smaller_and_shares_the_embeddings():
    model = _build("electra")
    g = model.generator.config
    assert (g.hidden_size, g.num_heads, g.intermediate_size, g.num_layers) == (8, 1, 32, 2)
    assert not any(n.startswith("generator.embeddings") for n, _ in model.named_parameters())
    with pytest.raises(plmkit.PlmkitError, match="generator_size"):
        family.get("electra").config_cls(**TINY, generator_size=0.6)  # hidden 19 over 2 heads
    assert model.pooler is None and model(_ids()).logits.shape == (3, 17)


@pytest.mark.parametrize("kind", ["wordpiece", "bpe", "bytebpe", "unigram"])
def test_word_boundaries_for_every_subword_tokenizer(kind, corpus, tmp_path):
    from plmkit.objectives.wwm import WordBoundaries
    from plmkit.tokenizers import train_tokenizer

    tok = train_tokenizer(kind, [str(corpus)], 300, out_dir=tmp_path)
    text = "the everlasting righteousness of Jerusalem"
    ids = torch.tensor([tok.encode(text)])
    assert ids.shape[1] > 5  # a 300-token vocabulary splits these words
    starts = WordBoundaries(tok).starts(ids)[0]
    assert int(starts.sum()) == 5
    words = [tok.decode(ids[0, a:b]).strip() for a, b in _runs(starts)]
    assert [w.lower() for w in words] == text.lower().split()


def test_chinese_words_come_from_jieba(tmp_path):
    pytest.importorskip("jieba")
    from plmkit.objectives.wwm import WordBoundaries
    from plmkit.tokenizers import train_tokenizer

    (tmp_path / "zh.txt").write_text("我爱北京天安门。\n天安门上太阳升。\n" * 3)
    for kind in ("char", "wordpiece"):
        tok = train_tokenizer(kind, [str(tmp_path / "zh.txt")], 100, out_dir=tmp_path / kind)
        ids = torch.tensor([[tok.cls_id, *tok.encode("我爱北京天安门"), tok.sep_id]])
        # [CLS] 我 | 爱 | 北京 | 天安门 [SEP]
        assert WordBoundaries(tok).starts(ids)[0].int().tolist() == [1, 1, 1, 1, 0, 1, 0, 0, 1]


def test_ernie_masks_lexicon_phrases_whole_and_derives_phrases_without_one(tokens, tmp_path, caplog):
    from plmkit.objectives.ernie import KnowledgeMaskedLM

    tok, corpus = tokens
    (tmp_path / "lexicon.txt").write_text("children of Israel\nthe LORD\n")
    ernie = KnowledgeMaskedLM(tok, 64, lexicon=str(tmp_path / "lexicon.txt"))
    text = "and the children of israel said unto the lord"
    ids = torch.tensor([tok.encode(text)])
    units = [tok.decode(ids[0, a:b]) for a, b in _runs(ernie.unit_starts(ids)[0])]
    assert units == ["and", "the", "children of israel", "said", "unto", "the lord"]
    with caplog.at_level("INFO", logger="plmkit"):
        derived = KnowledgeMaskedLM(tok, 64)
        derived.dataset(corpus)
    assert "derived" in caplog.text and derived.phrases
    assert "every living creature" in {tok.decode(p) for ps in derived.phrases.values() for p in ps}
    with pytest.raises(plmkit.PlmkitError, match="lexicon"):
        KnowledgeMaskedLM(tok, 64, lexicon=str(tmp_path / "missing.txt"))


def test_nezha_attention_is_the_papers_formula():
    """e_ij = q_i·(k_j + a_ij)/√D, z_i = Σ_j α_ij (v_j + a_ij), a_ij = A[clip(j − i, ±K) + K], written out."""
    from plmkit.layers.embeddings import sinusoidal_table
    from plmkit.layers.relative_attention import RelativeSelfAttention

    torch.manual_seed(0)
    attn = RelativeSelfAttention(16, 2, 0.0, False, max_distance=3).eval()
    x, mask = torch.randn(2, 9, 16), torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    q, k, v = attn.qkv(x).view(2, 9, 3, 2, 8).unbind(2)  # (B, T, N, D)
    A = sinusoidal_table(7, 8)
    z = torch.zeros(2, 9, 2, 8)
    for b in range(2):
        for n in range(2):
            for i in range(9):
                a = torch.stack([A[max(-3, min(3, j - i)) + 3] for j in range(9)])  # (T, D)
                e = ((k[b, :, n] + a) @ q[b, i, n]) / 8 ** 0.5
                alpha = e.masked_fill(~mask[b], float("-inf")).softmax(0)
                z[b, i, n] = alpha @ (v[b, :, n] + a)
    expected = attn.out(z.reshape(2, 9, 16))
    with torch.no_grad():
        for impl in ("sdpa", "eager"):
            assert _close(attn(x, mask, impl)[0], expected) < 1e-5


def test_nezha_has_no_absolute_positions():
    from plmkit.layers.relative_attention import RelativeSelfAttention

    model = _build("nezha")
    assert not any("position" in n for n, _ in model.named_parameters())
    assert all(isinstance(b.attn, RelativeSelfAttention) for b in model.layers)


def _runs(starts):
    at = starts.nonzero()[:, 0].tolist()
    return list(zip(at, [*at[1:], len(starts)]))


def _smoke(name, corpus, tmp_path, steps=20, **data):
    out = tmp_path / name
    summary = pretrain(name, [str(corpus)], out, size="tiny",
                       model_overrides={"num_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                                        "max_positions": 64},
                       train_overrides={"steps": steps, "batch_size": 16, "lr": 5e-3, "warmup_steps": 2,
                                        "log_every": 1},
                       data_overrides={"seq_len": 32, "vocab_size": 400, **data})
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return summary, log, out


@pytest.mark.parametrize("name", ["roberta", "albert", "distilbert", "electra", "bert-wwm", "ernie", "nezha", "unilm"])
def test_pretraining_loss_falls(name, corpus, tmp_path):
    data = {}
    if name == "ernie":  # the lexicon path; deriving phrases is tested above
        (tmp_path / "lexicon.txt").write_text("children of Israel\nthe LORD\nthe land of Egypt\n")
        data["lexicon"] = str(tmp_path / "lexicon.txt")
    _, log, out = _smoke(name, corpus, tmp_path, **data)
    first = sum(r["loss"] for r in log[:3]) / 3
    last = sum(r["loss"] for r in log[-5:]) / 5
    print(f"{name}: loss {first:.3f} (first 3) → {last:.3f} (last 5)")
    assert last < first - 0.5, (first, last)
    assert type(plmkit.load(out)).family_name == name


def test_lexicon_for_an_objective_without_one_is_an_error(corpus, tmp_path):
    with pytest.raises(plmkit.PlmkitError, match="takes no lexicon"):
        _smoke("roberta", corpus, tmp_path, steps=1, lexicon=str(corpus))
