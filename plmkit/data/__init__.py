"""Data: plain-text corpora -> token shards and the datasets and samplers pre-training reads them with;
labelled task data (`tasks`: readers for JSONL, CSV/TSV, CoNLL and SQuAD JSON, label sets)."""

from .pretrain import SegmentPairs, Segments, SentenceRuns, StepSampler, StreamSampler, Windows
from .shards import TokenCorpus, build_shards, iter_lines

__all__ = ["SegmentPairs", "Segments", "SentenceRuns", "StepSampler", "StreamSampler", "TokenCorpus", "Windows",
           "build_shards", "iter_lines"]
