from .attention import SelfAttention
from .embeddings import Embeddings, sinusoidal_table
from .transformer import ACTIVATIONS, Block, FeedForward

__all__ = ["ACTIVATIONS", "Block", "Embeddings", "FeedForward", "SelfAttention", "sinusoidal_table"]
