"""Specs: plan counts for every shipped sweep, expansion, labels, and errors that name the file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imlsweep.cli import main
from imlsweep.config import ConfigError
from imlsweep.sweep.expand import label_value, set_dotted
from imlsweep.sweep.plan import max_concurrent_trials, model_params, plan_summary
from imlsweep.sweep.spec import load_spec
from imlsweep.sweep.sweep import open_spec
from imlsweep.sweep.trainable import runs_in_process, trainable_resources

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
EXPECTED_TRIALS = {
    "stl_mtl_sample_efficiency": {"prefinetune": 1, "single_task": 952, "multi_task": 8},
    "eps_mixing_rate": {"eps": 9},
    "benchmark_proportions": {"proportions": 10},
    "task_scaling": {"tasks": 5},
    "category_scaling": {"categories": 4},
    "addon_fractions": {"addons": 9},
    "lr_batch": {"lr_batch": 12},
    "demonstrations": {"metaicl": 3},
    "quickstart": {"single_task": 24, "multi_task": 12},
    "mixture_search": {"proxies": 49, "proposed": 2, "eps_target": 1},
    "transfer_matrix": {"single_task": 33, "transfer": 1056},
    "merge_single_task": {"single_task": 119, "multi_task": 1, "merged_uniform": 12, "merged": 72},
}


def test_every_shipped_spec_is_counted():
    assert {path.stem for path in SWEEPS.glob("*.yaml")} == set(EXPECTED_TRIALS)


@pytest.mark.parametrize("name", sorted(EXPECTED_TRIALS))
def test_plan_counts(name, tmp_path):
    sweep = open_spec(SWEEPS / f"{name}.yaml", str(tmp_path))  # builds every TrialConfig
    summary = plan_summary(sweep)
    assert summary["trials_by_stage"] == EXPECTED_TRIALS[name]
    assert summary["total_trials"] == sum(EXPECTED_TRIALS[name].values()) == len(sweep.trials)
    assert len({trial.name for trial in sweep.trials}) == len(sweep.trials)
    assert summary["trial_hours"] > 0 and (summary["gpu_hours"] > 0) == (sweep.spec.resources.gpus_per_worker > 0)


def test_961_grid(tmp_path, capsys):
    assert main(["sweep", "plan", str(SWEEPS / "stl_mtl_sample_efficiency.yaml"), "--storage", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total_trials"] == 961
    assert summary["trials_by_setting"] == {"single_task": 952, "multi_task": 9}
    assert main(["sweep", "plan", str(SWEEPS / "stl_mtl_sample_efficiency.yaml"), "--storage", str(tmp_path)]) == 0
    assert "961 = 952 single_task + 9 multi_task" in capsys.readouterr().out

    trials = {t.name: t for t in open_spec(SWEEPS / "stl_mtl_sample_efficiency.yaml").trials}
    stl = trials["single_task-plain_200-task1344"]
    assert stl.config.mixture.tasks == ["task1344_glue_entailment_classification"]
    assert stl.config.eval.tasks == stl.config.mixture.tasks
    assert stl.config.mixture.encoding.name == "no_instruction"
    assert stl.config.init_from.endswith("prefinetune-f_m1/hf_model") and stl.depends_on == "prefinetune-f_m1"
    assert stl.labels == {"setting": "single_task", "cell": "plain_200", "instructions": False,
                          "samples_per_task": 200, "trained_task": "task1344_glue_entailment_classification"}
    mtl = trials["multi_task-tk_all"]
    assert len(mtl.config.mixture.tasks) == 119 and mtl.config.mixture.samples_per_task == "all"
    assert mtl.config.model.name == "allenai/tk-instruct-3b-def-pos" and mtl.config.init_from is None
    assert trials["prefinetune-f_m1"].config.train.export_hf is True  # a later stage starts from it
    assert mtl.config.train.export_hf is False


def write_spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


GOOD = """
name: s
corpus: {corpus}
base:
  model: {{name: tiny-llama}}
  mixture: {{tasks: [a, b]}}
stages:
  - name: one
    axes: {{train.lr: [1.0e-4, 2.0e-4]}}
