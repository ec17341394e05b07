"""`plmkit analyze all`: every method that applies to the model, into one static page.

The page, `report/index.html`, needs no server and no network: its figures are PNG files beside it
(`report/img/`), its tables are HTML, and the interactive attention view is plain JavaScript with the
sentence's attention weights embedded as JSON, so it works opened from a file:// URL. Each method also
leaves its JSON and figures in `DIR/METHOD/`.
"""

from __future__ import annotations

import dataclasses
import html
import json
import shutil
import time
from pathlib import Path

from . import METHODS, applicability, attention, cloze, geometry, heads, numeracy, perturbed_masking, probe
from . import robustness, syntax
from .inputs import Loaded


@dataclasses.dataclass
class Inputs:
    """What the methods read; a method whose input is missing is skipped with the reason."""

    sentence: list[str]  # for the attention maps and view
    corpus: list[list[str]]  # sample of sentences: head statistics, geometry, the LM loss of `heads`
    data: list[str] | None = None  # probe task (folder or files)
    facts: list[dict] | None = None  # cloze
    parsed: list | None = None  # gold trees (CoNLL-U): dependency accuracy, perturbed-masking UAS
    task_data: str | None = None  # heads of a fine-tuned model: its labelled task file
    compare: Loaded | None = None  # geometry: the second model
    max_train: int = 1000
    max_eval: int = 500
    pm_sentences: int = 20  # perturbed masking costs W² passes a sentence
    numeracy_steps: int = 300  # training steps of each numeracy probe
    syntax_pairs: int = 200  # syntax: template pairs per construction
    attack_examples: int = 50  # robustness: test examples put through TextFooler


def run_method(name: str, loaded: Loaded, out: Path, x: Inputs, progress=None) -> dict:
    """Run one method with its inputs from `x` into `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    if name == "attention":
        return attention.run(loaded, out, x.sentence, x.corpus, x.parsed, progress=progress)
    if name == "heads":
        return heads.run(loaded, out, x.task_data, [" ".join(s) for s in x.corpus], progress=True)
    if name == "probe":
        return probe.run(loaded, out, x.data, x.max_train, x.max_eval, progress=progress)
    if name == "cloze":
        return cloze.run(loaded, out, x.facts, progress=progress)
    if name == "numeracy":
        return numeracy.run(loaded, out, steps=x.numeracy_steps, progress=progress)
    if name == "geometry":
        return geometry.run(loaded, out, x.corpus, x.compare, progress=progress)
    if name == "perturbed-masking":
        sents = None if x.parsed else x.corpus[: x.pm_sentences]
        parsed = x.parsed[: x.pm_sentences] if x.parsed else None
        return perturbed_masking.run(loaded, out, sents, parsed, progress=progress)
    if name == "syntax":
        return syntax.run(loaded, out, x.corpus, x.syntax_pairs, progress=progress)
    if name == "robustness":
        return robustness.run(loaded, out, test=x.task_data, max_examples=x.attack_examples, progress=progress)
    raise KeyError(name)


def missing_input(name: str, loaded: Loaded, x: Inputs) -> str | None:
    if name == "probe" and not x.data:
        return "no --data (a task folder or files to probe)"
    if name == "cloze" and not x.facts:
        return "no --facts (JSONL of relation facts)"
    if name == "heads" and loaded.task_model is not None and not x.task_data:
        return "a fine-tuned model needs --task-data (labelled examples of its task)"
    if name == "robustness" and not (x.task_data or (loaded.meta.get("finetuned") or {}).get("test")):
        return "no --task-data and the fine-tuning run recorded no test file"
    return None


def run_all(loaded: Loaded, out: Path, x: Inputs, progress=None) -> dict:
    """Every applicable method into out/METHOD/, then out/report/index.html. Returns the summary:
    {"methods": {name: {"status", "seconds" | "reason"}}, "report": path}."""
    status = {}
    results = {}
    for name, reason in applicability(loaded).items():
        reason = reason or missing_input(name, loaded, x)
        if reason:
            status[name] = {"status": "skipped", "reason": reason}
            continue
        if progress is not None:
            progress.set_description(name)
        t = time.perf_counter()
        results[name] = run_method(name, loaded, out / name, x)
        status[name] = {"status": "done", "seconds": round(time.perf_counter() - t, 2)}
        if progress is not None:
            progress.update(1)
    page = write_page(loaded, out, results, status)
    return {"methods": status, "report": str(page)}


# ---- the page ------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;
text-align:left}th{background:#f4f6fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}.skip{color:#888}
#attn-tokens span{display:inline-block;padding:.1em .25em;margin:.1em;border-radius:3px;cursor:pointer}
#attn-tokens span.sel{outline:2px solid #c33}#attn-canvas{border:1px solid #ccc;image-rendering:pixelated}
.controls label{margin-right:1em}code{background:#f4f4f4;padding:0 .2em}
"""

