"""Beam search: keep the K most probable continuations of each prompt, one token at a time.

The rules are Hugging Face's `generate` (transformers ≥ 4.50), so both return the same beams for the same
weights: at each step the 2K best extensions of a prompt's K beams are taken from all K × V; those among
the first K that end (end-of-text, a stop string, or the last allowed token) join the finished set with
score = summed log-probability ÷ new tokens ** length_penalty, which keeps its K best; the K best
extensions that do not end run on. A prompt is done when K beams have finished and, with early_stopping,
at once; without it, once its best running beam — scored at its current length — cannot beat the worst
finished one.

Shape legend: B = prompts, K = beams, V = vocabulary.
"""

from __future__ import annotations

import dataclasses

import torch

from .search import Row, Settings, Texts, left_pad, presence, process

DEAD = -1.0e9  # the score of a beam that must not be extended (as in transformers, finite so sums stay ordered)


def beam_search(decoder, framed: list[list[int]], eos: int | None, s: Settings, texts: Texts | None,
                history: list[int] | None = None) -> list[Row]:
    """The num_return_sequences best finished beams of each prompt, best first, in prompt order. `history`:
    what the decoder read before the continuation where it is not the prompt (`Row.history`)."""
    B, K = len(framed), s.num_beams
    ids, mask = left_pad(framed)
    cache = decoder.new_cache(B, ids.shape[1] + s.max_new_tokens)
    logits = decoder.decode_step(ids, mask, cache)  # (B, V): the prompt is run once, then copied per beam
    expand = torch.arange(B).repeat_interleave(K)
    cache.reorder(expand)
    logits = logits[expand]  # (B·K, V)
    V = logits.shape[-1]
    beams = [Row(b, framed[b], history=history) for b in range(B) for _ in range(K)]
    running = torch.zeros(B, K)
    running[:, 1:] = DEAD  # the K copies are one beam until the first step tells them apart
    finished: list[list[tuple[float, list[int], str]]] = [[] for _ in range(B)]  # best first, at most K
    open_ = [True] * B  # can a running beam still enter the finished set?
    present = presence(beams, V, s)
    for step in range(s.max_new_tokens):
        logp = process(logits.float().log_softmax(-1), beams, present, eos, step, s)
        candidates = (logp.view(B, K, V) + running[:, :, None]).view(B, K * V)
        top, flat = candidates.topk(2 * K, dim=1)  # (B, 2K), best first
        src, tok = flat // V, flat % V
        last = step == s.max_new_tokens - 1
        ends = _ends(beams, src, tok, eos, last, texts, K)  # (B, 2K) None or why the candidate ends
        for b in range(B):
            if not open_[b] or (s.early_stopping and len(finished[b]) >= K):
                continue
            for j in range(K):  # only the K best candidates may finish, as in transformers
                if ends[b][j] is None or top[b, j] <= DEAD / 2:
                    continue
                parent = beams[b * K + src[b, j]]
                tokens = parent.tokens + ([] if ends[b][j] == "eos" else [int(tok[b, j])])
                score = float(top[b, j]) / (step + 1) ** s.length_penalty
                finished[b].append((score, tokens, ends[b][j]))
            finished[b] = sorted(finished[b], key=lambda f: -f[0])[:K]
        ended = torch.tensor([[e is not None for e in row] for row in ends])
        keep = (top + ended * DEAD).topk(K, dim=1).indices  # (B, K): the best that run on
        running = (top + ended * DEAD).gather(1, keep)
        src, tok = src.gather(1, keep), tok.gather(1, keep)
        index = (torch.arange(B)[:, None] * K + src).view(-1)  # (B·K) the parent of each new beam
        beams = [dataclasses.replace(beams[i], tokens=beams[i].tokens + [t])
                 for i, t in zip(index.tolist(), tok.view(-1).tolist())]
        for b in range(B):
            if open_[b] and len(finished[b]) >= K:
                best = float(running[b, 0]) / (step + 1) ** s.length_penalty
                open_[b] = best > finished[b][-1][0]
        if last or all(not o or (s.early_stopping and len(f) >= K) for o, f in zip(open_, finished)):
            break
        cache.reorder(index)
        if present is not None:
            present = present[index]
            present[torch.arange(B * K), tok.view(-1)] = True
        logits = decoder.decode_step(tok.view(-1, 1), None, cache)
    rows = []
    for b in range(B):
        for score, tokens, why in finished[b][:s.num_return_sequences]:
            rows.append(Row(b, framed[b], tokens, why, score, history=history))
    return rows


def _ends(beams: list[Row], src: torch.Tensor, tok: torch.Tensor, eos: int | None, last: bool,
          texts: Texts | None, K: int) -> list[list[str | None]]:
    """For each candidate (B, 2K): "eos", "stop" (its text now holds a stop string), "length" (the last
    step), or None (it runs on)."""
    out = []
    for b, (srcs, toks) in enumerate(zip(src.tolist(), tok.tolist())):
        row = []
        for j, t in zip(srcs, toks):
            why = "eos" if t == eos else None
            if why is None and texts is not None and texts.stop:
                parent = beams[b * K + j]
                grown = dataclasses.replace(parent, tokens=parent.tokens + [t])
                why = "stop" if texts.stopped(texts.completion(grown)) is not None else None
            row.append(why or ("length" if last else None))
        out.append(row)
    return out