"""


@pytest.mark.parametrize("change, message", [
    ("stages:\n  - name: one\n    axes: {train.lrr: [1]}", "trial one-lrr=1: train.lrr: Extra inputs are not permitted"),
    ("stages:\n  - name: one\n    axes: {train.lr: [fast]}", "train.lr: Input should be a valid number"),
    ("stages:\n  - name: one\n    axes: {train.lr: []}", "stages.0.axes: Value error, axis 'train.lr' has no values"),
    ("stages:\n  - name: one\n    depends_on: nope", "stages.0.depends_on: no trial 'nope' in an earlier stage"),
    ("stages:\n  - name: one\n    set: {model.name.x: 1}", "stages.0.set: model.name.x: model.name is 'tiny-llama', not a mapping"),
    ("stages:\n  - name: one\n    cells: [{name: a}, {name: a}]", "stages.0: Value error, cell names repeat"),
    ("stages:\n  - name: one\n  - name: one", "stages: Value error, stage names repeat"),
    ("stages:\n  - name: one\n    replicates: 0", "stages.0.replicates: Input should be greater than or equal to 1"),
    ("stages:\n  - name: one\nconcurency: 2", "concurency: Extra inputs are not permitted"),
    ("stages:\n  - name: one\n  - {name: two, from_each: {stage: nope}}",
     "stages.1.from_each.stage: 'nope' is not an earlier stage (earlier: one)"),
    ("stages:\n  - name: one\n  - {name: two, merge: {stage: one, where: {cell: x}}}",
     "stages.1.merge.where: no trial of stage one has labels {'cell': 'x'}"),
    ("stages:\n  - {name: one, per_task: {tasks: [a, b]}}\n  - {name: two, merge: {stage: one, groups: {g: [c]}}}",
     "stages.1.merge.groups.g: no selected trial has trained_task in ['c']"),
    ("stages:\n  - {name: one, per_task: {tasks: [a]}}\n  - {name: two, merge: {stage: one}, per_task: {tasks: [a]}}",
     "a stage with `merge` cannot also have per_task"),
    ("stages:\n  - name: one\n  - {name: two, merge: {stage: one}, set: {merge.density: 0}}",
     "trial two-all: merge.density: Input should be greater than 0"),
    ("stages:\n  - {name: one, cells: [{name: lora, set: {model.lora.r: 4}}, {name: full}]}\n"
     "  - {name: two, merge: {stage: one}}",
     "stages.1.merge (stage two, group all): one-lora exports a LoRA adapter and one-full a full model"),
    ("stages:\n  - {name: one, cells: [{name: a, set: {model.lora.r: 4}}, {name: b, set: {model.name: tiny-opt, "
     "model.lora.r: 4}}]}\n  - {name: two, merge: {stage: one}}",
     "stages.1.merge (stage two, group all): one-b and one-a start from different models"),
    ("stages:\n  - name: one\nmax_failures: 2", ": Value error, `max_failures` is no longer a key here: renamed to "
                                                  "`trial_retries`"),
    ("stages:\n  - name: one\n    set: {train.max_failures: 2}", "trial one: train: Value error, `max_failures` is no "
                                                                "longer a key here: renamed to `worker_restarts`"),
    ("stages:\n  - name: one\n    set: {mixture.epochs: 2}", "trial one: mixture: Value error, `epochs` is no longer "
                                                            "a key here: renamed to `stream_multiple`"),
    ("stages:\n  - name: one\n    set: {train.use_gpu: true}", "`use_gpu` is no longer a key here: set `gpus_per_worker`"),
    ("stages:\n  - name: one\nestimate: {epochs: 3}", "estimate: Value error, `epochs` is no longer a key here"),
    ("stages:\n  - name: one\nestimate: {tokens_per_example: 300}", "estimate: Value error, `tokens_per_example` is "
                                                                   "no longer a key here: measured from the built corpus"),
    ("stages:\n  - name: one\n    set: {train.workers: 2}", "trial one: train.workers: set by the sweep's "
                                                           "resources.workers"),
])
def test_errors_name_the_file_and_key(tmp_path, change, message):
    text = GOOD.format(corpus=tmp_path).split("stages:")[0] + change
    path = write_spec(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        open_spec(path, str(tmp_path))
    assert str(path) in str(error.value) and message in str(error.value)


def test_cli_reports_spec_errors(tmp_path, capsys):
    path = write_spec(tmp_path, GOOD.format(corpus=tmp_path).replace("train.lr", "train.lrr"))
    assert main(["sweep", "plan", str(path)]) == 2
    assert "train.lrr: Extra inputs are not permitted" in capsys.readouterr().err


def test_expansion_order_and_names(tmp_path):
    text = GOOD.format(corpus=tmp_path) + """    cells:
      - {name: x, labels: {flag: true}, set: {train.lr: 9.0}}
    per_task: {tasks: [task1_a, task2_b]}
  - name: two
    depends_on: one-x-lr=0.0001-task1
    axes: {mixture.benchmark_proportions: [{superni: 1.0}, 1/0/0/0/0/0/0]}
