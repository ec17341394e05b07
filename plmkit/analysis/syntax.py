"""Syntactic minimal pairs: subject–verb agreement and negative polarity items. Marvin & Linzen 2018,
"Targeted Syntactic Evaluation of Language Models", arXiv:1808.09031 (the templates); Goldberg 2019,
"Assessing BERT's Syntactic Abilities", arXiv:1901.05287 (scoring a masked LM); Warstadt et al. 2019,
"Investigating BERT's Knowledge of Language: Five Analysis Methods with NPIs", arXiv:1909.02597.

Recipe. An item is a grammatical sentence and an ungrammatical one that differ in one place. The model
is right when it prefers the grammatical one:
- a masked LM reads the sentence with one slot masked (Goldberg 2019). Where the two sentences differ at
  the slot (agreement: "The author [MASK] tall." with is/are) it compares the two words' log-probabilities
  there; where they differ elsewhere (an NPI: "No/The author has [MASK] been here.") it compares the
  log-probability of the same word, "ever", in the two contexts. A word that is not one token of the
  vocabulary cannot be scored this way: its items are counted as skipped;
- a causal LM scores each whole sentence, the sum of its tokens' log-probabilities (Marvin & Linzen).
Accuracy is counted per construction, with its number of items, against two baselines: random choice
(0.5) and the majority rule (always choose the singular form, or always the plural, whichever is right
more often in that construction; NPI items have no such rule).

Constructions. Templates in the style of Marvin & Linzen fill CONSTRUCTIONS from a small lexicon
(NOUNS, PREDICATES, TRANSITIVE): agreement in a simple sentence, across a prepositional phrase, across a
subject and an object relative clause (the attractor noun always has the other number), inside an object
relative clause, and an NPI licensed by "no" against the same sentence with "the", directly and with the
licensor inside a relative clause (Warstadt et al.'s scope distractor). Mined pairs come from a corpus:
each sentence with an auxiliary of VERB_NUMBER (is/are, was/were, has/have, does/do) in finite position
becomes a pair by flipping its number. The corpus sentence is taken as the grammatical one; without a
parse the subject is not checked, so the mined accuracy also counts the corpus's own errors and the
heuristics' misses (subjunctive "were" and non-finite "have" are excluded by their left context).
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from pathlib import Path

import torch

from . import inputs
from .inputs import Loaded

NOUNS = (("author", "authors"), ("pilot", "pilots"), ("farmer", "farmers"), ("teacher", "teachers"),
         ("officer", "officers"), ("doctor", "doctors"), ("student", "students"), ("king", "kings"),
         ("child", "children"), ("woman", "women"))
PREDICATES = (("is", "are", "tall"), ("was", "were", "here"), ("has", "have", "left"), ("is", "are", "old"),
              ("was", "were", "young"), ("laughs", "laugh", ""), ("works", "work", "hard"),
              ("lives", "live", "there"))  # (singular, plural, complement)
TRANSITIVE = (("likes", "like"), ("knows", "know"), ("sees", "see"), ("loves", "love"))
NPI_PREDICATES = ("been here", "seen it", "lived there", "left")
VERB_NUMBER = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has",
               "does": "do", "do": "does"}
# Left neighbours after which an auxiliary is not a finite verb agreeing with a subject.
_NONFINITE = {"to", "will", "would", "can", "could", "shall", "should", "may", "might", "must", "not", "did",
              "does", "do", "doth", "let", "and", "or", "but"}
_SUBJUNCTIVE = {"if", "though", "wish", "as"}

CONSTRUCTIONS = ("simple agreement", "across a prepositional phrase", "across a subject relative clause",
                 "across an object relative clause", "within an object relative clause", "NPI licensed by no",
                 "NPI: licensor in a relative clause")


def requires(loaded: Loaded) -> str | None:
    """The models cloze applies to: a masked LM with its MLM head fills the slot, a causal LM scores text."""
    from .cloze import requires as lm_problem

    return lm_problem(loaded)


# ---- items ---------------------------------------------------------------------------------------------

def _item(construction: str, good: list[str], bad: list[str], slot: int, singular: bool | None,
          source: str = "template") -> dict:
    """A minimal pair as word lists of equal length; `slot` is the word a masked LM is asked for;
    `singular`: whether the grammatical form is the singular one (None for NPI items)."""
    return {"construction": construction, "good": good, "bad": bad, "slot": slot, "singular": singular,
            "source": source}


def _sentence(*parts: str) -> list[str]:
    """Words of a template sentence, capitalised, the full stop a word of its own (so that a slot at the end
    is the bare verb)."""
    words = " ".join(p for p in parts if p).split() + ["."]
    words[0] = words[0].capitalize()
    return words


def _text(words: list[str]) -> str:
    return " ".join(words).replace(" .", ".")


def template_items(per_construction: int = 200, seed: int = 0) -> list[dict]:
    """The template pairs, at most `per_construction` of each (drawn at random, seeded)."""
    rng = random.Random(seed)
    by: dict[str, list[dict]] = defaultdict(list)
    for (n_sg, n_pl), (v_sg, v_pl, comp), number in itertools.product(NOUNS, PREDICATES, (0, 1)):
        subj, verb, wrong = ((n_sg, v_sg, v_pl), (n_pl, v_pl, v_sg))[number]
        simple = _sentence("the", subj, verb, comp)
        by["simple agreement"].append(_item("simple agreement", simple, _sentence("the", subj, wrong, comp), 2,
                                            number == 0))
        for m_sg, m_pl in NOUNS:
            if m_sg == n_sg:
                continue
            attractor = (m_pl, m_sg)[number]  # the other number: the attractor pulls the wrong way
            good = _sentence("the", subj, "next to the", attractor, verb, comp)
            by["across a prepositional phrase"].append(_item(
                "across a prepositional phrase", good, _sentence("the", subj, "next to the", attractor, wrong, comp),
                6, number == 0))
            for t_sg, t_pl in TRANSITIVE:
                rel_subj = (t_sg, t_pl)[number]
                good = _sentence("the", subj, "that", rel_subj, "the", attractor, verb, comp)
                by["across a subject relative clause"].append(_item(
                    "across a subject relative clause", good,
                    _sentence("the", subj, "that", rel_subj, "the", attractor, wrong, comp), 6, number == 0))
                rel_obj, rel_wrong = ((t_pl, t_sg), (t_sg, t_pl))[number]  # agrees with the attractor
                good = _sentence("the", subj, "that the", attractor, rel_obj, verb, comp)
                by["across an object relative clause"].append(_item(
                    "across an object relative clause", good,
                    _sentence("the", subj, "that the", attractor, rel_obj, wrong, comp), 6, number == 0))
                by["within an object relative clause"].append(_item(
                    "within an object relative clause", good,
                    _sentence("the", subj, "that the", attractor, rel_wrong, verb, comp), 5, number == 1))
        for pred in NPI_PREDICATES:
            aux = ("has", "have")[number]
            good = _sentence("no", subj, aux, "ever", pred)
            by["NPI licensed by no"].append(_item("NPI licensed by no", good, _sentence("the", subj, aux, "ever", pred),
                                                  3, None))
            other = NOUNS[(NOUNS.index((n_sg, n_pl)) + 1) % len(NOUNS)][1]
            t = TRANSITIVE[len(pred) % len(TRANSITIVE)][1]
            good = _sentence("no", subj, "that the", other, t, aux, "ever", pred)
            bad = _sentence("the", subj, "that no", other, t, aux, "ever", pred)
            by["NPI: licensor in a relative clause"].append(_item("NPI: licensor in a relative clause", good, bad,
                                                                  7, None))
    out = []
    for name in CONSTRUCTIONS:
        items = list({" ".join(i["good"]) + "|" + " ".join(i["bad"]): i for i in by[name]}.values())
        out += items if len(items) <= per_construction else rng.sample(items, per_construction)
    return out


def mine_items(sentences: list[list[str]], limit: int | None = 500, seed: int = 0) -> list[dict]:
    """Agreement pairs from corpus sentences: the first finite auxiliary of VERB_NUMBER, its number flipped.
    Constructions are named by the auxiliary ("corpus: is/are"); at most `limit` pairs (seeded draw)."""
    out = []
    for words in sentences:
        for i, w in enumerate(words):
            low = w.lower()
            if low not in VERB_NUMBER or i == 0 or not words[i - 1].isalpha():
                continue
            prev = words[i - 1].lower()
            if prev in _NONFINITE or (low in ("was", "were") and prev == "i"):
                continue
            if low == "were" and _SUBJUNCTIVE & {x.lower() for x in words[max(0, i - 4):i]}:
                continue
            flipped = VERB_NUMBER[low]
            bad = list(words)
            bad[i] = flipped.capitalize() if w[0].isupper() else flipped
            pair = "/".join(sorted((low, flipped), key=lambda v: v not in ("is", "was", "has", "does")))
            out.append(_item(f"corpus: {pair}", list(words), bad, i, low in ("is", "was", "has", "does"), "corpus"))
            break
    if limit is not None and len(out) > limit:
        rng = random.Random(seed)
        out = [out[i] for i in sorted(rng.sample(range(len(out)), limit))]
    return out


# ---- scoring ---------------------------------------------------------------------------------------------

def _slot_text(words: list[str], slot: int) -> str:
    return _text(words[:slot] + ["[Y]"] + words[slot + 1:])


def _word_id(tokenizer, word: str) -> int | None:
    from .cloze import _object_id

    return _object_id(tokenizer, word)


@torch.no_grad()
def sentence_logprob(model, tokenizer, sentences: list[str], batch_size: int = 32) -> torch.Tensor:
    """(S,) the causal LM's log-probability of each sentence: the sum over its tokens, each read after the
    document separator and the tokens before it."""
    from ..evaluation.lm import next_token_logprobs

    rows = [[tokenizer.doc_sep_id] + tokenizer.encode(s) for s in sentences]
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        T = max(len(r) for r in chunk)
        x = torch.full((len(chunk), T), pad, dtype=torch.long)
        real = torch.zeros(len(chunk), T - 1)
        for b, r in enumerate(chunk):
            x[b, :len(r)] = torch.tensor(r)
            real[b, :len(r) - 1] = 1  # right padding: a causal LM's real tokens never read it
        out.append((next_token_logprobs(model, x) * real).sum(1))  # (b,)
    return torch.cat(out)


def score(loaded: Loaded, items: list[dict], progress=None) -> list[dict]:
    """Each item with "good_score", "bad_score" and "correct", or "skipped" with the reason."""
    model, tok = loaded.model, loaded.tokenizer
    scored = []
    if inputs.causal(model):
        texts = [_text(s) for it in items for s in (it["good"], it["bad"])]
        lp = sentence_logprob(model, tok, texts).tolist()
        for k, it in enumerate(items):
            scored.append({**it, "good_score": lp[2 * k], "bad_score": lp[2 * k + 1]})
        if progress is not None:
            progress.update(len(items))
    else:
        from .cloze import rank

        queries, where = [], []
        for it in items:
            s = it["slot"]
            ids = _word_id(tok, it["good"][s]), _word_id(tok, it["bad"][s])
            if None in ids:
                scored.append({**it, "skipped": "a form is not one token"})
                continue
            where.append((len(scored), ids))
            queries += [_slot_text(it["good"], s), _slot_text(it["bad"], s)]
            scored.append(dict(it))
        for start in range(0, len(where), 128):  # (2·chunk, V) log-probabilities at a time
            chunk = where[start:start + 128]
            lp = rank(model, tok, queries[2 * start:2 * (start + len(chunk))])
            for k, (row, (good_id, bad_id)) in enumerate(chunk):
                scored[row]["good_score"] = float(lp[2 * k, good_id])
                scored[row]["bad_score"] = float(lp[2 * k + 1, bad_id])
            if progress is not None:
                progress.update(len(chunk))
    for it in scored:
        if "skipped" not in it:
            it["correct"] = it["good_score"] > it["bad_score"]
    return scored


def run(loaded: Loaded, out: Path, corpus: list[list[str]] | None = None, per_construction: int = 200,
        mined: int = 500, progress=None) -> dict:
    """Accuracy per construction on the templates and on pairs mined from `corpus`; writes syntax.json and
    syntax.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    items = template_items(per_construction) + (mine_items(corpus, mined) if corpus else [])
    scored = score(loaded, items, progress)
    rows: dict[str, dict] = {}
    for it in scored:
        r = rows.setdefault(it["construction"], {"source": it["source"], "n": 0, "correct": 0, "skipped": 0,
                                                 "singular": 0, "accuracy": None, "random_baseline": 0.5,
                                                 "majority_baseline": None})
        if "skipped" in it:
            r["skipped"] += 1
            continue
        r["n"] += 1
        r["correct"] += int(it["correct"])
        r["singular"] += int(bool(it["singular"]))
    for name, r in rows.items():
        if r["n"]:
            r["accuracy"] = r["correct"] / r["n"]
            if not name.startswith("NPI"):
                r["majority_baseline"] = max(r["singular"], r["n"] - r["singular"]) / r["n"]
        del r["singular"]
    done = [r for r in rows.values() if r["n"]]
    mean = {src: (sum(r["accuracy"] for r in done if r["source"] == src) /
                  max(1, sum(r["source"] == src for r in done)) if any(r["source"] == src for r in done) else None)
            for src in ("template", "corpus")}
    examples = []
    for name in rows:
        examples += [{"construction": name, "good": _text(it["good"]), "bad": _text(it["bad"]),
                      "correct": it["correct"], "margin": it["good_score"] - it["bad_score"]}
                     for it in [x for x in scored if x["construction"] == name and "correct" in x][:3]]
    result = {"mode": ("causal: whole-sentence log-probability" if inputs.causal(loaded.model)
                       else "masked: the two forms at [MASK] (Goldberg 2019)"),
              "items": len(items), "scored": sum(r["n"] for r in rows.values()), "constructions": rows,
              "mean": mean, "examples": examples, "figures": ["syntax.png"]}
    plot(result, out / "syntax.png", loaded.name)
    inputs.save_json(out / "syntax.json", result)
    return result


