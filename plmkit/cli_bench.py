"""`plmkit bench …`: side-by-side benchmarks against the transformers peer (see plmkit/bench.py)."""

from __future__ import annotations

import json


def add_commands(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks against the Hugging Face transformers peer")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="WHAT")
    t = bsub.add_parser("pretrain", help="pre-training tokens/s and MFU, plmkit vs transformers, in one run",
                        description="Trains the same config from the same weights on the same random-token batches "
                                    "with plmkit and its transformers peer, alternating timed rounds after a "
                                    "warm-up; prints tokens/s, the ratio, MFU against the matmul peak measured "
                                    "now, and checks both sides' losses agree step by step. Dropout is off.")
    t.add_argument("--model", default="bert", help="bert, gpt or gpt2 (default bert)")
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


def _cmd_bench_pretrain(a) -> int:
    from .bench import bench_pretrain

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
