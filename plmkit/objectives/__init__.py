"""Pre-training objectives: each module holds a data transform and the loss that goes with it.

An objective is built with the tokenizer and sequence length, then gives the trainer what it needs:
`dataset(corpus)`, `collate(examples, generator)` (all randomness from the generator, so a resumed run
sees identical batches) and `step(model, batch) -> {"loss", "tokens", …metrics}`.
"""

from __future__ import annotations

from ..errors import PlmkitError
from .base import Objective
from .clm import CausalLM
from .continual import ContinualMultiTask
from .dea import DenoisingEntityAutoencoder
from .denoising import MaskedSpan, SpanCorruption, TextInfilling
from .ernie import KnowledgeMaskedLM
from .fields import FieldOrderedLM
from .mlm import MaskedLM, MaskedLMWithNSP, StaticMaskedLM
from .ngrams import NgramMaskedLM
from .plm import PermutationLM
from .recurrent import RecurrentCausalLM
from .rtd import ReplacedTokenDetection
from .sentence_tasks import SentenceTasks
from .simcse import SimCSE
from .sop import MaskedLMWithSOP
from .tlm import TranslationMaskedLM
from .translation import Translation, TranslationAnyDirection
from .unilm import UnifiedLM
from .wwm import WholeWordMaskedLM

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (
    CausalLM, ContinualMultiTask, DenoisingEntityAutoencoder, FieldOrderedLM, KnowledgeMaskedLM, MaskedLM,
    MaskedLMWithNSP, MaskedLMWithSOP, MaskedSpan, NgramMaskedLM, PermutationLM, RecurrentCausalLM,
    ReplacedTokenDetection, SentenceTasks, SimCSE, SpanCorruption, StaticMaskedLM, TextInfilling, Translation,
    TranslationAnyDirection, TranslationMaskedLM, UnifiedLM, WholeWordMaskedLM)}


def get_objective(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise PlmkitError(f"unknown objective {name!r}; known: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


__all__ = ["OBJECTIVES", "CausalLM", "ContinualMultiTask", "DenoisingEntityAutoencoder", "FieldOrderedLM",
           "KnowledgeMaskedLM", "MaskedLM", "MaskedLMWithNSP", "MaskedLMWithSOP", "MaskedSpan", "NgramMaskedLM",
           "Objective", "PermutationLM", "RecurrentCausalLM", "ReplacedTokenDetection", "SentenceTasks", "SimCSE",
           "SpanCorruption", "StaticMaskedLM", "TextInfilling", "Translation", "TranslationAnyDirection",
           "TranslationMaskedLM", "UnifiedLM", "WholeWordMaskedLM", "get_objective"]
