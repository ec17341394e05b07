"""T5 = Transformer − absolute positions + relative position buckets shared across layers + RMS norm without
bias + pre-LN − biases − attention scaling + span corruption (15 %, mean span 3, sentinels) + unigram
tokenizer. Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer", arXiv:1910.10683.

§2.1: "a simplified layer normalization where the activations are only rescaled and no additive bias is
applied", placed before each sub-block (pre-LN) and after each stack; relative position embeddings are a
scalar per head for each of 32 buckets of the key–query distance (log-spaced up to 128), computed by the
first layer and shared by all; no positions elsewhere. The scores are not divided by √D: the initialisation
of the query projection does it (Mesh TensorFlow's, which the init below follows). The output layer is the
token embedding with the decoder's state scaled by H^-½. §3.1.4 / Fig. 2: span corruption, 15 % of the tokens
in spans of mean length 3, each span replaced in the input by a sentinel, the target the sentinels each
followed by its span (plmkit/objectives/denoising.py). T5 v1.1 (`gated_ffn = true`, `tie_embeddings =
false`): the gated-GELU feed-forward (Shazeer 2020) and an output layer of its own, not scaled.

Parameter layout matches Hugging Face `T5ForConditionalGeneration`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from ..layers.position_bias import RelativePositionBias
from .seq2seq import Seq2seq, Seq2seqConfig


@dataclasses.dataclass(frozen=True)
class T5Config(Seq2seqConfig):
    vocab_size: int = 32128  # SentencePiece 32K + 100 sentinels, padded
    position: str = "none"  # positions enter the attention scores as relative buckets
    norm_first: bool = True  # §2.1: normalization at the input of each sub-block
    layer_norm_eps: float = 1e-6
    dropout: float = 0.1
    attention_dropout: float = 0.1
    scale_embeddings: bool = False
    relative_buckets: int = 32  # §2.1
    relative_max_distance: int = 128  # §2.1: "up to an offset of 128 beyond which all … share the same"
    gated_ffn: bool = False  # T5 v1.1: GELU(x W0) ⊙ x W1 (with activation gelu_new)
    pad_token_id: int | None = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0  # the pad token (Hugging Face's T5)

    def validate(self) -> None:
        super().validate()
        if self.relative_buckets < 4 or self.relative_max_distance < self.relative_buckets // 2:
            raise PlmkitError("need relative_buckets >= 4 and relative_max_distance >= relative_buckets / 2")

    @classmethod
    def token_ids(cls, tokenizer) -> dict[str, int]:
        """The decoder starts from the pad token; a target ends at </s>."""
        return {**super().token_ids(tokenizer), "decoder_start_token_id": tokenizer.pad_id}


def _to_hf_config(c: T5Config) -> dict:
    if c.activation != ("gelu_new" if c.gated_ffn else "relu") or c.position != "none" or not c.norm_first:
        raise PlmkitError("this T5 config has no `t5` equivalent in transformers (needs pre-LN, no absolute "
                          "positions, ReLU or gated gelu_new)")
    return dict(vocab_size=c.vocab_size, d_model=c.hidden_size, d_kv=c.hidden_size // c.num_heads,
                d_ff=c.intermediate_size, num_layers=c.num_layers, num_decoder_layers=c.decoder_layers,
                num_heads=c.num_heads, relative_attention_num_buckets=c.relative_buckets,
                relative_attention_max_distance=c.relative_max_distance, dropout_rate=c.dropout,
                layer_norm_epsilon=c.layer_norm_eps, feed_forward_proj="gated-gelu" if c.gated_ffn else "relu",
                tie_word_embeddings=c.tie_embeddings, pad_token_id=c.pad_token_id, eos_token_id=c.eos_token_id,
                decoder_start_token_id=c.decoder_start_token_id, is_encoder_decoder=True,
                n_positions=c.max_positions)  # the longest input it is meant for (older T5 configs say so too)


def _from_hf_config(d: dict) -> T5Config:
    ffn = d.get("feed_forward_proj", "relu")
    if ffn not in ("relu", "gated-gelu"):
        raise PlmkitError(f"unsupported T5 feed_forward_proj {ffn!r}")
    if d["d_kv"] * d["num_heads"] != d["d_model"]:
        raise PlmkitError("plmkit's attention needs d_kv × num_heads = d_model")
    tied = d.get("scale_decoder_outputs", d.get("tie_word_embeddings", True))  # transformers 5 writes both
    return T5Config(vocab_size=d["vocab_size"], hidden_size=d["d_model"], num_layers=d["num_layers"],
                    num_decoder_layers=None if d.get("num_decoder_layers") in (None, d["num_layers"])
                    else d["num_decoder_layers"], num_heads=d["num_heads"], max_positions=d.get("n_positions", 512),
                    intermediate_size=d["d_ff"], relative_buckets=d.get("relative_attention_num_buckets", 32),
                    relative_max_distance=d.get("relative_attention_max_distance", 128),
                    dropout=d.get("dropout_rate", 0.1), attention_dropout=d.get("dropout_rate", 0.1),
                    layer_norm_eps=d.get("layer_norm_epsilon", 1e-6), gated_ffn=ffn == "gated-gelu",
                    activation="gelu_new" if ffn == "gated-gelu" else "relu", tie_embeddings=bool(tied),
                    pad_token_id=d.get("pad_token_id", 0), eos_token_id=d.get("eos_token_id", 1),
                    decoder_start_token_id=d.get("decoder_start_token_id", 0))


def _stack(ours: str, theirs: str, cross: bool) -> dict:
    """One stack's blocks: self-attention, (cross-attention,) feed-forward as HF's layer.0/1/2."""
    ff = 2 if cross else 1
    m = {f"{ours}.{{i}}.attn.qkv": tuple(f"{theirs}.{{i}}.layer.0.SelfAttention.{x}" for x in "qkv"),
         f"{ours}.{{i}}.attn.out": f"{theirs}.{{i}}.layer.0.SelfAttention.o",
         f"{ours}.{{i}}.attn_norm": f"{theirs}.{{i}}.layer.0.layer_norm",
         f"{ours}.{{i}}.ffn.up": f"{theirs}.{{i}}.layer.{ff}.DenseReluDense.wi",
         f"{ours}.{{i}}.ffn.down": f"{theirs}.{{i}}.layer.{ff}.DenseReluDense.wo",
         f"{ours}.{{i}}.ffn_norm": f"{theirs}.{{i}}.layer.{ff}.layer_norm"}
    if cross:
        m.update({f"{ours}.{{i}}.cross.q": f"{theirs}.{{i}}.layer.1.EncDecAttention.q",
                  f"{ours}.{{i}}.cross.kv": tuple(f"{theirs}.{{i}}.layer.1.EncDecAttention.{x}" for x in "kv"),
                  f"{ours}.{{i}}.cross.out": f"{theirs}.{{i}}.layer.1.EncDecAttention.o",
                  f"{ours}.{{i}}.cross_norm": f"{theirs}.{{i}}.layer.1.layer_norm"})
    return m


_MODULES = {"embeddings.tokens": "shared",
            "position_bias.bias": "encoder.block.0.layer.0.SelfAttention.relative_attention_bias",
            **_stack("layers", "encoder.block", cross=False), "final_norm": "encoder.final_layer_norm",
            "decoder.position_bias.bias": "decoder.block.0.layer.0.SelfAttention.relative_attention_bias",
            **_stack("decoder.layers", "decoder.block", cross=True), "decoder.final_norm": "decoder.final_layer_norm",
            "lm_head": "lm_head"}


def _gated(modules: dict) -> dict:
    """The gated feed-forward's names: the activated projection is wi_0, the linear one wi_1."""
    out = {}
    for ours, theirs in modules.items():
        if ours.endswith(".ffn.up"):
            out[ours.replace(".up", ".gate")] = theirs + "_0"
            out[ours] = theirs + "_1"
        else:
            out[ours] = theirs
    return out


