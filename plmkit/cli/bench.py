"""`plmkit bench pretrain|infer|generate|data`: side-by-side benchmarks against the Hugging Face peers (see
plmkit/bench/)."""

from __future__ import annotations

import json


def add_commands(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks against the Hugging Face peers (transformers, datasets)")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="WHAT")
    t = bsub.add_parser("pretrain", help="pre-training tokens/s and MFU, plmkit vs transformers, in one run",
                        description="Trains the same config from the same weights on the same random-token batches "
                                    "with plmkit and its transformers peer, alternating timed rounds after a "
                                    "warm-up; prints tokens/s, the ratio, MFU against the matmul peak measured "
                                    "now, and checks both sides' losses agree step by step. Dropout is off.")
    t.add_argument("--model", default="bert", help="bert, gpt, gpt2 or t5 (default bert)")
    t.add_argument("--size", default="mini", help="size preset (default mini)")
    t.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--seq-len", type=int, default=128)
    t.add_argument("--vocab-size", type=int, default=30522, help="default: BERT's 30,522")
    t.add_argument("--steps", type=int, default=10, help="timed steps per round per side (default 10)")
    t.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    t.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    t.add_argument("--vs", choices=["hf", "none"], default="hf", help="compare with transformers (default hf)")
    t.add_argument("--json", action="store_true", help="print the measurements as JSON")
    t.set_defaults(func=_cmd_bench_pretrain)

    i = bsub.add_parser("infer", help="batch inference examples/s and accuracy: plmkit fp32, plmkit int8, "
                                      "transformers", description=(
        "Scores the dev set of a model written by `plmkit finetune` three ways, in alternating timed rounds "
        "after a warm-up, tokenization included: plmkit as `plmkit evaluate` runs it (batches of similar "
        "lengths), plmkit with every linear layer dynamically quantized to int8, and the transformers "
        "<Member>ForSequenceClassification (SDPA) loaded from the same directory with plmkit's head as its "
        "classifier, run as its users run batch inference (each batch padded to its longest, in dataset "
        "order, torch.inference_mode). Prints examples/s, tokens/s (real tokens, specials included), ratios "
        "and the accuracy of each, and the largest logit difference between plmkit and the peer."))
    i.add_argument("--model", required=True, metavar="DIR", help="a classify or pair model written by "
                   "`plmkit finetune` (BERT, ALBERT or RoBERTa body for the peer)")
    i.add_argument("--data", metavar="F", help="labelled examples (default: the dev file recorded at fine-tuning)")
    i.add_argument("--task", choices=["classify", "pair"], help="check the model was fine-tuned for this task")
    i.add_argument("--batch-size", type=int, default=32, help="examples per batch, every side (default 32)")
    i.add_argument("--max-length", type=int, help="tokens per input, specials included (default: the model's, "
                   "usually 128)")
    i.add_argument("--rounds", type=int, default=2, help="timed passes over the data per side (default 2)")
    i.add_argument("--limit", type=int, metavar="N", help="only the first N examples")
    i.add_argument("--vs", choices=["hf", "none"], default="hf", help="compare with transformers (default hf)")
    i.add_argument("--json", action="store_true", help="print the measurements as JSON")
    i.set_defaults(func=_cmd_bench_infer)

    g = bsub.add_parser("generate", help="greedy and beam-search decoding tokens/s, plmkit's engine vs "
                                         "transformers generate", description=(
        "Continues the same random-token prompts with the same (randomly initialised) weights on both sides, "
        "greedy and with beam search (--num-beams), --new-tokens each, in alternating timed rounds after a "
        "warm-up, at each --batch-sizes; checks both choose the same tokens and prints tokens/s and the ratio, "
        "and where plmkit's time per greedy step goes (the model, the vocabulary projection). For t5 and bart a "
        "prompt is the source and the new tokens its target."))
    g.add_argument("--model", default="gpt2", choices=["gpt2", "gpt", "t5", "bart"], help="default gpt2")
    g.add_argument("--size", default="mini", help="size preset (default mini)")
    g.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], metavar="B", help="default 1 8")
    g.add_argument("--num-beams", type=int, nargs="+", default=[1, 4], metavar="K", help="beam widths, 1 = greedy "
                   "(default 1 4)")
    g.add_argument("--new-tokens", type=int, default=128, help="per prompt (default 128)")
    g.add_argument("--prompt-len", type=int, default=32, help="tokens per prompt (default 32)")
    g.add_argument("--vocab-size", type=int, help="default: the member's (GPT-2: 50,257)")
    g.add_argument("--rounds", type=int, default=3, help="alternating timed rounds (default 3)")
    g.add_argument("--threads", type=int, help="torch threads, both sides (default: torch's, one per core)")
    g.add_argument("--vs", choices=["hf", "none"], default="hf", help="compare with transformers (default hf)")
    g.add_argument("--json", action="store_true", help="print the measurements as JSON")
    g.set_defaults(func=_cmd_bench_generate)

    d = bsub.add_parser("data", help="corpus → token ids: plmkit build_shards vs datasets map, tokens/s and "
                                     "peak memory", description=(
        "Tokenizes --corpus with plmkit (build_shards: streaming, token shards on disk) and with Hugging "
        "Face datasets (load_dataset(\"text\") + .map(batched=True), input_ids only) with the same fast "
        "tokenizer and the same number of worker processes, each side in a fresh process of its own; then "
        "again on the corpus repeated --scale times. Prints tokens/s, the ratio, and each side's peak "
        "resident memory (its largest process), to show whether memory stays flat as the corpus grows. "
        "datasets' cache goes to a temporary directory that is deleted. Needs pip install 'plmkit[bench]'."))
    d.add_argument("--corpus", required=True, metavar="F", help="plain text, one paragraph per line")
    d.add_argument("--scale", type=int, default=10, help="also run on the corpus repeated this many times "
                   "(default 10; 1: only the corpus)")
    d.add_argument("--workers", type=int, default=2, help="worker processes, each side (default 2; build_shards "
                   "uses at most one per 64 MB shard)")
    d.add_argument("--tokenizer", metavar="DIR", help="tokenizer to use (default: a WordPiece of --vocab-size "
                   "trained on the corpus first, untimed, as `plmkit pretrain` does)")
    d.add_argument("--vocab-size", type=int, default=8000, help="of the tokenizer trained on the corpus (default 8000)")
    d.add_argument("--rounds", type=int, default=1, help="runs per side and corpus, alternating; the fastest "
                   "counts (default 1)")
    d.add_argument("--json", action="store_true", help="print the measurements as JSON")
    d.set_defaults(func=_cmd_bench_data)


