"""Opening a sweep: from a spec file (plan, run) or from a sweep directory (resume, status).

Opening expands every trial and builds every TrialConfig, so a bad key fails here, before anything
runs. The spec's `corpus` is a built corpus directory, or a corpus config that is built once into
`<storage>/corpora/<config name>-<hash of the resolved config>` and reused by later sweeps.

`storage` is a local folder or an s3:// / gs:// URI: the sweep's own files are read and written through
`imlsweep.train.storage`, so a new head node resumes a sweep from its bucket. What only local file IO
writes (a built corpus, Tune's experiment state, W&B run files, the default report) goes to the
storage's folder on this machine (`local_dir`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imlsweep.config import ConfigError, validate_config
from imlsweep.sweep.expand import PlannedTrial, expand_spec, validate_trials
from imlsweep.sweep.spec import SweepSpec, load_spec
from imlsweep.train import storage

SPEC_FILE = "sweep.yaml"
# Keys `sweep.yaml` carries besides the spec itself, for readers such as the report.
RESOLVED_EXTRA_KEYS = ("num_trials", "trials_by_stage")


@dataclass
class Sweep:
    spec: SweepSpec
    source: str  # the file errors name
    uri: str  # the sweep directory: an absolute local path, or an s3:// / gs:// URI
    dir: Path  # its folder on this machine: the sweep directory itself when that is local (`local_dir`)
    corpus_dir: Path
    trials: list[PlannedTrial]

    @property
    def trials_by_name(self) -> dict[str, PlannedTrial]:
        return {trial.name: trial for trial in self.trials}

    def stage_trials(self, stage: str) -> list[PlannedTrial]:
        return [trial for trial in self.trials if trial.stage == stage]


def absolute(location: str) -> str:
    """A storage location as the sweep records it: a URI as given, a local folder absolute."""
    return location if storage.is_remote(location) else str(Path(location).resolve())


def local_dir(location: str) -> Path:
    """This machine's folder of a storage location: the location itself when it is a local folder; for an
    s3:// or gs:// URI, a folder in the user's cache (XDG_CACHE_HOME, else ~/.cache)."""
    if not storage.is_remote(location):
        return Path(location)
    scheme, path = location.split("://", 1)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "imlsweep" / scheme / path.strip("/")


def corpus_location(spec: SweepSpec) -> tuple[Path, Any]:
    """(built corpus directory, corpus config to build it from, or None when it is a directory)."""
    source = Path(spec.corpus)
    if source.is_dir():
        return source, None
    from imlsweep.corpus.config import corpus_config_yaml, load_corpus_config

    config = load_corpus_config(source)
    digest = hashlib.sha256(corpus_config_yaml(config).encode()).hexdigest()[:12]
    # local even for a bucket: the corpus is read with local file IO
    return local_dir(absolute(spec.storage)) / "corpora" / f"{source.stem}-{digest}", config


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


def build_sweep(spec: SweepSpec, source: str, sweep_uri: str) -> Sweep:
    corpus_dir, _ = corpus_location(spec)
    trials = expand_spec(spec, sweep_uri, str(corpus_dir), source)
    validate_trials(trials, source)
    return Sweep(spec=spec, source=source, uri=sweep_uri, dir=local_dir(sweep_uri), corpus_dir=corpus_dir,
                 trials=trials)


def open_spec(path: str | Path, storage_location: str | None = None) -> Sweep:
    """A sweep from its spec file; `storage_location` overrides the spec's `storage`."""
    spec = load_spec(path)
    if storage_location is not None:
        spec.storage = storage_location
    return build_sweep(spec, str(path), storage.join(absolute(spec.storage), spec.name))


def read_resolved_spec(sweep_dir: str) -> dict[str, Any] | None:
    """The data of the sweep directory's `sweep.yaml`, or None when it has none."""
    path = storage.join(sweep_dir, SPEC_FILE)
    text = storage.read_text(path)
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return data if isinstance(data, dict) else {}


def open_sweep_dir(sweep_dir: str | Path) -> Sweep:
    """A sweep from the `sweep.yaml` its run wrote (corpus and storage already resolved)."""
    sweep_uri = absolute(str(sweep_dir))
    data = read_resolved_spec(sweep_uri)
    if data is None:
        raise ConfigError(f"{sweep_uri}: not a sweep directory (no {SPEC_FILE})")
    for key in RESOLVED_EXTRA_KEYS:
        data.pop(key, None)
    path = storage.join(sweep_uri, SPEC_FILE)
    spec = validate_config(data, SweepSpec, path)
    return build_sweep(spec, path, sweep_uri)


def write_resolved_spec(sweep: Sweep, trials_by_stage: dict[str, int]) -> str:
    """`sweep.yaml`: the spec with absolute corpus and storage, plus the planned trial counts."""
    data = sweep.spec.model_dump(mode="json")
    data["storage"] = sweep.uri.rsplit("/", 1)[0]
    data["num_trials"] = sum(trials_by_stage.values())
    data["trials_by_stage"] = trials_by_stage
    path = storage.join(sweep.uri, SPEC_FILE)
    storage.write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path
