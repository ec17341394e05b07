"""Decoding from pre-trained models: continuations of the models that read left to right and targets of the
encoder–decoders (`generate`: GPT, GPT-2, UniLM, the recurrent and n-gram LMs; T5, BART, MASS), the fillers
of a masked LM's [MASK] positions (`fill_mask`), and text sampled from a masked LM by Gibbs sampling
(`gibbs`, Wang & Cho 2019).

The decoding protocol
---------------------
The engine never runs a decoder's whole sequence again at each step. A decoder that joins it exposes:

    model.generates -> bool
        Whether it can continue text left to right (GPT: its config is causal; UniLM: always, with its
        sequence-to-sequence mask; BERT: no).
    model.new_cache(batch_size, max_length) -> cache
        Buffers for `max_length` positions of `batch_size` rows, allocated once (`KVCache`; a member with
        other state per position returns its own object with the same `reorder` and `length`).
    model.decode_step(input_ids, attention_mask, cache) -> logits
        input_ids (B, T): the next T tokens of every row — first the whole (left-padded) prompt, then one
        token per step; attention_mask (B, T): 1 = real token, 0 = padding, or None when all are real.
        Adds their keys and values to the cache and returns the logits of the token that follows, (B, V).
    cache.reorder(index)
        Rows follow `index` ((B',) long): beam search keeps the beams it extends, finished rows leave.
    model.generation_frame(tokenizer) -> (before, after, eos)   (optional)
        The ids around a prompt and the id that ends a continuation; by default a prompt starts after
        the document separator of the pre-training stream and ends at the next one.
    model.encoder_decoder -> bool   (optional)
        True when a prompt is a source that the decoder does not continue (T5, BART, MASS): the result's text
        is the new text alone, and the repetition rules see the decoder's start token and the target, not
        the source (as transformers' do).

A transformer body gets all of it from plmkit/models/transformer.py: `encode(..., cache=cache)` calls
`cache.extend(T, attention_mask)` for the step's position ids (each row counts its own real tokens, so
left padding changes nothing) and attention mask, and every attention layer writes its new keys and values
with `cache.layers[i].update(k, v)` and attends over the view it gets back. A member that changes the body
keeps the same calls: Transformer-XL's keys carry no position (the relative terms are added from the
distance), so its cache is the same buffers; a sequence-to-sequence decoder adds, per layer, the
cross-attention keys and values of the source, computed once by the first step and reordered with the rest.
A member whose step needs one more query than it keeps (UniLM predicts at an appended [MASK]) runs it in
the same step and forgets its column with `cache.rewind(1)`.

A model without `decode_step` (the n-gram, FFNN and recurrent LMs) is decoded by running its forward on
the whole sequence at each step, which is exact for any left-to-right LM and slower.
"""

from .cache import KVCache
from .engine import generate, generate_ids
from .gibbs import gibbs
from .masked import MASK_PLACEHOLDER, fill_mask

__all__ = ["KVCache", "MASK_PLACEHOLDER", "fill_mask", "generate", "generate_ids", "gibbs"]
