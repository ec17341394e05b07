"""Cross-lingual members: the shipped parallel Bible, XLM against transformers both ways with language ids and
reset positions, the TLM batches, and pre-training on a bitext."""

import json

import pytest
import torch

import plmkit
from plmkit.data import TokenCorpus, build_shards
from plmkit.data.parallel import Bitext, bible
from plmkit.interop.hf import save_model
from plmkit.models.xlm import Xlm, XlmConfig
from plmkit.objectives.tlm import TranslationMaskedLM
from plmkit.tokenizers import load_tokenizer, train_tokenizer
from plmkit.workflows.pretrain import pretrain

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128, max_positions=64,
            dropout=0.0, attention_dropout=0.0)


@pytest.fixture(scope="module")
def bitext(tmp_path_factory):
    """The first 600 verse pairs of the shipped Bible as two line-aligned files, with a tokenizer and shards."""
    d = tmp_path_factory.mktemp("bitext")
    en, zh, _ = bible()
    (d / "en.txt").write_text("\n".join(en[:600]) + "\n")
    (d / "zh.txt").write_text("\n".join(zh[:600]) + "\n")
    train_tokenizer("bpe", [d / "en.txt", d / "zh.txt"], 600, out_dir=d / "tok")
    tok = load_tokenizer(d / "tok")
    build_shards([d / "en.txt", d / "zh.txt"], tok, d / "shards")
    return d, tok, TokenCorpus(d / "shards")


def test_shipped_bible_is_verse_aligned():
    en, zh, books = bible()
    assert len(en) == len(zh) == 31102 and books[-1] == 65
    assert en[0].startswith("In the beginning God") and zh[0] == "起初，神创造天地。"
    john_3_16 = [i for i, v in enumerate(en) if v.startswith("For God so loved the world")]
    assert zh[john_3_16[0]].startswith("「神爱世人")
    assert zh[-1].startswith("愿主耶稣的恩惠常与众圣徒同在")


