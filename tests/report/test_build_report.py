"""The whole report from sweep directories: partial results, figures, HTML, CLI."""

from __future__ import annotations

import json
import re

import pytest
from report_synthetic import eps_results, sample_efficiency_results, write_sweep

from imlsweep.cli import main
from imlsweep.errors import UserError
from imlsweep.report.build import build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def partial_grid(tmp_path_factory):
    """A 961-style sweep still running: the single-task "all" cell and a few tasks are missing, one
    trial failed without scores, and the spec plans 961 trials."""
    results = sample_efficiency_results()
    results = results[~((results["setting"] == "single_task") & (results["samples_per_task"] == "all")
                        & results["instructions"])]
    results = results[~results["task_id"].isin(["task000_textual", "task017_title"])
                      | (results["setting"] == "multi_task")]
    failed = results["trial"] == "single_task-plain_100-task001_title"
    results.loc[failed, ["status", "score", "rougeL"]] = ["failed", None, None]
    spec = {"name": "synthetic-961", "tracking": {"project": "imlsweep-grid", "entity": "lab", "mode": "offline"}}
    sweep_dir = write_sweep(tmp_path_factory.mktemp("sweeps") / "synthetic-961", results, spec, planned_trials=961)
    return sweep_dir, results["trial"].nunique()


@pytest.fixture(scope="module")
def partial_report(partial_grid):
    sweep_dir, _ = partial_grid
    return build_report(sweep_dir)


def test_partial_results_render_and_say_how_many_trials_are_in(partial_grid, partial_report):
    sweep_dir, trials_in = partial_grid
    page = partial_report.html.read_text()
    assert partial_report.out_dir == sweep_dir / "report"
    assert f"{trials_in} of 961 trials" in page
    assert "failed: 1" in page and "Partial results" in page
    assert "Data needed to match" in page and "Power-law fit" in page
    # The single-task curve lost its "all" point: three sizes for three parameters, no fit to report.
    assert re.search(r'single-task</td>(<td></td>){4}<td class="text">3</td><td class="text">not identifiable: 3 points', page)
    assert re.search(r"multi-task</td><td>\d", page)
    # The zero-sample model is in the scores table (samples "0"), not on the log axis.
    assert re.search(r'<td class="text">multi-task baseline</td><td class="text">0</td><td>50.00</td>', page)


def test_report_is_self_contained_with_readable_figures(partial_report):
    page = partial_report.html.read_text()
    names = sorted(path.name for path in partial_report.figures)
    assert names == ["sample_efficiency.png", "sample_efficiency_by_category.png"]
    for path in partial_report.figures:
        assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 10_000
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r"""(src|href)=["']https?://""", page)  # nothing is fetched from the network
    assert 'class="sortable"' in page and "addEventListener" in page
    assert "wandb sync" in page  # offline runs: the project and group, no link


def test_per_task_table_has_a_row_per_result(partial_grid, partial_report):
    sweep_dir, _ = partial_grid
    import pandas as pd

    rows = len(pd.read_parquet(sweep_dir / "results.parquet"))
    body = partial_report.html.read_text().rsplit('class="sortable"', 1)[1]  # the per-task table is the last
    assert body.count("<tr>") == rows + 1  # header row + one per result


def test_mixing_sweep_report_marks_the_best_value(tmp_path):
    sweep_dir = write_sweep(tmp_path / "eps", eps_results())
    paths = build_report(sweep_dir, tmp_path / "out")
    page = paths.html.read_text()
    assert [p.name for p in paths.figures] == ["mixing_eps.png"]
    assert page.count('<tr class="best"><td class="text">4096 &#9733;') == 3  # one per level
    assert "3 trials" in page and "Sample efficiency" not in page


def test_online_runs_get_a_wandb_link(tmp_path):
    spec = {"name": "eps-sweep", "tracking": {"wandb": True, "project": "imlsweep", "entity": "lab", "mode": "auto"}}
    sweep_dir = write_sweep(tmp_path / "eps", eps_results(), spec)
    assert "wandb sync" in build_report(sweep_dir).html.read_text()  # auto, and no online run dir
    (sweep_dir / "eps-4096" / "wandb" / "run-20260101_000000-abc").mkdir(parents=True)
    assert 'href="https://wandb.ai/lab/imlsweep/groups/eps-sweep"' in build_report(sweep_dir).html.read_text()


def test_cli_prints_where_the_report_is(tmp_path, capsys):
    sweep_dir = write_sweep(tmp_path / "eps", eps_results())
    assert main(["report", str(sweep_dir), "--out", str(tmp_path / "r"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["html"] == str(tmp_path / "r" / "report.html")
    assert printed["figures"] == [str(tmp_path / "r" / "mixing_eps.png")]
    assert str(tmp_path / "r" / "tables" / "per_task.tex") in printed["tables"]
    assert main(["report", str(sweep_dir)]) == 0
    assert capsys.readouterr().out == f"report: {sweep_dir / 'report' / 'report.html'}\n"


def test_bad_sweep_directories_are_named(tmp_path, capsys):
    with pytest.raises(UserError, match="no results.parquet"):
        build_report(tmp_path)
    table = eps_results().drop(columns=["category"])
    write_sweep(tmp_path / "bad", table)
    assert main(["report", str(tmp_path / "bad")]) == 2
    assert "missing columns category" in capsys.readouterr().err


def test_a_sweep_whose_trials_all_failed_still_gets_a_page(tmp_path):
    """`results.parquet` as the sweep writes it for failed trials: one bare row each, no task columns."""
    import pandas as pd

    rows = pd.DataFrame({"sweep": ["s", "s"], "stage": ["multi_task"] * 2, "trial": ["a", "b"],
                         "status": ["error", "error"], "task_id": [None, None], "category": [None, None],
                         "level": [None, None], "shots": [None, None], "score": [None, None],
                         "rougeL": [None, None], "samples_per_task": ["8", "all"],
                         "setting": ["multi_task"] * 2, "instructions": [True, False]})
    paths = build_report(write_sweep(tmp_path / "s", rows, {"name": "s"}, planned_trials=2))
    page = paths.html.read_text()
    assert "2 of 2 trials" in page and "error: 2" in page and "No finished trial yet" in page
    assert paths.figures == []


def test_terminal_summary_has_a_row_per_setting(partial_report, partial_grid):
    _, trials = partial_grid
    summary = partial_report.summary
    assert f"{trials} of 961 trials in" in summary and "mean ROUGE-L by setting" in summary
    assert "single_task" in summary and "multi_task" in summary
