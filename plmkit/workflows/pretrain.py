"""`plmkit pretrain`: raw corpus → tokenizer → token shards → a pre-trained family member.

Settings come, lowest precedence first, from the size preset, a TOML file (`[model]`, `[train]`,
`[data]` tables) and command-line flags. Everything a resumed run needs is in the run directory.

With `init` the run continues pre-training a saved model (continued, domain- or task-adaptive pre-training,
Gururangan et al. 2020): the member, config, weights and tokenizer come from that directory, and only the
corpus and the training settings are new. `objective` trains with another objective than the member's own,
e.g. SimCSE on a saved encoder (`plmkit pretrain --init DIR --objective simcse`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any

from .. import family
from ..config import read_toml_file
from ..durable import atomic_write, building_dir, check_out_dir, fault, remove_stale
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
    stages: list[list[str]] | None = None  # ERNIE 2.0: the tasks of each pre-training stage, in order

    @classmethod
    def from_dict(cls, d: dict, source=None) -> "DataOptions":
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise PlmkitError(f"unknown [data] key(s) {', '.join(unknown)}", path=source)
        return cls(**d)


def read_toml(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    p = Path(path)
    d = read_toml_file(p)
    unknown = sorted(set(d) - {"model", "train", "data"})
    if unknown:
        raise PlmkitError(f"unknown table(s) {', '.join(unknown)}; use [model], [train], [data]", path=p)
    return d


def pretrain(model: str, corpus: list[str], out: str | os.PathLike, size: str = "tiny",
             model_overrides: dict | None = None, train_overrides: dict | None = None,
             data_overrides: dict | None = None, config_file: str | None = None, resume: bool = False,
             init: str | os.PathLike | None = None, objective: str | None = None) -> dict:
    """Pre-train family member `model` on `corpus` files into run directory `out`; returns the summary.
    `init`: a saved model directory to continue from (`model` may then be None: the directory names it).
    `objective`: a registered objective to train with instead of the member's own."""
    from ..data import TokenCorpus, build_shards
    from ..tokenizers import load_tokenizer, train_tokenizer

    toml = read_toml(config_file) if config_file else {}
    model_over = {**toml.get("model", {}), **(model_overrides or {})}
    data = DataOptions.from_dict({**toml.get("data", {}), **(data_overrides or {})}, source=config_file)
    train_cfg = TrainConfig.from_dict({**toml.get("train", {}), **(train_overrides or {})}, source=config_file)
    start = _Init.read(init, model, model_over, data) if init else None
    member = start.member if start else family.get(model)
    if objective and hasattr(member.model_cls, "fit"):
        raise PlmkitError(f"{member.name} is estimated in one pass by its own method; it takes no --objective")
    objective_name = objective or member.objective
    if start:
        size = start.size
    else:
        member.config_cls.preset(size, source=config_file, **model_over)  # bad keys fail now, not after tokenizing
    out = Path(out)
    check_out_dir(out)
    if not resume and (out / "train_log.jsonl").exists():
        raise PlmkitError("a run already exists here; pass --resume to continue it or choose another --out", path=out)
    rank, world, _, _ = init_distributed(train_cfg.device)
    for f in corpus:
        if not Path(f).is_file():
            raise PlmkitError("corpus file not found", path=f)
    if rank == 0:
        remove_stale(out)  # what killed runs left half-written under temporary names

    # Tokenizer: reused from the run directory on resume, else the given one, else trained on the corpus. The
    # directory is built aside and renamed into place, so one that exists is complete.
    tok_dir = out / "tokenizer"
    if resume and (tok_dir / "tokenizer.json").exists():
        tokenizer = load_tokenizer(tok_dir)
    else:
        if start:
            tokenizer = load_tokenizer(start.directory)
        elif data.tokenizer:
            tokenizer = load_tokenizer(data.tokenizer)
        elif rank == 0:
            log.info("training a %s tokenizer (vocab %d) on %s", member.tokenizer, data.vocab_size, ", ".join(corpus))
            tokenizer = train_tokenizer(member.tokenizer, corpus, data.vocab_size,
                                        lowercase=getattr(_objective_class(objective_name), "lowercase", None))
        if rank == 0:
            if not start:  # T5's sentinels, Grover's fields: after the trained vocabulary
                _add_objective_tokens(objective_name, tokenizer)
            with building_dir(tok_dir) as tmp:
                tokenizer.save(tmp)
            fault("tokenizer")
        _barrier()
        tokenizer = load_tokenizer(tok_dir)

    objective = None if hasattr(member.model_cls, "fit") else _objective(objective_name, member, tokenizer, data,
                                                                         train_cfg, config_file, corpus)
    fit_to = {"vocab_size": tokenizer.vocab_size}
    if hasattr(objective, "model_fields"):  # an objective whose data sizes part of the model (ERNIE-THU's KB)
        fit_to.update(objective.model_fields())
    if "max_positions" in member.config_cls.field_names():  # members without positions read any length
        fit_to["max_positions"] = max(data.seq_len, 512)
    if getattr(member.config_cls, "pad_token_id", None) is not None and tokenizer.pad_id is not None:
        fit_to["pad_token_id"] = tokenizer.pad_id  # a member with a pad id takes the tokenizer's (0 or 1)
    if "mask_token_id" in member.config_cls.field_names() and tokenizer.mask_id is not None:
        fit_to["mask_token_id"] = tokenizer.mask_id  # a member that generates at a [MASK] (UniLM)
    if hasattr(member.config_cls, "token_ids"):  # an encoder–decoder's start and end tokens
        fit_to.update(member.config_cls.token_ids(tokenizer))
    config = start.config if start else member.config_cls.preset(size, source=config_file, **{**fit_to, **model_over})
    if config.vocab_size < tokenizer.vocab_size:
        raise PlmkitError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding has only "
                          f"{config.vocab_size} rows (vocab_size)", path=data.tokenizer or config_file)
    if data.seq_len > config.max_positions:
        raise PlmkitError(f"seq_len {data.seq_len} exceeds the model's max_positions {config.max_positions}",
                          path=start.directory if start else config_file)

    if objective is not None and hasattr(objective, "configure"):
        objective.configure(config)  # what the model's config sets of its data (the multi-task encoders' tasks)

    shard_dir = out / "data"  # built aside and swapped in: meta.json exists only in a complete one
    if rank == 0 and not (resume and (shard_dir / "meta.json").exists()):
        build_shards(corpus, tokenizer, shard_dir, num_workers=data.workers)
        fault("shards")
    _barrier()
    tokens = TokenCorpus(shard_dir)
    if hasattr(member.model_cls, "fit"):  # a member estimated in one pass (counts), not trained by steps
        return _fit(member, config, corpus, tokens, tokenizer, out, size, data, rank)

    dataset = objective.dataset(tokens)
    if len(dataset) == 0:
        raise PlmkitError(f"the corpus gives no training sequence of {data.seq_len} tokens", path=corpus[0])
    sampler = objective.sampler(len(dataset), train_cfg.batch_size, train_cfg.seed, rank=rank, world_size=world)

    import torch

    torch.manual_seed(train_cfg.seed)  # same initial weights on every rank and every run
    net = start.model() if start else member.model_cls(config)
    if not start and hasattr(objective, "attach"):
        objective.attach(net)  # what the objective's data gives the model (ERNIE-THU: entity vectors, linker)
    info = {"pretraining": {"corpus": [str(Path(c).resolve()) for c in corpus], "size": size,
                            "objective": objective_name, "seq_len": data.seq_len, "train": train_cfg.to_dict()}}
    if start:  # the stages so far, oldest first: what this model has been pre-trained on
        info["pretraining"]["init"] = str(start.directory.resolve())
        info["pretraining"]["earlier_stages"] = start.history
    run = {"model": member.name, "objective": objective_name, "size": size, "config": config.to_dict(),
           "data": dataclasses.asdict(data),
           "train": train_cfg.to_dict(), "corpus": info["pretraining"]["corpus"],
           "init": info["pretraining"].get("init"), "parameters": net.num_parameters(),
           "examples_per_epoch": len(dataset)}
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _check_same_run(out / "run.json", run, resume)
        atomic_write(out / "run.json", json.dumps(run, indent=2) + "\n")
        fault("run")
        log.info("%s-%s: %.2fM parameters, %d sequences of %d tokens per epoch", member.name, size,
                 run["parameters"] / 1e6, len(dataset), data.seq_len)

    trainer = Trainer(net, dataset, sampler, objective.collate, objective.step, train_cfg, out,
                      save_fn=lambda m, d: save_model(m, d, tokenizer, info), run_info=run,
                      carry=objective)
    return trainer.train(resume=resume)


