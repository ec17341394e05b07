"""The recurrent stack shared by the RNN, LSTM, ELMo and skip-thought members: layers of Elman (tanh), LSTM
or GRU cells, dropout between layers, every layer's output kept (ELMo mixes them).

AWD-LSTM's regularisers are options of the same stack (Merity, Keskar & Socher 2018, ICLR, §2–4):
`weight_drop` (DropConnect on each LSTM layer's hidden-to-hidden weights, `WeightDropLSTM`), `locked`
(variational dropout between layers, one mask per sequence: `LockedDropout`) and `output_size` (a last
layer as wide as the embedding, so the softmax can be tied to it). Their defaults leave a stack as before.

Shape legend: B = batch, T = sequence length, E = input size, H = hidden size, L = layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CELLS = {"tanh": lambda i, h: nn.RNN(i, h, nonlinearity="tanh", batch_first=True),  # Elman 1990
         "lstm": lambda i, h: nn.LSTM(i, h, batch_first=True),  # Hochreiter & Schmidhuber 1997
         "gru": lambda i, h: nn.GRU(i, h, batch_first=True)}  # Cho et al. 2014


class LockedDropout(nn.Module):
    """Variational dropout (Gal & Ghahramani 2016): one mask per sequence, the same at every time step,
    so a dropped unit stays dropped for the whole sequence. (B, T, D) → (B, T, D)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)  # (B, 1, D)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WeightDropLSTM(nn.LSTM):
    """An LSTM layer with DropConnect (Wan et al. 2013) on its hidden-to-hidden weights W_hh: one mask per
    forward pass, shared by every time step and sequence, in training only (Merity et al. 2018, §2).

    The raw weights are the parameters and keep nn.LSTM's names (`weight_hh_l0`, …), so state dicts are
    an LSTM's; each training pass hands the dropped copy to the same kernel nn.LSTM runs."""

    def __init__(self, input_size: int, hidden_size: int, weight_drop: float, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        if self.proj_size:
            raise ValueError("weight drop does not support proj_size")
        self.weight_drop = weight_drop

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        if not (self.training and self.weight_drop):
            return super().forward(x, hx)
        if x.dim() != 3:
            raise ValueError("a weight-dropped LSTM takes batched input (3 dimensions)")
        weights = [F.dropout(w, self.weight_drop) if name.startswith("weight_hh") else w
                   for name, w in zip(self._flat_weights_names, self._flat_weights)]
        if hx is None:
            B = x.shape[0] if self.batch_first else x.shape[1]
            h0 = x.new_zeros(self.num_layers * (2 if self.bidirectional else 1), B, self.hidden_size)
            hx = (h0, h0)
        out, h, c = torch.lstm(x, hx, weights, self.bias, self.num_layers, self.dropout, self.training,
                               self.bidirectional, self.batch_first)
        return out, (h, c)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_drop={self.weight_drop}"


class RecurrentStack(nn.Module):
    """L single-layer recurrent layers (one module each, so each layer's states are returned).

    Args:
        cell: "tanh", "lstm" or "gru".
        input_size, hidden_size, num_layers: E, H, L.
        dropout: on the input of every layer but the first.
        locked: make that dropout variational (one mask per sequence) instead of per time step.
        weight_drop: DropConnect probability on each LSTM layer's hidden-to-hidden weights (LSTM only).
        output_size: the last layer's width, when it differs from H (AWD-LSTM ties it to the embedding).
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0,
                 *, locked: bool = False, weight_drop: float = 0.0, output_size: int | None = None):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; choose from {sorted(CELLS)}")
        if weight_drop and cell != "lstm":
            raise ValueError("weight drop is defined for LSTM cells only")
        sizes = [input_size] + [hidden_size] * (num_layers - 1) + [output_size or hidden_size]

        def make(i: int, h: int) -> nn.Module:
            return WeightDropLSTM(i, h, weight_drop, batch_first=True) if weight_drop else CELLS[cell](i, h)

        self.layers = nn.ModuleList(make(sizes[i], sizes[i + 1]) for i in range(num_layers))
        self.dropout = LockedDropout(dropout) if locked else nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, reverse: bool = False) -> list[torch.Tensor]:
        """(B, T, E) → L × (B, T, H), each layer's output; `reverse` reads right to left (ELMo's backward LM),
        outputs stay aligned with the input positions."""
        if reverse:
            x = x.flip(1)
        outs = []
        for i, layer in enumerate(self.layers):
            x, _ = layer(self.dropout(x) if i else x)
            outs.append(x)
        return [o.flip(1) for o in outs] if reverse else outs


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """(B, T, D) with row b's real tokens at positions < lengths[b] → each row's real tokens in reverse
    order, padding left where it is; its own inverse. lengths None: all T tokens are real."""
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    pos = torch.arange(T, device=x.device)  # (T,)
    n = lengths.to(x.device).long()[:, None]  # (B, 1)
    index = torch.where(pos < n, n - 1 - pos, pos)  # (B, T)
    return x.gather(1, index[..., None].expand_as(x))


class BiLstm(nn.Module):
    """L bidirectional LSTM layers, each reading the [→h; ←h] of the one below (a translation encoder's
    stack: CoVe, LASER). With `lengths`, sequences are packed, so right padding never reaches a real token
    in either direction; padded positions come out as zeros.

    (B, T, E) → L × (B, T, 2H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(nn.LSTM(input_size if i == 0 else 2 * hidden_size, hidden_size,
                                            batch_first=True, bidirectional=True) for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.layers):
            inp = self.dropout(x) if i else x
            if lengths is None:
                x, _ = layer(inp)
            else:
                packed = nn.utils.rnn.pack_padded_sequence(inp, lengths.cpu(), batch_first=True, enforce_sorted=False)
                x, _ = nn.utils.rnn.pad_packed_sequence(layer(packed)[0], batch_first=True,
                                                        total_length=inp.shape[1])
            outs.append(x)
        return outs
