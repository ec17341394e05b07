"""`plmkit knowledge`: knowledge-fused pre-training (ERNIE-THU) on WordNet, and its comparison with BERT.

`prepare` reads WordNet (Debian's wordnet-base, /usr/share/wordnet), keeps the entities a corpus mentions and
their neighbours (plmkit.data.knowledge), trains TransE on the triples among them with plmkit's Trainer
(plmkit.objectives.transe) and writes a KB directory: entities.tsv, mentions.tsv, triples.tsv,
transe.safetensors, kb.json, transe/ (the TransE run) and facts.jsonl — cloze facts over WordNet relations
for `plmkit analyze cloze`:
    hypernym        "[X] is a kind of [Y]."     Y: the nearest ancestor (≤ 3 hypernym steps) that the corpus names
    part_holonym    "[X] is part of the [Y]."
    member_holonym  "[X] is a member of the [Y]."
    antonym         "the opposite of [X] is [Y]."
Subjects and objects are words of the corpus that the KB links (so the probe asks what the KB knows and the
text may hold), one word each.

`compare` pre-trains `bert` and `ernie-thu` on the same corpus with the same size, steps, batch, sequence
length and tokenizer settings, and scores both with the cloze probe on facts.jsonl.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np

from ..data.knowledge import KnowledgeBase, WordNet
from ..durable import atomic_file, atomic_write
from ..errors import PlmkitError

log = logging.getLogger("plmkit")

WORDNET = "/usr/share/wordnet"
TEMPLATES = {"hypernym": ("[X] is a kind of [Y].", "[X] is not a kind of [Y]."),
             "part_holonym": ("[X] is part of the [Y].", "[X] is not part of the [Y]."),
             "member_holonym": ("[X] is a member of the [Y].", "[X] is not a member of the [Y]."),
             "antonym": ("the opposite of [X] is [Y].", "the opposite of [X] is not [Y].")}
TRANSE = dict(dim=100, steps=3000, batch_size=512, lr=0.01, margin=1.0)
SETTINGS = dict(steps=600, batch_size=32, seq_len=64, vocab_size=8000, lr=2e-3)
MODEL = dict(num_layers=2, hidden_size=128, num_heads=4, intermediate_size=512)  # ernie-thu: 1 + 1 aggregator
MEMBERS = ("bert", "ernie-thu")


def prepare(corpus: list[str], out: str | Path, wordnet: str | Path = WORDNET, max_mentions: int = 20000,
            facts_per_relation: int = 300, transe: dict | None = None, seed: int = 0) -> dict:
    """Build the KB directory `out` for `corpus`; returns kb.json's content."""
    out = Path(out)
    t0 = time.perf_counter()
    wn = WordNet.read(wordnet)
    kb = KnowledgeBase.build(wn, corpus, max_mentions)
    if not kb.triples:
        raise PlmkitError("the corpus links no WordNet entity with a relation: nothing for TransE to learn",
                          path=corpus[0])
    kb.info.update(wordnet=str(Path(wordnet).resolve()), wordnet_version="3.0", build_s=time.perf_counter() - t0)
    kb.save(out)
    s = {**TRANSE, **(transe or {})}
    kb.info["transe"] = {**s, **train_transe(kb, out, s, seed)}
    facts = cloze_facts(kb, wn, facts_per_relation, seed)
    atomic_write(out / "facts.jsonl", "".join(json.dumps(f) + "\n" for f in facts))
    kb.info["facts"] = {r: sum(f["relation"] == r for f in facts) for r in TEMPLATES}
    atomic_write(out / "kb.json", json.dumps(kb.info, indent=2) + "\n")
    return kb.info


def train_transe(kb: KnowledgeBase, out: Path, s: dict, seed: int = 0) -> dict:
    """TransE on the KB's triples with plmkit's Trainer; writes transe.safetensors (entity and relation
    vectors) and returns the training summary with the share of test-style triples ranked right."""
    import torch
    from safetensors.torch import save_file

    from ..data.pretrain import StepSampler
    from ..objectives.transe import TransE, TransEObjective, Triples
    from ..train import TrainConfig, Trainer

    relations = kb.relations
    rel = {r: i for i, r in enumerate(relations)}
    triples = np.array([(h, rel[r], t) for h, r, t in kb.triples], dtype=np.int64)
    torch.manual_seed(seed)
    model = TransE(len(kb.entities), len(relations), s["dim"])
    objective = TransEObjective(len(kb.entities), s["margin"])
    cfg = TrainConfig(steps=s["steps"], batch_size=s["batch_size"], lr=s["lr"], weight_decay=0.0, seed=seed,
                      log_every=s.get("log_every", 100), schedule="constant", device="cpu")
    summary = Trainer(model, Triples(triples), StepSampler(len(triples), cfg.batch_size, seed), objective.collate,
                      objective.step, cfg, out / "transe", save_fn=lambda m, d: None,
                      run_info={"model": "transe", "entities": len(kb.entities), "relations": relations}).train()
    with atomic_file(out / "transe.safetensors") as tmp:
        save_file({"entities": model.vectors(), "relations": model.relations.weight.detach().clone()}, str(tmp),
                  metadata={"relations": json.dumps(relations)})
    return {"final_loss": summary.get("final_loss"), "seconds": summary.get("seconds"),
            "triples": len(triples), "relations": relations}


