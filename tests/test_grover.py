"""Grover: the shipped articles, the field-ordered objective's orders and batches by hand, pre-training with the
field tokens, generation of one field through plmkit.generation, the detection sets, and `plmkit detect`."""

import json

import numpy as np
import pytest
import torch

import plmkit
from plmkit.cli import main
from plmkit.data.articles import BOOKS, FIELD_TOKENS, begin, bible_articles, end, format_article
from plmkit.objectives.fields import FieldOrderedLM
from plmkit.workflows import grover


def test_bible_articles_carry_section_and_book():
    articles = bible_articles(verses=3)
    assert len(BOOKS) == 66 and BOOKS[21] == "Song of Solomon"
    first, last = articles[0], articles[-1]
    assert (first["domain"], first["headline"]) == ("Law", "Genesis")
    assert first["body"].startswith("In the beginning God created the heaven and the earth. And the earth")
    assert (last["domain"], last["headline"]) == ("Epistles/Revelation", "Revelation")
    assert last["body"].endswith("Amen.")
    assert {a["headline"] for a in articles if a["domain"] == "Gospels/Acts"} == {"Matthew", "Mark", "Luke", "John",
                                                                               "Acts"}
    assert format_article({"headline": "Jude", "body": "Hi.", "date": " "}) == \
        "<|begin_headline|>Jude<|end_headline|>\n<|begin_body|>Hi.<|end_body|>"


class _Tok:
    """Just what FieldOrderedLM reads of a tokenizer."""

    pad_id, doc_sep_id = 0, 1


def _order(u0, drops=(1,) * 5, sides=(0,) * 5):
    obj = FieldOrderedLM.__new__(FieldOrderedLM)
    fields = {"domain": 0, "headline": 0, "body": 0}
    return obj.order(fields, np.array([u0, *drops, *sides], dtype=float))


def test_field_orders_follow_the_three_cases():
    assert _order(0.1) == ["body", "domain", "headline"]  # body first, then its metadata
    assert _order(0.1, drops=(0.05, 1, 1, 0.05, 1)) == ["body"]  # each metadata field dropped at 10 %
    assert _order(0.4, drops=(0,) * 5) == ["domain", "headline", "body"]  # canonical, no dropout
    # random split: domain (index 0) and body (4) to the target, headline (3) to the context
    assert _order(0.7, sides=(0.9, 0, 0, 0.1, 0.9)) == ["headline", "domain", "body"]
    assert _order(0.7, drops=(0.05, 1, 1, 0.05, 1), sides=(0.9, 0, 0, 0.9, 0.1)) == ["body", "headline"]


def test_collate_frames_cuts_the_body_and_masks_padding():
    obj = FieldOrderedLM.__new__(FieldOrderedLM)
    obj.tokenizer, obj.seq_len = _Tok(), 12
    long = {"domain": np.array([10, 11, 12]), "body": np.array([20, 21, 22, 23, 24, 25, 26, 27, 28, 29])}
    short = {"body": np.array([20, 21, 29])}
    g = torch.Generator().manual_seed(0)
    b = obj.collate([long, short], g)
    assert b["input_ids"].shape == (2, 12)
    rows = [r.tolist() for r in torch.cat([b["input_ids"], b["labels"][:, -1:]], 1)]
    first = rows[0]
    assert first[0] == 1 and len(first) == 13  # sep … then the last target
    assert 10 in first and 29 in first  # the domain survived, the body's end token kept after the cut
    assert first.index(20) < first.index(29) and first.count(1) == 2
    assert rows[1][:5] == [1, 20, 21, 29, 1] and (b["labels"][1, 4:] == -100).all()


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    """A tiny Grover pre-trained on 300 shipped articles."""
    d = tmp_path_factory.mktemp("grover")
    data = grover.prepare(d / "data", verses=2, heldout=20)
    lines = (data / "train.txt").read_text().split("\n\n")[:300]
    (d / "small.txt").write_text("\n\n".join(lines) + "\n")
    from plmkit.workflows.pretrain import pretrain

    summary = pretrain("grover", [str(d / "small.txt")], d / "run", size="tiny",
                       model_overrides=dict(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64),
                       train_overrides={"steps": 40, "batch_size": 8, "lr": 5e-3, "log_every": 5},
                       data_overrides={"seq_len": 64, "vocab_size": 400})
    return d, summary


