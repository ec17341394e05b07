"""`plmkit grover`: metadata-conditioned generation and the detection of generated text (Zellers et al. 2019,
arXiv:1905.12616), on articles cut from the shipped King James Bible (plmkit.data.articles: domain = section
of the canon, headline = book, body = a passage of consecutive verses; the Bible has no dates or authors).

`prepare` writes the articles: train.txt (the generator's corpus, one field per line), train.jsonl, and
heldout.jsonl, articles the generator never sees, whose metadata conditions the generations to detect.
`generate_field` asks a Grover model for one field given others, through plmkit.generation.
`compare` is §5's experiment at small scale: pre-train the generator (grover) and, with the same steps,
batch and length, a BERT on the same text; generate a body for each held-out article's domain and headline
at several nucleus p; fine-tune detectors — the generator itself, the BERT, and the generator's
architecture from random weights — on human vs machine bodies (the two versions of an article in the same
split) and report their test accuracy for each p.
`detect` gives a fine-tuned detector's probability that texts are machine-written.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from ..data.articles import FIELDS, begin, bible_articles, end, format_article, read_articles, write_jsonl
from ..errors import PlmkitError

log = logging.getLogger("plmkit")

LABELS = ("human", "machine")
SETTINGS = dict(steps=500, batch_size=32, seq_len=128, vocab_size=4000, lr=2e-3, verses=3, heldout=240)
MODEL = dict(num_layers=2, hidden_size=128, num_heads=4, intermediate_size=512)
TOP_P = (0.8, 0.9, 0.95, 1.0)
DETECTORS = ("grover", "bert", "scratch")
FINETUNE = dict(epochs=5, lr=5e-4, batch_size=16, max_length=160)


def prepare(out: str | Path, verses: int = 3, heldout: int = 240, seed: int = 0) -> Path:
    """Write train.txt, train.jsonl and heldout.jsonl into `out` (articles of `verses` verses, `heldout` of
    them drawn with `seed` and kept out of train)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    articles = bible_articles(verses)
    if not 0 < heldout < len(articles):
        raise PlmkitError(f"heldout must be in 1…{len(articles) - 1}, got {heldout}")
    held = set(random.Random(seed).sample(range(len(articles)), heldout))
    train = [a for a in articles if a["id"] not in held]
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "heldout.jsonl", [a for a in articles if a["id"] in held])
    (out / "train.txt").write_text("\n\n".join(format_article(a) for a in train) + "\n", encoding="utf-8")
    return out


def prompt(article: dict, target: str) -> str:
    """The context fields of `article` (all present but the target) in canonical order, then the target's
    begin token: what the model continues."""
    if target not in FIELDS:
        raise PlmkitError(f"unknown field {target!r}; fields are {', '.join(FIELDS)}")
    return "".join(f"{begin(f)}{article[f].strip()}{end(f)}" for f in FIELDS
                   if f != target and str(article.get(f, "")).strip()) + begin(target)


def generate_field(model, tokenizer, article: dict, target: str, max_new_tokens: int = 120,
                   top_p: float | None = None, temperature: float = 1.0, seed: int | None = None) -> str:
    """One field written by a Grover model given the article's other fields (plmkit.generation's engine):
    the text up to the field's end token."""
    from ..generation import generate

    text = prompt(article, target)
    if tokenizer.token_to_id(end(target)) is None:
        raise PlmkitError("the tokenizer has no field tokens: not a Grover model")
    res = generate(model, tokenizer, text, max_new_tokens=max_new_tokens,
                   temperature=temperature, top_p=top_p, seed=seed)
    ids = res["tokens"]
    stop = tokenizer.token_to_id(end(target))
    return tokenizer.decode(ids[:ids.index(stop)] if stop in ids else ids).strip()


def detection_sets(human: list[dict], machine: list[str], out: Path, seed: int = 0,
                   split: tuple[float, float] = (0.6, 0.1)) -> Path:
    """train/dev/test.jsonl of {"text", "label": human|machine}: each held-out article's real body and the body
    generated from its metadata, both in the same split (so a detector never saw either version)."""
    out.mkdir(parents=True, exist_ok=True)
    order = list(range(len(human)))
    random.Random(seed).shuffle(order)
    a, b = int(split[0] * len(order)), int((split[0] + split[1]) * len(order))
    for name, part in (("train", order[:a]), ("dev", order[a:b]), ("test", order[b:])):
        rows = [r for i in part for r in ({"text": human[i]["body"], "label": "human"},
                                           {"text": machine[i] or ".", "label": "machine"})]
        write_jsonl(out / f"{name}.jsonl", rows)
    return out


