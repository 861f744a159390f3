"""Corpus configs and the build: defaults, paths, category map, caps, filters, removals, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from corpus_files import superni_task, write_json
from imlsweep.assets import SUPERNI_SAMPLE_DIR
from imlsweep.config import ConfigError
from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import CorpusConfig, load_corpus_config
from imlsweep.corpus.splits import capped_indices, instance_splits
from imlsweep.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def superni_config(path: Path, **extra) -> CorpusConfig:
    return CorpusConfig.model_validate({"sources": [{"benchmark": "superni", "format": "superni", "path": str(path)}],
                                        **extra})


def test_minimal_config_uses_the_split_files_and_defaults(tmp_path, small_superni):
    config = load_corpus_config(write_config(tmp_path / "c.yaml", {
        "sources": [{"benchmark": "superni", "format": "superni", "path": "superni"}]}))
    assert config.sources[0].path == str(small_superni)  # relative to the config's folder
    assert (config.task_cap, config.split.eval_test_size, config.split.eval_validation_size) == (100_000, 100, 10)
    corpus = build_corpus(config, tmp_path / "out")
    manifest = corpus.manifest.set_index("task_id")
    assert manifest.loc["task1344_glue_entailment_classification", "split"] == "test"
    assert manifest.loc["task1344_glue_entailment_classification", "level"] == "partially_supervised"
    # 23 instances < the default 100: every one is in the test set.
    assert manifest.loc["task1344_glue_entailment_classification", "n_test"] == 23
    assert set(manifest.loc[["task1331_reverse_array", "task363_sst2_polarity_classification"], "split"]) == {"train"}


def test_tasks_in_neither_list_train_and_excluded_tasks_are_left_out(tmp_path, small_superni):
    write_json(small_superni / "tasks" / "task9000_unlisted.json", superni_task())
    write_json(small_superni / "tasks" / "task9001_excluded.json", superni_task())
    (small_superni / "splits" / "default" / "excluded_tasks.txt").write_text("task9001_excluded\n")
    corpus = build_corpus(superni_config(small_superni), tmp_path / "out")
    assert corpus.manifest.set_index("task_id").loc["task9000_unlisted", "split"] == "train"
    assert "task9001_excluded" not in corpus.task_ids()
    stats = json.loads((corpus.dir / "stats.json").read_text())
    assert stats["build"]["left_out"] == {"listed in excluded_tasks.txt": ["task9001_excluded"]}


def test_official_split_lists_are_reproduced(tmp_path):
    """With a task file for every task the split files name, the build has their 119 test tasks and every
    train task, and no excluded one."""
    lists = {name: (SUPERNI_SAMPLE_DIR / "splits" / "default" / f"{name}_tasks.txt").read_text().split()
             for name in ("train", "test", "excluded")}
    root = tmp_path / "full"
    (root / "tasks").mkdir(parents=True)
    (root / "splits").symlink_to(SUPERNI_SAMPLE_DIR / "splits")
    for task_id in lists["train"] + lists["test"] + lists["excluded"]:
        write_json(root / "tasks" / f"{task_id}.json", superni_task(n_instances=1, source=task_id))
    corpus = build_corpus(superni_config(root), tmp_path / "out")
    assert len(lists["test"]) == 119
    assert corpus.task_ids(split="test") == sorted(lists["test"])
    assert corpus.task_ids(split="train") == sorted(lists["train"])


def test_pkg_paths_and_the_shipped_configs_load():
    sample = load_corpus_config(REPO / "sweeps" / "corpora" / "superni_sample.yaml")
    assert sample.sources[0].path == str(SUPERNI_SAMPLE_DIR)
    full = load_corpus_config(REPO / "sweeps" / "corpora" / "superni.yaml")
    assert full.split.eval_test_size == 100
    bench = load_corpus_config(REPO / "sweeps" / "corpora" / "opt_iml_bench.yaml")
    assert {source.benchmark for source in bench.sources} == {
        "superni", "promptsource", "flan", "crossfit", "exmix", "t5", "unifiedskg", "reasoning"}
    assert {source.format for source in bench.sources} == {
        "superni", "promptsource", "flan", "crossfit", "hf", "unifiedskg", "reasoning"}
    assert bench.sources[1].templates == str((REPO / "data/promptsource/promptsource/templates").resolve())
    bench_sample = load_corpus_config(REPO / "sweeps" / "corpora" / "opt_iml_bench_sample.yaml")
    assert bench_sample.sources[1].data == str(SUPERNI_SAMPLE_DIR.parent / "opt_iml_sample" / "promptsource" / "data")
    assert bench.cap_for("flan") == 30_000 and bench.cap_for("superni") == 100_000
    assert bench.canonical_category("Hate Speech Detection") == "Toxic Language Detection"


def test_config_errors_name_the_file_and_key(tmp_path):
    path = write_config(tmp_path / "bad.yaml", {
        "sources": [{"benchmark": "superni", "format": "superni", "path": "x"}], "task_cpa": 5})
    with pytest.raises(ConfigError, match=r"bad.yaml: task_cpa: Extra inputs are not permitted"):
        load_corpus_config(path)
    path = write_config(tmp_path / "bad2.yaml", {"sources": [{"format": "csv", "path": "x"}]})
    with pytest.raises(ConfigError, match=r"bad2.yaml: sources.0"):
        load_corpus_config(path)


def test_category_map_and_fully_held_out_categories(tmp_path, small_superni):
    write_json(small_superni / "tasks" / "task9000_hate.json", superni_task(category="Hate Speech Detection"))
    config = superni_config(small_superni, category_map={"hate speech detection": "Toxic Language Detection"},
                            split={"fully_held_out_categories": ["toxic language detection"], "eval_test_size": 1,
                                   "eval_validation_size": 1})
    corpus = build_corpus(config, tmp_path / "out")
    row = corpus.manifest.set_index("task_id").loc["task9000_hate"]
    assert (row["category"], row["split"], row["level"]) == ("Toxic Language Detection", "test", "fully_held_out")
    assert corpus.read_task("task9000_hate", columns=["split"]).column("split").to_pylist() == [
        "test", "validation", "train"]


def test_config_task_lists_and_supervised_held_out_instances(tmp_path, small_superni):
    config = superni_config(small_superni, split={
        "validation_tasks": ["task1331_reverse_array"], "supervised_test_size": 3, "supervised_validation_size": 2})
    corpus = build_corpus(config, tmp_path / "out")
    manifest = corpus.manifest.set_index("task_id")
    assert manifest.loc["task1331_reverse_array", "split"] == "validation"
    sst2 = manifest.loc["task363_sst2_polarity_classification"]
    assert (sst2["split"], sst2["level"], sst2["n_test"], sst2["n_validation"]) == ("train", "fully_supervised", 3, 2)
    levels = corpus.read_task("task363_sst2_polarity_classification", columns=["level"]).column("level")
    assert set(levels.to_pylist()) == {"fully_supervised"}


def test_caps_are_seeded_deterministic_and_keep_source_order(tmp_path, small_superni):
    def kept(seed: int, out: str, **caps) -> list[int]:
        corpus = build_corpus(superni_config(small_superni, seed=seed, **caps), tmp_path / out)
        return corpus.read_task("task363_sst2_polarity_classification", columns=["source_index"]) \
            .column("source_index").to_pylist()

    first = kept(0, "a", task_cap=7)
    assert len(first) == 7 and first == sorted(first)
    assert kept(0, "b", task_cap=7) == first
    assert kept(1, "c", task_cap=7) != first
    assert len(kept(0, "d", task_cap=7, benchmark_task_caps={"superni": 5})) == 5


def test_pure_split_and_cap_functions():
    assert capped_indices(5, 10, 0, "t") == [0, 1, 2, 3, 4]
    assert capped_indices(100, 10, 3, "t") == capped_indices(100, 10, 3, "t")
    assert capped_indices(100, 10, 3, "t") != capped_indices(100, 10, 3, "u")
    # Rows of one example (several templates) share the example's split.
    assert instance_splits(["a", "a", "b", "c", "c", "d"], 1, 1) == [
        "test", "test", "validation", "train", "train", "train"]


def test_language_filter_and_removals_are_recorded(tmp_path, small_superni):
    french = superni_task()
    french["Output_language"] = ["French"]
    write_json(small_superni / "tasks" / "task9000_french.json", french)
    removals = tmp_path / "removals.txt"
    removals.write_text("task1331_reverse_array  # overlaps an eval task\n")
    config = superni_config(small_superni, languages=["English"], removals=str(removals))
    corpus = build_corpus(config, tmp_path / "out")
    assert "task9000_french" not in corpus.task_ids() and "task1331_reverse_array" not in corpus.task_ids()
    left_out = json.loads((corpus.dir / "stats.json").read_text())["build"]["left_out"]
    assert left_out == {"language not in the config's languages": ["task9000_french"],
                        "listed in the removals file": ["task1331_reverse_array"]}


def test_training_tasks_sharing_a_data_source_with_an_eval_task(tmp_path, small_superni):
    write_json(small_superni / "tasks" / "task9000_rte_copy.json", superni_task(source="rte"))
    assert "task9000_rte_copy" in build_corpus(superni_config(small_superni), tmp_path / "keep").task_ids()
    corpus = build_corpus(superni_config(small_superni, shared_data_source="drop_train"), tmp_path / "drop")
    assert "task9000_rte_copy" not in corpus.task_ids()
    assert not (corpus.dir / "data" / "superni" / "task9000_rte_copy.parquet").exists()
    with pytest.raises(UserError, match="task9000_rte_copy shares data source 'rte' with eval task task1344"):
        build_corpus(superni_config(small_superni, shared_data_source="error"), tmp_path / "error")
    assert not (tmp_path / "error").exists()


def test_output_folder_is_replaced_only_on_request(tmp_path, small_superni):
    out = tmp_path / "out"
    build_corpus(superni_config(small_superni), out)
    with pytest.raises(UserError, match="already exists"):
        build_corpus(superni_config(small_superni), out)
    corpus = build_corpus(superni_config(small_superni, task_cap=2), out, overwrite=True)
    assert set(corpus.manifest["n_examples"]) == {2}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "superni"]
    assert pq.read_table(out / "manifest.parquet").num_rows == 3


def test_task_rows_equal_rows_built_value_by_value():
    """The build copies a task's own values (definition, demonstrations ...) onto its rows with Arrow: every
    row equals the row written out value by value, caps and splits included."""
    from imlsweep.corpus.build import task_table
    from imlsweep.corpus.schema import ROW_SCHEMA
    from imlsweep.corpus.splits import TaskRole
    from imlsweep.corpus.task import Example, SourceTask

    examples = [Example(f"input {i}", [f"out {i}", "other"], f"e{i // 2}", candidates=["a", "b"] if i % 3 else None,
                        template_id=f"t{i % 2}", split="validation" if i == 5 else None) for i in range(9)]
    demonstrations = [{"input": "x", "output": "y", "explanation": "z"}, {"input": "u", "output": "v", "explanation": ""}]
    task = SourceTask(task_id="task1_made_up", benchmark="bench", source_file="f.json", category="Raw", data_source="src",
                      instruction_type="instance", definition="Define.", language="English", examples=examples,
                      positive_examples=demonstrations, negative_examples=demonstrations[:1])
    config = CorpusConfig.model_validate({"sources": [{"format": "superni", "path": "x"}], "task_cap": 7, "seed": 3,
                                          "split": {"supervised_test_size": 1, "supervised_validation_size": 1}})
    table = task_table(task, "Category", TaskRole("train", "fully_supervised"), config)

    keep = capped_indices(9, 7, 3, task.task_id)
    kept = [examples[index] for index in keep]
    splits = instance_splits([e.example_id for e in kept], 1, 1, [e.split for e in kept])
    expected = [{"task_id": task.task_id, "benchmark": "bench", "data_source": "src", "category": "Category",
                 "instruction_type": "instance", "definition": "Define.", "positive_examples": demonstrations,
                 "negative_examples": demonstrations[:1], "template_id": e.template_id, "input": e.input,
                 "outputs": e.outputs, "candidates": e.candidates, "split": split, "level": "fully_supervised",
                 "example_id": e.example_id, "language": "English", "source_index": index}
                for index, e, split in zip(keep, kept, splits)]
    assert len(keep) == 7 and table.schema == ROW_SCHEMA
    assert table.to_pylist() == expected


def test_statistics_gathered_while_building_equal_those_of_the_built_files(tmp_path, small_superni):
    from imlsweep.corpus.stats import corpus_stats

    corpus = build_corpus(superni_config(small_superni, split={"eval_test_size": 5, "eval_validation_size": 2}),
                          tmp_path / "out")
    written = json.loads((corpus.dir / "stats.json").read_text())
    written.pop("build")
    assert written == corpus_stats(corpus)
    assert written["splits"]["test"]["examples"] == 5 and written["splits"]["dev"]["examples"] == 2
