"""ELECTRA = BERT − NSP + a small MLM generator + replaced-token detection by the discriminator (loss MLM + 50 · RTD). Clark et al. 2020, arXiv:2003.10555.

The generator fills the masked positions with samples; the discriminator (this model, the one that is
fine-tuned) says of every token whether it is original or replaced (§2). The two share token, position
and segment embeddings (§3.2, "weight sharing"); the generator has the discriminator's depth with its
hidden size, heads and FFN scaled by `generator_size` (Table 6: 1/4 for Small and Large, 1/3 for Base).

A saved ELECTRA directory is the discriminator as Hugging Face `ElectraForPreTraining`, with the
generator beside it in `generator/` as `ElectraForMaskedLM` (the shared embeddings written into both).

Shape legend: B = batch, T = sequence length, E = embedding size, H = hidden size, V = vocabulary,
M = masked positions in the batch.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from ..layers import ACTIVATIONS, Block
from .bert import _HF_ACT, Bert, BertConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class ElectraConfig(BertConfig):
    embedding_size: int | None = None  # E; None = H (Base, Large). ELECTRA-Small: E = 128, H = 256 (Table 6)
    generator_size: float = 0.25  # generator hidden, heads and FFN as a fraction of the discriminator's (§3.2)

    def validate(self) -> None:
        super().validate()
        if self.embedding_size is not None and self.embedding_size <= 0:
            raise PlmkitError(f"embedding_size must be positive, got {self.embedding_size}")
        if not 0 < self.generator_size <= 1:
            raise PlmkitError(f"generator_size must be in (0, 1], got {self.generator_size}")
        f = self.generator_size
        hidden, heads = round(self.hidden_size * f), max(1, round(self.num_heads * f))
        if hidden < 1 or hidden % heads:
            raise PlmkitError(f"generator_size {self.generator_size} gives a generator of hidden size {hidden} "
                              f"and {heads} heads, not a multiple")

    @property
    def embedding_dim(self) -> int:
        return self.embedding_size or self.hidden_size

    def generator(self) -> "ElectraConfig":
        """The generator's sizes: the discriminator's depth, its width scaled by generator_size."""
        f = self.generator_size
        return self.replace(hidden_size=round(self.hidden_size * f), num_heads=max(1, round(self.num_heads * f)),
                            intermediate_size=round(self.intermediate_size * f), embedding_size=self.embedding_dim,
                            generator_size=1.0)


def _to_hf_config(c: ElectraConfig) -> dict:
    if c.norm_first or c.position != "learned" or c.causal:
        raise PlmkitError("this ELECTRA config has no `electra` equivalent in transformers "
                          "(needs post-LN, learned positions, bidirectional attention)")
    return dict(vocab_size=c.vocab_size, embedding_size=c.embedding_dim, hidden_size=c.hidden_size,
                num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
                hidden_act=_HF_ACT[c.activation], hidden_dropout_prob=c.dropout,
                attention_probs_dropout_prob=c.attention_dropout, max_position_embeddings=c.max_positions,
                type_vocab_size=c.type_vocab_size, initializer_range=c.initializer_range,
                layer_norm_eps=c.layer_norm_eps, pad_token_id=c.pad_token_id, tie_word_embeddings=True)


def _from_hf_config(d: dict, generator: dict | None = None) -> ElectraConfig:
    c = ElectraConfig(vocab_size=d["vocab_size"], embedding_size=d.get("embedding_size", d["hidden_size"]),
                      hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
                      num_heads=d["num_attention_heads"], intermediate_size=d["intermediate_size"],
                      activation=d.get("hidden_act", "gelu"), dropout=d.get("hidden_dropout_prob", 0.1),
                      attention_dropout=d.get("attention_probs_dropout_prob", 0.1),
                      max_positions=d.get("max_position_embeddings", 512), type_vocab_size=d.get("type_vocab_size", 2),
                      initializer_range=d.get("initializer_range", 0.02),
                      layer_norm_eps=d.get("layer_norm_eps", 1e-12), pad_token_id=d.get("pad_token_id", 0))
    if generator is None:
        return c
    c = c.replace(generator_size=generator["hidden_size"] / c.hidden_size)
    if _to_hf_config(c.generator())["intermediate_size"] != generator["intermediate_size"]:
        raise PlmkitError("generator/config.json is not the discriminator scaled by one factor")
    return c


_BODY = {k: v for k, v in Bert.hf.modules.items() if k.startswith(("embeddings.", "layers."))}
_GENERATOR = HFLayout(
    model_type="electra", architectures=("ElectraForMaskedLM",), prefix="electra.",
    modules={**_BODY, "embedding_proj": "embeddings_project", "mlm_transform": "/generator_predictions.dense",
             "mlm_norm": "/generator_predictions.LayerNorm", "mlm_bias": "/generator_lm_head.bias"},
    to_config=lambda c: _to_hf_config(c.generator()), from_config=_from_hf_config)


class ElectraGenerator(nn.Module):
    """The small masked LM: its own blocks and MLM head over the discriminator's embeddings."""

    def __init__(self, c: ElectraConfig):
        super().__init__()
        g = c.generator()
        self.config = g
        self.embedding_proj = nn.Linear(g.embedding_dim, g.hidden_size) if g.embedding_dim != g.hidden_size else None
        self.layers = nn.ModuleList(Block(g.hidden_size, g.num_heads, g.intermediate_size, g.activation, g.dropout,
                                          g.attention_dropout, False, False, g.layer_norm_eps)
                                    for _ in range(g.num_layers))
        self.mlm_transform = nn.Linear(g.hidden_size, g.embedding_dim)  # back to E for the tied decoder
        self.mlm_norm = nn.LayerNorm(g.embedding_dim, eps=g.layer_norm_eps)
        self.mlm_bias = nn.Parameter(torch.zeros(g.vocab_size))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None, tokens: torch.Tensor,
                logits_at: torch.Tensor | None = None) -> ModelOutput:
        """x: embeddings (B, T, E); tokens: the tied (V, E) table → logits (B, T, V) or (M, V)."""
        h = self.embedding_proj(x) if self.embedding_proj is not None else x
        for layer in self.layers:
            h, _ = layer(h, key_mask)
        z = h if logits_at is None else h[logits_at]
        z = self.mlm_norm(ACTIVATIONS[self.config.activation](self.mlm_transform(z)))
        return ModelOutput(last_hidden_state=h, logits=z @ tokens.T + self.mlm_bias)