def compare(out: str | Path, steps: int | None = None, top_p: tuple[float, ...] = TOP_P,
            detectors: tuple[str, ...] = DETECTORS, settings: dict | None = None, model: dict | None = None) -> dict:
    """The experiment of the module docstring; writes and returns out/report.json. Finished stages (a trained
    model, a generated set, a fine-tuned detector) are reused by a rerun."""
    from tqdm import tqdm

    from .. import load, load_tokenizer
    from ..data.tasks import jsonl_records
    from .finetune import finetune
    from .pretrain import pretrain

    out = Path(out)
    s = {**SETTINGS, **(settings or {}), **({"steps": steps} if steps else {})}
    arch = {**MODEL, **(model or {})}
    unknown = sorted(set(detectors) - set(DETECTORS))
    if unknown:
        raise PlmkitError(f"unknown detector(s) {', '.join(unknown)}; choose from {', '.join(DETECTORS)}")
    data = out / "data"
    if not (data / "heldout.jsonl").exists():
        prepare(data, s["verses"], s["heldout"])
    runs = {"grover": out / "grover", "bert": out / "bert"}
    for name in ("grover", "bert") if "bert" in detectors else ("grover",):
        if not (runs[name] / "model.safetensors").exists():
            corpus = data / "train.txt" if name == "grover" else _bodies(data)
            pretrain(name, [str(corpus)], runs[name], size="tiny", model_overrides=arch,
                     train_overrides={"steps": s["steps"], "batch_size": s["batch_size"], "lr": s["lr"],
                                      "log_every": 50},
                     data_overrides={"seq_len": s["seq_len"], "vocab_size": s["vocab_size"]})
    held = read_articles(data / "heldout.jsonl")
    generator, tok = load(runs["grover"]), load_tokenizer(runs["grover"])
    report = {"settings": s, "model": arch, "articles": len(held), "top_p": list(top_p), "accuracy": {},
              "examples": {}}
    for p in top_p:
        gen_path = out / f"generated-p{p}.jsonl"
        if not gen_path.exists():
            bodies = [generate_field(generator, tok, a, "body", max_new_tokens=s["seq_len"] - 16,
                                     top_p=None if p >= 1 else p, seed=i)
                      for i, a in enumerate(tqdm(held, desc=f"generate p={p}", unit="article"))]
            write_jsonl(gen_path, [{"id": a["id"], "body": b} for a, b in zip(held, bodies)])
        machine = [r["body"] for _, r in jsonl_records(gen_path.read_text(encoding="utf-8"), gen_path)]
        report["examples"][str(p)] = {"headline": held[0]["headline"], "domain": held[0]["domain"],
                                      "generated": machine[0][:300]}
        sets = detection_sets(held, machine, out / f"detect-p{p}")
        for d in detectors:
            run = out / f"detector-{d}-p{p}"
            if not (run / "eval.json").exists():
                finetune(runs["bert" if d == "bert" else "grover"], "classify", str(sets / "train.jsonl"),
                         str(sets / "dev.jsonl"), run, test=str(sets / "test.jsonl"), scratch=d == "scratch",
                         labels=list(LABELS), progress=False, **FINETUNE)
            test = json.loads((run / "eval.json").read_text())["test"]
            report["accuracy"].setdefault(d, {})[str(p)] = test["accuracy"]
    report["test_examples"] = sum(1 for _ in open(out / f"detect-p{top_p[0]}" / "test.jsonl"))
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _bodies(data: Path) -> Path:
    """The generator's training bodies as plain text for the BERT detector's pre-training (one per line)."""
    path = data / "train-bodies.txt"
    if not path.exists():
        path.write_text("".join(a["body"] + "\n" for a in read_articles(data / "train.jsonl")), encoding="utf-8")
    return path


def detect(model_dir: str | Path, texts: list[str]) -> list[float]:
    """A fine-tuned detector's probability that each text is machine-written."""
    from ..data.tasks import Example
    from ..heads import evaluate, load_finetuned

    model = load_finetuned(model_dir)
    if model.config.task != "classify" or "machine" not in model.config.labels or len(model.config.labels) != 2:
        raise PlmkitError("not a detector: a classifier fine-tuned on the labels human and machine", path=model_dir)
    _, preds = evaluate(model, model.tokenizer, [Example(text=t) for t in texts], labelled=False)
    return [p["probability"] if p["label"] == "machine" else 1 - p["probability"] for p in preds]
