"""`plmkit bench infer`: batch inference of a fine-tuned classifier, plmkit against its transformers peer.

Three variants score the same examples with the same weights, in alternating timed rounds after a
warm-up (a round is one pass over the examples, tokenization included):
  plmkit fp32  `plmkit.heads.evaluate`, exactly what `plmkit evaluate` runs: batches of similar lengths.
  plmkit int8  the same after `plmkit.compress.quantize_int8` (dynamic quantization of every nn.Linear:
               int8 weights, a scale per output channel; activations quantized per batch on the fly), which
               is what `plmkit evaluate --int8` and `plmkit predict --int8` run.
  peer         `<Member>ForSequenceClassification.from_pretrained(DIR, attn_implementation="sdpa")`, its
               classifier set from plmkit's head, run as a transformers user runs batch inference: the
               tokenizer pads each batch to its longest, in dataset order, under torch.inference_mode.
The logits of plmkit and the peer are compared on the first two batches (same function: ~1e-6 apart).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ..compress import quantize_int8
from ..errors import PlmkitError
from .common import quiet_transformers, transformers_module

# The transformers class each body is compared with, and how plmkit's head maps onto its classifier:
# BERT and ALBERT put a linear classifier on the tanh pooler, as plmkit does; RoBERTa's head is
# dense → tanh → out_proj on <s>, which is plmkit's pooler followed by its linear head.
INFER_PEERS = {"bert": "BertForSequenceClassification", "albert": "AlbertForSequenceClassification",
               "roberta": "RobertaForSequenceClassification"}


def bench_infer(model_dir: str, data: str | None = None, task: str | None = None, batch_size: int = 32,
                max_length: int | None = None, rounds: int = 2, limit: int | None = None,
                vs_hf: bool = True) -> dict[str, Any]:
    """Examples/s, tokens/s and dev accuracy of plmkit fp32, plmkit int8 and (with `vs_hf`) the peer on
    the examples of `data` (default: the dev file recorded when the model was fine-tuned); `limit`
    takes the first N examples. Returns the measurements."""
    from ..heads import load_finetuned
    from ..data.tasks import read_task

    if batch_size < 1 or rounds < 1 or (limit is not None and limit < 1):
        raise PlmkitError("batch size, rounds and limit must be at least 1")
    model = load_finetuned(model_dir)
    cfg = model.config
    if task is not None and task != cfg.task:
        raise PlmkitError(f"the model was fine-tuned for {cfg.task!r}, not {task!r}", path=model_dir)
    if cfg.task not in ("classify", "pair"):
        raise PlmkitError(f"bench infer measures classify and pair models, not {cfg.task!r}", path=model_dir)
    data = data or _recorded_dev(model_dir)
    examples = read_task(data, cfg.task)[:limit]
    if not examples:
        raise PlmkitError("no examples", path=data)
    unknown = next((e for e in examples if e.label not in cfg.labels), None)
    if unknown is not None:
        raise PlmkitError(f"label {unknown.label!r} is not one of the model's ({', '.join(cfg.labels)})",
                          path=data, line=unknown.line)
    gold = [cfg.labels.index(e.label) for e in examples]
    if max_length is not None:
        if max_length > model.body.config.max_positions:
            raise PlmkitError(f"--max-length {max_length} exceeds the model's "
                              f"{model.body.config.max_positions} positions")
        cfg = cfg.replace(max_length=max_length)
    sides: dict[str, Any] = {"plmkit": _Ours(model, cfg, data, batch_size)}
    sides["int8"] = _Ours(quantize_int8(load_finetuned(model_dir)), cfg, data, batch_size)
    if vs_hf:
        sides["peer"] = _Peer(model, model_dir, cfg, batch_size)

    check = examples[:2 * batch_size]
    max_diff = None
    if vs_hf:  # same weights, same inputs: the same function (this also warms both sides up)
        ours, peer = sides["plmkit"].logits(check), sides["peer"].logits(check)
        max_diff = float((ours - peer).abs().max())
    for s in sides.values():
        s.run(check[:batch_size])  # warm-up, untimed
        s.tokens = s.padded = 0
    seconds = dict.fromkeys(sides, 0.0)
    for _ in range(rounds):  # alternate, so drifts in machine speed hit every side alike
        for name, s in sides.items():
            t = time.perf_counter()
            s.preds = s.run(examples)
            seconds[name] += time.perf_counter() - t
    n = len(examples)

    def acc(preds: list[int]) -> float:
        return sum(p == g for p, g in zip(preds, gold)) / n

    def agree(a: list[int], b: list[int]) -> float:
        return sum(x == y for x, y in zip(a, b)) / n

    ours, q = sides["plmkit"], sides["int8"]
    out: dict[str, Any] = {
        "model": model.body.family_name, "directory": str(model_dir), "data": str(data), "task": cfg.task,
        "examples": n, "batch_size": batch_size, "max_length": cfg.max_length, "rounds": rounds,
        "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters()),
        "examples_per_s": n * rounds / seconds["plmkit"], "tokens_per_s": ours.tokens / seconds["plmkit"],
        "tokens": ours.tokens // rounds, "padded_tokens": ours.padded // rounds, "accuracy": acc(ours.preds),
        "int8_examples_per_s": n * rounds / seconds["int8"], "int8_tokens_per_s": q.tokens / seconds["int8"],
        "int8_ratio": seconds["plmkit"] / seconds["int8"], "int8_accuracy": acc(q.preds),
        "int8_agreement": agree(q.preds, ours.preds)}
    if vs_hf:
        p = sides["peer"]
        out.update(peer=INFER_PEERS[out["model"]], peer_attention="sdpa",
                   peer_examples_per_s=n * rounds / seconds["peer"], peer_tokens_per_s=p.tokens / seconds["peer"],
                   peer_tokens=p.tokens // rounds, peer_padded_tokens=p.padded // rounds,
                   ratio=seconds["peer"] / seconds["plmkit"],
                   peer_accuracy=acc(p.preds), peer_agreement=agree(p.preds, ours.preds), max_logit_diff=max_diff)
    return out


def _recorded_dev(model_dir: str) -> str:
    """The dev file `plmkit finetune` recorded in the model's plmkit.json."""
    meta_path = Path(model_dir) / "plmkit.json"
    try:
        dev = json.loads(meta_path.read_text()).get("finetuned", {}).get("dev")
    except (OSError, json.JSONDecodeError):
        dev = None
    if not dev:
        raise PlmkitError("no dev file recorded in plmkit.json; pass --data", path=model_dir)
    if not Path(dev).is_file():
        raise PlmkitError("the dev file recorded at fine-tuning is gone; pass --data", path=dev)
    return dev


