"""GPT-2 = GPT + pre-LN blocks + a final LayerNorm + residual projections initialised ÷ √(2L) +
byte-level BPE + 1,024 positions. Radford et al. 2019, "Language Models are Unsupervised Multitask Learners".

Parameter layout matches Hugging Face `GPT2LMHeadModel`.
"""

from __future__ import annotations

import dataclasses
import math

from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from .gpt import Gpt, GptConfig


@dataclasses.dataclass(frozen=True)
class Gpt2Config(GptConfig):
    vocab_size: int = 50257
    max_positions: int = 1024
    norm_first: bool = True  # LayerNorm at the input of each sub-block (§2.3)


def _to_hf_config(c: Gpt2Config) -> dict:
    if not c.norm_first or c.type_vocab_size or c.position != "learned" or c.activation != "gelu_new":
        raise PlmkitError("this GPT-2 config has no `gpt2` equivalent in transformers "
                          "(needs pre-LN, no token types, learned positions, tanh-GELU)")
    return dict(vocab_size=c.vocab_size, n_positions=c.max_positions, n_embd=c.hidden_size, n_layer=c.num_layers,
                n_head=c.num_heads, n_inner=c.intermediate_size, activation_function="gelu_new",
                resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.attention_dropout,
                layer_norm_epsilon=c.layer_norm_eps, initializer_range=c.initializer_range,
                tie_word_embeddings=True, bos_token_id=None, eos_token_id=None)


def _from_hf_config(d: dict) -> Gpt2Config:
    if d.get("activation_function", "gelu_new") != "gelu_new":
        raise PlmkitError(f"unsupported GPT-2 activation {d['activation_function']!r}")
    return Gpt2Config(vocab_size=d["vocab_size"], max_positions=d["n_positions"], hidden_size=d["n_embd"],
                      num_layers=d["n_layer"], num_heads=d["n_head"],
                      intermediate_size=d.get("n_inner") or 4 * d["n_embd"],
                      dropout=d.get("resid_pdrop", 0.1), attention_dropout=d.get("attn_pdrop", 0.1),
                      layer_norm_eps=d.get("layer_norm_epsilon", 1e-5),
                      initializer_range=d.get("initializer_range", 0.02))


@register("gpt2", parent="gpt", year=2019,
          paper="Radford et al. 2019, Language Models are Unsupervised Multitask Learners",
          diff={"layers": ["post-LN → pre-LN blocks", "+ final LayerNorm",
                           "residual projections initialised ÷ √(2 × layers)"],
                "tokenizer": ["BPE → byte-level BPE"],
                "body": ["context 512 → 1,024 positions"]},
          config=Gpt2Config, objective="clm", tokenizer="bytebpe")
class Gpt2(Gpt):
    config_class = Gpt2Config
    hf = HFLayout(
        model_type="gpt2", architectures=("GPT2LMHeadModel",), prefix="transformer.",
        modules={"embeddings.tokens": "wte", "embeddings.positions": "wpe",
                 "layers.{i}.attn_norm": "h.{i}.ln_1", "layers.{i}.attn.qkv": "h.{i}.attn.c_attn",
                 "layers.{i}.attn.out": "h.{i}.attn.c_proj", "layers.{i}.ffn_norm": "h.{i}.ln_2",
                 "layers.{i}.ffn.up": "h.{i}.mlp.c_fc", "layers.{i}.ffn.down": "h.{i}.mlp.c_proj",
                 "final_norm": "ln_f"},
        transposed=Gpt.hf.transposed, to_config=_to_hf_config, from_config=_from_hf_config)

    def init_weights(self) -> None:
        """GPT's init, then the projections into the residual stream scaled by 1/√(2L): the stream sums
        2L of them, so its variance stays put as depth grows (§2.3)."""
        super().init_weights()
        std = self.config.initializer_range / math.sqrt(2 * self.config.num_layers)
        for layer in self.layers:
            for proj in (layer.attn.out, layer.ffn.down):
                nn.init.normal_(proj.weight, std=std)
