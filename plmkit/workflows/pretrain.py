"""`plmkit pretrain`: raw corpus → tokenizer → token shards → a pre-trained family member.

Settings come, lowest precedence first, from the size preset, a TOML file (`[model]`, `[train]`,
`[data]` tables) and command-line flags. Everything a resumed run needs is in the run directory.

With `init` the run continues pre-training a saved model (continued, domain- or task-adaptive pre-training,
Gururangan et al. 2020): the member, config, weights and tokenizer come from that directory, and only the
corpus and the training settings are new.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from .. import family
from ..errors import PlmkitError
from ..interop.hf import save_model
from ..objectives import get_objective
from ..train import TrainConfig, Trainer, init_distributed

log = logging.getLogger("plmkit")


@dataclasses.dataclass(frozen=True)
class DataOptions:
    seq_len: int = 128  # tokens per training sequence, specials included
    vocab_size: int = 8000  # for a tokenizer trained on the corpus
    tokenizer: str | None = None  # an existing tokenizer (directory or tokenizer.json) instead of training one
    workers: int | None = None  # processes for corpus → shards
    lexicon: str | None = None  # phrases / entities, one per line, for objectives that mask them (ERNIE)
    kb: str | None = None  # a knowledge-base directory (`plmkit knowledge prepare`) for ERNIE-THU's entities

    @classmethod
    def from_dict(cls, d: dict, source=None) -> "DataOptions":
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise PlmkitError(f"unknown [data] key(s) {', '.join(unknown)}", path=source)
        return cls(**d)


def read_toml(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise PlmkitError("config file not found", path=p)
    try:
        d = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise PlmkitError(f"not valid TOML: {e}", path=p) from None
    except UnicodeDecodeError:
        raise PlmkitError("not UTF-8 text", path=p) from None
    unknown = sorted(set(d) - {"model", "train", "data"})
    if unknown:
        raise PlmkitError(f"unknown table(s) {', '.join(unknown)}; use [model], [train], [data]", path=p)
    return d


def pretrain(model: str, corpus: list[str], out: str | os.PathLike, size: str = "tiny",
             model_overrides: dict | None = None, train_overrides: dict | None = None,
             data_overrides: dict | None = None, config_file: str | None = None, resume: bool = False,
             init: str | os.PathLike | None = None) -> dict:
    """Pre-train family member `model` on `corpus` files into run directory `out`; returns the summary.
    `init`: a saved model directory to continue from (`model` may then be None: the directory names it)."""
    from ..data import TokenCorpus, build_shards
    from ..data.pretrain import StepSampler
    from ..tokenizers import load_tokenizer, train_tokenizer

    toml = read_toml(config_file) if config_file else {}
    model_over = {**toml.get("model", {}), **(model_overrides or {})}
    data = DataOptions.from_dict({**toml.get("data", {}), **(data_overrides or {})}, source=config_file)
    train_cfg = TrainConfig.from_dict({**toml.get("train", {}), **(train_overrides or {})}, source=config_file)
    start = _Init.read(init, model, model_over, data) if init else None
    member = start.member if start else family.get(model)
    if start:
        size = start.size
    else:
        member.config_cls.preset(size, source=config_file, **model_over)  # bad keys fail now, not after tokenizing
    out = Path(out)
    if not resume and (out / "train_log.jsonl").exists():
        raise PlmkitError("a run already exists here; pass --resume to continue it or choose another --out", path=out)
    rank, world, _, _ = init_distributed(train_cfg.device)
    for f in corpus:
        if not Path(f).is_file():
            raise PlmkitError("corpus file not found", path=f)

    # Tokenizer: reused from the run directory on resume, else the given one, else trained on the corpus.
    tok_dir = out / "tokenizer"
    if resume and (tok_dir / "tokenizer.json").exists():
        tokenizer = load_tokenizer(tok_dir)
    elif start:
        tokenizer = load_tokenizer(start.directory)
    elif data.tokenizer:
        tokenizer = load_tokenizer(data.tokenizer)
    else:
        if rank == 0:
            log.info("training a %s tokenizer (vocab %d) on %s", member.tokenizer, data.vocab_size, ", ".join(corpus))
            train_tokenizer(member.tokenizer, corpus, data.vocab_size, out_dir=tok_dir)
        _barrier()
        tokenizer = load_tokenizer(tok_dir)
    added = () if start or hasattr(member.model_cls, "fit") else getattr(get_objective(member.objective),
                                                                         "added_tokens", ())
    if any(tokenizer.token_to_id(t) is None for t in added):  # the objective's own tokens (Grover's fields)
        tokenizer.backend.add_special_tokens(list(added))
        if rank == 0:
            tokenizer.save(tok_dir)
    if rank == 0 and not (tok_dir / "tokenizer.json").exists():
        tokenizer.save(tok_dir)

    objective = None if hasattr(member.model_cls, "fit") else _objective(member, tokenizer, data, train_cfg, config_file)
    fit_to = {"vocab_size": tokenizer.vocab_size}
    if hasattr(objective, "model_fields"):  # an objective whose data sizes part of the model (ERNIE-THU's KB)
        fit_to.update(objective.model_fields())
    if "max_positions" in member.config_cls.field_names():  # members without positions read any length
        fit_to["max_positions"] = max(data.seq_len, 512)
    if getattr(member.config_cls, "pad_token_id", None) is not None and tokenizer.pad_id is not None:
        fit_to["pad_token_id"] = tokenizer.pad_id  # a member with a pad id takes the tokenizer's (0 or 1)
    config = start.config if start else member.config_cls.preset(size, source=config_file, **{**fit_to, **model_over})
    if config.vocab_size < tokenizer.vocab_size:
        raise PlmkitError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding has only "
                          f"{config.vocab_size} rows (vocab_size)", path=data.tokenizer or config_file)
    if data.seq_len > config.max_positions:
        raise PlmkitError(f"seq_len {data.seq_len} exceeds max_positions {config.max_positions}", path=config_file)

    shard_dir = out / "data"
    if rank == 0 and not (resume and (shard_dir / "meta.json").exists()):
        build_shards(corpus, tokenizer, shard_dir, num_workers=data.workers)
    _barrier()
    tokens = TokenCorpus(shard_dir)
    if hasattr(member.model_cls, "fit"):  # a member estimated in one pass (counts), not trained by steps
        return _fit(member, config, corpus, tokens, tokenizer, out, size, data, rank)

    dataset = objective.dataset(tokens)
    if len(dataset) == 0:
        raise PlmkitError(f"the corpus gives no training sequence of {data.seq_len} tokens", path=corpus[0])
    sampler = StepSampler(len(dataset), train_cfg.batch_size, train_cfg.seed, rank=rank, world_size=world)

    import torch

    torch.manual_seed(train_cfg.seed)  # same initial weights on every rank and every run
    net = start.model() if start else member.model_cls(config)
    if not start and hasattr(objective, "attach"):
        objective.attach(net)  # what the objective's data gives the model (ERNIE-THU: entity vectors, linker)
    info = {"pretraining": {"corpus": [str(Path(c).resolve()) for c in corpus], "size": size,
                            "objective": member.objective, "seq_len": data.seq_len, "train": train_cfg.to_dict()}}
    if start:  # the stages so far, oldest first: what this model has been pre-trained on
        info["pretraining"]["init"] = str(start.directory.resolve())
        info["pretraining"]["earlier_stages"] = start.history
    run = {"model": member.name, "size": size, "config": config.to_dict(), "data": dataclasses.asdict(data),
           "train": train_cfg.to_dict(), "corpus": info["pretraining"]["corpus"],
           "init": info["pretraining"].get("init"), "parameters": net.num_parameters(),
           "examples_per_epoch": len(dataset)}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _check_same_run(out / "run.json", run, resume)
        (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        log.info("%s-%s: %.2fM parameters, %d sequences of %d tokens per epoch", member.name, size,
                 run["parameters"] / 1e6, len(dataset), data.seq_len)

    trainer = Trainer(net, dataset, sampler, objective.collate, objective.step, train_cfg, out,
                      save_fn=lambda m, d: save_model(m, d, tokenizer, info), run_info=run)
    return trainer.train(resume=resume)


def _objective(member, tokenizer, data: DataOptions, train_cfg, config_file):
    """The member's objective, given the [data] options it takes (a lexicon, a knowledge base)."""
    objective_cls = get_objective(member.objective)
    options = {k: v for k, v in (("lexicon", data.lexicon), ("kb", data.kb)) if v}
    for option in options:
        if option not in inspect.signature(objective_cls).parameters:
            raise PlmkitError(f"the {member.objective} objective of {member.name} takes no {option}", path=config_file)
    return objective_cls(tokenizer, data.seq_len, seed=train_cfg.seed, **options)


