"""The key/value cache of incremental decoding: every layer's keys and values for the positions decoded so
far, in buffers allocated once for the whole generation.

Why pre-allocated: a cache grown by concatenation copies all of itself at every step (O(S²) memory traffic
over S steps, and an allocation per layer per step); here a step writes only its own T new columns and
attention reads a view of the filled prefix.

Rows are aligned: a batch of prompts of different lengths is left-padded, so every row fills the same
columns at each step and one `length` describes them all; `key_mask` says which columns are real tokens,
and each row's position ids count only its real tokens, so a padded row decodes exactly as it would alone.

Shape legend: L = layers, B = batch, N = heads, S = the columns allocated, D = head size, T = new tokens.
"""

from __future__ import annotations

import torch


class LayerCache:
    """One layer's view of a `KVCache`: what the attention layer writes its new keys and values into."""

    __slots__ = ("cache", "index")

    def __init__(self, cache: "KVCache", index: int):
        self.cache, self.index = cache, index

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """k, v: (B, N, T, D) of the new tokens → keys and values of every position so far, (B, N, S', D)
        views of the buffers (S' = the filled length)."""
        c = self.cache
        keys, values = c.keys[self.index], c.values[self.index]
        keys[:, :, c.start:c.length] = k
        values[:, :, c.start:c.length] = v
        return keys[:, :, :c.length], values[:, :, :c.length]


