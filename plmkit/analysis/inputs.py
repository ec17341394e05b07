"""What every analysis method reads: a model directory opened once (body, tokenizer, member, what its
checkpoint lacked), sentences as words, their sub-word encoding with the first sub-token of each word
marked, and the hidden states or attention weights of a batch.

Attention weights always come from the eager attention path, asked for by name: the SDPA path does not
return them, and asking it for weights is an error (plmkit.layers.attention), never a quiet switch.

Words are represented by their first sub-token, as the tagging heads label them (plmkit.data.tasks).

Shape legend: B = sentences, T = tokens, W = words, L = layers, N = heads, H = hidden size.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import torch
from torch import nn

from .. import family
from ..data.tasks import align_words, read_task
from ..errors import PlmkitError

BODY_PREFIXES = ("embeddings.", "layers.", "final_norm", "embedding_proj")


@dataclasses.dataclass
class Loaded:
    """A model directory opened for analysis."""

    path: Path
    model: nn.Module  # the body (for a fine-tuned directory, the body under its head)
    tokenizer: object
    member: family.Member
    meta: dict  # plmkit.json, or {} for a transformers directory
    task_model: nn.Module | None = None  # the TaskModel of a fine-tuned directory
    untrained: tuple[str, ...] = ()  # parameters the checkpoint did not hold (e.g. MiniLM's MLM head)

    @property
    def name(self) -> str:
        """The directory and its parent (a transformers checkpoint often sits in a folder named "model")."""
        parts = self.path.resolve().parts
        return "/".join(parts[-2:])

    def card(self) -> dict:
        """Member, diff, size and training corpus: the model's card in the report."""
        c, m = self.model.config, self.member
        size = {k: getattr(c, k) for k in ("num_layers", "hidden_size", "num_heads", "vocab_size", "embedding_size")
                if hasattr(c, k)}
        pre = self.meta.get("pretraining", {})
        return {"path": str(self.path), "member": m.name, "paper": m.paper, "year": m.year, "parent": m.parent,
                "diff": m.diff, "parameters": sum(p.numel() for p in self.model.parameters()), **size,
                "corpus": pre.get("corpus") or self.meta.get("corpus"),
                "objective": pre.get("objective") or self.meta.get("objective") or
                f"not recorded (the member's own: {m.objective})",
                "fine-tuned": (self.meta.get("finetuned") or {}).get("task"),
                "source": "plmkit" if self.meta else "transformers directory",
                "untrained parameters": list(self.untrained)}


def load(path) -> Loaded:
    """Open a plmkit or transformers model directory, or a fine-tuned one (its body is analysed)."""
    from .. import load as load_model
    from ..heads import HEAD_CONFIG, load_finetuned
    from ..interop.hf import read_model_config
    from ..tokenizers import load_tokenizer

    d = Path(path)
    member, _, meta = read_model_config(d)
    if (d / HEAD_CONFIG).is_file():
        task_model = load_finetuned(d)
        model, tokenizer = task_model.body, task_model.tokenizer
    else:
        task_model, model, tokenizer = None, load_model(d), load_tokenizer(d)
    return Loaded(d, model.eval(), tokenizer, member, meta, task_model, _untrained(d, model))


def _untrained(d: Path, model: nn.Module) -> tuple[str, ...]:
    """The model's parameters that the directory's weights did not hold (they kept their random init)."""
    layout = getattr(model, "hf", None)
    if layout is None:  # saved under plmkit's names: the loader insists that every parameter is there
        return ()
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    if not any(k.startswith(layout.prefix) for k in keys):  # a bare-body checkpoint
        keys = {layout.prefix + k for k in keys}
    missing = []
    for name, t in model.state_dict().items():
        theirs = layout.to_hf({name: t})
        if theirs and not all(k in keys for k in theirs):
            missing.append(name)
    return tuple(missing)


# ---- what a model offers the methods -------------------------------------------------------------

def is_transformer(model: nn.Module) -> bool:
    """A body with self-attention blocks (its `encode` can return attention weights)."""
    from ..models.transformer import Transformer

    return isinstance(model, Transformer)


def has_layers(model: nn.Module) -> bool:
    """A body whose `encode` returns per-layer hidden states (every neural member; not the n-gram)."""
    return hasattr(model, "encode")


def causal(model: nn.Module) -> bool:
    from ..heads.model import causal_features

    return causal_features(model)


