"""Feature extraction: one vector per text from a body's last layer (`plmkit embed`)."""

from __future__ import annotations

import torch

from ..errors import PlmkitError
from .model import causal_features


def frame_ids(model, tokenizer) -> tuple[list[int], list[int]]:
    """The ids before and after one text fed to a body: its own `input_frame` where it has one, [CLS] …
    [SEP] for a bidirectional body (… [SEP] [CLS] for XLNet), nothing for a causal one (its last token is the
    text's own)."""
    if hasattr(model, "input_frame"):
        first, _, last = model.input_frame(tokenizer)
        begin, end = [first], [last]
    elif getattr(model, "cls_at_end", False):
        begin, end = [], [tokenizer.sep_id, tokenizer.cls_id]
    else:
        causal = causal_features(model)
        begin = [] if causal else [tokenizer.cls_id]
        end = [] if causal else [tokenizer.sep_id]
    if None in begin + end:
        raise PlmkitError("the tokenizer has no [CLS]/[SEP] tokens")
    return begin, end


@torch.no_grad()
def embed(model, tokenizer, texts: list[str], pool: str = "cls", max_length: int = 512,
          language: int | None = None) -> torch.Tensor:
    """Sentence vectors (N, H) from a body's last layer: "cls" takes [CLS] for a bidirectional model (at the
    end for XLNet), the last token for a causal one, or the body's own pooling (ELMo, word2vec, context2vec,
    LASER: `pool_features`, inputs framed by its `input_frame`, as the task heads do); "mean" averages the real
    tokens. `language`: the language id every token carries, for a body with language embeddings (XLM)."""
    if pool not in ("cls", "mean"):
        raise PlmkitError(f"unknown pooling {pool!r}; choose cls or mean")
    causal = causal_features(model)
    last_token = causal or getattr(model, "cls_at_end", False)  # XLNet: `text [SEP] [CLS]`, pooled at [CLS]
    begin, end = frame_ids(model, tokenizer)
    ids = [begin + x[: max_length - len(begin) - len(end)] + end for x in tokenizer.encode_batch(texts)]
    if any(len(x) == 0 for x in ids):
        raise PlmkitError("cannot embed an empty text")
    T = max(len(x) for x in ids)
    x = torch.full((len(ids), T), tokenizer.pad_id or 0, dtype=torch.long)
    mask = torch.zeros_like(x)
    for i, row in enumerate(ids):
        x[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    types = None if language is None else torch.full_like(x, language)
    h = model.eval().encode(x, mask, types).last_hidden_state  # (N, T, H)
    if pool == "mean":
        return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    if hasattr(model, "pool_features"):
        return model.pool_features(h, mask)
    return h[torch.arange(len(ids)), mask.sum(1) - 1] if last_token else h[:, 0]
