"""`imlsweep bench data`: the full data pipeline vs the bare tokenizer vs a Hugging Face datasets baseline.

A synthetic corpus with SuperNI's shape (many tasks, heavy-tailed task sizes, shared definitions and
positive examples, heavy-tailed input lengths; words drawn from the bundled SuperNI sample with their
frequencies there) is written in the corpus layout, then three things are measured on the same mixture
in one run:

- pipeline: plan, sample, render, tokenize, mix and pack on Ray Data, consumed as batches;
- tokenizer: the bare fast tokenizer on the same rendered texts, what tokenizing the stream costs
  without the pipeline (which tokenizes each distinct chunk of text once per process, so it can be faster);
- baseline: the common way with Hugging Face datasets: one dataset per task, `map` (render +
  tokenize), `interleave_datasets` with the same per-task probabilities, greedy (next-fit) packing;
  run last (`--skip-baseline` leaves it out), so that what it holds on to counts in no pipeline peak.

Tokens/s count non-padding tokens. The pipeline and the tokenizer run alternately `--repeat` times
and the fastest run of each counts (the first pipeline run also starts the Ray workers). Every
pipeline run is a first trial: it starts from an empty token cache. Peak RSS sums this process and its
children (the local Ray workers) while the pipeline runs; peak PSS sums the same processes' proportional
set sizes, which count a page of Ray's object store once rather than once per process mapping it.

Then, at scale and with the cache:

- scaling: a first trial at each of `--scaling` stream lengths: peak RSS and PSS, seconds to the first packed
  row and to the last, tokens/s;
- cached_speedup: the first trial's data time over a second trial's with the same tasks, whose tokens
  the first left in the cache (`--repeat` pairs, each first trial on an empty cache; the fastest of
  each counts);
- sweep: the data seconds of a 9-trial EPS sweep in miniature (the same tasks, 9 caps), each trial with
  an empty cache (uncached) against all sharing one (cached).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from imlsweep.output import print_figures
from imlsweep.ray_session import ray_session

FULL = {"tasks": 2000, "total_examples": 60_000, "max_task_size": 5000, "scaling": [60_000, 240_000, 960_000]}
QUICK = {"tasks": 12, "total_examples": 300, "max_task_size": 60, "scaling": [300, 600]}
SWEEP_EPS = [8, 16, 32, 64, 128, 256, 512, 1024, 4096]  # the caps of the 9-trial EPS sweep in miniature


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a few tasks and examples (seconds; for tests)")
    parser.add_argument("--tasks", type=int, help=f"synthetic tasks (default {FULL['tasks']})")
    parser.add_argument("--total-examples", type=int, help=f"examples in the stream (default {FULL['total_examples']})")
    parser.add_argument("--max-length", type=int, default=2048, help="packed sequence length (default 2048)")
    parser.add_argument("--eps", type=float, default=4096, help="mixing cap (default 4096)")
    parser.add_argument("--tokenizer", default="tiny", help="tokenizer name or folder (default tiny)")
    parser.add_argument("--repeat", type=int, help="runs of the pipeline and of the bare tokenizer, alternated, "
                        "and of the first and cached trials; the fastest of each counts (default 3, 1 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where the synthetic corpus is written (default: a temporary folder)")
    parser.add_argument("--scaling", help="comma-separated stream lengths of the scaling runs (default "
                        f"{','.join(map(str, FULL['scaling']))}; {','.join(map(str, QUICK['scaling']))} with --quick)")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the Hugging Face datasets "
                        "baseline (about 13 minutes at full size); its keys are left out")
    parser.add_argument("--sweep-examples", type=int, help="examples per trial of the EPS sweep in miniature "
                        "(default: the stream's examples / 4)")


def log(message: str) -> None:
    print(f"[bench data] {message}", file=sys.stderr, flush=True)


def synthetic_task_sizes(tasks: int, max_task_size: int, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed pool sizes (Pareto), as SuperNI's: many small tasks, a few very large ones."""
    return np.minimum(max_task_size, (20 * (1 + rng.pareto(1.1, size=tasks))).astype(np.int64))


