"""ZEN: the n-gram lexicon (extraction, matching, M), the n-gram path of the encoder against its equations,
and pre-training and fine-tuning end to end on Chinese text."""

import gzip
import json
from importlib import resources

import pytest
import torch

import plmkit
from plmkit.heads import load_finetuned
from plmkit.data.ngrams import NgramMatcher, extract_lexicon, lexicon_ids
from plmkit.models.bert import Bert, BertConfig
from plmkit.models.zen import Zen, ZenConfig
from plmkit.tokenizers import train_tokenizer

TINY = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=64)


@pytest.fixture(scope="module")
def cuv(tmp_path_factory):
    """The first 2,000 verses of the shipped Chinese Union Version Bible."""
    path = tmp_path_factory.mktemp("zh") / "cuv.txt"
    with resources.files("plmkit").joinpath("resources/cuv.txt.gz").open("rb") as f:
        lines = [ln for ln in gzip.open(f, "rt", encoding="utf-8").read().splitlines() if ln.strip()][:2000]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tok(cuv):
    return train_tokenizer("char", [str(cuv)], 3000, show_progress=False)


def test_extraction_counts_within_runs_and_keeps_the_frequent_level_by_level(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("北京大学，北京大学。\n北京大学在北京。\n大学生\n", encoding="utf-8")
    got = dict(extract_lexicon([str(text)], max_n=4, min_count=2))
    # Runs: 北京大学 ×2 (punctuation ends a run, so 学北 is never counted), 北京大学在北京, 大学生.
    assert got == {"北京": 4, "京大": 3, "大学": 4, "北京大": 3, "京大学": 3, "北京大学": 3}
    ranked = extract_lexicon([str(text)], max_n=4, min_count=2, max_size=2)
    assert ranked == [("北京", 4), ("大学", 4)]  # most frequent first, ties in string order


def test_matcher_finds_every_lexicon_ngram_and_builds_m(tok):
    lex = lexicon_ids(["以色列", "色列", "耶和华", "神说"], tok)
    assert lex.shape == (4, 3) and (lex[1, 2] == -1)
    ids = torch.tensor([[tok.cls_id, *tok.encode("耶和华对以色列人说"), tok.sep_id]])  # T = 11
    found = NgramMatcher(lex)(ids, max_ngrams=8)
    # Reading order: 耶和华 at 1 (id 3), 以色列 at 5 (id 1), 色列 at 6 (id 2).
    assert found.ids.tolist() == [[3, 1, 2]] and found.starts.tolist() == [[1, 5, 6]]
    assert found.lengths.tolist() == [[3, 3, 2]]
    m = found.matrix(11)[0]  # (T, N)
    expected = torch.zeros(11, 3)
    expected[1:4, 0] = expected[5:8, 1] = expected[6:8, 2] = 1
    assert torch.equal(m, expected)
    first = NgramMatcher(lex)(ids, max_ngrams=2)  # at most two: the first two in reading order
    assert first.ids.tolist() == [[3, 1]]
    masked = ids.clone()
    masked[0, 6] = tok.mask_id  # 色 masked: neither 以色列 nor 色列 is found any more
    assert NgramMatcher(lex)(masked, 8).ids.tolist() == [[3]]


def _pair(**extra):
    """A tiny ZEN and a BERT holding the same weights wherever they share a name."""
    torch.manual_seed(0)
    zen = Zen(ZenConfig(vocab_size=40, ngram_vocab_size=4, max_ngram_length=3, dropout=0.0,
                        attention_dropout=0.0, **TINY, **extra)).eval()
    bert = Bert(BertConfig(vocab_size=40, dropout=0.0, attention_dropout=0.0, **TINY)).eval()
    missing, unexpected = bert.load_state_dict(zen.state_dict(), strict=False)
    assert not missing and all(k.startswith(("ngram_", "lexicon")) for k in unexpected)
    zen.set_lexicon(torch.tensor([[5, 6, -1], [6, 7, 8], [20, 21, -1]]))
    return zen, bert


def test_zeroed_ngram_outputs_make_zen_bert():
    zen, bert = _pair()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 2], [1, 20, 21, 5, 6, 2, 0]])
    mask = (ids > 0).long()
    assert zen.match(ids).ids.count_nonzero() == 4  # the n-grams are there …
    with torch.no_grad():
        assert not torch.allclose(zen(ids, mask).logits, bert(ids, mask).logits, atol=1e-4)
        for layer in zen.ngram_layers:  # … but every n-gram layer outputs zeros
            layer.ffn_norm.weight.zero_()
            layer.ffn_norm.bias.zero_()
        torch.testing.assert_close(zen(ids, mask).logits, bert(ids, mask).logits, atol=1e-5, rtol=1e-5)


