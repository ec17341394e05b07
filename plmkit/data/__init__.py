"""Data: plain-text corpora -> token shards, and the datasets and sampler that pre-training reads them with."""

from .pretrain import SegmentPairs, StepSampler, Windows
from .shards import TokenCorpus, build_shards, iter_lines

__all__ = ["SegmentPairs", "StepSampler", "TokenCorpus", "Windows", "build_shards", "iter_lines"]
