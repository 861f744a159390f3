"""Checks of every trial of a sweep against the corpus and this machine, before anything starts.

`sweep plan`, `sweep run` and `sweep resume` call `check_sweep` before Ray starts: each task id,
category and benchmark a mixture or an evaluation names is in the corpus (with the closest names
when not), add-on text files, local model and tokenizer folders and `init_from` folders exist, a
hub id is well formed and, when the hub cannot be reached, in the local Hugging Face cache, and each
LoRA target module matches a layer of the model (built from its config on the meta device). A problem
names the spec file, the first trial that has it, the key and the bad value. (`depends_on` is checked
when the spec is expanded: `imlsweep.sweep.expand`.)

Problems are `wrong` (the spec names something that does not exist) or `absent` (something the spec
names is not on this machine: a file, a hub model offline). A plan, made anywhere, fails on the
first kind and lists the second; a run fails on both.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import socket
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from imlsweep import storage
from imlsweep.config import ConfigError
from imlsweep.data.mixture import PROPORTION_KEYS
from imlsweep.data.plan import SPLIT_SIZE_COLUMN
from imlsweep.data.token_cache import cache_location, check_writable
from imlsweep.errors import UserError
from imlsweep.sweep.sweep import Sweep
from imlsweep.train.config import TrialConfig
from imlsweep.train.lora import ADAPTER_CONFIG
from imlsweep.train.model import ModelConfig

HUB_PROBE_TIMEOUT_S = 2.0
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
MODEL_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class Problem:
    trial: str  # the first trial (spec order) that has it
    key: str
    value: str
    message: str
    kind: Literal["wrong", "absent"]
    trials: int = 1  # trials that have it

    def line(self, source: str) -> str:
        more = f" (and {self.trials - 1} more trials)" if self.trials > 1 else ""
        return f"{source}: trial {self.trial}{more}: {self.key}: {self.value!r} {self.message}"


def closest(value: str, names: Any) -> str:
    """`; did you mean 'x'?` with the closest name (difflib's ratio), or nothing when there is none."""
    matches = difflib.get_close_matches(value, sorted(set(names)), n=1, cutoff=0.0)
    return f"; did you mean {matches[0]!r}?" if matches else ""


class CorpusNames:
    """The names a built corpus has, for lookups and suggestions."""

    def __init__(self, corpus: Any):
        manifest = corpus.manifest
        self.tasks = set(manifest["task_id"])
        self.categories = set(manifest["category"])
        self.benchmarks = set(manifest["benchmark"])
        self.instances = {split: dict(zip(manifest["task_id"], manifest[column]))
                          for split, column in SPLIT_SIZE_COLUMN.items()}

    def missing(self, kind: str, value: str) -> str | None:
        names = {"task": self.tasks, "category": self.categories, "benchmark": self.benchmarks}[kind]
        if value in names:
            return None
        return f"is not a {kind} of the corpus{closest(value, names)}"


def corpus_problems(config: TrialConfig, names: CorpusNames) -> list[tuple[str, str, str]]:
    """(key, value, message) of every name a trial uses that the corpus does not have."""
    found = []
    mixture = config.mixture

    def check(key: str, kind: str, value: str) -> None:
        message = names.missing(kind, value)
        if message:
            found.append((key, value, message))

    for task in mixture.tasks if isinstance(mixture.tasks, list) else []:
        check("mixture.tasks", "task", task)
    for task in mixture.task_subset.required if mixture.task_subset else []:
        check("mixture.task_subset.required", "task", task)
    for category in mixture.category_subset.required if mixture.category_subset else []:
        check("mixture.category_subset.required", "category", category)
    for kind, key in PROPORTION_KEYS.items():
        if isinstance(getattr(mixture, key), dict):
            for group in getattr(mixture, key):
                check(f"mixture.{key}", kind, group)
    for addon in mixture.addons:
        if addon.benchmark is not None:
            check(f"mixture.addons.{addon.name}.benchmark", "benchmark", addon.benchmark)
    if config.eval is not None:
        for task in config.eval.tasks or []:
            check("eval.tasks", "task", task)
        for task in config.eval.validation.tasks or []:
            check("eval.validation.tasks", "task", task)
        validation = config.eval.validation_suite()
        if config.eval.every_steps is not None and validation.tasks is not None:
            key = "eval.validation.tasks" if config.eval.validation.tasks is not None else "eval.tasks"
            for task in validation.tasks:
                if names.instances[validation.split].get(task, 1) == 0:  # an unknown task is reported above
                    found.append((key, task, f"has no {validation.split} instances to validate on "
                                  "(eval.every_steps)"))
        for group, patterns in config.eval.task_groups.items():
            for pattern in patterns:
                if not fnmatch.filter(names.tasks, pattern):
                    found.append((f"eval.task_groups.{group}", pattern, "matches no task of the corpus"))
    return found


def file_problems(config: TrialConfig, starts_from_trial: bool) -> list[tuple[str, str, str, str]]:
    """(key, value, message, kind) of every file, folder and hub id a trial names that is not at hand.
    A trial that starts from another's weights (`depends_on`) finds them once that one has finished."""
    found = []
    for addon in config.mixture.addons:
        if addon.texts is not None and not Path(addon.texts).is_file():
            found.append((f"mixture.addons.{addon.name}.texts", addon.texts,
                          f"is not a file (relative to {os.getcwd()})", "absent"))
    model = config.model
    if not model.is_tiny:
        found += model_problems("model.name", model.name, (MODEL_FILE, ADAPTER_CONFIG))
    if model.tokenizer is not None and model.tokenizer != "tiny":
        found += model_problems("model.tokenizer", model.tokenizer, TOKENIZER_FILES)
    if config.init_from is not None and not starts_from_trial and not storage.is_remote(config.init_from):
        folder = Path(config.init_from)
        if not (folder / MODEL_FILE).is_file() and not (folder / ADAPTER_CONFIG).is_file():
            found.append(("init_from", config.init_from, f"is not a Hugging Face model folder (no {MODEL_FILE}) "
                          f"nor an adapter folder (no {ADAPTER_CONFIG})", "absent"))
    if isinstance(config.train.deepspeed, str) and not Path(config.train.deepspeed).is_file():
        found.append(("train.deepspeed", config.train.deepspeed, "is not a file", "absent"))
    return found


def lora_problems(model: ModelConfig) -> list[tuple[str, str, str, str]]:
    """LoRA target modules that match nothing, when the model's config can be read here (a model that
    cannot is reported by `file_problems`)."""
    return list(model_lora_problems(model.model_dump_json()))


@lru_cache(maxsize=64)
def model_lora_problems(model_json: str) -> tuple[tuple[str, str, str, str], ...]:
    """Once per model setting: a grid's trials share a few, and building a large model's modules (on the
    meta device) takes a moment."""
    from imlsweep.train.model import unmatched_lora_targets

    return tuple((key, value, why, "wrong") for key, value, why in unmatched_lora_targets(
        ModelConfig.model_validate_json(model_json)))


def model_setting_problems(config: TrialConfig) -> list[tuple[str, str, str]]:
    """(key, value, message) of what the trial asks of a model that cannot do it (checked where the
    model's config is at hand)."""
    from imlsweep.train.model import architecture_config, cannot_checkpoint_activations

    if not config.train.activation_checkpointing:
        return []
    hf_config = architecture_config(config.model)
    problem = cannot_checkpoint_activations(hf_config) if hf_config is not None else None
    return [("train.activation_checkpointing", "true", f"{problem} ({config.model.name})")] if problem else []


def model_problems(key: str, name: str, needed: tuple[str, ...]) -> list[tuple[str, str, str, str]]:
    """A local folder must hold one of `needed`; a hub id must be well formed and reachable or cached."""
    from imlsweep.train.model import looks_like_path

    folder = Path(name).expanduser()
    if looks_like_path(name) or folder.is_dir():
        if not folder.is_dir():
            return [(key, name, "is not a folder", "absent")]
        if not any((folder / file).is_file() for file in needed):
            return [(key, name, f"is a folder without {' or '.join(needed)}", "absent")]
        return []
    if not HUB_ID.match(name) or ".." in name or "--" in name:
        return [(key, name, "is neither a bundled tiny model, a local folder nor a well-formed hub id "
                 "(owner/name)", "wrong")]
    if hub_cached(name, needed) or hub_reachable():
        return []
    return [(key, name, "is not in the local Hugging Face cache and the hub cannot be reached from here "
             "(HF_HUB_OFFLINE, or no network): download it first (`huggingface-cli download`) or give a local "
             "folder", "absent")]


def hub_cached(repo_id: str, files: tuple[str, ...]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, file), str) for file in files)


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """False when the hub is switched off (HF_HUB_OFFLINE) or its host does not resolve within a
    moment; asked once per process."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    resolved: list[bool] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, 443)
            resolved.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=resolve, daemon=True)  # getaddrinfo takes no timeout
    probe.start()
    probe.join(HUB_PROBE_TIMEOUT_S)
    return bool(resolved)


def check_sweep(sweep: Sweep, corpus: Any = None) -> list[Problem]:
    """Every problem of every trial, each once with the number of trials that share it. `corpus` is the
    built `Corpus` the sweep trains on; None skips the corpus checks."""
    names = CorpusNames(corpus) if corpus is not None else None
    problems: dict[tuple[str, str], Problem] = {}
    checked: dict[str, list[tuple[str, str, str, str]]] = {}  # identical trial settings are checked once
    for trial in sweep.trials:
        config = trial.config
        starts_from_trial = trial.depends_on is not None
        key = str(starts_from_trial) + config.model_dump_json(include={"mixture", "eval", "model", "init_from", "train"},
                                                              exclude={"train": {"export_hf"}})
        if key not in checked:
            found = [(k, v, m, "wrong") for k, v, m in corpus_problems(config, names)] if names else []
            found += [(k, v, m, "wrong") for k, v, m in model_setting_problems(config)]
            checked[key] = found + file_problems(config, starts_from_trial) + lora_problems(config.model)
        for bad_key, value, message, kind in checked[key]:
            known = problems.get((bad_key, value))
            problems[(bad_key, value)] = (Problem(trial.name, bad_key, value, message, kind) if known is None else
                                          Problem(known.trial, bad_key, value, message, kind, known.trials + 1))
    found = list(problems.values())
    return found + (mixture_search_problems(sweep, corpus) if names is not None and not found else [])


def mixture_search_problems(sweep: Sweep, corpus: Any) -> list[Problem]:
    """A mixture search whose constraints leave no mixture, given the EPS mixture's weights on this corpus."""
    from imlsweep.sweep.mixture_search import mixture_weights, weight_bounds

    found = []
    for index, stage in enumerate(sweep.spec.stages):
        search = stage.mixture_search
        if search is None:
            continue
        eps_trial = sweep.stage_trials(stage.name)[0]
        try:
            eps_weights = mixture_weights(eps_trial.config.mixture, corpus.manifest, search)
            weight_bounds(search.groups, eps_weights, search.constraints)
        except UserError as error:
            found.append(Problem(eps_trial.name, f"stages.{index}.mixture_search.constraints",
                                 str(search.constraints.max_ratio_to_eps), str(error), "wrong"))
    return found


