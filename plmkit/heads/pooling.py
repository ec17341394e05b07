"""Sentence vectors from any body (`plmkit embed`, `plmkit evaluate-embeddings`, the SimCSE objective).

Methods (the `--method` of `plmkit embed`):
    auto        the body's own sentence vector: a member that infers one (`sentence_vectors`, e.g. doc2vec's
                paragraph vector) or pools its states its own way (`pool_features`: ELMo, word2vec, LASER), else
                the pooling a sentence-transformers directory records (1_Pooling: all-MiniLM-L6-v2 averages),
                else `cls`.
    cls         [CLS] of a bidirectional body (position 0; the last for XLNet); the last real token of a causal
                one, whose state has read the whole text (GPT's [extract] position, a recurrent encoder's final
                state).
    mean        the average of the last layer over the real tokens, specials included (as
                sentence-transformers and SimCSE's "avg" pool).
    max         the element-wise maximum of the last layer over the real tokens (InferSent's max pooling).
    first-last  the average of the first and the last layer, then `mean` over the tokens (SimCSE's
                "avg_first_last"; Su et al. 2021 and Li et al. 2020 found it beats the last layer alone for
                BERT): the first layer is the first block's output, hidden_states[1], not the embeddings.

Inputs are framed as the task heads frame them: [CLS] text [SEP] for a bidirectional body, the body's
`input_frame` where it has one (ELMo, word2vec), the bare text for a causal one.

Shape legend: N = texts, T = tokens, H = hidden size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import PlmkitError
from .model import causal_features

METHODS = ("auto", "cls", "mean", "max", "first-last")
# sentence-transformers' 1_Pooling/config.json flags → our method names
_ST_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}


def saved_method(directory: str | os.PathLike) -> str | None:
    """The pooling a sentence-transformers directory's `1_Pooling/config.json` names (all-MiniLM-L6-v2: mean)."""
    st = Path(directory) / "1_Pooling" / "config.json"
    if st.is_file():
        flags = json.loads(st.read_text(encoding="utf-8"))
        chosen = [m for key, m in _ST_POOLING.items() if flags.get(key)]
        if len(chosen) == 1:
            return chosen[0]
    return None


def resolve_method(model, directory: str | os.PathLike, method: str) -> str:
    """`auto` becomes the pooling `directory` records when the member has no sentence vector of its own."""
    if method != "auto" or hasattr(model, "sentence_vectors") or hasattr(model, "pool_features"):
        return method
    return saved_method(directory) or "auto"


def frame_ids(model, tokenizer) -> tuple[list[int], list[int]]:
    """The ids before and after one text fed to a body: its own `input_frame` where it has one, [CLS] …
    [SEP] for a bidirectional body (… [SEP] [CLS] for XLNet), nothing for a causal one (its last token is the
    text's own)."""
    if hasattr(model, "input_frame"):
        first, _, last = model.input_frame(tokenizer)
        begin, end = [first], [last]
    elif getattr(model, "cls_at_end", False):
        begin, end = [], [tokenizer.sep_id, tokenizer.cls_id]
    elif causal_features(model):
        begin, end = [], []
    else:
        begin, end = [tokenizer.cls_id], [tokenizer.sep_id]
    if None in begin + end:
        raise PlmkitError("the tokenizer has no [CLS]/[SEP] tokens to frame a bidirectional model's input")
    return begin, end


def frame(model, tokenizer, token_ids: list[list[int]], max_length: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists → (ids (N, T), attention mask (N, T)), framed for `model` and right-padded."""
    from ..data.pretrain import pad_rows

    begin, end = frame_ids(model, tokenizer)
    ids = [begin + list(x[: max_length - len(begin) - len(end)]) + end for x in token_ids]
    if any(len(x) == 0 for x in ids):
        raise PlmkitError("cannot embed an empty text")
    return pad_rows(ids, tokenizer.pad_id or 0)


def pool(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, method: str = "auto",
         token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """(N, T) framed ids and mask → (N, H) sentence vectors by `method` (not a `sentence_vectors` member's
    inference: see `embed`). Gradients flow when the caller enables them (SimCSE trains through this)."""
    if method not in METHODS:
        raise PlmkitError(f"unknown pooling method {method!r}; choose from {', '.join(METHODS)}")
    out = model.encode(input_ids, attention_mask, token_type_ids, output_hidden_states=method == "first-last")
    h, m = out.last_hidden_state, attention_mask[..., None].to(out.last_hidden_state.dtype)  # (N, T, H), (N, T, 1)
    if method == "auto" and hasattr(model, "pool_features"):
        return model.pool_features(h, attention_mask)
    if method in ("auto", "cls"):
        if causal_features(model) or getattr(model, "cls_at_end", False):  # XLNet: `text [SEP] [CLS]`
            return h[torch.arange(h.shape[0], device=h.device), attention_mask.sum(1).long() - 1]
        return h[:, 0]
    if method == "max":
        return h.masked_fill(m == 0, float("-inf")).amax(1)
    if method == "first-last":
        states = out.hidden_states
        h = (states[1 if len(states) > 2 else 0] + states[-1]) / 2  # (N, T, H)
    return (h * m).sum(1) / m.sum(1)


@torch.no_grad()
def embed(model, tokenizer, texts: list[str], method: str = "auto", max_length: int = 512, batch_size: int = 64,
          progress: bool = False, language: int | None = None) -> torch.Tensor:
    """Sentence vectors (N, H) of `texts`, in batches of texts of similar length (fewer pad tokens), in the
    order given. `method` is one of METHODS; "auto" uses a member's own inference (`sentence_vectors`) when it
    has one. A saved directory's recorded pooling is resolved by the caller (`saved_method`). `language`: the
    language id every token carries, for a body with language embeddings (XLM)."""
    from tqdm import tqdm

    if method not in METHODS:
        raise PlmkitError(f"unknown pooling method {method!r}; choose from {', '.join(METHODS)}")
    model.eval()
    if method == "auto" and hasattr(model, "sentence_vectors"):
        return model.sentence_vectors(texts, tokenizer, progress=progress)
    if not hasattr(model, "encode"):
        raise PlmkitError(f"{model.family_name} has no token states to pool; use --method auto")
    ids = tokenizer.encode_batch(texts)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    device = next(model.parameters()).device
    out: list[torch.Tensor | None] = [None] * len(ids)
    for start in tqdm(range(0, len(order), batch_size), desc="embed", unit="batch", disable=None if progress else True,
                      leave=False):
        chunk = order[start:start + batch_size]
        x, mask = frame(model, tokenizer, [ids[i] for i in chunk], max_length)
        types = None if language is None else torch.full_like(x, language).to(device)
        vectors = pool(model, x.to(device), mask.to(device), method, types).float().cpu()
        for i, v in zip(chunk, vectors):
            out[i] = v
    return torch.stack(out) if out else torch.zeros(0)
