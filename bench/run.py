"""Regenerate the results table in bench/README.md: `python bench/run.py` (about 10 minutes on 2 cores).

Each row is one `plmkit bench pretrain` run: plmkit and its transformers peer trained in the same
process on the same batches, alternating timed rounds, so the ratio is measured under one machine state.
"""

import re
import sys
from pathlib import Path

from plmkit.bench import bench_pretrain

RUNS = [  # (member, size, precision)
    ("bert", "mini", "fp32"),
    ("bert", "mini", "bf16"),
    ("gpt2", "mini", "fp32"),
    ("gpt", "mini", "fp32"),
    ("bert", "medium", "fp32"),
]


def main() -> None:
    rows = ["| model | size | precision | plmkit tok/s | peer | peer tok/s | ratio | plmkit MFU | peer MFU | loss diff |",
            "|---|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for model, size, precision in RUNS:
        r = bench_pretrain(model, size, precision, steps=5 if size == "medium" else 10, rounds=3)
        rows.append(f"| {model} | {size} | {precision} | {r['tokens_per_s']:.0f} | {r['peer']} ({r['peer_attention']}) "
                    f"| {r['peer_tokens_per_s']:.0f} | {r['ratio']:.2f}x | {r['mfu']:.1%} | {r['peer_mfu']:.1%} "
                    f"| {r['max_loss_diff']:.0e} |")
        print(rows[-1], file=sys.stderr)
    readme = Path(__file__).with_name("README.md")
    text = readme.read_text()
    table = "<!-- results -->\n" + "\n".join(rows) + "\n<!-- /results -->"
    readme.write_text(re.sub(r"<!-- results -->.*<!-- /results -->", table, text, flags=re.S))


if __name__ == "__main__":
    main()