def test_one_ngram_moves_only_the_chars_it_covers_and_by_the_equation():
    zen, _ = _pair()
    ids = torch.tensor([[1, 9, 5, 6, 9, 10, 2]])  # 5 6 (n-gram 1) at positions 2-3
    found = zen.match(ids)
    assert found.ids.tolist() == [[1]] and found.starts.tolist() == [[2]]
    with torch.no_grad():
        out = zen(ids, output_hidden_states=True)
        none = zen(ids, output_hidden_states=True, ngram_ids=torch.zeros(1, 1, dtype=torch.long),
                   ngram_matrix=torch.zeros(1, 7, 1))
        moved = (out.hidden_states[1] - none.hidden_states[1]).abs().amax(-1)[0]  # (T,)
        assert (moved[2:4] > 1e-3).all() and moved[[0, 1, 4, 5, 6]].eq(0).all()
        # Layer 1 by hand: the char block, plus the n-gram block's output over the n-gram embedding.
        x = zen.embed(ids)
        char, _ = zen.layers[0](x)
        g, _ = zen.ngram_layers[0](zen.ngram_embeddings(torch.tensor([[1]])))  # (1, 1, H)
        expected = char.clone()
        expected[0, 2:4] += g[0, 0]
        torch.testing.assert_close(out.hidden_states[1], expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(none.hidden_states[1], char, atol=1e-6, rtol=1e-5)


def test_ngrams_feed_only_the_first_k_layers():
    zen, _ = _pair(ngram_layers=1)
    assert len(zen.ngram_layers) == 1
    ids = torch.tensor([[1, 9, 5, 6, 9, 10, 2]])
    with torch.no_grad():
        out = zen(ids, output_hidden_states=True)
        x = out.hidden_states[1]
        torch.testing.assert_close(out.hidden_states[2], zen.layers[1](x)[0], atol=1e-6, rtol=1e-5)
    with pytest.raises(plmkit.PlmkitError, match="ngram_layers"):
        ZenConfig(ngram_layers=3, **TINY)


def test_a_row_without_ngrams_and_padded_ngram_slots_change_nothing():
    zen, _ = _pair()
    a, b = [1, 5, 6, 9, 20, 21, 2], [1, 9, 9, 9, 2]
    with torch.no_grad():
        ids = torch.tensor([a, b + [0, 0]])
        batch = zen(ids, (ids > 0).long()).logits
        alone_a = zen(torch.tensor([a])).logits
        alone_b = zen(torch.tensor([b])).logits
    assert not batch.isnan().any()
    torch.testing.assert_close(batch[0], alone_a[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[1, :5], alone_b[0], atol=1e-5, rtol=1e-5)


def test_zen_pretrains_saves_its_lexicon_and_finetunes_tag_and_classify(cuv, tmp_path):
    from plmkit.workflows.finetune import finetune
    from plmkit.workflows.pretrain import pretrain

    run = tmp_path / "run"
    summary = pretrain("zen", [str(cuv)], run, size="tiny",
                       model_overrides={**TINY, "max_positions": 64},
                       train_overrides={"steps": 40, "batch_size": 16, "lr": 5e-3, "warmup_steps": 2,
                                        "log_every": 1},
                       data_overrides={"seq_len": 32, "vocab_size": 3000})
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-5:]) / 5
    assert last < first - 0.5, (first, last)
    model, tok = plmkit.load(run), plmkit.load_tokenizer(run)
    assert type(model) is Zen and model.config.ngram_vocab_size > 100
    ids = torch.tensor([[tok.cls_id, *tok.encode("耶和华对以色列人说"), tok.sep_id]])
    found = model.match(ids)
    words = {tok.decode(ids[0, s:s + n].tolist()).replace(" ", "")
             for s, n, i in zip(found.starts[0].tolist(), found.lengths[0].tolist(), found.ids[0].tolist()) if i}
    assert {"耶和华", "以色列"} <= words  # the saved model matches its own input with the corpus's lexicon

    # Tagging: 耶和华 as a name; classification: does the verse name 神?
    verses = [ln for ln in cuv.read_text(encoding="utf-8").splitlines()[:300] if 8 <= len(ln) <= 40]
    tag = tmp_path / "tag.txt"
    with tag.open("w", encoding="utf-8") as f:
        for v in verses[:120]:
            tags = ["O"] * len(v)
            for s in (i for i in range(len(v)) if v.startswith("耶和华", i)):
                tags[s:s + 3] = ["B-PER", "I-PER", "I-PER"]
            f.write("".join(f"{c}\t{t}\n" for c, t in zip(v, tags) if not c.isspace()) + "\n")
    cls = tmp_path / "cls.jsonl"
    cls.write_text("".join(json.dumps({"text": v, "label": str("神" in v)}, ensure_ascii=False) + "\n"
                           for v in verses[:120]), encoding="utf-8")
    for task, data in (("tag", tag), ("classify", cls)):
        result = finetune(run, task, str(data), str(data), tmp_path / f"ft-{task}", epochs=1, batch_size=16,
                          max_length=48, lr=1e-3, progress=False)
        metric = result["dev"]["f1"] if task == "tag" else result["dev"]["accuracy"]
        assert 0.0 <= metric <= 1.0
        tuned = load_finetuned(tmp_path / f"ft-{task}")
        assert type(tuned.body) is Zen and torch.equal(tuned.body.lexicon, model.lexicon)


