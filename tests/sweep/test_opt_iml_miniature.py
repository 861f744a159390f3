"""Every shipped OPT-IML sweep in miniature on the OPT-IML sample corpus, through the public CLI (its entry
point, in this process, on the session's Ray instance).

The miniature is one sweep whose stages are the shipped specs' stages: each keeps its spec's base (as the
stage's `set`), stage settings, cells and swept keys, with at most two of their values (MINIATURES says
which), and replaces what makes it big: the corpus (sweeps/corpora/opt_iml_bench_sample.yaml), the model
(tiny-llama), the run (2 steps of packed rows of 256 tokens on one CPU worker, fp32), the eval (2
validation items of 6 tasks, 4 new tokens) and the add-on texts (the sample's). One `imlsweep sweep run`
runs all of them (a run per spec would be seven Tune runs); the corpus is built into the storage
and checked with `imlsweep corpus leakage`. The mixture search (sweeps/mixture_search.yaml) joins the same
run with all its stages: 3 Dirichlet draws and the EPS mixture as proxies, then its proposal at both
scales (the target scale: 3 steps instead of 2) and the EPS baseline at target scale.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from imlsweep.assets import OPT_IML_SAMPLE_DIR
from imlsweep.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TEXTS = OPT_IML_SAMPLE_DIR / "texts"
# spec -> the values each swept axis keeps, or the cells kept (by name)
MINIATURES = {
    "eps_mixing_rate": {"axes": {"mixture.eps": [128, 4096]}},
    "benchmark_proportions": {"axes": {"mixture.benchmark_proportions": ["2/1/27/40/27/1/2", "0/0/35/30/35/0/0"]}},
    "task_scaling": {"cells": ["tasks_16", "tasks_all"]},
    "category_scaling": {"cells": ["categories_4", "categories_all"]},
    "addon_fractions": {"cells": ["pretraining_5", "reasoning_1"]},
    "lr_batch": {"axes": {"train.lr": [1.0e-5, 6.0e-5], "train.micro_batch_size": [2, 4]}},
    "demonstrations": {"cells": ["baseline", "zipf_a2"]},
}
MIXTURE_SEARCH = "mixture_search"
MIXTURE_SEARCH_TRIALS = {"proxies": 4, "proposed": 2, "eps_target": 1}
TARGET_SCALE = {"train.max_steps": 3}
EVAL_TASKS = ["flan_copa_1.0.0", "gsm8k", "samsum", "ai2_arc", "dart", "task1720_civil_comments_toxicity_classification"]
SMALL = {
    "model": {"name": "tiny-llama"},
    "mixture.max_length": 256,
    "mixture.total_examples": 64,
    "train.warmup_steps": 0, "train.max_steps": 2, "train.micro_batch_size": 4, "train.global_batch_size": None,
    "train.precision": "fp32", "train.zero_stage": 2, "train.offload_optimizer": False, "train.log_every": 1,
    "eval.split": "validation", "eval.max_per_task": 2, "eval.shots": [0], "eval.max_new_tokens": 4,
    "eval.batch_size": 16, "eval.tasks": EVAL_TASKS,
}


def dotted(data: dict, prefix: str = "") -> dict:
    """A nested mapping as dotted keys (`model` stays whole: the miniature replaces it)."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "model":
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def miniature_stage(name: str) -> dict:
    spec = yaml.safe_load((REPO / "sweeps" / f"{name}.yaml").read_text())
    keep = MINIATURES[name]
    (stage,) = spec["stages"]
    for key, values in keep.get("axes", {}).items():
        assert set(values) <= set(stage["axes"][key]), f"{name}: {key} has no value {values}"
        stage["axes"][key] = values
    if "cells" in keep:
        stage["cells"] = [copy.deepcopy(cell) for cell in stage["cells"] if cell["name"] in keep["cells"]]
        assert [cell["name"] for cell in stage["cells"]] == keep["cells"]
        for cell in stage["cells"]:
            for addon in cell.get("set", {}).get("mixture.addons", []):
                if "texts" in addon:
                    addon["texts"] = str(TEXTS / f"{addon['name']}.jsonl")
    stage["set"] = {**dotted(spec["base"]), **copy.deepcopy(SMALL), **stage.get("set", {})}
    return stage


def mixture_search_stages() -> list[dict]:
    """The mixture search's stages: 3 draws, and the target scale's settings (a bigger model, 4000 steps)
    replaced by TARGET_SCALE."""
    spec = yaml.safe_load((REPO / "sweeps" / f"{MIXTURE_SEARCH}.yaml").read_text())
    stages = []
    for stage in spec["stages"]:
        stage = copy.deepcopy(stage)
        stage["set"] = {**dotted(spec["base"]), **copy.deepcopy(SMALL), **(TARGET_SCALE if stage.get("set") else {})}
        if "mixture_search" in stage:
            stage["mixture_search"].update(mixtures=3, min_fitted=3)
        for cell in stage.get("cells", []):
            cell["set"] = TARGET_SCALE if cell.get("set") else {}
        stages.append(stage)
    assert [stage["name"] for stage in stages] == list(MIXTURE_SEARCH_TRIALS)
    return stages


