"""Funnel = BERT − absolute positions − NSP + blocks with the sequence mean-pooled between them (pooled queries, [CLS] kept) + relative attention + an up-sampling decoder. Dai et al. 2020, arXiv:2006.03236.

The encoder is a stack of blocks (B6-6-6: three blocks of six layers); before each block after the first the
sequence is mean-pooled with stride 2, [CLS] kept apart, and the block's first layer attends from the pooled
queries to the unpooled keys and values (§2.2). Every later layer of a block runs at half the length of the
one before, so a B6-6-6 costs about what BERT's 12 layers cost. Positions and segments enter the attention
only, relative to each other (Transformer-XL's position term, XLNet's segment term; appendix A.2); see
`plmkit.layers.funnel`. Sequence-level tasks read the last block's [CLS] (§2.3): `encode(rows=0)` stops
there. Token-level tasks and pre-training go on through the decoder: the last block's states repeated back
to full length, plus the first block's output, through two more full-length layers (§2.3).

Pre-training is MLM, the paper's base-scale setting (§4.1, "MLM"; the large-scale models use ELECTRA's
objective, §4.2): the LM head is the tied embedding plus a bias, read at full length after the decoder.
A saved directory loads in `transformers` as `FunnelForMaskedLM`; a transformers `funnel` directory with the
decoder (FunnelModel, FunnelForMaskedLM, FunnelForPreTraining, …) loads with `plmkit.load`.

Shape legend: B = batch, T = sequence length, T' = pooled length, H = hidden size.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..interop.layout import HFLayout
from ..layers.attention import IMPLEMENTATIONS
from ..layers.funnel import FunnelAttention, FunnelBlock, Relations, Stage, pool, upsample
from .bert import _HF_ACT, Bert, BertConfig
from .presets import SIZES
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class FunnelConfig(BertConfig):
    position: str = "none"  # positions enter the attention only, relative to each other
    type_vocab_size: int = 0  # segments too: a same-or-other-segment term in the attention
    activation: str = "gelu_new"  # the released models' (tanh) GELU
    layer_norm_eps: float = 1e-9  # the released code's
    num_layers: int = 18  # the encoder's layers, = sum(block_sizes)
    # Layers per block, each block at half the length of the one before; () = num_layers in three blocks as
    # even as can be, earlier ones larger (fewer blocks below 3 layers): 18 → B6-6-6 (Table 1), 4 → B2-1-1
    block_sizes: tuple[int, ...] = ()
    num_decoder_layers: int = 2  # full-length layers after up-sampling (§2.3)

    def __post_init__(self) -> None:
        blocks = tuple(self.block_sizes)  # JSON and TOML give lists; a tuple so configs compare equal
        if not blocks and isinstance(self.num_layers, int) and self.num_layers > 0:
            n = min(3, self.num_layers)
            blocks = tuple(self.num_layers // n + (i < self.num_layers % n) for i in range(n))
        object.__setattr__(self, "block_sizes", blocks)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if not self.block_sizes or any(not isinstance(n, int) or n < 1 for n in self.block_sizes):
            raise PlmkitError(f"block_sizes must be positive layer counts, got {self.block_sizes}")
        if self.num_layers != sum(self.block_sizes):
            raise PlmkitError(f"num_layers {self.num_layers} is not sum(block_sizes) = {sum(self.block_sizes)}; "
                              "set block_sizes alone")
        if self.num_decoder_layers < 0:
            raise PlmkitError(f"num_decoder_layers must be >= 0, got {self.num_decoder_layers}")
        if self.causal:
            raise PlmkitError("a funnel encoder reads both ways: causal must be false")

    @classmethod
    def preset(cls, size: str, source=None, **overrides):
        """A size preset's width with its depth L as three blocks of L/2 layers (BERT's L12 ↔ B6-6-6, the
        paper's base-scale pair). An overriding `num_layers` L gives three blocks of L/2 the same way; an
        overriding `block_sizes` sets the depth itself."""
        if "block_sizes" not in overrides and size in SIZES:
            depth = overrides.get("num_layers", SIZES[size]["num_layers"])
            overrides["block_sizes"] = (max(1, depth // 2),) * 3
        if "block_sizes" in overrides:
            overrides["num_layers"] = sum(overrides["block_sizes"])
        return super().preset(size, source, **overrides)


def _to_hf_config(c: FunnelConfig) -> dict:
    if c.norm_first or c.position != "none" or c.type_vocab_size:
        raise PlmkitError("this funnel config has no `funnel` equivalent in transformers "
                          "(needs post-LN, no position or token-type embeddings)")
    return dict(vocab_size=c.vocab_size, block_sizes=list(c.block_sizes), block_repeats=[1] * len(c.block_sizes),
                num_decoder_layers=c.num_decoder_layers, d_model=c.hidden_size, n_head=c.num_heads,
                d_head=c.hidden_size // c.num_heads, d_inner=c.intermediate_size, hidden_act=_HF_ACT[c.activation],
                hidden_dropout=c.dropout, attention_dropout=c.attention_dropout, activation_dropout=0.0,
                initializer_range=c.initializer_range, layer_norm_eps=c.layer_norm_eps, pooling_type="mean",
                attention_type="relative_shift", separate_cls=True, truncate_seq=True, pool_q_only=True,
                pad_token_id=c.pad_token_id, tie_word_embeddings=True)


# What plmkit's funnel computes; a transformers config asking for anything else is refused, not misread.
_FIXED = {"pooling_type": "mean", "attention_type": "relative_shift", "separate_cls": True, "truncate_seq": True,
          "pool_q_only": True, "activation_dropout": 0.0}


# transformers classes built on FunnelBaseModel: the encoder alone, no decoder for plmkit's funnel to load
_NO_DECODER = ("FunnelBaseModel", "FunnelForSequenceClassification", "FunnelForMultipleChoice")


def _from_hf_config(d: dict) -> FunnelConfig:
    base = [a for a in d.get("architectures") or () if a in _NO_DECODER]
    if base:
        raise PlmkitError(f"a {base[0]} checkpoint holds the funnel's encoder without its decoder; plmkit's funnel "
                          "loads FunnelModel, FunnelForMaskedLM or FunnelForPreTraining directories")
    for key, value in _FIXED.items():
        if d.get(key, value) != value:
            raise PlmkitError(f"unsupported funnel setting {key} = {d[key]!r} (plmkit reads {key} = {value!r})")
    blocks = tuple(d.get("block_sizes", (4, 4, 4)))
    if any(r != 1 for r in d.get("block_repeats") or ()):
        raise PlmkitError(f"unsupported funnel setting block_repeats = {d['block_repeats']!r} (plmkit reads 1s)")
    if d.get("d_head", 64) * d.get("n_head", 12) != d.get("d_model", 768):
        raise PlmkitError("unsupported funnel setting: d_head × n_head ≠ d_model")
    act = d.get("hidden_act", "gelu_new")
    if act not in _HF_ACT:
        raise PlmkitError(f"unsupported hidden_act {act!r}")
    return FunnelConfig(vocab_size=d["vocab_size"], hidden_size=d.get("d_model", 768), num_layers=sum(blocks),
                        block_sizes=blocks, num_decoder_layers=d.get("num_decoder_layers", 2),
                        num_heads=d.get("n_head", 12), intermediate_size=d.get("d_inner", 3072), activation=act,
                        dropout=d.get("hidden_dropout", 0.1), attention_dropout=d.get("attention_dropout", 0.1),
                        initializer_range=d.get("initializer_range", 0.1), layer_norm_eps=d.get("layer_norm_eps", 1e-9),
                        pad_token_id=d.get("pad_token_id"))


def _block(ours: str, theirs: str) -> dict[str, str | tuple[str, ...]]:
    """One layer's names: plmkit's `ours` → the released code's `theirs`."""
    return {f"{ours}.attn.q": f"{theirs}.attention.q_head",
            f"{ours}.attn.kv": (f"{theirs}.attention.k_head", f"{theirs}.attention.v_head"),
            f"{ours}.attn.out": f"{theirs}.attention.post_proj",
            f"{ours}.attn.r": f"{theirs}.attention.r_kernel",
            f"{ours}.attn": f"{theirs}.attention",  # r_w_bias, r_r_bias, r_s_bias, seg_embed: same names
            f"{ours}.attn_norm": f"{theirs}.attention.layer_norm",
            f"{ours}.ffn.up": f"{theirs}.ffn.linear_1", f"{ours}.ffn.down": f"{theirs}.ffn.linear_2",
            f"{ours}.ffn_norm": f"{theirs}.ffn.layer_norm"}


