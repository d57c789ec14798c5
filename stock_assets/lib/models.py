"""The forecasting architectures and their registry (`ARCHITECTURES`, `build_model`).

Every architecture maps (batch, seq_len, n_tickers, n_features) -> (batch, n_tickers): one scaled
next-session log return per ticker. Forward passes use shape arithmetic only (no Python branches
on tensor values), so each model exports with `torch.export.export` and a dynamic batch size;
sequence length, ticker count and feature count are fixed per model.
"""

from __future__ import annotations

import torch
from torch import nn


def attention_heads(hidden_size: int) -> int:
    """Heads for nn.MultiheadAttention: the largest of 4, 2, 1 that divides hidden_size."""
    return next(h for h in (4, 2, 1) if hidden_size % h == 0)


def _lstm(input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.LSTM:
    # nn.LSTM only applies dropout between stacked layers; with one layer it would only warn.
    return nn.LSTM(
        input_size, hidden_size, num_layers=num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
    )


class FlatLSTM(nn.Module):
    """One LSTM over the concatenated features of all tickers; a linear head per output ticker."""

    def __init__(self, n_tickers: int, n_features: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = _lstm(n_tickers * n_features, hidden_size, num_layers, dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_tickers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.flatten(2))  # (batch, seq, hidden)
        return self.head(self.dropout(out[:, -1]))


class TemporalAttentionLSTM(nn.Module):
    """LSTM over the flattened tickers, then self-attention across time steps.

    The last step attends over the whole window (residual + layer norm), so patterns earlier in
    the window can reach the head without surviving the LSTM's recurrence alone.
    """

    def __init__(self, n_tickers: int, n_features: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = _lstm(n_tickers * n_features, hidden_size, num_layers, dropout)
        self.attention = nn.MultiheadAttention(
            hidden_size, attention_heads(hidden_size), dropout=dropout, batch_first=True
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_tickers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(x.flatten(2))  # (batch, seq, hidden)
        attended, _ = self.attention(hidden, hidden, hidden, need_weights=False)
        mixed = self.norm(hidden + attended)
        return self.head(self.dropout(mixed[:, -1]))


class TickerAttentionLSTM(nn.Module):
    """A shared per-ticker LSTM, attention across tickers, and a separate linear head per ticker.

    Tickers are folded into the batch so every ticker is encoded by the same weights; a learned
    ticker embedding tells the cross-ticker attention which encoding belongs to whom.
    """

    def __init__(self, n_tickers: int, n_features: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.n_tickers = n_tickers
        self.lstm = _lstm(n_features, hidden_size, num_layers, dropout)
        self.ticker_embedding = nn.Parameter(torch.zeros(n_tickers, hidden_size))
        self.attention = nn.MultiheadAttention(
            hidden_size, attention_heads(hidden_size), dropout=dropout, batch_first=True
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head_weight = nn.Parameter(torch.empty(n_tickers, hidden_size))
        self.head_bias = nn.Parameter(torch.zeros(n_tickers))
        nn.init.normal_(self.ticker_embedding, std=0.02)
        nn.init.uniform_(self.head_weight, -(hidden_size**-0.5), hidden_size**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, n_tickers, n_features = x.shape
        per_ticker = x.permute(0, 2, 1, 3).reshape(batch * n_tickers, seq_len, n_features)
        out, _ = self.lstm(per_ticker)
        encoded = out[:, -1].reshape(batch, n_tickers, -1) + self.ticker_embedding  # (batch, tickers, hidden)
        attended, _ = self.attention(encoded, encoded, encoded, need_weights=False)
        mixed = self.dropout(self.norm(encoded + attended))
        return (mixed * self.head_weight).sum(dim=-1) + self.head_bias


class PooledLSTM(nn.Module):
    """One LSTM and one linear head shared by every ticker, run over each ticker's own sequence.

    Tickers are folded into the batch, so each ticker-day is a sample for the same weights: the
    cross-section pools into one large training set and the parameter count does not grow with
    the basket (only the optional embedding does). No ticker sees another ticker's inputs.

    The ticker embedding is concatenated to every step's input rather than added after the LSTM:
    through a linear head an added embedding could only act as a per-ticker intercept, whereas at
    the input it lets the shared recurrence condition on which stock it is reading. It starts near
    zero, so the model begins fully pooled and only tells tickers apart where that pays off.
    """

    def __init__(
        self,
        n_tickers: int,
        n_features: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        *,
        ticker_embedding: bool = True,
        embedding_size: int = 4,
    ) -> None:
        super().__init__()
        if ticker_embedding:
            self.ticker_embedding = nn.Parameter(torch.empty(n_tickers, embedding_size))
            nn.init.normal_(self.ticker_embedding, std=0.02)
        else:
            self.register_parameter("ticker_embedding", None)
        extra = embedding_size if ticker_embedding else 0
        self.lstm = _lstm(n_features + extra, hidden_size, num_layers, dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq_len, n_tickers, _ = x.shape
        if self.ticker_embedding is not None:
            x = torch.cat([x, self.ticker_embedding.expand(batch, seq_len, -1, -1)], dim=-1)
        per_ticker = x.permute(0, 2, 1, 3).reshape(batch * n_tickers, seq_len, -1)
        out, _ = self.lstm(per_ticker)  # (batch * tickers, seq, hidden)
        return self.head(self.dropout(out[:, -1])).reshape(batch, n_tickers)


_CLASSES: dict[str, type[nn.Module]] = {
    "lstm": FlatLSTM,
    "lstm_attention": TemporalAttentionLSTM,
    "ticker_attention": TickerAttentionLSTM,
    "pooled_lstm": PooledLSTM,
}
ARCHITECTURES = tuple(_CLASSES)


def build_model(
    architecture: str, n_tickers: int, n_features: int, hidden_size: int, num_layers: int, dropout: float
) -> nn.Module:
    """Instantiate one of ARCHITECTURES; bad names or sizes fail here, not mid-training."""
    if architecture not in _CLASSES:
        raise ValueError(f"unknown architecture {architecture!r}; allowed: {', '.join(ARCHITECTURES)}")
    sizes = {"n_tickers": n_tickers, "n_features": n_features, "hidden_size": hidden_size, "num_layers": num_layers}
    for name, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return _CLASSES[architecture](int(n_tickers), int(n_features), int(hidden_size), int(num_layers), float(dropout))


class QuantileNetwork(nn.Module):
    """A location-scale distribution head over any two of the architectures above: one network gives
    the median, the other the log of the spread, and a learned shape shared by the tickers places the
    quantiles around the median as non-negative increments, so quantiles never cross by construction
    (docs/decisions.md, "Forecasts are distributions"). (batch, seq, tickers, features) ->
    (batch, tickers, levels), in scaled-target units; trained with the pinball loss over the levels."""

    def __init__(self, location: nn.Module, spread: nn.Module, levels: tuple[float, ...]) -> None:
        super().__init__()
        from scipy.stats import norm

        z = norm.ppf(list(levels))
        middle = int(len(levels) // 2)
        if abs(levels[middle] - 0.5) > 1e-12:
            raise ValueError(f"levels must hold 0.5 in their middle, got {list(levels)}")
        self.location, self.spread, self.middle = location, spread, middle
        # Start from the Gaussian shape: increments between neighbouring levels' normal quantiles,
        # stored through the inverse of softplus so that they stay positive while they learn.
        up, down = torch.tensor(z[middle + 1 :] - z[middle:-1]), torch.tensor(z[1 : middle + 1] - z[:middle])
        self.up = nn.Parameter(torch.log(torch.expm1(up.float())))
        self.down = nn.Parameter(torch.log(torch.expm1(down.float().flip(0))))

    def shape(self) -> torch.Tensor:
        """The standardized quantiles (levels,): 0 at the median, increasing."""
        up = torch.cumsum(nn.functional.softplus(self.up), dim=0)
        down = -torch.cumsum(nn.functional.softplus(self.down), dim=0).flip(0)
        return torch.cat([down, torch.zeros(1, dtype=up.dtype), up])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        median = self.location(x)
        scale = torch.exp(torch.clamp(self.spread(x), -10.0, 5.0))
        return median.unsqueeze(-1) + scale.unsqueeze(-1) * self.shape()


def build_quantile_model(
    architecture: str,
    n_tickers: int,
    n_features: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    levels: tuple[float, ...],
) -> QuantileNetwork:
    """`architecture` for the median and for the spread, under one `QuantileNetwork` head."""
    sizes = (n_tickers, n_features, hidden_size, num_layers, dropout)
    return QuantileNetwork(build_model(architecture, *sizes), build_model(architecture, *sizes), tuple(levels))
