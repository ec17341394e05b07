from . import bert, gpt, gpt2  # noqa: F401  (explicit list: each member registers on import)
from . import grover  # noqa: F401  (metadata-conditioned generation)
from . import albert, bert_wwm, distilbert, electra, ernie, nezha, roberta  # noqa: F401  (the BERT family, parents first)
from . import ernie_thu  # noqa: F401  (knowledge fusion)
from . import zen  # noqa: F401  (Chinese characters with an n-gram encoder)
from . import ernie2  # noqa: F401  (continual multi-task pre-training)
from . import xlm  # noqa: F401  (cross-lingual)
from . import transformer_xl, xlnet, unilm  # noqa: F401  (the autoregressive branch, parents first)
from . import funnel  # noqa: F401  (BERT with pooled blocks and Transformer-XL's relative attention)
from . import seq2seq  # noqa: F401  (encoder–decoders, the body first)
from . import bart, mass, t5  # noqa: F401
from . import ngram  # noqa: F401  (the lineage before the Transformer, parents first)
from . import ffnn  # noqa: F401
from . import rnn  # noqa: F401
from . import lstm  # noqa: F401
from . import word2vec  # noqa: F401
from . import elmo  # noqa: F401
from . import flair  # noqa: F401  (character-level biLM, word vectors from its states)
from . import seq_autoencoder  # noqa: F401
from . import awd_lstm  # noqa: F401
from . import context2vec  # noqa: F401
from . import cove  # noqa: F401  (translation encoders)
from . import laser  # noqa: F401
from . import doc2vec  # noqa: F401  (sentence vectors)
from . import skip_thought  # noqa: F401
from . import quick_thought  # noqa: F401
from . import gensen  # noqa: F401
from . import use  # noqa: F401
