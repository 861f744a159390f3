"""The report's tables as CSV and LaTeX, its figures as PDF, its compute summary."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pandas as pd
import pytest
from report_synthetic import eps_results, replicated_sweep, write_sweep

from imlsweep.report.build import build_report


class Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts (the ★ of a best row dropped)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self.cell).replace("\u2605", "").strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def same_cell(page_text: str, value) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return page_text == ""
    try:
        return float(page_text.replace(",", "")) == pytest.approx(float(value), abs=0.0051)
    except ValueError:
        return page_text == str(value)


def page_tables(page: str) -> list[list[list[str]]]:
    parser = Tables()
    parser.feed(page)
    return parser.tables


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweeps")
    spec = {"name": "synthetic-eps", "resources": {"workers": 2, "gpus_per_worker": 1}}
    eps = write_sweep(root / "eps", eps_results(), spec)
    (eps / "plan.json").write_text('{"total_trials": 3, "gpu_hours": 0.5, "train_tokens": 20000, '
                                   '"resources": {"gpus_per_trial": 2}}')
    return build_report(replicated_sweep(root / "replicated")), build_report(eps)


def test_every_table_on_the_page_is_exported_and_matches_it(reports):
    for paths in reports:
        tables = page_tables(paths.html.read_text())
        csvs = [path for path in paths.tables if path.suffix == ".csv"]
        # data needed to match is printed in words on the page; a mixing sweep's combined scores are its figure
        # (and an empty table is a note on the page)
        own_layout = [p for p in csvs if p.name == "data_needed.csv" or p.name.endswith("_combined.csv")
                      or pd.read_csv(p).empty]
        assert len(csvs) - len(own_layout) == len(tables) - any(p.name == "data_needed.csv" for p in own_layout)
        for csv in csvs:
            frame = pd.read_csv(csv)
            tex = csv.with_suffix(".tex").read_text()
            assert "\\begin{tabular}" in tex and all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule"))
            assert tex.count("\\\\\n") == len(frame) + 1  # header + one line per row
            if csv in own_layout:
                continue
            header = [str(c) for c in frame.columns]
            matches = [t for t in tables if t[0] == header]  # tables of the same layout come in page order
            assert matches, f"{csv.name}: no table on the page with columns {header}"
            tables.remove(matches[0])
            rows = matches[0][1:]
            assert len(rows) == len(frame), csv.name
            for row, (_, exported) in zip(rows, frame.iterrows()):
                assert all(same_cell(text, value) for text, value in zip(row, exported.tolist())), (csv.name, row)


def test_figures_have_a_pdf_beside_each_png(reports):
    for paths in reports:
        assert paths.figures
        for figure in paths.figures:
            assert figure.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_the_summary_shows_compute_used_against_the_plan(reports):
    page = reports[1].html.read_text()
    # three trials of 2 s holding 2 GPUs each; 5000 tokens each
    assert f"Compute: {3 * 2 * 2 / 3600:,.2f} GPU-hours of 0.50 planned" in page
    assert "15,000 training tokens of 20,000 planned" in page
