"""Grover = GPT-2 + articles as fields (domain, date, authors, headline, body) in canonical order. Zellers et al. 2019, arXiv:1905.12616.

"Defending Against Neural Fake News". §3: an article is p(domain, date, authors, headline, body); the model
is GPT-2's, the change is the data — every field wrapped in its own tokens, and at training time a random
subset of fields as context before the rest (plmkit.objectives.fields), so one model writes a body from
its metadata and the metadata from a body. §5: the generator, fine-tuned as a classifier, is the best
detector of its own text (`plmkit grover compare`, `plmkit detect`).

Parameter layout is GPT-2's (`GPT2LMHeadModel` reads the weights; the field tokens are rows of its vocabulary).
"""

from __future__ import annotations

import dataclasses

from ..family import register
from .gpt2 import Gpt2, Gpt2Config


@dataclasses.dataclass(frozen=True)
class GroverConfig(Gpt2Config):
    pass  # the architecture is GPT-2's; the vocabulary holds the ten field tokens


@register("grover", parent="gpt2", year=2019, paper="Zellers et al. 2019, arXiv:1905.12616",
          diff={"objective": ["CLM over articles: fields (domain, date, authors, headline, body) in canonical order, "
                              "a random context/target split, metadata dropout"],
                "tokenizer": ["+ a begin and an end token per field"],
                "heads": ["the generator fine-tuned as the detector of generated text"]},
          config=GroverConfig, objective="fields", tokenizer="bytebpe")
class Grover(Gpt2):
    config_class = GroverConfig
