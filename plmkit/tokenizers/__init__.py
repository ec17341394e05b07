"""Tokenizers: one thin wrapper over the `tokenizers` library, trainers for seven kinds, and loaders.

The seven kinds are the tokenizer axis of the PLM family tree:
  wordpiece  BERT (Devlin et al. 2019): lowercased WordPiece, `[CLS] [SEP] [MASK]` specials.
  char       Chinese BERT: every non-space character is a token (WordLevel over single characters).
  rawchar    Flair's character LMs: every character is a token, the space included (none between Han characters).
  word       the pre-subword models (skip-thought): whole lower-cased words.
  bpe        GPT (Radford et al. 2018): classic word-internal BPE with an end-of-word suffix.
  bytebpe    GPT-2 / RoBERTa: byte-level BPE, never produces an unknown token.
  unigram    ALBERT / T5 / XLNet: SentencePiece-style unigram LM with Metaspace (`▁`) word starts.
"""

from __future__ import annotations

from .core import ROLES, Tokenizer, load_tokenizer
from .train import KINDS, train_tokenizer

__all__ = ["KINDS", "ROLES", "Tokenizer", "load_tokenizer", "train_tokenizer"]
