"""Transformer = a bidirectional encoder + a causal decoder whose blocks also attend to the encoder's output,
trained to translate. Vaswani et al. 2017, "Attention Is All You Need", arXiv:1706.03762.

The encoder–decoder body every sequence-to-sequence member subclasses (T5, BART, MASS). The encoder is the
transformer core of plmkit/models/transformer.py (BERT's stack); the decoder's blocks are causal and add
attention to the encoder's output (§3.1, §3.2.3). As in the paper: post-LN blocks, sinusoidal positions
(§3.5), ReLU feed-forward, one token embedding shared by both stacks and the output layer, multiplied by √H
in the embedding layers (§3.4).

Training is teacher-forced: the decoder reads the target shifted right behind a start token and predicts it;
with `labels` the loss (optionally label-smoothed, §5.4) is computed chunk by chunk without the logits
(plmkit/layers/lm_loss.py). Decoding follows plmkit.generation's protocol: the first `decode_step` reads the
source, encodes it once and keeps each decoder layer's keys and values of it in the cache; every step after
runs the decoder on one new token per row.

Shape legend: B = batch, S = source length, U = target length, H = hidden size, V = vocabulary, N = heads,
D = H / N.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..generation.cache import Seq2seqCache
from ..layers import DecoderBlock, make_norm
from ..layers.lm_loss import lm_cross_entropy
from .transformer import ModelOutput, Transformer, TransformerConfig


@dataclasses.dataclass(frozen=True)
class Seq2seqConfig(TransformerConfig):
    vocab_size: int = 37000  # one BPE vocabulary for source and target (§5.1)
    position: str = "sinusoidal"  # §3.5
    activation: str = "relu"  # FFN(x) = max(0, xW1 + b1)W2 + b2 (§3.3)
    embedding_norm: bool = False
    layer_norm_eps: float = 1e-5
    num_decoder_layers: int | None = None  # None: as many as the encoder's num_layers
    tie_embeddings: bool = True  # the output layer is the token embedding (§3.4); False: a matrix of its own
    scale_embeddings: bool = True  # token vectors × √H in both stacks (§3.4)
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int = 2  # ends a target
    decoder_start_token_id: int = 1  # the decoder's first input

    def validate(self) -> None:
        super().validate()
        if self.causal:
            raise PlmkitError("an encoder–decoder's encoder reads both ways: causal must be false")
        if self.num_decoder_layers is not None and self.num_decoder_layers < 1:
            raise PlmkitError(f"num_decoder_layers must be positive, got {self.num_decoder_layers}")
        for name in ("bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise PlmkitError(f"{name} {value} outside the vocabulary of {self.vocab_size}")

    @property
    def decoder_layers(self) -> int:
        return self.num_decoder_layers or self.num_layers

    @classmethod
    def token_ids(cls, tokenizer) -> dict[str, int]:
        """The config's special ids for `tokenizer` (pre-training fits them, as it fits vocab_size): the
        decoder starts from <s> and a target ends at </s> (the translate objective's frame)."""
        eos = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.sep_id
        bos = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.cls_id
        if eos is None or bos is None:
            raise PlmkitError("an encoder–decoder needs a tokenizer with bos/cls and eos/sep tokens")
        return {"eos_token_id": eos, "bos_token_id": bos, "decoder_start_token_id": bos}


@register("transformer", parent=None, year=2017, paper="Vaswani et al. 2017, Attention Is All You Need, arXiv:1706.03762",
          diff={"body": ["encoder (self-attention both ways) + decoder (causal self-attention + attention to the "
                         "encoder's output)", "no recurrence: attention only"],
                "layers": ["sinusoidal positions", "post-LN blocks", "ReLU feed-forward",
                           "one embedding for source, target and output, × √H"],
                "objective": ["translation, teacher-forced, label smoothing 0.1"],
                "tokenizer": ["BPE shared by source and target"]},
          config=Seq2seqConfig, objective="translate", tokenizer="bpe", kind="encoder-decoder")
class Seq2seq(Transformer):
    config_class = Seq2seqConfig
    generates = True  # plmkit.generation decodes it (sources in, targets out)
    encoder_decoder = True  # its prompts are sources: the decoder's positions start again at 0

    def __init__(self, config: Seq2seqConfig):
        super().__init__(config)  # the encoder: embeddings, layers, final_norm
        c = config
        self.decoder = nn.Module()
        self.decoder.embeddings = self.build_embeddings()
        self.decoder.embeddings.tokens = None  # the decoder reads the encoder's token table
        self.decoder.layers = nn.ModuleList(DecoderBlock(c.hidden_size, c.num_heads, c.intermediate_size,
                                                         c.activation, c.dropout, c.attention_dropout, c.norm_first,
                                                         c.layer_norm_eps, **self.block_options())
                                            for _ in range(c.decoder_layers))
        self.decoder.final_norm = self.build_norm() if c.norm_first else None
        if c.norm_first:
            self.final_norm = self.build_norm()
        self.lm_head = None if c.tie_embeddings else nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.build_heads()
        self.init_weights()

    # Hooks a member overrides to change the parts (T5: RMS norm, no biases, no scaling, relative positions).
    def block_options(self) -> dict:
        """Keyword arguments of every encoder and decoder block beyond the config's sizes."""
        return {}

    def build_norm(self) -> nn.Module:
        return make_norm(self.block_options().get("norm", "layer"), self.config.hidden_size, self.config.layer_norm_eps)

    def build_layers(self) -> nn.ModuleList:
        from ..layers import Block

        c = self.config
        return nn.ModuleList(Block(c.hidden_size, c.num_heads, c.intermediate_size, c.activation, c.dropout,
                                   c.attention_dropout, False, c.norm_first, c.layer_norm_eps, **self.block_options())
                             for _ in range(c.num_layers))

    def build_heads(self) -> None:
        """Pre-training outputs beyond the LM head (BART: a fixed bias on the logits)."""

    def init_weights(self) -> None:
        """The core's init; a token table scaled by √H starts at std H^-½ so the scaled vectors have unit
        scale (fairseq's transformer)."""
        super().init_weights()
        if self.config.scale_embeddings:
            tokens = self.embeddings.tokens
            nn.init.normal_(tokens.weight, std=self.config.hidden_size ** -0.5)
            if tokens.padding_idx is not None:
                nn.init.zeros_(tokens.weight[tokens.padding_idx])

    def token_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) → (B, T, H): the shared table, scaled by √H where the config says so."""
        x = self.embeddings.tokens(ids)
        return x * math.sqrt(self.config.hidden_size) if self.config.scale_embeddings else x

    def embed(self, input_ids, token_type_ids=None, position_ids=None) -> torch.Tensor:
        return self.embeddings.add(self.token_vectors(input_ids), token_type_ids, position_ids)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, *args, position_ids: torch.Tensor | None = None,
               **kwargs) -> ModelOutput:
        """The encoder (the core's `encode`). A padded source counts each row's positions from its first real
        token, so a left-padded batch (the decoding engine's) encodes as each source alone."""
        if position_ids is None and attention_mask is not None and attention_mask.dim() == 2 \
                and not bool(attention_mask.all()):
            position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, S)
        return super().encode(input_ids, attention_mask, token_type_ids, *args, position_ids=position_ids, **kwargs)

    def memory(self, encoded: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The encoder's output (B, S, H) → each decoder layer's keys and values of it, (B, N, S, D) each."""
        return [layer.cross.memory(encoded) for layer in self.decoder.layers]

    def decoder_mask(self, key_mask: torch.Tensor | None, queries: int, keys: int) -> torch.Tensor | None:
        """The decoder's `layer_mask`: None or a cached step's (B, T, S) mask, and the causal rule of its blocks."""
        return key_mask

    def decode(self, decoder_input_ids: torch.Tensor, memory: list[tuple[torch.Tensor, torch.Tensor]],
               memory_mask: torch.Tensor | None, position_ids: torch.Tensor | None = None,
               cache: Seq2seqCache | None = None, attn_impl: str = "sdpa") -> torch.Tensor:
        """decoder_input_ids (R, U), memory: `memory(encoded)`, memory_mask (B', S) bool or None → the
        decoder's last states (R, U, H). position_ids: (R, U), each token's position where it is not its
        index (MASS decodes the masked span alone, at its positions in the sentence). cache: a decoding
        step; the U tokens come after those in it."""
        U = decoder_input_ids.shape[1]
        key_mask = None
        if cache is not None:
            position_ids, key_mask = cache.target.extend(U)
        end = U if cache is None else cache.length
        key_mask = self.decoder_mask(key_mask, U, end)
        x = self.decoder.embeddings.add(self.token_vectors(decoder_input_ids), None, position_ids)  # (R, U, H)
        for i, layer in enumerate(self.decoder.layers):
            x, _, _ = layer(x, memory[i], memory_mask, key_mask, attn_impl, False,
                            None if cache is None else cache.layers[i])
        return x if self.decoder.final_norm is None else self.decoder.final_norm(x)

    def lm_features(self, h: torch.Tensor) -> torch.Tensor:
        """(…, H) → what the output layer reads: the decoder's state itself."""
        return h

    def lm_decoder(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output layer's (V, H) weight and (V,) bias or None."""
        return (self.embeddings.tokens.weight if self.lm_head is None else self.lm_head.weight), None

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(self.lm_features(h), *self.lm_decoder())

    def step_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(R, H) → (R, V) for a decoding step, vocabulary-major (W·hᵀ, transposed), which runs faster than
        h·Wᵀ with a few rows (the reason plmkit/layers/lm_loss.py is vocabulary-major too)."""
        weight, bias = self.lm_decoder()
        logits = (weight @ self.lm_features(h).T).T
        return logits if bias is None else logits + bias

    def shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Targets (B, U) → decoder inputs: the start token, then the targets but the last (-100 → pad)."""
        c = self.config
        start = labels.new_full((labels.shape[0], 1), c.decoder_start_token_id)
        shifted = torch.cat([start, labels[:, :-1]], 1)
        return shifted.masked_fill(shifted == -100, c.pad_token_id if c.pad_token_id is not None else 0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, *, decoder_input_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, decoder_position_ids: torch.Tensor | None = None,
                label_smoothing: float = 0.0, attn_impl: str = "sdpa") -> ModelOutput:
        """input_ids (B, S), attention_mask (B, S) → the encoder's states, and with decoder_input_ids (B, U)
        or labels (B, U; -100 = not counted; decoder inputs default to them shifted right) the decoder's
        states (last_hidden_state) and logits (B, U, V), or with labels the mean cross-entropy `loss`
        instead of the logits (label_smoothing ε: (1 − ε)·CE + ε·mean over the vocabulary of −log p)."""
        enc = self.encode(input_ids, attention_mask, token_type_ids, attn_impl=attn_impl).last_hidden_state
        if decoder_input_ids is None and labels is None:
            return ModelOutput(last_hidden_state=enc, encoder_last_hidden_state=enc)
        if decoder_input_ids is None:
            decoder_input_ids = self.shift_right(labels)
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        h = self.decode(decoder_input_ids, self.memory(enc), mask, decoder_position_ids, attn_impl=attn_impl)
        out = ModelOutput(last_hidden_state=h, encoder_last_hidden_state=enc)
        if labels is not None:
            weight, bias = self.lm_decoder()
            out.loss = lm_cross_entropy(self.lm_features(h), weight, labels, bias, label_smoothing=label_smoothing)
        else:
            out.logits = self.lm_logits(h)
        return out

    # The decoding protocol (plmkit.generation).
    def new_cache(self, batch_size: int, max_length: int) -> Seq2seqCache:
        c, p = self.config, self.embeddings.tokens.weight
        return Seq2seqCache(c.decoder_layers, batch_size, c.num_heads, c.hidden_size // c.num_heads, max_length,
                            p.dtype, p.device)

    def decode_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    cache: Seq2seqCache) -> torch.Tensor:
        """The first step reads the (left-padded) sources (B, S): it encodes them, keeps the decoder's keys
        and values of them in the cache and feeds the start token; each later step feeds the next token
        (R, 1). Returns the next token's logits (R, V)."""
        if cache.memory is None:
            enc = self.encode(input_ids, attention_mask).last_hidden_state  # (B, S, H)
            mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
            cache.start(self.memory(enc), mask, input_ids.shape[1])
            input_ids = input_ids.new_full((input_ids.shape[0], 1), self.config.decoder_start_token_id)
        h = self.decode(input_ids, cache.memory, cache.memory_mask, cache=cache)[:, -1]  # (R, H)
        return self.step_logits(h)

    def source_frame(self, tokenizer) -> tuple[list[int], list[int]]:
        """The ids around a source text (translate's sources have none)."""
        return [], []

    def target_frame(self, tokenizer) -> tuple[list[int], list[int]]:
        """The ids around a target text: it ends with the end-of-sequence token."""
        return [], [self.config.eos_token_id]

    def generation_frame(self, tokenizer) -> tuple[list[int], list[int], int]:
        """(ids before a source, ids after it, the id that ends a target), for plmkit.generation."""
        return (*self.source_frame(tokenizer), self.config.eos_token_id)

    def resize_token_embeddings(self, vocab_size: int) -> None:
        if self.lm_head is not None:
            raise PlmkitError("resizing an untied output layer is not supported")
        super().resize_token_embeddings(vocab_size)
