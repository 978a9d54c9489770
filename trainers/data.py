"""Datasets with a train and a validation split, all available offline.

- spiral: generated (the paper's generator);
- digits: scikit-learn's bundled 8x8 digits, stratified split;
- cifar10: the standard `cifar-10-batches-py` python batches in a local directory.

Inputs are float arrays (N, features) or (N, 32, 32, 3) images; labels are int32 in 0..C-1.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tiltsweep.trainers.config import Cifar10Data, DigitsData, SpiralData


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the path or setting and what is wrong."""

    def __init__(self, message: str, field: str = "data.path"):
        self.message, self.field = message, field
        super().__init__(message)


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def spiral_points(points_per_class: int, classes: int, revolutions: float, noise: float, seed: int):
    """Class j: radius r = linspace(0, 1, N), angle linspace(w j, w j + revolutions * pi, N)
    + noise * normal, with w = 2 pi / C; x = (r cos angle, r sin angle)."""
    rng = np.random.RandomState(seed)
    radius = np.linspace(0.0, 1.0, points_per_class)
    xs, ys = [], []
    for label in range(classes):
        start = 2 * np.pi * label / classes
        angle = np.linspace(start, start + revolutions * np.pi, points_per_class)
        angle = angle + rng.randn(points_per_class) * noise
        xs.append(np.c_[radius * np.cos(angle), radius * np.sin(angle)])
        ys.append(np.full(points_per_class, label))
    return np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.int32)


def load_spiral(cfg: SpiralData) -> Dataset:
    x_train, y_train = spiral_points(cfg.points_per_class, cfg.classes, cfg.revolutions, cfg.noise, cfg.data_seed)
    x_val, y_val = spiral_points(
        cfg.val_points_per_class or cfg.points_per_class, cfg.classes, cfg.revolutions, cfg.noise, cfg.data_seed + 1
    )
    return Dataset(x_train, y_train, x_val, y_val, cfg.classes)


def relabel(labels: np.ndarray, classes: list[int]) -> np.ndarray:
    """Map the chosen original classes to 0..len(classes)-1 in the given order."""
    mapping = np.full(max(int(labels.max(initial=0)), *classes) + 1, -1, dtype=np.int32)  # a subset may lack the last classes
    mapping[np.asarray(classes)] = np.arange(len(classes), dtype=np.int32)
    return mapping[labels]


def stratified_take(labels: np.ndarray, count: int, rng: np.random.RandomState) -> np.ndarray:
    """Indices of `count` examples, as evenly split over the labels as possible, in random order."""
    values = np.unique(labels)
    per_class = np.full(len(values), count // len(values))
    per_class[: count % len(values)] += 1
    chosen = []
    for value, quota in zip(values, per_class):
        members = np.flatnonzero(labels == value)
        chosen.append(rng.permutation(members)[: min(quota, len(members))])
    return rng.permutation(np.concatenate(chosen))


def load_digits(cfg: DigitsData) -> Dataset:
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x, y = bunch.data / 16.0, bunch.target.astype(np.int32)
    classes = cfg.classes or list(range(10))
    keep = np.isin(y, classes)
    x, y = x[keep], relabel(y[keep], classes)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=cfg.val_fraction, stratify=y, random_state=cfg.split_seed
    )
    return Dataset(x_train, y_train, x_val, y_val, len(classes))


CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_TEST_BATCH = "test_batch"


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch: images (N, 32, 32, 3) uint8 and labels (N,) int32."""
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int32)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing CIFAR-10 batch file") from None
    except Exception as error:  # unpickling garbage raises many kinds of errors
        raise DatasetError(f"{path}: not a CIFAR-10 python batch ({type(error).__name__}: {error})") from None
    if len(images) != len(labels):
        raise DatasetError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


def check_cifar10_dir(path: str) -> Path:
    """The directory, if it holds the five training batches and the test batch."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root}: CIFAR-10 directory not found (expected cifar-10-batches-py)")
    missing = [name for name in CIFAR10_TRAIN_BATCHES + [CIFAR10_TEST_BATCH] if not (root / name).is_file()]
    if missing:
        raise DatasetError(f"{root}: not a cifar-10-batches-py directory, missing {', '.join(missing)}")
    return root


def load_cifar10(cfg: Cifar10Data) -> Dataset:
    """A class subset of CIFAR-10 (e.g. the supplementary's first 3 classes, 3000 training images),
    normalized per channel with the training subset's mean and std. Validation is the test batch."""
    root = check_cifar10_dir(cfg.path)
    parts = [read_cifar10_batch(root / name) for name in CIFAR10_TRAIN_BATCHES]
    x_train = np.concatenate([images for images, _ in parts])
    y_train = np.concatenate([labels for _, labels in parts])
    x_val, y_val = read_cifar10_batch(root / CIFAR10_TEST_BATCH)

    classes = cfg.classes or list(range(10))
    rng = np.random.RandomState(cfg.split_seed)
    subsets = []
    for images, labels, size in ((x_train, y_train, cfg.train_size), (x_val, y_val, cfg.val_size)):
        keep = np.flatnonzero(np.isin(labels, classes))
        if size is not None:
            if size > len(keep):
                raise DatasetError(f"{root}: asked for {size} examples of classes {classes}, only {len(keep)} exist")
            keep = keep[stratified_take(labels[keep], size, rng)]
        subsets.append((images[keep].astype(np.float32) / 255.0, relabel(labels[keep], classes)))
    (x_train, y_train), (x_val, y_val) = subsets
    mean = x_train.mean(axis=(0, 1, 2))
    std = x_train.std(axis=(0, 1, 2)) + 1e-6
    return Dataset((x_train - mean) / std, y_train, (x_val - mean) / std, y_val, len(classes))


def train_set_size(cfg) -> Optional[int]:
    """Training examples the config yields, where that is known without reading the data."""
    if isinstance(cfg, SpiralData):
        return cfg.points_per_class * cfg.classes
    if isinstance(cfg, Cifar10Data):
        return cfg.train_size
    return len(load_dataset(cfg).x_train)  # digits ship with scikit-learn: cheap to load


def check_data(cfg, batch_size, local: bool = True) -> None:
    """Refuse, before training, data that is missing or smaller than one batch. local=False: the
    data's folder is not on this machine (a CIFAR-10 folder on object storage, `s3://...`, is the
    sweep's to check: trainers read local files only)."""
    if local and isinstance(cfg, Cifar10Data):
        check_cifar10_dir(cfg.path)
    size = train_set_size(cfg)
    if batch_size != "full" and size is not None and batch_size > size:
        raise DatasetError(f"{batch_size} is larger than the training set ({size} examples)", "optimizer.batch_size")


LOADERS = {"spiral": load_spiral, "digits": load_digits, "cifar10": load_cifar10}


def load_dataset(cfg) -> Dataset:
    return LOADERS[cfg.name](cfg)