"""
    sweep = open_spec(write_spec(tmp_path, text), str(tmp_path))
    names = [trial.name for trial in sweep.trials]
    assert names == ["one-x-lr=0.0001-task1", "one-x-lr=0.0001-task2", "one-x-lr=0.0002-task1",
                     "one-x-lr=0.0002-task2", "two-benchmark_proportions=superni=1.0",
                     "two-benchmark_proportions=1_0_0_0_0_0_0"]
    first = sweep.trials[0]
    assert first.config.train.lr == 1e-4  # the axis is applied after the cell
    assert first.config.mixture.tasks == ["task1_a"]
    assert first.labels == {"cell": "x", "flag": True, "lr": 1e-4, "trained_task": "task1_a"}
    assert first.config.train.export_hf is True and sweep.trials[1].config.train.export_hf is False
    assert sweep.trials[4].labels == {"benchmark_proportions": "superni=1.0"}
    assert sweep.trials[4].config.init_from == str(sweep.dir / "one-x-lr=0.0001-task1" / "hf_model")
    assert open_spec(write_spec(tmp_path, text), str(tmp_path)).trials[3].config == sweep.trials[3].config


def test_transfer_and_merge_stages_build_on_earlier_trials(tmp_path):
    text = GOOD.format(corpus=tmp_path).split("stages:")[0] + """stages:
  - name: single
    cells: [{name: k8, set: {mixture.samples_per_task: 8}}, {name: k16, set: {mixture.samples_per_task: 16}}]
    per_task: {tasks: [task1_a, task2_b, task3_c], keys: [mixture.tasks, eval.tasks]}
  - name: transfer
    from_each: {stage: single, where: {cell: k8}}
    per_task: {tasks: [task1_a, task2_b], keys: [mixture.tasks, eval.tasks]}
  - name: merged
    merge: {stage: single, where: {cell: k16}, groups: {ab: [task1_a, task2_b], c: [task3_c]}, keys: [eval.tasks]}
    set: {merge.method: ties}
    axes: {merge.scale: [0.5, 1.0]}
"""
    sweep = open_spec(write_spec(tmp_path, text), str(tmp_path))
    assert [t.name for t in sweep.stage_trials("transfer")] == [
        "transfer-task1-to-task2", "transfer-task2-to-task1", "transfer-task3-to-task1", "transfer-task3-to-task2"]
    transfer = sweep.trials_by_name["transfer-task3-to-task1"]
    assert transfer.depends_on == "single-k8-task3" and transfer.config.mixture.tasks == ["task1_a"]
    assert transfer.labels == {"trained_task": "task1_a", "source_task": "task3_c", "source_trial": "single-k8-task3"}
    assert transfer.config.init_from == str(sweep.dir / "single-k8-task3" / "hf_model")
    merged = sweep.trials_by_name["merged-scale=0.5-ab"]
    assert [t.name for t in sweep.stage_trials("merged")] == ["merged-scale=0.5-ab", "merged-scale=0.5-c",
                                                              "merged-scale=1.0-ab", "merged-scale=1.0-c"]
    assert merged.merges == ["single-k16-task1", "single-k16-task2"] and merged.depends_on is None
    assert merged.labels == {"scale": 0.5, "merged_group": "ab", "source_models": 2}
    assert merged.config.merge.method == "ties" and merged.config.merge.scale == 0.5 and merged.config.merge.base is None
    assert merged.config.merge.models == [str(sweep.dir / name / "hf_model") for name in merged.merges]
    assert merged.config.eval.tasks == ["task1_a", "task2_b"]
    exported = {t.name for t in sweep.trials if t.config.train.export_hf}
    assert exported == {f"single-{cell}-task{i}" for cell in ("k8", "k16") for i in (1, 2, 3)}  # sources and merged
    summary = plan_summary(sweep)
    assert summary["trials_by_stage"] == {"single": 6, "transfer": 4, "merged": 4}
    assert summary["built_on"] == {"transfer": "from each of 3 single trials", "merged": "2 merged models of 3 single trials"}
    assert summary["eval_items"] >= 0 and summary["train_tokens"] > 0


def test_a_merge_of_lora_trials_merges_adapters_of_one_base_into_a_full_model(tmp_path):
    text = GOOD.format(corpus=tmp_path).split("stages:")[0] + """stages:
  - name: single
    cells: [{name: r4, set: {model.lora.r: 4}}, {name: r8, set: {model.lora: {r: 8, alpha: 8}}}]
  - {name: merged, merge: {stage: single}, set: {merge.method: ties}}
