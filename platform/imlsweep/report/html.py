"""The report page: one self-contained HTML file (figures inlined as data URIs, no network)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from imlsweep.report.mixing import COMBINED, MixingTable
from imlsweep.report.sample_efficiency import POWER_LAW_PARAMETERS, PowerLawFit

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.86em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
tr.best td { background: #e6f4e6; font-weight: bold; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:after { content: " \\2195"; color: #aaa; }
.note { color: #666; font-size: 0.9em; } img { max-width: 100%; border: 1px solid #eee; }
"""

# Click a header to sort by it; click again to reverse. Numbers sort as numbers, blanks last.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var ascending = th.dataset.order !== "asc"; th.dataset.order = ascending ? "asc" : "desc";
      function key(row) { var t = row.cells[column].textContent.trim(); var n = parseFloat(t);
        return t === "" ? null : (isNaN(n) || !/^-?[\\d.]/.test(t) ? t : n); }
      rows.sort(function (a, b) { var x = key(a), y = key(b);
        if (x === null) return 1; if (y === null) return -1;
        var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return ascending ? c : -c; });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def cell(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, bool):
        return f'<td class="text">{esc(value)}</td>'
    if isinstance(value, (int, float)):
        text = f"{value:,.{digits}f}" if isinstance(value, float) else f"{value}"
        return f"<td>{text}</td>"
    return f'<td class="text">{esc(value)}</td>'


def image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{esc(alt)}" src="data:image/png;base64,{data}"></p>'


def frame_table(frame: pd.DataFrame, index_label: str | None = None, best: str | None = None,
                sortable: bool = False, digits: int = 2) -> str:
    header = ([f'<th class="text">{esc(index_label)}</th>'] if index_label is not None else [])
    header += [f"<th>{esc(column)}</th>" for column in frame.columns]
    css = ' class="sortable"' if sortable else ""
    lines = [f'<table{css}><thead><tr>{"".join(header)}</tr></thead><tbody>']
    for index, row in frame.iterrows():
        css = ' class="best"' if best is not None and index == best else ""
        cells = ([f'<td class="text">{esc(index)}{" &#9733;" if css else ""}</td>'] if index_label is not None else [])
        cells += [cell(value, digits) for value in row.tolist()]
        lines.append(f"<tr{css}>{''.join(cells)}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def summary_section(name: str, counts: dict[str, Any], wandb: dict[str, str] | None, n_rows: int,
                    evaluation: str | None = None) -> str:
    """`evaluation`: the name of a later `sweep eval` the report is of (None: the trials' own)."""
    planned = counts.get("trials_planned")
    trials = f"{counts['trials_in']} of {planned} trials" if planned else f"{counts['trials_in']} trials"
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(counts["by_status"].items()))
    parts = [f"<h1>Sweep {esc(name)}</h1>",
             f"<p><b>{trials}</b> in the results table ({esc(statuses)}; {n_rows} result rows).</p>"]
    if evaluation is not None:
        parts.append(f"<p>Evaluation <b>{esc(evaluation)}</b> (<code>imlsweep sweep eval</code>): the models the "
                     "sweep kept, scored again with its settings; trials that kept no model are not in it.</p>")
    elif planned and counts["trials_in"] < planned:
        parts.append('<p class="note">Partial results: the sweep is still running or some trials are '
                     "missing; every figure and table uses the trials that are in.</p>")
    if wandb:
        if wandb.get("url"):
            parts.append(f'<p>W&amp;B: <a href="{esc(wandb["url"])}">{esc(wandb["label"])}</a></p>')
        else:
            parts.append(f"<p>W&amp;B: {esc(wandb['label'])}</p>")
    return "\n".join(parts)


def fits_frame(fits: dict[str, PowerLawFit | None]) -> pd.DataFrame:
    rows = {}
    for series, fit in fits.items():
        if fit is None:
            rows[series.replace("_", "-")] = {"a": None, "b": None, "c": None, "rmse": None, "points": None, "note": ""}
        elif not fit.identifiable:
            rows[series.replace("_", "-")] = {
                "a": None, "b": None, "c": None, "rmse": None, "points": str(fit.n_points),
                "note": f"not identifiable: {fit.n_points} points for {POWER_LAW_PARAMETERS} parameters"}
        else:
            rows[series.replace("_", "-")] = {"a": fit.a, "b": fit.b, "c": fit.c, "rmse": fit.rmse,
                                              "points": str(fit.n_points), "note": ""}
    return pd.DataFrame(rows).T


