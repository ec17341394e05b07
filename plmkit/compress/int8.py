"""int8 = every linear layer's weight in int8 (one scale per output channel), its input quantized per batch
on the fly (dynamic quantization), saved as int8. Jacob et al. 2018, arXiv:1712.05877; for BERT, Zafrir et
al. 2019 (Q8BERT), arXiv:1910.06188.

Recipe: post-training dynamic quantization as torch ships it (`quantize_dynamic`): symmetric int8 weights,
one scale per output channel, rounded once from the fine-tuned weights; at run time each linear layer's
input is quantized to uint8 with the batch's own min and max, the product accumulates in int32 and is
rescaled to fp32. Embeddings, LayerNorm, softmax and the attention products run in fp32. Q8BERT reaches
int8 inside fine-tuning instead (quantization-aware training with fake quantization, symmetric 8-bit
weights and activations), which matters for its tasks more than for the ones here.

Where plmkit departs: the embedding tables are stored in int8 as well (one scale per row; `--embeddings
fp32` keeps them), so the directory is about 4x smaller than the fp32 one, and they are decoded to fp32 at
load (a lookup gains nothing from int8); the saved directory holds the int8 weights and their scales
(plmkit.compress.storage), so loading it does not quantize anything again. The kernels are fbgemm's
(plmkit.compress.quantize): x86 CPUs only.
"""

from __future__ import annotations

import copy

from . import storage
from .quantize import embedding_encodings, int8_parameters, linear_settings, quantize_int8
from .registry import Job, Option, Result, register
from ..data.tasks import TASKS

EMBEDDINGS = Option("embeddings", str, "int8", "how the embedding tables are stored: int8 (one scale per row, "
                    "decoded to fp32 at load; default) or fp32", choices=("int8", "fp32"))


def saved_as_int8(job: Job, student, info: dict) -> Result:
    """The Result of a method whose student has int8 linear layers: saved with them as they are, the
    embeddings in --embeddings."""
    encodings = embedding_encodings(student, job.options["embeddings"])
    info = {"init": "teacher", "layers": getattr(student.body.config, "num_layers", None),
            "hidden": getattr(student.body.config, "hidden_size", None), "embeddings": job.options["embeddings"],
            **info}
    return Result(student, info, save=storage.saver({"linear": linear_settings(student)}, encodings),
                  parameters=int8_parameters(student))


@register("int8", paper="Jacob et al. 2018, arXiv:1712.05877", options=(EMBEDDINGS,), tasks=TASKS)
def run(job: Job) -> Result:
    student = quantize_int8(copy.deepcopy(job.teacher).cpu().eval())
    return saved_as_int8(job, student, {"activations": "dynamic, per batch"})
