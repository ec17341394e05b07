"""Scoring what a model produces: task metrics computed streaming (`metrics`), the language-model report
of every era — perplexity per word and bits per byte (`lm`), and probes of static word vectors
(`word_probes`: analogies, word similarity)."""
