"""Decoding from pre-trained models: continuations of a causal LM (`generate`) and the fillers of a masked
LM's [MASK] positions (`fill_mask`)."""

from .masked import MASK_PLACEHOLDER, fill_mask
from .sampling import generate

__all__ = ["MASK_PLACEHOLDER", "fill_mask", "generate"]
