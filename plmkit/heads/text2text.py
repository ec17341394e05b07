"""Text-to-text fine-tuning of an encoder–decoder (T5, BART, MASS, the Transformer): the output layer is the
head, every task is text in and text out, and evaluation generates. Raffel et al. 2020, §2.4.

seq2seq: {"source", "target"} pairs; the model reads the source in its member's frame (T5: `source </s>`,
    BART: `<s> source </s>`) and is trained to write the target (teacher forcing, the loss label-smoothed,
    Vaswani et al. 2017, §5.4); scored by generating (beam search) against the target: ROUGE-L, BLEU,
    exact match (plmkit.evaluation.metrics.TextGeneration).
classify / pair with `text_to_text`: T5's format for GLUE (Appendix D): "classify sentence: TEXT", "pair
    sentence1: A sentence2: B" → the label as words; scored by exact match with the label, which is the
    accuracy (a generated text that is no label counts as wrong and as `invalid`).

Shape legend: B = batch, S = source length, U = target length.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import PlmkitError
from ..evaluation.metrics import Classification, TextGeneration


def source_text(task: str, e) -> str:
    """The source an example is read as: a seq2seq source as it is; a classify/pair example in T5's words."""
    if task == "seq2seq":
        return e.text
    if e.text_b is None:
        return f"{task} sentence: {e.text}"
    return f"{task} sentence1: {e.text} sentence2: {e.text_b}"


class TextToText(nn.Module):
    """An encoder–decoder whose own output layer is the task's head. `forward(batch)` → {"loss"}."""

    text_to_text = True

    def __init__(self, body: nn.Module, config):
        super().__init__()
        if not hasattr(body, "target_frame"):
            raise PlmkitError(f"{config.task}{' --text-to-text' if config.task != 'seq2seq' else ''} fine-tunes an "
                              f"encoder–decoder (transformer, t5, bart, mass), not {body.family_name}")
        self.body, self.config = body, config

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.body(batch["input_ids"], batch["attention_mask"], labels=batch["labels"],
                        label_smoothing=self.config.label_smoothing if self.training else 0.0)
        return {"loss": out.loss}


def encode(examples, model: TextToText, tokenizer, labelled: bool = True, path=None) -> list[dict]:
    """One feature per example: the framed source, cut to max_length, and the framed target as labels."""
    cfg, body = model.config, model.body
    before, after = body.source_frame(tokenizer)
    t_before, t_after = body.target_frame(tokenizer)
    room = cfg.max_length - len(before) - len(after)
    sources = tokenizer.encode_batch([source_text(cfg.task, e) for e in examples])
    targets = tokenizer.encode_batch([_target(cfg.task, e) or "" for e in examples]) if labelled else None
    if labelled and cfg.task != "seq2seq":
        for e in examples:
            if e.label not in cfg.labels:
                raise PlmkitError(f"label {e.label!r} is not one the model was trained for (declare the label set "
                                  "with --labels)", path=path, line=e.line)
    features = []
    for i, src in enumerate(sources):
        ids = before + src[:room] + after
        f = {"input_ids": ids, "token_type_ids": [0] * len(ids), "example": i}
        if labelled:
            f["labels"] = t_before + targets[i][:cfg.max_target_length - len(t_before) - len(t_after)] + t_after
        features.append(f)
    return features


def _target(task: str, e) -> str | None:
    return e.target if task == "seq2seq" else e.label


@torch.no_grad()
def evaluate(model: TextToText, tokenizer, examples, features=None, labelled: bool = True, batch_size: int = 32,
             progress: bool = False):
    """Generate for every example (beam search with config.num_beams beams, up to max_target_length
    tokens) and score; returns (metrics or None, predictions: {"prediction"} per example)."""
    from tqdm import tqdm

    from ..generation import generate_ids
    from .inputs import batches

    cfg, body = model.config, model.body
    features = features if features is not None else encode(examples, model, tokenizer, labelled=False)
    was_training = model.training
    model.eval()
    eos = body.generation_frame(tokenizer)[2]
    metric = TextGeneration() if cfg.task == "seq2seq" else Classification(len(cfg.labels) + 1)
    label_id = {label: i for i, label in enumerate(cfg.labels)}
    predictions, invalid = {}, 0
    for chunk in tqdm(list(batches(features, batch_size)), desc="generate", unit="batch",
                      disable=None if progress else True, leave=False):
        out = generate_ids(body, [f["input_ids"] for f in chunk], eos=eos, num_beams=cfg.num_beams, temperature=0,
                           max_new_tokens=cfg.max_target_length)
        texts = [tokenizer.decode(rows[0]).strip() for rows in out]
        for f, text in zip(chunk, texts):
            predictions[f["example"]] = {"prediction": text}
        if not labelled:
            continue
        gold = [_target(cfg.task, examples[f["example"]]) for f in chunk]
        if cfg.task == "seq2seq":
            metric.update(texts, gold)
        else:  # a text that is no label goes to the extra column: wrong for every label
            pred = [label_id.get(t, len(cfg.labels)) for t in texts]
            invalid += sum(p == len(cfg.labels) for p in pred)
            metric.update(pred, [label_id[g] for g in gold])
    model.train(was_training)
    preds = [predictions[i] for i in range(len(examples))]
    if not labelled:
        return None, preds
    metrics = metric.compute()
    if cfg.task != "seq2seq":
        metrics = {"accuracy": metrics["accuracy"], "exact_match": metrics["accuracy"],
                   "invalid": invalid / max(metrics["n"], 1), "n": metrics["n"]}
    return metrics, preds