def require_valid(sweep: Sweep, corpus: Any) -> None:
    """Raise one ConfigError listing every problem (run and resume: nothing starts on bad input)."""
    problems = check_sweep(sweep, corpus)
    if problems:
        raise ConfigError("\n".join(problem.line(sweep.source) for problem in problems))


def require_no_wrong_names(sweep: Sweep, problems: list) -> None:
    """Raise one ConfigError listing the problems that are wrong anywhere (a name that does not exist),
    leaving those that only mean "not on this machine" (plan and simulate run where the data is not)."""
    wrong = [problem.line(sweep.source) for problem in problems if problem.kind == "wrong"]
    if wrong:
        raise ConfigError("\n".join(wrong))


def require_writable_token_caches(sweep: Sweep) -> None:
    """Every token cache the trials write to can be written (before any trial starts)."""
    for location in sorted({cache_location(t.config.token_cache, t.config.corpus) for t in sweep.trials}):
        check_writable(location)


def memory_problems(sweep: Sweep, memory: list[dict[str, Any]]) -> list[str]:
    """A line per trial shape that needs more than a GPU or a node's host has (`sweep plan --json`'s
    `memory`), naming its first trial and the numbers."""
    resources = sweep.spec.resources
    found = []
    for entry in memory:
        if entry["fits"] is not False:
            continue
        trials, detail, settings = entry["trials"], entry["detail"], entry["settings"]
        more = f" (and {len(trials) - 1} more trials)" if len(trials) > 1 else ""
        needs = []
        if entry["gpu_gb"] is not None and resources.gpu_memory_gb and entry["gpu_gb"] > resources.gpu_memory_gb:
            needs.append(f"needs {entry['gpu_gb']:.1f} GiB per GPU (model states {detail['model_states_gb']:.1f}, "
                         f"activations {detail['activations_gb']:.1f}), more than resources.gpu_memory_gb "
                         f"{resources.gpu_memory_gb:g}")
        if resources.host_memory_gb and entry["host_gb_per_node"] > resources.host_memory_gb:
            needs.append(f"needs {entry['host_gb_per_node']:.1f} GiB of host memory per node "
                         f"({settings['workers_per_node']} workers x {detail['host_gb_per_worker']:.1f}), more than "
                         f"resources.host_memory_gb {resources.host_memory_gb:g}")
        found.append(f"{sweep.source}: trial {trials[0]}{more}: {entry['model']} with train.zero_stage "
                     f"{settings['zero_stage']}, train.micro_batch_size {settings['micro_batch_size']} x "
                     f"{settings['seq_len']} tokens, train.activation_checkpointing "
                     f"{str(settings['activation_checkpointing']).lower()}: " + "; ".join(needs)
                     + " (turn on train.activation_checkpointing, a higher train.zero_stage, "
                     "train.offload_optimizer, or give the trial more workers)")
    return found


def require_fits(sweep: Sweep) -> None:
    """Raise a ConfigError when a trial does not fit the GPUs and hosts the spec declares."""
    from imlsweep.sweep.plan import memory_by_shape

    problems = memory_problems(sweep, memory_by_shape(sweep))
    if problems:
        raise ConfigError("\n".join(problems))


def open_built_corpus(sweep: Sweep, corpus_dir: str | None = None) -> tuple[Any, str | None]:
    """(the sweep's built corpus, None), building it from its config when needed; `corpus_dir` names a
    built one instead. (None, why) when it cannot be had here (raw data not on this machine)."""
    from imlsweep.corpus.store import Corpus
    from imlsweep.sweep.corpus import ensure_corpus

    try:
        return Corpus.open(corpus_dir if corpus_dir is not None else ensure_corpus(sweep.spec)), None
    except (UserError, OSError) as error:
        return None, str(error)
