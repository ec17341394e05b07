"""`plmkit xling`: cross-lingual pre-training compared on the shipped English–Chinese Bible.

`prepare` splits the verse-aligned Bible (plmkit/resources: KJV + Chinese Union Version) into
  train.en / train.zh   the pre-training bitext (line-aligned), every held-out verse removed from both;
  retrieval.jsonl       `heldout` verse pairs {"en", "zh"} for bitext retrieval;
  task.jsonl            a labelled task in both languages: each verse's section of the canon (the
                        quickstart's six sections), `per_section` train and test verses per section,
                        {"en", "zh", "label", "split"}: train in one language, test in the other;
  translate-{train,dev,test}.jsonl  English → Chinese translation for the encoder–decoders,
                        {"source": KJV verse, "target": CUV verse}: dev (a fifth) and test from the held-out
                        verses, `translate_train` training pairs from the rest (their text is in the
                        bitext; the pairing is what fine-tuning adds).
`evaluate` scores one model directory on them; `compare` pre-trains several members on the same bitext
with the same settings (equal steps, batch and sequence length) and scores each.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from ..errors import PlmkitError
from .quickstart import SECTIONS

log = logging.getLogger("plmkit")

# The members compared: XLM (MLM + TLM, language embeddings), LASER (translation, max-pooled BiLSTM), and the
# mBERT-style baseline: BERT pre-trained on both languages as one monolingual mixture (MLM + NSP, no
# parallel signal, no language ids), its vectors mean-pooled.
MEMBERS = ("xlm", "laser", "bert")
SETTINGS = dict(steps=600, batch_size=32, seq_len=64, vocab_size=3000, lr=2e-3)
MODEL = {"xlm": dict(num_layers=2, hidden_size=128, num_heads=4, intermediate_size=512),
         "bert": dict(num_layers=2, hidden_size=128, num_heads=4, intermediate_size=512),
         "laser": dict(num_layers=2, embedding_size=128, hidden_size=128)}


def prepare(out: str | Path, heldout: int = 1000, per_section: int = 50, seed: int = 0,
            translate_train: int = 5000) -> Path:
    """Write the split described in the module docstring into `out`; returns `out`."""
    from ..data.parallel import bible

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    en, zh, books = bible()
    section_of, b = {}, 0
    for name, n in SECTIONS:
        for book in range(b, b + n):
            section_of[book] = name
        b += n
    rng = random.Random(seed)
    order = list(range(len(en)))
    rng.shuffle(order)
    retrieval = order[:heldout]
    rest, task = order[heldout:], []
    for name, _ in SECTIONS:
        picked = [i for i in rest if section_of[books[i]] == name][: 2 * per_section]
        task += [(i, name, "train" if k < per_section else "test") for k, i in enumerate(picked)]
    held = set(retrieval) | {i for i, _, _ in task}
    keep = [i for i in range(len(en)) if i not in held]
    (out / "train.en").write_text("".join(en[i] + "\n" for i in keep), encoding="utf-8")
    (out / "train.zh").write_text("".join(zh[i] + "\n" for i in keep), encoding="utf-8")
    (out / "retrieval.jsonl").write_text("".join(json.dumps({"en": en[i], "zh": zh[i]}, ensure_ascii=False) + "\n"
                                                 for i in retrieval), encoding="utf-8")
    (out / "task.jsonl").write_text("".join(json.dumps({"en": en[i], "zh": zh[i], "label": lab, "split": s},
                                                       ensure_ascii=False) + "\n" for i, lab, s in task),
                                    encoding="utf-8")
    splits = {"train": rng.sample(keep, min(translate_train, len(keep))), "dev": retrieval[: heldout // 5],
              "test": retrieval[heldout // 5:]}
    for split, verses in splits.items():
        (out / f"translate-{split}.jsonl").write_text(
            "".join(json.dumps({"source": en[i], "target": zh[i]}, ensure_ascii=False) + "\n" for i in verses),
            encoding="utf-8")
    return out


def _read_jsonl(path: Path, keys: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise PlmkitError("not found (make it with `plmkit xling prepare`)", path=path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlmkitError(f"not valid JSON: {e.msg}", path=path, line=n) from None
        missing = [k for k in keys if k not in row]
        if missing:
            raise PlmkitError(f"missing field(s) {', '.join(missing)}", path=path, line=n)
        rows.append(row)
    if not rows:
        raise PlmkitError("empty file", path=path)
    return rows


def evaluate(model_dir: str | Path, data: str | Path) -> dict:
    """Bitext retrieval (en → zh, zh → en) and zero-shot transfer (train en → test zh, and the reverse) of
    one model's sentence vectors. English is language 0 and Chinese language 1, as in `prepare`'s files."""
    from .. import load, load_tokenizer
    from ..evaluation.crosslingual import bitext_retrieval, sentence_vectors, zero_shot

    data = Path(data)
    pairs = _read_jsonl(data / "retrieval.jsonl", ("en", "zh"))
    task = _read_jsonl(data / "task.jsonl", ("en", "zh", "label", "split"))
    model, tok = load(model_dir), load_tokenizer(model_dir)

    def vectors(texts, language):
        return sentence_vectors(model, tok, texts, language, progress=True)

    en, zh = vectors([p["en"] for p in pairs], 0), vectors([p["zh"] for p in pairs], 1)
    ret, centred = bitext_retrieval(en, zh), bitext_retrieval(en, zh, center=True)
    train, test = [r for r in task if r["split"] == "train"], [r for r in task if r["split"] == "test"]
    vec = {(split, lang): vectors([r[lang] for r in rows], i)
           for split, rows in (("train", train), ("test", test)) for i, lang in enumerate(("en", "zh"))}
    ytr, yte = [r["label"] for r in train], [r["label"] for r in test]
    return {"model": str(model_dir), "member": model.family_name, "pairs": len(pairs),
            "retrieval_en_zh": ret["a_to_b"], "retrieval_zh_en": ret["b_to_a"],
            "centred_en_zh": centred["a_to_b"], "centred_zh_en": centred["b_to_a"],
            "zero_shot_en_zh": zero_shot(vec["train", "en"], ytr, vec["test", "zh"], yte),
            "zero_shot_zh_en": zero_shot(vec["train", "zh"], ytr, vec["test", "en"], yte),
            "in_language_en": zero_shot(vec["train", "en"], ytr, vec["test", "en"], yte),
            "task_train": len(train), "task_test": len(test), "classes": len(set(ytr))}


def compare(out: str | Path, members: tuple[str, ...] = MEMBERS, steps: int | None = None,
            settings: dict | None = None) -> list[dict]:
    """Prepare the split, pre-train each member on train.en + train.zh with the same settings, evaluate each;
    rows are written to `out/report.json`. A member already trained in `out/NAME` is evaluated, not retrained."""
    from .pretrain import pretrain

    out = Path(out)
    data = prepare(out / "data") if not (out / "data" / "task.jsonl").exists() else out / "data"
    s = {**SETTINGS, **(settings or {}), **({"steps": steps} if steps else {})}
    rows = []
    for name in members:
        if name not in MODEL:
            raise PlmkitError(f"xling compare knows {', '.join(MODEL)}; got {name!r}")
        run = out / name
        if not (run / "model.safetensors").exists():
            log.info("pre-training %s on the bitext (%d steps)", name, s["steps"])
            pretrain(name, [str(data / "train.en"), str(data / "train.zh")], run, size="tiny",
                     model_overrides={**MODEL[name], **({"max_positions": max(s["seq_len"], 128)}
                                                         if name != "laser" else {})},
                     train_overrides={"steps": s["steps"], "batch_size": s["batch_size"], "lr": s["lr"],
                                      "log_every": 50},
                     data_overrides={"seq_len": s["seq_len"], "vocab_size": s["vocab_size"]})
        rows.append({**evaluate(run, data), "steps": s["steps"],
                     "train_s": json.loads((run / "train_summary.json").read_text()).get("seconds")})
    (out / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows
