"""Replaced-token detection (ELECTRA): a small MLM generator fills the masked positions with samples, and
the discriminator classifies every token as original or replaced; loss = L_MLM(generator) + λ · L_RTD,
λ = 50. Clark et al. 2020, arXiv:2003.10555, §2 (eq. 1–3).

Masked positions are all replaced by [MASK] for the generator (§2: "replace the tokens at the masked-out
positions with a [MASK] token"). A sampled token that happens to equal the original counts as original.
The sample is not differentiated through (the discriminator's loss does not reach the generator), so the
model must take `generator=True` in its forward to run the generator (see `plmkit.models.electra`).

Shape legend: B = batch, T = sequence length, V = vocabulary, M = masked positions in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .mlm import MaskedLM, mask_tokens


class ReplacedTokenDetection(MaskedLM):
    name = "rtd"
    rtd_weight = 50.0  # λ (§2)

    def choose_and_corrupt(self, batch, maskable, generator):
        ids = batch["input_ids"]
        _, chosen = mask_tokens(ids, maskable, self.tokenizer.mask_id, self.vocab_size, generator, self.mask_prob)
        return torch.where(chosen, self.tokenizer.mask_id, ids), chosen

    def step(self, model, batch):
        masked, attn, types = batch["masked"], batch["attention_mask"], batch["token_type_ids"]
        gen = model(batch["input_ids"], attn, types, generator=True, logits_at=masked).logits  # (M, V)
        mlm_loss = F.cross_entropy(gen.float(), batch["labels"])
        with torch.no_grad():
            sampled = torch.multinomial(gen.float().softmax(-1), 1).squeeze(-1)  # (M,)
        corrupted = batch["input_ids"].masked_scatter(masked, sampled)  # (B, T): samples at the masked positions
        replaced = torch.zeros_like(masked).masked_scatter(masked, sampled != batch["labels"])  # (B, T)
        real = attn.bool()
        logits = model(corrupted, attn, types).logits  # (B, T)
        rtd_loss = F.binary_cross_entropy_with_logits(logits[real].float(), replaced[real].float())
        rtd_acc = ((logits[real] > 0) == replaced[real]).float().mean()
        return {"loss": mlm_loss + self.rtd_weight * rtd_loss, "tokens": int(real.sum()),
                "mlm_loss": mlm_loss.detach(), "rtd_loss": rtd_loss.detach(), "rtd_acc": rtd_acc,
                "replaced": replaced[real].float().mean()}
