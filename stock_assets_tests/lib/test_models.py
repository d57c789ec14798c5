import pytest
import torch
from torch.export import Dim

from stock_assets.lib.models import (
    ARCHITECTURES,
    FlatLSTM,
    PooledLSTM,
    TemporalAttentionLSTM,
    TickerAttentionLSTM,
    attention_heads,
    build_model,
)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("batch, seq, tickers, features", [(3, 7, 4, 5), (1, 2, 1, 3), (16, 30, 10, 31)])
def test_output_is_one_value_per_ticker(architecture, batch, seq, tickers, features):
    torch.manual_seed(0)
    model = build_model(architecture, tickers, features, hidden_size=12, num_layers=2, dropout=0.1).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, seq, tickers, features))
    assert out.shape == (batch, tickers) and torch.isfinite(out).all()


def test_build_model_classes_and_dropout_only_between_stacked_layers():
    assert type(build_model("lstm", 2, 3, 8, 1, 0.3)) is FlatLSTM
    assert type(build_model("lstm_attention", 2, 3, 8, 1, 0.3)) is TemporalAttentionLSTM
    assert type(build_model("ticker_attention", 2, 3, 8, 1, 0.3)) is TickerAttentionLSTM
    assert type(build_model("pooled_lstm", 2, 3, 8, 1, 0.3)) is PooledLSTM
    for architecture in ARCHITECTURES:
        assert build_model(architecture, 2, 3, 8, 1, 0.3).lstm.dropout == 0.0
        assert build_model(architecture, 2, 3, 8, 2, 0.3).lstm.dropout == 0.3
    assert attention_heads(12) == 4 and attention_heads(6) == 2 and attention_heads(7) == 1


def test_build_model_rejects_bad_arguments():
    with pytest.raises(ValueError, match="allowed: lstm, lstm_attention, ticker_attention, pooled_lstm"):
        build_model("transformer", 2, 3, 8, 1, 0.0)
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        build_model("lstm", 2, 3, 0, 1, 0.0)
    with pytest.raises(ValueError, match="dropout"):
        build_model("lstm", 2, 3, 8, 1, 1.0)


def test_ticker_attention_uses_other_tickers():
    """Cross-ticker attention: changing ticker 1's inputs moves ticker 0's forecast."""
    torch.manual_seed(0)
    model = build_model("ticker_attention", 3, 2, 8, 1, 0.0).eval()
    x = torch.randn(2, 5, 3, 2)
    y = x.clone()
    y[:, :, 1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(x)[:, 0], model(y)[:, 0])


def test_registry_keeps_existing_names_in_order():
    assert ARCHITECTURES == ("lstm", "lstm_attention", "ticker_attention", "pooled_lstm")


def _n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("embedding", [True, False])
def test_pooled_lstm_size_does_not_grow_with_the_basket_except_for_the_embedding(embedding):
    small = PooledLSTM(4, 5, 16, 2, 0.1, ticker_embedding=embedding, embedding_size=3)
    large = PooledLSTM(500, 5, 16, 2, 0.1, ticker_embedding=embedding, embedding_size=3)
    assert _n_parameters(large) - _n_parameters(small) == ((500 - 4) * 3 if embedding else 0)
    assert small.head.out_features == 1  # one head shared by all tickers
    assert build_model("pooled_lstm", 4, 5, 16, 2, 0.1).ticker_embedding is not None  # on by default


def test_pooled_lstm_forecasts_each_ticker_from_its_own_sequence_only():
    torch.manual_seed(0)
    model = build_model("pooled_lstm", 3, 2, 8, 1, 0.0).eval()
    x = torch.randn(2, 5, 3, 2)
    y = x.clone()
    y[:, :, 1] += 1.0
    with torch.no_grad():
        before, after = model(x), model(y)
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]], rtol=0, atol=0)
    assert not torch.allclose(after[:, 1], before[:, 1])


def test_pooled_lstm_shares_weights_and_the_embedding_tells_tickers_apart():
    """The same sequence on every ticker: without an embedding every forecast is equal (and any
    ticker order is just a permutation); with a trained-apart embedding they differ."""
    torch.manual_seed(0)
    shared = PooledLSTM(4, 3, 8, 1, 0.0, ticker_embedding=False).eval()
    same = torch.randn(2, 6, 1, 3).expand(2, 6, 4, 3)
    x, order = torch.randn(2, 6, 4, 3), torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = shared(same)
        torch.testing.assert_close(out, out[:, :1].expand(2, 4))
        torch.testing.assert_close(shared(x[:, :, order]), shared(x)[:, order])
        embedded = PooledLSTM(4, 3, 8, 1, 0.0).eval()
        embedded.ticker_embedding.copy_(torch.randn(4, 4))
        out = embedded(same)
    assert not torch.allclose(out[:, 0], out[:, 1])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_exports_with_a_dynamic_batch_and_matches_eager(architecture):
    """Exported the way MLflow's pt2 flavor does (Dim.AUTO on the batch of a batch-2 example);
    the program then serves other batch sizes, including the single window of daily serving."""
    torch.manual_seed(0)
    model = build_model(architecture, 3, 4, hidden_size=8, num_layers=2, dropout=0.2).eval()
    program = torch.export.export(model, (torch.randn(2, 6, 3, 4),), dynamic_shapes=({0: Dim.AUTO},))
    exported = program.module()
    for batch in (5, 1):
        x = torch.randn(batch, 6, 3, 4)
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(
        (RuntimeError, AssertionError, ValueError)
    ):  # sequence length and ticker/feature counts are fixed per model
        exported(torch.randn(2, 7, 3, 4))