def masked_lm_problem(loaded: Loaded) -> str | None:
    """Why the model cannot fill a [MASK] over its vocabulary, or None when it can."""
    if not is_transformer(loaded.model) or causal(loaded.model):
        return f"{loaded.member.name} is not a masked LM"
    if loaded.tokenizer.mask_id is None:
        return "the tokenizer has no mask token"
    if getattr(loaded.model, "mlm_transform", None) is None:  # ELECTRA: a replaced-token detector
        return f"{loaded.member.name}'s pre-training head is not a masked LM over the vocabulary"
    missing = lm_head_missing(loaded)
    if missing:
        return f"the checkpoint has no masked-LM head ({', '.join(missing[:3])} missing)"
    return None


def lm_head_missing(loaded: Loaded) -> list[str]:
    """The output-layer parameters the checkpoint lacked (MiniLM ships the encoder and pooler only)."""
    return [n for n in loaded.untrained if not n.startswith(BODY_PREFIXES) and not n.startswith(("pooler", "nsp"))]


# ---- sentences -------------------------------------------------------------------------------------

def read_sentences(path, limit: int | None = None, seed: int = 0, min_words: int = 3,
                   max_words: int = 60) -> list[list[str]]:
    """Sentences as word lists from a text file (one sentence or paragraph per line, split on whitespace)
    or a CoNLL file (`.txt`/`.conll` with token<TAB>tag lines: its tokens). `limit` sentences are drawn
    at random (seeded) from those with min_words … max_words words."""
    p = Path(path)
    if not p.is_file():
        raise PlmkitError("text file not found", path=p)
    if _is_conll(p):
        sents = [e.tokens for e in read_task(p, "tag")]
    else:
        try:
            sents = [ln.split() for ln in p.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError:
            raise PlmkitError("not UTF-8 text", path=p) from None
    sents = [s for s in sents if min_words <= len(s) <= max_words]
    if not sents:
        raise PlmkitError(f"no line of {min_words}–{max_words} words in the file", path=p)
    if limit is not None and len(sents) > limit:
        rng = random.Random(seed)
        sents = [sents[i] for i in sorted(rng.sample(range(len(sents)), limit))]
    return sents


def _is_conll(p: Path) -> bool:
    with p.open(encoding="utf-8", errors="replace") as f:
        first = next((ln for ln in f if ln.strip()), "")
    return "\t" in first and len(first.split("\t")) == 2


@dataclasses.dataclass
class Batch:
    """Sentences encoded for a body: ids (B, T), mask (B, T), and where each word starts."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T) 1 = real token
    first: torch.Tensor  # (B, W) position of each word's first sub-token (0 where no word)
    word_mask: torch.Tensor  # (B, W) bool
    word_of: list[list[int]]  # per sentence, per token: the word it belongs to, -1 for specials
    tokens: list[list[str]]  # per sentence, the token strings (specials included)


def encode_words(model: nn.Module, tokenizer, sentences: list[list[str]], max_length: int | None = None) -> Batch:
    """Encode word-split sentences, keeping at most `max_length` tokens (default the model's limit);
    words cut off by the limit are dropped."""
    from ..heads.pooling import frame_ids  # as the heads frame a single text

    begin, end = frame_ids(model, tokenizer)
    limit = min(max_length or 10 ** 9, getattr(model.config, "max_positions", 512)) - len(begin) - len(end)
    rows, owners = [], []
    for words in sentences:
        ids, word_of = align_words(tokenizer, words)
        ids, word_of = ids[:limit], word_of[:limit]
        rows.append(begin + ids + end)
        owners.append([-1] * len(begin) + word_of + [-1] * len(end))
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    T = max(len(r) for r in rows)
    W = max(max(o) + 1 for o in owners)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    first = torch.zeros(len(rows), max(W, 1), dtype=torch.long)
    word_mask = torch.zeros(len(rows), max(W, 1), dtype=torch.bool)
    for b, (r, o) in enumerate(zip(rows, owners)):
        ids[b, :len(r)] = torch.tensor(r)
        mask[b, :len(r)] = 1
        for t, w in enumerate(o):
            if w >= 0 and not word_mask[b, w]:
                first[b, w], word_mask[b, w] = t, True
    tokens = [[tokenizer.id_to_token(i) or "" for i in r] for r in rows]
    return Batch(ids, mask, first, word_mask, owners, tokens)


def chunks(sentences: list, size: int):
    for i in range(0, len(sentences), size):
        yield sentences[i:i + size]


@torch.no_grad()
def hidden_states(model: nn.Module, batch: Batch) -> tuple[torch.Tensor, ...]:
    """(L + 1) × (B, T, H): the input layer, then each layer's output."""
    return model.encode(batch.input_ids, batch.attention_mask, output_hidden_states=True).hidden_states


@torch.no_grad()
def attentions(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
    """(L, B, N, T, T) attention weights, from the eager path asked for by name."""
    if not is_transformer(model):
        raise PlmkitError(f"{getattr(model, 'family_name', 'this model')} has no attention to look at")
    out = model.encode(input_ids, attention_mask, output_attentions=True, attn_impl="eager")
    return torch.stack(out.attentions)


@torch.no_grad()
def word_states(model: nn.Module, tokenizer, sentences: list[list[str]], batch_size: int = 32,
                max_length: int = 128, progress=None) -> list[torch.Tensor]:
    """Per layer, the representation of every word of every sentence, concatenated in order:
    (L + 1) × (total words, H). `progress` is a tqdm bar to advance by sentences."""
    per_layer: list[list[torch.Tensor]] = []
    for chunk in chunks(sentences, batch_size):
        b = encode_words(model, tokenizer, chunk, max_length)
        states = hidden_states(model, b)
        if not per_layer:
            per_layer = [[] for _ in states]
        rows = torch.arange(len(chunk))[:, None].expand_as(b.first)
        for layer, h in zip(per_layer, states):
            layer.append(h[rows, b.first][b.word_mask].float())  # (words in chunk, H)
        if progress is not None:
            progress.update(len(chunk))
    return [torch.cat(x) for x in per_layer]


def kept_words(model: nn.Module, tokenizer, sentences: list[list[str]], max_length: int = 128) -> list[list[str]]:
    """The words of each sentence that `word_states` represents (those within the token limit)."""
    out = []
    for chunk in chunks(sentences, 64):
        b = encode_words(model, tokenizer, chunk, max_length)
        out += [s[:int(m.sum())] for s, m in zip(chunk, b.word_mask)]
    return out


def save_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


@dataclasses.dataclass
class Parsed:
    """A sentence with its gold dependency tree: heads[i] is the 1-based head of word i + 1, 0 = root."""

    words: list[str]
    heads: list[int]
    relations: list[str]


def read_conllu(path, limit: int | None = None, max_words: int = 60) -> list[Parsed]:
    """Dependency trees from a CoNLL-U file (ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL …, tab-separated,
    a blank line after each sentence); multi-word ranges (1-2) and empty nodes (1.1) are skipped."""
    p = Path(path)
    if not p.is_file():
        raise PlmkitError("parse file not found", path=p)
    out, words, heads, rels = [], [], [], []
    try:
        lines = p.read_text(encoding="utf-8").split("\n") + [""]
    except UnicodeDecodeError:
        raise PlmkitError("not UTF-8 text", path=p) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            if words and len(words) <= max_words:
                out.append(Parsed(words, heads, rels))
            words, heads, rels = [], [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 8:
            raise PlmkitError("expected 10 tab-separated CoNLL-U columns (ID FORM … HEAD DEPREL …)", path=p, line=n)
        if not cols[0].isdigit():
            continue
        if int(cols[0]) != len(words) + 1 or not cols[6].isdigit():
            raise PlmkitError(f"word ids must count 1, 2, … and HEAD be a number, got {cols[0]!r}, {cols[6]!r}",
                              path=p, line=n)
        words.append(cols[1])
        heads.append(int(cols[6]))
        rels.append(cols[7].split(":")[0])
    for s in out:
        if any(h > len(s.words) for h in s.heads):
            raise PlmkitError("a HEAD points past the end of its sentence", path=p)
    if not out:
        raise PlmkitError("no sentence in the file", path=p)
    return out[:limit] if limit else out


def shipped_sentences(limit: int | None = 200, seed: int = 0) -> list[list[str]]:
    """The default corpus sample: verses of the King James Bible that ships with plmkit."""
    import gzip
    from importlib import resources

    with resources.files("plmkit").joinpath("resources/kjv.txt.gz").open("rb") as f:
        lines = gzip.open(f, "rt", encoding="utf-8").read().splitlines()
    sents = [ln.split() for ln in lines if 3 <= len(ln.split()) <= 40]
    if limit is not None and len(sents) > limit:
        rng = random.Random(seed)
        sents = [sents[i] for i in sorted(rng.sample(range(len(sents)), limit))]
    return sents


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
