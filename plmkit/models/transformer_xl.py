"""Transformer-XL = GPT + segment-level recurrence + relative positions. Dai et al. 2019, arXiv:1901.02860.

§3.2: each layer n keeps the last `mem_len` of its inputs, gradient stopped; the next segment's layer n
attends over [SG(memory) ∘ h], so the context reaches back N × mem_len tokens at no extra cost per segment.
§3.3: with the memory, absolute positions would collide (every segment's first token at 0), so there are none:
positions enter only through the attention's relative terms, sinusoids of i − j through W_R with learned
biases u, v (plmkit.layers.xl_attention). Training feeds each batch row a contiguous stream (objective
`recurrent-clm`), so the memory is the text just before the segment. Decoding (plmkit.generation) keeps
the keys and values of the whole past in the engine's cache instead: they carry no position, so cached
columns stay valid as the queries move on.

The block keeps GPT-1's post-LN layout and tied output layer; the attention has no biases in its
projections and learns u, v per layer (the released models' untie_r). Not kept from the paper: the
adaptive softmax and embedding (a vocabulary of 267K words) and the √H embedding scale that goes with
them. transformers 5 no longer has the model: it is saved under plmkit's names (config.json model_type
"plmkit-transformer-xl"), and tested against the paper's formulas.

Shape legend: B = batch, T = segment length, M = memory, K = M + T, H = hidden size, L = layers.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..generation.cache import KVCache
from ..layers.xl_attention import MemoryBlock, RelativeAttention, Relations, relative_sinusoids
from .gpt import Gpt, GptConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class TransformerXLConfig(GptConfig):
    position: str = "none"  # positions enter only through the attention's relative terms (§3.3)
    mem_len: int = 128  # states of earlier segments each layer keeps; training uses the segment length (§4)

    def validate(self) -> None:
        super().validate()
        if self.position != "none":
            raise PlmkitError(f"{type(self).__name__} has relative positions only: position must be 'none', "
                              f"got {self.position!r}")
        if self.norm_first:
            raise PlmkitError(f"{type(self).__name__} blocks are post-LN: norm_first must be false")
        if self.mem_len < 0:
            raise PlmkitError(f"mem_len must be >= 0, got {self.mem_len}")


def key_mask(attention_mask: torch.Tensor, M: int, T: int) -> torch.Tensor:
    """(B, T) or (B, M + T) attention mask (1 = real token) → (B, M + T) bool over memory and segment; a
    (B, T) mask leaves every memory position visible."""
    keys = attention_mask.bool()
    if keys.shape[1] == M + T:
        return keys
    if keys.shape[1] != T:
        raise ValueError(f"attention_mask covers {keys.shape[1]} positions; expected {T} or {M + T}")
    return F.pad(keys, (M, 0), value=True)


@register("transformer-xl", parent="gpt", year=2019, paper="Dai et al. 2019, arXiv:1901.02860",
          diff={"body": ["+ segment-level recurrence: each layer also attends over the previous segment's states "
                         "(mem_len, gradient stopped)"],
                "layers": ["− absolute position embeddings",
                           "+ relative positions: sinusoids of i − j through W_R, learned biases u, v"],
                "training": ["each batch row reads one contiguous stream, segment after segment, memory carried"]},
          config=TransformerXLConfig, objective="recurrent-clm", tokenizer="bpe")
class TransformerXL(Gpt):
    config_class = TransformerXLConfig
    hf = None  # removed from transformers 5: saved under plmkit's names
    segments = False  # XLNet adds a relative segment term to the attention

    def build_layers(self) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(MemoryBlock(c.hidden_size, c.num_heads, c.intermediate_size, c.activation, c.dropout,
                                         c.attention_dropout, c.layer_norm_eps, self.segments)
                             for _ in range(c.num_layers))

    def init_weights(self) -> None:
        """GPT's init, and the same normal for the attention's (H, N, D) projections and biases."""
        super().init_weights()
        for m in self.modules():
            if isinstance(m, RelativeAttention):
                for p in m.parameters(recurse=False):
                    nn.init.normal_(p, std=self.config.initializer_range)

    def streams(self, x: torch.Tensor, M: int, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, cache: KVCache | None = None,
                block: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, Relations, torch.Tensor | None, Relations | None]:
        """The distance table (P, H), the content stream's relations, and a query stream with its relations
        (none here: XLNet adds one). x: (B, T, H) embedded segment; M: memory length. A causal model needs
        the distances K − 1 … 0, a bidirectional one K − 1 … −(T − 1). cache, block: a decoding step."""
        if cache is not None:
            table, rel, _, _ = self.cached_relations(x.shape[1], attention_mask, cache, block)
            return table, rel, None, None
        T, K = x.shape[1], M + x.shape[1]
        last = 0 if self.config.causal else -(T - 1)
        table = relative_sinusoids(torch.arange(K - 1, last - 1, -1, device=x.device), self.config.hidden_size)
        i = torch.arange(T, device=x.device)[:, None]
        j = torch.arange(K, device=x.device)[None, :]
        index = (T - 1 - i + j).clamp(max=table.shape[0] - 1)[None]  # (1, T, K): the row of distance M + i − j
        visible = (j <= M + i)[None] if self.config.causal else None  # (1, T, K): the memory, the segment up to i
        if attention_mask is not None:
            keys = key_mask(attention_mask, M, T)[:, None, :]  # (B, 1, K)
            visible = keys if visible is None else visible & keys
        return self.embeddings.drop(table), Relations(index, visible), None, None

    def cached_relations(self, T: int, attention_mask: torch.Tensor | None, cache: KVCache,
                         block: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, Relations, torch.Tensor, torch.Tensor]:
        """A decoding step of T new tokens: reserve their cache columns, and relate them to all S columns by
        the distance of their position ids, which count each row's real tokens, so left padding changes
        nothing. Returns the table (distances S … 0), the relations, and the positions of the new tokens
        (B, T) and of every column (B, S)."""
        positions, seen = cache.extend(T, attention_mask, block)  # (B, T), (B, T, S) or None: causal
        S = cache.length
        columns = cache.key_mask[:, :S].long().cumsum(1) - 1  # (B, S): a real column's position
        table = relative_sinusoids(torch.arange(S, -1, -1, device=positions.device), self.config.hidden_size)
        index = (S - positions[:, :, None] + columns[:, None, :]).clamp(0, S)  # (B, T, S): the row of the distance
        return self.embeddings.drop(table), Relations(index, seen), positions, columns

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
               output_attentions: bool = False, attn_impl: str = "sdpa", rows: torch.Tensor | None = None,
               mems: tuple[torch.Tensor, ...] | None = None, mem_len: int | None = None,
               cache: KVCache | None = None, block: torch.Tensor | None = None, **stream_inputs) -> ModelOutput:
        """As Transformer.encode, over the memory `mems` (L × (B, M, H), the previous segment's `out.mems`)
        as well: attention_mask (B, T), or (B, M + T) to mask memory positions too. `out.mems` holds, per
        layer, its input over the last `mem_len` positions of memory + segment (default config.mem_len;
        0: no memory kept, out.mems is None), gradient stopped. `stream_inputs` go to `streams` (XLNet's
        perm_mask, target_positions); with a query stream, last_hidden_state is its output. cache, block: a
        decoding step (plmkit.generation): the earlier keys and values come from the cache, not a memory,
        and no memory is kept."""
        if cache is not None and mems is not None:
            raise ValueError("a decoding step reads its past from the cache; pass no mems")
        x = self.embed(input_ids)  # (B, T, H)
        M = 0 if mems is None else mems[0].shape[1]
        table, rel, g, rel_g = self.streams(x, M, attention_mask, token_type_ids, cache=cache, block=block,
                                            **stream_inputs)
        mem_len = 0 if cache is not None else self.config.mem_len if mem_len is None else mem_len
        h, hidden, attentions, new_mems = x, [x], [], []
        for i, layer in enumerate(self.stack()):
            memory = None if mems is None else mems[i]
            if mem_len:
                new_mems.append((h if memory is None else torch.cat([memory.to(h.dtype), h], 1))[:, -mem_len:].detach())
            h, g, w = layer(h, memory, table, rel, attn_impl, output_attentions, g, rel_g,
                            None if cache is None else cache.layers[i])
            hidden.append(h)
            attentions.append(w)
        out = h if g is None else g
        if rows is not None and g is None:  # every position is computed; the heads' one is picked after
            # (a query stream, XLNet's decoding step, already holds only the position it predicts)
            out = out[torch.arange(out.shape[0], device=out.device), rows].unsqueeze(1)  # (B, 1, H)
            hidden[-1] = out
        return ModelOutput(last_hidden_state=out, hidden_states=tuple(hidden) if output_hidden_states else None,
                           attentions=tuple(attentions) if output_attentions else None,
                           mems=tuple(new_mems) if mem_len else None)