def test_grover_pretrains_with_field_tokens(generator):
    d, summary = generator
    log = [json.loads(line) for line in (d / "run" / "train_log.jsonl").read_text().splitlines()]
    assert summary["final_loss"] < log[0]["loss"] - 1
    tok = plmkit.load_tokenizer(d / "run")
    ids = tok.encode(format_article({"domain": "Law", "headline": "Ruth", "body": "And"}).replace("\n", ""))
    assert ids[0] == tok.token_to_id(begin("domain")) and ids[-1] == tok.token_to_id(end("body"))
    assert all(tok.token_to_id(t) is not None for t in FIELD_TOKENS)
    assert plmkit.load(d / "run").family_name == "grover"


def test_generate_field_prompts_in_canonical_order_and_stops_at_the_end_token(generator, monkeypatch):
    d, _ = generator
    model, tok = plmkit.load(d / "run"), plmkit.load_tokenizer(d / "run")
    article = {"body": "And Ruth said.", "domain": "History"}
    assert grover.prompt(article, "headline") == \
        "<|begin_domain|>History<|end_domain|><|begin_body|>And Ruth said.<|end_body|><|begin_headline|>"
    text = grover.generate_field(model, tok, {"domain": "Law", "headline": "Genesis"}, "body", 20, top_p=0.9, seed=0)
    assert isinstance(text, str) and "<|" not in text
    ruth = tok.encode(" Ruth")
    seen = {}

    def rigged(model, tokenizer, prompt, **settings):
        seen.update(prompt=prompt, **settings)
        return {"tokens": ruth + [tok.token_to_id(end("headline"))] + tok.encode(" extra")}

    monkeypatch.setattr("plmkit.generation.generate", rigged)
    assert grover.generate_field(model, tok, article, "headline", top_p=0.5, seed=3) == "Ruth"
    assert seen["top_p"] == 0.5 and seen["prompt"].endswith(begin("headline"))


def test_detection_sets_keep_both_versions_of_an_article_together(tmp_path):
    human = [{"body": f"human {i}"} for i in range(20)]
    out = grover.detection_sets(human, [f"machine {i}" for i in range(20)], tmp_path)
    seen = {}
    for split in ("train", "dev", "test"):
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert [r["label"] for r in rows].count("human") == [r["label"] for r in rows].count("machine")
        for r in rows:
            seen.setdefault(r["text"].split()[1], set()).add(split)
    assert len(seen) == 20 and all(len(s) == 1 for s in seen.values())


def test_detect_command_prints_the_machine_probability(generator, tmp_path, capsys):
    from plmkit.workflows.finetune import finetune

    d, _ = generator
    human = [{"body": "And the LORD spake unto Moses, saying"}] * 12
    sets = grover.detection_sets(human, ["zzz qqq zzz qqq"] * 12, tmp_path / "sets", split=(0.5, 0.25))
    finetune(d / "run", "classify", str(sets / "train.jsonl"), str(sets / "dev.jsonl"), tmp_path / "det",
             epochs=8, lr=5e-3, batch_size=4, max_length=32, labels=["human", "machine"], progress=False)
    probs = grover.detect(tmp_path / "det", ["zzz qqq zzz qqq", "And the LORD spake unto Moses, saying"])
    assert probs[0] > 0.5 > probs[1]
    assert main(["detect", "--model", str(tmp_path / "det"), "--text", "zzz qqq zzz qqq", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed[0]["machine"] == pytest.approx(probs[0], abs=1e-5)
    assert main(["detect", "--model", str(d / "run"), "--text", "x"]) == 2  # a generator is no detector
    assert "not a fine-tuned model directory" in capsys.readouterr().err


def test_grover_directory_is_a_transformers_gpt2(tmp_path):
    import transformers

    from plmkit.interop.hf import save_model
    from plmkit.models.grover import Grover, GroverConfig

    torch.manual_seed(0)
    model = Grover(GroverConfig(vocab_size=99, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                                max_positions=64)).eval()
    save_model(model, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    x = torch.randint(0, 99, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(x).logits - hf(x).logits).abs().max() < 1e-4
    assert type(plmkit.load(tmp_path)) is Grover


def test_grover_generate_command(generator, capsys):
    d, _ = generator
    args = ["grover", "generate", "--model", str(d / "run"), "--field", "domain=Law", "--max-new-tokens", "8",
            "--seed", "0", "--top-p", "0.9"]
    assert main(args + ["--field", "headline=Genesis", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["domain"] == "Law" and printed["headline"] == "Genesis" and isinstance(printed["body"], str)
    assert main(args + ["--field", "headline"]) == 2
    assert "NAME=TEXT" in capsys.readouterr().err
    assert main(args + ["--target", "summary"]) == 2
    assert "unknown field" in capsys.readouterr().err