class _Ours:
    """plmkit's own inference path; counts the real and the padded tokens it feeds the model."""

    def __init__(self, model, cfg, path, batch_size: int):
        self.model, self.cfg, self.path, self.batch_size = model, cfg, path, batch_size
        self.tokens = self.padded = 0
        self.preds: list[int] = []
        model.config = cfg

        def count(_module, args):
            mask = args[0]["attention_mask"]
            self.tokens += int(mask.sum())
            self.padded += mask.numel()

        model.register_forward_pre_hook(count)

    def run(self, examples) -> list[int]:
        from ..heads import evaluate

        _, preds = evaluate(self.model, self.model.tokenizer, examples, batch_size=self.batch_size, path=self.path)
        labels = self.cfg.labels
        return [labels.index(p["label"]) for p in preds]

    def logits(self, examples) -> torch.Tensor:
        """(N, C) in example order."""
        from ..heads import collate, encode
        from ..heads.inputs import Format

        features = encode(examples, self.model, self.model.tokenizer, path=self.path)
        pad = Format.of(self.model, self.model.tokenizer).pad
        with torch.inference_mode():
            out = torch.cat([self.model({k: v for k, v in collate(features[i:i + self.batch_size], pad).items()
                                         if k != "labels"})["logits"]
                             for i in range(0, len(features), self.batch_size)])
        return out.float()


class _Peer:
    """The transformers classifier with plmkit's weights, run as its users run batch inference."""

    def __init__(self, model, model_dir: str, cfg, batch_size: int):
        transformers = transformers_module()
        member = model.body.family_name
        if member not in INFER_PEERS:
            raise PlmkitError(f"no transformers peer for {member!r} classifiers; known: {', '.join(INFER_PEERS)} "
                              "(use --vs none)")
        if model.frozen:
            raise PlmkitError("a scalar-mix head has no transformers counterpart (use --vs none)")
        with quiet_transformers():
            self.model, info = getattr(transformers, INFER_PEERS[member]).from_pretrained(
                model_dir, attn_implementation="sdpa", num_labels=len(cfg.labels), output_loading_info=True)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        head = _peer_head(member, model)
        unset = set(info["missing_keys"]) - set(head)
        if unset:
            raise PlmkitError(f"transformers found no weights for {', '.join(sorted(unset)[:5])}", path=model_dir)
        with torch.no_grad():
            for name, value in head.items():
                self.model.get_parameter(name).copy_(value)
        self.model.eval()
        self.pair, self.max_length, self.batch_size = cfg.task == "pair", cfg.max_length, batch_size
        self.tokens = self.padded = 0
        self.preds: list[int] = []

    def _batches(self, examples):
        for i in range(0, len(examples), self.batch_size):
            chunk = examples[i:i + self.batch_size]
            texts = ([e.text for e in chunk], [e.text_b for e in chunk]) if self.pair else ([e.text for e in chunk],)
            batch = self.tokenizer(*texts, padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt")
            yield batch, self.model(**batch).logits

    @torch.inference_mode()
    def run(self, examples) -> list[int]:
        preds = []
        for batch, logits in self._batches(examples):
            preds.extend(logits.argmax(-1).tolist())
            self.tokens += int(batch["attention_mask"].sum())
            self.padded += batch["attention_mask"].numel()
        return preds

    @torch.inference_mode()
    def logits(self, examples) -> torch.Tensor:
        return torch.cat([logits for _, logits in self._batches(examples)]).float()


def _peer_head(member: str, model) -> dict[str, torch.Tensor]:
    """plmkit's head (and for RoBERTa its pooler) under the peer classifier's parameter names."""
    if member == "roberta":
        pooler = model.body.pooler
        return {"classifier.dense.weight": pooler.weight, "classifier.dense.bias": pooler.bias,
                "classifier.out_proj.weight": model.head.weight, "classifier.out_proj.bias": model.head.bias}
    return {"classifier.weight": model.head.weight, "classifier.bias": model.head.bias}
