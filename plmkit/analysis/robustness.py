"""Adversarial robustness of a fine-tuned text classifier: word-substitution attacks, Jin, Jin, Zhou &
Szolovits 2020, "Is BERT Really Robust? A Strong Baseline for Natural Language Attack on Text
Classification and Entailment", arXiv:1907.11932 (TextFooler), and universal adversarial triggers,
Wallace, Feng, Kandpal, Gardner & Singh 2019, "Universal Adversarial Triggers for Attacking and Analyzing
NLP", arXiv:1908.07125.

TextFooler (Jin et al. Algorithm 1), per test example the victim classifies correctly:
1. word importance by deletion: I_i = p_y(X) − p_y(X∖w_i), plus p_ŷ(X∖w_i) − p_ŷ(X) when deleting w_i
   changes the prediction to ŷ (one query per word);
2. in order of importance, skipping stop words, each word's substitutes are its nearest word2vec
   neighbours (at most `candidates`, cosine ≥ `min_cosine`), one query each;
3. a substitute must keep the text close in meaning: the cosine between the sentence vectors (mean of the
   encoder's last layer) of the original and the perturbed text, both cut to the window of `window` words
   around the perturbed positions (the paper: 15 words, Universal Sentence Encoder), must be ≥
   `min_similarity`;
4. greedy: if a surviving substitute flips the label, keep the one with the highest similarity and stop;
   else keep the one that lowers p_y most and go on to the next word. The attack fails when the words
   run out or the example's `max_queries` would be exceeded.
Departures: the vectors are plain word2vec (the paper uses counter-fitted vectors, which push antonyms
apart: word2vec neighbours include them); no part-of-speech check; the sentence encoder is the victim's
own body unless another model is given. Only the words within the victim's max_length are attacked
(the rest it never reads). Reported: accuracy before and under attack, attack success rate (of the
examples classified correctly), perturbed-word ratio and similarity of the successful examples, and
queries per attacked example.

Universal triggers (Wallace et al. §2-3): a trigger of `trigger_length` tokens, put before every input of
gold class c, is searched to raise the classifier's loss on class c. Starting from "the the the", each
position in turn is replaced by HotFlip's first-order guess (Ebrahimi et al. 2018): the `trigger_candidates`
tokens w maximising (e_w − e_t) · ∇_{e_t} L over the embedding matrix, each re-scored by the real loss on
the search batch, the best kept when it raises the loss (a beam of one where the paper uses a beam
search). Triggers are searched on the fine-tuning training data and evaluated on the test set: the
accuracy on each class with and without its trigger.

Shape legend: N = texts, T = tokens, H = hidden size, V = vocabulary, K = trigger length.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.tasks import Example, align_words, read_task
from ..errors import PlmkitError
from . import inputs
from .inputs import Loaded

STOP_WORDS = frozenset("""a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my myself no
nor not now of off on once only or other our ours ourselves out over own same she should so some such than that
the their theirs them themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves""".split())
_WORD = re.compile(r"^(\W*)([A-Za-z][A-Za-z'-]*?)(\W*)$")


def requires(loaded: Loaded) -> str | None:
    tm = loaded.task_model
    if tm is None:
        return "not a fine-tuned directory (the attacks need a classifier: plmkit finetune --task classify)"
    if tm.config.task != "classify" or tm.config.generative:
        return f"a {tm.config.task} model{' (text to text)' if tm.config.generative else ''}; the attacks need " \
               "a single-text classifier with a linear head"
    return None


def trigger_problem(loaded: Loaded) -> str | None:
    """Why no trigger can be searched (no input embedding matrix to take gradients at), or None."""
    if loaded.task_model.frozen:
        return "the body is frozen under a scalar mix: no gradient reaches its input embedding"
    return None if isinstance(_embedding(loaded.task_model.body), nn.Embedding) else \
        f"{loaded.member.name} has no input token embedding to search over"


def _embedding(body: nn.Module):
    emb = getattr(body, "embeddings", None)
    return getattr(emb, "tokens", emb)


# ---- the victim ------------------------------------------------------------------------------------------

class Victim:
    """A fine-tuned classifier that counts the texts it is asked about."""

    def __init__(self, task_model, batch_size: int = 64):
        self.model, self.tokenizer, self.batch_size = task_model.eval(), task_model.tokenizer, batch_size
        self.labels = list(task_model.config.labels)
        self.queries = 0

    @torch.no_grad()
    def probs(self, texts: list[str]) -> torch.Tensor:
        """(N, C) class probabilities."""
        from ..heads import collate, encode

        self.queries += len(texts)
        out = []
        pad = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        for i in range(0, len(texts), self.batch_size):
            feats = encode([Example(text=t) for t in texts[i:i + self.batch_size]], self.model, self.tokenizer,
                           labelled=False)
            out.append(self.model(collate(feats, pad))["logits"].float().softmax(-1))
        return torch.cat(out)

    def readable_words(self, text: str) -> list[str]:
        """The words of `text` whose tokens fit in the model's max_length (the rest it never reads)."""
        words = text.split()
        _, word_of = align_words(self.tokenizer, words)
        room = self.model.config.max_length - 2  # a single text's frame: [CLS] … [SEP], [start] … [extract]
        return words[:max(word_of[:room], default=-1) + 1]


