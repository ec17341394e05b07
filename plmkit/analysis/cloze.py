"""Factual cloze probes. Petroni et al. 2019, "Language Models as Knowledge Bases?", arXiv:1909.01066
(LAMA), with the negated templates of Kassner & Schütze 2020, "Negated and Misprimed Probes for
Pretrained Language Models", arXiv:1911.03343.

Recipe. A fact (subject, relation, object) becomes a sentence through its relation's template,
"[X] is the capital of [Y].": [X] is the subject, [Y] the slot to fill. A masked LM reads the sentence
with [Y] masked; a causal LM reads the text before [Y] (left context only, as LAMA scores its
unidirectional models). The model ranks its whole vocabulary for the slot; P@k is the share of facts
whose object is among the top k, per relation and averaged over relations (LAMA §3); MRR, the mean of
1 / the object's rank, also moves for models too small to put the object in the top 10. As in LAMA, the
object must be one token of the model's vocabulary; other facts are counted as skipped. Negated
templates ("[X] is not the capital of [Y].") should not predict the object: Kassner & Schütze report how
often the top-1 prediction stays the same under negation, and the P@1 of the negated query.

Facts: JSONL lines {"relation", "subject", "object"} (optionally "template" and "negated"); templates per
relation may also come from a JSON file {relation: {"template": …, "negated": …}}. TEMPLATES covers the
relations of the word2vec analogy facts in ../shared/data/probes/analogies.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

from ..data.tasks import jsonl_records
from ..errors import PlmkitError
from . import inputs
from .inputs import Loaded

TEMPLATES = {
    "capital-common-countries": ("[X] is the capital of [Y].", "[X] is not the capital of [Y]."),
    "capital-world": ("[X] is the capital of [Y].", "[X] is not the capital of [Y]."),
    "currency": ("The currency of [X] is the [Y].", "The currency of [X] is not the [Y]."),
    "city-in-state": ("[X] is a city in the state of [Y].", "[X] is not a city in the state of [Y]."),
    "family": ("The female counterpart of the [X] is the [Y].", "The female counterpart of the [X] is not the [Y]."),
}


def requires(loaded: Loaded) -> str | None:
    model = loaded.model
    if not hasattr(model, "encode") or not hasattr(model, "forward"):
        return f"{loaded.member.name} is not a language model"
    if inputs.causal(model):
        return None
    return inputs.masked_lm_problem(loaded)


def read_facts(path, templates: str | None = None) -> list[dict]:
    """Facts with their templates: each line's own, else the --templates file's, else TEMPLATES."""
    p = Path(path)
    if not p.is_file():
        raise PlmkitError("facts file not found", path=p)
    table = {k: {"template": a, "negated": b} for k, (a, b) in TEMPLATES.items()}
    if templates:
        try:
            table.update(json.loads(Path(templates).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as e:
            raise PlmkitError(f"cannot read templates: {e}", path=templates) from None
    facts = []
    for n, r in jsonl_records(p.read_text(encoding="utf-8"), p):
        for key in ("relation", "subject", "object"):
            if not r.get(key):
                raise PlmkitError(f"missing field {key!r}", path=p, line=n)
        t = {**table.get(r["relation"], {}), **{k: r[k] for k in ("template", "negated") if k in r}}
        if "[X]" not in t.get("template", "") or "[Y]" not in t.get("template", ""):
            raise PlmkitError(f"no template with [X] and [Y] for relation {r['relation']!r} (give one in the "
                              "line's \"template\" or in --templates)", path=p, line=n)
        facts.append({**r, "template": t["template"], "negated": t.get("negated")})
    if not facts:
        raise PlmkitError("no facts in the file", path=p)
    return facts


def _object_id(tokenizer, obj: str) -> int | None:
    """The object's id when it is one token of the vocabulary (with or without a leading space)."""
    for text in (obj, " " + obj):
        ids = tokenizer.encode(text)
        if len(ids) == 1:
            return ids[0]
    return None


@torch.no_grad()
def rank(model, tokenizer, sentences: list[str], batch_size: int = 32) -> torch.Tensor:
    """(S, V) log-probabilities of the vocabulary at the [Y] slot of each filled-in sentence."""
    from ..heads.pooling import frame_ids

    causal = inputs.causal(model)
    begin, end = frame_ids(model, tokenizer)
    rows, slots = [], []
    for s in sentences:
        left, right = s.split("[Y]", 1)
        left_ids = tokenizer.encode(left.rstrip())
        if causal:
            ids = begin + left_ids
            if not ids:  # nothing to condition on: start from the document separator
                ids = [tokenizer.doc_sep_id]
            rows.append(ids)
            slots.append(len(ids) - 1)  # the next-token distribution after the left context
        else:
            ids = begin + left_ids + [tokenizer.mask_id] + tokenizer.encode(right) + end
            rows.append(ids)
            slots.append(len(begin) + len(left_ids))
    out = []
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    for i in range(0, len(rows), batch_size):
        chunk, at = rows[i:i + batch_size], slots[i:i + batch_size]
        T = max(len(r) for r in chunk)
        x = torch.full((len(chunk), T), pad, dtype=torch.long)
        mask = torch.zeros_like(x)
        for b, r in enumerate(chunk):
            x[b, :len(r)], mask[b, :len(r)] = torch.tensor(r), 1
        where = torch.zeros_like(x, dtype=torch.bool)
        where[torch.arange(len(chunk)), torch.tensor(at)] = True
        logits = model(x, mask, logits_at=where).logits if inputs.is_transformer(model) else \
            model(x, mask).logits[where]
        out.append(logits.float().log_softmax(-1))  # (b, V)
    return torch.cat(out)


