"""Matplotlib figures of the report, written as PNG and PDF files (Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from imlsweep.report.results import ALL_SAMPLES  # noqa: E402
from imlsweep.report.sample_efficiency import PowerLawFit, best_supervised_baseline  # noqa: E402
from imlsweep.sweep.expand import EPS_POINT, MIXTURE_POINT_LABEL, PROPOSED_POINT  # noqa: E402

BASELINE_MARKERS = ("X", "D", "s", "^", "v", "P", "*")
DPI = 110


def save(fig: plt.Figure, path: Path) -> Path:
    """The figure as PNG at `path` (for the page) and as PDF beside it (vector, for a paper)."""
    fig.savefig(path, dpi=DPI)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return path


def _samples_ticks(ax: plt.Axes, points: pd.DataFrame) -> None:
    ticks = points[points["n"] > 0].drop_duplicates("samples").sort_values("n")
    labels = [f"all\n(~{n:,.0f})" if s == ALL_SAMPLES else str(s) for s, n in zip(ticks["samples"], ticks["n"])]
    ax.set_xscale("log")
    ax.set_xticks(ticks["n"].to_numpy(), labels)
    ax.minorticks_off()


def draw_efficiency(ax: plt.Axes, points: pd.DataFrame, fits: dict[str, PowerLawFit | None] | None,
                    title: str, metric_label: str, legend: bool = True) -> None:
    """Curves per setting, baselines as marked points, a line at the best fully supervised baseline."""
    points = points[points["kind"] != "reference"]
    series_names = sorted(set(points["series"]))
    color_of = {name: f"C{index}" for index, name in enumerate(
        sorted({name.removesuffix(" baseline") for name in series_names}))}
    curves = points[points["kind"] == "curve"]
    for series, curve in curves.groupby("series", sort=True):
        color = color_of[series]
        ax.plot(curve["n"], curve["score"], marker="o", linewidth=2, color=color, label=series.replace("_", "-"))
        if "ci_low" in curve.columns and curve["ci_low"].notna().any():
            ax.fill_between(curve["n"], curve["ci_low"], curve["ci_high"], color=color, alpha=0.2, linewidth=0)
        fit = (fits or {}).get(series)
        if fit is not None and fit.identifiable:
            grid = np.geomspace(curve["n"].min(), curve["n"].max(), 100)
            ax.plot(grid, fit.predict(grid), linestyle=":", color=color, linewidth=1.2)
    baselines = points[points["kind"] == "baseline"]
    for index, (series, baseline) in enumerate(baselines.groupby("series", sort=True)):
        ax.scatter(baseline["n"], baseline["score"], marker=BASELINE_MARKERS[index % len(BASELINE_MARKERS)],
                   s=80, color=color_of[series.removesuffix(" baseline")], edgecolors="black", zorder=3,
                   label=series.replace("_", "-"))
        if "ci_low" in baseline.columns and baseline["ci_low"].notna().any():
            ax.errorbar(baseline["n"], baseline["score"], fmt="none", ecolor="black", elinewidth=1, capsize=3,
                        yerr=[baseline["score"] - baseline["ci_low"], baseline["ci_high"] - baseline["score"]])
    best = best_supervised_baseline(points)
    if best is not None:
        ax.axhline(best["score"], color="grey", linestyle="--", linewidth=1,
                   label=f"best supervised: {best['series'].replace('_', '-')} ({best['score']:.1f})")
    if len(points):
        _samples_ticks(ax, points)
    ax.set_title(title)
    ax.set_xlabel("training samples per task (log scale)")
    ax.set_ylabel(metric_label)
    ax.grid(True, alpha=0.3)
    if legend and len(points):
        ax.legend(fontsize=8, loc="lower right")


def efficiency_figure(points: pd.DataFrame, fits: dict[str, PowerLawFit | None], path: Path,
                      metric_label: str = "ROUGE-L") -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 5))
    draw_efficiency(ax, points, fits, "Overall", metric_label)
    fig.tight_layout()
    return save(fig, path)


def efficiency_by_category_figure(points: pd.DataFrame, path: Path, metric_label: str = "ROUGE-L") -> Path:
    categories = sorted(points["category"].unique(), key=lambda c: (c == "Others", c))
    columns = min(3, max(1, len(categories)))
    rows = math.ceil(len(categories) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.9 * rows), squeeze=False)
    for ax, category in zip(axes.flat, categories):
        draw_efficiency(ax, points[points["category"] == category], None, category, metric_label, legend=False)
    for ax in list(axes.flat)[len(categories):]:
        ax.set_visible(False)
    if categories:  # one legend for all panels, below them
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=9)
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.12, 1, 1))
    return save(fig, path)


def mixing_figure(combined: pd.DataFrame, key_label: str, path: Path, numeric_values: list[float] | None) -> Path:
    """Combined score against the swept value, one line per generalization level."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = numeric_values if numeric_values is not None else list(range(len(combined.index)))
    for column in combined.columns:
        ax.plot(x, combined[column], marker="o", label=column.replace("_", " "),
                linewidth=2.5 if column == "all levels" else 1.5)
    if numeric_values is not None and min(numeric_values) > 0 and max(numeric_values) / min(numeric_values) >= 50:
        ax.set_xscale("log")
    ax.set_xticks(x, list(combined.index), rotation=30 if numeric_values is None else 0, ha="right"
                  if numeric_values is None else "center")
    ax.minorticks_off()
    ax.set_xlabel(key_label)
    ax.set_ylabel("combined score (mean of 0-shot and k-shot)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def mixture_search_figure(weights: pd.DataFrame, scores: pd.DataFrame, metric: str, path: Path) -> Path:
    """Left: each group's weight in the EPS and the proposed mixture. Right: predicted against actual score
    (proxies by their leave-one-out prediction; other trials by the fit's), with the diagonal."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    x = np.arange(len(weights.index))
    left.bar(x - 0.2, weights["EPS weight"], width=0.4, label="EPS")
    left.bar(x + 0.2, weights["proposed weight"], width=0.4, label="proposed")
    left.set_xticks(x, list(weights.index), rotation=30, ha="right")
    left.set_ylabel("weight")
    left.legend(fontsize=8)
    scored = scores.dropna(subset=["predicted", "actual"])
    points = scored[MIXTURE_POINT_LABEL].where(scored[MIXTURE_POINT_LABEL].isin([EPS_POINT, PROPOSED_POINT]),
                                                "Dirichlet draw")
    for (point, scale), rows in scored.groupby([points, "scale"], sort=False):
        marker = {EPS_POINT: "s", PROPOSED_POINT: "*"}.get(point, "o")
        right.scatter(rows["predicted"], rows["actual"], marker=marker, s=90 if marker == "*" else 30,
                      label=f"{point} ({scale})")
    if len(scored):
        low = float(min(scored["predicted"].min(), scored["actual"].min()))
        high = float(max(scored["predicted"].max(), scored["actual"].max()))
        right.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    right.set_xlabel(f"predicted {metric}")
    right.set_ylabel(f"actual {metric}")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def gain_heatmap(matrix: pd.DataFrame, path: Path, title: str, row_label: str, column_label: str) -> Path:
    """A source x target matrix of gains, diverging around 0 (blue: helps, red: hurts), values written
    in the cells while they stay readable."""
    rows, columns = matrix.shape
    fig, ax = plt.subplots(figsize=(min(18, 3 + 0.32 * columns), min(18, 2.5 + 0.3 * rows)))
    values = matrix.to_numpy(dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(columns), [str(c) for c in matrix.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(rows), [str(r) for r in matrix.index], fontsize=7)
    ax.set_xlabel(column_label)
    ax.set_ylabel(row_label)
    ax.set_title(title)
    if rows * columns <= 400:
        for (row, column), value in np.ndenumerate(values):
            if np.isfinite(value):
                ax.text(column, row, f"{value:.1f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, label="gain over the target's single-task score")
    fig.tight_layout()
    return save(fig, path)