# ---- word vectors ----------------------------------------------------------------------------------------

class Neighbours:
    """Nearest words by cosine in a word-vector table (lower-cased words)."""

    def __init__(self, words: list[str], vectors: torch.Tensor, source: str):
        self.words, self.source = words, source
        self.index = {w: i for i, w in enumerate(words)}
        self.unit = F.normalize(vectors.float(), dim=-1)  # (V, m)

    def __call__(self, word: str, k: int, min_cosine: float) -> list[str]:
        i = self.index.get(word.lower())
        if i is None:
            return []
        sims = self.unit @ self.unit[i]  # (V,)
        sims[i] = -1
        top = sims.topk(min(k, len(self.words) - 1))
        return [self.words[j] for s, j in zip(top.values.tolist(), top.indices.tolist())
                if s >= min_cosine and self.words[j].isalpha()]


def load_vectors(directory) -> Neighbours:
    """The vectors of a `plmkit pretrain --model word2vec` directory."""
    from .. import load
    from ..interop.hf import read_model_config
    from ..tokenizers import load_tokenizer

    d = Path(directory)
    member, _, _ = read_model_config(d)
    if member.name != "word2vec":
        raise PlmkitError(f"--vectors must be a word2vec directory (plmkit pretrain --model word2vec), not "
                          f"{member.name}", path=d)
    model, tok = load(d), load_tokenizer(d)
    vocab = sorted(tok.backend.get_vocab().items(), key=lambda kv: kv[1])
    words = [w for w, _ in vocab]
    return Neighbours(words[1:], model.embeddings.weight.detach()[1:], f"word2vec directory {d}")  # row 0: <unk>


def train_vectors(texts: list[str], source: str, dim: int = 100, epochs: int = 5, seed: int = 0) -> Neighbours:
    """Skip-gram vectors trained with gensim on `texts` (the words of plmkit's word2vec member)."""
    try:
        from gensim.models import Word2Vec
    except ImportError:
        raise PlmkitError("without --vectors the neighbours are trained with gensim: pip install "
                          "'plmkit[word2vec]'") from None
    from ..models.word2vec import _stable_hash, word_tokenizer

    backend = word_tokenizer([]).backend
    sents = [[w for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(t))]
             for t in texts]
    quiet = logging.getLogger("gensim")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # gensim reports every percent of every epoch at INFO
    try:
        w2v = Word2Vec(sents, vector_size=dim, window=5, min_count=2, sg=1, negative=5, epochs=epochs, seed=seed,
                       workers=1, hashfxn=_stable_hash)
    finally:
        quiet.setLevel(level)
    words = list(w2v.wv.index_to_key)
    return Neighbours(words, torch.from_numpy(w2v.wv.vectors.copy()),
                      f"gensim skip-gram ({dim} d, {epochs} epochs) trained on {source}: {len(texts)} texts, "
                      f"{len(words)} words")


# ---- TextFooler ---------------------------------------------------------------------------------------

