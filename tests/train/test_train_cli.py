"""`imlsweep train` on bad input, and `imlsweep bench train --quick`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from imlsweep.cli import main


def test_bad_trial_is_an_error_before_any_worker(tmp_path, capsys):
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "corpus": str(tmp_path), "model": {"name": "no-such-model"},
                                    "mixture": {}, "train": {"max_steps": 1}}))
    assert main(["train", str(path)]) == 2
    assert "model.name: 'no-such-model' is neither a bundled tiny model" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({"name": "t", "corpus": str(tmp_path), "model": {"name": "tiny-opt"},
                                    "mixture": {}, "train": {"zero_stage": 3, "precision": "fp16"}}))
    assert main(["train", str(path)]) == 2
    assert f"{path}: train: Value error, precision fp16 (ZeRO stage 3) needs GPUs (gpus_per_worker > 0)" in capsys.readouterr().err


@pytest.mark.slow  # a subprocess with DeepSpeed engines
@pytest.mark.parametrize("model, seq_len", [("tiny-llama", 512), ("tiny-t5", 256)])
def test_bench_train_quick_prints_json(model, seq_len):
    completed = subprocess.run([sys.executable, "-m", "imlsweep.cli", "bench", "train", "--quick", "--json",
                                "--model", model, "--seq-len", str(seq_len), "--target-len", "32"],
                               capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(completed.stdout)
    assert result["benchmark"] == "train" and result["examples"] == 12 and result["seq_len"] == seq_len
    assert result["model"] == model and result["attention_path"] == "dense_mask"  # CPU: no FlexAttention backward
    assert set(result["layouts"]) == {"packed", "padded", "padded_to_batch_max"}
    for layout in result["layouts"].values():
        assert layout["target_tokens_per_s"] > 0 and 0 < layout["token_slots_filled"] <= 1
    assert result["layouts"]["packed"]["rows"] < result["layouts"]["padded"]["rows"] == 12
    assert result["packed_vs_padded"] > 0 and result["goal_packed_vs_padded"] == 3.0
    assert result["decoder_1b"] is None  # GPU only
