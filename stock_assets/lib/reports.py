"""The evening reports, as pure functions of plain inputs (no Dagster): the model leaderboard, the
champion timeline and the detector's chart by session.

Inputs are what the stores hold: registry versions as `VersionRecord`s (tags, the logged model's
metrics), the warehouse's `daily_predictions` and `performance_log` frames, and the performance
log's per-partition monitor metadata. Values a row lacks (older rows, versions logged before a tag
existed) show as "-". `defs/monitoring/reports.py` turns the results into Dagster metadata.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MISSING = "-"
DRILL_PREFIX = "drill"
BASELINE_KINDS = ("persistence", "drift", "garch")


@dataclass(frozen=True)
class VersionRecord:
    """One registered model version as the leaderboard needs it."""

    version: str
    kind: str | None = None
    trained_for: str | None = None
    run_id: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)  # the logged model's (holdout_*, persistence_*)
    tags: Mapping[str, str] = field(default_factory=dict)
    promoted_for: tuple[str, ...] = ()
    gate: Mapping[str, object] | None = None  # the promotion gate's evaluation when no gate_* tag says it
    run_url: str | None = None
    version_url: str | None = None


def rounded(x, digits: int = 4):
    """`x` to `digits` significant digits; None when missing or not finite."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def _ratio(num, den):
    try:
        num, den = float(num), float(den)
    except (TypeError, ValueError):
        return None
    return rounded(num / den) if math.isfinite(num) and math.isfinite(den) and den > 0 else None


def _is_true(values: pd.Series) -> pd.Series:
    """A boolean mask of a column that may hold bools, 0/1 floats, strings or NaN (missing: False)."""
    if values.dtype == bool:
        return values
    text = values.astype(str).str.strip().str.lower()
    return text.isin({"true", "1", "1.0"})


