"""bilstm = a single-layer BiLSTM student trained on the teacher's logits (MSE), with masking, POS-guided
word replacement and n-gram sampling to augment the transfer set. Tang et al. 2019, arXiv:1903.12136.

Recipe: the student embeds the words (300-d), runs one bidirectional LSTM and classifies the
concatenation of the forward LSTM's last state and the backward one's first through a ReLU layer. It learns
from L = α · L_CE + (1 − α) · L_distill, L_distill = ‖z_teacher − z_student‖²₂ on the logits, over the
training set plus a synthetic transfer set labelled by the teacher's logits alone: each word is, with
probability p_mask = 0.1, replaced by [MASK], else with p_pos = 0.1 by another word of its part of speech
(drawn by unigram frequency); then, with probability p_ng = 0.25, the example is cut to a random n-gram,
n ∈ {1, …, 5}; n_iter = 20 synthetic examples per original.

Here the student is plmkit's ELMo body with one layer (a forward and a backward LSTM over the teacher's
tokens, pooling the forward state at the end and the backward one at the start) and the linear task head;
its tokens are the teacher's sub-words, so its vocabulary is the teacher's. The teacher labels every example
once, before training. POS-guided replacement needs a tagged corpus (`--pos-lexicon F`, CoNLL
token<TAB>tag, e.g. the Brown tagging task): each word gets its most frequent tag there; words it does not
know are not replaced; without a lexicon the step is skipped.

Where plmkit departs: no ReLU layer before the classifier (plmkit's heads are linear); the body keeps ELMo's
LM softmax (V × H), unused by the classifier but counted in the size; sub-word embeddings trained from
scratch, not word2vec; AdamW instead of Adadelta; `--augment` defaults to 4 synthetic examples per original
(the paper: 20), since the teacher labels each one on a CPU; sentence pairs are read as one sequence
([SEP] a [SEP] b [SEP]), not by the paper's siamese BiLSTM.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random

import torch
import torch.nn.functional as F

from ..errors import PlmkitError
from .kd import check_task, teacher_logits, train_student
from .registry import BATCH_SIZE, MAX_LENGTH, PATIENCE, SEED, Job, Option, Result, register

log = logging.getLogger("plmkit")

OPTIONS = (
    Option("epochs", int, 3, "passes over the training and synthetic examples (default 3)"),
    Option("lr", float, 1e-3, "peak learning rate (default 1e-3)"),
    BATCH_SIZE, MAX_LENGTH, SEED, PATIENCE,
    Option("hidden", int, 300, "embedding and LSTM width per direction (default 300, the paper's embeddings)"),
    Option("alpha", float, 0.0, "weight α of the labels' cross-entropy on the original examples; the logits' "
           "MSE gets 1 − α (default 0: the distillation loss alone)"),
    Option("augment", int, 4, "synthetic examples per training example (default 4; the paper: 20)"),
    Option("p_mask", float, 0.1, "probability of replacing a word by [MASK] (default 0.1)"),
    Option("p_pos", float, 0.1, "probability of replacing a word by another of its part of speech (default 0.1)"),
    Option("p_ngram", float, 0.25, "probability of cutting a synthetic example to a random n-gram (default 0.25)"),
    Option("pos_lexicon", str, None, "CoNLL file (token<TAB>tag) giving the words' parts of speech; without it "
           "POS-guided replacement is skipped"),
)
MAX_NGRAM = 5


def distill_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, labels: torch.Tensor, alpha: float
                 ) -> dict[str, torch.Tensor]:
    """α · CE(labels) + (1 − α) · ‖z_t − z_s‖²₂ (summed over labels, averaged over the batch); the
    cross-entropy counts only rows with a label (synthetic examples carry −100)."""
    mse = (t_logits.float() - s_logits.float()).pow(2).sum(-1).mean()
    has_label = labels >= 0
    ce = F.cross_entropy(s_logits[has_label].float(), labels[has_label]) if alpha and has_label.any() else mse.new_zeros(())
    return {"loss": alpha * ce + (1 - alpha) * mse, "mse": mse.detach(), "ce": ce.detach()}


class PosLexicon:
    """Each word's most frequent tag in a tagged corpus, and each tag's words with their counts."""

    def __init__(self, path):
        from ..data.tasks import read_task

        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for e in read_task(path, "tag"):
            for w, t in zip(e.tokens, e.tags):
                counts[w.lower()][t] += 1
        self.tag = {w: c.most_common(1)[0][0] for w, c in counts.items()}
        by_tag: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for w, c in counts.items():
            by_tag[self.tag[w]][w] += sum(c.values())
        self.words = {t: (list(c), list(c.values())) for t, c in by_tag.items()}

    def replace(self, word: str, rng: random.Random) -> str | None:
        tag = self.tag.get(word.lower())
        if tag is None:
            return None
        words, weights = self.words[tag]
        return rng.choices(words, weights)[0]


def augment_text(text: str, rng: random.Random, mask_token: str | None, lexicon: PosLexicon | None,
                 o: dict) -> str:
    """One synthetic version of `text`: per word, [MASK] with p_mask, else a same-POS word with p_pos;
    then with p_ngram a random n-gram of the result."""
    words = []
    for w in text.split():
        x = rng.random()
        if mask_token is not None and x < o["p_mask"]:
            w = mask_token
        elif lexicon is not None and x < o["p_mask"] + o["p_pos"]:
            w = lexicon.replace(w, rng) or w
        words.append(w)
    if words and rng.random() < o["p_ngram"]:
        n = min(rng.randint(1, MAX_NGRAM), len(words))
        start = rng.randint(0, len(words) - n)
        words = words[start:start + n]
    return " ".join(words)


def synthetic_examples(job: Job, mask_token: str | None, lexicon: PosLexicon | None) -> list:
    """`--augment` new examples per training example, none equal to an original or to each other."""
    o = job.options
    rng = random.Random(o["seed"])
    seen = {(e.text, e.text_b) for e in job.train}
    out = []
    for e in job.train:
        for _ in range(o["augment"]):
            new = dataclasses.replace(e, text=augment_text(e.text, rng, mask_token, lexicon, o), label=None,
                                      text_b=augment_text(e.text_b, rng, mask_token, lexicon, o) if e.text_b else None)
            key = (new.text, new.text_b)
            if new.text and key not in seen:
                seen.add(key)
                out.append(new)
    return out


@register("bilstm", paper="Tang et al. 2019, arXiv:1903.12136", options=OPTIONS)
def run(job: Job) -> Result:
    from ..heads import TaskModel
    from ..models.elmo import Elmo, ElmoConfig

    o = job.options
    check_task(job, "bilstm")
    if not 0 <= o["alpha"] <= 1:
        raise PlmkitError("bilstm --alpha must be in [0, 1]")
    teacher, tokenizer = job.teacher, job.teacher.tokenizer
    lexicon = PosLexicon(o["pos_lexicon"]) if o["pos_lexicon"] else None
    mask_token = tokenizer.id_to_token(tokenizer.mask_id) if tokenizer.mask_id is not None else None
    synthetic = synthetic_examples(job, mask_token, lexicon)
    examples = job.train + synthetic
    targets = teacher_logits(teacher, examples, 2 * o["batch_size"], job.progress)
    label_id = {lab: i for i, lab in enumerate(teacher.config.labels)}
    labels = [label_id[e.label] for e in job.train] + [-100] * len(synthetic)  # synthetic: no gold label

    torch.manual_seed(o["seed"])
    config = ElmoConfig(vocab_size=tokenizer.vocab_size, embedding_size=o["hidden"], hidden_size=o["hidden"],
                        num_layers=1)
    student = TaskModel(Elmo(config), teacher.config)
    student.tokenizer = tokenizer

    def step(m, batch):
        out = distill_loss(m.student(batch)["logits"], batch["targets"], batch["labels"], o["alpha"])
        return {**out, "tokens": int(batch["attention_mask"].sum())}

    selection = train_student(job, student, step, out=job.out, examples=examples, targets=targets, labels=labels)
    info = {"member": "elmo", "init": "random", "layers": 1, "hidden": o["hidden"], "train_examples": len(job.train),
            "synthetic_examples": len(synthetic), "pos_lexicon": o["pos_lexicon"],
            "masking": mask_token is not None}
    return Result(student, info, selection.curve, selection.best_step)
