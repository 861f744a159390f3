"""Rendering corpus tasks: the eval-facing `render_examples` and demonstrations drawn per task."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from imlsweep.data.demonstrations import DemonstrationsConfig
from imlsweep.data.encodings import EncodingConfig
from imlsweep.data.render import TaskPrompter, render_examples, split_positions, task_rows
from imlsweep.data.stream import open_corpus

TASK = "task190_snli_classification"


def test_render_examples_for_eval_with_shots_from_the_train_split(sample_corpus):
    corpus = open_corpus(str(sample_corpus))
    examples = render_examples(corpus, [TASK], "test", "superni_def_pos", seed=0, max_per_task=4, shots=2)
    table = corpus.read_task(TASK)
    test_rows = table.take(split_positions(table, "test")[:4]).to_pylist()
    assert [e.example_id for e in examples] == [r["example_id"] for r in test_rows]  # the first N, source order
    train_inputs = [r["input"].strip() for r in table.take(split_positions(table, "train")).to_pylist()]
    for example, row in zip(examples, test_rows):
        assert example.outputs == row["outputs"] and example.target in row["outputs"]
        assert (example.benchmark, example.level) == ("superni", "fully_held_out")
        # 2 positive examples of the definition, then the 2 shots drawn from the train split
        assert " Positive Example 4 -" in example.source and " Positive Example 5 -" not in example.source
        shown = example.source.split(" Positive Example 3 -\nInput: ")[1].split("\n Output:")[0]
        assert any(shown.startswith(text[:40]) for text in train_inputs)
    assert len({e.source.split("Now complete")[0] for e in examples}) == 1  # shared by the task's examples
    assert render_examples(corpus, [TASK], "test", "superni_def_pos", seed=0, max_per_task=4, shots=2) == examples


def test_task_rows_are_the_rows_with_task_level_values_converted_once(sample_corpus):
    table = open_corpus(str(sample_corpus)).read_task(TASK)
    indices = np.array([5, 0, 3])
    rows = task_rows(table, indices)
    assert rows == table.take(indices).to_pylist() and task_rows(table, np.zeros(0, np.int64)) == []
    assert rows[0]["definition"] is rows[2]["definition"] and rows[0]["input"] != rows[1]["input"]


def test_split_positions_are_in_source_order_whatever_the_file_order():
    import pyarrow as pa

    rows = [(3, "b", "train"), (1, "a", "test"), (3, "a", "train"), (0, "z", "train"), (2, "a", "train")]
    table = pa.table({name: list(column) for name, column in zip(["source_index", "template_id", "split"], zip(*rows))})
    expected = [i for i in sorted(range(len(rows)), key=lambda i: rows[i][:2]) if rows[i][2] == "train"]
    assert split_positions(table, "train").tolist() == expected == [3, 4, 2, 0]
    in_order = table.take([3, 1, 4])  # written in source order, one row per source example
    assert split_positions(in_order, "train").tolist() == [0, 2]


def test_metaicl_shots_follow_the_truncated_zipf_and_never_show_the_example_itself(superni_row):
    rows = [superni_row("task1508_wordnet_antonyms", i) | {"split": "train", "source_index": i} for i in range(40)]
    pool = pa.Table.from_pylist(rows)
    prompter = TaskPrompter("task1508", pool, np.arange(pool.num_rows), EncodingConfig(name="no_instruction"),
                            DemonstrationsConfig(shots=5, metaicl_zipf_a=2.0, separator="\n\n\n"), seed=0)
    shots = Counter()
    for position, row in enumerate(rows):
        prompt = prompter.prompt(row, position)
        demos = prompt.shared.split("\n\n\n")[:-1]
        shots[len(demos)] += 1
        assert all(demo.split("\n")[0] != row["input"] for demo in demos)
    assert shots[0] > shots[1] > 0 and max(shots) <= 5
