"""`TaskModel`: a pre-trained body (any member with `encode`) plus one downstream head.

Heads: sequence classification, pair classification, regression, multiple choice (a linear layer on a
pooled vector), token tagging (a linear layer per token, softmax or CRF), extractive span QA (start/end
logits). Pooling: a causal body (GPT, the FFNN/RNN/LSTM LMs) reads the hidden state of its last token, which
the input transformation makes the [extract] token (Radford et al. 2018, §3.3); a bidirectional body reads
[CLS], through its pooler when it has one (BERT, Devlin et al. 2019, §4.1).

With `features="scalar-mix"` the body is frozen and the head reads an ELMo-style learned mix of all its
layers (Peters et al. 2018, eq. 1) instead of the last one.

What a body offers the heads: `encode(input_ids, attention_mask, token_type_ids, output_hidden_states)` →
ModelOutput (last_hidden_state, and hidden_states: the input layer, then each layer; right padding must
not change a real token's states), `config.vocab_size`, `config.max_positions`, `config.causal`. The
head's width and the number of mixed layers are read from one encode of a two-token input, so a body's
features may be wider than its config's hidden_size (ELMo: [→h; ←h]). Optional hooks: `causal_features`
(False when the LM is causal but its features read both ways, as ELMo's), `input_frame(tokenizer)` →
(begin, delimiter, end) ids in place of [CLS]/[SEP], `pool_features(h, attention_mask)` in place of the
[CLS]/last-token rule, `cls_at_end` (XLNet: inputs end with [CLS], pooled there), `layer_groups()` (bottom
to top, for ULMFiT; else `embeddings` and `layers`), and
`init_weights()`/`resize_token_embeddings(n)` for --from-scratch and GPT's added tokens. A body whose
`encode` takes `rows` (the transformers) computes its last layer only at the position a sequence-level
head pools.

Shape legend: B = batch, K = views or options per example, T = sequence length, H = hidden size,
C = labels, W = words per sentence.
"""

from __future__ import annotations

import dataclasses
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..errors import PlmkitError
from ..layers.crf import CRF
from ..layers.scalar_mix import ScalarMix
from ..data.tasks import TASKS

FEATURES = ("finetune", "scalar-mix")
GPT_TOKENS = ("<|start|>", "<|delim|>", "<|extract|>")  # GPT's fine-tuning tokens, added to its vocabulary


