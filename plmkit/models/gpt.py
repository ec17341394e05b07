"""GPT = Transformer decoder (causal self-attention, no cross-attention) pre-trained as a left-to-right
LM on unlabelled text, then fine-tuned with task-specific input transformations.
Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training".

Layout is GPT-1's: post-LN blocks, learned positions, no embedding LayerNorm, tanh-GELU, LM head tied
to the token embedding; Hugging Face calls it `openai-gpt` (`OpenAIGPTLMHeadModel`).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ..errors import PlmkitError
from ..family import register
from ..generation.cache import KVCache
from ..interop.layout import HFLayout
from ..layers.lm_loss import lm_cross_entropy
from .transformer import ModelOutput, Transformer, TransformerConfig


@dataclasses.dataclass(frozen=True)
class GptConfig(TransformerConfig):
    vocab_size: int = 40478  # GPT-1's 40k BPE merges + specials
    causal: bool = True
    activation: str = "gelu_new"
    embedding_norm: bool = False
    layer_norm_eps: float = 1e-5
    pad_token_id: int | None = None  # packed pre-training never pads


def _to_hf_config(c: GptConfig) -> dict:
    if c.intermediate_size != 4 * c.hidden_size or c.type_vocab_size or c.norm_first or c.position != "learned":
        raise PlmkitError("this GPT config has no `openai-gpt` equivalent in transformers "
                          "(needs intermediate_size = 4 × hidden_size, no token types, post-LN, learned positions)")
    return dict(vocab_size=c.vocab_size, n_positions=c.max_positions, n_embd=c.hidden_size, n_layer=c.num_layers,
                n_head=c.num_heads, afn={"gelu_new": "gelu", "gelu": "gelu_exact", "relu": "relu"}[c.activation],
                resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.attention_dropout,
                layer_norm_epsilon=c.layer_norm_eps, initializer_range=c.initializer_range, tie_word_embeddings=True)


def _from_hf_config(d: dict) -> GptConfig:
    if d.get("afn", "gelu") not in ("gelu", "relu"):
        raise PlmkitError(f"unsupported GPT activation {d['afn']!r}")
    return GptConfig(vocab_size=d["vocab_size"], max_positions=d["n_positions"], hidden_size=d["n_embd"],
                     num_layers=d["n_layer"], num_heads=d["n_head"], intermediate_size=4 * d["n_embd"],
                     activation={"gelu": "gelu_new", "relu": "relu"}[d.get("afn", "gelu")],
                     dropout=d.get("resid_pdrop", 0.1), attention_dropout=d.get("attn_pdrop", 0.1),
                     layer_norm_eps=d.get("layer_norm_epsilon", 1e-5),
                     initializer_range=d.get("initializer_range", 0.02))


@register("gpt", parent=None, year=2018,
          paper="Radford et al. 2018, Improving Language Understanding by Generative Pre-Training",
          diff={"body": ["Transformer decoder stack, no encoder", "causal self-attention"],
                "objective": ["left-to-right language modelling (CLM)"],
                "tokenizer": ["BPE"],
                "heads": ["task input transformations: [start] text [extract], premise [delim] hypothesis"]},
          config=GptConfig, objective="clm", tokenizer="bpe",
          kind="decoder", influences=("transformer", "sa-lstm", "awd-lstm", "elmo"))
class Gpt(Transformer):
    config_class = GptConfig
    hf = HFLayout(
        model_type="openai-gpt", architectures=("OpenAIGPTLMHeadModel",), prefix="transformer.",
        modules={"embeddings.tokens": "tokens_embed", "embeddings.positions": "positions_embed",
                 "layers.{i}.attn.qkv": "h.{i}.attn.c_attn", "layers.{i}.attn.out": "h.{i}.attn.c_proj",
                 "layers.{i}.attn_norm": "h.{i}.ln_1", "layers.{i}.ffn.up": "h.{i}.mlp.c_fc",
                 "layers.{i}.ffn.down": "h.{i}.mlp.c_proj", "layers.{i}.ffn_norm": "h.{i}.ln_2"},
        transposed=("attn.qkv", "attn.out", "ffn.up", "ffn.down"),  # HF stores GPT's Conv1D weights as (in, out)
        to_config=_to_hf_config, from_config=_from_hf_config)

    def __init__(self, config: GptConfig):
        super().__init__(config)
        self.build_heads()
        self.init_weights()

    def build_heads(self) -> None:
        """GPT's only pre-training head is the LM head, tied to the token embedding: nothing to build."""

    def lm_features(self, h: torch.Tensor) -> torch.Tensor:
        """(…, H) → (…, E): what the output layer reads; GPT's is the last hidden state itself."""
        return h

    def lm_decoder(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output layer's (V, E) weight and (V,) bias or None: the tied token embedding, no bias."""
        return self.embeddings.tokens.weight, None

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(…, H) → (…, V): the output layer on the LM features."""
        return F.linear(self.lm_features(h), *self.lm_decoder())

    @property
    def generates(self) -> bool:
        """Whether the engine (plmkit.generation) can decode from this model: a causal one can; BERT and
        the other bidirectional descendants cannot."""
        return self.config.causal

    def decode_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    cache: KVCache) -> torch.Tensor:
        """The decoding protocol (plmkit.generation): input_ids (B, T) after the tokens in `cache`,
        attention_mask (B, T) or None → the next token's logits (B, V), the cache extended by T."""
        B, T = input_ids.shape
        rows = None if T == 1 else torch.full((B,), T - 1, device=input_ids.device)  # last layer: last token only
        h = self.encode(input_ids, attention_mask, rows=rows, cache=cache).last_hidden_state[:, -1]  # (B, H)
        return self.step_logits(h)

    def step_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(B, H) → (B, V): the output layer of a decoding step, vocabulary-major (W·hᵀ, then transposed):
        with a few rows that product runs ~1.6x faster than h·Wᵀ here (the reason plmkit/layers/lm_loss.py
        is vocabulary-major too), and at one row both read the (V, E) weight once."""
        weight, bias = self.lm_decoder()
        logits = (weight @ self.lm_features(h).T).T  # (B, V)
        return logits if bias is None else logits + bias

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, *, logits_at: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, attn_impl: str = "sdpa", **encode_inputs) -> ModelOutput:
        """logits_at: optional (B, T) bool; when given, logits are (M, V) at its M True positions only,
        which saves the vocabulary projection everywhere else. labels: optional target ids, (B, T) or (M,)
        with `logits_at` (-100 = not counted); when given, `loss` is their mean cross-entropy, computed
        chunk by chunk without the logits (plmkit.layers.lm_loss), and `logits` is None. `encode_inputs`
        go to the member's `encode`: position_ids (XLM, Grover), Transformer-XL's memory, ERNIE-THU's
        entity_ids."""
        out = self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions,
                          attn_impl, **encode_inputs)
        h = out.last_hidden_state if logits_at is None else out.last_hidden_state[logits_at]
        if labels is not None:
            weight, bias = self.lm_decoder()
            out.loss = lm_cross_entropy(self.lm_features(h), weight, labels, bias)
        else:
            out.logits = self.lm_logits(h)
        return out