def test_zen_needs_characters_and_reads_a_lexicon_file(cuv, tmp_path):
    from plmkit.objectives.ngrams import NgramMaskedLM

    wordpiece = train_tokenizer("wordpiece", [str(cuv)], 2000, show_progress=False)
    with pytest.raises(plmkit.PlmkitError, match="char tokenizer"):
        NgramMaskedLM(wordpiece, 32, corpus=[str(cuv)])
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("耶和华\t99\n以色列\n\n神说\n", encoding="utf-8")
    char = train_tokenizer("char", [str(cuv)], 3000, show_progress=False)
    objective = NgramMaskedLM(char, 32, lexicon=str(lexicon))
    assert objective.model_fields() == {"ngram_vocab_size": 4, "max_ngram_length": 3}


def test_with_ngrams_eager_is_sdpa_and_rows_pick_the_full_states():
    zen, _ = _pair()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 2], [1, 20, 21, 5, 6, 2, 0]])
    mask = (ids > 0).long()
    with torch.no_grad():
        fast = zen(ids, mask)
        slow = zen(ids, mask, attn_impl="eager", output_attentions=True)
        torch.testing.assert_close(slow.logits, fast.logits, atol=1e-5, rtol=1e-5)
        assert len(slow.attentions) == 2 and slow.attentions[0].shape == (2, 4, 7, 7)
        rows = torch.tensor([0, 4])
        torch.testing.assert_close(zen.encode(ids, mask, rows=rows).last_hidden_state[:, 0],
                                   zen.encode(ids, mask).last_hidden_state[torch.arange(2), rows])


@pytest.mark.parametrize("name", ["ZEN", "ERNIE-THU"])
def test_the_encoders_with_inputs_of_their_own_refuse_a_cache_a_4d_mask_and_too_many_tokens(name):
    from plmkit.errors import PlmkitError
    from plmkit.models.ernie_thu import ErnieThu, ErnieThuConfig

    model = (Zen(ZenConfig(vocab_size=40, **TINY)) if name == "ZEN"
             else ErnieThu(ErnieThuConfig(vocab_size=40, **TINY)))
    ids = torch.ones(1, 8, dtype=torch.long)
    with pytest.raises(PlmkitError, match=f"{name} is an encoder"):
        model.encode(ids, cache=object())
    with pytest.raises(PlmkitError, match=f"{name} takes a \\(B, T\\) attention mask"):
        model.encode(ids, torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="longer than max_positions=64"):
        model.encode(torch.ones(1, 65, dtype=torch.long))
