"""USE = GenSen with the recurrent encoder swapped for a transformer encoder whose sentence vector is the sum
of its output token vectors over √length, and USE's task mix (skip-thought-like, input–response, a
classification). Cer et al. 2018, "Universal Sentence Encoder", arXiv:1803.11175, §3.1 (the transformer
variant; the deep averaging network is not built).

The paper's recipe (§3.1, §3.3): the encoder is the transformer's encoding sub-graph (Vaswani et al. 2017);
"the element-wise sum of the representations at each word position" divided by the square root of the
sentence length is the 512-d sentence vector; one encoder is shared by a Skip-Thought-like task on running
text, a conversational input–response task (the input's vector scored against the responses', the other
responses of the batch as negatives; the response side passes through a feed-forward network), and
supervised classification on SNLI. Trained on web text (Wikipedia, news, question–answer pages, forums).

plmkit's task mix (`plmkit/objectives/sentence_tasks.py`), by default each sampled with weight 1:
`skip-thought` (GenSen's: two GRU decoders regenerate the previous and next sentence from the vector),
`response` (the corpus has no conversations: a sentence's response is the sentence that follows it;
score u_i · W v_j, one linear layer on the response side, in-batch softmax as in quick-thought), and
`section` (a Bible verse → its section of the canon) in place of SNLI. Any of GenSen's tasks may be named in
`tasks`. The encoder: sinusoidal positions, post-LN blocks with ReLU as in Vaswani et al.; the word
embedding is the transformer's width (embedding_size = hidden_size).

    vector    s = Σ_t h_t / √n over the n real tokens (B, H), h_t the top layer's outputs

Shape legend: B = batch, T = tokens, H = width, N = heads.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..layers.embeddings import Embeddings
from ..layers.transformer import Block
from .gensen import GenSen, GenSenConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class UseConfig(GenSenConfig):
    embedding_size: int = 512  # = hidden_size: the transformer reads its word vectors directly
    hidden_size: int = 512  # §3.1: 512-d sentence vectors
    num_layers: int = 6  # Vaswani et al.'s encoder depth (USE does not state its own)
    num_heads: int = 8
    intermediate_size: int = 2048
    attention_dropout: float = 0.0
    max_positions: int = 512
    tasks: dict = dataclasses.field(default_factory=lambda: {"skip-thought": 1.0, "response": 1.0, "section": 1.0})

    SIZES: ClassVar[dict[str, dict]] = {
        "tiny": dict(embedding_size=128, hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512),
        "mini": dict(embedding_size=256, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
        "base": dict(embedding_size=512, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048)}

    def validate(self) -> None:
        super().validate()
        if self.embedding_size != self.hidden_size:
            raise PlmkitError(f"the transformer reads its word vectors as they are: embedding_size "
                              f"({self.embedding_size}) must equal hidden_size ({self.hidden_size})")
        if self.hidden_size % self.num_heads:
            raise PlmkitError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")


@register("use", parent="gensen", year=2018,
          paper="Cer et al. 2018, Universal Sentence Encoder, arXiv:1803.11175",
          diff={"body": ["encoder: bidirectional GRU → transformer encoder (sinusoidal positions, post-LN)",
                         "sentence vector = Σ_t h_t / √length"],
                "objective": ["tasks: skip-thought + input–response ranking among the batch (the next sentence "
                              "as the response) + section classification; no translation"]},
          config=UseConfig, objective="sentence-tasks", tokenizer="word", kind="sentence vectors",
          influences=("transformer", "quick-thought"))
class Use(GenSen):
    config_class = UseConfig

    def build_encoder(self) -> None:
        c = self.config
        self.positions = Embeddings(0, c.hidden_size, c.max_positions, "sinusoidal", 0, False, 1e-6, c.dropout, None)
        self.layers = nn.ModuleList(Block(c.hidden_size, c.num_heads, c.intermediate_size, "relu", c.dropout,
                                          c.attention_dropout, False, False, 1e-6) for _ in range(c.num_layers))

    @property
    def vector_size(self) -> int:
        return self.config.hidden_size

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → the top layer (B, T, H); hidden_states: the embeddings, then each layer."""
        # no √H scaling of the words: plmkit's word table is drawn N(0, 1), the scale the sinusoids have
        x = self.positions.add(self.embeddings(input_ids))  # (B, T, H)
        key_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        states = [x]
        for layer in self.layers:
            x = layer(x, key_mask)[0]
            states.append(x)
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(states) if output_hidden_states else None)

    def pool_features(self, h: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, T, H) → (B, H): Σ over the real positions of h_t, divided by √(their number) (§3.1)."""
        if attention_mask is None:
            return h.sum(1) / math.sqrt(h.shape[1])
        m = attention_mask.to(h.dtype)  # (B, T)
        return (h * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1).sqrt()

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The embeddings, then each transformer layer."""
        return [list(self.embeddings.parameters()), *(list(layer.parameters()) for layer in self.layers)]