_JS = """
(function(){
  const data = JSON.parse(document.getElementById('attn-data').textContent);
  const L = data.weights.length, N = data.weights[0].length, T = data.tokens.length;
  const layer = document.getElementById('layer'), head = document.getElementById('head');
  const canvas = document.getElementById('attn-canvas'), ctx = canvas.getContext('2d');
  const toks = document.getElementById('attn-tokens'), summary = document.getElementById('attn-summary');
  let selected = 0;
  for (let l = 0; l < L; l++) layer.add(new Option('layer ' + l, l));
  for (let n = 0; n < N; n++) head.add(new Option('head ' + n, n));
  data.tokens.forEach(function(t, i){
    const s = document.createElement('span'); s.textContent = t; s.dataset.i = i;
    s.addEventListener('click', function(){ selected = i; draw(); }); toks.appendChild(s);
  });
  const cell = Math.max(6, Math.min(24, Math.floor(480 / T)));
  canvas.width = canvas.height = cell * T;
  function draw(){
    const w = data.weights[+layer.value][+head.value];
    let top = 1e-9; w.forEach(function(r){ r.forEach(function(v){ if (v > top) top = v; }); });
    for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) {
      const v = Math.round(255 * (1 - w[i][j] / top));  // scaled to the head's largest weight
      ctx.fillStyle = 'rgb(' + v + ',' + v + ',255)'; ctx.fillRect(j * cell, i * cell, cell, cell);
    }
    ctx.strokeStyle = '#c33'; ctx.lineWidth = 2; ctx.strokeRect(1, selected * cell + 1, T * cell - 2, cell - 2);
    const row = w[selected]; let best = 0;
    toks.querySelectorAll('span').forEach(function(s, j){
      s.style.background = 'rgba(40,90,220,' + (row[j] / top).toFixed(3) + ')';
      s.classList.toggle('sel', j === selected); if (row[j] > row[best]) best = j;
    });
    summary.textContent = 'layer ' + layer.value + ', head ' + head.value + ': "' + data.tokens[selected] +
      '" attends most to "' + data.tokens[best] + '" (' + row[best].toFixed(3) + ')';
  }
  layer.addEventListener('change', draw); head.addEventListener('change', draw);
  draw();
})();
"""


def _e(x) -> str:
    return html.escape(str(x))


