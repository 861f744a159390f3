"""The sweep's corpus: a built corpus directory, or a corpus config that is built once into
`<storage's local folder>/corpora/<config name>-<hash of the resolved config>` and reused by every later
sweep that names the same config."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from imlsweep import storage
from imlsweep.sweep.spec import SweepSpec


def corpus_location(spec: SweepSpec) -> tuple[Path, Any]:
    """(built corpus directory, corpus config to build it from, or None when it is a directory)."""
    source = Path(spec.corpus)
    if source.is_dir():
        return source, None
    from imlsweep.corpus.config import corpus_config_yaml, load_corpus_config

    config = load_corpus_config(source)
    digest = hashlib.sha256(corpus_config_yaml(config).encode()).hexdigest()[:12]
    # local even for a bucket: the corpus is read with local file IO
    return storage.local_folder(storage.absolute(spec.storage)) / "corpora" / f"{source.stem}-{digest}", config


def ensure_corpus(spec: SweepSpec) -> Path:
    """Build the sweep's corpus unless an earlier sweep already did (built beside, then renamed)."""
    corpus_dir, config = corpus_location(spec)
    from imlsweep.corpus.store import MANIFEST_FILE

    if config is None or (corpus_dir / MANIFEST_FILE).is_file():
        return corpus_dir
    from imlsweep.corpus.build import build_corpus

    partial = corpus_dir.with_name(corpus_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        build_corpus(config, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a failed build leaves nothing a later one could mistake
        raise
    shutil.rmtree(corpus_dir, ignore_errors=True)
    partial.rename(corpus_dir)
    return corpus_dir