@dataclasses.dataclass
class _Init:
    """A saved model that a run continues pre-training."""

    directory: Path
    member: family.Member
    config: Any
    size: str
    history: list[dict]  # the pre-training stages recorded in its plmkit.json, oldest first

    @classmethod
    def read(cls, directory, model: str | None, model_over: dict, data: DataOptions) -> "_Init":
        from ..interop.hf import read_model_config

        d = Path(directory)
        member, config, meta = read_model_config(d)
        if model and family.get(model).name != member.name:
            raise PlmkitError(f"--init holds a {member.name} model, not {model}", path=d)
        if model_over:
            raise PlmkitError("the config of a continued model comes from --init; drop "
                              f"{', '.join(sorted(model_over))} from --set / [model]", path=d)
        if data.tokenizer:
            raise PlmkitError("a continued model keeps the tokenizer of --init; drop --tokenizer", path=d)
        if hasattr(member.model_cls, "fit"):
            raise PlmkitError(f"{member.name} is estimated in one pass; it cannot continue from --init", path=d)
        previous = meta.get("pretraining") or {}
        history = [*previous.get("earlier_stages", []), {k: previous[k] for k in ("corpus", "objective", "seq_len")
                                                     if k in previous} or {"source": str(d.resolve())}]
        return cls(d, member, config, previous.get("size", "custom"), history)

    def model(self):
        from ..interop.hf import load_model

        return load_model(self.directory).train()


def _fit(member, config, corpus, tokens, tokenizer, out: Path, size: str, data: DataOptions, rank: int) -> dict:
    """Run `member.model_cls.fit(config, corpus, tokens, tokenizer) -> (model, tokenizer)` and save the model."""
    import time

    start = time.perf_counter()
    net, tokenizer = member.model_cls.fit(config, corpus, tokens, tokenizer)
    summary = {"model": member.name, "size": size, "config": net.config.to_dict(), "data": dataclasses.asdict(data),
               "corpus": [str(Path(c).resolve()) for c in corpus], "parameters": net.num_parameters(),
               "tokens": tokens.n_tokens, "seconds": time.perf_counter() - start}
    if rank == 0:
        save_model(net, out, tokenizer, {"pretraining": {"corpus": summary["corpus"], "objective": member.objective}})
        (out / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _check_same_run(path: Path, run: dict, resume: bool) -> None:
    """A resumed run must be the run it resumes: same member, config and data."""
    if not (resume and path.exists()):
        return
    old = json.loads(path.read_text())
    for key in ("model", "config", "data", "corpus"):
        if old.get(key) != run[key]:
            raise PlmkitError(f"--resume with a different {key} than the run being resumed", path=path)


def _barrier() -> None:
    from ..train.distributed import barrier

    barrier()
