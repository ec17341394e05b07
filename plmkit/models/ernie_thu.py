"""ERNIE (Tsinghua) = BERT + TransE entity vectors + aggregators fusing tokens and entities + dEA. Zhang et al. 2019, arXiv:1905.07129.

"ERNIE: Enhanced Language Representation with Informative Entities" (not Baidu's ERNIE, `ernie`). §3.2:
the lower `num_layers − knowledge_layers` layers are BERT's (the T-Encoder); the upper `knowledge_layers`
are aggregators (the K-Encoder, plmkit.layers.aggregator), whose second stream holds, at the first token
of every entity mention, the entity's TransE vector (Bordes et al. 2013; plmkit.objectives.transe, fixed
during pre-training as in the authors' release). §3.4: dEA predicts each aligned entity from its token's
final state, over the entities of the batch, with 5 % of alignments replaced by a random entity and 15 %
removed (plmkit.objectives.dea), added to BERT's MLM + NSP.

The knowledge graph here is WordNet and mentions are linked by string match (plmkit.data.knowledge): the
model keeps the linker's tables (mention token ids → entity), so it links its own input wherever it is
called from — fine-tuning heads, `analyze cloze`, `embed` — unless the caller passes `entity_ids`.
Sizes: the paper's 6 + 6 layers over BERT-base with 100-dim entities and 4 entity heads.

No transformers class has this model: its directory is plmkit's own.

Shape legend: B = batch, T = sequence length, H = hidden size, K = entity size, E = entities, M = mentions,
C = candidate entities.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..data.knowledge import EntityLinker
from ..errors import PlmkitError
from ..family import register
from ..layers import ACTIVATIONS, Block
from ..layers.aggregator import Aggregator
from .bert import Bert, BertConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class ErnieThuConfig(BertConfig):
    knowledge_layers: int | None = None  # aggregators on top (K-Encoder); None = the upper half (paper: 6 of 12)
    entity_size: int = 100  # TransE dimension (§4.1)
    entity_heads: int = 4  # heads of the entity stream's attention (the authors' release)
    entity_vocab_size: int = 1  # rows of the entity table, row 0 = no entity; set from the knowledge base
    num_mentions: int = 0  # mention strings the model links by itself; set from the knowledge base
    mention_length: int = 1  # tokens of the longest mention

    def validate(self) -> None:
        super().validate()
        if not 0 < self.aggregators <= self.num_layers:
            raise PlmkitError(f"knowledge_layers must be in 1…num_layers ({self.num_layers}), got {self.aggregators}")
        if self.entity_size % self.entity_heads:
            raise PlmkitError(f"entity_size {self.entity_size} is not a multiple of entity_heads {self.entity_heads}")
        if self.entity_vocab_size < 1 or self.num_mentions < 0 or self.mention_length < 1:
            raise PlmkitError("need entity_vocab_size >= 1, num_mentions >= 0 and mention_length >= 1")

    @property
    def aggregators(self) -> int:
        return self.knowledge_layers if self.knowledge_layers is not None else max(1, self.num_layers // 2)


@register("ernie-thu", parent="bert", year=2019, paper="Zhang et al. 2019, arXiv:1905.07129",
          diff={"layers": ["upper layers → aggregators: token and entity self-attention, fused in one FFN"],
                "body": ["+ a second input: the TransE vector of the entity aligned to each mention's first token",
                         "+ entity linking by string match against a knowledge graph (WordNet)"],
                "objective": ["+ denoising entity auto-encoder (dEA): predict aligned entities, 5 % replaced, "
                              "15 % removed"],
                "heads": ["+ entity prediction head (dense to the entity size, scored against the candidates)"]},
          config=ErnieThuConfig, objective="mlm+nsp+dea", tokenizer="wordpiece")
class ErnieThu(Bert):
    config_class = ErnieThuConfig
    hf = None  # no transformers counterpart

    def build_layers(self) -> nn.ModuleList:
        c = self.config
        plain = c.num_layers - c.aggregators
        return nn.ModuleList(
            [Block(c.hidden_size, c.num_heads, c.intermediate_size, c.activation, c.dropout, c.attention_dropout,
                   False, c.norm_first, c.layer_norm_eps) for _ in range(plain)]
            + [Aggregator(c.hidden_size, c.num_heads, c.intermediate_size, c.activation, c.dropout,
                          c.attention_dropout, c.layer_norm_eps, c.entity_size, c.entity_heads)
               for _ in range(c.aggregators)])

    def build_heads(self) -> None:
        super().build_heads()
        c = self.config
        self.entities = nn.Embedding(c.entity_vocab_size, c.entity_size)  # (E, K) TransE, fixed
        self.entities.weight.requires_grad_(False)
        self.dea_transform = nn.Linear(c.hidden_size, c.entity_size)
        self.dea_norm = nn.LayerNorm(c.entity_size, eps=c.layer_norm_eps)
        self.register_buffer("mention_ids", torch.full((c.num_mentions, c.mention_length), -1))  # (M, L)
        self.register_buffer("mention_entities", torch.zeros(c.num_mentions, dtype=torch.long))  # (M,)
        self.register_buffer("continues", torch.zeros(c.vocab_size, dtype=torch.bool))  # (V,)
        self._linker: EntityLinker | None = None

    def init_weights(self) -> None:
        """BERT's init; the entity table keeps its (TransE) vectors and row 0 stays zero."""
        kept = self.entities.weight.detach().clone()
        super().init_weights()
        with torch.no_grad():
            self.entities.weight.copy_(kept)

    def set_knowledge(self, vectors: torch.Tensor, linker: EntityLinker) -> None:
        """Install the entity vectors ((E, K), row 0 = no entity) and the linker of a knowledge base."""
        c = self.config
        if tuple(vectors.shape) != (c.entity_vocab_size, c.entity_size):
            raise PlmkitError(f"entity vectors of shape {tuple(vectors.shape)}; the config expects "
                              f"({c.entity_vocab_size}, {c.entity_size})")
        ids, entities, continues = linker.to_tensors()
        if tuple(ids.shape) != tuple(self.mention_ids.shape) or len(continues) != c.vocab_size:
            raise PlmkitError(f"the linker holds {tuple(ids.shape)} mention ids over {len(continues)} tokens; the "
                              f"config expects ({c.num_mentions}, {c.mention_length}) over {c.vocab_size}")
        with torch.no_grad():
            self.entities.weight.copy_(vectors)
            self.entities.weight[0] = 0
            self.mention_ids.copy_(ids)
            self.mention_entities.copy_(entities)
            self.continues.copy_(continues)
        self._linker = linker

    def link(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids → (B, T) entity ids, by the model's own mention table."""
        if self._linker is None:  # built once from the buffers (after loading a saved model)
            self._linker = EntityLinker.from_tensors(self.mention_ids.cpu(), self.mention_entities.cpu(),
                                                     self.continues.cpu())
        return self._linker.link(input_ids)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._linker = None  # new mention tables: rebuild the linker on next use
        return super().load_state_dict(state_dict, strict, assign)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
               output_attentions: bool = False, attn_impl: str = "sdpa", rows: torch.Tensor | None = None,
               cache=None, block=None, position_ids: torch.Tensor | None = None,
               entity_ids: torch.Tensor | None = None) -> ModelOutput:
        """As the transformer's encode, plus entity_ids: (B, T), the entity aligned to each token (0 = none);
        by default the model links input_ids itself. With `rows` every layer runs at every position (the
        entity stream needs them all) and the rows are picked at the end. No decoding cache: an encoder."""
        self.check_encoder_inputs("ERNIE-THU", input_ids, attention_mask, cache, block)
        if entity_ids is None:
            entity_ids = self.link(input_ids)
        key_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        x = self.embed(input_ids, token_type_ids, position_ids)  # (B, T, H)
        aligned = entity_ids > 0  # (B, T)
        e = self.entities(entity_ids)  # (B, T, K), zeros where none
        hidden, attentions = [x], []
        for layer in self.layers:
            if isinstance(layer, Aggregator):
                x, e, w = layer(x, e, aligned, key_mask, attn_impl, output_attentions)
            else:
                x, w = layer(x, key_mask, attn_impl, output_attentions)
            hidden.append(x)
            attentions.append(w)
        if rows is not None:
            x = x[torch.arange(x.shape[0], device=x.device), rows].unsqueeze(1)  # (B, 1, H)
            hidden[-1] = x
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None,
                           attentions=tuple(attentions) if output_attentions else None)

    def entity_logits(self, h: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """dEA's scores: (N, H) token states × (C,) candidate entity ids → (N, C), the transformed state's dot
        product with each candidate's TransE vector (§3.4, Eq. 7)."""
        q = self.dea_norm(ACTIVATIONS[self.config.activation](self.dea_transform(h)))  # (N, K)
        return q @ self.entities.weight[candidates].T
