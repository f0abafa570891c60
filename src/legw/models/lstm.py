"""LSTM models of the LEGW paper: the MNIST row-by-row classifier and the PTB language model."""

from __future__ import annotations

import torch
from torch import nn

Hidden = tuple[torch.Tensor, torch.Tensor]


class LSTMClassifier(nn.Module):
    """Image classifier that reads an image as a sequence of rows (You et al. 2019, §MNIST).

    A ``28 x 28`` image is 28 time steps of 28 pixels; a linear head maps the last hidden state
    of the top layer to class logits. The model takes **float** images of shape ``(B, 28, 28)``
    (or ``(B, 1, 28, 28)``), already scaled to [0, 1] and normalized by the caller
    (see ``legw.data.mnist.normalize``); raw ``uint8`` pixels raise ``ValueError``.
    """

    def __init__(
        self,
        input_size: int = 28,
        hidden_size: int = 128,
        num_layers: int = 1,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers), ("num_classes", num_classes)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.input_size = input_size
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: float ``(B, steps, input_size)`` -> logits ``(B, num_classes)``."""
        if not x.is_floating_point():
            raise ValueError(
                f"LSTMClassifier expects float images scaled to [0, 1] and normalized, got "
                f"{x.dtype}; convert with legw.data.mnist.normalize"
            )
        if x.dim() == 4 and x.shape[1] == 1:
            x = x.squeeze(1)
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"LSTMClassifier expects (B, steps, {self.input_size}), got {tuple(x.shape)}"
            )
        _, (h_n, _) = self.lstm(x)  # h_n: (num_layers, B, H)
        return self.head(h_n[-1])


class LSTMLanguageModel(nn.Module):
    """Word-level LSTM language model (Zaremba, Sutskever, Vinyals 2014, arXiv 1409.2329).

    embedding -> dropout -> ``num_layers`` LSTM (dropout between layers) -> dropout -> linear.
    Every parameter is initialized uniformly in ``[-init_range, init_range]`` as in the paper.
    PTB small: ``hidden_size=200, num_layers=2, dropout=0.0, init_range=0.1``;
    PTB large: ``hidden_size=1500, num_layers=2, dropout=0.65, init_range=0.04``.

    Layout (time-major, as produced by ``legw.data.ptb.batchify``)::

        tokens (T, B) -> embed (T, B, H) -> LSTM (T, B, H) -> logits (T, B, V)
        hidden = (h, c), each (num_layers, B, H)
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float = 0.0,
        init_range: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if init_range <= 0:
            raise ValueError(f"init_range must be > 0, got {init_range}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(hidden_size, hidden_size, num_layers,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    def init_hidden(self, batch_size: int) -> Hidden:
        """Zero ``(h, c)`` of shape ``(num_layers, batch_size, hidden_size)``."""
        w = self.decoder.weight  # its device and dtype (a plain tensor also when sharded)
        shape = (self.num_layers, batch_size, self.hidden_size)
        zeros = torch.zeros(shape, dtype=w.dtype, device=w.device)
        return (zeros, zeros.clone())

    def forward(
        self, tokens: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        """``tokens``: int64 ``(T, B)`` -> (logits ``(T, B, V)``, new hidden)."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (T, B), got shape {tuple(tokens.shape)}")
        if hidden is None:
            hidden = self.init_hidden(tokens.shape[1])
        x = self.drop(self.embedding(tokens))
        out, hidden = self.lstm(x, hidden)
        return self.decoder(self.drop(out)), hidden

    @staticmethod
    def detach_hidden(hidden: Hidden) -> Hidden:
        return detach_hidden(hidden)


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph between BPTT windows: keep the state's values, drop its history."""
    return tuple(h.detach() for h in hidden)  # type: ignore[return-value]


def hidden_to(hidden: Hidden, device: torch.device) -> Hidden:
    """The state moved to ``device`` (checkpoints keep it on the CPU)."""
    return tuple(h.to(device) for h in hidden)  # type: ignore[return-value]
