"""Compression wraps a trained model; it is never a flag inside one. One module per method, all behind
`plmkit compress METHOD` and `plmkit frontier` (plmkit/workflows/compress.py, frontier.py).

How a method registers (the registry is plmkit/compress/registry.py):

    \"\"\"name = what it does. Author et al. YEAR, arXiv:…   ← first paragraph: `plmkit compress list`

    The paper's recipe, then where plmkit departs from it.\"\"\"

    from .registry import TRAINING, Job, Option, Result, register

    @register("name", paper="Author et al. YEAR, arXiv:…",
              options=TRAINING + (Option("temperature", float, 2.0, "softmax temperature (default 2)"),),
              tasks=("classify", "pair"), general=False)
    def run(job: Job) -> Result:
        ...
        return Result(model=student, info={"init": "teacher", ...}, curve=dev_curve, best_step=step)

and the module is imported in this file. A method receives a `Job`: the teacher (a fine-tuned TaskModel in
eval mode, or with general=True and `--corpus` a pre-trained body), the task's train/dev examples, its own
options resolved (declared as `Option`s, they become `--flags` of `plmkit compress NAME` and keys of
`plmkit frontier --set`), and the output directory. It returns a `Result`: the compressed model with its
tokenizer — a TaskModel that plmkit.heads.evaluate runs — what compression.json should record about it,
and the dev curve of its training. The workflow does the rest, the same for every method: saves the model
(plmkit.heads.save_finetuned, unless the method gives its own `save`; either way a directory that
`plmkit evaluate`, `predict` and `bench infer` read), scores teacher and student on the test set, times
both on the same examples at batch 1 and 32, and writes eval.json and compression.json. A new method
appears in `plmkit frontier` without any change there.

Methods: distil, tinybert, pkd, theseus, bilstm (knowledge distillation); int8, int8-static, ternary
(quantization); prune-heads, prune-ffn, lottery (pruning); layerdrop, dynabert (structured dropout); deebert,
pabee (early exit); extract (model extraction: a copy trained on the teacher's answers alone). What they share: kd and students (the distillation loop, student builders); quantize (int8
layers, and `quantize_int8`, the dynamic int8 quantization behind `plmkit evaluate --int8` and `predict --int8`);
storage (compressed.safetensors and compressed.json: the saved form of quantized, pruned and early-exit models,
which `load_finetuned` reads); structure (heads, neurons and layers removed, and the masks that match them);
exits (the batched early-exit model). A method whose saved form is not a plain fine-tuned directory returns
`Result(save=storage.saver(spec, encodings))`.
"""

# Each module registers its method; this order is the registry's (and `plmkit frontier`'s default order).
from . import distil, tinybert, pkd, theseus, bilstm  # noqa: F401  (distillation)
from . import int8, int8_static, ternary  # noqa: F401  (quantization)
from . import prune_heads, prune_ffn, lottery, layerdrop, dynabert  # noqa: F401  (pruning, structured dropout)
from . import deebert, pabee  # noqa: F401  (early exit)
from . import extract  # noqa: F401  (model extraction)
from .quantize import quantize_int8
from .registry import Job, Method, Option, Result, get, methods, register

__all__ = ["Job", "Method", "Option", "Result", "get", "methods", "quantize_int8", "register"]
