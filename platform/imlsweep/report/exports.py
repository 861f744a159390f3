"""Every report table as CSV and as a LaTeX table (booktabs), beside the page: `tables/<name>.csv|tex`.

The files hold the same frame the page renders (numbers unrounded in CSV, two decimals in LaTeX), so a
paper's table and the page cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TABLES_DIR = "tables"


def export_table(frame: pd.DataFrame, out: Path, name: str, index_label: str | None = None) -> list[Path]:
    """Write `frame` as tables/<name>.csv and tables/<name>.tex; `index_label` names the index column
    (None: the index is not part of the table)."""
    folder = out / TABLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    frame = frame.rename_axis(index_label).reset_index() if index_label is not None else frame
    csv, tex = folder / f"{name}.csv", folder / f"{name}.tex"
    frame.to_csv(csv, index=False)
    # to_latex writes booktabs rules (\toprule, \midrule, \bottomrule) and escapes _ % & #
    tex.write_text(frame.to_latex(index=False, float_format="%.2f", na_rep="", escape=True), encoding="utf-8")
    return [csv, tex]
