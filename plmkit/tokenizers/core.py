"""The `Tokenizer` wrapper and `load_tokenizer`, reading every on-disk format users bring."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import tokenizers
from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer

from ..errors import PlmkitError

ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")

# When tokenizer_config.json is absent, a role goes to the first of these tokens present in the vocab.
_ROLE_CANDIDATES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "mask": ("[MASK]", "<mask>"),
    "bos": ("<s>", "<|endoftext|>"),
    "eos": ("</s>", "<|endoftext|>"),
}
_MODEL_KINDS = {"WordPiece": "wordpiece", "Unigram": "unigram"}


class Tokenizer:
    """A `tokenizers.Tokenizer` (`.backend`) plus the roles of its special tokens and its kind.

    Args:
        backend: the fast tokenizer doing the work.
        roles: role ("pad", "cls", …) -> special token string; roles absent here have no token.
        kind: "wordpiece" | "bpe" | "bytebpe" | "unigram" | "char" | "rawchar" | "word", or None when unknown.
        model_max_length: the longest input a model using this tokenizer accepts, for Hugging Face.
    """

    def __init__(self, backend: tokenizers.Tokenizer, roles: dict[str, str], kind: str | None = None,
                 model_max_length: int = 512):
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown special-token roles {sorted(unknown)}; known: {ROLES}")
        self.backend, self.roles, self.kind, self.model_max_length = backend, dict(roles), kind, model_max_length

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, roles={self.roles})"

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def _role_id(self, role: str) -> int | None:
        token = self.roles.get(role)
        return None if token is None else self.backend.token_to_id(token)

    pad_id = property(lambda self: self._role_id("pad"))
    unk_id = property(lambda self: self._role_id("unk"))
    cls_id = property(lambda self: self._role_id("cls"))
    sep_id = property(lambda self: self._role_id("sep"))
    mask_id = property(lambda self: self._role_id("mask"))
    bos_id = property(lambda self: self._role_id("bos"))
    eos_id = property(lambda self: self._role_id("eos"))

    @property
    def doc_sep_id(self) -> int:
        """The token between documents in a packed stream: eos (GPT style) if present, else sep (BERT)."""
        doc_sep = self.eos_id if self.eos_id is not None else self.sep_id
        if doc_sep is None:
            raise PlmkitError("the tokenizer has neither an eos nor a sep token to separate documents")
        return doc_sep

    @property
    def special_ids(self) -> set[int]:
        """Ids of all role-holding special tokens, e.g. to keep them out of masking."""
        return {i for i in (self._role_id(r) for r in self.roles) if i is not None}

    @property
    def sha256(self) -> str:
        """Hash of the tokenizer.json text; shards record it to catch a mismatched tokenizer."""
        return hashlib.sha256(self.backend.to_str().encode("utf-8")).hexdigest()

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens; parallel in Rust."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and each token's (start, end) character offsets in `text`."""
        enc = self.backend.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(int(i))

    def save(self, directory: str | os.PathLike) -> None:
        """Write `tokenizer_config.json` and `tokenizer.json` as Hugging Face `AutoTokenizer` reads them, each
        through a temporary file and a rename; tokenizer.json, which the loader looks for, comes last."""
        from ..durable import atomic_write

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            # BertTokenizerFast for WordPiece so HF tools treat it as BERT's; the generic class otherwise.
            "tokenizer_class": "BertTokenizerFast" if self.kind == "wordpiece" else "PreTrainedTokenizerFast",
            **{f"{role}_token": self.roles.get(role) for role in ROLES},
            "model_max_length": self.model_max_length,
            "plmkit_kind": self.kind,
        }
        lowercase = _lowercases(self.backend)
        if lowercase is not None:
            config["do_lower_case"] = lowercase
        atomic_write(directory / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        atomic_write(directory / "tokenizer.json", self.backend.to_str(pretty=True))


def _lowercases(backend: tokenizers.Tokenizer) -> bool | None:
    """Whether the normalizer lowercases; None when there is no normalizer to ask."""
    normalizer = json.loads(backend.to_str()).get("normalizer")
    if normalizer is None:
        return None
    steps = normalizer.get("normalizers", [normalizer])
    return any(s.get("type") == "Lowercase" or (s.get("type") == "BertNormalizer" and s.get("lowercase"))
               for s in steps)


def _infer_kind(backend: tokenizers.Tokenizer) -> str | None:
    spec = json.loads(backend.to_str())
    model = spec["model"]["type"]
    if model == "BPE":
        pre = json.dumps(spec.get("pre_tokenizer"))
        return "bytebpe" if "ByteLevel" in pre else "bpe"
    return _MODEL_KINDS.get(model)


def _infer_roles(backend: tokenizers.Tokenizer) -> dict[str, str]:
    vocab = backend.get_vocab(with_added_tokens=True)
    roles = {}
    for role, candidates in _ROLE_CANDIDATES.items():
        found = next((t for t in candidates if t in vocab), None)
        if found is not None:
            roles[role] = found
    return roles


def _roles_from_config(config: dict) -> dict[str, str]:
    roles = {}
    for role in ROLES:
        token = config.get(f"{role}_token")
        if isinstance(token, dict):  # older HF configs store AddedToken dicts
            token = token.get("content")
        if token:
            roles[role] = token
    return roles


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PlmkitError(f"not a valid JSON file: {e}", path=path) from None


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from any of the formats users bring.

    Args:
        path: a directory with `tokenizer.json` (+ optional `tokenizer_config.json`), a directory with
            only a BERT `vocab.txt`, a directory with GPT-2 `vocab.json` + `merges.txt`, or a
            `tokenizer.json` file (its sibling `tokenizer_config.json` is read when present).

    Returns:
        The Tokenizer; special-token roles come from `tokenizer_config.json` when present, else from
        which of the usual special tokens the vocabulary holds.
    """
    path = Path(path)
    if not path.exists():
        raise PlmkitError("no such tokenizer file or directory", path=path)
    directory = path if path.is_dir() else path.parent
    config_path = directory / "tokenizer_config.json"
    config = _read_json(config_path) if config_path.is_file() else {}
    tokenizer_json = path if path.is_file() else directory / "tokenizer.json"
    kind = config.get("plmkit_kind")
    max_len = config.get("model_max_length")
    if tokenizer_json.is_file():
        try:
            backend = tokenizers.Tokenizer.from_file(str(tokenizer_json))
        except Exception as e:  # the Rust parser raises a bare Exception on a malformed file
            raise PlmkitError(f"cannot read tokenizer: {e}", path=tokenizer_json) from None
        # Some checkpoints save padding/truncation to a fixed length; plmkit pads and truncates itself.
        backend.no_padding()
        backend.no_truncation()
        kind = kind or _infer_kind(backend)
    elif (directory / "vocab.txt").is_file():
        lowercase = config.get("do_lower_case", True)
        backend = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=lowercase)._tokenizer
        kind = "wordpiece"
    elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        backend = ByteLevelBPETokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))._tokenizer
        backend.add_special_tokens(["<|endoftext|>"])
        kind, max_len = "bytebpe", max_len or 1024  # GPT-2's context length
        config = config or {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    else:
        raise PlmkitError("found no tokenizer.json, vocab.txt, or vocab.json + merges.txt", path=directory)
    roles = _roles_from_config(config) if config else _infer_roles(backend)
    # HF writes a huge sentinel (int(1e30)) when there is no limit; keep plmkit's default instead.
    max_len = max_len if isinstance(max_len, int) and max_len < 1 << 31 else 512
    return Tokenizer(backend, roles, kind=kind, model_max_length=max_len)
