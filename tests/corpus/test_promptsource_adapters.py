"""PromptSource templates applied to local datasets, and P3 as published, on files in their layouts."""

from __future__ import annotations

import shutil

import pytest

from published_files import SAMPLE, template, write_jsonl, write_parquet, write_templates
from imlsweep.corpus.adapters.templates import TemplateRenderer, most_frequent, read_templates
from imlsweep.corpus.build import build_corpus
from imlsweep.corpus.config import CorpusConfig
from imlsweep.data.seeding import keyed_rng


def promptsource_config(templates, data, tasks, seed=0, **source) -> CorpusConfig:
    return CorpusConfig.model_validate({"seed": seed, "sources": [{
        "format": "promptsource", "templates": str(templates), "data": str(data), "tasks": tasks, **source}]})


def sample_promptsource(tasks, **source) -> CorpusConfig:
    return promptsource_config(SAMPLE / "promptsource" / "templates", SAMPLE / "promptsource" / "data", tasks,
                               **source)


def test_every_template_renders_every_example_with_its_answer_choices(tmp_path):
    config = sample_promptsource([{"dataset": "super_glue/rte", "category": "nli",
                                   "splits": {"train": "train", "validation": "test", "test": "test"}}])
    rows = build_corpus(config, tmp_path / "out").read_task("super_glue_rte").to_pylist()
    # 6 train + 3 validation examples x 3 templates; the inverted template renders only entailed pairs
    # (3 + 2) and every template renders empty on the unlabeled test split, which is skipped
    assert len(rows) == 9 * 2 + 5
    first = [row for row in rows if row["example_id"] == "super_glue_rte-train-0"]
    assert [row["template_id"] for row in first] == ["true or false", "does it follow that", "generate a consequence"]
    assert first[0]["input"] == "The cat sat on the mat all afternoon.\nQuestion: A cat was on the mat. True or False?"
    assert (first[0]["outputs"], first[0]["candidates"]) == (["True"], ["True", "False"])
    assert (first[2]["outputs"], first[2]["candidates"]) == (["A cat was on the mat."], None)
    assert {row["split"] for row in rows if "-validation-" in row["example_id"]} == {"test"}
    assert {row["split"] for row in rows if "-train-" in row["example_id"]} == {"train"}
    assert not [row for row in rows if "-test-" in row["example_id"]]
    assert {(row["instruction_type"], row["definition"], row["benchmark"]) for row in rows} == {
        ("instance", "", "promptsource")}


def test_original_task_only_keeps_the_original_task_templates(tmp_path):
    config = sample_promptsource([{"dataset": "super_glue/rte", "category": "nli"}], original_task_only=True)
    rows = build_corpus(config, tmp_path / "out").read_task("super_glue_rte").to_pylist()
    assert {row["template_id"] for row in rows} == {"true or false", "does it follow that"}
    assert len(rows) == 12  # train only (the default splits), positional splits for the build


def test_choice_filter_draws_from_the_seeded_stream(tmp_path):
    def targets(seed, out):
        config = sample_promptsource([{"dataset": "squad", "category": "qa"}], seed=seed, original_task_only=True)
        return [row["outputs"][0] for row in build_corpus(config, tmp_path / out).read_task("squad").to_pylist()]

    answers = [row["answers"]["text"] for row in map(__import__("json").loads,
               (SAMPLE / "promptsource/data/squad/train.jsonl").read_text().splitlines())]
    first = targets(0, "a")
    assert all(target in options for target, options in zip(first, answers))
    assert targets(0, "b") == first
    assert any(targets(seed, f"s{seed}") != first for seed in range(1, 6))


def test_save_to_disk_and_hub_parquet_copies_with_class_labels(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    saved = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": ["fine film", "dull film"], "label": [1, 0]}, features=features),
        "validation": datasets.Dataset.from_dict({"text": ["great cast"], "label": [1]}, features=features)})
    saved.save_to_disk(str(tmp_path / "data" / "imdb"))
    write_parquet(tmp_path / "data" / "yelp" / "train-00000-of-00001.parquet", {"text": ["tasty"], "label": [1]})
    saved["validation"].save_to_disk(str(tmp_path / "data" / "sst" / "train"))  # one Dataset as a split folder
    templates = [template("sentiment", "{{text}} Did the reviewer like it? ||| {{answer_choices[label]}}", "No ||| Yes")]
    for dataset in ("imdb", "yelp", "sst"):
        write_templates(tmp_path / "templates", dataset, templates)
    config = promptsource_config(tmp_path / "templates", tmp_path / "data",
                                 [{"dataset": "imdb", "category": "sentiment",
                                   "splits": {"train": "train", "validation": "validation"}},
                                  {"dataset": "yelp", "category": "sentiment"}, {"dataset": "sst", "category": "s"}])
    corpus = build_corpus(config, tmp_path / "out")
    imdb = corpus.read_task("imdb").to_pylist()
    assert [(row["input"], row["outputs"], row["split"]) for row in imdb] == [
        ("fine film Did the reviewer like it?", ["Yes"], "train"), ("dull film Did the reviewer like it?", ["No"], "train"),
        ("great cast Did the reviewer like it?", ["Yes"], "validation")]
    assert corpus.read_task("yelp").to_pylist()[0]["outputs"] == ["Yes"]
    assert corpus.read_task("sst").to_pylist()[0]["input"] == "great cast Did the reviewer like it?"


