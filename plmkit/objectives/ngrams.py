"""ZEN's pre-training: BERT's MLM (15 % of characters, 80/10/10) + NSP, by a model that holds an n-gram
lexicon. Diao et al. 2020, arXiv:1911.00720, §3.3.

The data transform and loss are BERT's (plmkit.objectives.mlm): ZEN 1.0 masks single characters (whole
n-gram masking came with ZEN 2.0). What this objective adds is the lexicon: read from `[data] lexicon`
(one n-gram per line) or, without one, extracted from the corpus by frequency (plmkit.data.ngrams); it
sizes the model's n-gram table (`model_fields`) and is installed in the model (`attach`), which matches it
against the corrupted input of every batch itself.
"""

from __future__ import annotations

import logging

from ..data.ngrams import extract_lexicon, lexicon_ids, read_lexicon
from ..errors import PlmkitError
from .mlm import MaskedLMWithNSP

log = logging.getLogger("plmkit")


class NgramMaskedLM(MaskedLMWithNSP):
    name = "mlm+nsp+ngrams"
    max_n, min_count, max_size = 5, 5, 20_000  # the extraction's longest n-gram, threshold and lexicon size

    def __init__(self, tokenizer, seq_len: int, seed: int = 0, lexicon: str | None = None,
                 corpus: list[str] | None = None):
        super().__init__(tokenizer, seq_len, seed)
        if tokenizer.kind != "char":
            raise PlmkitError(f"the {self.name} objective matches character n-grams: it needs a char tokenizer, "
                              f"not {tokenizer.kind}")
        if lexicon is not None:
            ngrams = read_lexicon(lexicon)
        elif corpus:
            counted = extract_lexicon(corpus, self.max_n, self.min_count, self.max_size)
            ngrams = [g for g, _ in counted]
            log.info("n-gram lexicon: %d n-grams of 2–%d characters seen at least %d times", len(ngrams),
                     self.max_n, self.min_count)
        else:
            raise PlmkitError(f"the {self.name} objective needs a lexicon ([data] lexicon = FILE) or a corpus")
        self.lexicon = lexicon_ids(ngrams, tokenizer)  # (L, n)

    def model_fields(self) -> dict:
        """The config fields the lexicon decides."""
        return {"ngram_vocab_size": len(self.lexicon) + 1, "max_ngram_length": self.lexicon.shape[1]}

    def attach(self, model) -> None:
        model.set_lexicon(self.lexicon)