def _cmd_bench_pretrain(a) -> int:
    from ..bench.pretrain import bench_pretrain

    r = bench_pretrain(a.model, a.size, a.precision, a.batch_size, a.seq_len, a.vocab_size, a.steps, a.warmup,
                       a.rounds, vs_hf=a.vs == "hf")
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['model']}-{r['size']} {r['precision']}, batch {r['batch_size']} × {r['seq_len']}, "
          f"vocab {r['vocab_size']}, {r['parameters'] / 1e6:.1f}M parameters; "
          f"matmul peak {r['peak_flops'] / 1e9:.0f} GFLOP/s")
    print(f"  plmkit        {r['tokens_per_s']:>9.0f} tokens/s   MFU {r['mfu']:6.1%}")
    if "ratio" in r:
        print(f"  {r['peer']:<13} {r['peer_tokens_per_s']:>9.0f} tokens/s   MFU {r['peer_mfu']:6.1%}")
        print(f"  ratio {r['ratio']:.2f}x; largest loss difference over the first steps {r['max_loss_diff']:.1e}")
    return 0


def _cmd_bench_infer(a) -> int:
    from ..bench.infer import bench_infer

    r = bench_infer(a.model, a.data, a.task, a.batch_size, a.max_length, a.rounds, a.limit, vs_hf=a.vs == "hf")
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['model']} {r['task']}, {r['parameters'] / 1e6:.1f}M parameters; {r['examples']} examples of "
          f"{r['data']}, batch {r['batch_size']}, max length {r['max_length']}, {r['threads']} threads")
    print(f"  plmkit fp32    {r['examples_per_s']:>8.1f} examples/s {r['tokens_per_s']:>8.0f} tokens/s   "
          f"accuracy {r['accuracy']:.4f}   {r['padded_tokens']} padded tokens per pass")
    print(f"  plmkit int8    {r['int8_examples_per_s']:>8.1f} examples/s {r['int8_tokens_per_s']:>8.0f} tokens/s   "
          f"accuracy {r['int8_accuracy']:.4f}   {r['int8_ratio']:.2f}x fp32; "
          f"same prediction as fp32 on {r['int8_agreement']:.1%}")
    if "ratio" in r:
        print(f"  transformers   {r['peer_examples_per_s']:>8.1f} examples/s {r['peer_tokens_per_s']:>8.0f} tokens/s   "
              f"accuracy {r['peer_accuracy']:.4f}   {r['peer_padded_tokens']} padded tokens per pass")
        print(f"  ratio {r['ratio']:.2f}x ({r['peer']}, {r['peer_attention']}); largest logit difference "
              f"{r['max_logit_diff']:.1e}")
    return 0


