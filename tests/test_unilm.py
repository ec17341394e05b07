"""UniLM: its four self-attention masks (by hand, and against transformers' BERT given the same masks), the
pre-training mix, and generation with the sequence-to-sequence mask at an appended [MASK]."""

import collections

import numpy as np
import pytest
import torch

import plmkit
from plmkit.interop.hf import save_model
from plmkit.models.unilm import Unilm, UnilmConfig
from plmkit.objectives.unilm import MODES, SEGMENTS, UnifiedLM, attention_mask, batch_modes

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=128, max_positions=64)
MASK = 4


def _model():
    torch.manual_seed(0)
    return Unilm(UnilmConfig(**TINY, mask_token_id=MASK)).eval()


def test_the_four_masks_by_hand():
    real = torch.tensor([[True] * 5])
    second = torch.tensor([[False, False, False, True, True]])  # source 3 tokens, target 2
    expect = {
        "bidirectional": [[1] * 5] * 5,
        "left-to-right": [[1 if j <= i else 0 for j in range(5)] for i in range(5)],
        "right-to-left": [[1 if j >= i else 0 for j in range(5)] for i in range(5)],
        "seq2seq": [[1, 1, 1, 0, 0]] * 3 + [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]],
    }
    for mode in MODES:
        assert attention_mask(mode, second, real)[0].int().tolist() == expect[mode], mode
    padded = attention_mask("left-to-right", torch.zeros(1, 3, dtype=torch.bool), torch.tensor([[False, True, True]]))
    assert padded[0].int().tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]  # no real token reads the padding,
    # which reads itself (never an empty row)


def test_every_mask_gives_transformers_bert_logits(tmp_path):
    """UniLM's checkpoint is BERT's: BertForPreTraining given the same (B, 1, T, T) masks agrees."""
    transformers = pytest.importorskip("transformers")
    model = _model()
    save_model(model, tmp_path)
    hf = transformers.BertForPreTraining.from_pretrained(tmp_path).eval()
    assert hf.config.type_vocab_size == 6
    x = torch.randint(5, 99, (2, 10), generator=torch.Generator().manual_seed(0))
    real = torch.ones(2, 10, dtype=torch.bool)
    real[1, 8:] = False
    second = torch.zeros(2, 10, dtype=torch.bool)
    second[:, 6:] = True
    second &= real
    for mode in MODES:
        mask = attention_mask(mode, second, real)
        types = torch.where(second, SEGMENTS[mode][1], SEGMENTS[mode][0])
        with torch.no_grad():
            ours = model(x, mask, types).logits
            theirs = hf(x, attention_mask=mask[:, None], token_type_ids=types).prediction_logits
        assert (ours - theirs)[real].abs().max() < 1e-5, mode


def test_generation_predicts_at_an_appended_mask_under_the_seq2seq_mask():
    """Cached decoding equals the plain forward of source + target so far + [MASK] with the
    sequence-to-sequence mask, read at the [MASK]."""
    model = _model()
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(5, 99, (1, 6), generator=g), torch.randint(5, 99, (1, 5), generator=g)
    with torch.no_grad():
        cache = model.new_cache(1, 11)
        steps = [model.decode_step(src, None, cache)]
        steps += [model.decode_step(tgt[:, t:t + 1], None, cache) for t in range(5)]
        for t, logits in enumerate(steps):
            x = torch.cat([src, tgt[:, :t], torch.tensor([[MASK]])], 1)
            second = torch.arange(x.shape[1])[None] >= 6
            full = model(x, attention_mask("seq2seq", second, torch.ones_like(second)), torch.where(second, 5, 4))
            assert (full.logits[0, -1] - logits[0]).abs().max() < 1e-5, t