"""
    merged = open_spec(write_spec(tmp_path, text), str(tmp_path)).trials_by_name["merged-all"]
    assert merged.merges == ["single-r4", "single-r8"] and merged.config.model.lora is None
    assert merged.config.model.name == "tiny-llama" and merged.config.merge.base is None


def test_replicates_are_trials_with_consecutive_seeds_each_starting_from_its_own(tmp_path):
    text = GOOD.format(corpus=tmp_path).replace("    axes: {train.lr: [1.0e-4, 2.0e-4]}", """    replicates: 2
    set: {train.seed: 7}
  - name: two
    replicates: 2
    depends_on: one
    axes: {train.lr: [1.0e-4, 2.0e-4]}""")
    sweep = open_spec(write_spec(tmp_path, text), str(tmp_path))
    trials = {trial.name: trial for trial in sweep.trials}
    assert list(trials) == ["one-r0", "one-r1", "two-lr=0.0001-r0", "two-lr=0.0001-r1", "two-lr=0.0002-r0",
                            "two-lr=0.0002-r1"]
    assert [trials[n].config.train.seed for n in ("one-r0", "one-r1")] == [7, 8]
    assert trials["two-lr=0.0002-r1"].config.train.seed == 1235  # TrainConfig's default seed + 1
    assert trials["two-lr=0.0002-r1"].labels == {"lr": 2e-4, "replicate": 1}
    assert trials["two-lr=0.0002-r1"].depends_on == "one-r1"
    assert trials["two-lr=0.0002-r1"].config.init_from == str(sweep.dir / "one-r1" / "hf_model")
    with pytest.raises(ConfigError, match=r"stages.1.depends_on: 'one' has 2 replicates .* and this stage 1"):
        open_spec(write_spec(tmp_path, text.replace("    replicates: 2\n    depends_on", "    depends_on")),
                  str(tmp_path))


def test_anchor_keys_and_relative_corpus(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "spec.yaml"
    path.write_text("x-lrs: &lrs [1.0, 2.0]\n" + GOOD.format(corpus="../corpus_dir").replace("[1.0e-4, 2.0e-4]", "*lrs"))
    spec = load_spec(path)
    assert spec.corpus == str(tmp_path / "corpus_dir")
    assert spec.stages[0].axes == {"train.lr": [1.0, 2.0]}


def test_helpers():
    data = {"a": {"b": 1}}
    set_dotted(data, "a.c.d", [1], "src")
    assert data == {"a": {"b": 1, "c": {"d": [1]}}}
    assert label_value([4, 2, 20]) == "4/2/20" and label_value({"x": 1, "y": [1, 2]}) == "x=1,y=1/2"
    assert model_params("allenai/tk-instruct-3b-def-pos") == 3e9
    assert model_params("google/t5-xl-lm-adapt") == 3e9
    assert model_params("facebook/opt-1.3b") == 1.3e9
    assert 1e4 < model_params("tiny-t5") < 1e7


def test_concurrency_from_cluster():
    spec = load_spec(SWEEPS / "stl_mtl_sample_efficiency.yaml")
    assert max_concurrent_trials(spec, {"CPU": 256, "GPU": 16}) == 2  # 8 GPUs per trial
    assert max_concurrent_trials(spec, {"CPU": 256, "GPU": 4}) == 1
    assert max_concurrent_trials(spec, {"CPU": 100, "GPU": 16}) == 1  # 65 CPUs per trial
    quick = load_spec(SWEEPS / "quickstart.yaml")
    assert max_concurrent_trials(quick, {"CPU": 4}) == 2  # one worker + one CPU for its data
    quick.concurrency = 3
    assert max_concurrent_trials(quick, {"CPU": 4}) == 3


def test_single_worker_trials_run_in_the_trainable():
    quick = load_spec(SWEEPS / "quickstart.yaml")
    assert runs_in_process(quick) and trainable_resources(quick, True) == {"CPU": 1, "GPU": 0}
    quick.resources.in_process = False
    assert not runs_in_process(quick)
    grid = load_spec(SWEEPS / "stl_mtl_sample_efficiency.yaml")  # 8 workers a trial: Ray Train starts them
    assert not runs_in_process(grid) and trainable_resources(grid, False) == {"CPU": 0.01}


def test_plan_says_how_much_data_the_token_cache_holds(sample_corpus, tmp_path, capsys):
    from imlsweep.data.token_cache import cached_task_tokens, default_location
    from imlsweep.data.plan import plan_mixture
    from imlsweep.data.stream import open_corpus, source_items

    spec = write_spec(tmp_path, f"""
