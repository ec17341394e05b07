"""The encoder–decoders: the Transformer body and T5, BART, MASS as its diffs, against transformers both ways,
teacher-forced and step by step through generation; the cache; the denoising objectives; pre-training."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import plmkit
from plmkit import family
from plmkit.interop.hf import save_model
from plmkit.layers.lm_loss import lm_cross_entropy
from plmkit.objectives.denoising import MaskedSpan, SpanCorruption, TextInfilling, random_spans
from plmkit.workflows.pretrain import pretrain

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_positions=64)
# case → (member, config beyond TINY, transformers class)
HF = {"t5": ("t5", {}, "T5ForConditionalGeneration"),
      "t5-v1.1": ("t5", {"gated_ffn": True, "activation": "gelu_new", "tie_embeddings": False},
                  "T5ForConditionalGeneration"),
      "bart": ("bart", {"num_decoder_layers": 3}, "BartForConditionalGeneration")}


def _build(name: str, **extra):
    torch.manual_seed(0)
    m = family.get(name)
    return m.model_cls(m.config_cls(**{**TINY, **extra})).eval()


def _batch():
    x = torch.randint(3, 99, (3, 17), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 17, dtype=torch.long)
    mask[1, 11:] = 0
    y = torch.randint(3, 99, (3, 9), generator=torch.Generator().manual_seed(1))
    return x, mask, y


@pytest.fixture(scope="module", params=sorted(HF))
def pair(request, tmp_path_factory):
    """(case, plmkit model, the transformers model loaded from its saved directory, that directory)."""
    name, extra, cls = HF[request.param]
    model = _build(name, **extra)
    d = tmp_path_factory.mktemp(request.param)
    save_model(model, d / "ours")
    return request.param, model, getattr(transformers, cls).from_pretrained(d / "ours").eval(), d


def test_saved_member_gives_transformers_logits_and_back(pair):
    case, model, hf, tmp_path = pair
    name, extra, cls = HF[case]
    x, mask, y = _batch()
    with torch.no_grad():
        ours = model(x, mask, decoder_input_ids=y).logits
        assert (ours - hf(input_ids=x, attention_mask=mask, decoder_input_ids=y).logits).abs().max() < 1e-4
        assert (model(x, mask, decoder_input_ids=y, attn_impl="eager").logits - ours).abs().max() < 1e-4
    # A checkpoint transformers wrote (other weights) loads into plmkit with the same logits.
    torch.manual_seed(1)
    hf_cls = getattr(transformers, cls)
    other = hf_cls(hf_cls.config_class.from_pretrained(tmp_path / "ours")).eval()
    other.save_pretrained(tmp_path / "hf")
    loaded = plmkit.load(tmp_path / "hf")
    assert type(loaded) is type(model) and loaded.config == model.config
    with torch.no_grad():
        theirs = other(input_ids=x, attention_mask=mask, decoder_input_ids=y).logits
        assert (loaded(x, mask, decoder_input_ids=y).logits - theirs).abs().max() < 1e-4


def test_decoding_steps_give_transformers_greedy_scores(pair):
    """transformers' greedy generate on a batch of sources of different lengths: plmkit's decode_step, fed
    the same tokens (its sources left-padded, the engine's way), gives the scores transformers chose from."""
    _, model, hf, _ = pair
    x, mask, _ = _batch()
    with torch.no_grad():
        out = hf.generate(input_ids=x, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                          num_beams=1, output_scores=True, return_dict_in_generate=True, forced_eos_token_id=None,
                          forced_bos_token_id=None, no_repeat_ngram_size=0)
        lengths = mask.sum(1)
        left = torch.zeros_like(x)
        left_mask = torch.zeros_like(mask)
        for r, n in enumerate(lengths.tolist()):
            left[r, 17 - n:], left_mask[r, 17 - n:] = x[r, :n], 1
        cache = model.new_cache(3, 17 + 8)
        scores = [model.decode_step(left, left_mask, cache)]
        for t in range(1, 8):
            scores.append(model.decode_step(out.sequences[:, t:t + 1], None, cache))
    for ours, theirs in zip(scores, out.scores):
        allowed = theirs.isfinite()  # min_new_tokens took the end-of-text token out
        assert (ours - theirs)[allowed].abs().max() < 1e-4


def test_the_engine_chooses_the_targets_transformers_does(pair):
    """Greedy and beam search through plmkit's engine on sources of different lengths, with the rules that
    read the decoder's history (repetition penalty, n-gram blocking: over the start token and the target,
    not the source) and an end-of-text id the model does produce, so beams finish at different steps."""
    from plmkit.generation import generate_ids

    _, model, hf, _ = pair
    x, mask, _ = _batch()
    sources = [row[:n].tolist() for row, n in zip(x, mask.sum(1).tolist())]
    greedy = [rows[0] for rows in generate_ids(model, sources, max_new_tokens=10, temperature=0)]
    eos = max(greedy[0], key=lambda t: (sum(t not in g for g in greedy), greedy[0].index(t)))  # ends rows late
    finishes = set()
    for settings in (dict(), dict(num_beams=3, no_repeat_ngram_size=2, repetition_penalty=1.5),
                     dict(num_beams=4, length_penalty=0.5, num_return_sequences=2)):
        ours = generate_ids(model, sources, eos=eos, max_new_tokens=10, temperature=0, **settings)
        with torch.no_grad():
            out = hf.generate(input_ids=x, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=eos,
                              forced_eos_token_id=None, forced_bos_token_id=None, **settings)[:, 1:].tolist()
        theirs = [row[:row.index(eos)] if eos in row else row for row in out]
        assert [t for rows in ours for t in rows] == theirs, settings
        finishes |= {len(t) < 10 for t in theirs}
    assert True in finishes


@pytest.mark.parametrize("name", ["transformer", "t5", "bart", "mass"])
def test_cached_steps_equal_the_whole_target_and_beams_share_the_source(name):
    model = _build(name)
    x, mask, y = _batch()
    n = mask.sum(1)
    left, left_mask = torch.zeros_like(x), torch.zeros_like(mask)
    for r, k in enumerate(n.tolist()):
        left[r, 17 - k:], left_mask[r, 17 - k:] = x[r, :k], 1
    start = torch.full((3, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        full = torch.stack([model(x[r:r + 1, :k], decoder_input_ids=torch.cat([start, y], 1)[r:r + 1]).logits[0]
                            for r, k in enumerate(n.tolist())])  # (3, 10, V), each source alone
        cache = model.new_cache(3, 17 + 10)
        first = model.decode_step(left, left_mask, cache)
        beams = torch.arange(3).repeat_interleave(2)  # two beams per source, as beam search expands
        cache.reorder(beams)
        second = model.decode_step(y[beams, :1], None, cache)
        cache.reorder(torch.tensor([1, 0, 3, 2, 5, 4]))  # beams swap within their source
        third = model.decode_step(y[beams, 1:2], None, cache)
        assert cache.memory[0][0].shape[0] == 3  # the source's keys and values were not copied per beam
        cache.reorder(torch.tensor([0, 4]))  # rows leave: only the sources kept remain
        fourth = model.decode_step(y[[0, 2], 2:3], None, cache)
        assert cache.memory[0][0].shape[0] == 2
    assert (first - full[:, 0]).abs().max() < 1e-4
    assert (second - full[beams, 1]).abs().max() < 1e-4
    assert (third - full[beams, 2]).abs().max() < 1e-4
    assert (fourth - full[[0, 2], 3]).abs().max() < 1e-4


def test_label_smoothing_equals_torch_in_float64():
    torch.manual_seed(0)
    h = torch.randn(37, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(50, dtype=torch.float64, requires_grad=True)
    y = torch.randint(50, (37,))
    y[3] = -100
    ours = lm_cross_entropy(h, w, y, b, label_smoothing=0.1)
    theirs = F.cross_entropy(h @ w.T + b, y, label_smoothing=0.1)
    assert abs(ours.item() - theirs.item()) < 1e-5
    for a, c in zip(torch.autograd.grad(ours, (h, w, b)), torch.autograd.grad(theirs, (h, w, b))):
        assert (a - c).abs().max() < 1e-5


def test_members_are_diffs_of_the_transformer():
    root = family.get("transformer")
    assert root.kind == "encoder-decoder" and root.parent is None
    for name, objective in (("t5", "span-corruption"), ("bart", "text-infilling"), ("mass", "masked-span")):
        m = family.get(name)
        assert m.parent == "transformer" and m.kind == "encoder-decoder" and m.objective == objective
        assert {"bert", "gpt"} <= set(m.influences)
    t5 = _build("t5")
    assert t5.config.position == "none" and isinstance(t5.layers[0].attn_norm, torch.nn.RMSNorm)
    assert t5.layers[0].attn.qkv.bias is None and t5.layers[0].attn.scale == 1.0
    assert not hasattr(t5.decoder.layers[0], "position_bias")  # one table per stack, shared by its layers
    bart = _build("bart")
    assert bart.embeddings.positions.num_embeddings == 64 + 2 and bart.config.activation == "gelu"
    assert bart.decoder.embeddings.tokens is None  # the decoder reads the encoder's token table


class _Tok:
    pad_id, unk_id, cls_id, sep_id, mask_id, bos_id, eos_id = 0, 1, 2, 3, 4, 2, 3
    vocab_size = 300

    def token_to_id(self, t):
        return 200 + int(t[len("<extra_id_"):-1])


def test_span_corruption_is_t5s_sentinel_format():
    rng = np.random.default_rng(0)
    noise = random_spans(100, 0.15, 3.0, rng)
    assert noise.sum() == 15 and not noise[0]  # kept tokens come first
    starts = noise & ~np.concatenate([[False], noise[:-1]])
    assert starts.sum() == 5  # round(15 / 3) spans
    obj = SpanCorruption(_Tok(), 101)
    w = np.arange(10, 110)
    batch = obj.collate([w, w[::-1].copy()], torch.Generator().manual_seed(0))
    for r in range(2):
        src = batch["input_ids"][r][batch["attention_mask"][r].bool()].tolist()
        tgt = [t for t in batch["labels"][r].tolist() if t != -100]
        assert src[-1] == tgt[-1] == 3  # </s>
        # Putting each span back at its sentinel rebuilds the window.
        spans, cur = {}, None
        for t in tgt[:-1]:
            if t >= 200:
                cur = t
                spans[cur] = []
            else:
                spans[cur].append(t)
        rebuilt = [u for t in src[:-1] for u in (spans[t] if t >= 200 else [t])]
        assert rebuilt == (w if r == 0 else w[::-1]).tolist()
        assert sorted(spans) == list(range(200, 200 + len(spans)))  # sentinels in order


def test_text_infilling_masks_thirty_percent_in_spans_and_permutes_sentences():
    obj = TextInfilling(_Tok(), 300)
    rng = np.random.default_rng(0)
    tokens = np.arange(10, 210)
    out = obj.infill(tokens, rng)
    kept = [t for t in out if t != 4]
    assert len(kept) == len(set(kept)) and kept == sorted(kept)  # the rest in order, each once
    assert 0.2 <= 1 - len(kept) / 200 <= 0.3  # overlapping spans may mask a little less than 30 %
    sentences = [np.arange(10 * i + 10, 10 * i + 20) for i in range(5)]
    batch = obj.collate([sentences], torch.Generator().manual_seed(1))
    target = [t for t in batch["labels"][0].tolist() if t != -100]
    assert target == [2, *range(10, 60), 3]  # the original order: the decoder undoes the permutation


def test_masked_span_decodes_half_the_window_at_its_positions():
    obj = MaskedSpan(_Tok(), 21)
    w = np.arange(10, 30)
    batch = obj.collate([w, w.copy()], torch.Generator().manual_seed(0))
    pos, labels = batch["decoder_position_ids"], batch["labels"]
    assert labels.shape == (2, 10) and torch.equal(labels, torch.from_numpy(w)[pos])
    assert torch.equal(pos[:, 1:] - pos[:, :-1], torch.ones(2, 9, dtype=torch.long))  # contiguous
    assert torch.equal(batch["decoder_input_ids"][:, 1:], labels[:, :-1]) and (batch["decoder_input_ids"][:, 0] == 4).all()
    outside = torch.ones(2, 20, dtype=torch.bool).scatter(1, pos, False)
    assert torch.equal(batch["input_ids"][:, :20][outside], torch.from_numpy(np.stack([w, w]))[outside])


@pytest.mark.parametrize("name", ["t5", "bart", "mass"])
def test_pretraining_loss_falls(name, kjv_head, tmp_path):
    out = tmp_path / name
    pretrain(name, [str(kjv_head(600))], out, size="tiny",
             model_overrides={"num_layers": 1, "hidden_size": 64, "intermediate_size": 128, "max_positions": 64},
             train_overrides={"steps": 15, "batch_size": 16, "lr": 5e-3, "warmup_steps": 2, "log_every": 1},
             data_overrides={"seq_len": 32, "vocab_size": 300, "workers": 1})
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-3:]) / 3
    assert last < first - 0.4, (first, last)
    model, tok = plmkit.load(out), plmkit.load_tokenizer(out)
    assert type(model).family_name == name
    if name == "t5":
        assert tok.token_to_id("<extra_id_99>") is not None and model.config.decoder_start_token_id == tok.pad_id


@pytest.fixture(scope="module")
def tiny_t5(kjv_head, tmp_path_factory):
    """A one-layer t5 after two pre-training steps: a body the text-to-text tests fine-tune (read only)."""
    base = tmp_path_factory.mktemp("t5") / "t5"
    pretrain("t5", [str(kjv_head(300))], base, size="tiny",
             model_overrides={"num_layers": 1, "hidden_size": 32, "intermediate_size": 64, "max_positions": 64},
             train_overrides={"steps": 2, "batch_size": 8, "log_every": 1},
             data_overrides={"seq_len": 32, "vocab_size": 300, "workers": 1})
    return base


def test_text_to_text_evaluation_and_the_generate_command_decode_through_the_engine(tiny_t5, kjv_head, tmp_path,
                                                                                    capsys):
    """finetune --task seq2seq scores what the engine's beam search writes (predict gives the same text as
    plmkit.generate with the evaluation's settings), with ROUGE-L / BLEU / exact match of those texts; and
    `plmkit generate --source` prints an encoder–decoder's target alone."""
    from plmkit.cli import main
    from plmkit.evaluation.metrics import TextGeneration

    verses = kjv_head(300).read_text().split()
    pairs = [{"source": " ".join(verses[i:i + 6]), "target": " ".join(verses[i:i + 2])} for i in range(0, 320, 8)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    out = tmp_path / "ft"
    assert main(["-q", "finetune", "--model", str(tiny_t5), "--task", "seq2seq", "--train", str(data), "--dev",
                 str(data), "--test", str(data), "--out", str(out), "--epochs", "1", "--lr", "3e-3", "--batch-size", "8",
                 "--max-length", "24", "--max-target-length", "8", "--num-beams", "3"]) == 0
    test = json.loads((out / "eval.json").read_text())["test"]
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--data", str(data)]) == 0
    predicted = [json.loads(line)["prediction"] for line in capsys.readouterr().out.splitlines()]
    model, tok = plmkit.load(out), plmkit.load_tokenizer(out)
    engine = plmkit.generate(model, tok, [p["source"] for p in pairs], num_beams=3, max_new_tokens=8)
    assert predicted == [r["completion"].strip() for r in engine]
    metric = TextGeneration()
    metric.update(predicted, [p["target"] for p in pairs])
    assert metric.compute() == pytest.approx(test)
    assert main(["generate", "--model", str(out), "--source", pairs[0]["source"], "--num-beams", "3",
                 "--max-new-tokens", "8", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["prompt"] == pairs[0]["source"] and printed["text"] == printed["completion"] == engine[0]["completion"]


def test_text_to_text_classification_is_exact_match_of_generated_label_words(tiny_t5, kjv_head, tmp_path, capsys):
    """finetune --task classify/pair --text-to-text reads T5's "task sentence: …" sources, learns the label as
    words, and scores by exact match of what the beam search writes: accuracy = exact match = the share of
    predictions equal to the label, `invalid` = the share that is no label at all."""
    from plmkit.cli import main
    from plmkit.data.tasks import Example
    from plmkit.heads.text2text import source_text

    assert source_text("classify", Example(text="a b", label="x")) == "classify sentence: a b"
    assert source_text("pair", Example(text="a", text_b="b", label="x")) == "pair sentence1: a sentence2: b"
    verses = kjv_head(300).read_text().splitlines()
    rows = [{"text": " ".join(v.split()[:8]), "label": "lord" if "LORD" in v else "man"} for v in verses[:64]]
    data = tmp_path / "cls.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ft"
    assert main(["-q", "finetune", "--model", str(tiny_t5), "--task", "classify", "--text-to-text", "--train",
                 str(data), "--dev", str(data), "--test", str(data), "--out", str(out), "--epochs", "4", "--lr", "1e-2",
                 "--batch-size", "8", "--max-length", "16", "--max-target-length", "4", "--num-beams", "2"]) == 0
    test = json.loads((out / "eval.json").read_text())["test"]
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--data", str(data)]) == 0
    predicted = [json.loads(line)["prediction"] for line in capsys.readouterr().out.splitlines()]
    gold = [r["label"] for r in rows]
    assert len(predicted) == len(rows)
    assert test["accuracy"] == test["exact_match"] == pytest.approx(np.mean([p == g for p, g in zip(predicted, gold)]))
    assert test["invalid"] == pytest.approx(np.mean([p not in ("lord", "man") for p in predicted]))
    assert test["invalid"] < 0.5, predicted  # four epochs teach it to answer with a label word


def test_a_batch_holds_targets_longer_than_every_source():
    """Text to text pads the targets to their own length: an English source of 3 tokens may have a Chinese
    target of 5 characters."""
    from plmkit.heads.inputs import collate

    features = [{"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 0], "labels": [1, 2, 3, 4, 5], "example": 0},
                {"input_ids": [8, 9], "token_type_ids": [0, 0], "labels": [1, 2], "example": 1}]
    batch = collate(features, 0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["labels"].tolist() == [[1, 2, 3, 4, 5], [1, 2, -100, -100, -100]]