_HEAD = {"embeddings.tokens": "embeddings.word_embeddings", "embeddings.norm": "embeddings.layer_norm",
         "mlm_bias": "/lm_head.bias"}  # lm_head.weight is the tied embedding


def _layout(c: FunnelConfig) -> HFLayout:
    """The layout for this config: plmkit numbers the encoder's layers straight through (`layers.i`),
    transformers by block (`encoder.blocks.b.j`)."""
    modules = dict(_HEAD)
    i = 0
    for b, size in enumerate(c.block_sizes):
        for j in range(size):
            modules.update(_block(f"layers.{i}", f"encoder.blocks.{b}.{j}"))
            i += 1
    for j in range(c.num_decoder_layers):
        modules.update(_block(f"decoder.{j}", f"decoder.layers.{j}"))
    return dataclasses.replace(Funnel.hf, modules=modules)


@register("funnel", parent="bert", year=2020, paper="Dai et al. 2020, arXiv:2006.03236",
          diff={"body": ["blocks of layers, the sequence mean-pooled (stride 2, [CLS] kept) before each block "
                         "after the first; its first layer attends from the pooled queries to the unpooled keys",
                         "+ decoder: the last block up-sampled to full length + the first block's output, "
                         "2 more layers (token-level tasks, pre-training)"],
                "layers": ["− absolute position and segment embeddings",
                           "+ relative attention: Transformer-XL's position term, XLNet's segment term"],
                "objective": ["− next-sentence prediction (MLM only)"],
                "heads": ["− pooler; sequence-level tasks read [CLS] after the last block, without the decoder"]},
          config=FunnelConfig, objective="mlm", tokenizer="wordpiece", influences=("transformer-xl", "xlnet"))
