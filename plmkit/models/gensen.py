"""GenSen = skip-thought + more tasks sharing its encoder (translation, a supervised classification), one
task's batch per step, and a bidirectional GRU encoder. Subramanian, Trischler, Bengio & Pal 2018, ICLR,
"Learning General Purpose Distributed Sentence Representations via Large Scale Multi-task Learning",
arXiv:1804.00079, §3–4.

The paper's recipe: one bidirectional GRU encoder; per task a GRU decoder conditioned on the sentence vector
(skip-thought's next sentence, English → French and English → German translation, constituency parsing as
linearised trees) or a classifier on it (natural language inference: an MLP on [u; v; |u − v|; u ⊙ v]);
every parameter update trains on one task's minibatch; the vector is the encoder's last states of both
directions (the released encoder's default `pool="last"`, which puts the backward state first; it also offers
max-pooling over time).

plmkit trains the tasks that exist offline (`plmkit/objectives/sentence_tasks.py`): `skip-thought` on the
corpus (the parent's two decoders, previous and next), `translation` English → Chinese on the shipped Bible
(its own character vocabulary, as GenSen's target languages have their own), and `section` — a verse's
section of the canon, a linear softmax on the vector — in place of NLI. No parsing task. Which tasks, their
weights and whether they are sampled or taken in turn are the config's `tasks` and `task_schedule`, e.g.
`--set 'tasks={"skip-thought": 2, "section": 1}' --set task_schedule=turns`.

    encoder   →h_t, ←h_t = GRUs over the words; s = [→h_T; ←h_1] (B, 2H), the sentence vector
    decoders  a GRU per generating task, reading [x_t; s] at every step (skip-thought's conditioning)
    classes   softmax(W s + b)

The text is read bare (no [CLS]/[SEP]), as in training; the parent's `causal_features` flag keeps it so
for `embed` and the heads, whose features are `pool_features` (the vector above).
Shape legend: B = batch, T = words, U = target length + 1, E = word embedding, H = GRU size per direction.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..layers.lm_loss import lm_cross_entropy
from ..objectives.sentence_tasks import NEIGHBOURS, NUM_SECTIONS, check_tasks
from .skip_thought import SkipThought, SkipThoughtConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class GenSenConfig(SkipThoughtConfig):
    embedding_size: int = 512  # §4: 512-d word embeddings
    hidden_size: int = 2048  # §4: a 2048-d bidirectional GRU (the vector is 4096-d)
    # task → weight: the tasks with data here (translation on the shipped Bible, section in place of NLI)
    tasks: dict = dataclasses.field(default_factory=lambda: {"skip-thought": 1.0, "translation": 1.0,
                                                             "section": 1.0})
    task_schedule: str = "sample"  # "sample": each step's task drawn ∝ weight; "turns": in order, w steps each
    target_vocab_size: int = 4000  # the translation decoder's characters (CUV has about 4,900 distinct)

    SIZES: ClassVar[dict[str, dict]] = {"tiny": dict(embedding_size=128, hidden_size=128),
                                        "mini": dict(embedding_size=256, hidden_size=256),
                                        "base": dict(embedding_size=512, hidden_size=2048)}

    def validate(self) -> None:
        super().validate()
        check_tasks(self.tasks, self.task_schedule)
        if self.target_vocab_size < 4:
            raise PlmkitError(f"target_vocab_size must leave room for characters (≥ 4), got {self.target_vocab_size}")


@dataclasses.dataclass
class GenSenOutput(ModelOutput):
    task_losses: dict[str, torch.Tensor] | None = None  # a decoding task's loss per decoder


@register("gensen", parent="skip-thought", year=2018,
          paper="Subramanian et al. 2018, Learning General Purpose Distributed Sentence Representations via Large "
                "Scale Multi-task Learning, ICLR, arXiv:1804.00079",
          diff={"objective": ["+ tasks sharing the encoder, one task's batch per step (sampled ∝ weight or in turn): "
                              "translation English → Chinese (Bible), verse → section of the canon"],
                "body": ["encoder: left-to-right GRU → bidirectional GRU",
                         "+ a translation decoder with its own character vocabulary, + a classifier on the vector",
                         "sentence vector = [→h_T; ←h_1]"]},
          config=GenSenConfig, objective="sentence-tasks", tokenizer="word", kind="sentence vectors",
          influences=("cove",))
class GenSen(SkipThought):
    config_class = GenSenConfig
    partial_steps = True  # a step trains the encoder and one task's head: the other heads get no gradient

    def build_body(self) -> None:
        c = self.config
        self.build_encoder()
        S = self.vector_size
        self.decoders = nn.ModuleDict({n: nn.GRU(c.embedding_size + S, c.hidden_size, batch_first=True)
                                       for n in NEIGHBOURS if "skip-thought" in c.tasks})
        if "translation" in c.tasks:  # its own target words: embedding, decoder, softmax
            self.target_embeddings = nn.Embedding(c.target_vocab_size, c.embedding_size)
            self.translator = nn.GRU(c.embedding_size + S, c.hidden_size, batch_first=True)
            self.target_output = nn.Linear(c.hidden_size, c.target_vocab_size)
        if "section" in c.tasks:
            self.classifier = nn.Linear(S, NUM_SECTIONS)
        if "response" in c.tasks:  # the response side's feed-forward layer (USE §3.1's input–response task)
            self.response = nn.Linear(S, S)

    def build_encoder(self) -> None:
        c = self.config
        self.rnn = nn.GRU(c.embedding_size, c.hidden_size, num_layers=c.num_layers, batch_first=True,
                          bidirectional=True, dropout=c.dropout if c.num_layers > 1 else 0.0)

    @property
    def vector_size(self) -> int:
        return 2 * self.config.hidden_size

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False, **_) -> ModelOutput:
        """(B, T) → [→h_t; ←h_t] (B, T, 2H); the backward GRU starts at each row's last real word (packed),
        and padded positions are zero. hidden_states: the embeddings, then the top layer."""
        e = self.dropout(self.embeddings(input_ids))  # (B, T, E)
        lengths = (attention_mask.sum(1) if attention_mask is not None
                   else torch.full((len(input_ids),), input_ids.shape[1])).long().clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
        h = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True,
                                             total_length=input_ids.shape[1])[0]  # (B, T, 2H)
        return ModelOutput(last_hidden_state=h, hidden_states=(e, h) if output_hidden_states else None)

    def pool_features(self, h: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(B, T, 2H) → (B, 2H): the forward GRU's state at the last real word, the backward's at the first."""
        H = self.config.hidden_size
        last = (attention_mask.sum(1).long() - 1 if attention_mask is not None
                else torch.full((len(h),), h.shape[1] - 1, device=h.device))
        return torch.cat([h[torch.arange(len(h), device=h.device), last, :H], h[:, 0, H:]], -1)

    def sentence_vector(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.pool_features(self.encode(input_ids, attention_mask).last_hidden_state, attention_mask)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The embeddings, then the encoder (the task heads are not used downstream)."""
        return [list(self.embeddings.parameters()), list(self.rnn.parameters())]

    def _decode(self, rnn: nn.GRU, embeddings: nn.Embedding, vector: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """A GRU decoder reading [x_t; s] at every step (B, U, E + S) → its states (B, U, H)."""
        e = self.dropout(embeddings(ids))
        return rnn(torch.cat([e, vector[:, None].expand(-1, ids.shape[1], -1)], -1))[0]

    def decode(self, name: str, vector: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Skip-thought decoder `name` ("previous", "next") from the vectors (B, S) → its states (B, U, H)."""
        return self._decode(self.decoders[name], self.embeddings, vector, input_ids)

    def task_loss(self, task: str, vector: torch.Tensor, targets: dict[str, torch.Tensor]) -> GenSenOutput:
        """One task's loss from the batch's sentence vectors (B, S) and its `targets` (the collated batch's
        other fields); `logits` are the scores a ranking or classifying task picks from."""
        if task not in self.config.tasks:
            raise PlmkitError(f"this model was built without task {task}; its tasks: {', '.join(self.config.tasks)}")
        if task == "skip-thought":
            losses = {n: lm_cross_entropy(self.dropout(self.decode(n, vector, targets[f"{n}_input_ids"])),
                                          self.output.weight, targets[f"{n}_labels"], self.output.bias)
                      for n in NEIGHBOURS}
            return GenSenOutput(last_hidden_state=vector, loss=sum(losses.values()), task_losses=losses)
        if task == "translation":
            h = self._decode(self.translator, self.target_embeddings, vector, targets["decoder_input_ids"])
            loss = lm_cross_entropy(self.dropout(h), self.target_output.weight, targets["labels"],
                                    self.target_output.bias)
            return GenSenOutput(last_hidden_state=vector, loss=loss)
        if task == "section":
            logits = self.classifier(self.dropout(vector))  # (B, C)
            return GenSenOutput(last_hidden_state=vector, logits=logits,
                                loss=F.cross_entropy(logits.float(), targets["labels"]))
        if task == "response":  # score_ij = u_i · g(v_j): row i's true response is column i
            v = self.sentence_vector(targets["response_ids"], targets["response_mask"])  # (B, S)
            logits = vector @ self.response(v).T  # (B, B)
            return GenSenOutput(last_hidden_state=vector, logits=logits,
                                loss=F.cross_entropy(logits.float(), targets["labels"]))
        raise PlmkitError(f"unknown task {task}")

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None, *,
                task: str | None = None, targets: dict[str, torch.Tensor] | None = None,
                output_hidden_states: bool = False, **_) -> ModelOutput:
        """Without `task`: the encoder's states (B, T, 2H). With a task and its targets: that task's loss
        (`task_loss`), the sentence vectors as last_hidden_state (B, S)."""
        if task is None:
            return self.encode(input_ids, attention_mask, token_type_ids, output_hidden_states)
        return self.task_loss(task, self.sentence_vector(input_ids, attention_mask), targets or {})