def _num(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else _e(v)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{_num(c)}</td>' if isinstance(c, (int, float)) or c is None
                                    else f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figures(name: str, result: dict, src: Path, img: Path) -> str:
    parts = []
    for fig in result.get("figures", []):
        target = f"{name}-{fig}"
        shutil.copyfile(src / fig, img / target)
        parts.append(f'<img src="img/{_e(target)}" alt="{_e(name)}: {_e(fig)}">')
    return "".join(parts)


def _attention_section(r: dict) -> str:
    stats = r["statistics"]
    L = len(stats["entropy"])
    rows = []
    for key in ("cls", "sep", "punct", "self", "prev", "next"):
        flat = [(v, l, n) for l, row in enumerate(stats[key]) for n, v in enumerate(row)]
        v, l, n = max(flat)
        rows.append([f"to {key}", sum(x for x, _, _ in flat) / len(flat), f"{l}-{n}", v])
    per_layer = [[l, sum(stats["entropy"][l]) / len(stats["entropy"][l]), stats["uniform_entropy"][l][0],
                  sum(stats["cls"][l]) / len(stats["cls"][l]), sum(stats["sep"][l]) / len(stats["sep"][l])]
                 for l in range(L)]
    out = (f"<p>Head statistics over {stats['sentences']} sentences ({stats['queries']} query tokens).</p>" +
           _table(["pattern", "mean over heads", "strongest head (layer-head)", "its value"], rows) +
           _table(["layer", "mean entropy", "uniform entropy", "to [CLS]", "to [SEP]"], per_layer))
    dep = r.get("dependency")
    if dep and dep["relations"]:
        out += f"<p>Attention-based dependency accuracy on {dep['words']} gold arcs:</p>" + _table(
            ["relation", "n", "best head", "direction", "accuracy", "fixed-offset baseline"],
            [[k, v["n"], f"{v['layer']}-{v['head']}", v["direction"], v["accuracy"], v["offset_baseline"]]
             for k, v in dep["relations"].items()])
    weights = {"tokens": r["sentence"]["tokens"], "weights": r["sentence"]["weights"]}
    out += ('<h3>Interactive attention view</h3><div class="controls"><label>Layer <select id="layer"></select>'
            '</label><label>Head <select id="head"></select></label> — click a token to see where it looks; '
            'shades are scaled to the largest weight of the head.</div>'
            '<p id="attn-tokens"></p><p id="attn-summary"></p><canvas id="attn-canvas"></canvas>'
            '<script type="application/json" id="attn-data">' +
            json.dumps(weights).replace("</", "<\\/") + "</script>" + f"<script>{_JS}</script>")
    return out


def _summary(name: str, r: dict) -> str:
    if name == "attention":
        return _attention_section(r)
    if name == "heads":
        imp = r["importance"]
        top = sorted(((v, l, n) for l, row in enumerate(imp) for n, v in enumerate(row)), reverse=True)[:5]
        return (f"<p>Importance from the gradient of the loss on {_e(r['data'])}; metric: {_e(r['metric'])}. "
                f"Most important heads (layer-head): {', '.join(f'{l}-{n} ({v:.2f})' for v, l, n in top)}.</p>" +
                _table(["% heads pruned", r["metric"]], [[round(100 * c["fraction"], 1), c["metric"]]
                                                         for c in r["curve"]]))
    if name == "probe":
        rows = [[x["layer"], x["accuracy"], x.get("control"), x.get("selectivity"), w]
                for x, w in zip(r["layers"], r["mix"]["weights"])]
        return (f"<p>{_e(r['task'])} probe on {_e(r['train'])}: {r['train_examples']} training and "
                f"{r['eval_examples']} {_e(r['evaluated_on'])} examples, {r['labels']} labels; majority label "
                f"{r['majority_baseline']:.3f}. Scalar mix accuracy {r['mix']['accuracy']:.3f}, centre of gravity "
                f"{r['mix']['center_of_gravity']:.2f}, expected layer {r['cumulative']['expected_layer']:.2f}.</p>" +
                _table(["layer", "accuracy", "control task", "selectivity", "mix weight"], rows))
    if name == "cloze":
        rows = [[k, v["n"], v["skipped"], v["p@1"], v["p@10"], v["mrr"], v.get("negated_p@1"),
                 v.get("same_top1_negated")] for k, v in r["relations"].items()]
        rows.append(["mean over relations", r["scored"], None, r["mean"]["p@1"], r["mean"]["p@10"], r["mean"]["mrr"],
                     None, None])
        ex = _table(["query", "object", "top 5", "top 1 negated"],
                    [[e["query"], e["object"], " ".join(e["top"]), e.get("negated_top1")] for e in r["examples"][:12]])
        return (f"<p>Mode: {_e(r['mode'])}; {r['scored']} of {r['facts']} facts have a one-token object.</p>" +
                _table(["relation", "n", "skipped", "P@1", "P@10", "MRR", "P@1 negated", "same top-1 negated"], rows) + ex)
    if name == "numeracy":
        rows = [[k, v["list_max_accuracy"], v["decoding_rmse"], v["addition_rmse"]]
                for k, v in r["representations"].items()]
        return (f"<p>Integers {r['range'][0]}–{r['range'][1]}, {r['test_numbers']} held out; "
                f"{r['single_token_numbers']} are one token. List-maximum chance: 0.2.</p>" +
                _table(["representation", "list max accuracy", "decoding RMSE", "addition RMSE"], rows))
    if name == "geometry":
        rows = [[i, x["anisotropy"], x["self_similarity"], x["intra_sentence"], x["mev"],
                 x["self_similarity_adjusted"]] for i, x in enumerate(r["layers"])]
        return (f"<p>{r['words']} words in {r['sentences']} sentences; self-similarity and MEV over "
                f"{r['layers'][0]['types']} word types seen at least {r['min_count']} times. Similarity against "
                f"{_e(r['similarity']['against'])}.</p>" +
                _table(["layer", "anisotropy", "self-similarity", "intra-sentence", "PC1 variance",
                        "self-sim − anisotropy"], rows))
    if name == "perturbed-masking":
        if "uas" in r:
            return (f"<p>UAS of the induced trees on {r['words']} words of {r['sentences']} sentences: "
                    f"{r['uas']:.3f}; right-branching baseline {r['right_branching_uas']:.3f}.</p>")
        return f"<p>Impact matrices and induced trees of {r['sentences']} sentences (no gold trees given).</p>"
    if name == "syntax":
        rows = [[k, v["source"], v["n"], v["skipped"], v["accuracy"], v["majority_baseline"], v["random_baseline"]]
                for k, v in r["constructions"].items()]
        ex = _table(["construction", "grammatical", "ungrammatical", "right", "margin"],
                    [[e["construction"], e["good"], e["bad"], "yes" if e["correct"] else "no", e["margin"]]
                     for e in r["examples"][:12]])
        return (f"<p>Mode: {_e(r['mode'])}; {r['scored']} of {r['items']} pairs scored.</p>" +
                _table(["construction", "source", "n", "skipped", "accuracy", "majority form", "random"], rows) + ex)
    if name == "robustness":
        f, t = r["textfooler"], r["triggers"]
        out = (f"<p>TextFooler on {f['examples']} examples of {_e(r['test'])}; neighbours: {_e(r['vectors'])}; "
               f"similarity: {_e(r['similarity_encoder'])}.</p>" +
               _table(["accuracy", "under attack", "success rate", "perturbed words", "similarity",
                       "queries per example"],
                      [[f["accuracy"], f["accuracy_under_attack"], f["success_rate"], f["perturbed_word_ratio"],
                        f["similarity"], f["queries_per_example"]]]) +
               _table(["original (words read)", "adversarial", "new label"],
                      [[s["original"], s["adversarial"], s["label"]] for s in f["successes"][:5]]))
        if "skipped" in t:
            return out + f"<p>Universal triggers skipped: {_e(t['skipped'])}.</p>"
        return out + (f"<p>Universal triggers of {t['length']} tokens, one per class (searched on the training "
                      f"data): test accuracy {_num(t['accuracy'])} → {_num(t['accuracy_with_triggers'])}.</p>" +
                      _table(["class", "trigger", "test examples", "accuracy", "with trigger"],
                             [[k, c["trigger_text"], c["test_examples"], c["accuracy"], c["accuracy_with_trigger"]]
                              for k, c in t["classes"].items()]))
    return ""


def write_page(loaded: Loaded, out: Path, results: dict, status: dict) -> Path:
    page_dir = out / "report"
    img = page_dir / "img"
    img.mkdir(parents=True, exist_ok=True)
    card = loaded.card()
    diff = "; ".join(f"{axis}: {', '.join(changes)}" for axis, changes in card["diff"].items())
    corpus = card["corpus"]
    card_rows = [["member", f"{card['member']} ({card['year']}) — {card['paper']}"], ["parent", card["parent"]],
                 ["diff from parent", diff],
                 ["size", f"{card['parameters']:,} parameters; " + ", ".join(
                     f"{k.replace('_', ' ')} {card[k]}" for k in ("num_layers", "hidden_size", "num_heads",
                                                                  "vocab_size") if k in card)],
                 ["pre-training objective", card["objective"]],
                 ["training corpus", ", ".join(Path(c).name for c in corpus) if corpus else "not recorded (" +
                  card["source"] + ")"],
                 ["fine-tuned for", card["fine-tuned"] or "—"], ["directory", card["path"]]]
    if card["untrained parameters"]:
        card_rows.append(["not in the checkpoint", ", ".join(card["untrained parameters"])])
    method_rows = [[name, s["status"], s.get("seconds"), s.get("reason", "")] for name, s in status.items()]
    body = [f"<h1>plmkit analysis: {_e(loaded.name)}</h1>", "<h2>Model card</h2>",
            _table(["", ""], card_rows), "<h2>Methods</h2>",
            _table(["method", "status", "seconds", "why skipped"], method_rows)]
    titles = {"attention": "Attention (Clark et al. 2019)", "heads": "Head importance (Michel et al. 2019)",
              "probe": "Layer-wise probes (Liu et al. 2019; Tenney et al. 2019; Hewitt & Liang 2019)",
              "cloze": "Cloze facts (Petroni et al. 2019; Kassner & Schütze 2020)",
              "numeracy": "Numeracy (Wallace et al. 2019)",
              "geometry": "Geometry (Ethayarajh 2019) and layer similarity (CKA, RSA)",
              "perturbed-masking": "Perturbed masking (Wu et al. 2020)",
              "syntax": "Agreement and NPI minimal pairs (Marvin & Linzen 2018; Goldberg 2019; Warstadt et al. 2019)",
              "robustness": "Adversarial robustness (Jin et al. 2020; Wallace et al. 2019)"}
    for name in METHODS:
        if name not in results:
            continue
        body.append(f'<h2 id="{name}">{_e(titles[name])}</h2>')
        body.append(_summary(name, results[name]))
        body.append(_figures(name, results[name], out / name, img))
    page = page_dir / "index.html"
    page.write_text("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                    f"<title>plmkit analysis: {_e(loaded.name)}</title><style>{_CSS}</style></head><body>" +
                    "\n".join(body) + "</body></html>\n", encoding="utf-8")
    return page
