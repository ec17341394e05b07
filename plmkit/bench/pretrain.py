"""Side-by-side benchmarks against the Hugging Face `transformers` peer of a member.

`bench_pretrain` trains the same config from the same initial weights on the same batches with plmkit
and with the peer, alternating timed rounds after a warm-up so both see the same machine state, and
reports tokens/s, their ratio, and MFU: model FLOPs ÷ the matmul peak measured here for the dtype.

Model FLOPs count the work the objective needs, the same for both sides (Kaplan et al. 2020, §2.1:
6 × parameters per token for forward + backward, plus attention 12·L·T·H; the vocabulary projection
only at the positions that are predicted). Work a side does beyond that (e.g. decoding the full
vocabulary at every MLM position) lowers its MFU.

Inference and data preparation have their own modules: `infer` (a fine-tuned classifier, fp32 and
int8, against `<Member>ForSequenceClassification`) and `data` (corpus → token ids against `datasets`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import family
from ..errors import PlmkitError
from .common import hf_peer, matmul_peak

# The transformers class each member is compared with (same architecture, same weights), and its
# fastest attention there: transformers has no SDPA path for GPT-1.
PEERS = {"bert": ("BertForMaskedLM", "sdpa"), "gpt": ("OpenAIGPTLMHeadModel", "eager"),
         "gpt2": ("GPT2LMHeadModel", "sdpa"), "t5": ("T5ForConditionalGeneration", "sdpa")}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class _Tok:
    """The special-token ids the objectives need, for benchmarks on random tokens (no tokenizer)."""

    pad_id, cls_id, sep_id, mask_id, unk_id, bos_id, eos_id = 0, 1, 2, 3, 4, None, 2
    doc_sep_id = 2
    special_ids = {0, 1, 2, 3, 4}

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def token_to_id(self, token: str) -> int | None:
        """T5's sentinels are the last ids of the vocabulary, <extra_id_0> the very last (as in T5's own)."""
        if token.startswith("<extra_id_"):
            return self.vocab_size - 1 - int(token[len("<extra_id_"):-1])
        return None


def model_flops_per_step(model, batch: dict[str, torch.Tensor]) -> float:
    """Forward + backward FLOPs the objective needs for one batch (see the module docstring): the
    blocks at every position, the LM head (transform, if any, and vocabulary projection) only where a
    token is predicted."""
    c = model.config
    B, T = batch["input_ids"].shape
    if getattr(model, "encoder_decoder", False):
        return _seq2seq_flops(model, batch)
    blocks = sum(p.numel() for n, p in model.named_parameters() if n.startswith("layers."))
    transform = c.hidden_size**2 if hasattr(model, "mlm_transform") else 0
    predicted = int(batch["masked"].sum()) if "masked" in batch else B * T
    attention = 12 * c.num_layers * T * c.hidden_size  # per token: QK^T and AV, forward + backward
    return 6 * blocks * B * T + attention * B * T + 6 * (transform + c.hidden_size * c.vocab_size) * predicted


def _seq2seq_flops(model, batch: dict[str, torch.Tensor]) -> float:
    """An encoder–decoder's: the encoder at every source position, the decoder at every target position
    (self-attention over the target, cross-attention over the source), the vocabulary at the labels."""
    c = model.config
    B, S = batch["input_ids"].shape
    U = batch["labels"].shape[1]
    enc = sum(p.numel() for n, p in model.named_parameters() if n.startswith("layers."))
    dec = sum(p.numel() for n, p in model.named_parameters() if n.startswith("decoder.layers."))
    attention = 12 * c.hidden_size * (c.num_layers * S * B * S + c.decoder_layers * B * U * (U + S))
    predicted = int((batch["labels"] != -100).sum())
    return 6 * (enc * B * S + dec * B * U) + attention + 6 * c.hidden_size * c.vocab_size * predicted


def bench_pretrain(model: str = "bert", size: str = "mini", precision: str = "fp32", batch_size: int = 32,
                   seq_len: int = 128, vocab_size: int = 30522, steps: int = 10, warmup: int = 2, rounds: int = 3,
                   vs_hf: bool = True, seed: int = 0) -> dict[str, Any]:
    """Train plmkit's `model` (and its HF peer) on identical random-token batches; returns the measurements."""
    from ..objectives import get_objective

    member = family.get(model)
    if precision not in DTYPES:
        raise PlmkitError(f"precision must be one of {', '.join(DTYPES)} on the CPU")
    objective_name = "mlm" if member.objective.startswith("mlm") else member.objective
    objective = get_objective(objective_name)(_Tok(vocab_size), seq_len, seed=seed)
    torch.manual_seed(seed)
    # Dropout off on both sides: the two implementations draw dropout masks differently, and the
    # loss check below compares them step by step.
    ours = member.model_cls(member.config_cls.preset(size, vocab_size=vocab_size, max_positions=max(seq_len, 512),
                                                     dropout=0.0, attention_dropout=0.0))
    rng = np.random.default_rng(seed)
    n_batches = warmup + steps * rounds
    length = {"mlm": seq_len - 2, "clm": seq_len + 1}.get(objective_name, seq_len - 1)  # seq2seq: + </s>
    batches = [objective.collate(list(rng.integers(5, vocab_size, (batch_size, length))),
                                 torch.Generator().manual_seed(i)) for i in range(n_batches)]
    sides = {"plmkit": (ours, lambda m, b: objective.step(m, b)["loss"])}
    if vs_hf:
        sides["peer"] = (_peer(member.name, ours), _peer_loss(objective_name))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    # The fused AdamW on both sides: plmkit's Trainer uses it, and so does transformers' Trainer (torch >= 2.8).
    state = {name: {"opt": torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True), "seconds": 0.0, "losses": []}
             for name, (m, _) in sides.items()}

    def run(name: str, idx: range) -> float:
        m, loss_fn = sides[name]
        s = state[name]
        t = time.perf_counter()
        for i in idx:
            with autocast:
                loss = loss_fn(m, batches[i])
            loss.backward()
            s["opt"].step()
            s["opt"].zero_grad(set_to_none=True)
            s["losses"].append(loss.item())
        return time.perf_counter() - t

    for name in sides:
        sides[name][0].train()
        run(name, range(warmup))
    for r in range(rounds):  # alternate, so drifts in machine speed hit both sides alike
        idx = range(warmup + r * steps, warmup + (r + 1) * steps)
        for name in sides:
            state[name]["seconds"] += run(name, idx)
    tokens = batch_size * seq_len * steps * rounds
    flops = sum(model_flops_per_step(ours, batches[i]) for i in range(warmup, n_batches))
    peak = matmul_peak(DTYPES[precision])
    out: dict[str, Any] = {"model": member.name, "size": size, "precision": precision, "batch_size": batch_size,
                           "seq_len": seq_len, "vocab_size": vocab_size, "parameters": ours.num_parameters(),
                           "peak_flops": peak, "tokens_per_s": tokens / state["plmkit"]["seconds"],
                           "mfu": flops / state["plmkit"]["seconds"] / peak}
    if vs_hf:
        out["peer"], out["peer_attention"] = PEERS[member.name]
        out["peer_tokens_per_s"] = tokens / state["peer"]["seconds"]
        out["peer_mfu"] = flops / state["peer"]["seconds"] / peak
        out["ratio"] = out["tokens_per_s"] / out["peer_tokens_per_s"]
        a, b = np.array(state["plmkit"]["losses"][:5]), np.array(state["peer"]["losses"][:5])
        out["first_losses"], out["peer_first_losses"] = a.tolist(), b.tolist()
        out["max_loss_diff"] = float(np.abs(a - b).max())  # same weights, same batches: should be ~0
    return out


def _peer(name: str, ours):
    if name not in PEERS:
        raise PlmkitError(f"no transformers peer for {name!r}; known: {', '.join(PEERS)}")
    return hf_peer(ours, *PEERS[name])


def _peer_loss(objective_name: str):
    """How a transformers user computes the same loss: full logits, then cross-entropy."""
    if objective_name == "mlm":
        def loss(m, b):
            labels = torch.full_like(b["input_ids"], -100)
            labels[b["masked"]] = b["labels"]
            return m(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                     token_type_ids=b["token_type_ids"], labels=labels).loss
    elif objective_name != "clm":  # an encoder–decoder: the decoder reads the labels shifted right
        def loss(m, b):
            return m(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
    else:
        def loss(m, b):
            logits = m(input_ids=b["input_ids"]).logits
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), b["labels"].reshape(-1))
    return loss
