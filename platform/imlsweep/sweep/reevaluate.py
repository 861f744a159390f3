"""`imlsweep sweep eval SWEEP_DIR EVAL.yaml [--name NAME]`: the kept models of a finished sweep scored
again with other eval settings (other tasks, shots, rank classification, longer generations), without
training.

EVAL.yaml holds keys of a trial's `eval` (`imlsweep.eval.config.EvalConfig`): the keys it gives replace
the trial's own, the others stay each trial's (its tasks, its encoding, ...). Every trial that completed
and kept its exported model (`hf_model/`: `retention.hf_model: all`, or with `dependencies` the trials
later ones start from) is scored by one Ray task, holding a CPU (a GPU on a GPU sweep), that writes
`<trial>/evals/<name>/` (predictions.parquet, metrics.json, as a trial's own evaluation) and adds the
scores to the trial's W&B run. Their rows join results.parquet under `eval` = NAME, replacing those of an
earlier evaluation of that name; `imlsweep report --eval NAME` reports them.

Everything is checked before Ray starts: the eval keys (file, trial, key), the task names against the
corpus, and that the sweep keeps at least one model (else the error says which retention would have).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imlsweep.config import ConfigError, read_yaml, validate_config
from imlsweep.errors import UserError
from imlsweep.eval.config import EvalConfig
from imlsweep.sweep.expand import PlannedTrial
from imlsweep.sweep.results import DEFAULT_EVAL
from imlsweep.sweep.sweep import Sweep
from imlsweep.train.config import TrialConfig
from imlsweep.trial_dir import CONFIG_FILE, TrialResult

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Rescored:
    """A trial to score again: its config as it ran with the new eval settings, and its record."""

    trial: PlannedTrial
    result: TrialResult


@dataclass
class SweepEvaluation:
    sweep: Sweep
    name: str
    source: str  # the EVAL.yaml errors name
    trials: list[Rescored]
    without_model: list[str]  # completed trials that kept no model


def evaluation_name(eval_file: str | Path, name: str | None) -> str:
    """--name, else the file's stem; a file and folder name, and never the trials' own evaluation."""
    chosen = name if name is not None else Path(eval_file).stem
    if not NAME.match(chosen) or chosen == DEFAULT_EVAL:
        raise UserError(f"sweep eval: name {chosen!r}: use letters, digits, '_', '.', '-' and not "
                        f"{DEFAULT_EVAL!r} (the trials' own evaluation){'; pass --name' if name is None else ''}")
    return chosen


def read_overrides(eval_file: str | Path) -> dict[str, Any]:
    """The eval keys EVAL.yaml gives, each checked (an unknown or bad key fails naming file and key)."""
    data = read_yaml(eval_file)
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{eval_file}: expected a mapping of eval keys ({', '.join(EvalConfig.model_fields)})")
    validate_config(data, EvalConfig, str(eval_file))
    return data


def rescored_config(config: TrialConfig, overrides: dict[str, Any], source: str) -> TrialConfig:
    """The trial's config with its eval settings replaced key by key."""
    own = config.eval.model_dump(mode="json") if config.eval is not None else {}
    evaluation = validate_config(own | overrides, EvalConfig, f"{source}: trial {config.name}")
    return config.model_copy(update={"eval": evaluation})


def prepare(sweep_dir: str, eval_file: str | Path, name: str | None) -> SweepEvaluation:
    """What `sweep eval` scores, checked before Ray starts."""
    from imlsweep import storage
    from imlsweep.sweep.state import all_trials, driver_alive, is_completed, trial_files
    from imlsweep.sweep.sweep import open_sweep_dir

    source = str(eval_file)
    chosen = evaluation_name(eval_file, name)
    overrides = read_overrides(eval_file)
    sweep = open_sweep_dir(sweep_dir)
    if driver_alive(sweep.uri):
        raise UserError(f"{sweep.uri}: its driver is running; `sweep eval` scores a finished sweep")
    files = trial_files(sweep.uri)
    trials, without_model = [], []
    for planned in all_trials(sweep):
        if not is_completed(files, planned.name):
            continue
        trial_dir = sweep.trial_dir(planned.name)
        result = trial_dir.read_result()
        # the model in this sweep directory (a sweep copied or synced elsewhere has it there, not where it ran)
        if result is None or result.hf_model_dir is None or not storage.is_dir(trial_dir.hf_model):
            without_model.append(planned.name)
            continue
        config = validate_config(trial_dir.read_config_data(), TrialConfig, trial_dir.file(CONFIG_FILE))
        trials.append(Rescored(replace(planned, config=rescored_config(config, overrides, source)), result))
    if not trials:
        raise UserError(no_models_message(sweep, without_model))
    evaluation = SweepEvaluation(sweep=sweep, name=chosen, source=source, trials=trials, without_model=without_model)
    check_evaluation(evaluation)
    return evaluation