@register("t5", parent="transformer", year=2020, paper="Raffel et al. 2020, arXiv:1910.10683",
          diff={"layers": ["− absolute positions + relative position buckets (32, up to 128), one bias per head, "
                           "shared across layers, bidirectional in the encoder, causal in the decoder",
                           "LayerNorm → RMS norm without bias, post-LN → pre-LN, + a norm after each stack",
                           "− biases, − attention scaling (folded into the init)",
                           "output layer reads the decoder state × H^-½; option: gated-GELU FFN, untied (v1.1)"],
                "objective": ["translation → span corruption: 15 % of tokens in spans of mean length 3, each "
                              "replaced by a sentinel; the target lists the spans"],
                "tokenizer": ["BPE → unigram (SentencePiece) + 100 sentinels"],
                "heads": ["every task as text to text ('task: input' → output words)"]},
          config=T5Config, objective="span-corruption", tokenizer="unigram", influences=("bert", "gpt"))
class T5(Seq2seq):
    config_class = T5Config
    hf = HFLayout(model_type="t5", architectures=("T5ForConditionalGeneration",), prefix="", modules=_MODULES,
                  to_config=_to_hf_config, from_config=_from_hf_config, fallbacks={"lm_head": "shared"})

    def __init__(self, config: T5Config):
        super().__init__(config)
        if config.gated_ffn:  # the layout names the feed-forward's two input projections
            self.hf = dataclasses.replace(T5.hf, modules=_gated(_MODULES))

    def block_options(self) -> dict:
        c = self.config
        return dict(bias=False, norm="rms", gated=c.gated_ffn, scale=1.0)

    def build_heads(self) -> None:
        c = self.config
        self.position_bias = RelativePositionBias(c.relative_buckets, c.relative_max_distance, c.num_heads, True)
        self.decoder.position_bias = RelativePositionBias(c.relative_buckets, c.relative_max_distance,
                                                          c.num_heads, False)

    def init_weights(self) -> None:
        """Mesh TensorFlow's init (as in Hugging Face): std 1 for the token table (and an untied output
        layer), H^-½ for inputs of width H, (H·D)^-½ for the queries (the missing 1/√D), F^-½ into the
        residual stream from the feed-forward; norms at one."""
        c = self.config
        H, D, F = c.hidden_size, c.hidden_size // c.num_heads, c.intermediate_size
        nn.init.normal_(self.embeddings.tokens.weight, std=1.0)
        if self.lm_head is not None:
            nn.init.normal_(self.lm_head.weight, std=1.0)
        for block in [*self.layers, *self.decoder.layers]:
            attns = [block.attn] + ([block.cross] if hasattr(block, "cross") else [])
            for attn in attns:
                q, kv = (attn.qkv.weight[:H], attn.qkv.weight[H:]) if hasattr(attn, "qkv") else \
                    (attn.q.weight, attn.kv.weight)
                with torch.no_grad():
                    q.normal_(std=(H * D) ** -0.5)
                    kv.normal_(std=H ** -0.5)
                nn.init.normal_(attn.out.weight, std=H ** -0.5)
            for proj in (block.ffn.up, block.ffn.gate):
                if proj is not None:
                    nn.init.normal_(proj.weight, std=H ** -0.5)
            nn.init.normal_(block.ffn.down.weight, std=F ** -0.5)
        for bias in (self.position_bias.bias, self.decoder.position_bias.bias):
            nn.init.normal_(bias.weight, std=H ** -0.5)
        for m in self.modules():
            if isinstance(m, nn.RMSNorm):
                nn.init.ones_(m.weight)

    def layer_mask(self, key_mask: torch.Tensor | None, queries: int, keys: int) -> torch.Tensor:
        """The encoder's bias (1, N, T, S), −inf at padding keys."""
        bias = self.position_bias(queries, keys, keys - queries)
        return bias if key_mask is None else bias.masked_fill(~_keys(key_mask), float("-inf"))

    def decoder_mask(self, key_mask: torch.Tensor | None, queries: int, keys: int) -> torch.Tensor:
        """The decoder's bias (1, N, T, S), −inf at keys after the query (and where a cached step's mask
        says so)."""
        first = keys - queries
        bias = self.decoder.position_bias(queries, keys, first)
        later = torch.ones(queries, keys, dtype=torch.bool, device=bias.device).triu(first + 1)  # (T, S)
        bias = bias.masked_fill(later, float("-inf"))
        return bias if key_mask is None else bias.masked_fill(~_keys(key_mask), float("-inf"))

    def lm_features(self, h: torch.Tensor) -> torch.Tensor:
        """The tied output layer reads the state × H^-½ (the token table has std 1); v1.1's own does not."""
        return h * self.config.hidden_size ** -0.5 if self.lm_head is None else h

    def source_frame(self, tokenizer) -> tuple[list[int], list[int]]:
        """A source ends with </s>, as the span-corruption inputs do."""
        return [], [self.config.eos_token_id]


def _keys(key_mask: torch.Tensor) -> torch.Tensor:
    """A (B, S) or (B, T, S) bool mask → broadcastable over (B, N, T, S)."""
    return key_mask[:, None, None, :] if key_mask.dim() == 2 else key_mask[:, None]