def table(result: dict) -> str:
    fmt = lambda v: "    —" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{'construction':<36} {'n':>5} {'skip':>5} {'accuracy':>8} {'majority':>8} {'random':>6}"]
    for name, r in result["constructions"].items():
        lines.append(f"{name:<36} {r['n']:>5} {r['skipped']:>5} {fmt(r['accuracy']):>8} "
                     f"{fmt(r['majority_baseline']):>8} {r['random_baseline']:>6.2f}")
    for src, v in result["mean"].items():
        if v is not None:
            lines.append(f"{'mean over ' + src + ' constructions':<36} {'':>5} {'':>5} {fmt(v):>8}")
    return "\n".join(lines)


def plot(result: dict, path: Path, title: str) -> None:
    plt = inputs.pyplot()

    names = [k for k, r in result["constructions"].items() if r["n"]]
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(names) + 1.4))
    y = list(range(len(names)))[::-1]
    rows = [result["constructions"][k] for k in names]
    ax.barh(y, [r["accuracy"] for r in rows], color=["C0" if r["source"] == "template" else "C2" for r in rows])
    for yy, r in zip(y, rows):
        ax.text(min(r["accuracy"] + 0.01, 0.93), yy, f"{r['accuracy']:.2f}", va="center", fontsize=7)
    for yy, r in zip(y, rows):
        if r["majority_baseline"] is not None:
            ax.plot([r["majority_baseline"]] * 2, [yy - 0.4, yy + 0.4], color="k", lw=1.5)
    ax.axvline(0.5, color="0.5", ls="--", lw=1)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{k} (n={r['n']})" for k, r in zip(names, rows)], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (dashed: random; black tick: majority form)", fontsize=8)
    ax.set_title(f"syntax ({result['mode']}) — {title}", fontsize=8)
    fig.subplots_adjust(left=0.4, right=0.97, top=0.9, bottom=0.8 / (0.38 * len(names) + 1.4))
    fig.savefig(path, dpi=90)
    plt.close(fig)
