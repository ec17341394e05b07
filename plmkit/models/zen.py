"""ZEN = BERT (character-level Chinese) + an n-gram encoder over lexicon n-grams, added into the first layers. Diao et al. 2020, arXiv:1911.00720.

"ZEN: Pre-training Chinese Text Encoder Enhanced by N-gram Representations" (Findings of EMNLP 2020).
§3.1: a lexicon of n-grams is extracted from the pre-training corpus by frequency (plmkit.data.ngrams);
every input is matched against it, giving the n-grams it contains and the matching matrix M (T × N,
m_ij = 1 when character i lies inside n-gram j). §3.2: the n-grams, embedded without positions (their
order carries no meaning) plus the token type of their first character, run through their own transformer
layers (the paper: 6, beside BERT-base's 12); after char layer l ≤ K the char states receive the sum of the
layer-l representations of the n-grams covering them (Eq. 3, unnormalised, as in ZEN 1.0's release):

    h_char^l  ←  h_char^l + M · h_ngram^l          (B, T, H) += (B, T, N) @ (B, N, H)

where the next char layer reads the sum. The authors' release keeps adding the last n-gram layer's output
after every char layer past K; plmkit follows the paper's description and adds only after the first K
(K = `ngram_layers`, the depth of the n-gram encoder). ZEN 2.0 (arXiv:2105.01279) weights M by n-gram
frequency and masks whole n-grams; ZEN 1.0, here, does neither.

Pre-training is BERT's MLM (characters, 15 %, 80/10/10) + NSP (plmkit.objectives.ngrams). The model
matches its own input ids against the lexicon it holds (a buffer saved with the weights), so the n-grams
are found in the corrupted text during pre-training, as the release's data script does: an n-gram
holding a [MASK] is not matched and cannot give the masked character away. Fine-tuning heads, `embed`
and the analyses get the same matching from the same ids; a caller may pass `ngram_ids` and
`ngram_matrix` instead.

No transformers class has this model: its directory is plmkit's own.

Shape legend: B = batch, T = sequence length, H = hidden size, N = n-grams per sequence, L = lexicon
n-grams, n = the longest n-gram.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..data.ngrams import Matches, NgramMatcher
from ..errors import PlmkitError
from ..family import register
from ..layers import Block, Embeddings
from .bert import Bert, BertConfig
from .transformer import ModelOutput


@dataclasses.dataclass(frozen=True)
class ZenConfig(BertConfig):
    vocab_size: int = 21128  # Google's Chinese BERT vocabulary, which ZEN's characters reuse
    ngram_layers: int | None = None  # n-gram encoder depth = char layers it feeds; None = min(6, num_layers) (§3.2)
    ngram_vocab_size: int = 1  # rows of the n-gram table, row 0 = no n-gram; set from the lexicon
    max_ngram_length: int = 2  # tokens of the longest lexicon n-gram; set from the lexicon
    max_ngrams: int = 128  # n-grams matched per sequence at most (the release's max_ngram_in_seq)

    def validate(self) -> None:
        super().validate()
        if not 0 < self.ngram_depth <= self.num_layers:
            raise PlmkitError(f"ngram_layers must be in 1…num_layers ({self.num_layers}), got {self.ngram_depth}")
        if self.ngram_vocab_size < 1 or self.max_ngram_length < 2 or self.max_ngrams < 1:
            raise PlmkitError("need ngram_vocab_size >= 1, max_ngram_length >= 2 and max_ngrams >= 1")

    @property
    def ngram_depth(self) -> int:
        return self.ngram_layers if self.ngram_layers is not None else min(6, self.num_layers)


@register("zen", parent="bert", year=2019, paper="Diao et al. 2020, arXiv:1911.00720",
          diff={"body": ["+ n-gram encoder: transformer layers over the lexicon n-grams the input contains, "
                         "no positions",
                         "+ after each of the first K char layers: h_char += M · h_ngram (M: chars × n-grams)"],
                "tokenizer": ["WordPiece → characters (Chinese)",
                              "+ n-gram lexicon extracted from the corpus by frequency"],
                "layers": ["+ n-gram embeddings (n-gram id + token type, LayerNorm)"]},
          config=ZenConfig, objective="mlm+nsp+ngrams", tokenizer="char", influences=("ernie", "bert-wwm"))
class Zen(Bert):
    config_class = ZenConfig
    hf = None  # no transformers counterpart: saved under plmkit's names

    def build_heads(self) -> None:
        super().build_heads()
        c = self.config
        self.ngram_embeddings = Embeddings(c.ngram_vocab_size, c.hidden_size, c.max_positions, "none",
                                           c.type_vocab_size, True, c.layer_norm_eps, c.dropout, 0)
        self.ngram_layers = nn.ModuleList(
            Block(c.hidden_size, c.num_heads, c.intermediate_size, c.activation, c.dropout, c.attention_dropout,
                  False, c.norm_first, c.layer_norm_eps) for _ in range(c.ngram_depth))
        self.register_buffer("lexicon", torch.full((c.ngram_vocab_size - 1, c.max_ngram_length), -1))  # (L, n)
        self._matcher: NgramMatcher | None = None

    def set_lexicon(self, lexicon: torch.Tensor) -> None:
        """Install the lexicon: (L, n) token ids, −1 padded (plmkit.data.ngrams.lexicon_ids)."""
        c = self.config
        if tuple(lexicon.shape) != tuple(self.lexicon.shape):
            raise PlmkitError(f"a lexicon of shape {tuple(lexicon.shape)}; the config expects "
                              f"({c.ngram_vocab_size - 1}, {c.max_ngram_length})")
        with torch.no_grad():
            self.lexicon.copy_(lexicon)
        self._matcher = None

    def match(self, input_ids: torch.Tensor) -> Matches:
        """(B, T) token ids → the lexicon n-grams they contain (at most max_ngrams per row, in reading order)."""
        if self._matcher is None:  # built once from the buffer (after loading a saved model)
            self._matcher = NgramMatcher(self.lexicon.cpu())
        return self._matcher(input_ids, self.config.max_ngrams)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._matcher = None  # a new lexicon: rebuild the matcher on next use
        return super().load_state_dict(state_dict, strict, assign)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
               output_attentions: bool = False, attn_impl: str = "sdpa", rows: torch.Tensor | None = None,
               cache=None, block=None, position_ids: torch.Tensor | None = None,
               ngram_ids: torch.Tensor | None = None, ngram_matrix: torch.Tensor | None = None) -> ModelOutput:
        """As the transformer's encode, plus the n-grams: ngram_ids (B, N), 0 = none, and ngram_matrix
        (B, T, N), ZEN's M; by default the model matches input_ids against its lexicon. With `rows` every
        layer runs at every position and the rows are picked at the end. No decoding cache: an encoder."""
        self.check_encoder_inputs("ZEN", input_ids, attention_mask, cache, block)
        if (ngram_ids is None) != (ngram_matrix is None):
            raise PlmkitError("give ngram_ids and ngram_matrix together, or neither")
        T = input_ids.shape[1]
        ngram_types = None
        if ngram_ids is None:
            found = self.match(input_ids)
            ngram_ids, ngram_matrix = found.ids, found.matrix(T)
            if token_type_ids is not None:  # an n-gram's type is its first character's
                ngram_types = token_type_ids.gather(1, found.starts)
        key_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        ngram_mask = ngram_ids > 0  # (B, N)
        ngram_mask[:, 0] = True  # a row without n-grams attends to one padding slot, which M never reads
        ngram_mask = None if bool(ngram_mask.all()) else ngram_mask
        x = self.embed(input_ids, token_type_ids, position_ids)  # (B, T, H)
        g = self.ngram_embeddings(ngram_ids, ngram_types)  # (B, N, H), no positions
        m = ngram_matrix.to(x.dtype)  # (B, T, N)
        hidden, attentions = [x], []
        for i, layer in enumerate(self.layers):
            x, w = layer(x, key_mask, attn_impl, output_attentions)
            if i < len(self.ngram_layers):
                g, _ = self.ngram_layers[i](g, ngram_mask, attn_impl)
                x = x + m @ g  # (B, T, N) @ (B, N, H): each char gains the n-grams covering it
            hidden.append(x)
            attentions.append(w)
        if rows is not None:
            x = x[torch.arange(x.shape[0], device=x.device), rows].unsqueeze(1)  # (B, 1, H)
            hidden[-1] = x
        return ModelOutput(last_hidden_state=x, hidden_states=tuple(hidden) if output_hidden_states else None,
                           attentions=tuple(attentions) if output_attentions else None)