def cloze_facts(kb: KnowledgeBase, wn: WordNet, per_relation: int, seed: int = 0) -> list[dict]:
    """Facts {"relation", "subject", "object", "template", "negated"} among one-word mentions (see the module
    docstring), at most `per_relation` of each, drawn with `seed`."""
    words = {m: e for m, e in kb.mentions.items() if " " not in m}
    key = {k: i for i, k in enumerate(kb.entities)}
    named = {}  # synset → a one-word mention that links to it
    for m, e in words.items():
        named.setdefault(kb.entities[e], m)

    def up(synset, hops):
        frontier = [synset]
        for _ in range(hops):
            frontier = [t for s in frontier for r, t in wn.pointers.get(s, ()) if r in ("hypernym", "instance_hypernym")]
            for t in frontier:
                if t in named:
                    return named[t]
        return None

    facts = {r: [] for r in TEMPLATES}
    for subject, e in sorted(words.items()):
        synset = kb.entities[e]
        if named.get(synset) != subject:
            continue  # one fact per entity and relation: through the word that names it first
        found = {"hypernym": up(synset, 3)}
        for r in ("part_holonym", "member_holonym", "antonym"):
            found[r] = next((named[t] for rr, t in wn.pointers.get(synset, ()) if rr == r and t in named
                             and t in key), None)
        for r, obj in found.items():
            if obj and obj != subject:
                template, negated = TEMPLATES[r]
                facts[r].append({"relation": r, "subject": subject, "object": obj, "template": template,
                                 "negated": negated})
    rng = random.Random(seed)
    return [f for r in TEMPLATES for f in sorted(rng.sample(facts[r], min(per_relation, len(facts[r]))),
                                                  key=lambda f: f["subject"])]


def compare(corpus: list[str], kb: str | Path, out: str | Path, members: tuple[str, ...] = MEMBERS,
            steps: int | None = None, settings: dict | None = None, model: dict | None = None) -> dict:
    """Pre-train each member on `corpus` with the same settings (ERNIE-THU with the KB), run the cloze probe
    on the KB's facts.jsonl; writes and returns out/report.json. A member already trained in out/NAME is
    probed, not retrained."""
    from ..analysis import cloze, inputs
    from .pretrain import pretrain

    out, kb = Path(out), Path(kb)
    facts_path = kb / "facts.jsonl"
    if not facts_path.is_file():
        raise PlmkitError("no facts.jsonl: not a KB directory of `plmkit knowledge prepare`", path=kb)
    s = {**SETTINGS, **(settings or {}), **({"steps": steps} if steps else {})}
    arch = {**MODEL, **(model or {})}
    rows = []
    for name in members:
        if name not in MEMBERS:
            raise PlmkitError(f"knowledge compare knows {', '.join(MEMBERS)}; got {name!r}")
        run = out / name
        if not (run / "model.safetensors").exists():
            log.info("pre-training %s (%d steps)", name, s["steps"])
            pretrain(name, list(corpus), run, size="tiny", model_overrides=arch,
                     train_overrides={"steps": s["steps"], "batch_size": s["batch_size"], "lr": s["lr"],
                                      "log_every": 50},
                     data_overrides={"seq_len": s["seq_len"], "vocab_size": s["vocab_size"],
                                     **({"kb": str(kb)} if name == "ernie-thu" else {})})
        loaded = inputs.load(run)
        probe = cloze.run(loaded, run, cloze.read_facts(facts_path))
        summary = json.loads((run / "train_summary.json").read_text())
        rows.append({"member": name, "parameters": loaded.model.num_parameters(),
                     "trainable": sum(p.numel() for p in loaded.model.parameters() if p.requires_grad),
                     "train_s": summary.get("seconds"), "final_loss": summary.get("final_loss"),
                     "scored": probe["scored"], "mean": probe["mean"],
                     "relations": {r: {k: v[k] for k in ("n", "p@1", "p@10", "mrr")} for r, v in probe["relations"].items()}})
    report = {"corpus": [str(Path(c).resolve()) for c in corpus], "kb": str(kb.resolve()), "settings": s,
              "model": arch, "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
