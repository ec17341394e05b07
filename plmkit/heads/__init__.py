"""Downstream heads on a pre-trained body, and fine-tuned model directories.

A fine-tuned directory is the body as `plmkit.interop.hf.save_model` writes it (so `plmkit.load` and
`transformers` still read the body) plus `head.safetensors` (head weights: linear layer, CRF, scalar
mix) and `head.json` (the HeadConfig: task, label list, input settings).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from ..durable import atomic_file, atomic_write
from ..errors import PlmkitError
from .inputs import collate, encode, evaluate
from .model import GPT_TOKENS, HeadConfig, TaskModel, causal_features
from .pooling import embed
from .text2text import TextToText

HEAD_WEIGHTS, HEAD_CONFIG = "head.safetensors", "head.json"


def build(body, tokenizer, config: HeadConfig) -> TaskModel | TextToText:
    """Put a head on `body`. A body with causal features (GPT, the FFNN/RNN/LSTM LMs; not ELMo) gets GPT's
    [start]/[delim]/[extract] tokens, added to the tokenizer and as new embedding rows when the vocabulary
    lacks them. A seq2seq or text-to-text task keeps an encoder–decoder's own output layer as its head."""
    if config.generative:
        model = TextToText(body, config)
        model.tokenizer = tokenizer
        return model
    if not callable(getattr(body, "encode", None)):  # the n-gram: counts, no states
        raise PlmkitError(f"a {type(body).__name__} has no hidden states to put a task head on; fine-tune a network",
                          path=getattr(body, "directory", None))
    if causal_features(body) and not config.gpt_tokens:
        tokenizer.backend.add_special_tokens(list(GPT_TOKENS))
        needed = max(tokenizer.token_to_id(t) for t in GPT_TOKENS) + 1
        if needed > body.config.vocab_size:
            body.resize_token_embeddings(needed)
        config = config.replace(gpt_tokens=GPT_TOKENS)
    if config.max_length > body.config.max_positions:
        raise PlmkitError(f"max_length {config.max_length} exceeds the model's {body.config.max_positions} positions",
                          path=getattr(body, "directory", None))
    model = TaskModel(body, config)
    model.tokenizer = tokenizer
    return model


def save_finetuned(model: TaskModel, directory: str | os.PathLike, info: dict | None = None,
                   weights: bool = True) -> Path:
    """Write the fine-tuned `model`; weights=False writes everything but the weight files (for
    plmkit.compress.storage, which stores compressed weights its own way)."""
    from ..interop.hf import save_model

    d = save_model(model.body, directory, model.tokenizer, {"finetuned": {"task": model.config.task, **(info or {})}},
                   weights=weights)
    if weights:
        head = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("body.")}
        with atomic_file(d / HEAD_WEIGHTS) as tmp:
            save_file(head, str(tmp), metadata={"format": "pt"})
    atomic_write(d / HEAD_CONFIG, model.config.to_json() + "\n")
    return d


def load_finetuned(directory: str | os.PathLike) -> TaskModel:
    """A directory written by `save_finetuned` (e.g. by `plmkit finetune`), or by a compression method
    that stores its weights in a form of its own (plmkit.compress.storage) → the TaskModel, in eval
    mode, with its tokenizer as `.tokenizer`."""
    from ..interop.hf import load_model, read_weights
    from ..tokenizers import load_tokenizer

    d = Path(directory)
    if not (d / HEAD_CONFIG).is_file():
        raise PlmkitError(f"no {HEAD_CONFIG}: not a fine-tuned model directory (see `plmkit finetune`)", path=d)
    try:
        config = HeadConfig.from_dict(json.loads((d / HEAD_CONFIG).read_text(encoding="utf-8")), source=d / HEAD_CONFIG)
    except json.JSONDecodeError as e:
        raise PlmkitError(f"not valid JSON: {e.msg}", path=d / HEAD_CONFIG, line=e.lineno) from None
    from ..compress import storage

    if storage.holds(d):
        return storage.load(d, config)
    model = (TextToText if config.generative else TaskModel)(load_model(d), config)
    missing, unexpected = model.load_state_dict(read_weights(d / HEAD_WEIGHTS), strict=False)
    missing = [k for k in missing if not k.startswith("body.")]
    if missing or unexpected:
        raise PlmkitError(f"head weights do not fit head.json: missing {missing}, unexpected {unexpected}",
                          path=d / HEAD_WEIGHTS)
    model.tokenizer = load_tokenizer(d)
    return model.eval()


__all__ = ["HeadConfig", "TaskModel", "TextToText", "build", "collate", "embed", "encode", "evaluate", "load_finetuned",
           "save_finetuned"]
