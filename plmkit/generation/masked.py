"""Filling masks with a masked LM."""

from __future__ import annotations

import torch

from ..errors import PlmkitError

MASK_PLACEHOLDER = "[MASK]"  # accepted in user text whatever the tokenizer's own mask token is


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, top_k: int = 5) -> list[list[dict]]:
    """For each mask in `text`, the top_k fillers: [{"token", "token_id", "score", "sequence"}, …]."""
    if model.config.causal:
        raise PlmkitError(f"fill-mask needs a masked LM; {model.family_name} is a causal LM (try generate)",
                          path=getattr(model, "directory", None))
    if tokenizer.mask_id is None:
        raise PlmkitError("the tokenizer has no mask token")
    mask_token = tokenizer.id_to_token(tokenizer.mask_id)
    ids = tokenizer.encode(text.replace(MASK_PLACEHOLDER, mask_token))
    if tokenizer.mask_id not in ids:
        raise PlmkitError(f"no {MASK_PLACEHOLDER} in the text: {text!r}")
    ids = [tokenizer.cls_id, *ids, tokenizer.sep_id]
    x = torch.tensor([ids])
    at = x == tokenizer.mask_id  # (1, T)
    probs = model(x, logits_at=at).logits.float().softmax(-1)  # (M, V)
    results = []
    for j, p in enumerate(probs):
        scores, top = p.topk(top_k)
        fills = []
        for s, t in zip(scores.tolist(), top.tolist()):
            filled = list(ids)
            filled[at[0].nonzero()[j].item()] = t
            fills.append({"token": tokenizer.id_to_token(t), "token_id": t, "score": s,
                          "sequence": tokenizer.decode(filled[1:-1])})
        results.append(fills)
    return results