# Word counts (lognormal median, sigma, cap) fitted to the bundled SuperNI sample, with the input median
# raised from its 12 to 22 words so that rendered examples average the study's train lengths: about 365
# tokens with definition and 2 positive examples, about 89 without (REFERENCE sample-efficiency grid).
DEFINITION_WORDS = (43, 0.55, 800)
INPUT_WORDS = (22, 1.1, 1500)
OUTPUT_WORDS = (2, 1.0, 60)


def words(rng: np.random.Generator, word_stream: np.ndarray, shape: tuple[float, float, int]) -> str:
    """Words drawn from `word_stream` (every occurrence, so common words come up as often as in text)."""
    median, sigma, cap = shape
    count = int(min(cap, max(1, rng.lognormal(np.log(median), sigma))))
    return " ".join(word_stream[rng.integers(0, len(word_stream), size=count)])


def write_synthetic_corpus(out: Path, tasks: int, max_task_size: int, seed: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imlsweep.config import dump_config
    from imlsweep.corpus.config import CorpusConfig
    from imlsweep.corpus.schema import MANIFEST_SCHEMA, ROW_SCHEMA
    from imlsweep.corpus.store import CONFIG_FILE, MANIFEST_FILE, task_file
    from imlsweep.data.tokenizer import sample_texts

    rng = np.random.default_rng(seed)
    word_stream = np.array([w for text in sample_texts() for w in text.split()])
    sizes = synthetic_task_sizes(tasks, max_task_size, rng)
    manifest = []
    for number, size in enumerate(sizes):
        task_id = f"task{number:05d}_synthetic"
        category = f"Category {number % 60:02d}"
        definition = words(rng, word_stream, DEFINITION_WORDS)
        positives = [{"input": words(rng, word_stream, INPUT_WORDS), "output": words(rng, word_stream, OUTPUT_WORDS),
                      "explanation": ""} for _ in range(2)]
        rows = {
            "task_id": [task_id] * size, "benchmark": ["superni"] * size, "data_source": ["synthetic"] * size,
            "category": [category] * size, "instruction_type": ["task"] * size, "definition": [definition] * size,
            "positive_examples": [positives] * size, "negative_examples": [[]] * size,
            "template_id": [None] * size,
            "input": [words(rng, word_stream, INPUT_WORDS) for _ in range(size)],
            "outputs": [[words(rng, word_stream, OUTPUT_WORDS)] for _ in range(size)],
            "candidates": [None] * size, "split": ["train"] * size, "level": ["fully_supervised"] * size,
            "example_id": [f"{task_id}-{i}" for i in range(size)], "language": ["English"] * size,
            "source_index": list(range(size)),
        }
        path = task_file(out, "superni", task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pydict(rows, schema=ROW_SCHEMA), path)
        manifest.append({"task_id": task_id, "benchmark": "superni", "category": category, "split": "train",
                         "level": "fully_supervised", "n_examples": int(size), "n_train": int(size), "n_validation": 0,
                         "n_test": 0, "data_source": "synthetic", "instruction_type": "task", "language": "English"})
    pq.write_table(pa.Table.from_pylist(manifest, schema=MANIFEST_SCHEMA), out / MANIFEST_FILE)
    config = CorpusConfig(name="synthetic_superni", seed=seed,
                          sources=[{"format": "parquet", "benchmark": "superni", "path": str(out / "data")}])
    (out / CONFIG_FILE).write_text(dump_config(config), encoding="utf-8")


class PeakRss:
    """Samples the RSS of a process (this one by default) plus its children (local Ray workers) in a thread.
    `peak` sums their RSS, which counts a shared page (Ray's object store) once in every process that
    maps it; `peak_pss` sums their proportional set sizes, which count it once in all. A sample reads
    every process's smaps_rollup, about 30 ms of CPU for a local Ray instance's dozen processes: once a
    second it takes 3% of a core from what it measures (every 0.2 s, 15%: a 60k-example pipeline run
    took 26.9 s instead of 25.1 s)."""

    def __init__(self, interval_s: float = 1.0, pid: int | None = None):
        self.interval_s = interval_s
        self.pid = pid
        self.peak = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> tuple[int, int]:
        import psutil

        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:  # it has exited
            return 0, 0
        rss = pss = 0
        for process in processes:
            try:
                memory = process.memory_full_info()
            except psutil.Error:
                continue
            rss, pss = rss + memory.rss, pss + memory.pss
        return rss, pss

    def _update(self) -> None:
        rss, pss = self._sample()
        self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._update()
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._update()


def measure_pipeline(mixture, corpus_dir: Path, tokenizer_name: str, token_cache: Path) -> dict:
    from imlsweep.data.pipeline import build_train_dataset, iter_train_batches

    start = time.perf_counter()
    first_row_s = None
    with PeakRss() as memory:
        dataset = build_train_dataset(mixture, str(corpus_dir), tokenizer_name, "causal", token_cache=str(token_cache))
        tokens = slots = 0
        for batch in iter_train_batches(dataset, 64, "causal"):
            first_row_s = first_row_s or time.perf_counter() - start
            # counted in NumPy: a torch reduction splits across torch's threads, and with every CPU busy
            # streaming, each waited for a descheduled thread (7 ms a batch, more than the batch's data)
            document_ids = batch["document_ids"].numpy()
            tokens += int(np.count_nonzero(document_ids >= 0))
            slots += document_ids.size
        seconds = time.perf_counter() - start  # before the sampler's last sample (about 50 ms), not pipeline time
    return {"tokens": tokens, "seconds": seconds, "first_row_s": first_row_s, "efficiency": tokens / slots,
            "peak_rss": memory.peak, "peak_pss": memory.peak_pss}


def fresh_cache(scratch: Path) -> Path:
    """An empty token cache folder: the run it is given is a first trial."""
    return Path(tempfile.mkdtemp(prefix="token-cache-", dir=scratch))


def rendered_texts(plan, mixture, corpus_dir: Path, tokenizer) -> list[str]:
    from imlsweep.data.stream import preview_stream
    from imlsweep.data.tokenization import PromptTokenizer

    examples = preview_stream(plan, mixture, str(corpus_dir), plan.total_examples,
                              PromptTokenizer(tokenizer))
    return [e["source"] + e["target"] for e in examples]


def measure_tokenizer(texts: list[str], tokenizer) -> dict:
    """The tokenizer's fastest batched call (the one the pipeline makes), on whole texts, 1000 at a time."""
    from imlsweep.data.tokenization import token_ids

    start = time.perf_counter()
    tokens = 0
    for offset in range(0, len(texts), 1000):
        tokens += sum(len(ids) + 1 for ids in token_ids(tokenizer, texts[offset:offset + 1000]))
    return {"tokens": tokens, "seconds": time.perf_counter() - start}


def measure_baseline(plan, mixture, corpus_dir: Path, tokenizer) -> dict:
    """Hugging Face datasets the common way: per-task datasets, map, interleave_datasets, greedy packing."""
    import datasets
    import pyarrow.parquet as pq

    from imlsweep.corpus.store import task_file
    from imlsweep.data.encodings import encode_prompt

    datasets.disable_progress_bars()
    start = time.perf_counter()
    sources = [s for s in plan.sources if s.expected_examples > 0]
    eos, max_len = tokenizer.eos_token_id, mixture.max_length

    def render_and_tokenize(batch: dict) -> dict:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        prompts = [encode_prompt(row, row["outputs"][0], [], mixture.encoding, seed=mixture.seed) for row in rows]
        sources_ids = tokenizer([p.source for p in prompts], add_special_tokens=False)["input_ids"]
        target_ids = tokenizer([p.target for p in prompts], add_special_tokens=False)["input_ids"]
        return {"input_ids": [(s + t + [eos])[-max_len:] for s, t in zip(sources_ids, target_ids)]}

    per_task = []
    for source in sources:
        table = pq.read_table(task_file(corpus_dir, source.benchmark, source.source_id))
        dataset = datasets.Dataset(table).to_iterable_dataset()
        per_task.append(dataset.map(render_and_tokenize, batched=True, remove_columns=list(table.column_names)))
    total_share = sum(s.share for s in sources)
    mixed = datasets.interleave_datasets(per_task, probabilities=[s.share / total_share for s in sources],
                                         seed=mixture.seed, stopping_strategy="all_exhausted")
    tokens = rows = used = 0
    for number, example in enumerate(mixed):
        if number == plan.total_examples:
            break
        length = len(example["input_ids"])
        if used + length > max_len:  # greedy: close the row when the next example does not fit
            rows, used = rows + 1, 0
        used += length
        tokens += length
    rows += int(used > 0)
    return {"tokens": tokens, "seconds": time.perf_counter() - start, "efficiency": tokens / max(1, rows * max_len)}


def run(args: argparse.Namespace) -> int:
    # The baseline's tokenizer calls, made while Hugging Face datasets iterates 2000 interleaved datasets,
    # overflowed the 2 MiB stacks of the tokenizer's (Rust) worker threads at full size (a segfault in the
    # pre-tokenizer's regex); threads started from here on get 64 MiB.
    os.environ.setdefault("RUST_MIN_STACK", str(64 * 2**20))
    size = QUICK if args.quick else FULL
    tasks = args.tasks or size["tasks"]
    total = args.total_examples or size["total_examples"]
    max_length = min(args.max_length, 512) if args.quick else args.max_length
    with tempfile.TemporaryDirectory(prefix="imlsweep-bench-data-") as scratch:
        corpus_dir = Path(args.workdir or scratch) / "synthetic_corpus"
        log(f"writing a synthetic corpus of {tasks} tasks to {corpus_dir}")
        write_synthetic_corpus(corpus_dir, tasks, size["max_task_size"], args.seed)
        scaling = [int(n) for n in args.scaling.split(",")] if args.scaling else size["scaling"]
        with ray_session(local_cpus=os.cpu_count()):
            figures = measure_all(args, corpus_dir, tasks, total, max_length)
            figures |= measure_cache(args, corpus_dir, total, max_length, scaling)
        # last, in this process: what Hugging Face datasets holds on to must not count in the pipeline's peaks
        if not args.skip_baseline:
            figures |= measure_baseline_figures(args, corpus_dir, total, max_length, figures["pipeline_tokens_per_s"])
    print_figures(figures, args.json)
    return 0


def repeat_count(args: argparse.Namespace) -> int:
    return args.repeat or (1 if args.quick else 3)


def stream_plan(args: argparse.Namespace, corpus_dir: Path, total: int, max_length: int) -> tuple[Any, Any]:
    """(mixture, plan) of the measured stream: `total` examples of the synthetic corpus under the `--eps` cap."""
    from imlsweep.data.mixture import MixtureConfig
    from imlsweep.data.plan import plan_mixture
    from imlsweep.data.stream import open_corpus

    mixture = MixtureConfig(eps=args.eps, total_examples=total, max_length=max_length, seed=args.seed)
    return mixture, plan_mixture(mixture, open_corpus(str(corpus_dir)).manifest)


def measure_all(args: argparse.Namespace, corpus_dir: Path, tasks: int, total: int, max_length: int) -> dict[str, Any]:
    """The pipeline and the bare tokenizer, alternated `--repeat` times (the fastest of each counts), on the
    synthetic corpus."""
    from imlsweep.data.tokenizer import cached_tokenizer

    mixture, plan = stream_plan(args, corpus_dir, total, max_length)
    tokenizer = cached_tokenizer(args.tokenizer)
    texts = rendered_texts(plan, mixture, corpus_dir, tokenizer)
    pipeline_runs, bare_runs = [], []
    for run_number in range(repeat_count(args)):
        log(f"run {run_number + 1}: pipeline ({total} examples from {len(plan.sources)} tasks, packed to "
            f"{max_length}), then the bare tokenizer on the same rendered texts")
        pipeline_runs.append(measure_pipeline(mixture, corpus_dir, args.tokenizer, fresh_cache(corpus_dir.parent)))
        bare_runs.append(measure_tokenizer(texts, tokenizer))
    pipeline = min(pipeline_runs, key=lambda r: r["seconds"])
    bare = min(bare_runs, key=lambda r: r["seconds"])
    result = {
        "tasks": tasks, "examples": total, "max_length": max_length,
        "pipeline_tokens_per_s": pipeline["tokens"] / pipeline["seconds"],
        "tokenizer_tokens_per_s": bare["tokens"] / bare["seconds"],
        "packing_efficiency": pipeline["efficiency"],
        "peak_rss_mb": max(r["peak_rss"] for r in pipeline_runs) / 2**20,
        "pipeline_s": pipeline["seconds"], "tokenizer_s": bare["seconds"],
        "pipeline_runs_s": [r["seconds"] for r in pipeline_runs], "tokenizer_runs_s": [r["seconds"] for r in bare_runs],
    }
    result["pipeline_vs_tokenizer"] = result["pipeline_tokens_per_s"] / result["tokenizer_tokens_per_s"]
    return result


def measure_baseline_figures(args: argparse.Namespace, corpus_dir: Path, total: int, max_length: int,
                             pipeline_tokens_per_s: float) -> dict[str, Any]:
    """The Hugging Face datasets baseline on the same mixture, against the pipeline's tokens/s."""
    from imlsweep.data.tokenizer import cached_tokenizer

    mixture, plan = stream_plan(args, corpus_dir, total, max_length)
    log("baseline: Hugging Face datasets map + interleave_datasets + greedy packing")
    baseline = measure_baseline(plan, mixture, corpus_dir, cached_tokenizer(args.tokenizer))
    tokens_per_s = baseline["tokens"] / baseline["seconds"]
    return {"baseline_tokens_per_s": tokens_per_s, "baseline_packing_efficiency": baseline["efficiency"],
            "baseline_s": baseline["seconds"], "pipeline_vs_baseline": pipeline_tokens_per_s / tokens_per_s}


def measure_cache(args: argparse.Namespace, corpus_dir: Path, total: int, max_length: int,
                  scaling: list[int]) -> dict[str, Any]:
    """First trials at each stream length; a second trial on the first one's cache; the EPS sweep in
    miniature with and without a shared cache."""
    from imlsweep.data.mixture import MixtureConfig

    def mixture(examples: int, eps: float = args.eps) -> MixtureConfig:
        return MixtureConfig(eps=eps, total_examples=examples, max_length=max_length, seed=args.seed)

    scratch = corpus_dir.parent
    rows = []
    for examples in scaling:
        log(f"scaling: a first trial of {examples} examples")
        run = measure_pipeline(mixture(examples), corpus_dir, args.tokenizer, fresh_cache(scratch))
        rows.append({"examples": examples, "peak_rss_mb": run["peak_rss"] / 2**20,
                     "peak_pss_mb": run["peak_pss"] / 2**20, "first_row_s": run["first_row_s"],
                     "total_s": run["seconds"], "tokens_per_s": run["tokens"] / run["seconds"]})
    first_runs, cached_runs = [], []
    for run_number in range(repeat_count(args)):
        log(f"cache, run {run_number + 1}: a first trial of {total} examples, then a second on its cache")
        shared = fresh_cache(scratch)
        first_runs.append(measure_pipeline(mixture(total), corpus_dir, args.tokenizer, shared)["seconds"])
        cached_runs.append(measure_pipeline(mixture(total), corpus_dir, args.tokenizer, shared)["seconds"])
    per_trial = args.sweep_examples or max(1, total // 4)
    log(f"sweep: {len(SWEEP_EPS)} trials of {per_trial} examples, each with an empty cache, then sharing one")
    uncached = sum(measure_pipeline(mixture(per_trial, eps), corpus_dir, args.tokenizer, fresh_cache(scratch))["seconds"]
                   for eps in SWEEP_EPS)
    shared = fresh_cache(scratch)
    cached = sum(measure_pipeline(mixture(per_trial, eps), corpus_dir, args.tokenizer, shared)["seconds"]
                 for eps in SWEEP_EPS)
    result = {"scaling": rows, "first_trial_data_s": min(first_runs), "cached_trial_data_s": min(cached_runs),
              "cached_speedup": min(first_runs) / min(cached_runs),
              "first_trial_runs_s": first_runs, "cached_trial_runs_s": cached_runs,
              "sweep_trials": len(SWEEP_EPS), "sweep_examples_per_trial": per_trial,
              "sweep_data_s_uncached": uncached, "sweep_data_s_cached": cached,
              "sweep_cached_speedup": uncached / cached}
    if len(rows) > 1:
        result["peak_rss_largest_vs_smallest"] = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        result["peak_pss_largest_vs_smallest"] = rows[-1]["peak_pss_mb"] / rows[0]["peak_pss_mb"]
        result["first_row_vs_total_largest"] = rows[-1]["first_row_s"] / rows[-1]["total_s"]
    return result