name: cached
corpus: {sample_corpus}
base:
  model: {{name: tiny-llama}}
  mixture: {{tasks: [task102_commongen_sentence_generation, task1331_reverse_array], total_examples: 40}}
stages:
  - name: eps
    axes: {{mixture.eps: [5, 10]}}
""")
    before = plan_summary(open_spec(spec, str(tmp_path)))["token_cache"]
    assert before["cached_examples"] == 0 and before["locations"] == [default_location(str(sample_corpus))]
    trial = open_spec(spec, str(tmp_path)).trials[0].config
    plan = plan_mixture(trial.mixture, open_corpus(str(sample_corpus)).manifest)
    location = str(tmp_path / "cache")
    for item in source_items(plan, trial.mixture):
        cached_task_tokens(plan.sources[item["source"]], item["positions"], trial.mixture, str(sample_corpus),
                           trial.model.tokenizer_name, location)
    spec.write_text(spec.read_text().replace("base:\n", f"base:\n  token_cache: {location}\n"))
    after = plan_summary(open_spec(spec, str(tmp_path)))["token_cache"]
    assert after["examples"] == before["examples"] and 0 < after["cached_examples"] <= after["examples"]
    assert after["bytes"] > 0 and after["expected_bytes"] >= after["bytes"]
    assert main(["sweep", "plan", str(spec), "--storage", str(tmp_path)]) == 0
    assert f"of {after['examples']} examples cached" in capsys.readouterr().out


def test_plan_says_which_trials_keep_a_model_for_sweep_eval(tmp_path, capsys, sample_corpus):
    spec = Path(__file__).parent / "specs" / "two_stage.yaml"  # only the trials later ones start from export
    plan = ["sweep", "plan", str(spec), "--storage", str(tmp_path), "--corpus", str(sample_corpus)]
    assert main(plan + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept_models"] == {"pre": {"kept": 2, "of": 2, "trials": None},
                                      "ft": {"kept": 0, "of": 2, "trials": None}}
    assert main(plan) == 0
    printed = capsys.readouterr().out
    assert "models kept for `imlsweep sweep eval`: pre 2 of 2, ft 0 of 2" in printed
    assert ("warning: stage ft keeps no model (retention.hf_model: dependencies): `imlsweep sweep eval` cannot "
            "score its trials again; set `retention: {hf_model: all}` to keep them") in printed
    assert "warning: stage pre" not in printed
    quick = plan_summary(open_spec(SWEEPS / "quickstart.yaml", str(tmp_path)))
    assert all(counts["kept"] == counts["of"] for counts in quick["kept_models"].values())
