"""`gansample evaluate`: a generator's samples against a dataset's real test split."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import datasets
from .errors import GansampleError, bad_value, check_count
from .generator import Generator
from .metrics import FeatureExtractor, Report, compare, features_path


MAX_EVAL = 1_000_000  # generated samples held for one evaluation


def real_features(fx: FeatureExtractor, dataset: str, data_dir: str | None = None) -> np.ndarray:
    x, _ = datasets.load_standard(dataset, "test", data_dir, arg="dataset")
    return fx(x[..., None])[0]


def _prepare(model: "str | os.PathLike[str] | Generator | None", dataset: str | None, features: str | None,
             device: str) -> tuple[Generator, str, FeatureExtractor]:
    """The generator, the dataset it is compared with, and that dataset's features model."""
    g = model if isinstance(model, Generator) else Generator(model, device=device)
    dataset = dataset or g.info.dataset
    if not dataset:
        raise GansampleError("dataset: the model does not record its dataset; pass --dataset NAME", "dataset")
    if dataset not in datasets.KNOWN:
        raise bad_value("dataset", dataset, f"a dataset with real test data: {', '.join(sorted(datasets.KNOWN))}")
    return g, dataset, FeatureExtractor(features or features_path(dataset), device=device)


def evaluate(model: str | os.PathLike[str] | Generator | None = None, n: int = 10_000, psi: float = 1.0,
             features: str | None = None, dataset: str | None = None, device: str = "auto",
             data_dir: str | None = None, images: np.ndarray | None = None,
             intended: np.ndarray | None = None) -> Report:
    """Sample seeds 0..n-1 (classes by the seed rule) and compare them with the real test
    split in the feature space of the dataset's classifier. Pass ``images`` (uint8
    [N, H, W, C]) to evaluate a given set instead, e.g. a filtered one."""
    n = check_count("n", n, 10, MAX_EVAL)
    g, dataset, fx = _prepare(model, dataset, features, device)
    if images is None:
        res = g.sample(n=n, psi=psi)
        images, intended = res.images, res.labels
    fake, logits = fx(images)
    real = real_features(fx, dataset, data_dir)
    return compare(real, fake, logits if fx.info.num_classes else None, intended)


MAX_NEAREST = 256  # samples shown in the nearest-neighbour grid
NEIGHBOURS = 3  # training images shown beside each of them


@dataclass
class NearestReport:
    """Does the generator copy its training data? Distances in the features space."""

    n_fake: int
    n_train: int
    real_median: float  # typical distance from a real test image to its nearest training image
    real_p01: float  # 1st percentile of the same (real images closer than this are near-duplicates)
    share_closer: float  # share of samples nearer to a training image than real_median
    share_near_copies: float  # share nearer than real_p01
    grid: np.ndarray  # uint8: the shown samples, each beside its nearest training images
    shown: list[int]  # sample indices in the grid (closest to the training set first)

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items() if k != "grid"}


def _nearest(queries: np.ndarray, base: np.ndarray, k: int, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Distances [N, k] and indices [N, k] of each query's k nearest rows of ``base``."""
    dist = np.empty((len(queries), k))
    idx = np.empty((len(queries), k), np.int64)
    b2 = (base * base).sum(1)
    for i in range(0, len(queries), chunk):
        q = queries[i:i + chunk]
        d = np.maximum((q * q).sum(1)[:, None] + b2[None, :] - 2 * q @ base.T, 0)
        part = np.argpartition(d, k, axis=1)[:, :k]
        pd = np.take_along_axis(d, part, 1)
        order = np.argsort(pd, axis=1)
        idx[i:i + chunk] = np.take_along_axis(part, order, 1)
        dist[i:i + chunk] = np.sqrt(np.take_along_axis(pd, order, 1))
    return dist, idx


def nearest(model: str | os.PathLike[str] | Generator | None = None, k: int = 16, n: int = 10_000,
            psi: float = 1.0, features: str | None = None, dataset: str | None = None, device: str = "auto",
            data_dir: str | None = None) -> NearestReport:
    """Memorisation check: sample seeds 0..n-1, find each sample's nearest training images
    in the features space, and compare with how near real test images come to the
    training set. The grid shows the ``k`` samples closest to a training image (the most
    suspicious first), each followed by its nearest training images."""
    from .images import make_grid
    k = check_count("nearest", k, 1, MAX_NEAREST)
    n = check_count("n", n, max(10, k), MAX_EVAL)
    g, dataset, fx = _prepare(model, dataset, features, device)
    train, _ = datasets.load_standard(dataset, "train", data_dir, arg="dataset")
    test, _ = datasets.load_standard(dataset, "test", data_dir, arg="dataset")
    f_train = fx(train[..., None])[0]
    f_test = fx(test[..., None])[0]
    real_d = _nearest(f_test, f_train, 1)[0][:, 0]
    res = g.sample(n=n, psi=psi)
    fake_d, fake_i = _nearest(fx(res.images)[0], f_train, NEIGHBOURS)
    med, p01 = float(np.median(real_d)), float(np.percentile(real_d, 1))
    shown = np.argsort(fake_d[:, 0], kind="stable")[:k].tolist()
    tiles = []
    for i in shown:
        tiles.append(res.images[i])
        tiles.extend(train[j][..., None] for j in fake_i[i])
    grid = make_grid(np.stack(tiles), cols=1 + NEIGHBOURS)
    return NearestReport(n, len(train), med, p01, float((fake_d[:, 0] < med).mean()),
                         float((fake_d[:, 0] < p01).mean()), grid, shown)
