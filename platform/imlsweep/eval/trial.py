"""A trial's evaluation, run inside the Ray Train workers after training, and its validation while it
trains (`eval.every_steps`).

Every rank builds the same item list (seeded), evaluates a strided share of it, and the rows are
gathered on every rank; after training rank 0 writes predictions.parquet and metrics.json into the
trial directory and returns the metrics, a validation returns its scores on every rank. With ZeRO-3 each forward pass gathers the sharded parameters collectively, so every rank
runs the same number of batches (a rank short of items repeats a batch) and generation keeps
stepping until all ranks are done.
"""

from __future__ import annotations

from typing import Any, Sequence

from imlsweep.errors import UserError
from imlsweep.eval.batching import batch_count
from imlsweep.eval.config import VALIDATION_PREFIX, EvalConfig
from imlsweep.eval.predict import RANK, EvalItem, predict_items
from imlsweep.eval.results import evaluation_metrics, scalar_metrics, write_evaluation
from imlsweep.trial_dir import TrialDir


def default_eval_tasks(corpus: Any, split: str) -> list[str]:
    """Every task of the corpus with instances in `split` (manifest order)."""
    manifest = corpus.manifest
    return manifest.loc[manifest[f"n_{split}"] > 0, "task_id"].tolist()


def eval_items(corpus: Any, config: EvalConfig, encoding: Any) -> list[EvalItem]:
    """The items of every task and shot setting, in a seeded, reproducible order."""
    from imlsweep.data.render import render_examples

    task_ids = config.tasks if config.tasks is not None else default_eval_tasks(corpus, config.split)
    items = []
    for shots in config.shots:
        rendered = render_examples(corpus, task_ids, config.split, encoding, seed=config.seed,
                                   max_per_task=config.max_per_task, shots=shots)
        items.extend(EvalItem.from_rendered(example, shots) for example in rendered)
    if not items:
        raise UserError(f"eval: no {config.split} instances in tasks {task_ids!r}")
    return items


def worker_share(items: Sequence[EvalItem], config: EvalConfig, rank: int,
                 world_size: int) -> tuple[list[int], list[EvalItem], tuple[int, int]]:
    """This rank's strided share of each kind of item (rank classification, generation): the global
    indices it owns, the items it runs (owned ones first, then a filler when it owns none of a kind
    other ranks have) and the number of batches of each kind every rank runs."""
    by_mode: dict[str, list[int]] = {RANK: [], "generation": []}
    for index, item in enumerate(items):
        by_mode[item.mode(config.mode)].append(index)
    owned: list[int] = []
    fillers: list[EvalItem] = []
    counts = []
    for indices in by_mode.values():
        mine = indices[rank::world_size]
        owned.extend(mine)
        if not mine and indices:
            fillers.append(items[indices[0]])
        counts.append(batch_count(-(-len(indices) // world_size), config.batch_size))
    return owned, [items[index] for index in owned] + fillers, (counts[0], counts[1])


def uses_zero3(module: Any) -> bool:
    """ZeRO-3 marks every partitioned parameter with a `ds_id`."""
    return any(hasattr(parameter, "ds_id") for parameter in module.parameters())


def gather_rows(rows: list[tuple[int, dict[str, Any]]], world_size: int) -> list[tuple[int, dict[str, Any]]]:
    import torch.distributed as dist

    if world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return rows
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, rows)
    return [row for part in gathered for row in part]


def predict_in_worker(module: Any, tokenizer: Any, items: Sequence[EvalItem], config: EvalConfig, world_rank: int,
                      world_size: int) -> list[dict[str, Any]]:
    """Every item's prediction row, in item order, on every rank (each rank predicts its share)."""
    owned, share, counts = worker_share(items, config, world_rank, world_size)
    synced = world_size > 1 and uses_zero3(module)
    was_training = module.training
    module.eval()
    try:
        rows = predict_items(module, tokenizer, share, config, batch_counts=counts if synced else None,
                             synced_ranks=synced)
    finally:
        module.train(was_training)
    gathered = gather_rows(list(zip(owned, rows[:len(owned)])), world_size)
    return [row for _, row in sorted(gathered, key=lambda pair: pair[0])]


def evaluate_in_worker(model: Any, tokenizer: Any, trial_config: Any, trial_dir: TrialDir, world_rank: int,
                       world_size: int) -> dict[str, Any] | None:
    """Evaluate `trial_config.eval` with `model` (an nn.Module or a DeepSpeed engine). Rank 0 writes
    predictions.parquet and metrics.json into `trial_dir` and returns the metrics; others return None.
    Call it on every rank."""
    config: EvalConfig | None = trial_config.eval
    if config is None:
        return None
    from imlsweep.corpus.store import Corpus

    module = getattr(model, "module", model)  # a DeepSpeed engine wraps the model
    items = eval_items(Corpus.open(trial_config.corpus), config, config.encoding or trial_config.mixture.encoding)
    ordered = predict_in_worker(module, tokenizer, items, config, world_rank, world_size)
    if world_rank != 0:
        return None
    metrics = evaluation_metrics(ordered, config)
    write_evaluation(trial_dir, ordered, metrics)
    return metrics


class Validation:
    """A trial's validation while it trains (`eval.every_steps`): its items are rendered once, and each
    call scores them with the eval settings and the OPT-IML roll-up. Every rank gets the same scores."""

    def __init__(self, trial_config: Any):
        from imlsweep.corpus.store import Corpus

        eval_config: EvalConfig = trial_config.eval
        self.every_steps: int = eval_config.every_steps
        self.config = eval_config.validation_suite()
        try:
            self.items = eval_items(Corpus.open(trial_config.corpus), self.config,
                                    self.config.encoding or trial_config.mixture.encoding)
        except UserError as error:
            raise UserError(f"{trial_config.name}: eval.validation: {error}") from None

    def due(self, step: int, final: bool) -> bool:
        return final or step % self.every_steps == 0

    def score(self, model: Any, tokenizer: Any, world_rank: int, world_size: int) -> dict[str, float]:
        """val/... scalars (see `scalar_metrics`)."""
        module = getattr(model, "module", model)
        rows = predict_in_worker(module, tokenizer, self.items, self.config, world_rank, world_size)
        return scalar_metrics(evaluation_metrics(rows, self.config), prefix=VALIDATION_PREFIX)