def no_models_message(sweep: Sweep, without_model: list[str]) -> str:
    retention = sweep.spec.retention.hf_model
    if not without_model:
        return f"{sweep.uri}: no trial has completed: nothing to evaluate"
    return (f"{sweep.uri}: none of its {len(without_model)} completed trials kept a model to evaluate (trial "
            f"{without_model[0]}{' and more' if len(without_model) > 1 else ''}: no hf_model/); retention.hf_model "
            f"is {retention!r}: set `retention: {{hf_model: all}}` in the spec to keep every trial's model")


def check_evaluation(evaluation: SweepEvaluation) -> None:
    """The task names the new eval settings give are in the sweep's corpus (the checks of `sweep plan`)."""
    from imlsweep.corpus.store import Corpus
    from imlsweep.sweep.checks import check_sweep

    sweep = replace(evaluation.sweep, trials=[rescored.trial for rescored in evaluation.trials])
    problems = [problem for problem in check_sweep(sweep, Corpus.open(sweep.corpus_dir))
                if problem.key.startswith("eval.")]
    if problems:
        raise ConfigError("\n".join(problem.line(evaluation.source) for problem in problems))


def evaluate_trial(evaluation: SweepEvaluation, rescored: Rescored) -> dict[str, float]:
    """Score one trial's exported model (in a Ray task): writes `<trial>/evals/<name>/`, logs the scores
    on the trial's W&B run, returns its flat scores."""
    from imlsweep.data.tokenizer import cached_tokenizer
    from imlsweep.eval.results import scalar_metrics
    from imlsweep.eval.trial import evaluate_in_worker
    from imlsweep.train.model import load_model

    sweep, trial = evaluation.sweep, rescored.trial
    trial_dir = sweep.trial_dir(trial.name)
    model = load_model(trial.config.model, init_from=trial_dir.hf_model)
    tokenizer = cached_tokenizer(trial.config.model.tokenizer_name)
    evaluated = trial_dir.evaluation(evaluation.name)
    metrics = evaluate_in_worker(model, tokenizer, trial.config, evaluated, world_rank=0, world_size=1)
    scores = scalar_metrics(metrics)
    tracking = sweep.spec.tracking
    if tracking.wandb and rescored.result.wandb_run_id is not None:
        from imlsweep.storage import local_folder
        from imlsweep.sweep.tracking import log_evaluation

        log_evaluation(tracking, sweep=sweep.spec.name, stage=trial.stage, trial=trial.name,
                       wandb_dir=local_folder(trial_dir.uri), evaluation=evaluation.name, summary=scores,
                       tasks=evaluated.task_metrics())
    return scores


def run_evaluation(evaluation: SweepEvaluation) -> dict[str, dict[str, float]]:
    """Every trial's evaluation as a Ray task (Ray initialised); then the rows into results.parquet.
    Returns each trial's flat scores."""
    import ray

    from imlsweep.sweep.results import other_evaluations, trial_rows, write_table

    sweep = evaluation.sweep
    gpus = 1 if sweep.spec.resources.gpus_per_worker > 0 else 0
    task = ray.remote(evaluate_trial).options(num_cpus=1, num_gpus=gpus)
    shared = ray.put(evaluation)
    pending = {task.remote(shared, rescored): rescored.trial.name for rescored in evaluation.trials}
    scores = dict(zip(pending.values(), ray.get(list(pending))))
    rows = [row for rescored in evaluation.trials
            for row in trial_rows(sweep.spec.name, rescored.trial, sweep.trial_dir(rescored.trial.name),
                                  rescored.result, evaluation.name)]
    write_table(sweep.uri, rows, other_evaluations(sweep.uri, evaluation.name))
    return scores


def format_evaluation(evaluation: SweepEvaluation, scores: dict[str, dict[str, float]]) -> str:
    lines = [f"sweep eval {evaluation.name}: {len(scores)} trials scored with {evaluation.source}, rows in "
             f"results.parquet under eval = {evaluation.name}"]
    for trial, values in scores.items():
        shown = {key: value for key, value in values.items() if key in ("eval/combined", "eval/rougeL", "eval/accuracy")}
        lines.append(f"  {trial}: " + "  ".join(f"{key.removeprefix('eval/')} {value:.2f}" for key, value in shown.items()))
    if evaluation.without_model:
        lines.append(f"not scored, no model kept ({len(evaluation.without_model)}): "
                     + ", ".join(evaluation.without_model[:5]) + (", ..." if len(evaluation.without_model) > 5 else ""))
    return "\n".join(lines)
