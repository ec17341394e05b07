"""General distillation: a pre-trained teacher teaches a student body on raw text (`plmkit compress METHOD
--model PRETRAINED --corpus F`), before any task. The corpus is tokenized into shards under `out/data` as
`plmkit pretrain` does and read in windows of `--seq-len` tokens framed `[CLS] … [SEP]`; the result is a
pre-trained model directory that `plmkit finetune` or a task-stage `--init` reads.

distil: the triple loss with MLM (15 %, 80/10/10) as the hard loss, its soft targets at the masked positions.
tinybert: the intermediate-layer losses on the unmasked text, the student random (Jiao et al. 2020, §3.2).
"""

from __future__ import annotations

import shutil

import torch
import torch.nn.functional as F

from ..errors import PlmkitError
from .kd import Distillation
from .registry import Job, Result
from .students import every_other, student_body, uniform_map


def _train(job: Job, student, step, extra=None) -> dict:
    """Run `step(module, batch)` for `--steps` steps over the corpus windows; returns the trainer's summary."""
    from ..data import TokenCorpus, build_shards
    from ..data.pretrain import StepSampler
    from ..objectives import MaskedLM
    from ..train import TrainConfig, Trainer
    from ..train.trainer import default_param_groups

    o, tokenizer = job.options, job.tokenizer
    if o["seq_len"] > min(student.config.max_positions, job.teacher.config.max_positions):
        raise PlmkitError(f"--seq-len {o['seq_len']} exceeds the models' positions")
    build_shards([job.corpus], tokenizer, job.out / "data")
    objective = MaskedLM(tokenizer, o["seq_len"], seed=o["seed"])
    dataset = objective.dataset(TokenCorpus(job.out / "data"))
    if len(dataset) == 0:
        raise PlmkitError(f"the corpus gives no window of {o['seq_len']} tokens", path=job.corpus)
    module = Distillation(student, job.teacher, extra)
    cfg = TrainConfig(steps=o["steps"], batch_size=o["batch_size"], lr=o["lr"], weight_decay=0.01, seed=o["seed"],
                      warmup_ratio=0.1, log_every=max(1, min(10, o["steps"])))
    trainable = torch.nn.ModuleList([student, module.extra])
    trainer = Trainer(module, dataset, StepSampler(len(dataset), o["batch_size"], o["seed"]), objective.collate, step,
                      cfg, job.out, save_fn=lambda m, d: None, param_groups=default_param_groups(trainable, 0.01),
                      run_info={"method": job.method, "options": o, "corpus": str(job.corpus)}, checkpoints=False)
    summary = trainer.train()
    shutil.rmtree(job.out / "data", ignore_errors=True)  # the shards are a cache of the corpus
    student.eval()
    return {k: summary[k] for k in ("steps", "final_loss", "tokens", "seconds")}


def distil_general(job: Job, triple_loss) -> Result:
    """DistilBERT's own setting: MLM teacher → student body with one of every two layers."""
    teacher = job.teacher
    if not _has_mlm_head(teacher, job.teacher_dir):
        raise PlmkitError(f"general distillation with distil needs a masked-LM teacher; this {teacher.family_name} "
                          "has no trained MLM head", path=job.teacher_dir)
    student, tokenizer, info = student_body(teacher, job.tokenizer, job.options, every_other)
    o = job.options

    def step(m, batch):
        ids, mask, types, masked = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["masked"]
        with torch.no_grad():
            t_h = m.teacher.encode(ids, mask, types).last_hidden_state  # (B, T, H)
            t_logits = m.teacher.lm_logits(t_h[masked])  # (M, V)
        s_h = m.student.encode(ids, mask, types).last_hidden_state
        s_logits = m.student.lm_logits(s_h[masked])
        mlm = F.cross_entropy(s_logits.float(), batch["labels"])
        return {**triple_loss(s_logits, t_logits, mlm, s_h, t_h, mask, o), "tokens": int(mask.sum())}

    info["training"] = _train(job, student, step)
    student.tokenizer = tokenizer
    return Result(student, info)


def tinybert_general(job: Job) -> Result:
    """TinyBERT's general distillation: embedding, attention and hidden-state losses on plain text."""
    from .tinybert import intermediate_loss, projections

    teacher = job.teacher
    student, tokenizer, info = student_body(teacher, job.tokenizer, job.options, default_init="random")
    if student.config.num_heads != teacher.config.num_heads:
        raise PlmkitError(f"the attention loss needs the teacher's {teacher.config.num_heads} heads")
    layer_map = uniform_map(teacher.config.num_layers, student.config.num_layers)
    extra = projections(student.config.hidden_size, teacher.config.hidden_size)

    def step(m, batch):
        # TinyBERT's general stage reads the text as it is: the objective's masking is undone.
        ids = _original(batch)
        mask, types = batch["attention_mask"], batch["token_type_ids"]
        with torch.no_grad():
            t_states = m.teacher.encode(ids, mask, types, output_hidden_states=True).hidden_states
        s_states = m.student.encode(ids, mask, types, output_hidden_states=True).hidden_states
        out = intermediate_loss(s_states, t_states, list(m.student.layers), list(m.teacher.layers), mask,
                                layer_map, m.extra["w_e"] if extra else None, m.extra["w_h"] if extra else None)
        return {**out, "tokens": int(mask.sum())}

    info.update(layer_map=layer_map, training=_train(job, student, step, extra))
    student.tokenizer = tokenizer
    return Result(student, info)


def _original(batch) -> torch.Tensor:
    """(B, T) input ids with the masked positions holding their original tokens again."""
    ids = batch["input_ids"].clone()
    ids[batch["masked"]] = batch["labels"]
    return ids


def _has_mlm_head(body, directory) -> bool:
    """Whether the saved model carries MLM weights (a Hugging Face encoder saved without its LM head loads
    with a random one)."""
    from safetensors import safe_open

    if getattr(body, "mlm_bias", None) is None:
        return False
    name = "mlm_bias" if getattr(body, "hf", None) is None else next(iter(body.hf.to_hf({"mlm_bias": body.mlm_bias})))
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        return name in f.keys()
