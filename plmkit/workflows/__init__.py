"""The jobs a user runs end to end, each stringing the rooms together: `pretrain` (corpus → tokenizer →
shards → the member's objective → a saved model), `finetune` (a body + a head on a task), `recipe`
(general → domain → task pre-training → fine-tuning) and `quickstart`. A workflow owns the run directory
and the progress a user sees; the model math lives in models/, objectives/, heads/ and train/."""
