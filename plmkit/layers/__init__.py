from .attention import CrossAttention, SelfAttention
from .embeddings import Embeddings, TaskEmbeddings, sinusoidal_table
from .transformer import ACTIVATIONS, NORMS, Block, DecoderBlock, FeedForward, make_norm

__all__ = ["ACTIVATIONS", "NORMS", "Block", "CrossAttention", "DecoderBlock", "Embeddings", "FeedForward",
           "SelfAttention", "TaskEmbeddings", "make_norm", "sinusoidal_table"]