def _cmd_bench_generate(a) -> int:
    from ..bench.generate import bench_generate

    r = bench_generate(a.model, a.size, tuple(a.batch_sizes), a.new_tokens, a.prompt_len, a.vocab_size, a.rounds,
                       vs_hf=a.vs == "hf", threads=a.threads, num_beams=tuple(a.num_beams))
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['model']}-{r['size']}, {r['parameters'] / 1e6:.1f}M parameters, vocab {r['vocab_size']}; "
          f"{r['prompt_len']}-token {'sources' if r['encoder_decoder'] else 'prompts'} + {r['new_tokens']} new "
          f"tokens; {r['threads']} threads")
    for run in r["runs"]:
        search = "greedy" if run["num_beams"] == 1 else f"beam {run['num_beams']}"
        line = f"  {search:>7}, batch {run['batch_size']:>3}: plmkit {run['tokens_per_s']:>8.1f} tokens/s"
        if "ratio" in run:
            line += f"   {r['peer']} {run['peer_tokens_per_s']:>8.1f} tokens/s   ratio {run['ratio']:.2f}x (same tokens)"
        print(line)
        if run["num_beams"] > 1:
            continue
        print(f"             plmkit ms/step {run['ms_per_step']:.2f}: model {run['model_ms_per_step']:.2f} "
              f"(vocabulary projection {run['head_ms_per_step']:.2f})")
        if "ratio" in run:
            print(f"             peer ms/step {run['peer_ms_per_step']:.2f}: model {run['peer_model_ms_per_step']:.2f}")
    return 0


def _cmd_bench_data(a) -> int:
    from ..bench.data import bench_data

    r = bench_data(a.corpus, a.scale, a.workers, a.tokenizer, a.vocab_size, a.rounds)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['corpus']}: {r['tokenizer']}; plmkit build_shards vs {r['peer']} map, up to "
          f"{r['workers']} worker processes each (used in brackets)")
    print(f"  {'':<5} {'size':>9} {'tokens':>12}  {'plmkit tok/s':>12} {'peak RSS':>12}  "
          f"{'datasets tok/s':>14} {'peak RSS':>12}  ratio")
    for run in r["runs"]:
        print(f"  ×{run['scale']:<4} {run['bytes'] / 1e6:>6.1f} MB {run['tokens']:>12,}  "
              f"{run['tokens_per_s']:>12,.0f} {run['peak_rss_mb']:>6.0f} MB ({run['processes']})  "
              f"{run['peer_tokens_per_s']:>14,.0f} {run['peer_peak_rss_mb']:>6.0f} MB ({run['peer_processes']})  "
              f"{run['ratio']:.2f}x")
    if len(r["runs"]) > 1:
        print(f"  peak RSS ×{r['scale']} ÷ ×1: plmkit {r['rss_growth']:.2f}, datasets {r['peer_rss_growth']:.2f}")
    return 0
