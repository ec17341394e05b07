"""BART = Transformer with BERT's embeddings (learned positions, offset 2, LayerNorm) and GELU − embedding
scaling + text infilling (Poisson λ = 3 spans, 30 % of tokens, each span one <mask>) + sentence permutation
+ byte-level BPE. Lewis et al. 2020, "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language
Generation, Translation, and Comprehension", arXiv:1910.13461.

§2.1: "the standard sequence-to-sequence Transformer architecture … except, following GPT, that we modify
ReLU activation functions to GeLUs"; a bidirectional encoder over the corrupted text and an autoregressive
decoder that reconstructs the original (plmkit/objectives/denoising.py). As in fairseq, positions start at
row 2 of the table (rows 0 and 1 were the padding offset), a LayerNorm follows the embeddings, and the
logits get a fixed bias (`final_logits_bias`, zero unless a checkpoint brings one). The decoder starts from
</s> and writes <s> text </s>.

Parameter layout matches Hugging Face `BartForConditionalGeneration`.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from .seq2seq import Seq2seq, Seq2seqConfig

POSITION_OFFSET = 2  # fairseq's learned positions skip two rows


@dataclasses.dataclass(frozen=True)
class BartConfig(Seq2seqConfig):
    vocab_size: int = 50265  # GPT-2's byte-level BPE (§3)
    position: str = "learned"
    activation: str = "gelu"  # §2.1
    embedding_norm: bool = True
    scale_embeddings: bool = False
    attention_dropout: float = 0.0
    max_positions: int = 1024
    pad_token_id: int | None = 1  # <s>=0, <pad>=1, </s>=2: fairseq's dictionary order
    bos_token_id: int | None = 0
    eos_token_id: int = 2
    decoder_start_token_id: int = 2  # </s>

    @classmethod
    def token_ids(cls, tokenizer) -> dict[str, int]:
        """The decoder starts from </s> (fairseq's BART)."""
        ids = super().token_ids(tokenizer)
        return {**ids, "decoder_start_token_id": ids["eos_token_id"]}


def _to_hf_config(c: BartConfig) -> dict:
    if c.norm_first or c.position != "learned" or not c.embedding_norm or not c.tie_embeddings:
        raise PlmkitError("this BART config has no `bart` equivalent in transformers (needs post-LN, learned "
                          "positions, embedding LayerNorm, tied embeddings)")
    if c.layer_norm_eps != 1e-5:
        raise PlmkitError("transformers' BART has LayerNorm eps 1e-5")
    return dict(vocab_size=c.vocab_size, d_model=c.hidden_size, encoder_layers=c.num_layers,
                decoder_layers=c.decoder_layers, encoder_attention_heads=c.num_heads,
                decoder_attention_heads=c.num_heads, encoder_ffn_dim=c.intermediate_size,
                decoder_ffn_dim=c.intermediate_size, activation_function=c.activation, dropout=c.dropout,
                attention_dropout=c.attention_dropout, activation_dropout=0.0, max_position_embeddings=c.max_positions,
                init_std=c.initializer_range, scale_embedding=c.scale_embeddings, pad_token_id=c.pad_token_id,
                bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
                decoder_start_token_id=c.decoder_start_token_id, forced_eos_token_id=None, tie_word_embeddings=True,
                is_encoder_decoder=True)


def _from_hf_config(d: dict) -> BartConfig:
    if d["encoder_attention_heads"] != d["decoder_attention_heads"] or d["encoder_ffn_dim"] != d["decoder_ffn_dim"]:
        raise PlmkitError("plmkit's BART has the same heads and feed-forward width in encoder and decoder")
    if d.get("tie_word_embeddings", True) is False:
        raise PlmkitError("plmkit's BART ties its output layer to the token embedding")
    return BartConfig(vocab_size=d["vocab_size"], hidden_size=d["d_model"], num_layers=d["encoder_layers"],
                      num_decoder_layers=d["decoder_layers"], num_heads=d["encoder_attention_heads"],
                      intermediate_size=d["encoder_ffn_dim"], activation=d.get("activation_function", "gelu"),
                      dropout=d.get("dropout", 0.1), attention_dropout=d.get("attention_dropout", 0.0),
                      max_positions=d.get("max_position_embeddings", 1024), initializer_range=d.get("init_std", 0.02),
                      scale_embeddings=bool(d.get("scale_embedding", False)), pad_token_id=d.get("pad_token_id", 1),
                      bos_token_id=d.get("bos_token_id", 0), eos_token_id=d.get("eos_token_id", 2),
                      decoder_start_token_id=d.get("decoder_start_token_id", 2))


def _stack(ours: str, theirs: str, cross: bool) -> dict:
    m = {f"{ours}.{{i}}.attn.qkv": tuple(f"{theirs}.{{i}}.self_attn.{x}_proj" for x in "qkv"),
         f"{ours}.{{i}}.attn.out": f"{theirs}.{{i}}.self_attn.out_proj",
         f"{ours}.{{i}}.attn_norm": f"{theirs}.{{i}}.self_attn_layer_norm",
         f"{ours}.{{i}}.ffn.up": f"{theirs}.{{i}}.fc1", f"{ours}.{{i}}.ffn.down": f"{theirs}.{{i}}.fc2",
         f"{ours}.{{i}}.ffn_norm": f"{theirs}.{{i}}.final_layer_norm"}
    if cross:
        m.update({f"{ours}.{{i}}.cross.q": f"{theirs}.{{i}}.encoder_attn.q_proj",
                  f"{ours}.{{i}}.cross.kv": tuple(f"{theirs}.{{i}}.encoder_attn.{x}_proj" for x in "kv"),
                  f"{ours}.{{i}}.cross.out": f"{theirs}.{{i}}.encoder_attn.out_proj",
                  f"{ours}.{{i}}.cross_norm": f"{theirs}.{{i}}.encoder_attn_layer_norm"})
    return m


@register("bart", parent="transformer", year=2020, paper="Lewis et al. 2020, arXiv:1910.13461",
          diff={"layers": ["sinusoidal → learned positions (offset 2) + LayerNorm on the embeddings (BERT's)",
                           "ReLU → GELU (GPT's)", "− embedding scaling", "+ a fixed bias on the logits"],
                "objective": ["translation → denoising: text infilling (Poisson λ = 3 spans, 30 % of tokens, "
                              "each span one <mask>) + sentence permutation; the decoder rebuilds the original"],
                "tokenizer": ["BPE → byte-level BPE"]},
          config=BartConfig, objective="text-infilling", tokenizer="bytebpe", influences=("bert", "gpt"))
class Bart(Seq2seq):
    config_class = BartConfig
    hf = HFLayout(
        model_type="bart", architectures=("BartForConditionalGeneration",), prefix="model.",
        modules={"embeddings.tokens": "shared", "embeddings.positions": "encoder.embed_positions",
                 "embeddings.norm": "encoder.layernorm_embedding", **_stack("layers", "encoder.layers", False),
                 "decoder.embeddings.positions": "decoder.embed_positions",
                 "decoder.embeddings.norm": "decoder.layernorm_embedding",
                 **_stack("decoder.layers", "decoder.layers", True), "final_logits_bias": "/final_logits_bias"},
        to_config=_to_hf_config, from_config=_from_hf_config)

    def build_embeddings(self, size=None, position_offset=0):
        return super().build_embeddings(size, position_offset=POSITION_OFFSET)

    def build_heads(self) -> None:
        # (1, V) as Hugging Face keeps it; a buffer, not trained (fairseq has no such bias).
        self.register_buffer("final_logits_bias", torch.zeros(1, self.config.vocab_size))

    def lm_decoder(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.embeddings.tokens.weight, self.final_logits_bias[0]

    def resize_token_embeddings(self, vocab_size: int) -> None:
        super().resize_token_embeddings(vocab_size)
        old = self.final_logits_bias
        bias = old.new_zeros(1, vocab_size)
        n = min(vocab_size, old.shape[1])
        bias[:, :n] = old[:, :n]
        self.final_logits_bias = bias

    def source_frame(self, tokenizer) -> tuple[list[int], list[int]]:
        """<s> source </s>, as the infilling inputs."""
        return [self.config.bos_token_id], [self.config.eos_token_id]

    def target_frame(self, tokenizer) -> tuple[list[int], list[int]]:
        """<s> target </s>: the decoder writes the frame too (it reconstructs whole documents)."""
        return [self.config.bos_token_id], [self.config.eos_token_id]
