"""ERNIE 2.0 = ERNIE − NSP + task embeddings + continual multi-task pre-training in stages. Sun et al. 2020, arXiv:1907.12412.

"ERNIE 2.0: A Continual Pre-training Framework for Language Understanding" (AAAI 2020). §3.3: the input is
token + segment + position + task embedding, one learned vector per pre-training task id. §3.2: tasks are
introduced in stages and every stage keeps training the tasks before it ("sequential multi-task learning");
§4.2: knowledge masking, capitalization prediction, token–document relation, sentence reordering and
sentence distance, each a small head over the shared encoder (`plmkit.objectives.continual`, where the
recipe and plmkit's departures are written out). The semantic-aware tasks (discourse relation, IR
relevance) need data plmkit does not have and are left out; so is NSP, which ERNIE 2.0 does not use.

The task ids are the places in `plmkit.objectives.continual.TASKS` (knowledge 0, capitalization 1,
token-document 2, reorder 3, distance 4). Fine-tuning, and any call without task ids, reads task 0's
embedding, as transformers' `ErnieModel` does (the paper allows any id at fine-tuning, §3.3).

Parameter layout matches Hugging Face `ErnieForPreTraining` with `use_task_id = True` (the task table is
`ernie.embeddings.task_type_embeddings`); the heads of the four non-MLM tasks have no transformers
counterpart and are saved beside them under `ernie2_heads.` (transformers ignores them on loading).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import PlmkitError
from ..family import register
from ..layers import TaskEmbeddings
from ..objectives.continual import TASK_CLASSES, TASKS, TOKEN_TASKS
from .bert import _from_hf_config as _bert_from_hf
from .ernie import Ernie, ErnieConfig
from .ernie import _to_hf_config as _ernie_to_hf
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class Ernie2Config(ErnieConfig):
    task_type_vocab_size: int = len(TASKS)  # one task embedding per pre-training task plmkit builds

    def validate(self) -> None:
        super().validate()
        if self.task_type_vocab_size < 1:
            raise PlmkitError(f"task_type_vocab_size must be positive, got {self.task_type_vocab_size}")


def _to_hf_config(c: Ernie2Config) -> dict:
    return {**_ernie_to_hf(c), "use_task_id": True, "task_type_vocab_size": c.task_type_vocab_size}


def _from_hf_config(d: dict) -> Ernie2Config:
    return Ernie2Config(**_bert_from_hf(d).to_dict(), task_type_vocab_size=d.get("task_type_vocab_size", 3))


def _head_key(task: str) -> str:
    return task.replace("-", "_")


@register("ernie2", parent="ernie", year=2020, paper="Sun et al. 2020, arXiv:1907.12412",
          diff={"objective": ["− NSP",
                              "+ capitalization prediction, token–document relation (word-aware)",
                              "+ sentence reordering (Σ k! permutation classes), sentence distance (3 classes)",
                              "tasks added in stages, each stage keeps the earlier ones (continual multi-task)"],
                "layers": ["+ task embedding on the input, one per pre-training task"],
                "heads": ["+ a small head per pre-training task over the shared encoder"],
                "tokenizer": ["cased: capitalization labels are read from the tokens"]},
          config=Ernie2Config, objective="continual", tokenizer="wordpiece")
class Ernie2(Ernie):
    config_class = Ernie2Config
    partial_steps = True  # a pre-training step trains one task's head (the trainer tells DDP)
    hf = dataclasses.replace(
        Ernie.hf, modules={**Ernie.hf.modules, "embeddings.task_types": "embeddings.task_type_embeddings",
                           "task_heads": "/ernie2_heads"},
        to_config=_to_hf_config, from_config=_from_hf_config, accepts=lambda d: bool(d.get("use_task_id", False)))

    def build_embeddings(self, size: int | None = None, position_offset: int = 0) -> TaskEmbeddings:
        c = self.config
        return TaskEmbeddings(c.vocab_size, size or c.hidden_size, c.max_positions, c.position, c.type_vocab_size,
                              c.embedding_norm, c.layer_norm_eps, c.dropout, c.pad_token_id, position_offset,
                              task_type_vocab_size=c.task_type_vocab_size)

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
              position_ids: torch.Tensor | None = None, task_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) → (B, T, H); task_type_ids (B, T), default task 0 everywhere."""
        return self.embeddings(input_ids, token_type_ids, position_ids, task_type_ids)

    def build_heads(self) -> None:
        super().build_heads()
        self.nsp = None  # ERNIE 2.0 has no next-sentence prediction
        H = self.config.hidden_size
        self.task_heads = nn.ModuleDict({_head_key(t): nn.Linear(H, n) for t, n in TASK_CLASSES.items()})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, *, task: str | None = None, **kwargs) -> ModelOutput:
        """As ERNIE's, plus `task`: a pre-training task other than knowledge masking, whose head's output is
        `task_logits`, (B, T, C) for a token-level task, (B, C) from the pooled [CLS] for a sequence-level one
        (the MLM head is then not run). task_type_ids (B, T) go to the embeddings through kwargs."""
        if task is None:
            return super().forward(input_ids, attention_mask, token_type_ids, **kwargs)
        if task == "knowledge":  # its loss reads no pooled [CLS]: an output it does not use would stall DDP
            out = super().forward(input_ids, attention_mask, token_type_ids, **kwargs)
            out.pooler_output = None
            return out
        if task not in TASK_CLASSES:
            raise PlmkitError(f"unknown ERNIE 2.0 task {task!r}; choose from {', '.join(TASKS)}")
        out = self.encode(input_ids, attention_mask, token_type_ids, **kwargs)
        head = self.task_heads[_head_key(task)]
        if task in TOKEN_TASKS:
            out.task_logits = head(out.last_hidden_state)  # (B, T, C)
        else:
            out.pooler_output = torch.tanh(self.pooler(out.last_hidden_state[:, 0]))  # (B, H)
            out.task_logits = head(out.pooler_output)  # (B, C)
        return out
