"""ERNIE-THU: WordNet read from its database format, the KB and string-match linking, TransE, the aggregator
(Eq. 4 of the paper), dEA's corruption and loss, pre-training through `plmkit pretrain --kb`, and a saved
model linking its own input."""

import json
import math
from pathlib import Path

import pytest
import torch

import plmkit
from plmkit.data.knowledge import EntityLinker, KnowledgeBase, WordNet
from plmkit.errors import PlmkitError
from plmkit.layers import Block
from plmkit.layers.aggregator import Aggregator
from plmkit.models.ernie_thu import ErnieThu, ErnieThuConfig
from plmkit.objectives.dea import DenoisingEntityAutoencoder
from plmkit.objectives.transe import TransE, TransEObjective
from plmkit.tokenizers import load_tokenizer, train_tokenizer
from plmkit.workflows.knowledge import cloze_facts, train_transe

LICENCE = "  1 This software and database is being provided to you, the LICENSEE, by\n"
# Five noun synsets and one adjective pair in WNDB layout: offset lex_filenum ss_type w_cnt (word lex_id)…
# p_cnt (symbol offset pos source/target)… | gloss
DATA_NOUN = LICENCE + """\
00000001 03 n 01 entity 0 001 ~ 00000002 n 0000 | that which exists
00000002 05 n 02 animal 0 beast 0 003 @ 00000001 n 0000 ~ 00000003 n 0000 ~ 00000005 n 0000 | a living organism
00000003 05 n 01 canine 0 002 @ 00000002 n 0000 ~ 00000004 n 0000 | a carnivore
00000004 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 002 @ 00000003 n 0000 %p 00000006 n 0000 | a member of the genus Canis
00000005 05 n 01 cat 0 001 @ 00000002 n 0000 | a feline
00000006 05 n 01 tail 0 001 #p 00000004 n 0000 | the hindmost part
00000007 05 n 01 dog 0 000 | a dull unattractive unpleasant girl or woman
"""
INDEX_NOUN = LICENCE + """\
animal n 1 2 @ ~ 1 1 00000002
beast n 1 1 @ 1 0 00000002
canine n 1 2 @ ~ 1 0 00000003
cat n 1 1 @ 1 1 00000005
dog n 2 2 @ %p 2 1 00000004 00000007
domestic_dog n 1 2 @ %p 1 0 00000004
entity n 1 1 ~ 1 0 00000001
tail n 1 1 #p 1 0 00000006
"""
DATA_ADJ = LICENCE + """\
00000010 00 a 01 hot 0 001 ! 00000011 a 0101 | used of physical heat
00000011 00 a 01 cold 0 001 ! 00000010 a 0101 | having a low temperature
"""
INDEX_ADJ = LICENCE + "cold a 1 1 ! 1 0 00000011\nhot a 1 1 ! 1 0 00000010\n"
TEXT = ("the dog wagged its tail at the cat . a domestic dog is an animal and a cat is an animal too .\n"
        "in the hot sun the dog and the cat lay down , then the night was cold .\n") * 30


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("wordnet")
    for pos, data, index in (("noun", DATA_NOUN, INDEX_NOUN), ("adj", DATA_ADJ, INDEX_ADJ)):
        (d / f"data.{pos}").write_text(data)
        (d / f"index.{pos}").write_text(index)
    for pos in ("verb", "adv"):
        (d / f"data.{pos}").write_text(LICENCE)
        (d / f"index.{pos}").write_text(LICENCE)
    return d


@pytest.fixture(scope="module")
def kb_dir(wordnet, tmp_path_factory) -> Path:
    """A KB for TEXT with TransE vectors, and a WordPiece tokenizer of the text, in one directory."""
    d = tmp_path_factory.mktemp("kb")
    (d / "text.txt").write_text(TEXT)
    kb = KnowledgeBase.build(WordNet.read(wordnet), [str(d / "text.txt")])
    kb.save(d / "kb")
    train_transe(kb, d / "kb", dict(dim=8, steps=30, batch_size=8, lr=0.05, margin=1.0, log_every=5))
    train_tokenizer("wordpiece", [d / "text.txt"], 120, out_dir=d / "tok", show_progress=False)
    return d


def test_wordnet_reads_senses_lemmas_and_semantic_pointers(wordnet):
    wn = WordNet.read(wordnet)
    assert wn.senses["dog"] == ["00000004-n", "00000007-n"]  # most frequent sense first
    assert wn.lemmas["00000004-n"] == ["dog", "domestic dog", "canis familiaris"]
    assert ("hypernym", "00000003-n") in wn.pointers["00000004-n"]
    assert ("part_meronym", "00000006-n") in wn.pointers["00000004-n"]
    assert wn.pointers["00000010-a"] == [("antonym", "00000011-a")]
    with pytest.raises(PlmkitError, match="not a WordNet database"):
        WordNet.read(wordnet / "data.noun")


