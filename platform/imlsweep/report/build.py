"""`build_report`: a sweep directory's results -> report.html, PNG + PDF figures, CSV + LaTeX tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from imlsweep.report import html
from imlsweep.report.built_on import (
    built_on_stages,
    extreme_transfers,
    gain_matrix,
    merge_comparisons,
    merge_scores,
    source_ranking,
    transfer_gains,
)
from imlsweep.report.exports import export_table
from imlsweep.report.intervals import (
    efficiency_comparisons,
    efficiency_intervals,
    mixing_comparisons,
    needed_intervals,
    with_intervals,
)
from imlsweep.report.mixture_search import fit_summary, predicted_vs_actual, search_stages, weights_frame
from imlsweep.report.mixing import combined_scores, mixing_tables, ordered_values, printed_label, swept_printed_labels
from imlsweep.report.plots import (
    efficiency_by_category_figure,
    efficiency_figure,
    gain_heatmap,
    mixing_figure,
    mixture_search_figure,
)
from imlsweep.report.results import SweepResults, compute_used, load_instances, load_sweep_results, trial_counts
from imlsweep.report.sample_efficiency import (
    club_small_categories,
    data_needed_to_match,
    efficiency_points,
    power_law_fits,
)
from imlsweep.storage import local_folder
from imlsweep.sweep.results import DEFAULT_EVAL
from imlsweep.sweep.proposal import read_proposal

REPORT_FILE = "report.html"
TASK_TABLE_COLUMNS = ("trial", "status", "task_id", "category", "level", "shots", "score", "rougeL",
                      "exact_match", "accuracy", "n_eval", "train_examples", "train_time_s")


@dataclass
class ReportPaths:
    html: Path
    figures: list[Path] = field(default_factory=list)  # PNGs; each has a PDF beside it
    tables: list[Path] = field(default_factory=list)  # every table as CSV and LaTeX
    summary: str = ""  # a short plain-text table for the terminal

    def table(self, frame: pd.DataFrame, name: str, index_label: str | None = None) -> pd.DataFrame:
        """Export `frame` (as the page shows it) and return it for the page."""
        self.tables += export_table(frame, self.out_dir, name, index_label)
        return frame

    @property
    def out_dir(self) -> Path:
        return self.html.parent


def build_report(sweep_dir: str | Path, out_dir: str | Path | None = None, seed: int = 0,
                 evaluation: str = DEFAULT_EVAL) -> ReportPaths:
    """Write report.html (self-contained) and its PNG figures. `sweep_dir` is a folder or an s3:// / gs://
    URI; the report is written locally, by default to SWEEP_DIR/report (SWEEP_DIR/report-<evaluation> for a
    later `sweep eval`), for a URI in the sweep's folder on this machine (`local_folder`). `seed` seeds the
    bootstrap of every interval; `evaluation` picks the results' rows: the trials' own or a `sweep eval`."""
    results = load_sweep_results(sweep_dir, evaluation)
    local = local_folder(str(sweep_dir))
    default_out = local / ("report" if evaluation == DEFAULT_EVAL else f"report-{evaluation}")
    out = Path(out_dir) if out_dir is not None else default_out
    out.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(html=out / REPORT_FILE)
    named = None if evaluation == DEFAULT_EVAL else evaluation
    sections = [html.summary_section(results.name, trial_counts(results), wandb_link(results.spec, local),
                                     len(results.table), named) + html.compute_section(compute_used(results))]
    instances = load_instances(sweep_dir, results.table, evaluation)
    if results.has_sample_efficiency:
        sections.append(sample_efficiency_section(results, instances, seed, paths))
    for key in results.mixing_keys:
        sections.append(mixing_section(results, key, instances, seed, paths))
    for stage in search_stages(results.spec):
        sections.append(mixture_search_section(results, str(sweep_dir), stage, paths))
    for stage in built_on_stages(results.spec, "from_each"):
        sections.append(transfer_section(results, stage, instances, seed, paths))
    merges = built_on_stages(results.spec, "merge")
    if merges:
        sections.append(merge_section(results, merges, instances, seed, paths))
    sections.append("<h2>Per task</h2>" + html.frame_table(paths.table(task_table(results), "per_task"), sortable=True))
    title = f"Sweep {results.name}" + (f", evaluation {named}" if named else "")
    paths.html.write_text(html.page(title, sections), encoding="utf-8")
    paths.summary = terminal_summary(results)
    return paths


def terminal_summary(results: SweepResults) -> str:
    """Mean score per setting and samples per task (sample-efficiency sweeps), or the combined score
    per swept value (mixing sweeps), as plain text."""
    counts = trial_counts(results)
    statuses = ", ".join(f"{count} {status}" for status, count in counts["by_status"].items())
    parts = [f"sweep {results.name}: {counts['trials_in']} of {counts.get('trials_planned', '?')} trials in ({statuses})"
             + ("" if results.evaluation == DEFAULT_EVAL else f"; evaluation {results.evaluation}")]
    if results.has_sample_efficiency:
        points = efficiency_points(results.table)
        if len(points):
            table = points.pivot_table(index="series", columns="samples", values="score", sort=False)
            parts.append("mean ROUGE-L by setting (rows) and samples per task (columns)\n"
                         + table.round(2).to_string())
    for key in results.mixing_keys:
        tables = mixing_tables(results.table, [key])
        if tables:
            parts.append(f"combined score by {key}\n" + combined_scores(tables).round(2).to_string())
    return "\n\n".join(parts)


def sample_efficiency_section(results: SweepResults, instances: pd.DataFrame | None, seed: int,
                              paths: ReportPaths) -> str:
    table, out, figures = results.table, paths.out_dir, paths.figures
    points = efficiency_points(table)
    intervals = efficiency_intervals(table, instances, seed)
    points = with_intervals(points, intervals)
    fits = power_law_fits(points)
    parts = ["<h2>Sample efficiency</h2>",
             '<p class="note">ROUGE-L (mean over evaluated instances) against training samples per task, '
             'log scale. Lines: trained with instructions, one per setting; markers: baselines '
             'without instructions, in their setting\'s colour; dashed line: the best fully supervised baseline; dotted: power-law '
             'fit. "all" is placed at the mean training-pool size of the tasks. Bands and bars: 95% bootstrap '
             'intervals over evaluation instances and replicates (seed ' + str(seed) + ').</p>']
    if points.empty:
        return "\n".join(parts + ['<p class="note">No finished trial yet.</p>'])
    figures.append(efficiency_figure(points, fits, out / "sample_efficiency.png"))
    parts.append(html.image(figures[-1], "sample efficiency, overall"))
    clubbed = table.assign(category=club_small_categories(table["category"], table["task_id"]))
    by_category = efficiency_points(clubbed, group="category")
    by_category = with_intervals(by_category, efficiency_intervals(clubbed, instances, seed, group="category"),
                                 group="category")
    figures.append(efficiency_by_category_figure(by_category, out / "sample_efficiency_by_category.png"))
    parts.append("<h3>By category</h3>" + html.image(figures[-1], "sample efficiency by category"))
    needed = paths.table(needed_intervals(points, intervals, data_needed_to_match(points), fits), "data_needed")
    parts.append("<h3>Data needed to match</h3>" + html.needed_table(needed, fits))
    parts.append('<h3>Power-law fit: score = a &minus; b &middot; n<sup>&minus;c</sup></h3>'
                 + html.frame_table(paths.table(html.fits_frame(fits), "power_law_fits", "setting"),
                                    index_label="setting", digits=3))
    parts.append("<h3>Scores</h3>" + html.frame_table(paths.table(html.scores_frame(points), "scores"), sortable=True))
    comparisons = paths.table(efficiency_comparisons(clubbed, instances, seed), "paired_comparisons")
    parts.append("<h3>Paired comparisons</h3>" + html.comparisons_table(comparisons))
    return "\n".join(parts)


def mixing_section(results: SweepResults, key: str, instances: pd.DataFrame | None, seed: int,
                   paths: ReportPaths) -> str:
    tables = mixing_tables(results.table, [key])
    if not tables:
        return html.mixing_section(key, [], None)
    for table in tables:
        paths.table(table.table, f"mixing_{safe_name(key)}_{table.level}", key)
    combined = paths.table(combined_scores(tables), f"mixing_{safe_name(key)}_combined", key)
    numeric = pd.to_numeric(pd.Series(combined.index), errors="coerce")
    figure = mixing_figure(combined, key, paths.out_dir / f"mixing_{safe_name(key)}.png",
                           None if numeric.isna().any() else numeric.tolist())
    paths.figures.append(figure)
    labels = swept_printed_labels(results.table, [key])
    baseline = ordered_values(results.table, [key])[0]
    comparisons = paths.table(mixing_comparisons(results.table, instances, labels, seed, baseline),
                              f"mixing_{safe_name(key)}_paired")
    return (html.mixing_section(key, tables, figure) + f"<h3>Paired comparisons: each {html.esc(key)} &minus; "
            f"{html.esc(baseline)}</h3>" + html.comparisons_table(comparisons))


def mixture_search_section(results: SweepResults, sweep_dir: str, stage: str, paths: ReportPaths) -> str:
    title = f"<h2>Mixture search: {html.esc(stage)}</h2>"
    proposal = read_proposal(sweep_dir, stage)
    if proposal is None:
        return title + '<p class="note">No proposed mixture yet: the proxy trials have not all finished.</p>'
    name = f"mixture_search_{safe_name(stage)}"
    weights = paths.table(weights_frame(proposal), f"{name}_weights", "group")
    scores = paths.table(predicted_vs_actual(proposal, results.table, sweep_dir), f"{name}_scores", "trial")
    figure = mixture_search_figure(weights, scores, proposal["metric"], paths.out_dir / f"{name}.png")
    paths.figures.append(figure)
    return "\n".join([title, f'<p class="note">{html.esc(fit_summary(proposal))}</p>',
                      "<h3>Proposed weights against the EPS mixture</h3>",
                      html.frame_table(weights, index_label="group", digits=3),
                      html.image(figure, "proposed vs EPS weights; predicted vs actual scores"),
                      "<h3>Predicted vs actual</h3>", html.frame_table(scores, index_label="trial", digits=3,
                                                                       sortable=True)])


def transfer_section(results: SweepResults, stage: Any, instances: pd.DataFrame | None, seed: int,
                     paths: ReportPaths) -> str:
    """The source x target matrix of gains over the target's single-task score, by task and by category,
    sources ranked per target and per target category, the best and worst transfers."""
    name = safe_name(stage.name)
    parts = [f"<h2>Transfer: stage {html.esc(stage.name)}</h2>",
             '<p class="note">Gain = the score on the target task of a model trained on the source task and then on '
             "the target, minus the target's own single-task score (the " + html.esc(stage.sources["stage"])
             + " trial of the target); intervals: 95% paired bootstrap over the target's evaluated instances "
             f"(seed {seed}).</p>"]
    gains = transfer_gains(results.table, instances, stage, seed)
    if gains.empty:
        return "\n".join(parts + ['<p class="note">No finished transfer trial yet.</p>'])
    paths.table(gains, f"transfer_{name}_gains")
    matrix = paths.table(gain_matrix(gains), f"transfer_{name}_matrix", "source_task")
    paths.figures.append(gain_heatmap(matrix, paths.out_dir / f"transfer_{name}.png", "Gain by source and target task",
                                      "source task", "target task"))
    parts.append(html.image(paths.figures[-1], "transfer gains by task"))
    by_category = paths.table(gain_matrix(gains, "source_category", "target_category"),
                              f"transfer_{name}_category_matrix", "source_category")
    paths.figures.append(gain_heatmap(by_category, paths.out_dir / f"transfer_{name}_by_category.png",
                                      "Mean gain by source and target category", "source category", "target category"))
    parts.append("<h3>By category</h3>" + html.image(paths.figures[-1], "transfer gains by category"))
    best, worst = extreme_transfers(gains)
    parts.append("<h3>Best transfers</h3>" + html.frame_table(paths.table(best, f"transfer_{name}_best"), digits=3))
    parts.append("<h3>Worst transfers</h3>" + html.frame_table(paths.table(worst, f"transfer_{name}_worst"), digits=3))
    ranked = paths.table(source_ranking(gains), f"transfer_{name}_sources_per_target")
    parts.append("<h3>Best sources per target task</h3>" + html.frame_table(ranked, sortable=True, digits=3))
    ranked = paths.table(source_ranking(gains, "target_category", "source_category"),
                         f"transfer_{name}_sources_per_category")
    parts.append("<h3>Best source categories per target category</h3>" + html.frame_table(ranked, sortable=True, digits=3))
    parts.append("<h3>Every transfer</h3>" + html.frame_table(gains, sortable=True, digits=3))
    return "\n".join(parts)


def merge_section(results: SweepResults, stages: list[Any], instances: pd.DataFrame | None, seed: int,
                  paths: ReportPaths) -> str:
    """Merged models against the single-task model of each task and the multi-task model, per task,
    per category and overall."""
    parts = ["<h2>Merged models</h2>",
             '<p class="note">Each merged model (named by its stage and settings) is scored on the tasks of its group; '
             "single-task: the model trained on that task alone; multi-task: the trials the merge stage is set against. "
             f"Differences: 95% paired bootstrap over the instances both evaluated (seed {seed}).</p>"]
    scores = merge_scores(results.table, stages)
    if scores.empty:
        return "\n".join(parts + ['<p class="note">No finished trial yet.</p>'])
    comparisons = paths.table(merge_comparisons(results.table, instances, stages, seed), "merge_comparisons")
    parts.append("<h3>By category and overall</h3>" + html.frame_table(comparisons, sortable=True, digits=3))
    parts.append("<h3>Per task</h3>" + html.frame_table(paths.table(scores, "merge_per_task"), sortable=True))
    return "\n".join(parts)


def task_table(results: SweepResults) -> pd.DataFrame:
    columns = [c for c in TASK_TABLE_COLUMNS[:2] if c in results.table.columns] + results.swept_keys
    columns += [c for c in TASK_TABLE_COLUMNS[2:] if c in results.table.columns]
    table = results.table[columns].copy()
    for key in results.swept_keys:
        table[key] = table[key].map(lambda value: value if isinstance(value, (int, float, bool)) else printed_label(value))
    return table.sort_values([c for c in ("trial", "task_id", "shots") if c in table.columns]).reset_index(drop=True)


def safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def wandb_link(spec: dict[str, Any], sweep_dir: Path) -> dict[str, str] | None:
    """The W&B project and group (the sweep's name); a link when the runs went to the server.

    `mode: auto` runs online only when WANDB_API_KEY was set, so the trial directories tell:
    online runs leave `wandb/run-*`, offline ones `wandb/offline-run-*` (W&B writes them locally:
    `sweep_dir` is the sweep's folder on this machine)."""
    tracking = spec.get("tracking")
    if not isinstance(tracking, dict) or not tracking.get("wandb", True) or not tracking.get("project"):
        return None
    mode = tracking.get("mode", "auto")
    online = mode == "online" or (mode == "auto" and any(sweep_dir.glob("*/wandb/run-*")))
    group = spec.get("name") or sweep_dir.name
    label = f"project {tracking['project']}, group {group}"
    if not online:
        return {"label": label + " (offline runs: `wandb sync` them to see them online)"}
    entity = tracking.get("entity")
    if not entity:
        return {"label": label + " (under your default entity)"}
    return {"label": label, "url": f"https://wandb.ai/{entity}/{tracking['project']}/groups/{group}"}
