"""`imlsweep bench corpus`: `corpus build` and `corpus leakage` on a synthetic SuperNI checkout of the
real benchmark's size.

The synthetic checkout has SuperNI's layout (`tasks/<task>.json` in the published schema, written with
the same 4-space indentation, and `splits/default/*.txt`) and its size: 1616 task files, about 5M
instances and a few GB of JSON. Instances per task follow a lognormal capped at SuperNI's 6,500 (about
3,100 a task on average); each task has its own typical input and output length (lognormal across
tasks, so a few tasks of long documents dominate the bytes), with words drawn from the bundled sample at
their frequencies there. 119 tasks are test tasks in 12 held-out categories, as in the default split; one
training task repeats 20 inputs of the first test task's test instances, so the leakage check has one
pair to find. `--scale` keeps that shape with fewer task files.

Each command runs in its own process: wall time (its imports and, for leakage, Ray's start included),
input MB/s (task JSON read by the build over its wall time) and the peak RSS of the command's process and
its children (Ray's workers for leakage), sampled, and for the build at least the kernel's own peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imlsweep.output import print_figures

SUPERNI_TASKS = 1616
TEST_TASKS = 119  # the default split's test tasks
CATEGORIES = 76
HELD_OUT_CATEGORIES = 12  # the default split's test tasks come from 12 categories kept out of training
MAX_INSTANCES = 6500  # SuperNI's cap on instances per task
# Lognormal (median, sigma) of a task's instances, clipped to [20, MAX_INSTANCES]: ~3,100 per task, 5.0M in all.
INSTANCES = (2500, 1.0)
# A task's median input / output words (lognormal across tasks, clipped), then each instance's words around
# its task's median (lognormal, sigma WITHIN_TASK_SIGMA): ~95 words an instance, a few GB of JSON in all.
INPUT_WORDS = (40, 1.2, (3, 2000))
OUTPUT_WORDS = (3, 1.0, (1, 200))
WITHIN_TASK_SIGMA = 0.5
PLANTED_LEAKS = 20
MB = 1e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=float, default=1.0,
                        help=f"fraction of SuperNI's {SUPERNI_TASKS} task files to write (default 1: ~5M instances); "
                        "the task sizes keep the same distribution")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where the checkout and the corpus go (default: a temporary folder); "
                        "a checkout written there before with the same scale and seed is reused")


@dataclass
class TaskShapes:
    """Per task: instances, median input words and median output words."""

    instances: np.ndarray
    input_words: np.ndarray
    output_words: np.ndarray


def task_count(scale: float) -> int:
    """Task files at `scale`: at least one training task, one test task and the one that leaks."""
    return max(3, round(SUPERNI_TASKS * scale))


def lognormal(rng: np.random.Generator, shape: tuple[float, float, tuple[float, float]], size: int) -> np.ndarray:
    median, sigma, (low, high) = shape
    return np.clip(rng.lognormal(np.log(median), sigma, size=size), low, high)


def task_shapes(tasks: int, rng: np.random.Generator) -> TaskShapes:
    instances = lognormal(rng, (*INSTANCES, (20, MAX_INSTANCES)), tasks).astype(np.int64)
    return TaskShapes(instances, lognormal(rng, INPUT_WORDS, tasks), lognormal(rng, OUTPUT_WORDS, tasks))


def held_out_task_numbers(tasks: int, rng: np.random.Generator) -> set[int]:
    """The test tasks, drawn: SuperNI's 119 of 1616, in proportion at a smaller scale (at least one)."""
    count = max(1, round(tasks * TEST_TASKS / SUPERNI_TASKS))
    return set(rng.choice(tasks - 1, size=count, replace=False).tolist())  # the last task trains (and leaks)