def test_kb_links_corpus_words_to_first_senses_and_keeps_their_neighbours(kb_dir):
    kb = KnowledgeBase.load(kb_dir / "kb")
    name = {m: kb.entities[e] for m, e in kb.mentions.items()}
    assert name["dog"] == name["domestic dog"] == "00000004-n"  # not the second sense 00000007
    assert "the" not in kb.mentions and "a" not in kb.mentions  # function words are never linked
    assert "00000003-n" in kb.entities  # canine: never in the text, one hypernym step above dog
    triples = {(kb.entities[h], r, kb.entities[t]) for h, r, t in kb.triples}
    assert ("00000004-n", "hypernym", "00000003-n") in triples
    assert ("00000010-a", "antonym", "00000011-a") in triples


def test_linker_matches_whole_words_longest_first(kb_dir):
    tok = load_tokenizer(kb_dir / "tok")
    kb = KnowledgeBase.load(kb_dir / "kb")
    linker = EntityLinker.from_kb(kb, tok)
    words = "a domestic dog and the dogs".split()
    ids = tok.encode(" ".join(words))
    ents = linker.link(torch.tensor([ids]))[0].tolist()
    dog = kb.mentions["dog"]
    assert ents[ids.index(tok.token_to_id("domestic"))] == dog  # the two-word lemma, at its first token
    assert ents.count(dog) == 1  # "dog" inside "domestic dog" is not linked again, "dogs" (dog ##s) not at all
    assert EntityLinker.from_tensors(*linker.to_tensors()).table == linker.table


def test_transe_distance_by_hand_and_training_ranks_true_triples_first():
    torch.manual_seed(0)
    m = TransE(5, 2, dim=4)
    h, r, t = torch.tensor([1]), torch.tensor([0]), torch.tensor([2])
    e = torch.nn.functional.normalize(m.entities.weight, dim=-1)
    expected = (e[1] + m.relations.weight[0] - e[2]).abs().sum()
    assert torch.allclose(m.distance(h, r, t)[0], expected)
    assert torch.allclose(m.relations.weight.norm(dim=-1), torch.ones(2))
    obj = TransEObjective(5, margin=1.0)
    batch = obj.collate([torch.tensor([1, 0, 2]).numpy()] * 64, torch.Generator().manual_seed(0))
    corrupted = batch["negative"] != batch["positive"]
    assert not corrupted[:, 1].any() and not (corrupted[:, 0] & corrupted[:, 2]).any()  # head or tail, never both


def test_transe_of_the_kb_learned_its_triples(kb_dir):
    log = [json.loads(line) for line in (kb_dir / "kb" / "transe" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]
    assert (kb_dir / "kb" / "transe.safetensors").is_file()


def _tiny_block_weights(agg: Aggregator) -> Block:
    block = Block(32, 4, 64, "gelu", 0.0, 0.0, False, False, 1e-12)
    block.load_state_dict({k: v for k, v in agg.state_dict().items() if not k.startswith("entity_")})
    return block.eval()


def test_aggregator_without_entities_is_the_plain_block_and_with_them_differs():
    torch.manual_seed(0)
    agg = Aggregator(32, 4, 64, "gelu", 0.0, 0.0, 1e-12, entity_size=8, entity_heads=2).eval()
    x, e = torch.randn(2, 5, 32), torch.randn(2, 5, 8)
    none = torch.zeros(2, 5, dtype=torch.bool)
    y, _, _ = agg(x, e, none)
    assert torch.allclose(y, _tiny_block_weights(agg)(x)[0], atol=1e-6)  # Eq. 4: no entity term
    some = none.clone()
    some[0, 1] = True
    y2, e2, _ = agg(x, e, some)
    assert not torch.allclose(y2[0], y[0]) and torch.allclose(y2[1], y[1], atol=1e-6)
    assert torch.isfinite(e2).all()


def test_dea_corrupts_alignments_and_scores_the_batch_candidates(kb_dir):
    tok = load_tokenizer(kb_dir / "tok")
    obj = DenoisingEntityAutoencoder(tok, 32, kb=str(kb_dir / "kb"))
    ids = torch.tensor([tok.encode("the dog wagged its tail at the cat")] * 400)
    batch = obj.collate([(row[:4].numpy(), row[4:].numpy(), 1) for row in ids], torch.Generator().manual_seed(0))
    clean = obj.linker.link(_framed(tok, ids))  # the collate links the text before masking it
    at = batch["dea_positions"]
    assert torch.equal(at, clean > 0) and int(at.sum()) == 3 * 400  # dog, tail, cat
    given = batch["entity_ids"][at]
    dropped, replaced = float((given == 0).float().mean()), float(((given != 0) & (given != clean[at])).float().mean())
    assert 0.11 < dropped < 0.19 and replaced < 0.09  # 15 % removed, 5 % replaced (a few by themselves)
    cands = batch["dea_candidates"]
    assert torch.equal(cands[batch["dea_labels"]], clean[at])
    config = ErnieThuConfig(vocab_size=tok.vocab_size, hidden_size=32, num_layers=2, num_heads=4,
                            intermediate_size=64, max_positions=64, **obj.model_fields())
    model = ErnieThu(config)
    obj.attach(model)
    out = obj.step(model, batch)
    assert math.isfinite(float(out["loss"].detach())) and out["dea_loss"] > 0
    # dEA by hand for the first aligned token: softmax over the candidates' TransE vectors
    h = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
              entity_ids=batch["entity_ids"]).last_hidden_state[at][:1]
    q = model.dea_norm(torch.nn.functional.gelu(model.dea_transform(h)))
    logits = q @ obj.vectors[cands].T
    assert torch.allclose(model.entity_logits(h, cands), logits, atol=1e-5)


