"""Batches for training and evaluation, read from a prepared store (§4.1).

Each training batch is a pure function of ``(seed, epoch, batch index, rank)``:
its images come from a seeded permutation of the split and its augmentation
from a ``torch.Generator`` seeded from the same numbers.  So the data order
and every crop, flip and colour draw are reproduced exactly on resume, with
any number of DataLoader workers.
"""

from __future__ import annotations

from dataclasses import dataclass


import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from alexnet.data.norm import InputNorm
from alexnet.data.transforms import Draws, draw_augmentation, eval_transform, train_transform
from alexnet.config import DataConfig
from alexnet.paper import reading
from alexnet.data.stats import Stats
from alexnet.data.store import StoreSplit


def _mix(*numbers: int) -> int:
    """A 63-bit seed from a tuple of integers (stable across processes and runs)."""
    return int(np.random.SeedSequence([n & 0xFFFFFFFF for n in numbers]).generate_state(2, np.uint64)[0] >> 1)


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``count`` images used in ``epoch``."""
    return np.random.default_rng(_mix(seed, epoch, 0x0DE5)).permutation(count)


@dataclass(frozen=True)
class Augmentation:
    """What :func:`alexnet.data.transforms.train_transform` needs besides the images."""

    crop: int
    mean_image: np.ndarray | None  # None only for evaluation with mean_mode "none"
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    mean_mode: str
    pca: bool
    pca_std: float
    reading: str
    norm: InputNorm | None = None  # the last step (channel order, unit, per-channel mean and std)

    @classmethod
    def from_config(cls, cfg: DataConfig, stats: Stats, reading: str) -> "Augmentation":
        norm = InputNorm.from_config(cfg)
        return cls(cfg.crop, stats.mean_image, stats.eigenvalues, stats.eigenvectors, cfg.mean, cfg.pca,
                   cfg.pca_std, reading, None if norm.identity else norm)

    @classmethod
    def for_evaluation(cls, crop: int, mean_image: np.ndarray | None, mean_mode: str, reading: str,
                       norm: InputNorm | None = None) -> "Augmentation":
        """The test-time transform only (§4.1 patches minus the mean, then ``norm``): no colour noise, so no PCA."""
        return cls(crop, mean_image, np.zeros(3), np.eye(3), mean_mode, False, 0.0, reading,
                   None if norm is None or norm.identity else norm)

    def draws(self, batch: int, generator: torch.Generator) -> Draws:
        """The random draws of a global batch of ``batch`` images (crops, flips, lighting)."""
        size = self.mean_image.shape[0]
        chunk = reading(self.reading).crop_shared_chunk
        return draw_augmentation(batch, size, size, self.crop, generator, pca=self.pca, pca_std=self.pca_std,
                                 crop_chunk=chunk)

    def train(self, images: Tensor | np.ndarray, draws: Draws) -> Tensor:
        return train_transform(
            images if isinstance(images, Tensor) else torch.from_numpy(images),
            crop=self.crop, mean_image=self.mean_image, eigenvalues=self.eigenvalues,
            eigenvectors=self.eigenvectors, generator=None, mean_mode=self.mean_mode, pca=self.pca,
            reading=self.reading, pca_std=self.pca_std, draws=draws, norm=self.norm,
        )

    def evaluate(self, images: Tensor | np.ndarray, patches: str = "centre") -> Tensor:
        return eval_transform(
            images if isinstance(images, Tensor) else torch.from_numpy(images),
            crop=self.crop, mean_image=self.mean_image, mean_mode=self.mean_mode, patches=patches,
            reading=self.reading, norm=self.norm,
        )


def augmentation_generator(seed: int, epoch: int, batch: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator for one global batch's crops, flips and colour noise."""
    g = torch.Generator(device=device)
    g.manual_seed(_mix(seed, epoch, batch, 0xA06))
    return g


class TrainBatches(Dataset):
    """Global batch ``i`` of an epoch, this rank's share, augmented (or raw uint8 when ``raw``, for
    augmentation on the GPU with :meth:`draws`).

    The last incomplete batch is dropped, as with a fixed batch size of 128 (§5).
    Each rank takes a contiguous slice of the global batch, and the same slice of
    the global batch's augmentation draws (seeded by seed, epoch and i), so the
    images a step sees do not depend on the number of ranks.
    """

    def __init__(
        self,
        split: StoreSplit,
        *,
        batch_size: int,
        seed: int,
        epoch: int,
        augment: Augmentation,
        rank: int = 0,
        world: int = 1,
        raw: bool = False,
    ) -> None:
        if batch_size % world:
            raise ValueError(f"global batch {batch_size} does not split over {world} ranks")
        self.split, self.batch_size, self.seed, self.epoch = split, batch_size, seed, epoch
        self.augment, self.rank, self.world, self.raw = augment, rank, world, raw
        self.order = epoch_order(len(split), seed, epoch)
        self.local = batch_size // world

    def __len__(self) -> int:
        return len(self.split) // self.batch_size

    def indices(self, i: int) -> np.ndarray:
        start = i * self.batch_size + self.rank * self.local
        return self.order[start : start + self.local]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        idx = self.indices(i)
        images = self.split.read(idx)  # uint8 (b, S, S, 3)
        labels = torch.from_numpy(self.split.labels[idx])
        if self.raw:
            return torch.from_numpy(images), labels
        return self.augment.train(images, self.draws(i)), labels

    def draws(self, i: int) -> Draws:
        """This rank's share of global batch ``i``'s draws: the same numbers whatever the world size."""
        g = augmentation_generator(self.seed, self.epoch, i)
        return self.augment.draws(self.batch_size, g).slice(self.rank * self.local, (self.rank + 1) * self.local)


class EvalBatches(Dataset):
    """Consecutive batches of a split for evaluation; each rank gets a contiguous share, every image once."""

    def __init__(self, split: StoreSplit, *, batch_size: int, rank: int = 0, world: int = 1,
                 augment: Augmentation | None = None, patches: str = "centre") -> None:
        n = len(split)
        self.split, self.batch_size, self.augment, self.patches = split, batch_size, augment, patches
        self.start = n * rank // world
        self.stop = n * (rank + 1) // world

    def __len__(self) -> int:
        return -(-(self.stop - self.start) // self.batch_size)

    def indices(self, i: int) -> np.ndarray:
        lo = self.start + i * self.batch_size
        return np.arange(lo, min(lo + self.batch_size, self.stop))

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        idx = self.indices(i)
        images = self.split.read(idx)
        labels = torch.from_numpy(self.split.labels[idx])
        x = torch.from_numpy(images) if self.augment is None else self.augment.evaluate(images, self.patches)
        return x, labels, torch.from_numpy(idx)


def loader(dataset: Dataset, *, workers: int, start: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over whole batches ``start, start + 1, ...`` of ``dataset``.

    An explicit generator keeps DataLoader from drawing its worker seed from the
    global torch RNG, which dropout uses: resuming stays bit-identical.
    """
    return DataLoader(
        dataset,
        batch_size=None,
        sampler=range(start, len(dataset)),
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if workers > 0 else None,
        generator=torch.Generator(),
    )