def _langs_and_positions(B=2, T=10, n_langs=3):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 99, (B, T), generator=g)
    langs = torch.randint(0, n_langs, (B, T), generator=g)
    positions = torch.tensor([list(range(T // 2)) * 2] * B)  # a pair: positions restart at the second half
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return ids, langs, positions, mask


@pytest.mark.parametrize("n_langs", [3, 1])
def test_xlm_matches_transformers_both_ways(n_langs, tmp_path):
    torch.manual_seed(0)
    ours = Xlm(XlmConfig(**TINY, n_langs=n_langs)).eval()
    save_model(ours, tmp_path / "ours")
    theirs = transformers.XLMWithLMHeadModel.from_pretrained(tmp_path / "ours").eval()
    ids, langs, positions, mask = _langs_and_positions(n_langs=n_langs)
    langs = langs if n_langs > 1 else None
    real = mask.bool()
    with torch.no_grad():
        a = ours(ids, mask, langs, position_ids=positions).logits
        b = theirs(ids, attention_mask=mask, langs=langs, position_ids=positions).logits
        assert (a - b)[real].abs().max() < 1e-5
    torch.manual_seed(1)
    fresh = transformers.XLMWithLMHeadModel(theirs.config).eval()
    fresh.save_pretrained(tmp_path / "hf")
    back = plmkit.load(tmp_path / "hf")
    assert back.config == ours.config
    with torch.no_grad():
        a = back(ids, mask, langs, position_ids=positions).logits
        b = fresh(ids, attention_mask=mask, langs=langs, position_ids=positions).logits
        assert (a - b)[real].abs().max() < 1e-5


def test_xlm_language_embedding_changes_the_output_and_heads_give_no_segments():
    torch.manual_seed(0)
    model = Xlm(XlmConfig(**TINY)).eval()
    ids = torch.randint(3, 99, (1, 8))
    with torch.no_grad():
        assert not torch.allclose(model(ids, token_type_ids=torch.zeros_like(ids)).logits,
                                  model(ids, token_type_ids=torch.ones_like(ids)).logits)
    assert model.embeddings.token_types.num_embeddings == 2 and model.pooler is None and model.nsp is None
    assert XlmConfig(n_langs=5).type_vocab_size == 5 and XlmConfig(n_langs=1).type_vocab_size == 0
    assert Xlm.segment_embeddings is False


def test_bitext_pairs_lines_of_the_two_files(bitext):
    d, tok, corpus = bitext
    pairs = Bitext(corpus, 40)
    assert len(pairs) == 600
    en, zh = pairs[599]
    assert tok.decode(en.tolist()).startswith(bible()[0][599].split()[0])
    assert len(zh) <= 40 and tok.doc_sep_id not in zh.tolist()


def test_bitext_with_unequal_files_is_an_error(bitext, tmp_path):
    d, tok, _ = bitext
    (tmp_path / "short.txt").write_text("one line\n")
    build_shards([d / "en.txt", tmp_path / "short.txt"], tok, tmp_path / "shards")
    with pytest.raises(plmkit.PlmkitError, match="same number of lines"):
        Bitext(TokenCorpus(tmp_path / "shards"), 40)


def test_tlm_batch_restarts_positions_and_tags_languages(bitext):
    _, tok, corpus = bitext
    obj = TranslationMaskedLM(tok, 64)
    data = obj.dataset(corpus)
    batch = obj.collate([data[i] for i in range(64)], torch.Generator().manual_seed(0))
    assert 0.3 < batch["tlm"].float().mean() < 0.7
    for r in range(64):
        n = int(batch["attention_mask"][r].sum())
        types, pos = batch["token_type_ids"][r, :n], batch["position_ids"][r, :n]
        if batch["tlm"][r]:
            cut = int((pos[1:] == 0).nonzero()[0]) + 1  # where the translation starts, counted from 0 again
            assert types[:cut].eq(0).all() and types[cut:].eq(1).all()
            assert torch.equal(pos[cut:], torch.arange(n - cut))
        else:
            assert types.eq(types[0]).all() and torch.equal(pos, torch.arange(n))
    masked = batch["masked"]
    assert masked[batch["token_type_ids"] == 1].any() and masked[batch["token_type_ids"] == 0].any()
    assert not masked[batch["attention_mask"] == 0].any()


def test_xlm_pretrains_on_a_bitext_and_the_loss_falls(bitext, tmp_path):
    d, _, _ = bitext
    pretrain("xlm", [str(d / "en.txt"), str(d / "zh.txt")], tmp_path / "xlm", size="tiny",
             model_overrides={"num_layers": 1, "hidden_size": 32, "intermediate_size": 128, "max_positions": 64},
             train_overrides={"steps": 15, "batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "log_every": 1},
             data_overrides={"seq_len": 64, "vocab_size": 600})
    log = [json.loads(line) for line in (tmp_path / "xlm" / "train_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-5:]) / 5
    assert last < first - 0.5, (first, last)
    assert type(plmkit.load(tmp_path / "xlm")).family_name == "xlm"


LSTM_TINY = dict(vocab_size=99, embedding_size=16, hidden_size=16, num_layers=2, dropout=0.0)


@pytest.mark.parametrize("name", ["cove", "laser"])
def test_translation_encoder_ignores_right_padding(name):
    from plmkit import family

    torch.manual_seed(0)
    m = family.get(name)
    model = m.model_cls(m.config_cls(**LSTM_TINY)).eval()
    ids = torch.randint(3, 99, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 4)], 1).long()
    with torch.no_grad():
        alone, with_pad = model.encode(ids).last_hidden_state, model.encode(padded, mask).last_hidden_state
        assert (alone - with_pad[:, :7]).abs().max() < 1e-6
        assert torch.allclose(model.pool_features(alone, torch.ones(1, 7)), model.pool_features(with_pad, mask))
        dec = torch.randint(3, 99, (1, 5))
        logits = model(padded, mask, decoder_input_ids=dec, target_lang=torch.tensor([1])).logits
        assert logits.shape == (1, 5, 99)


def test_laser_decoder_reads_only_the_sentence_vector():
    from plmkit.models.laser import Laser, LaserConfig

    torch.manual_seed(0)
    model = Laser(LaserConfig(**LSTM_TINY)).eval()
    assert not hasattr(model, "attn_key")
    memory = torch.randn(2, 6, 32)
    shuffled = memory[:, torch.randperm(6)]  # same max over time, different states
    dec, lang = torch.randint(3, 99, (2, 4)), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(model.decode(memory, None, dec, lang), model.decode(shuffled, None, dec, lang))
        assert not torch.allclose(model.decode(memory, None, dec, lang), model.decode(memory, None, dec, 1 - lang))


def test_cove_features_mix_the_token_layer_and_both_bilstm_layers():
    from plmkit.heads.model import HeadConfig, TaskModel
    from plmkit.models.cove import Cove, CoveConfig

    torch.manual_seed(0)
    task = TaskModel(Cove(CoveConfig(**LSTM_TINY)), HeadConfig(labels=("a", "b"), features="scalar-mix"))
    batch = {"input_ids": torch.randint(3, 99, (3, 9)), "attention_mask": torch.ones(3, 9, dtype=torch.long),
             "labels": torch.tensor([0, 1, 0])}
    out = task(batch)
    out["loss"].backward()
    assert out["logits"].shape == (3, 2)
    assert all(p.grad is None for p in task.body.parameters())  # frozen: only the mix and the head learn


@pytest.mark.parametrize("name", ["cove", "laser"])
def test_translation_pretraining_loss_falls(name, bitext, tmp_path):
    d, _, _ = bitext
    pretrain(name, [str(d / "en.txt"), str(d / "zh.txt")], tmp_path / name, size="tiny",
             model_overrides={"num_layers": 1, "embedding_size": 32, "hidden_size": 32, "dropout": 0.0},
             train_overrides={"steps": 15, "batch_size": 8, "lr": 2e-2, "warmup_steps": 2, "log_every": 1},
             data_overrides={"seq_len": 32, "vocab_size": 600})
    log = [json.loads(line) for line in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-5:]) / 5
    assert last < first - 0.5, (first, last)
    assert type(plmkit.load(tmp_path / name)).family_name == name


def test_bitext_retrieval_and_zero_shot_by_hand():
    from plmkit.evaluation.crosslingual import bitext_retrieval, zero_shot

    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.1], [1.0, 1.2], [0.0, 3.0]])  # row 1's nearest is row 2 of a, row 2's is row 1
    assert bitext_retrieval(a, b) == {"a_to_b": pytest.approx(1 / 3), "b_to_a": pytest.approx(1 / 3)}
    # a large offset per language: b's second row leans toward a's offset, so every a query lands on it
    a, b = torch.tensor([[5.0, 0, 1], [5.0, 0, -1]]), torch.tensor([[0.0, 5, 1], [1.0, 5, -1]])
    assert bitext_retrieval(a, b)["a_to_b"] == 0.5
    assert bitext_retrieval(a, b, center=True) == {"a_to_b": 1.0, "b_to_a": 1.0}
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 4, generator=g) + 3, torch.randn(20, 4, generator=g) - 3])
    y = ["pos"] * 20 + ["neg"] * 20
    assert zero_shot(x, y, -x, ["neg"] * 20 + ["pos"] * 20) == 1.0


def test_prepare_holds_out_every_evaluated_verse(tmp_path):
    from plmkit.workflows.xling import prepare

    out = prepare(tmp_path, heldout=200, per_section=10)
    train_en = set((out / "train.en").read_text().splitlines())
    pairs = [json.loads(x) for x in (out / "retrieval.jsonl").read_text().splitlines()]
    task = [json.loads(x) for x in (out / "task.jsonl").read_text().splitlines()]
    assert len(pairs) == 200 and len(task) == 6 * 20
    lines = (out / "train.en").read_text().splitlines()
    assert len(lines) == 31102 - 320 == len((out / "train.zh").read_text().splitlines())
    # the Bible repeats some verses word for word ("And the LORD spake unto Moses, saying,"): those may recur
    assert sum(r["en"] in train_en for r in pairs + task) < 10
    assert {r["split"] for r in task} == {"train", "test"} and len({r["label"] for r in task}) == 6


def test_xling_evaluate_without_a_prepared_split_is_a_one_line_error(tmp_path, capsys):
    from plmkit.cli import main

    assert main(["xling", "evaluate", "--model", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "retrieval.jsonl" in capsys.readouterr().err