def _framed(tok, ids):
    B = ids.shape[0]
    return torch.cat([torch.full((B, 1), tok.cls_id), ids[:, :4], torch.full((B, 1), tok.sep_id), ids[:, 4:],
                      torch.full((B, 1), tok.sep_id)], 1)


def test_ernie_thu_pretrains_and_the_saved_model_links_its_own_input(kb_dir, tmp_path):
    from plmkit.workflows.pretrain import pretrain

    corpus = kb_dir / "text.txt"
    summary = pretrain("ernie-thu", [str(corpus)], tmp_path / "run", size="tiny",
                       model_overrides=dict(num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64,
                                            dropout=0.0, attention_dropout=0.0),
                       train_overrides={"steps": 30, "batch_size": 8, "lr": 3e-3, "log_every": 5},
                       data_overrides={"seq_len": 32, "tokenizer": str(kb_dir / "tok"), "kb": str(kb_dir / "kb")})
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert summary["final_loss"] < log[0]["loss"] and log[-1]["dea_loss"] < log[0]["dea_loss"]
    model, tok = plmkit.load(tmp_path / "run"), plmkit.load_tokenizer(tmp_path / "run")
    assert not model.entities.weight.requires_grad
    ids = torch.tensor([[tok.cls_id, *tok.encode("the dog and the cat"), tok.sep_id]])
    linked = model.link(ids)
    assert linked.count_nonzero() == 2
    own = model(ids).logits
    assert torch.allclose(own, model(ids, entity_ids=linked).logits)
    assert not torch.allclose(own, model(ids, entity_ids=torch.zeros_like(ids)).logits)  # the entities count


def test_kb_is_required_and_other_objectives_refuse_it(kb_dir, tmp_path):
    from plmkit.workflows.pretrain import pretrain

    common = dict(size="tiny", train_overrides={"steps": 1}, model_overrides={"num_layers": 1})
    with pytest.raises(PlmkitError, match="needs a knowledge base"):
        pretrain("ernie-thu", [str(kb_dir / "text.txt")], tmp_path / "a", data_overrides={
            "seq_len": 32, "tokenizer": str(kb_dir / "tok")}, **common)
    with pytest.raises(PlmkitError, match="takes no kb"):
        pretrain("bert", [str(kb_dir / "text.txt")], tmp_path / "b", data_overrides={
            "seq_len": 32, "tokenizer": str(kb_dir / "tok"), "kb": str(kb_dir / "kb")}, **common)


def test_cloze_facts_follow_wordnet_relations(wordnet, kb_dir):
    kb = KnowledgeBase.load(kb_dir / "kb")
    facts = cloze_facts(kb, WordNet.read(wordnet), per_relation=10)
    got = {(f["relation"], f["subject"], f["object"]) for f in facts}
    assert ("hypernym", "dog", "animal") in got  # canine is not in the text: the nearest named ancestor
    assert ("antonym", "hot", "cold") in got
    assert ("part_holonym", "tail", "dog") in got
    assert all("[X]" in f["template"] and "[Y]" in f["template"] for f in facts)


def test_knowledge_prepare_command_and_its_errors(wordnet, kb_dir, tmp_path, capsys):
    from plmkit.cli import main

    args = ["knowledge", "prepare", "--corpus", str(kb_dir / "text.txt"), "--wordnet", str(wordnet),
            "--transe-steps", "10", "--dim", "8", "--out"]
    assert main(args + [str(tmp_path / "kb")]) == 0
    out = capsys.readouterr().out
    assert "triples over" in out and "hypernym" in out
    facts = [json.loads(line) for line in (tmp_path / "kb" / "facts.jsonl").read_text().splitlines()]
    assert facts and json.loads((tmp_path / "kb" / "kb.json").read_text())["transe"]["steps"] == 10
    assert main(args[:5] + [str(tmp_path)] + args[6:] + [str(tmp_path / "bad")]) == 2  # not a WordNet directory
    assert "not a WordNet database" in capsys.readouterr().err
    assert main(["pretrain", "--model", "ernie-thu", "--corpus", str(kb_dir / "text.txt"), "--out",
                 str(tmp_path / "run"), "--kb", str(tmp_path), "--tokenizer", str(kb_dir / "tok")]) == 2
    assert "not a knowledge-base directory" in capsys.readouterr().err