class WordSource:
    """Texts of words drawn from the bundled SuperNI sample, each word as often as it occurs there."""

    def __init__(self, rng: np.random.Generator):
        from imlsweep.data.tokenizer import sample_texts

        self.words = [word for text in sample_texts() for word in text.split()]
        self.rng = rng

    def texts(self, median_words: float, count: int) -> list[str]:
        """`count` texts whose word counts vary around `median_words` (lognormal)."""
        lengths = np.maximum(1, self.rng.lognormal(np.log(median_words), WITHIN_TASK_SIGMA, size=count)).astype(np.int64)
        indices = self.rng.integers(0, len(self.words), size=int(lengths.sum()))
        ends = np.cumsum(lengths)
        pick = self.words.__getitem__
        return [" ".join(map(pick, indices[end - length:end].tolist())) for end, length in zip(ends, lengths)]


def category_name(number: int) -> str:
    return f"Synthetic Category {number:02d}"


def held_out_categories() -> list[str]:
    return [category_name(number) for number in range(HELD_OUT_CATEGORIES)]


def task_header(task_id: str, category: str, words: WordSource) -> dict[str, Any]:
    """Every field of a published SuperNI task file before its instances."""
    definition, *demonstrations = words.texts(45, 1) + words.texts(25, 6)
    examples = [{"input": demonstrations[2 * i], "output": demonstrations[2 * i + 1].split(" ", 1)[0],
                 "explanation": "The output follows the definition."} for i in range(3)]
    return {"Contributors": ["Synthetic Contributor"], "Source": [f"{task_id}_source"],
            "URL": [f"https://example.org/{task_id}"], "Categories": [category], "Reasoning": [],
            "Definition": [definition], "Input_language": ["English"], "Output_language": ["English"],
            "Instruction_language": ["English"], "Domains": ["Synthetic"], "Positive Examples": examples[:2],
            "Negative Examples": examples[2:]}


def instance_json(instance_id: str, input_text: str, outputs: list[str]) -> str:
    """One instance as the published files indent it (4 spaces a level)."""
    output_lines = ",\n".join(f"                {json.dumps(output)}" for output in outputs)
    return (f'        {{\n            "id": {json.dumps(instance_id)},\n            "input": {json.dumps(input_text)},\n'
            f'            "output": [\n{output_lines}\n            ]\n        }}')


def task_file_text(header: dict[str, Any], instances: list[str]) -> str:
    head = json.dumps(header, indent=4)[:-2]  # the object without its closing brace
    return head + ',\n    "Instances": [\n' + ",\n".join(instances) + "\n    ]\n}\n"


def write_checkout(out: Path, shapes: TaskShapes, tests: set[int], seed: int) -> dict[str, Any]:
    """Write a synthetic SuperNI checkout of tasks shaped by `shapes`, `tests` (task numbers) the test
    tasks and the last task the one that leaks; returns its tasks, instances, MB of task JSON and largest
    task."""
    rng = np.random.default_rng(seed)
    words = WordSource(rng)
    tasks = len(shapes.instances)
    tasks_dir = out / "tasks"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    names = [f"task{number:04d}_synthetic" for number in range(tasks)]
    leaked: list[str] = []
    sizes = []
    for number, task_id in enumerate(names):
        category = (category_name(number % HELD_OUT_CATEGORIES) if number in tests
                    else category_name(HELD_OUT_CATEGORIES + number % (CATEGORIES - HELD_OUT_CATEGORIES)))
        count = int(shapes.instances[number])
        inputs = words.texts(shapes.input_words[number], count)
        if number == tasks - 1:  # the leaking training task
            inputs[:len(leaked)] = leaked
        elif number in tests and not leaked:
            leaked = inputs[:min(PLANTED_LEAKS, count)]
        outputs = words.texts(shapes.output_words[number], count)
        ids = [f"{task_id.split('_')[0]}-{rng.bytes(16).hex()}" for _ in range(count)]
        text = task_file_text(task_header(task_id, category, words),
                              [instance_json(*row, [output]) for *row, output in zip(ids, inputs, outputs)])
        path = tasks_dir / f"{task_id}.json"
        path.write_text(text, encoding="utf-8")
        sizes.append(path.stat().st_size)
    splits = out / "splits" / "default"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "test_tasks.txt").write_text("".join(f"{names[n]}\n" for n in sorted(tests)), encoding="utf-8")
    (splits / "train_tasks.txt").write_text("".join(f"{name}\n" for n, name in enumerate(names) if n not in tests),
                                            encoding="utf-8")
    (splits / "excluded_tasks.txt").write_text("", encoding="utf-8")
    return {"tasks": tasks, "instances": int(shapes.instances.sum()), "input_mb": round(sum(sizes) / MB, 1),
            "largest_task_mb": round(max(sizes) / MB, 1)}


