"""The balanced sampler of merged runs: equal shares per dataset, deterministic per (seed, epoch), sharded like
DistributedSampler."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cxreader.training.sampling import BalancedDatasetSampler, balanced_weights, dataset_counts

# Unequal sizes: 600 NIH, 150 CheXpert, 50 PadChest images.
DATASETS = ["nih"] * 600 + ["chexpert"] * 150 + ["padchest"] * 50


def _per_dataset(indices) -> Counter:
    return Counter(DATASETS[i] for i in indices)


def test_weights_give_each_dataset_an_equal_share():
    weights = balanced_weights(DATASETS)
    assert dataset_counts(DATASETS) == {"nih": 600, "chexpert": 150, "padchest": 50}
    assert weights.sum() == pytest.approx(1.0)
    shares = {name: weights[np.asarray(DATASETS) == name].sum() for name in ("nih", "chexpert", "padchest")}
    assert shares == pytest.approx({"nih": 1 / 3, "chexpert": 1 / 3, "padchest": 1 / 3})


@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_an_epoch_draws_roughly_equal_numbers_per_dataset(epoch):
    sampler = BalancedDatasetSampler(DATASETS, seed=0)
    sampler.set_epoch(epoch)
    drawn = list(sampler)
    assert len(drawn) == len(DATASETS) == len(sampler)  # an epoch as long as a proportional one
    counts = _per_dataset(drawn)
    expected = len(DATASETS) / 3
    # Binomial(800, 1/3): sd 13.3; 5 sd either side.
    for name in ("nih", "chexpert", "padchest"):
        assert abs(counts[name] - expected) < 5 * np.sqrt(len(DATASETS) * (1 / 3) * (2 / 3)), counts
    # The small set repeats (with replacement), the large one is subsampled.
    padchest = [i for i in drawn if DATASETS[i] == "padchest"]
    assert len(set(padchest)) < len(padchest)


def test_draws_depend_on_seed_and_epoch_only():
    first, again, other_seed = (BalancedDatasetSampler(DATASETS, seed=s) for s in (0, 0, 1))
    for sampler in (first, again, other_seed):
        sampler.set_epoch(2)
    assert list(first) == list(again)
    assert list(first) != list(other_seed)
    again.set_epoch(3)
    assert list(first) != list(again)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_the_global_draws_like_distributed_sampler(world_size):
    single = BalancedDatasetSampler(DATASETS, seed=5)
    single.set_epoch(4)
    reference = single.epoch_draws()
    shards = []
    for rank in range(world_size):
        sampler = BalancedDatasetSampler(DATASETS, num_replicas=world_size, rank=rank, seed=5)
        sampler.set_epoch(4)
        shards.append(list(sampler))
    assert len({len(shard) for shard in shards}) == 1
    total = sum(len(shard) for shard in shards)
    padded = np.resize(reference, total)
    # rank r holds global draws r, r + N, ...: interleaving the shards gives back the single-process order.
    interleaved = [shard[step] for step in range(len(shards[0])) for shard in shards]
    assert interleaved == padded.tolist()


def test_describe_names_the_datasets():
    text = BalancedDatasetSampler(DATASETS).describe()
    assert "balanced" in text and "padchest 50 images" in text and "33%" in text
