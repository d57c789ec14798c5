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
