"""The shared transformer core that GPT, BERT and their descendants build on (not a family member
itself): config, embeddings + a stack of blocks, weight init, and the model output.

Shape legend: B = batch, T = sequence length, H = hidden size, V = vocabulary, L = layers.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import Config
from ..errors import PlmkitError
from ..generation.cache import KVCache
from ..layers import ACTIVATIONS, Block, Embeddings
from ..layers.attention import IMPLEMENTATIONS
from ..layers.embeddings import POSITIONS
from .presets import SIZES


@dataclasses.dataclass(frozen=True)
class TransformerConfig(Config):
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 0  # segment (sentence A/B) embeddings; 0 = none
    dropout: float = 0.1  # on embeddings and residual branches
    attention_dropout: float = 0.1
    activation: str = "gelu"  # see plmkit.layers.ACTIVATIONS
    norm_first: bool = False  # True: pre-LN (arXiv:2002.04745, Fig. 1); False: post-LN as in the original
    embedding_norm: bool = True  # LayerNorm after summing the embeddings
    layer_norm_eps: float = 1e-12
    position: str = "learned"  # "learned" | "sinusoidal"
    causal: bool = False  # each token sees only its left context
    initializer_range: float = 0.02
    pad_token_id: int | None = 0

    def validate(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions"):
            if getattr(self, name) <= 0:
                raise PlmkitError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise PlmkitError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        if self.activation not in ACTIVATIONS:
            raise PlmkitError(f"unknown activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")
        if self.position not in POSITIONS:
            raise PlmkitError(f"unknown position {self.position!r}; choose from {POSITIONS}")
        if not (0 <= self.dropout < 1 and 0 <= self.attention_dropout < 1):
            raise PlmkitError("dropout probabilities must be in [0, 1)")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise PlmkitError(f"pad_token_id {self.pad_token_id} outside the vocabulary of {self.vocab_size}")

    @classmethod
    def preset(cls, size: str, source=None, **overrides):
        """The size preset with `overrides` on top; `source` names the file the overrides came from."""
        if size not in SIZES:
            raise PlmkitError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
        return cls.from_dict({**SIZES[size], **overrides}, source=source)


def resized(vector: nn.Parameter, n: int) -> nn.Parameter:
    """A per-token (V,) parameter (an output bias) cut or zero-extended to n entries, for
    `resize_token_embeddings`: new tokens start at zero."""
    if vector.numel() == n:
        return vector
    out = vector.detach().new_zeros(n)
    out[:min(n, vector.numel())] = vector.detach()[:n]
    return nn.Parameter(out)


@dataclasses.dataclass
class ModelOutput:
    last_hidden_state: torch.Tensor  # (B, T, H)
    logits: torch.Tensor | None = None  # (B, T, V), or (M, V) at the M selected positions
    pooler_output: torch.Tensor | None = None  # (B, H)
    seq_relationship_logits: torch.Tensor | None = None  # (B, 2)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # L + 1 × (B, T, H): embeddings, then each layer
    attentions: tuple[torch.Tensor, ...] | None = None  # L × (B, N, T, T)
    loss: torch.Tensor | None = None  # when the forward was given labels and computes its own loss
    mems: tuple[torch.Tensor, ...] | None = None  # L × (B, M, H): memory for the next segment (Transformer-XL)
    encoder_last_hidden_state: torch.Tensor | None = None  # (B, S, H): an encoder-decoder's source states
    task_logits: torch.Tensor | None = None  # a pre-training task head's output, (B, T, C) or (B, C) (ERNIE 2.0)


class Transformer(nn.Module):
    """Embeddings and a stack of blocks; members add their heads and pre-training outputs."""

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = self.build_embeddings()
        self.layers = self.build_layers()
        self.final_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps) if c.norm_first else None

    # Hooks a member overrides to change the body's parts (ALBERT: factorized embedding, one shared block).
    def build_embeddings(self, size: int | None = None, position_offset: int = 0) -> Embeddings:
        """The input embeddings, `size` wide (default H)."""
        c = self.config
        return Embeddings(c.vocab_size, size or c.hidden_size, c.max_positions, c.position, c.type_vocab_size,
                          c.embedding_norm, c.layer_norm_eps, c.dropout, c.pad_token_id, position_offset)

    def build_layers(self) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(Block(c.hidden_size, c.num_heads, c.intermediate_size, c.activation, c.dropout,
                                   c.attention_dropout, c.causal, c.norm_first, c.layer_norm_eps)
                             for _ in range(c.num_layers))

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) → (B, T, H): what the first block reads."""
        return self.embeddings(input_ids, token_type_ids, position_ids)

    def stack(self) -> list[nn.Module]:
        """The blocks in the order they run (a block may appear more than once)."""
        return list(self.layers)

    def init_weights(self) -> None:
        """Normal(0, initializer_range) for weights, zero biases, unit LayerNorm (BERT's and GPT's init)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=self.config.initializer_range)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    nn.init.zeros_(m.weight[m.padding_idx])
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
               output_attentions: bool = False, attn_impl: str = "sdpa", rows: torch.Tensor | None = None,
               cache: KVCache | None = None, block: torch.Tensor | None = None,
               position_ids: torch.Tensor | None = None, **embed_inputs) -> ModelOutput:
        """input_ids, token_type_ids: (B, T) → hidden states (B, T, H). attention_mask: (B, T), 1 = real
        token; or (B, T, T) bool, which keys each query sees (UniLM's masks), replacing the causal rule.
        rows: optional (B,) long, the one position per sequence a sequence-level head reads ([CLS], or a
        causal model's last token); the last layer is then computed there only, and last_hidden_state
        (like the last of hidden_states) is (B, 1, H). The earlier layers run at every position, since
        the last one's keys and values need them.
        cache: a decoding step (plmkit.generation): input_ids are the T tokens after those in the cache
        (attention_mask (B, T) marks left padding), their keys and values are added to it, and `block`
        ((T, T) bool, default causal) says which of the new tokens each new token sees.
        position_ids: (B, T), without a cache, each token's position where it is not its index (XLM's
        translation pairs count each sentence from 0).
        embed_inputs: what a member's `embed` reads beyond tokens, types and positions (ERNIE 2.0's
        task_type_ids); a member whose embedding takes none refuses them."""
        if attn_impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown attn_impl {attn_impl!r}; choose from {IMPLEMENTATIONS}")
        T = input_ids.shape[1]
        end = T if cache is None else cache.length + T
        if end > self.config.max_positions:
            raise ValueError(f"sequence of {end} tokens is longer than max_positions={self.config.max_positions}")
        positions = position_ids
        if cache is not None:
            positions, key_mask = cache.extend(T, attention_mask, block)  # (B, T), (B, T, S) or None
        else:
            key_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        key_mask = self.layer_mask(key_mask, T, end)
        x = self.embed(input_ids, token_type_ids, positions, **embed_inputs)
        hidden, attentions = [x], []
        stack = self.stack()
        for i, layer in enumerate(stack):
            x, w = layer(x, key_mask, attn_impl, output_attentions, rows if i == len(stack) - 1 else None,
                         None if cache is None else cache.layers[i])
            hidden.append(x)
            attentions.append(w)
        if self.final_norm is not None:
            x = self.final_norm(x)
            hidden[-1] = x
        return ModelOutput(last_hidden_state=x,
                           hidden_states=tuple(hidden) if output_hidden_states else None,
                           attentions=tuple(attentions) if output_attentions else None)

    def layer_mask(self, key_mask: torch.Tensor | None, queries: int, keys: int) -> torch.Tensor | None:
        """The mask every layer reads, from the padding mask ((B, S) or (B, T, S) bool, or None) for the last
        `queries` of `keys` positions: a member whose positions enter the attention scores (T5's bias, shared
        by all layers) returns them here as a float (B|1, N, T, S) mask."""
        return key_mask

    def new_cache(self, batch_size: int, max_length: int) -> KVCache:
        """Buffers for `max_length` positions of keys and values in every block the stack runs (a shared
        block runs, and caches, once per use), in the model's dtype and device."""
        c, p = self.config, self.embeddings.tokens.weight
        if max_length > c.max_positions:
            raise ValueError(f"{max_length} positions is more than max_positions={c.max_positions}")
        return KVCache(len(self.stack()), batch_size, c.num_heads, c.hidden_size // c.num_heads, max_length,
                       p.dtype, p.device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def resize_token_embeddings(self, vocab_size: int) -> None:
        """Give the token embedding `vocab_size` rows, e.g. for tokens added at fine-tuning (GPT's [start],
        [delim], [extract]): existing rows are kept, new rows drawn like the initial weights, and
        config.vocab_size follows so the model saves and loads at its new size. A tied output layer
        follows the embedding; members with other per-token parameters extend this method."""
        old = self.embeddings.tokens
        if vocab_size == old.num_embeddings:
            return
        new = nn.Embedding(vocab_size, old.embedding_dim, padding_idx=old.padding_idx,
                           device=old.weight.device, dtype=old.weight.dtype)
        nn.init.normal_(new.weight, std=self.config.initializer_range)
        n = min(vocab_size, old.num_embeddings)
        with torch.no_grad():
            new.weight[:n] = old.weight[:n]
        self.embeddings.tokens = new
        self.config = self.config.replace(vocab_size=vocab_size)
