"""What the benchmarks share: the matmul peak MFU is measured against, and the transformers peer built
from plmkit's own weights."""

from __future__ import annotations

import contextlib
import tempfile
import time

import torch

from ..errors import PlmkitError


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 1.0) -> float:
    """Measured FLOP/s of an n×n matmul in `dtype` on this CPU (the best of repeated timings)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def transformers_module():
    """`import transformers`, or an error that says how to install it and how to run without a peer."""
    try:
        import transformers
    except ImportError:
        raise PlmkitError("the peer needs transformers: pip install 'plmkit[bench]' (or --vs none)") from None
    return transformers


def hf_peer(model, cls_name: str, attention: str):
    """The transformers `cls_name` holding `model`'s weights, through a saved Hugging Face directory."""
    from ..interop.hf import save_model

    transformers = transformers_module()
    with tempfile.TemporaryDirectory() as d, quiet_transformers():
        save_model(model, d)
        return getattr(transformers, cls_name).from_pretrained(d, attn_implementation=attention)


@contextlib.contextmanager
def quiet_transformers():
    """No load report or progress bar while a peer is built from plmkit's weights."""
    from transformers.utils import logging as hf_logging

    level, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()