def corpus_config(checkout: Path, seed: int) -> dict[str, Any]:
    """The corpus config of the checkout: the default split's test tasks and held-out categories."""
    return {"name": "superni_synthetic", "seed": seed,
            "sources": [{"benchmark": "superni", "format": "superni", "path": str(checkout)}],
            "split": {"fully_held_out_categories": held_out_categories()}}


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: float
    stdout: str


def measured_command(command: list[str], what: str) -> Measured:
    """Run `command` in its own process: wall seconds, peak RSS of it and its children, its stdout."""
    from imlsweep.bench.data import PeakRss

    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        with PeakRss(pid=process.pid) as memory:
            _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{what} failed:\n{stderr.read().decode(errors='replace')[-3000:]}")
        peak = max(memory.peak, usage.ru_maxrss * 1024)  # ru_maxrss: the process's own peak, in KB on Linux
        return Measured(wall, peak / 2**20, stdout.read().decode())


def figures(checkout: dict[str, Any], build: Measured, leakage: Measured, report: dict[str, Any]) -> dict[str, Any]:
    return {
        **checkout,
        "build_s": round(build.wall_s, 1),
        "build_mb_per_s": round(checkout["input_mb"] / build.wall_s, 1),
        "leakage_s": round(leakage.wall_s, 1),
        "peak_rss_mb": round(build.peak_rss_mb),
        "leakage_peak_rss_mb": round(leakage.peak_rss_mb),
        "leakage_flagged_pairs": len(report["flagged"]),
    }


def prepared_checkout(workdir: Path, tasks: int, seed: int) -> dict[str, Any]:
    checkout, summary_file = workdir / "superni", workdir / "superni.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if summary["tasks"] == tasks and summary["seed"] == seed:
            return summary["checkout"]
    rng = np.random.default_rng(seed)
    shapes = task_shapes(tasks, rng)
    summary = {"tasks": tasks, "seed": seed,
               "checkout": write_checkout(checkout, shapes, held_out_task_numbers(tasks, rng), seed)}
    summary_file.write_text(json.dumps(summary))
    return summary["checkout"]


def run(args: argparse.Namespace) -> int:
    import yaml

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="imlsweep-bench-corpus-"))
    workdir.mkdir(parents=True, exist_ok=True)
    tasks = task_count(args.scale)
    print(f"[bench corpus] writing {tasks} synthetic SuperNI task files", file=sys.stderr, flush=True)
    checkout = prepared_checkout(workdir, tasks, args.seed)
    config_path = workdir / "superni_synthetic.yaml"
    config_path.write_text(yaml.safe_dump(corpus_config(workdir / "superni", args.seed)), encoding="utf-8")
    corpus_dir = workdir / "corpus"
    cli = [sys.executable, "-m", "imlsweep.cli", "corpus"]
    print(f"[bench corpus] corpus build: {checkout['input_mb']:.0f} MB of task JSON, {checkout['instances']:,} "
          "instances", file=sys.stderr, flush=True)
    build = measured_command([*cli, "build", str(config_path), "--out", str(corpus_dir), "--overwrite", "--json"],
                             "corpus build")
    print(f"[bench corpus] built in {build.wall_s:.1f} s ({checkout['input_mb'] / build.wall_s:.1f} MB/s), peak RSS "
          f"{build.peak_rss_mb:.0f} MB; corpus leakage", file=sys.stderr, flush=True)
    leakage = measured_command([*cli, "leakage", str(corpus_dir), "--json"], "corpus leakage")
    print_figures(figures(checkout, build, leakage, json.loads(leakage.stdout)), args.json)
    return 0