@register("electra", parent="bert", year=2020, paper="Clark et al. 2020, arXiv:2003.10555",
          diff={"objective": ["MLM + NSP → replaced-token detection over all tokens (λ = 50) + the generator's MLM",
                              "masked positions filled by samples from a small jointly trained MLM generator"],
                "body": ["+ generator: the discriminator's depth at 1/4–1/3 of its width, embeddings shared"],
                "layers": ["embedding size E may differ from H (a projection E → H)"],
                "heads": ["− pooler; a per-token original/replaced head is the pre-training head"]},
          config=ElectraConfig, objective="rtd", tokenizer="wordpiece")
class Electra(Bert):
    config_class = ElectraConfig
    hf = HFLayout(
        model_type="electra", architectures=("ElectraForPreTraining",), prefix="electra.",
        modules={**_BODY, "embedding_proj": "embeddings_project", "rtd_transform": "/discriminator_predictions.dense",
                 "rtd": "/discriminator_predictions.dense_prediction"},
        to_config=_to_hf_config, from_config=_from_hf_config, companions={"generator": _GENERATOR})

    def build_embeddings(self, size=None, position_offset=0):
        c = self.config
        self.embedding_proj = nn.Linear(c.embedding_dim, c.hidden_size) if c.embedding_dim != c.hidden_size else None
        return super().build_embeddings(c.embedding_dim, position_offset)

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              position_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = super().embed(input_ids, token_type_ids, position_ids)  # (B, T, E)
        return self.embedding_proj(x) if self.embedding_proj is not None else x

    def build_heads(self) -> None:
        c = self.config
        self.pooler = self.nsp = self.mlm_transform = self.mlm_norm = self.mlm_bias = None
        self.rtd_transform = nn.Linear(c.hidden_size, c.hidden_size)
        self.rtd = nn.Linear(c.hidden_size, 1)  # logit of "this token was replaced"
        self.generator = ElectraGenerator(c)

    def lm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """(…, H) → (…): the replaced-token logit of each token."""
        return self.rtd(ACTIVATIONS[self.config.activation](self.rtd_transform(h))).squeeze(-1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, *, generator: bool = False,
                logits_at: torch.Tensor | None = None, **kwargs) -> ModelOutput:
        """The discriminator: `logits` (B, T) or (M,). generator=True runs the generator instead (through
        forward, so a DDP wrapper sees it): MLM `logits` (B, T, V) or (M, V) at `logits_at`."""
        if not generator:
            return super().forward(input_ids, attention_mask, token_type_ids, logits_at=logits_at, **kwargs)
        if kwargs:
            raise ValueError(f"the generator path takes no {', '.join(kwargs)}")
        key_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        return self.generator(self.embeddings(input_ids, token_type_ids), key_mask, self.embeddings.tokens.weight,
                              logits_at)

    def companion_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """The generator as a model of its own: the shared embeddings plus its parameters."""
        own = {k[len("generator."):]: v for k, v in self.state_dict().items() if k.startswith("generator.")}
        return {**{k: v for k, v in self.state_dict().items() if k.startswith("embeddings.")}, **own}

    def load_companion_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """The generator's own parameters; the embeddings stay the discriminator's (they are shared)."""
        self.generator.load_state_dict({k: v for k, v in state.items() if not k.startswith("embeddings.")})