class KVCache:
    """Keys and values of L layers for B rows, allocated once for `max_length` positions.

    A step calls `extend(T, attention_mask)` once (it reserves the columns of the step's T tokens and returns
    their position ids and attention mask), then each layer `layers[i].update(k, v)`.
    """

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, head_dim: int, max_length: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (num_layers, batch_size, num_heads, max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)  # (L, B, N, S, D)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.key_mask = torch.zeros(batch_size, max_length, dtype=torch.bool, device=device)  # (B, S) real tokens
        self.seen = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,) real tokens so far
        self.start = self.length = 0  # the current step writes columns [start, length)
        self.padded = False  # whether any column holds padding
        self.layers = [LayerCache(self, i) for i in range(num_layers)]

    @property
    def max_length(self) -> int:
        return self.keys.shape[3]

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    def extend(self, num_tokens: int, attention_mask: torch.Tensor | None = None,
               block: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reserve the columns of T = num_tokens new tokens.

        attention_mask: (B, T), 1 = a real token, 0 = left padding; None: all real.
        block: (T, T) bool, which new tokens each new token sees (default causal: itself and those before);
            the earlier columns are always seen where they hold real tokens.
        Returns the position ids (B, T) and the attention mask (B, T, S') for the step, or None when every
        query may see every column (one new token and no padding anywhere: the common decoding step)."""
        T = num_tokens
        if self.length + T > self.max_length:
            raise ValueError(f"the cache holds {self.max_length} positions; {self.length} are filled and "
                             f"{T} more do not fit")
        self.start, self.length = self.length, self.length + T
        steps = torch.arange(1, T + 1, device=self.seen.device)
        if attention_mask is None:
            self.key_mask[:, self.start:self.length] = True
            positions = self.seen[:, None] + steps - 1  # (B, T)
            self.seen += T
        else:
            new = attention_mask.bool()
            self.padded = self.padded or not bool(new.all())
            self.key_mask[:, self.start:self.length] = new
            positions = (self.seen[:, None] + new.long().cumsum(1) - 1).clamp(min=0)  # padding: its row's next id
            self.seen += new.long().sum(1)
        if T == 1 and block is None and not self.padded:
            return positions, None
        B = self.batch_size
        seen_keys = self.key_mask[:, None, :self.length].expand(B, T, self.length).clone()  # (B, T, S')
        if block is None:
            block = torch.ones(T, T, dtype=torch.bool, device=seen_keys.device).tril()
        seen_keys[:, :, self.start:] &= block
        # Every query sees itself, so a padding query (which sees no real token) never meets an all-masked
        # row, whose softmax is NaN and would leak into the real rows through its keys and values.
        seen_keys[:, :, self.start:] |= torch.eye(T, dtype=torch.bool, device=seen_keys.device)
        return positions, seen_keys

    def rewind(self, n: int) -> None:
        """Forget the last n columns: the next step writes over them (UniLM's [MASK] query, whose keys
        are needed within its step only)."""
        if not 0 <= n <= self.length - self.start:
            raise ValueError(f"can rewind only within the last step ({self.length - self.start} columns), not {n}")
        dropped = self.key_mask[:, self.length - n:self.length]
        self.seen -= dropped.long().sum(1)
        dropped.fill_(False)
        self.length -= n
        self.start = min(self.start, self.length)

    def reorder(self, index: torch.Tensor) -> None:
        """Rows follow `index` ((B',) long into the current rows): beam search keeps the beams it extends,
        a finished row leaves the batch. The buffers keep their S columns; only the filled ones are copied."""
        n = self.length
        self.keys = _take(self.keys, index, n)
        self.values = _take(self.values, index, n)
        self.key_mask = self.key_mask[index]
        self.seen = self.seen[index]


def _take(buffer: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """buffer (L, B, N, S, D) → (L, B', N, S, D) with rows `index`, copying only the n filled columns."""
    if index.shape[0] == buffer.shape[1]:  # the same number of rows: reorder in place, no new allocation
        buffer[:, :, :, :n] = buffer[:, index, :, :n]
        return buffer
    out = buffer.new_zeros(buffer.shape[0], index.shape[0], *buffer.shape[2:])
    out[:, :, :, :n] = buffer[:, index, :, :n]
    return out


class Seq2seqCache:
    """The decoding state of an encoder–decoder: a `KVCache` of the decoder's own tokens, and for each decoder
    layer the keys and values of the source, which the first step computes (`start`) and no step changes.

    Rows and sources: beam search decodes K rows per source. The source's keys and values are kept once per
    source and the rows of one source stay together (row r reads source r // G, G rows per source), which
    `CrossAttention` turns into one attention with G × T queries; so `reorder` copies them only when a
    reordering breaks that layout (finished rows leaving a batch: then only the rows kept are copied)."""

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, head_dim: int, max_length: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        self.shape = (num_layers, batch_size, num_heads, head_dim)
        self.max_length, self.dtype, self.device = max_length, dtype, device
        self.target: KVCache | None = None
        self.memory: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer (B', N, S, D) × 2
        self.memory_mask: torch.Tensor | None = None  # (B', S) real source tokens; None: all real
        self.source: torch.Tensor | None = None  # (R,) the source each row reads

    @property
    def length(self) -> int:
        return 0 if self.target is None else self.target.length

    @property
    def layers(self) -> list[LayerCache]:
        return self.target.layers

    def start(self, memory: list[tuple[torch.Tensor, torch.Tensor]], memory_mask: torch.Tensor | None,
              source_length: int) -> None:
        """The source's keys and values, once; the target's columns: those of `max_length` the source left
        (the engine counts prompt + new tokens), plus the start token."""
        L, B, N, D = self.shape
        self.memory, self.memory_mask = memory, memory_mask
        self.source = torch.arange(B, device=memory[0][0].device)
        self.target = KVCache(L, B, N, D, max(self.max_length - source_length + 1, 1), self.dtype, self.device)

    def reorder(self, index: torch.Tensor) -> None:
        """Rows follow `index` ((R',) long into the current rows), as KVCache.reorder."""
        self.target.reorder(index)
        source = self.source[index]  # (R',)
        used = torch.unique_consecutive(source)
        G = len(source) // len(used)
        if G * len(used) == len(source) and torch.equal(source, used.repeat_interleave(G)):
            stored = self.memory[0][0].shape[0]
            if len(used) != stored or not torch.equal(used, torch.arange(stored, device=used.device)):
                self._take(used)  # some sources have no row left
            self.source = torch.arange(len(used), device=source.device).repeat_interleave(G)
        else:  # rows of one source no longer together: a copy of the source per row
            self._take(source)
            self.source = torch.arange(len(source), device=source.device)

    def _take(self, sources: torch.Tensor) -> None:
        self.memory = [(k[sources], v[sources]) for k, v in self.memory]
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask[sources]