def _objective(name: str, member, tokenizer, data: DataOptions, train_cfg, config_file, corpus: list[str]):
    """The objective `name`, given the [data] options it takes (a lexicon, a knowledge base), and the corpus
    files if it reads them itself (ZEN's lexicon is extracted from the text)."""
    objective_cls = get_objective(name)
    options = {k: v for k, v in (("lexicon", data.lexicon), ("kb", data.kb), ("stages", data.stages)) if v}
    takes = inspect.signature(objective_cls).parameters
    for option in options:
        if option not in takes:
            raise PlmkitError(f"the {name} objective of {member.name} takes no {option}", path=config_file)
    if "corpus" in takes:  # an objective that reads the text itself (ZEN's lexicon)
        options["corpus"] = corpus
    if "train" in takes:  # an objective whose data follow the run's steps (ERNIE 2.0's stages)
        options["train"] = train_cfg
    if "stages" in options:
        options["source"] = config_file  # stages are set in [data] only: errors name the file
    return objective_cls(tokenizer, data.seq_len, seed=train_cfg.seed, **options)


def _objective_class(name: str):
    """The registered objective `name`, or None (a member estimated by counts names no objective class)."""
    from ..objectives import OBJECTIVES

    return OBJECTIVES.get(name)


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
        atomic_write(out / "run.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _add_objective_tokens(name: str, tokenizer) -> list[str]:
    """Add the special tokens objective `name` needs (T5's sentinels, Grover's fields) where the tokenizer
    lacks them; returns those added. They go after the trained vocabulary, in a fixed order, so every run of
    the same settings gets the same ids."""
    missing = [t for t in getattr(_objective_class(name), "special_tokens", ()) if tokenizer.token_to_id(t) is None]
    if missing:
        tokenizer.backend.add_special_tokens(missing)
    return missing


def _check_same_run(path: Path, run: dict, resume: bool) -> None:
    """A resumed run must be the run it resumes: same member, config and data."""
    if not (resume and path.exists()):
        return
    old = json.loads(path.read_text())
    for key in ("model", "objective", "config", "data", "corpus"):
        if key in old and old[key] != run[key]:  # runs written before a key existed lack it
            raise PlmkitError(f"--resume with a different {key} than the run being resumed", path=path)


def _barrier() -> None:
    from ..train.distributed import barrier

    barrier()
