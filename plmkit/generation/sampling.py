"""Sampling a continuation from a causal LM: greedy, temperature, top-k, top-p."""

from __future__ import annotations

import torch

from ..errors import PlmkitError


@torch.no_grad()
def generate(model, tokenizer, prompt: str, max_new_tokens: int = 40, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> dict:
    """Sample a continuation of `prompt` (temperature 0 = greedy).

    Returns {"text": prompt and continuation as decoded text, "completion", "prompt", "tokens": the new
    token ids, "prompt_tokens"}."""
    if not model.config.causal:
        raise PlmkitError(f"generate needs a causal LM; {model.family_name} is a masked LM (try fill-mask)",
                          path=getattr(model, "directory", None))
    if temperature < 0 or (top_p is not None and not 0 < top_p <= 1) or (top_k is not None and top_k < 1):
        raise PlmkitError("need temperature >= 0, 0 < top_p <= 1 and top_k >= 1")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    start = [tokenizer.doc_sep_id] if tokenizer.doc_sep_id is not None else []  # documents are packed after a separator
    ids = start + tokenizer.encode(prompt)
    n_prompt = len(ids)
    for _ in range(max_new_tokens):
        window = torch.tensor([ids[-model.config.max_positions:]])
        logits = model(window).logits[0, -1].float()  # (V,)
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k is not None:
                kth = logits.topk(min(top_k, logits.numel())).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            if top_p is not None:
                sorted_logits, order = logits.sort(descending=True)
                cum = sorted_logits.softmax(-1).cumsum(-1)
                drop = cum - sorted_logits.softmax(-1) >= top_p  # keep the smallest prefix reaching top_p
                logits[order[drop]] = float("-inf")
            nxt = int(torch.multinomial(logits.softmax(-1), 1, generator=gen))
        if nxt == tokenizer.doc_sep_id:
            break
        ids.append(nxt)
    # Decode prompt and continuation together: some tokenizers mark word boundaries on the left token.
    full, head = tokenizer.decode(ids[len(start):]), tokenizer.decode(ids[len(start):n_prompt])
    completion = full[len(head):] if full.startswith(head) else tokenizer.decode(ids[n_prompt:])
    return {"text": full, "completion": completion, "prompt": prompt,
            "tokens": ids[n_prompt:], "prompt_tokens": n_prompt - len(start)}
