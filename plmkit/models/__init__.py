from . import bert, gpt  # noqa: F401  (explicit list: each member registers on import)
