"""Synthetic sweep results with known structure (power-law curves, a best EPS), for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

CATEGORIES = {  # category -> number of tasks: eight, so the two smallest are clubbed into "Others"
    "Textual Entailment": 5, "Title Generation": 4, "Coreference Resolution": 4, "Data to Text": 3,
    "Question Rewriting": 3, "Answerability Classification": 3, "Word Analogy": 2, "Keyword Tagging": 1,
}
SAMPLES = (100, 200, 1000, "all")
POOL = 3000  # every task's training pool: "all" sits at 3000 on the samples axis
CURVE = {"single_task": (75.0, 60.0, 0.3), "multi_task": (78.0, 55.0, 0.35)}  # a, b, c
BASELINE_PENALTY = 4.0
ZERO_SHOT = 50.0


def power_law(a: float, b: float, c: float, n: float) -> float:
    return a - b * n ** (-c)


def tasks() -> list[tuple[str, str]]:
    return [(f"task{len(CATEGORIES) * i + j:03d}_{category.split()[0].lower()}", category)
            for j, (category, count) in enumerate(CATEGORIES.items()) for i in range(count)]


def sample_efficiency_results() -> pd.DataFrame:
    """A noise-free 961-style grid: every task scores exactly the setting's power law; the
    pre-finetuned model (no samples of the evaluated tasks) scores ZERO_SHOT."""
    rows = []
    for setting, (a, b, c) in CURVE.items():
        for instructions in (True, False):
            for samples in SAMPLES:
                n = POOL if samples == "all" else samples
                cell = f"{'inst' if instructions else 'plain'}_{samples}"
                score = power_law(a, b, c, n) - (0 if instructions else BASELINE_PENALTY)
                for task_id, category in tasks():
                    trial = f"{setting}-{cell}" + (f"-{task_id}" if setting == "single_task" else "")
                    rows.append({
                        "sweep": "synthetic-961", "stage": "main", "trial": trial, "status": "completed",
                        "task_id": task_id, "benchmark": "niv2", "category": category, "level": "fully_held_out",
                        "shots": 0, "rougeL": score, "exact_match": score / 2, "accuracy": np.nan,
                        "score": score, "n_eval": 20, "train_examples": n if setting == "single_task" else n * 25,
                        "train_time_s": 1.0, "train_tokens": 100 * n,
                        "samples_per_task": str(samples), "setting": setting, "instructions": instructions,
                        "cell": cell,
                    })
    for task_id, category in tasks():  # the pre-finetuned model, scored without samples of the tasks
        rows.append({
            "sweep": "synthetic-961", "stage": "prefinetune", "trial": "prefinetune-f_m1", "status": "completed",
            "task_id": task_id, "benchmark": "niv2", "category": category, "level": "fully_held_out", "shots": 0,
            "rougeL": ZERO_SHOT, "exact_match": 0.0, "accuracy": np.nan, "score": ZERO_SHOT, "n_eval": 20,
            "train_examples": 0, "train_time_s": 1.0, "train_tokens": 0, "samples_per_task": "0",
            "setting": "multi_task", "instructions": False, "cell": "f_m1",
        })
    return pd.DataFrame(rows)


def eps_results() -> pd.DataFrame:
    """An EPS sweep over three levels at 0 and 5 shots; eps 4096 is best by construction."""
    rows = []
    rng = np.random.default_rng(0)
    for eps in (128, 4096, 1_000_000):
        bonus = {128: 1.0, 4096: 3.0, 1_000_000: 0.0}[eps]
        for level in ("fully_held_out", "partially_supervised", "fully_supervised"):
            for shots in (0, 5):
                for task_id, category in tasks()[:10]:
                    score = 40 + bonus + 10 * (shots > 0) + rng.uniform(0, 1)
                    rows.append({
                        "sweep": "synthetic-eps", "stage": "main", "trial": f"eps-{eps}", "status": "completed",
                        "task_id": f"{task_id}_{level}", "benchmark": "niv2", "category": category, "level": level,
                        "shots": shots, "rougeL": score, "exact_match": np.nan, "accuracy": np.nan, "score": score,
                        "n_eval": 10, "train_examples": 1000, "train_time_s": 2.0, "train_tokens": 5000, "eps": eps,
                    })
    return pd.DataFrame(rows)


def write_sweep(directory: Path, table: pd.DataFrame, spec: dict | None = None, planned_trials: int | None = None) -> Path:
    """A sweep directory as a run leaves it: results.parquet, and sweep.yaml and plan.json when given."""
    directory.mkdir(parents=True, exist_ok=True)
    table.to_parquet(directory / "results.parquet", index=False)
    if spec is not None:
        (directory / "sweep.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    if planned_trials is not None:
        (directory / "plan.json").write_text(json.dumps({"total_trials": planned_trials}), encoding="utf-8")
    return directory


REPLICATED_SAMPLES = (10, 20, 40, 80)
REPLICATED_TASKS = (("task1_entail", "Textual Entailment"), ("task2_entail", "Textual Entailment"),
                    ("task3_title", "Title Generation"), ("task4_title", "Title Generation"))
MULTI_TASK_ADVANTAGE = 15.0


def replicated_sweep(directory: Path, replicates: int = 2, items: int = 25, seed: int = 0) -> Path:
    """A small sample-efficiency sweep with replicates, as a run leaves it: results.parquet and each
    trial's predictions.parquet. Items score 0 or 1 with a probability on a power law; multi-task is
    MULTI_TASK_ADVANTAGE points above single-task, instructions change nothing (a null difference)."""
    from imlsweep.eval.results import predictions_table
    from imlsweep.trial_dir import TrialDir

    rng = np.random.default_rng(seed)
    rows = []
    for setting in ("single_task", "multi_task"):
        for instructions in (True, False):
            for samples in REPLICATED_SAMPLES:
                chance = power_law(60.0, 80.0, 0.4, samples) + (MULTI_TASK_ADVANTAGE if setting == "multi_task" else 0)
                for replicate in range(replicates):
                    cell = f"{'inst' if instructions else 'plain'}_{samples}"
                    per_trial = [[task] for task in REPLICATED_TASKS] if setting == "single_task" else [REPLICATED_TASKS]
                    for trained in per_trial:
                        trial = f"{setting}-{cell}" + (f"-{trained[0][0]}" if setting == "single_task" else "")
                        trial += f"-r{replicate}"
                        predictions = []
                        for task_id, category in trained:
                            scores = (rng.random(items) < chance / 100).astype(float)
                            predictions += [{"example_id": f"{task_id}-{i}", "task_id": task_id, "shots": 0,
                                             "mode": "generation", "rougeL": score, "exact_match": score}
                                            for i, score in enumerate(scores)]
                            rows.append({
                                "sweep": "replicated", "stage": "main", "trial": trial, "status": "completed",
                                "task_id": task_id, "benchmark": "niv2", "category": category,
                                "level": "fully_held_out", "shots": 0, "rougeL": 100 * scores.mean(),
                                "exact_match": 100 * scores.mean(), "accuracy": np.nan, "score": 100 * scores.mean(),
                                "n_eval": items, "train_examples": samples * len(trained), "train_time_s": 1.0,
                                "train_tokens": 100 * samples, "samples_per_task": str(samples), "setting": setting,
                                "instructions": instructions, "cell": cell, "replicate": replicate})
                        TrialDir(str(directory / trial)).write_evaluation(predictions_table(predictions), {})
    return write_sweep(directory, pd.DataFrame(rows), {"name": "replicated"})


def with_predictions(directory: Path, table: pd.DataFrame) -> Path:
    """Each trial's predictions.parquet for a results table: n_eval items per row, each scoring the row's score."""
    from imlsweep.eval.results import predictions_table
    from imlsweep.trial_dir import TrialDir

    for trial, rows in table.groupby("trial"):
        items = [{"example_id": f"{row.task_id}-{i}", "task_id": row.task_id, "shots": int(row.shots),
                  "mode": "generation", "rougeL": row.score / 100, "exact_match": 0.0}
                 for row in rows.itertuples() for i in range(int(row.n_eval))]
        TrialDir(str(directory / trial)).write_evaluation(predictions_table(items), {})
    return directory