def served_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose forecast the champion itself served (not the guard's fallback; rows made before
    the `served_by_fallback` column existed were all served by the champion)."""
    if frame.empty or "served_by_fallback" not in frame:
        return frame
    return frame[~_is_true(frame["served_by_fallback"])]


def _version_column(frame: pd.DataFrame) -> pd.Series:
    return frame["model_version"].astype(str)


def served_scores(log: pd.DataFrame) -> dict[str, float | None]:
    """Served MAE and mean pinball loss as ratios to persistence's and the persistence-EWMA baseline's
    on the same rows."""
    if log.empty:
        return {"served_mae_ratio": None, "served_pinball_ratio": None, "scored_rows": 0}
    mae = _ratio(log["abs_error"].astype(float).mean(), log["persistence_abs_error"].astype(float).mean())
    pinball = None
    if {"pinball_loss", "baseline_pinball_loss"} <= set(log.columns):
        both = log[["pinball_loss", "baseline_pinball_loss"]].astype(float).dropna()
        if len(both):
            pinball = _ratio(both["pinball_loss"].mean(), both["baseline_pinball_loss"].mean())
    return {"served_mae_ratio": mae, "served_pinball_ratio": pinball, "scored_rows": len(log)}


def _gate_value(record: VersionRecord, tag: str, key: str):
    if tag in record.tags and str(record.tags[tag]).strip():
        return record.tags[tag]
    return (record.gate or {}).get(key)


def _verdict(record: VersionRecord) -> str | None:
    verdict = _gate_value(record, "gate_verdict", "verdict")
    if verdict is None:
        return None
    word = str(verdict).split(":")[0].split(" ")[0].strip()
    return word or None


def _short_reason(reason, limit: int = 60) -> str | None:
    """The gate's reason up to its first " | " (the verdict's clauses, not its numbers), cut at `limit`."""
    if not reason:
        return None
    text = str(reason).split(" | ")[0].strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


LEADERBOARD_COLUMNS = [
    "version", "kind", "trained_for", "holdout_mae_ratio", "holdout_pinball_ratio", "dm_p_value", "verdict",
    "gate_reason", "promoted_for", "sessions_served", "served_mae_ratio", "served_pinball_ratio", "mlflow_run",
    "mlflow_version",
]  # fmt: skip
LEADERBOARD_DESCRIPTIONS = {
    "version": "registered model version",
    "kind": "model kind (persistence, garch, an LSTM architecture, drill-biased)",
    "trained_for": "the session it was trained as of",
    "holdout_mae_ratio": "holdout median MAE / persistence MAE (< 1 beats persistence)",
    "holdout_pinball_ratio": "holdout mean pinball loss / persistence-EWMA baseline's",
    "dm_p_value": "the gate's one-sided Diebold-Mariano p-value",
    "verdict": "the promotion gate's verdict",
    "gate_reason": "why",
    "promoted_for": "sessions it was promoted for",
    "sessions_served": "sessions whose forecasts it served (not the guard's fallback)",
    "served_mae_ratio": "served median MAE / persistence MAE on the same scored rows",
    "served_pinball_ratio": "served mean pinball loss / the baseline's on the same rows",
    "mlflow_run": "MLflow run",
    "mlflow_version": "MLflow model version",
}


def leaderboard(versions: Iterable[VersionRecord], predictions: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """One row per registered version, newest first: what it is, how it scored on its holdout against
    the baselines, what the gate said, when it was promoted, how many sessions it served and how its
    served forecasts scored. Missing values are None (shown as "-")."""
    served_predictions = served_rows(predictions)
    served_log = served_rows(log)
    pred_versions = _version_column(served_predictions) if len(served_predictions) else pd.Series(dtype=str)
    log_versions = _version_column(served_log) if len(served_log) else pd.Series(dtype=str)
    rows = []
    for record in sorted(versions, key=lambda r: int(r.version) if str(r.version).isdigit() else 0, reverse=True):
        m = record.metrics
        mine = served_predictions[pred_versions == str(record.version)] if len(served_predictions) else predictions
        scores = served_scores(served_log[log_versions == str(record.version)] if len(served_log) else served_log)
        reason = _gate_value(record, "gate_reason", "reason")
        rows.append(
            {
                "version": f"v{record.version}",
                "kind": record.kind,
                "trained_for": record.trained_for,
                "holdout_mae_ratio": _ratio(m.get("holdout_mae"), m.get("persistence_mae")),
                "holdout_pinball_ratio": _ratio(m.get("holdout_pinball"), m.get("persistence_pinball")),
                "dm_p_value": rounded(_gate_value(record, "gate_p_value", "p_value"), 3),
                "verdict": _verdict(record),
                "gate_reason": _short_reason(reason),
                "promoted_for": ", ".join(sorted(set(record.promoted_for))) or None,
                "sessions_served": int(mine["prediction_date"].nunique()) if len(mine) else 0,
                "served_mae_ratio": scores["served_mae_ratio"],
                "served_pinball_ratio": scores["served_pinball_ratio"],
                "mlflow_run": record.run_url,
                "mlflow_version": record.version_url,
            }
        )
    return pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)


TIMELINE_COLUMNS = [
    "from", "to", "sessions", "version", "kind", "fallback_sessions", "served_mae_ratio", "served_pinball_ratio",
]  # fmt: skip


def champion_timeline(predictions: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """Which model served when: one row per run of consecutive sessions served by one version (from
    daily_predictions), with the sessions the guard's fallback served inside it and the served
    scores of its forecasts (performance_log rows made in those sessions)."""
    if predictions.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    fallback = _is_true(predictions["served_by_fallback"]) if "served_by_fallback" in predictions else None
    per_session = (
        predictions.assign(_v=_version_column(predictions), _fb=fallback if fallback is not None else False)
        .groupby("prediction_date", sort=True)
        .agg(version=("_v", "first"), kind=("model_kind", "first"), fallback=("_fb", "any"))
        .reset_index()
    )
    segment = (per_session["version"] != per_session["version"].shift()).cumsum()
    rows = []
    for _, part in per_session.groupby(segment, sort=True):
        dates = part["prediction_date"].astype(str)
        first, last = dates.iloc[0], dates.iloc[-1]
        version = part["version"].iloc[0]
        mine = pd.DataFrame()
        if len(log):
            made = log["prediction_date"].astype(str)
            mine = served_rows(log[(made >= first) & (made <= last) & (_version_column(log) == version)])
        scores = served_scores(mine)
        rows.append(
            {
                "from": first,
                "to": last,
                "sessions": len(part),
                "version": f"v{version}",
                "kind": part["kind"].iloc[0],
                "fallback_sessions": int(part["fallback"].sum()),
                "served_mae_ratio": scores["served_mae_ratio"],
                "served_pinball_ratio": scores["served_pinball_ratio"],
            }
        )
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def display_records(frame: pd.DataFrame) -> list[dict[str, str | int | float]]:
    """Rows for a table shown to a user: missing values as "-", numbers kept as numbers."""
    out = []
    for row in frame.to_dict("records"):
        shown = {}
        for key, value in row.items():
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                shown[key] = MISSING
            elif isinstance(value, np.integer | np.floating):
                shown[key] = value.item()
            else:
                shown[key] = value
        out.append(shown)
    return out


def markdown_table(frame: pd.DataFrame, links: Mapping[str, str] | None = None) -> str:
    """`frame` as a markdown table, missing values as "-"; columns named in `links` hold URLs shown
    as [label](url) links."""
    links = links or {}
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    lines = []
    for row in display_records(frame):
        cells = []
        for column in frame.columns:
            value = row[column]
            if column in links and value != MISSING:
                value = f"[{links[column]}]({value})"
            cells.append(str(value).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return header + "\n".join(lines)


# --- the detector by session ---------------------------------------------------------------

MONITOR_KEYS = (
    "detector_statistic",
    "detector_threshold",
    "detector_fired",
    "coverage_p_value",
    "coverage_alarm",
    "champion_version",
    "champion_kind",
)


def monitor_series(entries: Iterable[tuple[str, Mapping[str, object]]]) -> pd.DataFrame:
    """(partition, performance_log metadata) pairs -> one row per session (the latest entry of a
    session wins), sorted by session; sessions with nothing scored are left out."""
    latest: dict[str, Mapping[str, object]] = {}
    for partition, metadata in entries:
        if partition and "detector_statistic" in metadata:
            latest[str(partition)] = metadata
    rows = [{"session": p, **{k: latest[p].get(k) for k in MONITOR_KEYS}} for p in sorted(latest)]
    return pd.DataFrame(rows, columns=["session", *MONITOR_KEYS])


@dataclass(frozen=True)
class Marker:
    session: str
    kind: str  # "retraining", "promotion", "drill"
    label: str = ""


MARKER_STYLE = {
    "retraining": {"color": "tab:orange", "linestyle": "--"},
    "promotion": {"color": "tab:green", "linestyle": "-"},
    "drill": {"color": "tab:red", "linestyle": "-"},
}


def detector_chart_png(
    series: pd.DataFrame, markers: Sequence[Marker], title: str = "the retraining detector"
) -> bytes:
    """Two panels by session: the CUSUM statistic against its threshold, and the coverage alarm's
    p-value (log scale) against 0.01; vertical lines mark retrainings, promotions and drills."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # ~520 px wide: the value column of the asset page's metadata table at a 1600 px window.
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.1, 5.0), dpi=85, sharex=True, height_ratios=(3, 2))
    x = pd.to_datetime(series["session"]) if len(series) else pd.to_datetime(pd.Series([], dtype=str))
    if len(series):
        statistic = pd.to_numeric(series["detector_statistic"], errors="coerce")
        threshold = pd.to_numeric(series["detector_threshold"], errors="coerce")
        top.plot(x, statistic, color="tab:blue", marker=".", linewidth=1.0, label="CUSUM statistic")
        top.plot(x, threshold, color="black", linestyle=":", linewidth=1.0, label="threshold")
        p = pd.to_numeric(series["coverage_p_value"], errors="coerce")
        bottom.plot(x, p.clip(lower=1e-6), color="tab:purple", marker=".", linewidth=1.0, label="coverage p-value")
        bottom.axhline(0.01, color="black", linestyle=":", linewidth=1.0, label="alarm at p < 0.01")
        bottom.set_yscale("log")
    else:
        top.text(0.5, 0.5, "nothing scored yet", ha="center", va="center", transform=top.transAxes)
    seen = set()
    for marker in markers:
        style = MARKER_STYLE.get(marker.kind, MARKER_STYLE["retraining"])
        when = pd.to_datetime(marker.session)
        for ax in (top, bottom):
            ax.axvline(
                when,
                linewidth=1.2,
                alpha=0.8,
                **style,
                label=marker.kind if ax is top and marker.kind not in seen else None,
            )
        seen.add(marker.kind)
        if marker.label:
            top.annotate(marker.label, (when, 1.0), xycoords=("data", "axes fraction"), fontsize="x-small",
                         rotation=90, va="top", ha="right", color=style["color"])  # fmt: skip
    top.set_title(title, fontsize="medium")
    top.set_ylabel("CUSUM (pinball vs baseline)")
    bottom.set_ylabel("90% coverage p")
    bottom.set_xlabel("session")
    for ax, where in ((top, "upper left"), (bottom, "lower left")):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc=where, fontsize="x-small", framealpha=0.8)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def markers_from(
    promotions: Iterable[tuple[str, str, str | None]], retrainings: Iterable[tuple[str, str]]
) -> list[Marker]:
    """Markers from (partition, version, kind) promotions and (partition, reason) retrainings: a
    drill's promotion is a drill, any other a promotion."""
    out = [Marker(p, "retraining", reason[:40]) for p, reason in retrainings]
    for partition, version, kind in promotions:
        drill = str(kind or "").startswith(DRILL_PREFIX)
        out.append(Marker(partition, "drill" if drill else "promotion", f"{'drill ' if drill else ''}v{version}"))
    return sorted(out, key=lambda m: (m.session, m.kind))


INLINE_MARKDOWN_CHARS = 1000  # the Dagster UI shows shorter markdown metadata inline, longer behind a button


def link_table(board: pd.DataFrame, limit: int = INLINE_MARKDOWN_CHARS) -> str:
    """The newest versions' MLflow links as a markdown table short enough for the UI to show inline
    (the leaderboard table's mlflow_run / mlflow_version columns hold every version's)."""
    columns = ["version", "kind", "verdict", "mlflow_run", "mlflow_version"]
    links = {"mlflow_run": "run", "mlflow_version": "version"}
    for n in range(len(board), 0, -1):
        text = markdown_table(board[columns].head(n), links)
        if n < len(board):
            text += f"\n\n(newest {n} of {len(board)} versions)"
        if len(text) < limit:
            return text
    return markdown_table(board[columns].head(1), links)
