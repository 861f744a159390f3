"""The trial directory: every file a trial leaves behind, named, read and written only here.

    <storage>/<trial name>/
      trial.yaml            the resolved TrialConfig
      metrics.jsonl         training metrics, one JSON object per logged step (and val/... scores)
      checkpoint_<step>/    Ray Train checkpoints (DeepSpeed state and the data position), per retention
      hf_model/             final weights in Hugging Face format, when the trial exports them
      predictions.parquet   one row per evaluated item
      metrics.json          every level of the evaluation's aggregation
      evals/<name>/         a later evaluation of the exported model (`imlsweep sweep eval`): its own
                            predictions.parquet and metrics.json
      trial_result.json     a sweep's record of the finished trial (`TrialResult`): written last, the
                            only proof that the trial is done (completed, or stopped early)
      trial_stopped         beside the result of a trial its scheduler stopped early, so a listing
                            alone tells stopped from completed
      trial_error.txt       one block per failed attempt; its last line is the error `sweep status` shows

The directory is a storage location (`imlsweep.storage`): a local folder or an s3:// / gs:// URI.
"""

from __future__ import annotations

import io
import json
import time
import traceback
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from imlsweep import storage
from imlsweep.config import dump_config

CONFIG_FILE = "trial.yaml"
METRICS_LOG_FILE = "metrics.jsonl"
EVAL_METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.parquet"
RESULT_FILE = "trial_result.json"
ERROR_FILE = "trial_error.txt"
STOPPED_FILE = "trial_stopped"
HF_MODEL_DIR = "hf_model"
EVALS_DIR = "evals"
CHECKPOINT_PREFIX = "checkpoint_"
ATTEMPT_HEADER = "--- attempt failed at "


class TrialResult(BaseModel):
    """`trial_result.json`: what a sweep keeps of a finished trial (the evaluation is in metrics.json)."""

    model_config = ConfigDict(extra="forbid")

    trial: str
    stage: str
    status: Literal["completed", "stopped"] = "completed"  # stopped: early stopping ended it; never rerun
    labels: dict[str, Any]  # the result-table values the trial stands for (swept keys, cell labels)
    metrics: dict[str, Any]  # the trial's final report: training metrics and eval/... scalars
    train_time_s: float
    train_tokens: int
    train_examples: int
    hf_model_dir: str | None
    wandb_run_id: str | None = None
    finished: str  # local time, ISO 8601
    trial_wall_s: float  # the trial's whole time in its trainable, training and everything around it


def checkpoint_dir_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:06d}"


def is_finished(file_names: set[str]) -> bool:
    """From a listing of the directory's files: the trial finished (it has its result)."""
    return RESULT_FILE in file_names


def is_stopped(file_names: set[str]) -> bool:
    """From a listing: the trial was stopped early by its scheduler (it is finished, not completed)."""
    return STOPPED_FILE in file_names


def has_failed_attempts(file_names: set[str]) -> bool:
    return ERROR_FILE in file_names


@dataclass(frozen=True)
class TrialDir:
    uri: str

    @classmethod
    def of(cls, storage_location: str, name: str) -> TrialDir:
        """The directory of trial `name` under a storage folder or URI."""
        return cls(storage.join(storage.absolute(storage_location), name))

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def file(self, name: str) -> str:
        return storage.join(self.uri, name)

    @property
    def hf_model(self) -> str:
        return self.file(HF_MODEL_DIR)

    def evaluation(self, name: str) -> TrialDir:
        """Where the later evaluation `name` of this trial's model writes its predictions.parquet and
        metrics.json (read and written with the same methods as the trial's own evaluation)."""
        return TrialDir(storage.join(self.uri, EVALS_DIR, name))

    # -- the config ------------------------------------------------------------------------------------

    def write_config(self, config: BaseModel) -> None:
        storage.write_text(self.file(CONFIG_FILE), dump_config(config))

    def read_config_data(self) -> dict[str, Any] | None:
        """trial.yaml as data (validate it into a TrialConfig), or None when the trial never started."""
        import yaml

        text = storage.read_text(self.file(CONFIG_FILE))
        return None if text is None else yaml.safe_load(text)

    # -- training metrics -------------------------------------------------------------------------------

    def read_metrics_log(self) -> list[dict[str, Any]]:
        text = storage.read_text(self.file(METRICS_LOG_FILE))
        return [json.loads(line) for line in (text or "").splitlines() if line.strip()]

    def write_metrics_log(self, records: list[dict[str, Any]]) -> None:
        # rewritten whole: an object store cannot append to a file
        storage.write_text(self.file(METRICS_LOG_FILE),
                           "".join(json.dumps(record, sort_keys=True) + "\n" for record in records))

    # -- evaluation -------------------------------------------------------------------------------------

    def write_evaluation(self, predictions: Any, metrics: dict[str, Any]) -> None:
        """predictions.parquet (a pyarrow Table) and metrics.json."""
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(predictions, buffer)
        storage.write_bytes(self.file(PREDICTIONS_FILE), buffer.getvalue())
        storage.write_text(self.file(EVAL_METRICS_FILE), json.dumps(metrics, indent=2, allow_nan=False) + "\n")

    def read_eval_metrics(self) -> dict[str, Any] | None:
        text = storage.read_text(self.file(EVAL_METRICS_FILE))
        return json.loads(text) if text is not None else None

    def task_metrics(self) -> list[dict[str, Any]]:
        """The per-(task, shots) rows of metrics.json; empty when the trial was not evaluated."""
        return list((self.read_eval_metrics() or {}).get("tasks", []))

    def read_predictions(self) -> Any:
        """predictions.parquet as a pyarrow Table, or None."""
        import pyarrow.parquet as pq

        data = storage.read_bytes(self.file(PREDICTIONS_FILE))
        return None if data is None else pq.read_table(io.BytesIO(data))

    # -- the sweep's record -----------------------------------------------------------------------------

    def write_result(self, result: TrialResult) -> None:
        if result.status == "stopped":
            storage.write_text(self.file(STOPPED_FILE), "")
        storage.write_text(self.file(RESULT_FILE), result.model_dump_json(indent=1))

    def read_result(self) -> TrialResult | None:
        text = storage.read_text(self.file(RESULT_FILE))
        return None if text is None else TrialResult.model_validate_json(text)

    def record_error(self, error: BaseException) -> None:
        """Append this attempt's traceback (the file is rewritten whole: object stores cannot append)."""
        text = "".join(traceback.format_exception(error)).rstrip()
        path = self.file(ERROR_FILE)
        storage.write_text(path, (storage.read_text(path) or "")
                           + f"{ATTEMPT_HEADER}{time.strftime('%Y-%m-%dT%H:%M:%S')}\n{text}\n")

    def error_lines(self) -> list[str]:
        """The final line of each failed attempt's traceback."""
        text = storage.read_text(self.file(ERROR_FILE))
        blocks = (text or "").split(ATTEMPT_HEADER)
        return [block.strip().splitlines()[-1] for block in blocks if block.strip()]

    def delete_checkpoints(self) -> None:
        for name in storage.list_dirs(self.uri):
            if name.startswith(CHECKPOINT_PREFIX):
                storage.delete(self.file(name))