def test_generate_frames_the_source_and_stops_at_sep(corpus):
    from plmkit.tokenizers import train_tokenizer

    tok = train_tokenizer("wordpiece", [corpus], 300, show_progress=False)
    torch.manual_seed(0)
    model = Unilm(UnilmConfig(**{**TINY, "vocab_size": tok.vocab_size}, mask_token_id=tok.mask_id)).eval()
    with torch.no_grad():  # make [SEP] the likeliest token everywhere, so the target ends at once
        model.mlm_bias[tok.sep_id] = 100.0
    res = plmkit.generate(model, tok, ["and god said", "let there be light"], max_new_tokens=5, temperature=0)
    assert [r["finish"] for r in res] == ["eos", "eos"] and res[0]["tokens"] == []
    assert res[0]["prompt_tokens"] == len(tok.encode("and god said"))
    with pytest.raises(plmkit.PlmkitError, match="MASK"):
        plmkit.generate(Unilm(UnilmConfig(**{**TINY, "vocab_size": tok.vocab_size}, mask_token_id=7)), tok, "x")


def test_the_pretraining_mix_of_the_paper(corpus, tmp_path):
    """Modes in their shares (1/3, 1/6, 1/6, 1/3); each row's segments, mask and NSP label follow its mode."""
    from plmkit.data.shards import TokenCorpus, build_shards
    from plmkit.tokenizers import train_tokenizer

    tok = train_tokenizer("wordpiece", [corpus], 300, show_progress=False)
    build_shards([corpus], tok, tmp_path / "shards")
    objective = UnifiedLM(tok, 48, seed=0)
    data = objective.dataset(TokenCorpus(tmp_path / "shards"))
    g = torch.Generator().manual_seed(0)
    counts = collections.Counter(m for _ in range(200) for m in batch_modes(12, g))
    shares = {m: counts[m] / 2400 for m in MODES}
    assert shares == pytest.approx({"bidirectional": 1 / 3, "left-to-right": 1 / 6, "right-to-left": 1 / 6,
                                    "seq2seq": 1 / 3}, abs=0.03)
    assert all("bidirectional" in batch_modes(n, g) for n in (3, 4, 7) for _ in range(20))
    batch = objective.collate([data[i] for i in range(24)], torch.Generator().manual_seed(1))
    first_segment = {SEGMENTS[m][0]: m for m in MODES}
    for r in range(24):
        ids, types, real = batch["input_ids"][r], batch["token_type_ids"][r], batch["real"][r]
        mode = first_segment[int(types[0])]
        assert set(types[real].tolist()) <= set(SEGMENTS[mode])
        second = (types == SEGMENTS[mode][1]) & real & (SEGMENTS[mode][0] != SEGMENTS[mode][1])
        assert torch.equal(batch["attention_mask"][r], attention_mask(mode, second[None], real[None])[0])
        assert bool(batch["bidirectional"][r]) == (mode == "bidirectional")
        seps = int(((ids == tok.sep_id) & real & ~batch["masked"][r]).sum())  # a pair has two, one segment one
        assert seps == (2 if mode in ("bidirectional", "seq2seq") else 1), mode
        if mode != "bidirectional":
            assert batch["next_sentence_label"][r] == 0  # only the bidirectional LM ever reads a random B
    share = float(batch["masked"].sum() / (batch["real"].sum() - 2.5 * 24))  # specials are never masked
    assert 0.10 < share < 0.20


def test_unilm_pretrains_and_generates_through_the_command_line(corpus, tmp_path, capsys):
    from plmkit.cli import main

    out = tmp_path / "run"
    assert main(["-q", "pretrain", "--model", "unilm", "--size", "tiny", "--corpus", str(corpus), "--out", str(out),
                 "--steps", "3", "--batch-size", "8", "--seq-len", "32", "--vocab-size", "400"]) == 0
    assert np.isfinite([float(line.split('"loss": ')[1].split(",")[0])
                        for line in (out / "train_log.jsonl").read_text().splitlines()]).all()
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "--prompt", "and god said", "--num-beams", "2",
                 "--max-new-tokens", "4", "--json"]) == 0
    assert "completion" in capsys.readouterr().out
