"""`gansample evaluate`: a generator's samples against a dataset's real test split."""

from __future__ import annotations

import os

import numpy as np

from . import datasets
from .errors import GansampleError, bad_value, check_count
from .generator import Generator
from .metrics import FeatureExtractor, Report, compare, features_path


MAX_EVAL = 1_000_000  # generated samples held for one evaluation


def real_features(fx: FeatureExtractor, dataset: str, data_dir: str | None = None) -> np.ndarray:
    x, _ = datasets.load_standard(dataset, "test", data_dir)
    return fx(x[..., None])[0]


def evaluate(model: str | os.PathLike[str] | Generator | None = None, n: int = 10_000, psi: float = 1.0,
             features: str | None = None, dataset: str | None = None, device: str = "auto",
             data_dir: str | None = None, images: np.ndarray | None = None,
             intended: np.ndarray | None = None) -> Report:
    """Sample seeds 0..n-1 (classes by the seed rule) and compare them with the real test
    split in the feature space of the dataset's classifier. Pass ``images`` (uint8
    [N, H, W, C]) to evaluate a given set instead, e.g. a filtered one."""
    n = check_count("n", n, 10, MAX_EVAL)
    g = model if isinstance(model, Generator) else Generator(model, device=device)
    dataset = dataset or g.info.dataset
    if not dataset:
        raise GansampleError("dataset: the model does not record its dataset; pass --dataset NAME", "dataset")
    if dataset not in datasets.KNOWN:
        raise bad_value("dataset", dataset, f"a dataset with real test data: {', '.join(sorted(datasets.KNOWN))}")
    fx = FeatureExtractor(features or features_path(dataset), device=device)
    if images is None:
        res = g.sample(n=n, psi=psi)
        images, intended = res.images, res.labels
    fake, logits = fx(images)
    real = real_features(fx, dataset, data_dir)
    return compare(real, fake, logits if fx.info.num_classes else None, intended)
