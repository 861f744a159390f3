"""`imlsweep eval run`: evaluate a checkpoint on an eval suite with Ray Data batch inference.

Items are rendered on the driver, streamed through an actor pool (one model replica per actor: one
per GPU on a cluster, CPU actors in tests), and the rows come back to the driver, which scores,
aggregates and writes predictions.parquet and metrics.json like a trial does.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from imlsweep import storage
from imlsweep.config import StrictModel, load_config
from imlsweep.data.encodings import EncodingConfig
from imlsweep.eval.config import EvalConfig
from imlsweep.eval.predict import EvalItem
from imlsweep.eval.results import PREDICTIONS_SCHEMA
from imlsweep.train.model import ModelConfig

INDEX = "item_index"


class EvalRunConfig(StrictModel):
    model: ModelConfig = Field(description="the checkpoint: a Hugging Face folder, a hub id or a tiny model")
    corpus: str = Field(description="a built corpus directory")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    replicas: int = Field(default=1, ge=1, description="model replicas (actors); one per GPU with use_gpu")
    use_gpu: bool = False


def load_eval_run_config(path: str | Path) -> EvalRunConfig:
    return load_config(path, EvalRunConfig)


class ItemPredictor:
    """A Ray Data actor holding one model replica."""

    def __init__(self, model: dict[str, Any], eval_config: dict[str, Any]):
        import torch

        from imlsweep.data.tokenizer import cached_tokenizer
        from imlsweep.train.model import load_model

        model_config = ModelConfig.model_validate(model)
        self.config = EvalConfig.model_validate(eval_config)
        self.tokenizer = cached_tokenizer(model_config.tokenizer_name)
        self.model = load_model(model_config).eval()
        if torch.cuda.is_available():
            self.model = self.model.cuda()

    def __call__(self, batch: pa.Table) -> pa.Table:
        from imlsweep.eval.predict import predict_items

        records = batch.to_pylist()
        items = [EvalItem(**{key: value for key, value in record.items() if key != INDEX}) for record in records]
        rows = predict_items(self.model, self.tokenizer, items, self.config)
        columns = {name: [row.get(name) for row in rows] for name in PREDICTIONS_SCHEMA.names}
        table = pa.Table.from_pydict(columns, schema=PREDICTIONS_SCHEMA)
        return table.append_column(INDEX, pa.array([record[INDEX] for record in records], pa.int64()))


def predict_with_ray(items: list[EvalItem], config: EvalRunConfig) -> list[dict[str, Any]]:
    import ray

    records = [{INDEX: index, **asdict(item)} for index, item in enumerate(items)]
    dataset = ray.data.from_items(records, override_num_blocks=max(1, min(len(records), 4 * config.replicas)))
    predictions = dataset.map_batches(
        ItemPredictor, batch_format="pyarrow", batch_size=config.eval.batch_size,
        fn_constructor_kwargs={"model": config.model.model_dump(), "eval_config": config.eval.model_dump()},
        compute=ray.data.ActorPoolStrategy(size=config.replicas),
        num_gpus=1 if config.use_gpu else 0, num_cpus=0 if config.use_gpu else 1)
    table = pa.concat_tables(ray.get(predictions.to_arrow_refs()))
    if table.num_rows != len(items):
        raise RuntimeError(f"eval run: {len(items)} items went in, {table.num_rows} predictions came back")
    return table.sort_by(INDEX).drop_columns([INDEX]).to_pylist()


def run_eval(config: EvalRunConfig, out_dir: str | Path) -> dict[str, Any]:
    """Render, predict on the actor pool, score; writes predictions.parquet and metrics.json."""
    from imlsweep.corpus.store import Corpus
    from imlsweep.eval.results import evaluation_metrics, write_evaluation
    from imlsweep.eval.trial import eval_items
    from imlsweep.trial_dir import TrialDir

    items = eval_items(Corpus.open(config.corpus), config.eval, config.eval.encoding or EncodingConfig())
    rows = predict_with_ray(items, config)
    metrics = evaluation_metrics(rows, config.eval)
    write_evaluation(TrialDir(storage.absolute(str(out_dir))), rows, metrics)
    return metrics
