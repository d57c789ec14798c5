"""Small matplotlib figures rendered for the Dagster UI (markdown with an inline PNG) and MLflow."""

import base64
import io

from dagster import MetadataValue


def figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 3.2), dpi=90)
    return fig, ax


def png_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, title: str) -> MetadataValue:
    return MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def line_plot(series: dict[str, list[float]], title: str, xlabel: str, ylabel: str, x=None) -> bytes:
    fig, ax = figure()
    for label, values in series.items():
        ax.plot(x if x is not None else range(1, len(values) + 1), values, label=label, marker=".")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")  # outside the lines
    if x is not None:
        fig.autofmt_xdate()
    return png_bytes(fig)


FAN_TICKERS = 8
FAN_SESSIONS = 60


def fan_chart_png(
    rows,
    title: str = "served forecast distribution",
    date_column: str = "target_date",
    max_tickers: int = FAN_TICKERS,
    sessions: int = FAN_SESSIONS,
    columns: int = 2,
    width_inches: float = 8.5,
) -> bytes:
    """A fan chart per ticker (the first `max_tickers` in sorted order, one panel each) over the last
    `sessions` dates: the realised close, the forecast median and every central interval as a band.

    `rows`: a DataFrame with `date_column` (the session the forecast is for), `ticker`,
    `actual_close` and the forecast's price quantiles as q-columns (`quantile_column(level)`: q05,
    q25, q50, q75, q95 for the default levels). Works for performance_log rows and for a
    candidate's holdout forecasts alike."""
    import pandas as pd

    from stock_assets.lib.scoring import interval_names, quantile_levels

    levels = quantile_levels(rows)
    intervals = interval_names(levels)
    dates = sorted(rows[date_column].astype(str).unique())[-sessions:]
    shown = sorted(rows["ticker"].unique())[:max_tickers]
    frame = rows[rows[date_column].astype(str).isin(set(dates)) & rows["ticker"].isin(shown)]
    fig, axes = _panels(max(1, len(shown)), columns, width_inches)
    x = pd.to_datetime(dates)
    for ax, ticker in zip(axes, shown, strict=False):
        one = frame[frame["ticker"] == ticker].assign(_d=lambda f: f[date_column].astype(str))
        one = one.drop_duplicates("_d", keep="last").set_index("_d").reindex(dates)
        for i, (percent, (low, high)) in enumerate(sorted(intervals.items(), reverse=True)):
            ax.fill_between(
                x,
                one[_column(low)].astype(float),
                one[_column(high)].astype(float),
                color="tab:blue",
                alpha=0.15 + 0.2 * i,
                linewidth=0,
                label=f"{percent}% interval",
            )
        if 0.5 in levels:
            ax.plot(x, one[_column(0.5)].astype(float), color="tab:blue", linewidth=1.0, label="median")
        ax.plot(
            x,
            one["actual_close"].astype(float),
            color="black",
            marker=".",
            markersize=3,
            linewidth=0.6,
            label="actual close",
        )
        ax.set_title(str(ticker), fontsize="small")
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    more = rows["ticker"].nunique() - len(shown)
    fig.suptitle(f"{title}, {len(dates)} sessions" + (f" ({more} more tickers not shown)" if more > 0 else ""))
    axes[0].legend(loc="upper left", fontsize="x-small")
    fig.autofmt_xdate()
    return png_bytes(fig)


def calibration_chart_png(rows, title: str = "calibration: nominal vs observed coverage") -> bytes:
    """Observed coverage of every central interval against its nominal level, with the binomial 95%
    band of a calibrated forecast on as many rows; the baseline's too when `baseline_` q-columns are
    present. `rows`: `actual_close` and price q-columns, as for `fan_chart_png`."""
    import numpy as np

    from stock_assets.lib.distributions import binomial_band
    from stock_assets.lib.scoring import interval_names, quantile_levels

    levels = quantile_levels(rows)
    intervals = interval_names(levels)
    fig, ax = figure()
    fig.set_size_inches(5.5, 4.0)
    actual = rows["actual_close"].to_numpy(dtype=float)
    nominal = np.array([p / 100 for p in sorted(intervals)])
    counts = []
    for prefix, label, marker in (("", "served", "o"), ("baseline_", "baseline", "s")):
        if not all(prefix + _column(x) in rows for x in levels):
            continue
        observed = []
        for percent in sorted(intervals):
            low, high = intervals[percent]
            lo, hi = (
                rows[prefix + _column(low)].to_numpy(dtype=float),
                rows[prefix + _column(high)].to_numpy(dtype=float),
            )
            ok = np.isfinite(actual) & np.isfinite(lo) & np.isfinite(hi)
            observed.append(float(((lo <= actual) & (actual <= hi))[ok].mean()) if ok.any() else np.nan)
            if not prefix:
                counts.append(int(ok.sum()))
        ax.plot(nominal, observed, marker=marker, linestyle="none", label=label)
    if counts:
        bands = np.array([binomial_band(n, p) if n else (np.nan, np.nan) for n, p in zip(counts, nominal, strict=True)])
        ax.errorbar(
            nominal,
            nominal,
            yerr=[nominal - bands[:, 0], bands[:, 1] - nominal],
            fmt="none",
            ecolor="grey",
            capsize=6,
            label=f"95% band if calibrated (n={max(counts)})",
        )
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.set_title(title, fontsize="medium")
    ax.legend(loc="upper left", fontsize="small")
    return png_bytes(fig)


def _column(level: float) -> str:
    from stock_assets.lib.distributions import quantile_column

    return quantile_column(level)


def _panels(n: int, columns: int = 2, width_inches: float = 8.5):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(n, columns)
    rows = -(-n // cols)
    height = (2.2 if cols > 1 else 1.7) * rows + 0.6
    fig, axes = plt.subplots(rows, cols, figsize=(width_inches, height), dpi=90 if cols > 1 else 85, squeeze=False)
    return fig, list(axes.ravel())
