"""How a merged run draws its training images from several datasets, sharded over DDP processes.

``proportional`` (the default) is the :class:`~torch.utils.data.DistributedSampler` of a single dataset: every
image once per epoch, so each dataset weighs as much as it has images. ``balanced`` gives each dataset the same
share of every epoch whatever its size (:class:`BalancedDatasetSampler`): image *i* of a dataset with
``n_d`` images is drawn with probability ``1 / (D · n_d)`` (D datasets), with replacement, as many draws as
the merged set has images — the small set's images repeat, the large set's are subsampled. The draws are a
function of (seed, epoch) only and are split over the processes the way ``DistributedSampler`` splits its
permutation (rank *r* takes draws r, r+N, …, padded to a multiple of N), so global batch *t* holds the same
images whatever the number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def dataset_counts(datasets: Sequence[str]) -> dict[str, int]:
    """Images per dataset, in order of first appearance."""
    names, first, counts = np.unique(np.asarray(datasets, dtype=str), return_index=True, return_counts=True)
    order = np.argsort(first)
    return {str(names[k]): int(counts[k]) for k in order}


def balanced_weights(datasets: Sequence[str]) -> np.ndarray:
    """Per image, ``1 / (D · n_d)``: each of the D datasets holds a total weight of ``1 / D`` (float64, sums
    to 1)."""
    names = np.asarray(datasets, dtype=str)
    counts = dataset_counts(names)
    per_image = {name: 1.0 / (len(counts) * count) for name, count in counts.items()}
    return np.array([per_image[name] for name in names], dtype=np.float64)


class BalancedDatasetSampler(Sampler[int]):
    """Each dataset contributes the same share of every epoch: weighted draws with replacement, seeded by
    (seed, epoch), sharded over DDP ranks like ``DistributedSampler`` (module docstring).

    Args:
        datasets: ``(N,)`` the dataset of each image of the merged training split.
        num_replicas: DDP processes. rank: This process.
        seed: Seed of the draws; call :meth:`set_epoch` every epoch.
        num_samples: Draws per epoch over all processes (default N, an epoch as long as a proportional one).
    """

    def __init__(
        self,
        datasets: Sequence[str],
        *,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        num_samples: int | None = None,
    ):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.weights = balanced_weights(datasets)
        if self.weights.size == 0:
            raise ValueError("no training images to sample")
        self.counts = dataset_counts(datasets)
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.draws = int(num_samples) if num_samples is not None else int(self.weights.size)
        self.total_size = math.ceil(self.draws / num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_draws(self) -> np.ndarray:
        """This epoch's draws over all processes (indices into the merged split), before padding."""
        generator = np.random.default_rng(np.random.SeedSequence([self.seed % 2**63, self.epoch]))
        return generator.choice(self.weights.size, size=self.draws, replace=True, p=self.weights)

    def __iter__(self) -> Iterator[int]:
        draws = self.epoch_draws()
        if self.total_size > draws.size:  # pad like DistributedSampler: repeat the first draws
            draws = np.resize(draws, self.total_size)
        return iter(draws[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.total_size // self.num_replicas

    def describe(self) -> str:
        """One line for the training log: the datasets, their sizes and their expected share of the epoch."""
        share = 100.0 / len(self.counts)
        parts = ", ".join(f"{name} {count} images" for name, count in self.counts.items())
        return (
            f"balanced sampling: {self.draws} draws per epoch with replacement, about {share:.0f}% from each "
            f"of {len(self.counts)} datasets ({parts})"
        )
