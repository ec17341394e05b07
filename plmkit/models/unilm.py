"""UniLM = BERT + self-attention masks (bidirectional, left-to-right, right-to-left, sequence-to-sequence LM) + their pre-training mix. Dong et al. 2019, arXiv:1905.03197.

"Unified Language Model Pre-training for Natural Language Understanding and Generation": one network,
pre-trained on the four LMs as cloze tasks, generates with the sequence-to-sequence mask.

The parameters are BERT's (§2: a shared Transformer); only which keys each query sees changes (§2.2,
Fig. 1; the masks and the pre-training mix are in plmkit/objectives/unilm.py), and the segment embedding
doubles as the LM's identifier (§2.1), so there are six segments as in the released code: bidirectional
A/B = 0/1, left-to-right 2, right-to-left 3, sequence-to-sequence source/target 4/5. A masked token is predicted from its [MASK]'s state, so a left-to-right prediction at i
sees tokens ≤ i with i itself masked. Generation follows the released decoder: the next token is
predicted at a [MASK] appended after the tokens so far; the token chosen replaces it at the same position.

Shape legend: B = batch, T = sequence length, S = positions so far (cached), V = vocabulary.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import PlmkitError
from ..family import register
from ..generation.cache import KVCache
from ..objectives.unilm import SEGMENTS
from .bert import Bert, BertConfig


@dataclasses.dataclass(frozen=True)
class UnilmConfig(BertConfig):
    type_vocab_size: int = 6  # the segment names the LM too (§2.1): see SEGMENTS
    mask_token_id: int | None = None  # the [MASK] generation predicts at; set from the tokenizer at pre-training

    def validate(self) -> None:
        super().validate()
        if self.type_vocab_size < 6:
            raise PlmkitError(f"UniLM needs type_vocab_size >= 6 (segments name the LM mode), "
                              f"got {self.type_vocab_size}")
        if self.mask_token_id is not None and not 0 <= self.mask_token_id < self.vocab_size:
            raise PlmkitError(f"mask_token_id {self.mask_token_id} outside the vocabulary of {self.vocab_size}")


@register("unilm", parent="bert", year=2019, paper="Dong et al. 2019, arXiv:1905.03197",
          diff={"body": ["+ self-attention masks: bidirectional, left-to-right, right-to-left, sequence-to-sequence"],
                "objective": ["MLM + NSP → the four LMs as cloze tasks in one batch: 1/3 bidirectional (with NSP), "
                              "1/3 sequence-to-sequence, 1/6 each direction",
                              "80 % single tokens, 20 % bigrams or trigrams masked"],
                "layers": ["2 → 6 segment embeddings: the segment names the LM mode"],
                "heads": ["generation: the sequence-to-sequence mask, the next token read at an appended [MASK]"]},
          config=UnilmConfig, objective="unilm", tokenizer="wordpiece", influences=("gpt",))
class Unilm(Bert):
    config_class = UnilmConfig
    generates = True  # with the sequence-to-sequence mask, whatever the bidirectional default of its config

    def generation_frame(self, tokenizer) -> tuple[list[int], list[int], int]:
        """[CLS] source [SEP] target [SEP] (§2.2): the prompt is the source, [SEP] ends the target."""
        if tokenizer.mask_id is None or tokenizer.mask_id != self.config.mask_token_id:
            raise PlmkitError(f"UniLM generates at its [MASK] (id {self.config.mask_token_id}); the tokenizer's "
                              f"mask token is {tokenizer.mask_id}")
        return [tokenizer.cls_id], [tokenizer.sep_id], tokenizer.sep_id

    def new_cache(self, batch_size: int, max_length: int) -> KVCache:
        """One column more than the tokens it will hold: the [MASK] each step appends."""
        return super().new_cache(batch_size, min(max_length + 1, self.config.max_positions))

    def decode_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    cache: KVCache) -> torch.Tensor:
        """The decoding protocol with UniLM's own step: the T new tokens and a [MASK] after them run together;
        the [MASK]'s state gives the next token's logits (B, V), and its column is forgotten, to be taken by
        that token. The first step is the source (segment 4), read both ways; later tokens are target
        (segment 5), each reading the source and the target to its left; the [MASK] reads everything."""
        if self.config.mask_token_id is None:
            raise PlmkitError("this UniLM config has no mask_token_id to generate with")
        B, T = input_ids.shape
        x = torch.cat([input_ids, input_ids.new_full((B, 1), self.config.mask_token_id)], 1)  # (B, T + 1)
        real = None if attention_mask is None else torch.cat([attention_mask, attention_mask.new_ones(B, 1)], 1)
        source, target = SEGMENTS["seq2seq"]
        types = torch.full_like(x, target)
        if cache.length == 0:
            types[:, :T] = source
            block = torch.ones(T + 1, T + 1, dtype=torch.bool, device=x.device)
            block[:T, T] = False  # the source does not read the [MASK]
        else:
            block = torch.ones(T + 1, T + 1, dtype=torch.bool, device=x.device).tril()
        rows = torch.full((B,), T, device=x.device)  # the last layer runs at the [MASK] only
        h = self.encode(x, real, types, rows=rows, cache=cache, block=block).last_hidden_state[:, 0]  # (B, H)
        cache.rewind(1)
        return self.step_logits(h)