class Similarity:
    """Cosine between sentence vectors (mean of the last layer) of word windows."""

    def __init__(self, model, tokenizer, window: int = 15):
        self.model, self.tokenizer, self.window = model, tokenizer, window

    def __call__(self, original: list[str], perturbed: list[list[str]], changed: list[set[int]]) -> list[float]:
        from ..heads.pooling import embed

        texts = []
        for words, where in zip(perturbed, changed):
            lo, hi = max(0, min(where) - self.window // 2), min(len(words), max(where) + self.window // 2 + 1)
            texts += [" ".join(original[lo:hi]), " ".join(words[lo:hi])]
        v = F.normalize(embed(self.model, self.tokenizer, texts, method="mean", max_length=128), dim=-1)
        return (v[0::2] * v[1::2]).sum(-1).tolist()


def _split(word: str) -> tuple[str, str, str] | None:
    m = _WORD.match(word)
    return m.groups() if m else None


def _cased(new: str, old: str) -> str:
    return new.capitalize() if old[:1].isupper() else new


def attack(victim: Victim, text: str, label: int, neighbours: Neighbours, similarity: Similarity,
           candidates: int = 30, min_cosine: float = 0.5, min_similarity: float = 0.7,
           max_queries: int = 2000) -> dict:
    """One example through TextFooler. Returns {"status": "skipped" (already misclassified) | "success" |
    "failure", "queries", and for a success "words", "changed", "ratio", "similarity", "adversarial"}."""
    start = victim.queries
    words = victim.readable_words(text)
    p = victim.probs([" ".join(words)])[0]
    if int(p.argmax()) != label:
        return {"status": "skipped", "queries": victim.queries - start}
    left = lambda: max_queries - (victim.queries - start)  # noqa: E731
    if left() < len(words):  # not even the importance ranking fits in the budget
        return {"status": "failure", "queries": victim.queries - start}
    # 1. importance by deletion
    deleted = victim.probs([" ".join(words[:i] + words[i + 1:]) for i in range(len(words))]) if len(words) > 1 \
        else torch.zeros(0, len(p))
    importance = []
    for i, q in enumerate(deleted):
        score = float(p[label] - q[label])
        new = int(q.argmax())
        if new != label:
            score += float(q[new] - p[new])
        importance.append((score, i))
    order = [i for _, i in sorted(importance, key=lambda x: -x[0])]
    current, changed, p_y = list(words), set(), float(p[label])
    for i in order:
        parts = _split(words[i])
        if parts is None or parts[1].lower() in STOP_WORDS:
            continue
        pre, core, post = parts
        subs = neighbours(core, candidates, min_cosine)
        if not subs:
            continue
        subs = subs[:left()]
        if not subs:
            break
        trials = []
        for s in subs:
            w = list(current)
            w[i] = pre + _cased(s, core) + post
            trials.append(w)
        q = victim.probs([" ".join(w) for w in trials])
        sims = similarity(words, trials, [changed | {i}] * len(trials))
        ok = [k for k, s in enumerate(sims) if s >= min_similarity]
        flips = [k for k in ok if int(q[k].argmax()) != label]
        if flips:
            best = max(flips, key=lambda k: sims[k])
            changed.add(i)
            return {"status": "success", "queries": victim.queries - start, "words": len(words),
                    "changed": len(changed), "ratio": len(changed) / len(words), "similarity": sims[best],
                    "original": " ".join(words), "adversarial": " ".join(trials[best]),
                    "label": victim.labels[int(q[best].argmax())]}
        if ok:
            best = min(ok, key=lambda k: float(q[k, label]))
            if float(q[best, label]) < p_y:
                current, p_y = trials[best], float(q[best, label])
                changed.add(i)
        if left() <= 0:
            break
    return {"status": "failure", "queries": victim.queries - start}


def textfooler(victim: Victim, examples: list[Example], neighbours: Neighbours, similarity: Similarity,
               progress=None, **settings) -> dict:
    """The attack on every example and its summary."""
    label_id = {lab: i for i, lab in enumerate(victim.labels)}
    rows = []
    for e in examples:
        if e.label not in label_id:
            raise PlmkitError(f"label {e.label!r} is not one the classifier knows ({', '.join(victim.labels)})",
                              line=e.line)
        rows.append(attack(victim, e.text, label_id[e.label], neighbours, similarity, **settings))
        if progress is not None:
            progress.update(1)
    attacked = [r for r in rows if r["status"] != "skipped"]
    won = [r for r in attacked if r["status"] == "success"]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {"examples": len(rows), "accuracy": len(attacked) / len(rows) if rows else None,
            "accuracy_under_attack": (len(attacked) - len(won)) / len(rows) if rows else None,
            "success_rate": len(won) / len(attacked) if attacked else None,
            "perturbed_word_ratio": mean([r["ratio"] for r in won]),
            "similarity": mean([r["similarity"] for r in won]),
            "queries_per_example": mean([r["queries"] for r in attacked]),
            "max_queries_seen": max((r["queries"] for r in attacked), default=0),
            "settings": settings, "successes": [{k: r[k] for k in ("original", "adversarial", "label", "changed",
                                                                    "similarity")} for r in won[:10]]}


# ---- universal triggers ---------------------------------------------------------------------------------

class _Triggered:
    """Encoded examples with room for a trigger after the frame's leading tokens."""

    def __init__(self, task_model, examples: list[Example]):
        from ..heads import encode
        from ..heads.inputs import Format

        self.model, tok = task_model, task_model.tokenizer
        self.fmt = Format.of(task_model, tok)
        self.features = encode(examples, task_model, tok)
        self.pad = tok.pad_id if tok.pad_id is not None else 0

    def batch(self, trigger: list[int], rows: list[int] | None = None) -> dict[str, torch.Tensor]:
        from ..heads import collate

        lead, tail = self.fmt.lead, 2 if self.fmt.cls_last else 1  # frame tokens before / after the text
        limit = self.model.config.max_length
        feats = []
        for f in (self.features if rows is None else [self.features[r] for r in rows]):
            ids, types = f["input_ids"], f["token_type_ids"]
            over = max(0, len(ids) + len(trigger) - limit)
            cut = len(ids) - tail - over  # the text's last kept token ends here
            feats.append({"input_ids": ids[:lead] + trigger + ids[lead:cut] + ids[len(ids) - tail:],
                          "token_type_ids": types[:lead] + [0] * len(trigger) + types[lead:cut] + types[len(ids) - tail:],
                          "labels": f["labels"]})
        return collate(feats, self.pad)


def _accuracy(data: _Triggered, trigger: list[int], batch_size: int = 64) -> float:
    right = 0
    with torch.no_grad():
        for i in range(0, len(data.features), batch_size):
            b = data.batch(trigger, list(range(i, min(i + batch_size, len(data.features)))))
            right += int((data.model(b)["logits"].argmax(-1) == b["labels"]).sum())
    return right / len(data.features)


def search_trigger(task_model, examples: list[Example], length: int = 3, rounds: int = 4, candidates: int = 10,
                   start: str = "the") -> tuple[list[int], list[float]]:
    """A trigger that raises the loss on `examples` (all of one gold class): token ids and the loss after
    each round (the first entry: the starting trigger's)."""
    tok = task_model.tokenizer
    data = _Triggered(task_model, examples)
    emb = _embedding(task_model.body)
    E = emb.weight.detach()  # (V, H)
    banned = torch.zeros(E.shape[0], dtype=torch.bool)
    banned[list(tok.special_ids)] = True
    for i in range(min(E.shape[0], tok.vocab_size)):
        t = tok.id_to_token(i) or ""
        banned[i] |= t.startswith(("[unused", "<|", "[")) and t.endswith(("]", "|>"))
    banned[tok.vocab_size:] = True  # rows past the tokenizer (padding of the matrix)
    first = tok.encode(start)
    trigger = [first[0] if first else int((~banned).nonzero()[0])] * length
    batch = data.batch(trigger)
    grabbed: list[torch.Tensor] = []

    def grab(_module, _inp, out):
        out.retain_grad()
        grabbed.append(out)

    def loss_of(trig: list[int]) -> float:
        with torch.no_grad():
            return float(task_model(data.batch(trig))["loss"])

    losses = [loss_of(trigger)]
    was_training = task_model.training
    task_model.eval()  # no dropout: the gradient and the re-scoring see the same function
    for _ in range(rounds):
        for j in range(length):
            grabbed.clear()
            handle = emb.register_forward_hook(grab)
            try:
                task_model.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    task_model(batch)["loss"].backward()
            finally:
                handle.remove()
            pos = data.fmt.lead + j
            g = grabbed[0].grad[:, pos].sum(0)  # (H,) ∂L/∂e at the trigger's j-th position, summed over the batch
            gain = (E @ g).masked_fill(banned, float("-inf"))  # (V,) first-order rise of L, up to a constant
            best, best_loss = trigger, losses[-1]
            for w in gain.topk(candidates).indices.tolist():
                trial = trigger[:j] + [w] + trigger[j + 1:]
                value = loss_of(trial)
                if value > best_loss:
                    best, best_loss = trial, value
            trigger = best
            batch = data.batch(trigger)
        losses.append(loss_of(trigger))
    task_model.zero_grad(set_to_none=True)
    task_model.train(was_training)
    return trigger, losses


def triggers(task_model, search: list[Example], test: list[Example], length: int = 3, rounds: int = 4,
             candidates: int = 10, max_search: int = 64, seed: int = 0, progress=None) -> dict:
    """A trigger per gold class, searched on (at most `max_search` of) its `search` examples, and the test
    accuracy of each class with and without it."""
    tok = task_model.tokenizer
    rng = random.Random(seed)
    labels = list(task_model.config.labels)
    per_class, clean_right, hit_right, n_all = {}, 0, 0, 0
    for lab in labels:
        pool = [e for e in search if e.label == lab]
        held = [e for e in test if e.label == lab]
        if not pool or not held:
            continue
        pool = rng.sample(pool, min(max_search, len(pool)))
        trig, losses = search_trigger(task_model, pool, length, rounds, candidates)
        data = _Triggered(task_model, held)
        clean, hit = _accuracy(data, []), _accuracy(data, trig)
        per_class[lab] = {"trigger": [tok.id_to_token(i) for i in trig], "trigger_text": tok.decode(trig),
                          "test_examples": len(held), "accuracy": clean, "accuracy_with_trigger": hit,
                          "search_examples": len(pool), "search_loss": losses}
        clean_right += clean * len(held)
        hit_right += hit * len(held)
        n_all += len(held)
        if progress is not None:
            progress.update(1)
    return {"length": length, "rounds": rounds, "candidates": candidates, "classes": per_class,
            "accuracy": clean_right / n_all if n_all else None,
            "accuracy_with_triggers": hit_right / n_all if n_all else None}


# ---- the method -----------------------------------------------------------------------------------------

def _examples(path, what: str) -> list[Example]:
    if not path:
        raise PlmkitError(f"no {what}: give it, or analyse a directory written by plmkit finetune (its "
                          "plmkit.json names the files)")
    return read_task(path, "classify")


def run(loaded: Loaded, out: Path, test=None, train=None, vectors=None, encoder=None, max_examples: int = 100,
        candidates: int = 30, min_cosine: float = 0.5, min_similarity: float = 0.7, max_queries: int = 2000,
        trigger_length: int = 3, trigger_rounds: int = 4, seed: int = 0, progress=None) -> dict:
    """TextFooler on (at most `max_examples` of) the test data and a universal trigger per class; writes
    robustness.json and robustness.png into `out`. `test`/`train` default to the files the fine-tuning
    run recorded; `vectors` a word2vec directory (else gensim on `train`); `encoder` a model directory for
    the similarity (else the victim's body)."""
    reason = requires(loaded)
    if reason:
        raise PlmkitError(f"robustness does not apply: {reason}", path=loaded.path)
    out.mkdir(parents=True, exist_ok=True)
    run_info = loaded.meta.get("finetuned") or {}
    test_path, train_path = test or run_info.get("test"), train or run_info.get("train")
    test_ex = _examples(test_path, "test data (--data)")
    rng = random.Random(seed)
    sample = test_ex if len(test_ex) <= max_examples else \
        [test_ex[i] for i in sorted(rng.sample(range(len(test_ex)), max_examples))]
    victim = Victim(loaded.task_model)
    if vectors:
        neighbours = load_vectors(vectors)
    else:
        neighbours = train_vectors([e.text for e in _examples(train_path, "training data (--train)")],
                                   str(train_path), seed=seed)
    if encoder:
        enc = inputs.load(encoder)
        similarity = Similarity(enc.model, enc.tokenizer)
    else:
        similarity = Similarity(loaded.task_model.body, loaded.tokenizer)
    fooled = textfooler(victim, sample, neighbours, similarity, progress, candidates=candidates,
                        min_cosine=min_cosine, min_similarity=min_similarity, max_queries=max_queries)
    result = {"test": str(test_path), "vectors": neighbours.source,
              "similarity_encoder": str(encoder) if encoder else "the victim's body (mean of its last layer)",
              "textfooler": fooled}
    why_not = trigger_problem(loaded)
    if why_not:
        result["triggers"] = {"skipped": why_not}
    else:
        search = _examples(train_path, "training data (--train)")
        result["triggers"] = triggers(loaded.task_model, search, test_ex, trigger_length, trigger_rounds,
                                      seed=seed, progress=progress)
    result["figures"] = ["robustness.png"]
    plot(result, out / "robustness.png", loaded.name)
    inputs.save_json(out / "robustness.json", result)
    return result


def table(result: dict) -> str:
    f = result["textfooler"]
    fmt = lambda v, d=3: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [f"TextFooler on {f['examples']} test examples ({result['vectors']}; similarity: "
             f"{result['similarity_encoder']}):",
             f"  accuracy {fmt(f['accuracy'])} → under attack {fmt(f['accuracy_under_attack'])}; success rate "
             f"{fmt(f['success_rate'])}; perturbed words {fmt(f['perturbed_word_ratio'])}; similarity "
             f"{fmt(f['similarity'])}; queries per example {fmt(f['queries_per_example'], 1)}"]
    t = result["triggers"]
    if "skipped" in t:
        lines.append(f"triggers: skipped ({t['skipped']})")
    else:
        lines.append(f"universal triggers ({t['length']} tokens): test accuracy {fmt(t['accuracy'])} → "
                     f"{fmt(t['accuracy_with_triggers'])}")
        for lab, c in t["classes"].items():
            lines.append(f"  {lab:<12} {c['test_examples']:>5} examples  {fmt(c['accuracy'])} → "
                         f"{fmt(c['accuracy_with_trigger'])}  trigger: {' '.join(c['trigger'])}")
    return "\n".join(lines)


def plot(result: dict, path: Path, title: str) -> None:
    plt = inputs.pyplot()

    f, t = result["textfooler"], result["triggers"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    bars = [("accuracy", f["accuracy"]), ("under attack", f["accuracy_under_attack"]),
            ("success rate", f["success_rate"]), ("perturbed words", f["perturbed_word_ratio"])]
    axes[0].bar(range(len(bars)), [v or 0.0 for _, v in bars], color=["C0", "C3", "C1", "C2"])
    axes[0].set_xticks(range(len(bars)))
    axes[0].set_xticklabels([k for k, _ in bars], fontsize=7)
    axes[0].set_ylim(0, 1)
    axes[0].set_title(f"TextFooler, {f['examples']} examples, {f['queries_per_example'] or 0:.0f} queries each",
                      fontsize=8)
    if "classes" in t and t["classes"]:
        labs = list(t["classes"])
        x = torch.arange(len(labs)).numpy()
        axes[1].bar(x - 0.2, [t["classes"][k]["accuracy"] for k in labs], 0.4, label="clean")
        axes[1].bar(x + 0.2, [t["classes"][k]["accuracy_with_trigger"] for k in labs], 0.4, label="with trigger")
        axes[1].set_xticks(x)
        axes[1].set_xticklabels([f"{k}\n“{t['classes'][k]['trigger_text']}”" for k in labs], fontsize=7)
        axes[1].set_ylim(0, 1)
        axes[1].legend(fontsize=7)
        axes[1].set_title("universal triggers: test accuracy per class", fontsize=8)
    else:
        axes[1].axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
