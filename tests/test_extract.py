"""Model extraction (`plmkit compress extract`): the attacker reaches the victim only through its prediction
call, its queries are the same for the same seed, a tiny victim trained on a toy rule is copied with agreement
well above what its majority label gives, and a budget sweep writes its curve."""

import json
import random
import re
import sys

import pytest
import torch

from plmkit.compress import Job, extract, get
from plmkit.data.tasks import read_task
from plmkit.errors import PlmkitError
from plmkit.evaluation.metrics import agreement
from plmkit.heads import HeadConfig, TaskModel, collate, encode, load_finetuned, save_finetuned
from plmkit.interop.hf import save_model
from plmkit.models.bert import Bert, BertConfig
from plmkit.tokenizers import train_tokenizer
from plmkit.workflows.compress import compress

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=64)


def _label(text: str) -> str:
    """The toy rule: whether the text has the word "the" (half of the texts do)."""
    return "the" if "the" in re.findall(r"[a-z]+", text.lower()) else "other"


@pytest.fixture(scope="module")
def data(kjv_head, tmp_path_factory):
    """A tiny BERT saved as the public pre-trained model, and the victim: that model fine-tuned on KJV verses
    labelled by whether they have the word "of"; query verses kept apart from the victim's train/dev/test."""
    d = tmp_path_factory.mktemp("extract")
    corpus = kjv_head(800)
    lines = [" ".join(ln.split()[:10]) for ln in corpus.read_text().splitlines() if ln.strip()]
    splits = {"train": lines[:240], "dev": lines[240:260], "test": lines[260:420]}
    for name, part in splits.items():
        (d / f"{name}.jsonl").write_text("".join(json.dumps({"text": v, "label": _label(v)}) + "\n" for v in part))
    (d / "queries.txt").write_text("\n".join(lines[500:]) + "\n")
    tok = train_tokenizer("wordpiece", [corpus], 300, show_progress=False)
    torch.manual_seed(0)
    body = Bert(BertConfig(vocab_size=tok.vocab_size, **TINY))
    save_model(body, d / "pretrained", tok)
    victim = TaskModel(body, HeadConfig(task="classify", labels=("the", "other"), max_length=32, dropout=0.0))
    victim.tokenizer = tok
    features = encode(read_task(d / "train.jsonl", "classify"), victim, tok)
    opt = torch.optim.AdamW(victim.parameters(), lr=3e-3)
    victim.train()
    for epoch in range(8):
        random.Random(epoch).shuffle(features)
        for i in range(0, len(features), 16):
            loss = victim(collate(features[i:i + 16], tok.pad_id or 0))["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    save_finetuned(victim.eval(), d / "victim", {"model": str(d / "pretrained")})
    return d


def _files(d):
    return {k: str(d / f"{k}.jsonl") for k in ("train", "dev", "test")}


class Sealed:
    """Makes a model fail on any attribute read that does not come through the Victim's own methods."""

    ALLOWED = {extract.Victim.__init__.__code__, extract.Victim.answer.__code__}

    def __init__(self, model):
        self.reads = []
        outer = self

        class SealedModel(type(model)):
            def __getattribute__(self, name):
                frame = sys._getframe(1)
                while frame is not None and frame.f_code not in Sealed.ALLOWED:
                    frame = frame.f_back
                if frame is None:
                    outer.reads.append(name)
                    raise AssertionError(f"the attacker read the victim's {name!r}")
                return super().__getattribute__(name)

        model.__class__ = SealedModel
        self.model = model


def test_the_attacker_only_asks_the_victim(data, tmp_path):
    victim = load_finetuned(data / "victim")
    seal = Sealed(victim)
    m = get("extract")
    opts = m.resolve({"queries": "corpus", "corpus": str(data / "queries.txt"), "budget": 24, "epochs": 1,
                      "max_length": 32, "init": str(data / "pretrained")})
    files = _files(data)
    job = Job("extract", seal.model, None, opts, tmp_path, task="classify",
              train=read_task(files["train"], "classify"), dev=read_task(files["dev"], "classify"),
              test=read_task(files["test"], "classify")[:16], progress=False)  # the seal makes every read slow
    result = m.run(job)
    assert seal.reads == []
    assert result.info["victim_queries"] == 24 and result.info["queries"] == 24
    assert sum(result.info["answer_labels"].values()) == 24
    # the copy's weights are its own, from the pre-trained body, not the victim's fine-tuned ones
    object.__setattr__(victim, "__class__", TaskModel)
    assert not torch.equal(result.model.head.weight, victim.head.weight)
    with pytest.raises(AssertionError, match="attacker read"):
        Sealed(victim).model.state_dict()


def test_queries_are_reproducible_from_the_seed(data):
    tok = load_finetuned(data / "victim").tokenizer
    base = {"queries": "random", "vocabulary": "tokenizer", "seed": 3, "max_length": 20}
    lengths = [5, 9, 40]
    a = extract.make_queries(base, 30, lengths, None, tok, data / "queries.txt")
    b = extract.make_queries(base, 10, lengths, None, tok, data / "queries.txt")
    c = extract.make_queries({**base, "seed": 4}, 30, lengths, None, tok, data / "queries.txt")
    assert [e.text for e in a] == [e.text for e in extract.make_queries(base, 30, lengths, None, tok,
                                                                         data / "queries.txt")]
    assert [e.text for e in a[:10]] == [e.text for e in b]  # a larger budget extends the smaller one's stream
    assert [e.text for e in a] != [e.text for e in c]
    words = set(extract.tokenizer_words(tok))
    assert all(len(e.text.split()) in (5, 9, 20) and set(e.text.split()) <= words for e in a)  # 40 cut at 20
    assert not any(w.startswith("##") or w.startswith("[") for w in words)
    lines = set((data / "queries.txt").read_text().splitlines())
    corpus = {**base, "queries": "corpus"}
    q = extract.make_queries(corpus, 50, lengths, [3], tok, data / "queries.txt")
    assert q == extract.make_queries(corpus, 50, lengths, [3], tok, data / "queries.txt")
    assert all(e.text in lines and e.text_b in lines for e in q)


def test_budgets_and_agreement():
    assert extract.budgets_of({"budgets": "300,100", "budget": None}) == ([100, 300], 300)
    assert extract.budgets_of({"budgets": None, "budget": None}) == ([1000], 1000)
    assert extract.budgets_of({"budgets": "100,1000", "budget": 300}) == ([100, 300, 1000], 300)
    with pytest.raises(PlmkitError, match="comma-separated integers"):
        extract.budgets_of({"budgets": "100,lots", "budget": None})
    assert agreement(["a", "b", "a", "b"], ["a", "a", "a", "b"]) == 0.75


def test_a_tiny_victim_is_copied_and_the_sweep_writes_its_curve(data, tmp_path):
    out = tmp_path / "copy"
    r = compress("extract", data / "victim", out, **_files(data),
                 options={"queries": "corpus", "corpus": str(data / "queries.txt"), "budgets": "40,300",
                          "answers": "probs", "epochs": 6, "lr": 3e-3}, progress=False)
    test = read_task(data / "test.jsonl", "classify")
    victim = load_finetuned(data / "victim")
    from plmkit.heads import evaluate

    _, said = evaluate(victim, victim.tokenizer, test)
    majority = max(sum(p["label"] == lab for p in said) for lab in ("the", "other")) / len(test)
    assert r["teacher"]["test"]["accuracy"] > 0.8  # the victim learned its rule
    assert r["agreement"] > majority + 0.1, (r["agreement"], majority)
    s = r["student"]
    assert s["queries"] == 300 and s["victim_queries"] == 300 and s["init"] == str(data / "pretrained")
    points = s["curve"]["points"]
    assert [p["queries"] for p in points] == [40, 300] and points[-1]["agreement"] == r["agreement"]
    assert s["curve"]["victim"] == r["teacher"]["test"]["accuracy"]
    assert (out / "extraction_curve.png").stat().st_size > 0
    assert (out / "budgets" / "40" / "train_log.jsonl").exists()
    assert load_finetuned(out).body.family_name == "bert"
