"""Data: plain-text corpora -> token shards and the datasets and sampler pre-training reads them with;
labelled task data (`tasks`: readers for JSONL, CSV/TSV, CoNLL and SQuAD JSON, label sets)."""

from .pretrain import SegmentPairs, SentenceRuns, StepSampler, Windows
from .shards import TokenCorpus, build_shards, iter_lines

__all__ = ["SegmentPairs", "SentenceRuns", "StepSampler", "TokenCorpus", "Windows", "build_shards", "iter_lines"]
