"""Build the bundled offline price sample from public-domain data (run once; output is committed).

Source: the Quandl WIKI prices shipped in the `bokeh_sampledata` package (public domain; see
stock_assets/data/PROVENANCE.md). Usage: `python scripts/build_sample_data.py` (needs the dev extra).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pandas as pd

TICKERS = ("AAPL", "MSFT", "IBM", "GOOG")
OUT = Path(__file__).resolve().parents[1] / "stock_assets" / "data" / "sample_prices.csv.gz"


def main() -> None:
    import bokeh_sampledata

    src = Path(bokeh_sampledata.__file__).parent / "_data" / "stocks.csv.gz"
    raw = pd.read_csv(src)
    frame = (
        raw[raw["Ticker"].isin(TICKERS)]
        .rename(columns={"Ticker": "ticker", "Date": "date", "Adj Close": "adj_close"})
        .rename(columns=str.lower)
    )
    # The WIKI dump carries no corporate-action columns; adj_close embeds splits and dividends.
    frame = frame.assign(dividends=0.0, stock_splits=0.0)
    frame = frame[
        ["date", "ticker", "open", "high", "low", "close", "adj_close", "volume", "dividends", "stock_splits"]
    ]
    frame = frame.sort_values(["ticker", "date"]).reset_index(drop=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip byte-identical across rebuilds.
    with gzip.GzipFile(OUT, "wb", mtime=0) as fh:
        fh.write(frame.to_csv(index=False, float_format="%.6f").encode())
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    summary = frame.groupby("ticker")["date"].agg(["min", "max", "count"])
    print(summary.to_string())
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