def samples_text(value: float) -> str:
    return "&infin;" if math.isinf(value) else f"{value:,.0f}"


def needed_text(row: pd.Series, fit: PowerLawFit | None) -> str:
    """Samples needed, its interval when the instances gave one, or why there is no number."""
    if row["samples_needed"] is None or pd.isna(row["samples_needed"]):
        if row.get("extrapolated") is not None and not pd.isna(row["extrapolated"]):
            return f"not reached; ~{row['extrapolated']:,.0f} by the power-law fit (extrapolated)"
        if fit is not None and not fit.identifiable:
            return (f"not reached; no extrapolation: the power-law fit is not identifiable "
                    f"({fit.n_points} points for {POWER_LAW_PARAMETERS} parameters)")
        return "not reached"
    text = (f"&le; {row['samples_needed']:,.0f} (smallest sampled)" if row["at_smallest"]
            else f"{row['samples_needed']:,.0f}")
    if not pd.isna(row.get("needed_low", math.nan)):
        text += f" [{samples_text(row['needed_low'])}, {samples_text(row['needed_high'])}]"
    return text


def needed_table(needed: pd.DataFrame, fits: dict[str, PowerLawFit | None] | None = None) -> str:
    if needed.empty:
        return '<p class="note">No curve and baseline pair to compare yet.</p>'
    rows = []
    for _, row in needed.iterrows():
        reached = needed_text(row, (fits or {}).get(row["series"]))
        rows.append(f'<tr><td class="text">{esc(row["series"]).replace("_", "-")}</td>'
                    f'<td class="text">{esc(row["baseline"]).replace("_", "-")}</td>'
                    f"{cell(float(row['baseline_score']))}<td>{reached}</td></tr>")
    return ('<p class="note">Brackets: 95% bootstrap interval; &infin;: on some draws the curve never reaches '
            'the baseline.</p><table><thead><tr><th class="text">setting</th><th class="text">baseline</th>'
            "<th>baseline score</th><th>samples per task needed</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def scores_frame(points: pd.DataFrame) -> pd.DataFrame:
    """Every point with its interval and what it stands on."""
    return pd.DataFrame({
        "setting": points["series"].str.replace("_", "-"), "samples": points["samples"], "score": points["score"],
        "95% CI low": points["ci_low"], "95% CI high": points["ci_high"], "tasks": points["n_tasks"].astype(int),
        "instances": points["instances"].astype(int), "replicates": points["replicates"].astype(int)}
    ).reset_index(drop=True)


def comparisons_table(comparisons: pd.DataFrame) -> str:
    if comparisons.empty:
        return ('<p class="note">No paired comparison: no two settings share evaluated instances, or the trials '
                "left no predictions.</p>")
    return ('<p class="note">A &minus; B on the instances both evaluated (same task, item and replicate), with '
            "its 95% bootstrap interval and two-sided paired-bootstrap p-value.</p>"
            + frame_table(comparisons, sortable=True, digits=3))


def compute_section(compute: dict[str, float | None]) -> str:
    """Actual GPU-hours, trial-hours and training tokens of the trials that are in, against the plan."""
    def figure(actual: float | None, planned: float | None, unit: str, digits: int) -> str:
        text = f"{actual:,.{digits}f} {unit}" if actual is not None else f"? {unit}"
        return text + (f" of {planned:,.{digits}f} planned" if planned is not None else "")
    return (f"<p>Compute: {figure(compute['gpu_hours'], compute['planned_gpu_hours'], 'GPU-hours', 2)}; "
            f"{figure(compute['trial_hours'], None, 'trial-hours (wall time)', 2)}; "
            f"{figure(compute['train_tokens'], compute['planned_train_tokens'], 'training tokens', 0)}.</p>")


def mixing_section(key_label: str, tables: list[MixingTable], figure: Path | None) -> str:
    parts = [f"<h2>Mixing sweep: {esc(key_label)}</h2>",
             '<p class="note">Rows: swept values. Columns: category means per shot setting, their means, and '
             f"the combined mean (&#9733; best {COMBINED}).</p>"]
    for table in tables:
        parts.append(f"<h3>{esc(table.level.replace('_', ' '))}</h3>")
        parts.append(frame_table(table.table, index_label=key_label, best=table.best))
    if figure is not None:
        parts.append(image(figure, f"combined score against {key_label}"))
    return "\n".join(parts)


def page(title: str, sections: list[str]) -> str:
    body = "\n".join(sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n<script>{SORT_SCRIPT}</script></body></html>\n")
