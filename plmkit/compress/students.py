"""Building a transformer student for a fine-tuned teacher, and the layer maps the methods use.

Initialisation (`--init`, recorded in compression.json; Turc et al. 2019, "Well-Read Students Learn
Better", arXiv:1908.08962, compare these starting points):
    teacher  copy the teacher's embeddings, pooler, head and the layers the method picks (DistilBERT: one
             of every two; PKD, Theseus: the first k); needs the teacher's width.
    random   BERT's initialisation (normal(0, 0.02) weights, zero biases), head included.
    DIR      a smaller pre-trained model (a `plmkit pretrain` or Hugging Face directory) with the teacher's
             tokenizer, e.g. one produced by general distillation (`plmkit compress tinybert --corpus`);
             its own depth and width; the head starts random.
The student is the teacher's member unless `--student` names another (e.g. distilbert: no token types, no
pooler), whose config takes the teacher's vocabulary, positions, heads and activation.
"""

from __future__ import annotations

import os

import torch

from ..errors import PlmkitError

# The config fields a student of another member inherits from the teacher: what its inputs and shapes need.
_INHERITED = ("vocab_size", "max_positions", "num_heads", "activation", "layer_norm_eps", "pad_token_id")


def every_other(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer (0-based) copied into each student layer: evenly spaced from the first, one of every
    two when the student is half as deep (Sanh et al. 2019, §3)."""
    return [i * teacher_layers // student_layers for i in range(student_layers)]


def first(teacher_layers: int, student_layers: int) -> list[int]:
    """The first k teacher layers (PKD; BERT-of-Theseus's released code)."""
    return list(range(student_layers))


def uniform_map(teacher_layers: int, student_layers: int) -> list[int]:
    """TinyBERT's uniform mapping n = g(m) = m · N / M: student layer m (1-based) learns from teacher layer
    g(m); returned 1-based, for hidden_states indices (0 is the embedding layer)."""
    if teacher_layers % student_layers:
        raise PlmkitError(f"the uniform layer map needs the teacher's {teacher_layers} layers to be a multiple of "
                          f"the student's {student_layers}")
    return [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]


def build_student(teacher, options: dict, pick=every_other, default_init: str = "teacher"):
    """A TaskModel student for the fine-tuned `teacher` from the method's resolved options (layers, hidden,
    init, student, seed); returns (student, info for compression.json). With the teacher's layers it also
    starts from the teacher's head."""
    from ..heads import TaskModel

    body, tokenizer, info = student_body(teacher.body, teacher.tokenizer, options, pick, default_init)
    student = TaskModel(body, teacher.config)
    if info["init"] == "teacher":
        student.head.load_state_dict(teacher.head.state_dict())
    student.tokenizer = tokenizer
    return student, info


def student_body(teacher_body, teacher_tokenizer, options: dict, pick=every_other, default_init: str = "teacher"):
    """The student's body (and tokenizer) for a teacher body: (body, tokenizer, info)."""
    from .. import family, load, load_tokenizer

    cfg_t = teacher_body.config
    init = options.get("init") or default_init
    torch.manual_seed(options["seed"])
    info = {"init": init}
    if init not in ("teacher", "random"):
        if not os.path.isdir(init):
            raise PlmkitError("--init wants teacher, random or a model directory", path=init)
        body = load(init)
        tokenizer = load_tokenizer(init)
        if tokenizer.backend.get_vocab(with_added_tokens=True) != teacher_tokenizer.backend.get_vocab(True):
            raise PlmkitError("the student's tokenizer differs from the teacher's; the losses compare the two "
                              "models token by token, so the student needs the teacher's vocabulary", path=init)
        for name, field in (("layers", "num_layers"), ("hidden", "hidden_size")):
            if options.get(name) is not None and options[name] != getattr(body.config, field):
                raise PlmkitError(f"--{name} {options[name]} differs from the --init model's "
                                  f"{getattr(body.config, field)}; a pre-trained student keeps its shape", path=init)
        info["member"] = body.family_name
    else:
        layers = options.get("layers") or max(1, cfg_t.num_layers // 2)
        hidden = options.get("hidden") or cfg_t.hidden_size
        member = family.get(options.get("student") or teacher_body.family_name)
        shape = {"num_layers": layers, "hidden_size": hidden,
                 "intermediate_size": cfg_t.intermediate_size * hidden // cfg_t.hidden_size}
        if member.name == teacher_body.family_name:
            config = cfg_t.replace(**shape)
        else:
            inherited = {k: getattr(cfg_t, k) for k in _INHERITED if k in member.config_cls.field_names()}
            config = member.config_cls.from_dict({**inherited, **shape})
        body = member.model_cls(config)  # drawn with BERT's initialisation
        info["member"] = member.name
        if init == "teacher":
            if hidden != cfg_t.hidden_size:
                raise PlmkitError(f"--init teacher copies the teacher's weights, so the student needs its width "
                                  f"{cfg_t.hidden_size} (not --hidden {hidden}); use --init random or a directory")
            info["teacher_layers"] = pick(cfg_t.num_layers, layers)
            _copy_weights(teacher_body, body, info["teacher_layers"])
        tokenizer = teacher_tokenizer
    info.update(layers=body.config.num_layers, hidden=body.config.hidden_size)
    return body, tokenizer, info


def _copy_weights(teacher_body, student_body, picked: list[int]) -> None:
    """Student layer i ← teacher layer picked[i]; every other tensor the two share by name and shape
    (embeddings, pooler, final norm, LM head) is copied too."""
    source = teacher_body.state_dict()
    state = student_body.state_dict()
    for name in state:
        if name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            src = f"layers.{picked[int(i)]}.{rest}"
        else:
            src = name
        if src in source and source[src].shape == state[name].shape:
            state[name] = source[src].clone()
    student_body.load_state_dict(state)
