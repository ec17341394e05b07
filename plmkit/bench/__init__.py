"""Side-by-side benchmarks against the peers users would otherwise run, measured in the same process run
and reported as ratios (bench/README.md holds the tables):

  pretrain  pre-training tokens/s and MFU against the transformers model (`plmkit bench pretrain`)
  infer     batch inference of a fine-tuned classifier, fp32 and int8, against transformers (`bench infer`)
  data      corpus → token ids against `datasets.map`, with peak memory (`bench data`)
  common    the matmul peak and the transformers peer built from plmkit's weights

Nothing is imported here: `bench data` runs each side in a fresh process whose memory is measured.
"""