def run(loaded: Loaded, out: Path, facts: list[dict], progress=None) -> dict:
    """P@1 and P@10 per relation, and under negation; writes cloze.json and cloze.png into `out`."""
    model, tok = loaded.model, loaded.tokenizer
    usable, skipped = [], defaultdict(int)
    for f in facts:
        oid = _object_id(tok, f["object"])
        if oid is None:
            skipped[f["relation"]] += 1
        else:
            usable.append((f, oid))
    relations: dict[str, dict] = {}
    examples = []
    if usable:
        fill = lambda t, f: t.replace("[X]", f["subject"])  # noqa: E731
        lp = rank(model, tok, [fill(f["template"], f) for f, _ in usable])
        negated = [i for i, (f, _) in enumerate(usable) if f.get("negated")]
        lp_neg = rank(model, tok, [fill(usable[i][0]["negated"], usable[i][0]) for i in negated]) if negated else None
        neg_row = {i: k for k, i in enumerate(negated)}
        top = lp.topk(min(10, lp.shape[1]), -1).indices  # (S, 10)
        for i, (f, oid) in enumerate(usable):
            r = relations.setdefault(f["relation"], {"n": 0, "p@1": 0.0, "p@10": 0.0, "mrr": 0.0, "negated_n": 0,
                                                     "negated_p@1": 0.0, "same_top1_negated": 0.0})
            r["n"] += 1
            r["p@1"] += float(top[i, 0] == oid)
            r["p@10"] += float((top[i] == oid).any())
            r["mrr"] += 1.0 / (1 + int((lp[i] > lp[i, oid]).sum()))
            row = {"relation": f["relation"], "query": fill(f["template"], f), "object": f["object"],
                   "top": [tok.id_to_token(int(t)) for t in top[i, :5]]}
            if i in neg_row:
                nt = int(lp_neg[neg_row[i]].argmax())
                r["negated_n"] += 1
                r["negated_p@1"] += float(nt == oid)
                r["same_top1_negated"] += float(nt == int(top[i, 0]))
                row["negated_top1"] = tok.id_to_token(nt)
            if len(examples) < 40 and sum(e["relation"] == f["relation"] for e in examples) < 8:
                examples.append(row)
            if progress is not None:
                progress.update(1)
        for r in relations.values():
            for k in ("p@1", "p@10", "mrr"):
                r[k] /= r["n"]
            for k in ("negated_p@1", "same_top1_negated"):
                r[k] = r[k] / r["negated_n"] if r["negated_n"] else None
    for rel, n in skipped.items():
        relations.setdefault(rel, {"n": 0, "p@1": None, "p@10": None, "mrr": None})
    for rel, r in relations.items():
        r["skipped"] = skipped.get(rel, 0)
    scored = [r for r in relations.values() if r["n"]]
    mean = {k: (sum(r[k] for r in scored) / len(scored) if scored else None) for k in ("p@1", "p@10", "mrr")}
    result = {"mode": "causal (left context)" if inputs.causal(model) else "masked", "facts": len(facts),
              "scored": len(usable), "relations": relations, "mean": mean, "examples": examples,
              "figures": ["cloze.png"]}
    plot(result, out / "cloze.png", loaded.name)
    inputs.save_json(out / "cloze.json", result)
    return result


def table(result: dict) -> str:
    """The per-relation table as text."""
    lines = [f"{'relation':<26} {'n':>4} {'skip':>4} {'P@1':>6} {'P@10':>6} {'MRR':>6} {'neg P@1':>8} {'same top1':>9}"]
    fmt = lambda v: "   —" if v is None else f"{v:.3f}"  # noqa: E731
    for rel, r in result["relations"].items():
        lines.append(f"{rel:<26} {r['n']:>4} {r['skipped']:>4} {fmt(r['p@1']):>6} {fmt(r['p@10']):>6} {fmt(r['mrr']):>6} "
                     f"{fmt(r.get('negated_p@1')):>8} {fmt(r.get('same_top1_negated')):>9}")
    lines.append(f"{'mean over relations':<26} {result['scored']:>4} {'':>4} {fmt(result['mean']['p@1']):>6} "
                 f"{fmt(result['mean']['p@10']):>6} {fmt(result['mean']['mrr']):>6}")
    return "\n".join(lines)


def plot(result: dict, path: Path, title: str) -> None:
    plt = inputs.pyplot()

    rels = [k for k, r in result["relations"].items() if r["n"]]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(rels) + 2), 3.4))
    x = torch.arange(len(rels)).numpy()
    for off, key, label in ((-0.27, "p@1", "P@1"), (0.0, "p@10", "P@10"), (0.27, "negated_p@1", "P@1 negated")):
        ax.bar(x + off, [result["relations"][r].get(key) or 0.0 for r in rels], 0.27, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r}\n(n={result['relations'][r]['n']})" for r in rels], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(f"cloze ({result['mode']}) — {title}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