def miniature_spec(folder: Path) -> Path:
    spec = {"name": "opt_iml_miniature", "corpus": str(REPO / "sweeps" / "corpora" / "opt_iml_bench_sample.yaml"),
            "base": {}, "stages": [miniature_stage(name) for name in MINIATURES] + mixture_search_stages(),
            "resources": {"workers": 1, "cpus_per_worker": 1}, "retention": {"hf_model": "none"},
            "tracking": {"mode": "offline"}}
    path = folder / "opt_iml_miniature.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(*args: str) -> dict:
    """`imlsweep ARGS --json` through the CLI's entry point in this process: Ray is the session's instance
    (W&B offline and without credentials, as conftest sets them), not a local one started per command."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(args) + ["--json"]) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def swept(ray_local, tmp_path_factory):
    folder = tmp_path_factory.mktemp("opt_iml_miniature")
    storage = folder / "runs"
    status = run_cli("sweep", "run", str(miniature_spec(folder)), "--storage", str(storage))
    return storage, status


def expected_trials(name: str) -> int:
    keep = MINIATURES[name]
    if "cells" in keep:
        return len(keep["cells"])
    count = 1
    for values in keep["axes"].values():
        count *= len(values)
    return count


def test_every_opt_iml_sweep_runs_in_miniature(swept):
    storage, status = swept
    stages = {name: yaml.safe_load((REPO / "sweeps" / f"{name}.yaml").read_text())["stages"][0]["name"]
              for name in MINIATURES}
    planned = sum(map(expected_trials, MINIATURES)) + sum(MIXTURE_SEARCH_TRIALS.values())
    assert status["counts"]["completed"] == planned == status["total_trials"]
    results = pd.read_parquet(storage / "opt_iml_miniature" / "results.parquet")
    assert set(results["status"]) == {"completed"}
    for name, stage in stages.items():
        rows = results[results["stage"] == stage]
        assert rows["trial"].nunique() == expected_trials(name), name
        assert set(rows["task_id"]) == set(EVAL_TASKS), name
        assert rows["score"].notna().all() and (rows["train_tokens"] > 0).all(), name
    # the swept keys are result columns
    assert {"eps", "benchmark_proportions", "lr", "micro_batch_size", "cell"} <= set(results.columns)
    by_benchmark = results[results["stage"] == stages["benchmark_proportions"]]
    assert set(by_benchmark["benchmark_proportions"]) == set(MINIATURES["benchmark_proportions"]["axes"][
        "mixture.benchmark_proportions"])


def test_the_sample_corpus_is_built_once_and_checked_for_leakage(swept):
    storage, _ = swept
    (manifest_file,) = (storage / "corpora").glob("opt_iml_bench_sample-*/manifest.parquet")  # not its token cache
    corpus, manifest = manifest_file.parent, pd.read_parquet(manifest_file)
    n_train, n_eval = int((manifest["split"] == "train").sum()), int((manifest["split"] != "train").sum())
    report = run_cli("corpus", "leakage", str(corpus))
    assert (report["train_tasks"], report["eval_tasks"], report["pairs_checked"]) == (n_train, n_eval, n_train * n_eval)
    assert report["shared_data_source"] == []  # shared_data_source: drop_train left none


def test_the_mixture_search_proposes_from_its_proxies_and_trains_the_proposal_at_both_scales(swept, tmp_path):
    from imlsweep.report.build import ReportPaths, mixture_search_section
    from imlsweep.report.results import load_sweep_results

    storage, _ = swept
    sweep_dir = storage / "opt_iml_miniature"
    proposal = json.loads((sweep_dir / "proxies.proposal.json").read_text())
    assert proposal["fitted"] == 4 and [p["mixture_point"] for p in proposal["points"]] == ["eps", "m000", "m001", "m002"]
    weights, bounds = proposal["proposed_weights"], proposal["bounds"]
    assert set(weights) == set(proposal["groups"]) and sum(weights.values()) == pytest.approx(1.0)
    assert all(bounds[g][0] - 1e-9 <= w <= bounds[g][1] + 1e-9 for g, w in weights.items())
    for scale, steps in (("proxy", 2), ("target", 3)):  # the driver set the proposed mixture on both
        trial = yaml.safe_load((sweep_dir / f"proposed-{scale}" / "trial.yaml").read_text())
        assert trial["mixture"]["benchmark_proportions"] == pytest.approx(weights)
        assert trial["train"]["max_steps"] == steps
    results = pd.read_parquet(sweep_dir / "results.parquet")
    searched = results[results["stage"].isin(list(MIXTURE_SEARCH_TRIALS))].groupby("stage")["trial"].nunique()
    assert searched.to_dict() == MIXTURE_SEARCH_TRIALS
    paths = ReportPaths(html=tmp_path / "report.html")
    section = mixture_search_section(load_sweep_results(sweep_dir), str(sweep_dir), "proxies", paths)
    assert "leave-one-out Spearman" in section and "Predicted vs actual" in section
    scores = pd.read_csv(tmp_path / "tables" / "mixture_search_proxies_scores.csv", index_col=0)
    assert sorted(scores.index) == sorted(["proxies-eps", "proxies-m000", "proxies-m001", "proxies-m002", "proposed-proxy",
                                  "proposed-target", "eps_target"])
    assert scores["actual"].notna().all() and scores.loc["proposed-proxy", "predicted"] == pytest.approx(
        proposal["predicted_proposed"])
    assert [path.name for path in paths.figures] == ["mixture_search_proxies.png"]
