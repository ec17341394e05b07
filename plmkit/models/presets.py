"""Size presets shared by the transformer members (layers L, hidden H, heads N = H/64, FFN 4H).

tiny/mini/small/medium are the compact BERT sizes of Turc et al. 2019, "Well-Read Students Learn
Better", arXiv:1908.08962 (google-research/bert README: BERT-Tiny 2/128, Mini 4/256, Small 4/512,
Medium 8/512); base is BERT-Base (Devlin et al. 2019, §3) = GPT-1 (Radford et al. 2018, §4.1).
Heads for tiny and mini follow the same H/64 rule (2 and 4), as in those checkpoints.
"""

SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(num_layers=2, hidden_size=128, num_heads=2, intermediate_size=512),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024),
    "small": dict(num_layers=4, hidden_size=512, num_heads=8, intermediate_size=2048),
    "medium": dict(num_layers=8, hidden_size=512, num_heads=8, intermediate_size=2048),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, intermediate_size=3072),
}
