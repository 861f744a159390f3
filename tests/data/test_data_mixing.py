"""Sampling, seqio-style rates, benchmark proportions, subsets: pure functions on known sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from imlsweep.data.demonstrations import truncated_zipf_probabilities
from imlsweep.data.mixing import (
    allocate_counts, eps_mixing_rates, mixed_order, parse_benchmark_proportions, task_shares,
)
from imlsweep.data.mixture import MixtureConfig
from imlsweep.data.plan import plan_mixture
from imlsweep.data.sampling import (draw_positions, largest_categories, nested_task_subset, permutation_prefix,
                                    sample_positions)
from imlsweep.errors import UserError


def test_seqio_rates_on_known_sizes():
    sizes = {"a": 100, "b": 5000, "c": 20000}
    assert eps_mixing_rates(sizes, eps=4096) == {"a": 100.0, "b": 4096.0, "c": 4096.0}
    assert eps_mixing_rates(sizes, eps=None) == {"a": 100.0, "b": 5000.0, "c": 20000.0}
    rates = eps_mixing_rates(sizes, eps=4096, temperature=2.0)
    assert rates["a"] == pytest.approx(10.0) and rates["c"] == pytest.approx(64.0)
    shares = task_shares({t: "superni" for t in sizes}, sizes, eps=4096)
    assert shares["a"] == pytest.approx(100 / 8292) and shares["b"] == pytest.approx(4096 / 8292)


def test_benchmark_proportions_string_in_opt_iml_order():
    weights = parse_benchmark_proportions("4/2/20/25/45/2/2")
    assert weights == pytest.approx({"crossfit": .04, "exmix": .02, "flan": .2, "superni": .25,
                                     "promptsource": .45, "t5": .02, "unifiedskg": .02})
    with pytest.raises(UserError, match="needs 7 numbers"):
        parse_benchmark_proportions("1/2/3")


def synthetic_manifest(sizes_by_benchmark: dict[str, list[int]]) -> pd.DataFrame:
    rows = [{"task_id": f"{b}_{i:03d}", "benchmark": b, "category": f"cat{i % 3}", "split": "train",
             "level": "fully_supervised", "n_examples": n, "n_train": n, "n_validation": 0, "n_test": 0}
            for b, sizes in sizes_by_benchmark.items() for i, n in enumerate(sizes)]
    return pd.DataFrame(rows)


def test_benchmark_proportions_hold_within_sampling_error():
    rng = np.random.default_rng(0)
    manifest = synthetic_manifest({b: list(rng.integers(10, 20000, size=30)) for b in ("flan", "superni", "t5")})
    mixture = MixtureConfig(eps=4096, benchmark_proportions={"flan": 2, "superni": 5, "t5": 3}, total_examples=50_000)
    plan = plan_mixture(mixture, manifest)
    per_benchmark = {b: sum(s.expected_examples for s in plan.sources if s.benchmark == b) for b in ("flan", "superni", "t5")}
    for benchmark, expected in {"flan": 10_000, "superni": 25_000, "t5": 15_000}.items():
        assert abs(per_benchmark[benchmark] - expected) <= 30  # whole examples per task: < 1 each
    # any prefix of the interleaved stream holds the proportions within binomial error
    stream = plan.stream_sources()[:4000]
    benchmarks = np.array([plan.sources[i].benchmark for i in stream])
    for benchmark, p in (("flan", .2), ("superni", .5), ("t5", .3)):
        observed = (benchmarks == benchmark).mean()
        assert abs(observed - p) < 4 * math.sqrt(p * (1 - p) / len(stream))
    # within a benchmark, capped tasks get equal shares
    capped = [s.share for s in plan.sources if s.benchmark == "superni" and s.capped]
    assert capped and max(capped) == pytest.approx(min(capped))


def test_addons_take_a_fixed_fraction(tmp_path):
    texts = tmp_path / "pretrain.jsonl"
    texts.write_text("".join(f'{{"text": "document {i}"}}\n' for i in range(20)))
    manifest = synthetic_manifest({"superni": [100, 300]})
    mixture = MixtureConfig(total_examples=1000, addons=[{"name": "pretrain", "fraction": 0.05, "texts": str(texts)}])
    plan = plan_mixture(mixture, manifest)
    addon = next(s for s in plan.sources if s.addon == "pretrain")
    assert (addon.expected_examples, addon.loss, addon.pool_size) == (50, "sequence", 20)
    assert sum(s.expected_examples for s in plan.sources) == 1000


def test_unweighted_benchmark_is_left_out_of_all_tasks_and_an_error_when_named():
    manifest = synthetic_manifest({"superni": [10], "crossfit": [10], "reasoning": [10]})
    # reasoning is outside OPT-IML's vector and crossfit has weight 0: `tasks: all` trains on superni only
    plan = plan_mixture(MixtureConfig(benchmark_proportions="0/2/20/25/45/2/2"), manifest)
    assert [s.source_id for s in plan.sources] == ["superni_000"]
    # the reasoning add-on still draws from the benchmark the vector leaves out
    with_addon = MixtureConfig(benchmark_proportions="4/2/20/25/45/2/2",
                               addons=[{"name": "reasoning", "fraction": 0.01, "benchmark": "reasoning"}])
    assert {s.benchmark for s in plan_mixture(with_addon, manifest).sources} == {"superni", "crossfit", "reasoning"}
    with pytest.raises(UserError, match="no weight for benchmark.*reasoning"):
        plan_mixture(MixtureConfig(tasks=["superni_000", "reasoning_000"], benchmark_proportions="4/2/20/25/45/2/2"),
                     manifest)


def test_samples_nested_and_sized():
    sample = {k: sample_positions(500, k, seed=7, task_id="t") for k in (100, 200, 1000, "all")}
    assert len(sample[100]) == 100 and len(sample[1000]) == 500 and sorted(sample["all"]) == list(range(500))
    assert sample[100] == sample[200][:100] and sample[200] == sample[1000][:200]
    assert sample_positions(500, 100, seed=8, task_id="t") != sample[100]


def test_a_prefix_of_the_sample_is_drawn_without_permuting_the_pool():
    """`first` gives the sample's first positions exactly, whatever the pool and sample sizes; the prefix
    is the one `random.sample` of the whole pool starts with (a change of its algorithm fails here)."""
    import random

    for n in (1, 2, 7, 50, 999, 5000):
        for k in sorted({0, 1, 3, n // 3, n // 2, n // 2 + 1, n}):
            assert permutation_prefix(random.Random(n + k), n, k) == random.Random(n + k).sample(range(n), n)[:k]
    for samples in (100, 1000, "all"):
        whole = sample_positions(5000, samples, seed=3, task_id="t")
        assert sample_positions(5000, samples, seed=3, task_id="t", first=30) == whole[:30]
        assert sample_positions(5000, samples, seed=3, task_id="t", first=10**6) == whole


def test_draws_repeat_the_sample_in_fresh_orders():
    draws = draw_positions([3, 1, 2], 7, seed=0, source_id="t")
    assert draws[:3] == [3, 1, 2] and sorted(draws[3:6]) == [1, 2, 3] and len(draws) == 7


def test_allocated_counts_sum_exactly_and_interleave_all():
    counts = allocate_counts({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 100)
    assert sum(counts.values()) == 100 and sorted(counts.values()) == [33, 33, 34]
    order = mixed_order([3, 0, 5], seed=1)
    assert sorted(order.tolist()) == [0, 0, 0, 2, 2, 2, 2, 2]
    assert (mixed_order([3, 0, 5], seed=1) == order).all()


def test_task_subsets_nested_with_required_tasks():
    tasks = [f"t{i:03d}" for i in range(300)]
    subsets = {n: nested_task_subset(tasks, n, ["t299", "t000"], seed=0) for n in (16, 64, 256)}
    assert all(len(s) == n and {"t299", "t000"} <= set(s) for n, s in subsets.items())
    assert set(subsets[16]) <= set(subsets[64]) <= set(subsets[256])
    with pytest.raises(UserError, match="t999"):
        nested_task_subset(tasks, 16, ["t999"], seed=0)


def test_largest_categories_with_required():
    categories = {"a1": "QA", "a2": "QA", "a3": "QA", "b1": "Summ", "b2": "Summ", "c1": "Dialogue", "d1": "Other"}
    assert largest_categories(categories, 2, []) == ["QA", "Summ"]
    assert largest_categories(categories, 2, ["Dialogue"]) == ["Dialogue", "QA"]


def test_metaicl_zipf_matches_the_stated_zero_shot_shares():
    assert truncated_zipf_probabilities(4, 5)[0] == pytest.approx(0.9250, abs=1e-4)
    assert truncated_zipf_probabilities(2, 5)[0] == pytest.approx(0.6705, abs=1e-4)