def test_helpers_real_templates_use_and_pipes_inside_the_data(tmp_path):
    write_jsonl(tmp_path / "data" / "votes" / "train.jsonl", [
        {"question": "Best pet? a ||| b", "votes": ["cat", "dog", "cat"], "options": ["cat", "dog"], "scores": [3, 1]}])
    write_templates(tmp_path / "templates", "votes", [
        template("majority", "{{question}} ||| {{ votes | most_frequent | join(', ') }}"),
        template("zipped", "{% for option, score in zip(options, scores) %}{{loop.index}}. {{option}}={{score}} "
                           "{% endfor %}||| {% for i, option in enumerate(options) %}{{i}}:{{option}} {% endfor %}")])
    corpus = build_corpus(promptsource_config(tmp_path / "templates", tmp_path / "data",
                                              [{"dataset": "votes", "category": "poll"}]), tmp_path / "out")
    majority, zipped = corpus.read_task("votes").to_pylist()
    assert (majority["input"], majority["outputs"]) == ("Best pet? a ||| b", ["cat"])
    assert (zipped["input"], zipped["outputs"]) == ("1. cat=3 2. dog=1", ["0:cat 1:dog"])


def test_template_file_parsing_and_the_renderer_on_their_own():
    templates = read_templates(SAMPLE / "promptsource" / "templates" / "ag_news" / "templates.yaml")
    assert [(t.name, t.original_task) for t in templates] == [("classify", True), ("which section choices", True)]
    renderer = TemplateRenderer()
    rendered = renderer.render(renderer.compile(templates[1]), {"text": "Rates held.", "label": 2}, keyed_rng(0, "x"))
    assert rendered.prompt.startswith("Rates held.\nWhich section") and rendered.targets == ["Business"]
    assert most_frequent([1, 2, 2, 1, 3]) == [1, 2]


def test_p3_subsets_grouped_back_into_tasks(tmp_path):
    data = tmp_path / "p3"
    shutil.copytree(SAMPLE / "p3" / "data", data)
    # a score_eval subset (one row per option) and a longer prefix another task names stay out of hellaswag
    write_parquet(data / "hellaswag_complete_first_then_score_eval" / "train-00000-of-00001.parquet",
                  {"inputs_pretokenized": ["x"], "targets_pretokenized": ["y"], "is_correct": [True]})
    write_parquet(data / "hellaswag_v2_plain" / "train.parquet",
                  {"inputs_pretokenized": ["x"], "targets_pretokenized": ["y"]})
    write_jsonl(data / "hellaswag_v2_plain" / "validation.jsonl",
                [{"inputs_pretokenized": "v", "targets_pretokenized": "w"}])
    config = CorpusConfig.model_validate({"sources": [{"format": "p3", "path": str(data), "tasks": [
        {"dataset": "cos_e_v1.11", "task_id": "p3_cos_e", "category": "qa"},
        {"dataset": "hellaswag", "category": "completion"},
        {"dataset": "hellaswag_v2", "category": "completion", "splits": {"train": None, "validation": "validation"}},
        {"dataset": "hellaswag", "task_id": "hellaswag_one", "templates": ["complete_first_then"], "category": "x"},
    ]}]})
    corpus = build_corpus(config, tmp_path / "out")
    cos_e = corpus.read_task("p3_cos_e").to_pylist()
    assert sorted({row["template_id"] for row in cos_e}) == ["explain_why_human", "question_option_description_text"]
    by_template = {row["template_id"]: row for row in cos_e if row["example_id"] == "p3_cos_e-train-0"}
    assert by_template["question_option_description_text"]["candidates"] == ["cupboard", "table", "oven"]
    assert by_template["question_option_description_text"]["outputs"] == ["cupboard"]
    assert by_template["question_option_description_text"]["input"].endswith("- oven")  # stripped
    assert by_template["explain_why_human"]["candidates"] is None
    assert {row["instruction_type"] for row in cos_e} == {"instance"}
    assert {row["template_id"] for row in corpus.read_task("hellaswag").to_pylist()} == {
        "complete_first_then", "Predict_ending_with_hint"}
    v2 = corpus.read_task("hellaswag_v2").to_pylist()
    assert [(row["template_id"], row["split"]) for row in v2] == [("plain", "train"), ("plain", "validation")]
    assert {row["template_id"] for row in corpus.read_task("hellaswag_one").to_pylist()} == {"complete_first_then"}
    manifest = corpus.manifest.set_index("task_id")
    assert manifest.loc["p3_cos_e", "benchmark"] == "promptsource"
    assert manifest.loc["p3_cos_e", "data_source"] == "cos_e_v1.11"


@pytest.mark.parametrize("seed", [0, 1])
def test_templates_render_the_same_rows_on_every_build(tmp_path, seed):
    config = sample_promptsource([{"dataset": "squad", "category": "qa"}, {"dataset": "ag_news", "category": "news"}],
                                 seed=seed)
    first = build_corpus(config, tmp_path / "a").read_task("squad").to_pylist()
    assert build_corpus(config, tmp_path / "b").read_task("squad").to_pylist() == first
