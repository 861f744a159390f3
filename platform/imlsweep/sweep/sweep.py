"""A sweep: its spec, where it lives, its corpus and every planned trial, opened from a spec file (plan,
run) or from its sweep directory (resume, status, report).

Opening expands every trial and validates every TrialConfig, so a bad key fails here, before anything
runs. The sweep directory is a storage location (`imlsweep.storage`: a local folder or an s3:// / gs://
URI), so a new head node resumes a sweep from its bucket. It holds:

    sweep.yaml        the spec as run, its corpus and storage resolved: what `resume` reopens
    plan.json         the plan the run started with (`imlsweep.sweep.plan`)
    results.parquet   the results table (`imlsweep.sweep.results`)
    driver.json       the running driver (`imlsweep.sweep.state`)
    <stage>.proposal.json   a mixture search's fit and proposed mixture (`imlsweep.sweep.proposal`)
    <trial name>/     one trial directory per trial (`imlsweep.trial_dir`)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imlsweep import storage
from imlsweep.config import ConfigError, validate_config
from imlsweep.sweep.corpus import corpus_location
from imlsweep.sweep.expand import PlannedTrial, expand_spec
from imlsweep.sweep.spec import SweepSpec, load_spec
from imlsweep.trial_dir import TrialDir

SPEC_FILE = "sweep.yaml"
PLAN_FILE = "plan.json"


@dataclass
class Sweep:
    spec: SweepSpec
    source: str  # the file errors name
    uri: str  # the sweep directory: an absolute local path, or an s3:// / gs:// URI
    corpus_dir: Path
    trials: list[PlannedTrial]
    trials_by_name: dict[str, PlannedTrial] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.trials_by_name = {trial.name: trial for trial in self.trials}

    @property
    def dir(self) -> Path:
        """The sweep directory's folder on this machine (the directory itself when it is local)."""
        return storage.local_folder(self.uri)

    def trial_dir(self, name: str) -> TrialDir:
        return TrialDir(storage.join(self.uri, name))

    def stage_trials(self, stage: str) -> list[PlannedTrial]:
        return [trial for trial in self.trials if trial.stage == stage]

    def planned_count(self, stage: str) -> int:
        """Trials a stage runs: its planned trials, or the samples a search stage draws."""
        search = next(s.search for s in self.spec.stages if s.name == stage)
        return search.num_samples if search else len(self.stage_trials(stage))

    def write_spec(self) -> None:
        """sweep.yaml: the spec with its corpus and storage resolved, so the directory reopens alone."""
        data = self.spec.model_dump(mode="json")
        data["storage"] = self.uri.rsplit("/", 1)[0]
        storage.write_text(storage.join(self.uri, SPEC_FILE), yaml.safe_dump(data, sort_keys=False))

    def write_plan(self, plan: dict[str, Any]) -> None:
        storage.write_text(storage.join(self.uri, PLAN_FILE), json.dumps(plan, indent=1, default=str))


def build_sweep(spec: SweepSpec, source: str, sweep_uri: str) -> Sweep:
    corpus_dir, _ = corpus_location(spec)
    trials = expand_spec(spec, sweep_uri, str(corpus_dir), source)
    return Sweep(spec=spec, source=source, uri=sweep_uri, corpus_dir=corpus_dir, trials=trials)


def open_spec(path: str | Path, storage_location: str | None = None) -> Sweep:
    """A sweep from its spec file; `storage_location` overrides the spec's `storage`."""
    spec = load_spec(path)
    if storage_location is not None:
        spec.storage = storage_location
    return build_sweep(spec, str(path), storage.join(storage.absolute(spec.storage), spec.name))


def read_spec_data(sweep_dir: str) -> dict[str, Any] | None:
    """The data of a sweep directory's `sweep.yaml`, or None when it has none."""
    path = storage.join(sweep_dir, SPEC_FILE)
    text = storage.read_text(path)
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return data if isinstance(data, dict) else {}


def read_plan(sweep_dir: str) -> dict[str, Any] | None:
    """The plan a sweep's run started with, or None (a sweep not run yet)."""
    text = storage.read_text(storage.join(sweep_dir, PLAN_FILE))
    return None if text is None else json.loads(text)


def open_sweep_dir(sweep_dir: str | Path) -> Sweep:
    """A sweep from the `sweep.yaml` its run wrote (corpus and storage already resolved)."""
    sweep_uri = storage.absolute(str(sweep_dir))
    data = read_spec_data(sweep_uri)
    if data is None:
        raise ConfigError(f"{sweep_uri}: not a sweep directory (no {SPEC_FILE})")
    path = storage.join(sweep_uri, SPEC_FILE)
    return build_sweep(validate_config(data, SweepSpec, path), path, sweep_uri)
