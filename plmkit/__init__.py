"""plmkit: pre-train, fine-tune, compress, analyse and compare pre-trained language models."""

__version__ = "0.1.0"

from .errors import PlmkitError  # noqa: E402


def load(path):
    """Load a saved model directory (plmkit's or a Hugging Face BERT/GPT one) as a torch.nn.Module."""
    from .interop.hf import load_model

    return load_model(path)


def load_tokenizer(path):
    """Load a tokenizer from a directory (tokenizer.json or vocab.txt) or a tokenizer.json file."""
    from .tokenizers import load_tokenizer as _load

    return _load(path)


def generate(model, tokenizer, prompts, **settings):
    """Continue a prompt or a batch of prompts: greedy, sampling, beam search (plmkit.generation.generate)."""
    from .generation import generate as _generate

    return _generate(model, tokenizer, prompts, **settings)


__all__ = ["PlmkitError", "generate", "load", "load_tokenizer", "__version__"]
