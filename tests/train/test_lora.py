"""LoRA trials (`model.lora`): settings checked before anything starts, adapters trained under ZeRO with
packed rows, checkpoints and exports that hold the adapter, and reloads (base + adapter) that give the
trained model's outputs.

Two trials on the bundled SuperNI sample, shared by the slow tests below:
- `ray_zero3`: Ray Train, 2 workers, tiny OPT, ZeRO 3, peft's default target modules, a checkpoint at
  the end, the adapter exported, then an evaluation on sharded weights.
- `in_process_merged`: in this process (a sweep's reused trainable), tiny Llama, ZeRO 2, every
  projection adapted, exported merged into the base.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from imlsweep.config import ConfigError, validate_config
from imlsweep.data.tokenizer import cached_tokenizer, load_tokenizer
from imlsweep.errors import UserError
from imlsweep.eval.trial import evaluate_in_worker
from imlsweep.train.config import TrainConfig, TrialConfig
from imlsweep.train.model import ModelConfig, load_model, unmatched_lora_targets
from imlsweep.train.trial import check_trial, run_trial
from imlsweep.trial_dir import TrialDir

TASKS = ["task363_sst2_polarity_classification", "task109_smsspamcollection_spamsmsdetection",
         "task1346_glue_cola_grammatical_correctness_classification"]
MIXTURE = {"tasks": TASKS, "encoding": {"name": "no_instruction"}, "max_length": 128, "seed": 0}
EVAL = {"tasks": ["task1388_cb_entailment", "task619_ohsumed_abstract_title_generation"], "max_per_task": 3,
        "max_new_tokens": 4, "batch_size": 2}
TRAIN = {"precision": "fp32", "lr": 1e-2, "warmup_steps": 1, "micro_batch_size": 2, "max_steps": 8, "log_every": 2,
         "export_hf": True}
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def trial_config(**values) -> TrialConfig:
    return TrialConfig.model_validate({"name": "t", "corpus": "corpus", "mixture": {}, **values})


def test_lora_settings_fail_before_any_worker_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"trial.yaml: model.lora.r: Input should be greater than or equal to 1"):
        validate_config({"name": "t", "corpus": "c", "mixture": {}, "model": {"name": "tiny-llama", "lora": {"r": 0}}},
                        TrialConfig, "trial.yaml")
    with pytest.raises(ConfigError, match=r"model.lora.rank: Extra inputs are not permitted"):
        validate_config({"name": "t", "corpus": "c", "mixture": {}, "model": {"name": "tiny-llama", "lora": {"rank": 4}}},
                        TrialConfig, "trial.yaml")
    # module names come from the model's config alone (built on the meta device)
    problems = unmatched_lora_targets(ModelConfig(name="tiny-llama", lora={"target_modules": ["q_proj", "v_prj", "layers"]}))
    assert [(key, value) for key, value, _ in problems] == [("model.lora.target_modules", "v_prj"),
                                                            ("model.lora.target_modules", "layers")]
    assert "did you mean 'v_proj'?" in problems[0][2]
    assert "(down_proj, embed_tokens, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj)" in problems[1][2]
    assert unmatched_lora_targets(ModelConfig(name="tiny-t5", lora={})) == []  # peft's default: q, v
    assert unmatched_lora_targets(ModelConfig(name="tiny-opt", lora={"target_modules": ["self_attn.q_proj"]})) == []
    config = trial_config(name="stl-task1", corpus=str(tmp_path), model={"name": "tiny-opt", "lora": {"target_modules": ["qkv"]}})
    with pytest.raises(UserError, match=r"stl-task1: model.lora.target_modules: 'qkv' matches no layer of 'opt'"):
        check_trial(config)


@pytest.fixture(scope="module")
def lora_runs(ray_local, sample_corpus, tmp_path_factory):
    storage = tmp_path_factory.mktemp("lora_trials")

    def config(name: str, model: dict, train: dict) -> TrialConfig:
        return TrialConfig.model_validate({"name": name, "corpus": str(sample_corpus), "model": model,
                                           "mixture": MIXTURE, "train": {**TRAIN, **train}, "eval": EVAL})

    configs = {
        "ray_zero3": config("ray_zero3", {"name": "tiny-opt", "dropout": 0.0, "lora": {"r": 8}},
                            {"workers": 2, "zero_stage": 3, "keep": "last"}),
        "in_process_merged": config("in_process_merged",
                                    {"name": "tiny-llama", "dropout": 0.0, "seed": 3,
                                     "lora": {"r": 4, "alpha": 8, "target_modules": PROJECTIONS, "export_merged": True}},
                                    {"zero_stage": 2}),
    }
    results = {"ray_zero3": run_trial(configs["ray_zero3"], str(storage)),
               "in_process_merged": run_trial(configs["in_process_merged"], str(storage), in_process=True)}
    return configs, results


def losses(result) -> list[float]:
    return [json.loads(line)["loss"] for line in Path(result.trial_dir, "metrics.jsonl").read_text().splitlines()]


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.mark.parametrize("name", ["ray_zero3", "in_process_merged"])
def test_lora_trials_learn_on_packed_rows(lora_runs, name):
    result = lora_runs[1][name]
    lines = losses(result)
    assert len(lines) == 4 and lines[-1] < lines[0] - 0.3, lines
    assert result.metrics["training_finished"] is True and "eval/combined" in result.metrics


def test_checkpoints_and_export_hold_the_adapter_only(lora_runs):
    configs, results = lora_runs
    result = results["ray_zero3"]
    model_bytes = 4 * sum(parameter.numel() for parameter in load_model(configs["ray_zero3"].model).parameters())
    exported = Path(result.hf_model_dir)
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {p.name for p in exported.iterdir()}
    assert not (exported / "config.json").exists() and not (exported / "model.safetensors").exists()
    assert json.loads((exported / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-opt"
    # q_proj and v_proj of 2 layers at r 8: 4 x 2 x 64 x 8 weights, about 2% of the model
    assert (exported / "adapter_model.safetensors").stat().st_size < 0.05 * model_bytes
    # weights and AdamW's two moments of the adapter, on both ranks, without the frozen base
    checkpoint = Path(result.checkpoint)
    assert checkpoint.name == "checkpoint_000008" and folder_bytes(checkpoint) < 0.3 * model_bytes
    merged = Path(results["in_process_merged"].hf_model_dir)
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()


@pytest.mark.parametrize("name", ["ray_zero3", "in_process_merged"])
def test_reload_of_base_and_adapter_predicts_what_the_trial_predicted(lora_runs, name, tmp_path):
    """What a later stage loads (`init_from` = the export) predicts what the trained workers predicted."""
    configs, results = lora_runs
    config, result = configs[name], results[name]
    trained = pq.read_table(Path(result.trial_dir, "predictions.parquet")).to_pylist()
    model = load_model(config.model, init_from=result.hf_model_dir)
    assert not any("lora" in key for key in model.state_dict())  # the adapter is merged into a plain model
    evaluate_in_worker(model, cached_tokenizer(config.model.tokenizer_name), config, TrialDir(str(tmp_path)), 0, 1)
    reloaded = pq.read_table(tmp_path / "predictions.parquet").to_pylist()
    assert len(reloaded) == 6
    assert [(row["task_id"], row["prediction"]) for row in trained] == [(row["task_id"], row["prediction"]) for row in reloaded]


def test_adapter_folder_loads_as_a_model_by_name(lora_runs):
    """`imlsweep eval run` names the export as its model: its base (tiny OPT at the trial's seed) + adapter."""
    configs, results = lora_runs
    exported = results["ray_zero3"].hf_model_dir
    as_name = load_model(ModelConfig(name=exported, dropout=0.0)).eval()
    as_init = load_model(ModelConfig(name="tiny-opt", dropout=0.0), init_from=exported).eval()
    ids = torch.tensor([[5, 17, 300, 42, 9]])
    with torch.no_grad():
        assert torch.equal(as_name(input_ids=ids).logits, as_init(input_ids=ids).logits)
    assert cached_tokenizer(ModelConfig(name=exported).tokenizer_name).eos_token == load_tokenizer("tiny").eos_token


@pytest.mark.slow
def test_adapter_checkpoint_resumes_adapter_and_optimizer(tmp_path):
    """A ZeRO 3 checkpoint without the frozen base, loaded into a fresh engine over the same base, gives
    the same model and the same next step."""
    from imlsweep.train.checkpoints import Progress, load_state, save_state
    from imlsweep.train.deepspeed_config import deepspeed_config
    from imlsweep.train.engine import initialize_engine
    from imlsweep.train.lora import apply_lora

    model_config = ModelConfig(name="tiny-llama", dropout=0.0, lora={"r": 4})
    ds_config = deepspeed_config(TrainConfig(zero_stage=3, precision="fp32", micro_batch_size=2, lr=1e-2))

    def engine():
        return initialize_engine(apply_lora(load_model(model_config), model_config.lora), ds_config)[0]

    ids = torch.randint(3, 2000, (2, 16), generator=torch.Generator().manual_seed(0))

    def step(engine) -> float:
        loss = engine(input_ids=ids, labels=ids).loss
        engine.backward(loss)
        engine.step()
        return loss.item()

    first = engine()
    for _ in range(2):
        step(first)
    save_state(first, str(tmp_path), Progress(step=2), adapter_only=True)
    resumed = engine()
    assert load_state(resumed, str(tmp_path), adapter_only=True).step == 2
    assert step(resumed) == pytest.approx(step(first), rel=1e-6)


def test_lora_on_an_encoder_decoder_learns_and_reloads_from_its_folder(tmp_path):
    """T5 (the grid's model family) takes adapters on peft's default targets: loss goes down, generation
    runs through the adapted model, and the saved adapter folder loads (base + adapter merged) to the
    adapted model's outputs."""
    from imlsweep.train.lora import apply_lora, save_adapter

    config = ModelConfig(name="tiny-t5", dropout=0.0, lora={"r": 4})
    model = apply_lora(load_model(config), config.lora)
    generator = torch.Generator().manual_seed(0)
    ids, labels = torch.randint(3, 2000, (2, 12), generator=generator), torch.randint(3, 2000, (2, 5), generator=generator)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    losses = []
    for _ in range(5):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    assert model.generate(input_ids=ids, max_new_tokens=3, do_sample=False).shape[0] == 2
    save_adapter(model, model.state_dict(), "tiny-t5", str(tmp_path))
    reloaded = load_model(ModelConfig(name=str(tmp_path), dropout=0.0)).eval()
    with torch.no_grad():  # merged weights W + BA against W and BA apart: equal up to float32 rounding
        adapted = model(input_ids=ids, labels=labels).logits
        merged = reloaded(input_ids=ids, labels=labels).logits
    assert torch.allclose(merged, adapted, rtol=1e-4, atol=1e-5 * float(adapted.abs().max()))
    assert not torch.allclose(merged, load_model(config)(input_ids=ids, labels=labels).logits, atol=1e-2)
