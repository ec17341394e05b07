"""Denoising objectives of the encoder–decoders: the encoder reads corrupted text, the decoder writes what the
corruption took (teacher-forced, cross-entropy on the decoder's targets only).

span-corruption (T5; Raffel et al. 2020, §3.1.4, Fig. 2, and `random_spans_noise_mask` of the T5 code):
    15 % of a window's tokens, in round(15 % × L / 3) spans (mean length 3), the window split at random
    into alternating kept and noise spans, both non-empty; each noise span becomes one sentinel
    (<extra_id_0>, <extra_id_1>, … in order) in the input; the target is each sentinel followed by its
    span, then </s>. Inputs end with </s>. The decoder reads ~20 % of the window: only what is predicted.
text-infilling (BART; Lewis et al. 2020, §2.2): a chunk of consecutive sentences (lines) of one document
    is shuffled (sentence permutation), then spans with lengths drawn from Poisson(λ = 3) are masked until
    30 % of its tokens are; each span becomes a single <mask>, a span of length 0 inserts one. Input
    `<s> corrupted </s>`, target `<s> original </s>` (the unshuffled sentences), decoder from </s>.
masked-span (MASS; Song et al. 2019, §2.2, §4.1): a contiguous fragment of k = 50 % of the window's
    tokens, starting at a uniform position, is masked in the encoder's input (80 % [M], 10 % a random
    token, 10 % kept, as BERT); the decoder reads the fragment shifted (its first input [M]) at the
    fragment's positions and predicts it.

All randomness comes from the collate's generator (numpy draws seeded from it), so a resumed run sees the
same batches.

Shape legend: B = batch, S = encoder length, U = decoder length.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.pretrain import Sentences, Windows
from .base import Objective
from .mlm import corrupt

SENTINELS = tuple(f"<extra_id_{i}>" for i in range(100))  # T5's 100 sentinel tokens


def random_spans(length: int, density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    """(length,) bool: the noise tokens, as T5's random_spans_noise_mask: round(density × length) of them
    (at least 1, at most length − 1) in round(noise / mean_span) spans (at least 1), kept and noise spans
    alternating, starting with kept tokens."""
    noise = min(max(round(length * density), 1), length - 1)
    spans = max(round(noise / mean_span), 1)
    spans = min(spans, noise, length - noise)

    def segment(items: int) -> np.ndarray:  # `items` cut at random into `spans` non-empty runs
        cuts = np.sort(rng.choice(np.arange(1, items), spans - 1, replace=False)) if spans > 1 else np.array([], int)
        return np.diff(np.concatenate([[0], cuts, [items]]))

    kept, noisy = segment(length - noise), segment(noise)
    mask = np.zeros(length, dtype=bool)
    pos = 0
    for k, n in zip(kept, noisy):
        pos += k
        mask[pos:pos + n] = True
        pos += n
    return mask


def _rng(generator: torch.Generator) -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), value)
    for r, row in enumerate(rows):
        out[r, :len(row)] = torch.tensor(row)
    return out


class Seq2seqDenoising(Objective):
    """What the three share: (input, target) id lists per example → padded tensors, and the step."""

    def _batch(self, sources: list[list[int]], targets: list[list[int]]) -> dict[str, torch.Tensor]:
        pad = self.tokenizer.pad_id
        ids = _pad(sources, pad)
        labels = _pad(targets, -100)
        return {"input_ids": ids, "attention_mask": (ids != pad).long() if pad is not None
                else torch.ones_like(ids), "labels": labels}

    def step(self, model, batch):
        out = model(batch["input_ids"], batch["attention_mask"], decoder_input_ids=batch.get("decoder_input_ids"),
                    decoder_position_ids=batch.get("decoder_position_ids"), labels=batch["labels"])
        tokens = int(batch["attention_mask"].sum() + (batch["labels"] != -100).sum())
        return {"loss": out.loss, "tokens": tokens}


class SpanCorruption(Seq2seqDenoising):
    name = "span-corruption"
    special_tokens = SENTINELS  # added to the tokenizer by `plmkit pretrain` when it lacks them
    density, mean_span = 0.15, 3.0

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self._require("eos", "pad")
        self.sentinels = [tokenizer.token_to_id(t) for t in SENTINELS]
        if None in self.sentinels:
            from ..errors import PlmkitError

            raise PlmkitError(f"the {self.name} objective needs the tokenizer's sentinels <extra_id_0> … "
                              "<extra_id_99>")

    def dataset(self, corpus):
        return Windows(corpus, self.seq_len - 1)  # the input keeps room for </s> whatever the spans

    def collate(self, examples, generator):
        rng, eos = _rng(generator), self.tokenizer.eos_id
        sources, targets = [], []
        for w in examples:
            noise = random_spans(len(w), self.density, self.mean_span, rng)
            starts = set(np.flatnonzero(noise & ~np.concatenate([[False], noise[:-1]])).tolist())  # spans' first tokens
            source, target = [], []
            span = -1
            for i, t in enumerate(w.tolist()):
                if noise[i]:
                    if i in starts:
                        span += 1
                        source.append(self.sentinels[min(span, len(self.sentinels) - 1)])
                        target.append(source[-1])
                    target.append(t)
                else:
                    source.append(t)
            sources.append(source + [eos])
            targets.append(target + [eos])
        return self._batch(sources, targets)


class TextInfilling(Seq2seqDenoising):
    name = "text-infilling"
    mask_ratio, poisson_lambda = 0.3, 3.0

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self._require("bos", "eos", "pad", "mask")

    def dataset(self, corpus):
        return Sentences(corpus, self.seq_len - 2)

    def infill(self, tokens: np.ndarray, rng: np.random.Generator) -> list[int]:
        """Poisson-length spans, 30 % of the tokens, each span one <mask> (length 0: a <mask> inserted)."""
        n = len(tokens)
        budget = int(np.ceil(n * self.mask_ratio))
        lengths = []
        while sum(lengths) < budget:
            lengths.append(int(rng.poisson(self.poisson_lambda)))
        lengths[-1] -= sum(lengths) - budget  # the last span ends at the budget
        masked = np.zeros(n, dtype=bool)
        inserted = np.zeros(n + 1, dtype=bool)  # a <mask> before token i
        for length, start in zip(lengths, rng.integers(0, n, len(lengths))):
            if length == 0:
                inserted[start] = True
            else:
                masked[start:start + length] = True
        out, mask_id = [], self.tokenizer.mask_id
        for i in range(n + 1):
            if inserted[i]:
                out.append(mask_id)
            if i < n:
                if not masked[i]:
                    out.append(int(tokens[i]))
                elif i == 0 or not masked[i - 1]:  # a run of masked tokens: one <mask>
                    out.append(mask_id)
        return out

    def collate(self, examples, generator):
        rng, t = _rng(generator), self.tokenizer
        sources, targets = [], []
        for sentences in examples:
            original = np.concatenate(sentences)
            permuted = np.concatenate([sentences[j] for j in rng.permutation(len(sentences))])
            sources.append([t.bos_id, *self.infill(permuted, rng), t.eos_id])
            targets.append([t.bos_id, *original.tolist(), t.eos_id])
        return self._batch(sources, targets)


class MaskedSpan(Seq2seqDenoising):
    name = "masked-span"
    fraction = 0.5

    def __init__(self, tokenizer, seq_len: int, seed: int = 0):
        super().__init__(tokenizer, seq_len, seed)
        self._require("eos", "pad", "mask")

    def dataset(self, corpus):
        return Windows(corpus, self.seq_len - 1)  # + </s>

    def collate(self, examples, generator):
        w = torch.from_numpy(np.stack(examples))  # (B, m): windows are of one length, so is the fragment
        B, m = w.shape
        k = max(1, round(self.fraction * m))
        start = torch.randint(0, m - k + 1, (B, 1), generator=generator)  # (B, 1)
        positions = start + torch.arange(k)  # (B, k): the fragment's positions
        chosen = torch.zeros(B, m, dtype=torch.bool)
        chosen.scatter_(1, positions, True)
        ids = corrupt(w, chosen, self.tokenizer.mask_id, self.vocab_size, generator)
        ids = torch.cat([ids, torch.full((B, 1), self.tokenizer.eos_id)], 1)  # (B, m + 1)
        labels = w.gather(1, positions)  # (B, k)
        decoder_input = torch.cat([torch.full((B, 1), self.tokenizer.mask_id), labels[:, :-1]], 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "decoder_input_ids": decoder_input,
                "decoder_position_ids": positions, "labels": labels}
