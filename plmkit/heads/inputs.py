"""Task examples → model inputs, in the format the body was pre-trained for, and model outputs →
predictions and metrics.

Bidirectional bodies (BERT): `[CLS] a [SEP]`, `[CLS] a [SEP] b [SEP]` with segment ids 0/1; a body with an
`input_frame(tokenizer)` names its own three tokens instead (ELMo: its document separator; word2vec: <unk>).
A body with `cls_at_end` (XLNet, Yang et al. 2019, §3.1): `a [SEP] [CLS]`, `a [SEP] b [SEP] [CLS]` with
segment ids 0, 1, and 2 for [CLS], which the heads pool.
Causal bodies (GPT, Radford et al. 2018, §3.3, Fig. 1): classification `[start] a [extract]`;
entailment `[start] premise [delim] hypothesis [extract]`; similarity both orders, as two views whose
features are added; multiple choice `[start] context [delim] answer [extract]` once per option.
Long QA contexts are cut into overlapping windows that start `doc_stride` tokens apart (BERT's run_squad.py).
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import PlmkitError
from ..evaluation.metrics import Classification, Regression, SquadQA, Tagging, is_bio
from ..data.tasks import Example, align_words, first_subtoken_labels

MAX_ANSWER_TOKENS = 30  # longest answer span considered, as in BERT's run_squad.py


@dataclasses.dataclass
class Format:
    """The special tokens framing each input sequence."""

    begin: int  # [CLS] or [start]
    middle: int  # [SEP] or [delim]
    end: int  # [SEP] or [extract]
    causal: bool
    pad: int
    segments: bool  # sentence B gets token type 1 (BERT); GPT and RoBERTa-style bodies have no such embedding
    cls_last: bool = False  # XLNet: no begin token; the sequence ends [SEP] [CLS] (middle, end)

    @property
    def lead(self) -> int:
        """Tokens before the first text."""
        return 0 if self.cls_last else 1

    @classmethod
    def of(cls, model, tokenizer) -> "Format":
        pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        # XLM's token-type table holds languages: a body says so with segment_embeddings = False.
        segments = getattr(model.body, "segment_embeddings", getattr(model.body.config, "type_vocab_size", 0) >= 2)
        if model.causal:
            start, delim, extract = (tokenizer.token_to_id(t) for t in model.config.gpt_tokens)
            return cls(start, delim, extract, True, pad, segments)
        if hasattr(model.body, "input_frame"):
            return cls(*model.body.input_frame(tokenizer), False, pad, segments)
        if tokenizer.cls_id is None or tokenizer.sep_id is None:
            raise PlmkitError("the tokenizer has no [CLS]/[SEP] tokens to frame a bidirectional model's input")
        if getattr(model.body, "cls_at_end", False):
            return cls(tokenizer.cls_id, tokenizer.sep_id, tokenizer.cls_id, False, pad, True, cls_last=True)
        return cls(tokenizer.cls_id, tokenizer.sep_id, tokenizer.sep_id, False, pad, segments)

    def single(self, a: list[int]) -> tuple[list[int], list[int]]:
        if self.cls_last:
            return [*a, self.middle, self.end], [0] * (len(a) + 1) + [2]
        ids = [self.begin, *a, self.end]
        return ids, [0] * len(ids)

    def pair(self, a: list[int], b: list[int]) -> tuple[list[int], list[int]]:
        if self.cls_last:
            return [*a, self.middle, *b, self.middle, self.end], [0] * (len(a) + 1) + [1] * (len(b) + 1) + [2]
        first, second = [self.begin, *a, self.middle], [*b, self.end]
        # Without segment embeddings the delimiter alone separates the texts.
        return first + second, [0] * len(first) + [int(self.segments)] * len(second)


def _truncate(a: list[int], b: list[int] | None, budget: int) -> tuple[list[int], list[int] | None]:
    """Longest first, one token at a time from the end (BERT's truncate_seq_pair)."""
    if b is None:
        return a[:budget], None
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        (a if len(a) >= len(b) else b).pop()
    return a, b


def encode(examples: list[Example], model, tokenizer, labelled: bool = True, path=None) -> list[dict]:
    """One feature dict per example (per window for QA) of plain lists, ready for `collate`."""
    if getattr(model, "text_to_text", False):
        from . import text2text

        return text2text.encode(examples, model, tokenizer, labelled, path)
    cfg, fmt = model.config, Format.of(model, tokenizer)
    label_id = {lab: i for i, lab in enumerate(cfg.labels)}

    def label_of(e: Example):
        if not labelled or e.label is None:
            return {}
        if cfg.task in ("classify", "pair"):
            if e.label not in label_id:
                raise PlmkitError(f"label {e.label!r} is not one the model was trained for (known: "
                                  f"{', '.join(cfg.labels[:10])}; declare the label set with --labels)",
                                  path=path, line=e.line)
            return {"labels": label_id[e.label]}
        return {"labels": e.label}

    if cfg.task == "tag":
        return [_encode_tags(e, i, tokenizer, fmt, cfg, label_id if labelled else None, path)
                for i, e in enumerate(examples)]
    if cfg.task == "qa":
        return [f for i, e in enumerate(examples) for f in _encode_qa(e, i, tokenizer, fmt, cfg, labelled)]
    texts = [e.text for e in examples]
    seconds = [e.text_b for e in examples if e.text_b is not None]
    enc_a = tokenizer.encode_batch(texts)
    enc_b = iter(tokenizer.encode_batch(seconds)) if seconds else iter(())
    features = []
    for i, (e, a) in enumerate(zip(examples, enc_a)):
        if cfg.task == "choice":
            views = []
            for opt in tokenizer.encode_batch(e.choices):
                x, y = _truncate(a, opt, cfg.max_length - 3)
                views.append(fmt.pair(x, y))
            features.append({"views": views, "example": i, **label_of(e)})
            continue
        b = next(enc_b) if e.text_b is not None else None
        budget = cfg.max_length - (2 if b is None else 3)
        x, y = _truncate(a, b, budget)
        if b is None:
            ids, types = fmt.single(x)
        elif fmt.causal and cfg.task == "regress":  # similarity has no natural order: both, summed
            features.append({"views": [fmt.pair(x, y), fmt.pair(y, x)], "example": i, **label_of(e)})
            continue
        else:
            ids, types = fmt.pair(x, y)
        features.append({"input_ids": ids, "token_type_ids": types, "example": i, **label_of(e)})
    return features


def _encode_tags(e: Example, i: int, tokenizer, fmt: Format, cfg, label_id, path) -> dict:
    ids, word_of = align_words(tokenizer, e.tokens)
    keep = cfg.max_length - 2
    ids, word_of = ids[:keep], word_of[:keep]  # words past the limit are predicted "O" (see tag_predictions)
    if label_id is not None:
        for tag in e.tags:
            if tag not in label_id:
                raise PlmkitError(f"tag {tag!r} is not one the model was trained for (declare the tag set with "
                                  "--labels)", path=path, line=e.line)
        labels = first_subtoken_labels(word_of, [label_id[t] for t in e.tags])
    first = first_subtoken_labels(word_of, [1] * len(e.tokens), ignore=0)
    lead = [0] * fmt.lead
    framed, types = ([fmt.begin, *ids], [0] * (len(ids) + 1)) if fmt.causal else fmt.single(ids)
    tail = [0] * (len(framed) - len(lead) - len(ids))  # the end tokens, if any, are not words
    f = {"input_ids": framed, "token_type_ids": types, "first": [*lead, *first, *tail], "example": i,
         "words": [w for w in dict.fromkeys(word_of) if w >= 0]}
    if label_id is not None:
        f["labels"] = [-100] * len(lead) + labels + [-100] * len(tail)
    return f


def _encode_qa(e: Example, i: int, tokenizer, fmt: Format, cfg, labelled: bool) -> list[dict]:
    q = tokenizer.encode(e.text)[: cfg.max_length // 2]
    ctx, offsets = tokenizer.encode_with_offsets(e.context)
    room = cfg.max_length - len(q) - 3
    answer = None
    if labelled and e.answers:
        s = e.answers[0]["answer_start"]
        span = (s, s + len(e.answers[0]["text"]))
        toks = [k for k, (a, b) in enumerate(offsets) if a < span[1] and b > span[0]]
        answer = (toks[0], toks[-1]) if toks else None
    features, start = [], 0
    while True:
        window = ctx[start:start + room]
        ids, types = fmt.pair(q, window)
        base = fmt.lead + len(q) + 1  # position of the window's first token
        f = {"input_ids": ids, "token_type_ids": types, "example": i, "window_start": start, "base": base,
             "context_mask": [0] * base + [1] * len(window) + [0] * (len(ids) - base - len(window))}
        if answer is not None:
            inside = start <= answer[0] and answer[1] < start + len(window)
            f["start_positions"] = base + answer[0] - start if inside else 0
            f["end_positions"] = base + answer[1] - start if inside else 0
        features.append(f)
        if start + room >= len(ctx):
            return features
        start += min(cfg.doc_stride, room)  # BERT's doc_stride: the step from one window's start to the next


def collate(features: list[dict], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of feature dicts into tensors: (B, T), or (B, K, T) for multi-view/option inputs."""
    batch = {}
    if "views" in features[0]:
        K = max(len(f["views"]) for f in features)
        T = max(len(ids) for f in features for ids, _ in f["views"])
        ids = torch.full((len(features), K, T), pad_id, dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for b, f in enumerate(features):
            for k, (x, y) in enumerate(f["views"]):
                ids[b, k, :len(x)] = torch.tensor(x)
                types[b, k, :len(y)] = torch.tensor(y)
                mask[b, k, :len(x)] = 1
        batch.update(input_ids=ids, token_type_ids=types, attention_mask=mask, choice_mask=mask[:, :, 0].bool())
    else:
        T = max(len(f["input_ids"]) for f in features)

        def pad(key, value=0, dtype=torch.long, width=T):
            out = torch.full((len(features), width), value, dtype=dtype)
            for b, f in enumerate(features):
                out[b, :len(f[key])] = torch.tensor(f[key], dtype=dtype)
            return out

        batch.update(input_ids=pad("input_ids", pad_id), token_type_ids=pad("token_type_ids"),
                     attention_mask=_lengths_mask(features, T))
        if "first" in features[0]:
            batch["first"] = pad("first").bool()
        if "context_mask" in features[0]:
            batch["context_mask"] = pad("context_mask").bool()
        if "labels" in features[0] and isinstance(features[0]["labels"], list):
            # A tag per token (as long as the input), or a target to generate (text to text: as long as it is,
            # which may be longer than every source of the batch: English → Chinese characters)
            batch["labels"] = pad("labels", -100, width=max(len(f["labels"]) for f in features))
    for key in ("labels", "start_positions", "end_positions"):
        if key in features[0] and key not in batch:
            dtype = torch.float32 if isinstance(features[0][key], float) else torch.long
            batch[key] = torch.tensor([f[key] for f in features], dtype=dtype)
    return batch


def _lengths_mask(features: list[dict], T: int) -> torch.Tensor:
    lengths = torch.tensor([len(f["input_ids"]) for f in features])
    return (torch.arange(T) < lengths[:, None]).long()  # (B, T)


class Evaluation:
    """Streams a model's outputs into predictions (one per example) and, given gold labels, metrics."""

    def __init__(self, model, examples: list[Example], tokenizer, labelled: bool):
        self.cfg, self.examples, self.tokenizer, self.labelled = model.config, examples, tokenizer, labelled
        self.model = model
        task = self.cfg.task
        self.metric = (Classification(len(self.cfg.labels)) if task in ("classify", "pair")
                       else Classification(max(len(e.choices) for e in examples)) if task == "choice"
                       else Regression() if task == "regress" else Tagging(is_bio(list(self.cfg.labels)))
                       if task == "tag" else SquadQA())
        self.predictions: dict[int, dict] = {}
        self._qa_best: dict[int, tuple[float, str]] = {}  # example → (score, answer) over its windows
        self._offsets: tuple[int, list] = (-1, [])  # the last example's context offsets (windows are consecutive)

    def update(self, features: list[dict], out: dict[str, torch.Tensor]) -> None:
        task, labels = self.cfg.task, self.cfg.labels
        examples = [f["example"] for f in features]
        if task in ("classify", "pair", "choice"):
            probs = out["logits"].float().softmax(-1)
            pred = probs.argmax(-1).tolist()
            for i, p, pr in zip(examples, pred, probs.max(-1).values.tolist()):
                e = self.examples[i]
                self.predictions[i] = ({"label": p, "choice": e.choices[p], "probability": pr} if task == "choice"
                                       else {"label": labels[p], "probability": pr})
            if self.labelled:
                gold = [f["labels"] for f in features]
                self.metric.update(pred, gold)
        elif task == "regress":
            pred = out["logits"].float().tolist()
            for i, p in zip(examples, pred):
                self.predictions[i] = {"score": p}
            if self.labelled:
                self.metric.update(pred, [f["labels"] for f in features])
        elif task == "tag":
            tags = self.model.decode_tags(out).tolist()
            fallback = "O" if "O" in labels else labels[0]
            pred_seqs, gold_seqs = [], []
            for f, row in zip(features, tags):
                e = self.examples[f["example"]]
                seq = [fallback] * len(e.tokens)
                for w, t in zip(f["words"], row):
                    seq[w] = labels[t]
                self.predictions[f["example"]] = {"tokens": e.tokens, "tags": seq}
                pred_seqs.append(seq)
                gold_seqs.append(e.tags)
            if self.labelled:
                self.metric.update(pred_seqs, gold_seqs)
        else:
            self._update_qa(features, out)

    def _update_qa(self, features, out) -> None:
        start, end = out["start_logits"].float(), out["end_logits"].float()
        for f, s, e in zip(features, start, end):
            ex = self.examples[f["example"]]
            # Best span with start ≤ end < start + MAX_ANSWER_TOKENS inside the context: (T, T) scores.
            scores = s[:, None] + e[None, :]
            T = scores.shape[0]
            upper = torch.ones(T, T, dtype=torch.bool)
            valid = upper.triu() & ~upper.triu(MAX_ANSWER_TOKENS)
            ctx = torch.tensor(f["context_mask"], dtype=torch.bool)
            ctx = torch.nn.functional.pad(ctx, (0, T - len(ctx)))
            valid &= ctx[:, None] & ctx[None, :]
            if not valid.any():
                continue
            flat = scores.masked_fill(~valid, float("-inf")).flatten().argmax()
            a, b = divmod(int(flat), T)
            score = float(scores[a, b])
            if f["example"] not in self._qa_best or score > self._qa_best[f["example"]][0]:
                if self._offsets[0] != f["example"]:
                    self._offsets = (f["example"], self.tokenizer.encode_with_offsets(ex.context)[1])
                offsets = self._offsets[1]
                lo = offsets[f["window_start"] + a - f["base"]][0]
                hi = offsets[f["window_start"] + b - f["base"]][1]
                self._qa_best[f["example"]] = (score, ex.context[lo:hi].strip())

    def result(self) -> tuple[dict | None, list[dict]]:
        """(metrics or None when unlabelled, predictions in example order)."""
        if self.cfg.task == "qa":
            for i, e in enumerate(self.examples):
                self.predictions[i] = {"id": e.id, "answer": self._qa_best.get(i, (0.0, ""))[1]}
            if self.labelled:
                self.metric.update([p["answer"] for p in self.predictions.values()],
                                   [[a["text"] for a in self.examples[i].answers] for i in self.predictions])
        preds = [self.predictions[i] for i in range(len(self.examples))]
        return (self.metric.compute() if self.labelled else None), preds


def batches(features: list[dict], batch_size: int):
    """Slices of `features` shortest example first, so a batch pads little. `Evaluation` files outputs
    under their example's index, so predictions still come back in example order; the sort is stable
    and keyed per example, so an example's windows stay consecutive."""
    longest: dict[int, int] = {}
    for f in features:
        n = max(len(ids) for ids, _ in f["views"]) if "views" in f else len(f["input_ids"])
        longest[f["example"]] = max(longest.get(f["example"], 0), n)
    ordered = sorted(features, key=lambda f: longest[f["example"]])
    for i in range(0, len(ordered), batch_size):
        yield ordered[i:i + batch_size]


@torch.no_grad()
def evaluate(model, tokenizer, examples: list[Example], features: list[dict] | None = None,
             labelled: bool = True, batch_size: int = 32, path=None, progress: bool = False):
    """Run `model` over `examples`; returns (metrics or None, predictions). A text-to-text model generates."""
    from tqdm import tqdm

    if getattr(model, "text_to_text", False):
        from . import text2text

        features = features if features is not None else encode(examples, model, tokenizer, labelled, path)
        return text2text.evaluate(model, tokenizer, examples, features, labelled, batch_size, progress)

    features = features if features is not None else encode(examples, model, tokenizer, labelled, path)
    was_training = model.training
    model.eval()
    ev = Evaluation(model, examples, tokenizer, labelled)
    device = next(model.parameters()).device
    pad = Format.of(model, tokenizer).pad
    for chunk in tqdm(list(batches(features, batch_size)), desc="evaluate", unit="batch",
                      disable=None if progress else True, leave=False):
        batch = {k: v.to(device) for k, v in collate(chunk, pad).items()
                 if k not in ("labels", "start_positions", "end_positions")}
        ev.update(chunk, model(batch))
    model.train(was_training)
    return ev.result()