class Funnel(Bert):
    config_class = FunnelConfig
    hf = HFLayout(model_type="funnel", architectures=("FunnelForMaskedLM",), prefix="funnel.", modules=_HEAD,
                  to_config=_to_hf_config, from_config=_from_hf_config)

    def __init__(self, config: FunnelConfig):
        super().__init__(config)
        self.hf = _layout(config)

    def build_layers(self) -> nn.ModuleList:
        c = self.config

        def block() -> FunnelBlock:
            return FunnelBlock(c.hidden_size, c.num_heads, c.intermediate_size, c.activation, c.dropout,
                               c.attention_dropout, c.layer_norm_eps)

        self.decoder = nn.ModuleList(block() for _ in range(c.num_decoder_layers))
        return nn.ModuleList(block() for _ in range(c.num_layers))

    def build_heads(self) -> None:
        self.pooler = self.nsp = self.mlm_transform = self.mlm_norm = None
        self.mlm_bias = nn.Parameter(torch.zeros(self.config.vocab_size))  # lm_head: the tied embedding + a bias

    def init_weights(self) -> None:
        """BERT's init, and the same normal for the relative attention's W_R, biases and segment vectors."""
        super().init_weights()
        for m in self.modules():
            if isinstance(m, FunnelAttention):
                for p in (m.r, m.r_w_bias, m.r_r_bias, m.r_s_bias, m.seg_embed):
                    nn.init.normal_(p, std=self.config.initializer_range)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Bottom to top, for ULMFiT: the embeddings, each encoder layer, then each decoder layer (it reads
        the last block)."""
        return [list(self.embeddings.parameters()), *(list(m.parameters()) for m in (*self.layers, *self.decoder))]

    def lm_features(self, h: torch.Tensor) -> torch.Tensor:
        """The last hidden state itself: the LM head has no transform."""
        return h

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
               output_attentions: bool = False, attn_impl: str = "sdpa", rows: torch.Tensor | None = None
               ) -> ModelOutput:
        """input_ids, token_type_ids: (B, T) → (B, T, H) after the decoder. rows: (B,) long, one position per
        sequence: all 0 reads [CLS] after the last block (the decoder is skipped, as for sequence-level
        tasks) and last_hidden_state is (B, 1, H); other rows run the decoder and pick. hidden_states: the
        embeddings, each encoder layer's output (at its block's length), the decoder's input and each of
        its layers (as transformers' FunnelModel)."""
        if attn_impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown attn_impl {attn_impl!r}; choose from {IMPLEMENTATIONS}")
        c = self.config
        B, T = input_ids.shape
        x = self.embed(input_ids)  # (B, T, H)
        start = stage = Stage.start(T, attention_mask, token_type_ids, input_ids.device)
        hidden, attentions = [x], []
        pools, first_block, i = 0, x, 0
        for b, size in enumerate(c.block_sizes):
            if b > 0 and x.shape[1] > 2:  # [CLS] and one token: nothing left to pool
                pooled = stage.pooled()
                x, w = self.layers[i](pool(x), x, Relations.between(pooled, stage, c.hidden_size, x.dtype), attn_impl,
                                      output_attentions)  # (B, T', H): pooled queries, unpooled keys and values
                stage, pools, i, size = pooled, pools + 1, i + 1, size - 1
                hidden.append(x)
                attentions.append(w)
            rel = Relations.between(stage, stage, c.hidden_size, x.dtype)
            for _ in range(size):
                x, w = self.layers[i](x, x, rel, attn_impl, output_attentions)
                i += 1
                hidden.append(x)
                attentions.append(w)
            if b == 0:
                first_block = x
        if rows is not None and not bool(rows.any()):
            x = x[:, :1]  # (B, 1, H): [CLS], never pooled
        else:
            x = upsample(x, T, 2 ** pools) + first_block  # (B, T, H)
            hidden.append(x)
            rel = Relations.between(start, start, c.hidden_size, x.dtype)
            for layer in self.decoder:
                x, w = layer(x, x, rel, attn_impl, output_attentions)
                hidden.append(x)
                attentions.append(w)
            if rows is not None:
                x = x[torch.arange(B, device=x.device), rows].unsqueeze(1)  # (B, 1, H)
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None,
                           attentions=tuple(attentions) if output_attentions else None)
