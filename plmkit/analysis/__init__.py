"""Looking inside a trained member: one module per method of the analysis literature, each behind
`plmkit analyze METHOD`. Attention weights come from the eager attention path, asked for by name.

| method | module | applies to |
|---|---|---|
| attention | `attention` (Clark et al. 2019) | transformers |
| heads | `heads` (Michel et al. 2019) | transformers with a loss: fine-tuned, causal, or with their MLM head |
| probe | `probe` (Liu et al. 2019; Tenney et al. 2019; Hewitt & Liang 2019) | every neural member |
| cloze | `cloze` (Petroni et al. 2019; Kassner & Schütze 2020) | masked LMs with their MLM head; causal LMs |
| numeracy | `numeracy` (Wallace et al. 2019) | every neural member |
| geometry | `geometry` (Ethayarajh 2019; Kornblith et al. 2019; Abnar et al. 2019) | every neural member |
| perturbed-masking | `perturbed_masking` (Wu et al. 2020) | bidirectional transformers with a mask token |
| syntax | `syntax` (Marvin & Linzen 2018; Goldberg 2019; Warstadt et al. 2019) | masked LMs with their MLM head; causal LMs |
| robustness | `robustness` (Jin et al. 2020; Wallace et al. 2019) | fine-tuned single-text classifiers |

Each module's `requires(loaded)` returns None when the method applies, else the reason it does not;
`report` runs every method that applies into one static page.
"""

from __future__ import annotations

from . import attention, cloze, geometry, heads, numeracy, perturbed_masking, probe, robustness, syntax

METHODS = {"attention": attention, "heads": heads, "probe": probe, "cloze": cloze, "numeracy": numeracy,
           "geometry": geometry, "perturbed-masking": perturbed_masking, "syntax": syntax,
           "robustness": robustness}


def applicability(loaded) -> dict[str, str | None]:
    """Method → None when it applies to the loaded model, else the reason it does not."""
    return {name: module.requires(loaded) for name, module in METHODS.items()}


__all__ = ["METHODS", "applicability"]
