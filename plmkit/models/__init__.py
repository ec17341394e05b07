from . import bert, gpt, gpt2  # noqa: F401  (explicit list: each member registers on import)
