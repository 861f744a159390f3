"""`sweep plan` plans each distinct trial shape's memory per GPU and per node, and it and `sweep run` refuse,
before Ray starts, a trial that does not fit what `resources` declares; every shipped spec fits its cluster."""

from __future__ import annotations

import json

import pytest

from imlsweep.cli import main
from imlsweep.errors import UserError
from imlsweep.sweep.plan import memory_by_shape, saved_params
from imlsweep.sweep.sweep import open_spec
from imlsweep.train.config import TrialConfig
from imlsweep.train.trial import check_trial
from quickstart_spec import SWEEPS, quickstart_copy


@pytest.mark.parametrize("path", sorted(SWEEPS.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_spec_fits_the_cluster_it_names(path, tmp_path):
    sweep = open_spec(path, str(tmp_path))
    memory = memory_by_shape(sweep)
    assert sum(len(entry["trials"]) for entry in memory) == len(sweep.trials)
    resources = sweep.spec.resources
    assert resources.host_memory_gb is not None
    for entry in memory:
        assert entry["fits"] is True, entry
        if resources.gpus_per_worker:
            assert resources.gpu_memory_gb is not None and 0 < entry["gpu_gb"] <= resources.gpu_memory_gb


def test_opt_30b_needs_checkpointing_and_offload_on_40gb_gpus(tmp_path):
    """The settings the OPT-IML specs turn on are the ones that make OPT-30B fit, each in its turn."""
    spec = (SWEEPS / "eps_mixing_rate.yaml").read_text().replace("corpora/", f"{SWEEPS}/corpora/")
    needs = {}
    for setting in ("activation_checkpointing", "offload_optimizer"):
        path = tmp_path / f"without_{setting}.yaml"
        path.write_text(spec.replace(f"    {setting}: true\n", ""))
        (entry,) = memory_by_shape(open_spec(path, str(tmp_path)))
        assert entry["fits"] is False
        needs[setting] = entry["gpu_gb"]
    (entry,) = memory_by_shape(open_spec(SWEEPS / "eps_mixing_rate.yaml", str(tmp_path)))
    assert entry["gpu_gb"] < 40 < needs["offload_optimizer"] < needs["activation_checkpointing"]
    assert len(entry["trials"]) == 9 and entry["settings"]["workers_per_node"] == 8


def test_a_trial_too_big_fails_plan_and_run_before_ray(tmp_path, sample_corpus, capsys, ray_sessions):
    spec = quickstart_copy(tmp_path, sample_corpus, "{name: tiny-llama}", "{name: tiny-llama}")
    spec.write_text(spec.read_text().replace("host_memory_gb: 4", "host_memory_gb: 0.5"))
    assert main(["sweep", "plan", str(spec), "--storage", str(tmp_path / "runs"), "--json"]) == 2
    captured = capsys.readouterr()
    (entry,) = json.loads(captured.out)["memory"]
    assert entry["fits"] is False and entry["gpu_gb"] is None and len(entry["trials"]) == 36
    assert entry["host_gb_per_node"] > 0.5
    assert (f"{spec}: trial single_task-inst_8-task1159-r0 (and 35 more trials): tiny-llama with train.zero_stage 2, "
            f"train.micro_batch_size 8 x 512 tokens, train.activation_checkpointing false: needs "
            f"{entry['host_gb_per_node']:.1f} GiB of host memory per node (1 workers x") in captured.err
    assert "more than resources.host_memory_gb 0.5" in captured.err
    assert main(["sweep", "run", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    assert "more than resources.host_memory_gb 0.5" in capsys.readouterr().err
    assert not ray_sessions
    assert not (tmp_path / "runs" / "quickstart").exists()


def test_activation_checkpointing_on_a_model_without_it_fails_plan_and_trial(tmp_path, sample_corpus, capsys):
    folder = tmp_path / "jetmoe"  # a causal LM whose transformers class cannot checkpoint activations
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "jetmoe", "hidden_size": 32, "num_hidden_layers": 1, "num_key_value_heads": 2,
        "kv_channels": 8, "intermediate_size": 32, "num_local_experts": 2, "num_experts_per_tok": 1,
        "vocab_size": 2048}))
    config = TrialConfig.model_validate({"name": "t", "corpus": str(sample_corpus),
                                         "model": {"name": str(folder), "tokenizer": "tiny"}, "mixture": {},
                                         "train": {"activation_checkpointing": True}})
    with pytest.raises(UserError, match="t: train.activation_checkpointing: JetMoeForCausalLM cannot checkpoint"):
        check_trial(config)
    spec = quickstart_copy(tmp_path, sample_corpus, "{name: tiny-llama}", f"{{name: {folder}, tokenizer: tiny}}")
    spec.write_text(spec.read_text().replace("    zero_stage: 2\n", "    zero_stage: 2\n    activation_checkpointing: true\n"))
    assert main(["sweep", "plan", str(spec), "--storage", str(tmp_path / "runs")]) == 2
    assert (f"{spec}: trial single_task-inst_8-task1159-r0 (and 35 more trials): train.activation_checkpointing: "
            f"'true' JetMoeForCausalLM cannot checkpoint activations ({folder})") in capsys.readouterr().err


def test_a_lora_trial_keeps_and_exports_its_adapter_alone():
    """The plan's disk figures: a LoRA trial's checkpoints hold the adapter's optimizer state and its
    export the adapter (the whole model when merged); a model whose config is not here counts whole."""
    def config(model):
        return TrialConfig.model_validate({"name": "t", "corpus": "c", "mixture": {}, "model": model})

    opt = {"name": "facebook/opt-30b", "lora": {"r": 16}}  # peft's default targets: q_proj, v_proj
    adapter = 48 * 2 * 16 * (7168 + 7168)
    assert saved_params(config(opt), 30e9) == (adapter, adapter)
    assert saved_params(config({**opt, "lora": {"r": 16, "export_merged": True}}), 30e9) == (30e9, adapter)
    assert saved_params(config({"name": "facebook/opt-30b"}), 30e9) == (30e9, 30e9)
    assert saved_params(config({"name": "someone/unknown-30b", "lora": {}}), 30e9) == (30e9, 30e9)