@dataclasses.dataclass(frozen=True)
class HeadConfig(Config):
    task: str = "classify"  # classify | pair | regress | tag | qa | choice
    labels: tuple[str, ...] = ()  # label vocabulary (classify, pair, tag), discovered from the training data
    features: str = "finetune"  # finetune: train the body too | scalar-mix: frozen body, learned layer mix
    crf: bool = False  # tagging: a CRF over the tag sequence instead of independent softmaxes
    max_length: int = 128  # tokens per input sequence, specials included
    doc_stride: int = 64  # qa: tokens from one window of a long context to the next (BERT's run_squad.py)
    dropout: float = 0.1  # on the features fed to the head
    gpt_tokens: tuple[str, ...] = ()  # start, delim, extract, when the body is causal

    def __post_init__(self) -> None:
        for name in ("labels", "gpt_tokens"):  # JSON gives lists; keep tuples so configs compare equal
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        super().__post_init__()

    def validate(self) -> None:
        if self.task not in TASKS:
            raise PlmkitError(f"unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        if self.features not in FEATURES:
            raise PlmkitError(f"unknown features {self.features!r}; choose from {', '.join(FEATURES)}")
        if self.crf and self.task != "tag":
            raise PlmkitError("a CRF is a tagging head: use it with --task tag")
        if self.max_length < 8:
            raise PlmkitError(f"max_length must be at least 8, got {self.max_length}")
        if self.task == "qa" and not 0 < self.doc_stride < self.max_length:
            raise PlmkitError(f"doc_stride must be in (0, max_length), got {self.doc_stride}")

    @property
    def num_outputs(self) -> int:
        return {"regress": 1, "choice": 1, "qa": 2}.get(self.task, len(self.labels))


def causal_features(body: nn.Module) -> bool:
    """Whether the body's state at a position has read only the tokens up to it (GPT, the LSTM LM)."""
    return bool(getattr(body, "causal_features", getattr(body.config, "causal", False)))


def feature_widths(body: nn.Module) -> tuple[int, list[int]]:
    """(width of `encode`'s last_hidden_state, width of each of its hidden_states), from a two-token input."""
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            p = next(body.parameters())
            ids = torch.zeros(1, 2, dtype=torch.long, device=p.device)
            out = body.encode(ids, torch.ones_like(ids), None, output_hidden_states=True)
    finally:
        body.train(was_training)
    return out.last_hidden_state.shape[-1], [h.shape[-1] for h in out.hidden_states]


class TaskModel(nn.Module):
    """body + head. `forward(batch)` returns {"logits", and "loss" when the batch has labels}."""

    def __init__(self, body: nn.Module, config: HeadConfig):
        super().__init__()
        self.body, self.config = body, config
        H, widths = feature_widths(body)
        self.causal = causal_features(body)
        self.pool_last = self.causal or getattr(body, "cls_at_end", False)  # GPT's [extract], XLNet's [CLS]
        self.frozen = config.features == "scalar-mix"
        if self.frozen:
            if len(set(widths)) > 1:
                raise PlmkitError(f"--features scalar-mix mixes the {len(widths)} layers of this "
                                  f"{getattr(body, 'family_name', 'model')}, but their widths differ "
                                  f"({', '.join(map(str, widths))}); pre-train it with embedding_size = hidden_size")
            H = widths[0]
            body.requires_grad_(False)
            self.mix = ScalarMix(len(widths))  # the embeddings and every layer
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(H, config.num_outputs)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.crf = CRF(len(config.labels)) if config.crf else None
        # A transformer body (its encode takes `rows`) can compute its last layer only at the position a
        # sequence-level head reads: the same vector for 1/L less work.
        self.rows_only = (not self.frozen and not hasattr(body, "pool_features")
                          and "rows" in inspect.signature(body.encode).parameters)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.body.eval()  # frozen features: no dropout inside the body
        return self

    def hidden(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(N, T) → (N, T, H): the last layer, or the scalar mix of all layers."""
        if not self.frozen:
            return self.body.encode(input_ids, attention_mask, token_type_ids).last_hidden_state
        with torch.no_grad():
            states = self.body.encode(input_ids, attention_mask, token_type_ids,
                                      output_hidden_states=True).hidden_states
        return self.mix(states)

    def pooled(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, T, H) → (N, H): the body's own pooling if it has one, else the [extract] (last real) token for
        a causal body or the [CLS] at the end (XLNet), else [CLS]."""
        if hasattr(self.body, "pool_features"):
            return self.body.pool_features(h, attention_mask)
        if self.pool_last:
            last = attention_mask.sum(1).long() - 1  # (N,) right padding: the last real position
            return h[torch.arange(h.shape[0], device=h.device), last]
        if not self.frozen and getattr(self.body, "pooler", None) is not None:
            return torch.tanh(self.body.pooler(h[:, 0]))
        return h[:, 0]

    def features(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """(N, T) → (N, H): the pooled vector of each sequence, for the sequence-level heads."""
        if not self.rows_only:
            return self.pooled(self.hidden(input_ids, attention_mask, token_type_ids), attention_mask)
        N = input_ids.shape[0]
        rows = (attention_mask.sum(1).long() - 1 if self.pool_last
                else torch.zeros(N, dtype=torch.long, device=input_ids.device))  # (N,) the pooled position
        h = self.body.encode(input_ids, attention_mask, token_type_ids, rows=rows).last_hidden_state  # (N, 1, H)
        return self.pooled(h, attention_mask[:, :1])

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        task = self.config.task
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        if task in ("tag", "qa"):
            h = self.drop(self.hidden(ids, mask, types))  # (B, T, H)
            return self._tag(h, batch) if task == "tag" else self._qa(h, batch)
        # Sequence-level tasks: (B, K, T) inputs are K views (GPT similarity) or K options (choice).
        B = ids.shape[0]
        flat = ids.dim() == 3
        if flat:
            K = ids.shape[1]
            ids, mask = ids.flatten(0, 1), mask.flatten(0, 1)
            types = None if types is None else types.flatten(0, 1)
        v = self.features(ids, mask, types)  # (B·K, H)
        if task == "choice":
            logits = self.head(self.drop(v)).view(B, K).masked_fill(~batch["choice_mask"], float("-inf"))
            return self._with_loss(logits, batch, lambda x, y: F.cross_entropy(x.float(), y))
        if flat:  # similarity: the views' features are added before the linear layer (GPT §3.3)
            v = v.view(B, K, -1).sum(1)
        logits = self.head(self.drop(v))  # (B, C)
        if task == "regress":
            return self._with_loss(logits.squeeze(-1), batch, lambda x, y: F.mse_loss(x.float(), y.float()))
        return self._with_loss(logits, batch, lambda x, y: F.cross_entropy(x.float(), y))

    @staticmethod
    def _with_loss(logits, batch, loss_fn) -> dict[str, torch.Tensor]:
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = loss_fn(logits, batch["labels"])
        return out

    def _tag(self, h: torch.Tensor, batch) -> dict[str, torch.Tensor]:
        """Emissions at each word's first sub-token, compacted to (B, W, C) so a CRF runs over words."""
        first = batch["first"]  # (B, T) bool
        W = max(int(first.sum(1).max()), 1)
        pos = torch.argsort((~first).to(torch.int8), dim=1, stable=True)[:, :W]  # (B, W) first-token positions
        word_mask = torch.arange(W, device=h.device) < first.sum(1, keepdim=True)  # (B, W)
        emissions = self.head(h.gather(1, pos.unsqueeze(-1).expand(-1, -1, h.shape[-1])))  # (B, W, C)
        out = {"logits": emissions, "word_mask": word_mask}
        if "labels" in batch:
            gold = batch["labels"].gather(1, pos).masked_fill(~word_mask, -100)  # (B, W)
            if self.crf is not None:
                out["loss"] = self.crf(emissions, gold.clamp(min=0), word_mask)
            else:
                out["loss"] = F.cross_entropy(emissions.flatten(0, 1).float(), gold.flatten(), ignore_index=-100)
        return out

    def decode_tags(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, W) tag ids: Viterbi with a CRF, else the argmax per word."""
        if self.crf is not None:
            return self.crf.decode(out["logits"], out["word_mask"])
        return out["logits"].argmax(-1)

    def _qa(self, h: torch.Tensor, batch) -> dict[str, torch.Tensor]:
        logits = self.head(h).float()  # (B, T, 2)
        # Only context tokens, or position 0 for "the answer is not in this window", can be picked.
        allowed = batch["context_mask"].clone()
        allowed[:, 0] = True
        start, end = (x.squeeze(-1).masked_fill(~allowed, -1e4) for x in logits.split(1, dim=-1))
        out = {"start_logits": start, "end_logits": end}
        if "start_positions" in batch:
            out["loss"] = (F.cross_entropy(start, batch["start_positions"]) +
                           F.cross_entropy(end, batch["end_positions"])) / 2
        return out

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters bottom to top for ULMFiT's discriminative rates and gradual unfreezing: the
        embeddings, each layer (the body's `layer_groups()` where it has one), then everything above (final
        norm, pooler, mix, head, CRF, and an LM's unused output layer)."""
        body = self.body
        if hasattr(body, "layer_groups"):
            groups = [list(g) for g in body.layer_groups()]
        elif hasattr(body, "embeddings") and hasattr(body, "layers"):
            groups = [list(body.embeddings.parameters())] + [list(layer.parameters()) for layer in body.layers]
        else:
            return [list(self.parameters())]
        seen = {id(p) for g in groups for p in g}
        groups.append([p for p in self.parameters() if id(p) not in seen])
        return groups
