"""Compression II: quantization, pruning, structured dropout and early exit. The storage encodings read back
exactly; a pruned model computes what the masked model computes; batched early exit gives every row what it
gets alone; the int8 and ternary directories reload to the same model (their weights stored as int8 and as
2-bit codes); the ternarizers and the quantization parameters against hand-computed cases; and every method
through `plmkit compress` on a tiny teacher."""

import copy
import json
import math

import pytest
import torch
from safetensors import safe_open

from plmkit.analysis.heads import head_mask
from plmkit.cli import main
from plmkit.compress import Job, get, storage, structure
from plmkit.compress.exits import ExitModel, entropy
from plmkit.compress.quantize import Int8Linear, qparams
from plmkit.compress.ternary import lat, twn
from plmkit.data.tasks import read_task
from plmkit.heads import HeadConfig, TaskModel, collate, encode, evaluate, load_finetuned, save_finetuned
from plmkit.heads.inputs import Format
from plmkit.interop.hf import save_model
from plmkit.models.bert import Bert, BertConfig
from plmkit.tokenizers import train_tokenizer
from plmkit.workflows.compress import compress


@pytest.fixture(scope="module")
def compress_data(kjv_head, tmp_path_factory):
    """A tiny BERT (pretrained/: 4 layers × 32, 2 heads of 16, feed-forward 64) and the same body with a random
    head as a fine-tuned teacher (teacher/, which names pretrained/ as its source); KJV verses labelled by
    whether they name the LORD (train/dev/test.jsonl: 64/24/24)."""
    d = tmp_path_factory.mktemp("compress2")
    lines = [ln for ln in kjv_head(800).read_text().splitlines() if ln.strip()]
    rows = [{"text": v, "label": "lord" if "LORD" in v else "other"} for v in lines[:112]]
    for name, part in (("train", rows[:64]), ("dev", rows[64:88]), ("test", rows[88:])):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    tok = train_tokenizer("wordpiece", [kjv_head(800)], 200, show_progress=False)
    torch.manual_seed(0)
    body = Bert(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_layers=4, num_heads=2,
                           intermediate_size=64, max_positions=64))
    save_model(body, d / "pretrained", tok)
    teacher = TaskModel(body, HeadConfig(task="classify", labels=("lord", "other"), max_length=48))
    teacher.tokenizer = tok
    save_finetuned(teacher, d / "teacher", {"model": str(d / "pretrained")})
    return d


def _files(d):
    return {k: str(d / f"{k}.jsonl") for k in ("train", "dev", "test")}


def _batch(model, examples) -> dict:
    feats = encode(examples, model, model.tokenizer, labelled=False)
    return collate(feats, Format.of(model, model.tokenizer).pad)


# --- storage ------------------------------------------------------------------------------------------------

