"""`plmkit bench generate`: decoding tokens/s, plmkit's engine against transformers' `generate`.

Both sides continue the same random-token prompts with the same weights (a randomly initialised member
of a size preset, dropout off), by greedy search and by beam search, `new_tokens` new tokens each, the
end-of-text id forbidden before them (every row runs to the end), in alternating timed rounds after a warm-up, per batch size and
beam width. plmkit runs `plmkit.generation.generate_ids` (the engine under `plmkit.generate`, without the
tokenizer); the peer runs `<Member>LMHeadModel.generate(input_ids, attention_mask, do_sample=False,
num_beams=…, max_new_tokens=…)` with its default cache, as its users do. For an encoder–decoder (T5, BART)
a prompt is the source and the new tokens are the target: the peer is `…ForConditionalGeneration` and its
output's decoder start token is dropped. Both must produce the same tokens, or the run is an error.

Also reported per batch size, for greedy search, from separate timed runs, where a step's time goes: for
plmkit the whole step, the model's decode step alone (LM head included) and the vocabulary projection
alone, so the rest is the engine's own work; for the peer the whole step and its forward with its cache
alone, so the rest is `generate`'s own work (input preparation, masks, logits processors, stopping criteria).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from .. import family
from ..errors import PlmkitError
from ..generation import generate_ids
from .common import hf_peer

PEERS = {"gpt": ("OpenAIGPTLMHeadModel", "eager"), "gpt2": ("GPT2LMHeadModel", "sdpa"),
         "t5": ("T5ForConditionalGeneration", "sdpa"), "bart": ("BartForConditionalGeneration", "sdpa")}


def bench_generate(model: str = "gpt2", size: str = "mini", batch_sizes: tuple[int, ...] = (1, 8),
                   new_tokens: int = 128, prompt_len: int = 32, vocab_size: int | None = None, rounds: int = 3,
                   vs_hf: bool = True, seed: int = 0, threads: int | None = None,
                   num_beams: tuple[int, ...] = (1, 4)) -> dict[str, Any]:
    """Tokens/s of plmkit (and, with `vs_hf`, of its transformers peer) per batch size and beam width (1:
    greedy search), with `threads` torch threads (default: as set)."""
    if model not in PEERS:
        raise PlmkitError(f"bench generate knows {', '.join(PEERS)}, not {model!r}")
    if min(batch_sizes, default=0) < 1 or min(num_beams, default=0) < 1 or new_tokens < 1 or prompt_len < 1 \
            or rounds < 1:
        raise PlmkitError("batch sizes, beams, new tokens, prompt length and rounds must be at least 1")
    member = family.get(model)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return _bench(member, size, batch_sizes, num_beams, new_tokens, prompt_len, vocab_size, rounds, vs_hf, seed)
    finally:
        torch.set_num_threads(before)


def _peer_generate(peer, x: torch.Tensor, n: int, beams: int, encoder_decoder: bool) -> torch.Tensor:
    """The peer's tokens (B, n): `generate` as its users call it, every rule that would change a score off
    (end of text only after n tokens, no forced tokens, no n-gram blocking), so both sides search alike."""
    out = peer.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                        num_beams=beams, length_penalty=1.0, early_stopping=False, no_repeat_ngram_size=0,
                        forced_bos_token_id=None, forced_eos_token_id=None, pad_token_id=0)
    return out[:, 1:] if encoder_decoder else out[:, x.shape[1]:]  # drop the decoder's start / the prompt


def _bench(member, size, batch_sizes, num_beams, new_tokens, prompt_len, vocab_size, rounds, vs_hf,
           seed) -> dict[str, Any]:
    model = member.name
    torch.manual_seed(seed)
    overrides = {"dropout": 0.0, "attention_dropout": 0.0}
    if vocab_size is not None:
        overrides["vocab_size"] = vocab_size
    ours = member.model_cls(member.config_cls.preset(size, **overrides)).eval()
    c = ours.config
    if prompt_len + new_tokens > c.max_positions:
        raise PlmkitError(f"{prompt_len} + {new_tokens} tokens is more than the {c.max_positions} positions")
    peer = hf_peer(ours, *PEERS[model]).eval() if vs_hf else None
    rng = np.random.default_rng(seed)
    encoder_decoder = bool(getattr(ours, "encoder_decoder", False))
    eos = getattr(c, "eos_token_id", None)  # the peer's too: both forbid it before the last new token
    out: dict[str, Any] = {"model": model, "size": size, "vocab_size": c.vocab_size, "new_tokens": new_tokens,
                           "prompt_len": prompt_len, "parameters": ours.num_parameters(),
                           "encoder_decoder": encoder_decoder, "threads": torch.get_num_threads(), "runs": []}
    if vs_hf:
        out["peer"], out["peer_attention"] = PEERS[model]
    for B, K in [(B, K) for K in num_beams for B in batch_sizes]:
        prompts = rng.integers(0, c.vocab_size, (B, prompt_len))
        x = torch.from_numpy(prompts)
        sides = {"plmkit": lambda n: torch.tensor(generate_ids(ours, prompts.tolist(), eos=eos, max_new_tokens=n,
                                                               min_new_tokens=n, temperature=0,
                                                               num_beams=K)).view(B, n)}
        if vs_hf:
            sides["peer"] = lambda n: _peer_generate(peer, x, n, K, encoder_decoder)
        seconds = {name: 0.0 for name in sides}
        tokens = {}
        for name, run in sides.items():  # warm-up: allocator, kernels, the peer's lazy set-up
            run(4)
        for _ in range(rounds):  # alternate, so drifts in machine speed hit both sides alike
            for name, run in sides.items():
                t = time.perf_counter()
                tokens[name] = run(new_tokens)
                seconds[name] += time.perf_counter() - t
        row = {"batch_size": B, "num_beams": K, "tokens_per_s": B * new_tokens * rounds / seconds["plmkit"],
               "ms_per_step": 1e3 * seconds["plmkit"] / rounds / new_tokens}
        if K == 1:
            row.update(_where_time_goes(ours, x, new_tokens))
        if vs_hf:
            if not torch.equal(tokens["plmkit"], tokens["peer"]):
                step = int((tokens["plmkit"] != tokens["peer"]).any(0).nonzero()[0])
                raise PlmkitError(f"batch {B}, {K} beam(s): plmkit and transformers chose different tokens from "
                                  f"step {step}")
            row["peer_tokens_per_s"] = B * new_tokens * rounds / seconds["peer"]
            row["peer_ms_per_step"] = 1e3 * seconds["peer"] / rounds / new_tokens
            if K == 1:
                row["peer_model_ms_per_step"] = _peer_model_step(peer, x, new_tokens, encoder_decoder)
            row["ratio"] = row["tokens_per_s"] / row["peer_tokens_per_s"]
            row["same_tokens"] = True
        out["runs"].append(row)
    return out


@torch.no_grad()
def _where_time_goes(model, x: torch.Tensor, new_tokens: int) -> dict[str, float]:
    """Per decoding step of plmkit, in ms: the model's decode step alone (LM head included), and the
    vocabulary projection alone (hidden state → logits)."""
    B, P = x.shape
    cache = model.new_cache(B, P + new_tokens)
    nxt = model.decode_step(x, None, cache).argmax(-1, keepdim=True)
    t = time.perf_counter()
    for _ in range(new_tokens - 1):
        model.decode_step(nxt, None, cache)
    step = (time.perf_counter() - t) / (new_tokens - 1)
    h = torch.randn(B, model.config.hidden_size)
    t = time.perf_counter()
    for _ in range(new_tokens - 1):
        model.step_logits(h)
    head = (time.perf_counter() - t) / (new_tokens - 1)
    return {"model_ms_per_step": 1e3 * step, "head_ms_per_step": 1e3 * head}


@torch.no_grad()
def _peer_model_step(peer, x: torch.Tensor, new_tokens: int, encoder_decoder: bool) -> float:
    """ms per decoding step of the peer's forward with its own cache, one token at a time (an
    encoder–decoder's: the decoder over the source encoded once, as `generate` runs it)."""
    if encoder_decoder:
        encoded = peer.get_encoder()(input_ids=x)
        start = x.new_full((x.shape[0], 1), peer.config.decoder_start_token_id)
        step = lambda ids, cache: peer(encoder_outputs=encoded, decoder_input_ids=ids, cache=cache, use_cache=True)
        out = step(start, None)
    else:
        step = lambda ids, cache: peer(ids, cache=cache, use_cache=True)
        out = peer(x, use_cache=True)
    cache, nxt = out.cache, out.logits[:, -1:].argmax(-1)
    t = time.perf_counter()
    for _ in range(new_tokens - 1):
        cache = step(nxt, cache).cache
    return 1e3 * (time.perf_counter() - t) / (new_tokens - 1)
