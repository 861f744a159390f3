"""Opening a sweep: from a spec file (plan, run) or from a sweep directory (resume, status).

Opening expands every trial and builds every TrialConfig, so a bad key fails here, before anything
runs. The spec's `corpus` is a built corpus directory, or a corpus config that is built once into
`<storage>/corpora/<config name>-<hash of the resolved config>` and reused by later sweeps.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imlsweep.config import ConfigError, read_yaml, validate_config
from imlsweep.sweep.expand import PlannedTrial, expand_spec, validate_trials
from imlsweep.sweep.spec import SweepSpec, load_spec

SPEC_FILE = "sweep.yaml"
# Keys `sweep.yaml` carries besides the spec itself, for readers such as the report.
RESOLVED_EXTRA_KEYS = ("num_trials", "trials_by_stage")


@dataclass
class Sweep:
    spec: SweepSpec
    source: str  # the file errors name
    dir: Path
    corpus_dir: Path
    trials: list[PlannedTrial]

    @property
    def trials_by_name(self) -> dict[str, PlannedTrial]:
        return {trial.name: trial for trial in self.trials}

    def stage_trials(self, stage: str) -> list[PlannedTrial]:
        return [trial for trial in self.trials if trial.stage == stage]


def corpus_location(spec: SweepSpec) -> tuple[Path, Any]:
    """(built corpus directory, corpus config to build it from, or None when it is a directory)."""
    source = Path(spec.corpus)
    if source.is_dir():
        return source, None
    from imlsweep.corpus.config import corpus_config_yaml, load_corpus_config

    config = load_corpus_config(source)
    digest = hashlib.sha256(corpus_config_yaml(config).encode()).hexdigest()[:12]
    return Path(spec.storage).resolve() / "corpora" / f"{source.stem}-{digest}", config


def ensure_corpus(sweep: Sweep) -> Path:
    """Build the sweep's corpus unless an earlier sweep already did (built beside, then renamed)."""
    corpus_dir, config = corpus_location(sweep.spec)
    if config is None or (corpus_dir / "manifest.parquet").is_file():
        return corpus_dir
    from imlsweep.corpus.build import build_corpus

    partial = corpus_dir.with_name(corpus_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    build_corpus(config, partial)
    shutil.rmtree(corpus_dir, ignore_errors=True)
    partial.rename(corpus_dir)
    return corpus_dir


def build_sweep(spec: SweepSpec, source: str, sweep_dir: Path) -> Sweep:
    corpus_dir, _ = corpus_location(spec)
    trials = expand_spec(spec, sweep_dir, str(corpus_dir), source)
    validate_trials(trials, source)
    return Sweep(spec=spec, source=source, dir=sweep_dir, corpus_dir=corpus_dir, trials=trials)


def open_spec(path: str | Path, storage: str | None = None) -> Sweep:
    """A sweep from its spec file; `storage` overrides the spec's."""
    spec = load_spec(path)
    if storage is not None:
        spec.storage = storage
    return build_sweep(spec, str(path), Path(spec.storage).resolve() / spec.name)


def open_sweep_dir(sweep_dir: str | Path) -> Sweep:
    """A sweep from the `sweep.yaml` its run wrote (corpus and storage already resolved)."""
    sweep_dir = Path(sweep_dir).resolve()
    path = sweep_dir / SPEC_FILE
    if not path.is_file():
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no {SPEC_FILE})")
    data = read_yaml(path) or {}
    for key in RESOLVED_EXTRA_KEYS:
        data.pop(key, None)
    spec = validate_config(data, SweepSpec, str(path))
    return build_sweep(spec, str(path), sweep_dir)


def write_resolved_spec(sweep: Sweep, trials_by_stage: dict[str, int]) -> Path:
    """`sweep.yaml`: the spec with absolute corpus and storage, plus the planned trial counts."""
    data = sweep.spec.model_dump(mode="json")
    data["storage"] = str(sweep.dir.parent)
    data["num_trials"] = sum(trials_by_stage.values())
    data["trials_by_stage"] = trials_by_stage
    sweep.dir.mkdir(parents=True, exist_ok=True)
    path = sweep.dir / SPEC_FILE
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