def test_encodings_read_back_exactly():
    torch.manual_seed(0)
    codes = torch.randint(-1, 2, (7, 5)).to(torch.int8)  # 35 codes: not a multiple of four
    packed = storage.pack_2bit(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(35 / 4)
    assert torch.equal(storage.unpack_2bit(packed, (7, 5)), codes)
    # code = value + 1, the first value in the lowest two bits
    assert storage.pack_2bit(torch.tensor([-1, 0, 1, 1])).tolist() == [0 | 1 << 2 | 2 << 4 | 2 << 6]
    mask = torch.rand(3, 11) > 0.5
    assert storage.pack_bits(mask).numel() == 5
    assert torch.equal(storage.unpack_bits(storage.pack_bits(mask), (3, 11)), mask)
    w = torch.randn(4, 6)
    q, scale = storage.int8_rows(w)
    assert q.dtype == torch.int8 and q.abs().max() == 127
    assert torch.allclose(q * scale[:, None], w, atol=float(scale.max()) / 2)
    ternary = torch.randint(-1, 2, (4, 6)).float() * torch.rand(4, 1)
    sparse = w * (torch.rand(4, 6) > 0.7)
    for t, enc in ((ternary, "ternary"), (sparse, "sparse")):
        assert torch.equal(storage.round_trip(t, enc), t)
    with pytest.raises(ValueError, match="not ternary"):
        storage.round_trip(w, "ternary")


def test_quantization_parameters_and_int8_layer():
    assert qparams(-1.0, 3.0, False) == pytest.approx((4 / 255, 64))  # 255 steps over [−1, 3]; 0 ↦ 64
    assert qparams(0.5, 2.0, True) == pytest.approx((2 / 127, 0))  # the range always holds 0; 7 bits
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    q = Int8Linear.from_float(lin)
    x = torch.randn(3, 5, 16)
    assert q(x).shape == (3, 5, 8)
    torch.testing.assert_close(q(x), x @ q.dequantized().T + lin.bias, atol=0.05, rtol=0)
    fresh = Int8Linear(16, 8)
    fresh.load_state_dict(q.state_dict())  # packs the loaded buffers again
    assert torch.equal(fresh(x), q(x))


def test_ternarizers_by_hand():
    w = torch.tensor([[0.1, -0.9, 1.1, 0.05]])
    # TWN: Δ = 0.7 · mean|w| = 0.7 · 0.5375 = 0.37625; b = (0, −1, 1, 0), α = (0.9 + 1.1) / 2
    b, alpha = twn(w, rows=False)
    assert b.tolist() == [[0, -1, 1, 0]] and alpha.item() == pytest.approx(1.0)
    # LAT with D weighting the third weight 3x: α = (0.9 + 3 · 1.1) / 4 = 1.05; b = |w| > α/2 → same b
    b, alpha = lat(w, torch.tensor([[1.0, 1.0, 3.0, 1.0]]), rows=False, steps=1)
    assert b.tolist() == [[0, -1, 1, 0]] and alpha.item() == pytest.approx(1.05)
    # per row: each row its own α
    b, alpha = twn(torch.tensor([[2.0, 0.0], [0.0, -4.0]]), rows=True)
    assert alpha.flatten().tolist() == [2.0, 4.0] and b.tolist() == [[1, 0], [0, -1]]


# --- pruning keeps the function of what stays ---------------------------------------------------------------

def test_pruned_logits_equal_masked_logits(compress_data):
    teacher = load_finetuned(compress_data / "teacher")
    batch = _batch(teacher, read_task(compress_data / "test.jsonl", "classify"))
    heads = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])  # (L, N)
    torch.manual_seed(1)
    neurons = [(torch.rand(64) > 0.5).float() for _ in range(3)] + [torch.zeros(64)]  # the last block goes
    with torch.no_grad(), head_mask(teacher, heads), structure.neuron_mask(teacher, neurons):
        masked = teacher(batch)["logits"]
    pruned = copy.deepcopy(teacher)
    structure.keep_heads(pruned.body, structure.kept(list(heads)))
    structure.keep_neurons(pruned.body, structure.kept(neurons))
    assert pruned.body.layers[0].attn.qkv.weight.shape == (3 * 16, 32)  # one head of 16 left: q, k, v rows
    assert pruned.body.layers[3].ffn.up.out_features == 0
    with torch.no_grad():
        torch.testing.assert_close(pruned(batch)["logits"], masked, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(teacher(batch)["logits"], masked)  # the masks did change the function
    assert structure.shape(pruned.body) == {"heads": [1, 1, 2, 1], "intermediate": [
        int(n.sum()) for n in neurons]}
    assert structure.evenly_spaced(6, 3) == [1, 3, 5] and structure.evenly_spaced(4, 4) == [0, 1, 2, 3]


# --- batched early exit --------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy", ["entropy", "patience"])
def test_batched_early_exit_gives_each_row_its_batch_of_one_answer(compress_data, policy):
    teacher = load_finetuned(compress_data / "teacher")
    torch.manual_seed(3)
    for p in teacher.body.parameters():  # larger weights than BERT's init, so that rows' [CLS] states differ
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.5)
    model = ExitModel(teacher.body, teacher.config, policy, own_pooler=policy == "entropy").eval()
    model.tokenizer = teacher.tokenizer
    examples = read_task(compress_data / "test.jsonl", "classify")
    batch = _batch(model, examples)
    with torch.no_grad():
        for r, z in zip(model.ramps, model.all_logits(batch)):  # ramps whose labels split the rows
            torch.nn.init.normal_(r.classifier.weight, std=2.0)
        for r, z in zip(model.ramps, model.all_logits(batch)):
            r.classifier.bias -= z.mean(0)
        every = model.all_logits(batch)  # L × (B, C), every row through every layer
        if policy == "entropy":  # a threshold in the widest gap between the rows' middle entropies
            h = torch.stack([entropy(z) for z in every[:-1]]).flatten().sort().values
            middle = h[len(h) // 4: 3 * len(h) // 4]
            gap = int((middle[1:] - middle[:-1]).argmax())
            assert middle[gap + 1] - middle[gap] > 1e-4
            model.threshold = float(middle[gap] + middle[gap + 1]) / 2
        else:
            model.patience = 1
        out = model(batch)
    # the reference: the first layer whose rule fires, from the full computation
    L = len(every)
    for b in range(len(examples)):
        leave, agreed = L, 0
        for i, z in enumerate(every[:-1]):
            if policy == "entropy" and entropy(z[b:b + 1]).item() < model.threshold:
                leave = i + 1
                break
            if policy == "patience":
                agreed = agreed + 1 if i and z[b].argmax() == every[i - 1][b].argmax() else 0
                if agreed >= model.patience:
                    leave = i + 1
                    break
        assert out["exit_layer"][b].item() == leave
        torch.testing.assert_close(out["logits"][b], every[leave - 1][b].float(), atol=1e-5, rtol=1e-5)
    assert len(set(out["exit_layer"].tolist())) >= 2  # rows left at different layers
    with torch.no_grad():
        for b, e in enumerate(examples):
            alone = model(_batch(model, [e]))
            assert alone["exit_layer"].item() == out["exit_layer"][b].item()
            assert alone["logits"].argmax().item() == out["logits"][b].argmax().item()


# --- saved quantized models reload as they were -------------------------------------------------------------

def _run(method: str, d, out, **options):
    m = get(method)
    teacher = load_finetuned(d / "teacher")
    job = Job(method, teacher, teacher.tokenizer, m.resolve(options), out, task="classify",
              train=read_task(d / "train.jsonl", "classify"), dev=read_task(d / "dev.jsonl", "classify"),
              train_path=d / "train.jsonl", dev_path=d / "dev.jsonl", teacher_dir=d / "teacher", progress=False)
    out.mkdir(parents=True, exist_ok=True)
    return m.run(job)


@pytest.mark.parametrize("method, options", [("int8", {}), ("ternary", {"epochs": 1, "batch_size": 32})])
def test_saved_int8_and_ternary_models_reload_and_score_the_same(compress_data, tmp_path, method, options):
    result = _run(method, compress_data, tmp_path / "run", **options)
    result.save(result.model, tmp_path / "saved", {})
    loaded = load_finetuned(tmp_path / "saved")
    test = read_task(compress_data / "test.jsonl", "classify")
    batch = _batch(loaded, test)
    with torch.no_grad():
        assert torch.equal(loaded(batch)["logits"], result.model(batch)["logits"])
    assert evaluate(loaded, loaded.tokenizer, test) == evaluate(result.model, result.model.tokenizer, test)
    qkv = "body.layers.0.attn.qkv.weight_int8"
    with safe_open(str(tmp_path / "saved" / storage.FILE), framework="pt") as f:
        names = set(f.keys())
        if method == "int8":  # int8 on disk, embeddings as int8 rows
            assert f.get_tensor(qkv).dtype == torch.int8 and "body.embeddings.tokens.weight#int8" in names
        else:  # 2-bit codes: a quarter byte per weight; the word embedding too
            assert f.get_tensor(qkv + "#2bit").numel() == 3 * 32 * 32 // 4
            assert "body.embeddings.tokens.weight#2bit" in names
    assert not (tmp_path / "saved" / "model.safetensors").exists()
    assert isinstance(loaded.body.layers[0].attn.qkv, Int8Linear)
    if method == "ternary":
        assert set(loaded.body.layers[0].ffn.up.weight_int8.unique().tolist()) <= {-1, 0, 1}


# --- every method: run, save, reload ------------------------------------------------------------------------

@pytest.mark.parametrize("method, options", [
    ("int8-static", {"calibration": 16}),
    ("prune-ffn", {"epochs": 0, "ratio": 0.25, "step": 0.25, "importance_examples": 16}),
    ("lottery", {"rounds": 2, "epochs": 1, "batch_size": 32}),
    ("lottery", {"kind": "structured", "epochs": 1, "rewind": "teacher", "floor": 0.0, "importance_examples": 16,
                 "batch_size": 32}),
    ("layerdrop", {"epochs": 1, "rate": 0.5, "batch_size": 32}),
    ("dynabert", {"widths": "1.0,0.5", "depths": "1.0,0.5", "width": 0.5, "depth": 0.5, "importance_examples": 16,
                  "batch_size": 32}),
    ("deebert", {"epochs": 1, "batch_size": 32}),
    ("pabee", {"epochs": 1, "batch_size": 32}),
])
def test_methods_run_save_and_reload(compress_data, tmp_path, method, options):
    result = _run(method, compress_data, tmp_path / "run", **options)
    (result.save or save_finetuned)(result.model, tmp_path / "saved", {})
    student = load_finetuned(tmp_path / "saved")
    test = read_task(compress_data / "test.jsonl", "classify")
    batch = _batch(student, test)
    with torch.no_grad():
        torch.testing.assert_close(student(batch)["logits"], result.model.eval()(batch)["logits"])
    s = result.info
    qkv = student.body.layers[0].attn.qkv
    if method == "prune-ffn":
        assert sum(s["intermediate"]) == 4 * 64 - 64 and student.body.layers[0].ffn.up.out_features < 64
    if method == "int8-static":
        assert type(qkv).__name__ == "StaticInt8Linear" and qkv.input_qparams[0] > 0
    if method == "lottery" and s["kind"] == "magnitude":  # 50 % of the blocks' weights, stored sparse
        assert s["sparsity"] == pytest.approx(0.5, abs=1e-3) and len(s["rounds"]) == 2
        assert float((student.body.layers[1].ffn.up.weight == 0).float().mean()) > 0.2
        assert "no faster" in s["speed"] and result.parameters < s["dense_parameters"]
    if method == "lottery" and s["kind"] == "structured":
        assert s["steps"][-1]["heads_removed"] == 4 and sum(s["heads"]) == 4
    if method == "layerdrop":  # every other layer kept; every sub-depth scored
        assert s["teacher_layers"] == [1, 3] and student.body.config.num_layers == 2
        assert [x["layers"] for x in s["dev_by_depth"]] == [1, 2, 3, 4]
    if method == "dynabert":
        assert s["heads"] == [1, 1] and s["intermediate"] == [32, 32] and len(s["dev_by_width_depth"]) == 4
    if method in ("deebert", "pabee"):
        curve = s["dev_curve"]
        assert len(curve) >= 3 and curve[0]["mean_exit_layer"] == 4 and (tmp_path / "run" / "exit_curve.png").exists()
        assert isinstance(student, ExitModel) and student.policy == ("entropy" if method == "deebert" else "patience")
        key = "threshold" if method == "deebert" else "patience"
        assert getattr(student, key) == s[key]


def test_prune_heads_through_the_command(compress_data, tmp_path, capsys):
    out = tmp_path / "prune"
    r = compress("prune-heads", compress_data / "teacher", out, **_files(compress_data),
                 options={"epochs": 0, "step": 0.5, "importance_examples": 16}, progress=False)
    s = r["student"]  # half of the 8 heads gone, for real; at least one left in each layer
    assert sum(s["heads"]) == 4 and min(s["heads"]) == 1 and len(s["removed_heads"]) == 4
    student = load_finetuned(out)
    assert sum(b.attn.qkv.out_features for b in student.body.layers) == 4 * 3 * 16
    assert s["parameters"] < r["teacher"]["parameters"] and s["weight_bytes"] < r["teacher"]["weight_bytes"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(compress_data / "test.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == s["test"]
