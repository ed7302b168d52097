"""Quality metrics in the feature space of a classifier trained on the dataset itself.

- Frechet distance between Gaussians fitted to real and generated features (the FID
  formula, with this classifier instead of Inception).
- Precision and recall (Kynkaanniemi et al. 2019): k-NN balls around real (resp.
  generated) features; precision = share of generated samples inside some real ball,
  recall = share of real samples inside some generated ball.
- Density and coverage (Naeem et al. 2020): density counts how many real balls contain
  each generated sample (/k); coverage = share of real balls holding a generated sample.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import GansampleError
from .registry import bundled_dir
from .session import Device, Session

FEATURES_DIR = "features"


def features_path(dataset: str) -> Path:
    path = bundled_dir() / FEATURES_DIR / f"{dataset}.onnx"
    if not path.is_file():
        have = sorted(p.stem for p in (bundled_dir() / FEATURES_DIR).glob("*.onnx"))
        raise GansampleError(f"features: no feature extractor for dataset {dataset!r} "
                             f"(bundled: {', '.join(have) or 'none'}); pass --features FILE.onnx", "features")
    return path


class FeatureExtractor:
    def __init__(self, path: str | os.PathLike[str], device: "str | Device" = "auto", batch_size: int = 500,
                 threads: int | None = None) -> None:
        self.session = Session(path, device, threads, arg="features")
        if self.session.info.role != "features":
            raise GansampleError(f"features: {path} has role {self.session.info.role!r}, expected 'features'", "features")
        self.info = self.session.info
        self.batch_size = batch_size

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, H, W, C] -> (features float32 [N, D], logits float32 [N, classes])."""
        if images.ndim == 3:
            images = images[..., None]
        r, c = self.info.img_resolution, self.info.img_channels
        if images.shape[1:] != (r, r, c):
            raise GansampleError(f"images: got shape {images.shape[1:]}; the feature extractor takes {(r, r, c)}")
        feats, logits = [], []
        for i in range(0, len(images), self.batch_size):
            f, l = self.session.sess.run(None, {"images": np.ascontiguousarray(images[i:i + self.batch_size])})
            feats.append(f)
            logits.append(l)
        return np.concatenate(feats).astype(np.float64), np.concatenate(logits)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), without scipy: the trace of
    (S_a S_b)^(1/2) equals the sum of sqrt(eigenvalues) of S_a^(1/2) S_b S_a^(1/2)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root_a @ s_b @ root_a
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_sqrt)


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.maximum(d, 0)


def _knn_radii(x: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Squared distance from each row of x to its k-th nearest other row."""
    out = np.empty(len(x))
    for i in range(0, len(x), chunk):
        d = _sq_dists(x[i:i + chunk], x)
        out[i:i + chunk] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
    return out


def _ball_counts(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each query, how many balls (centres, squared radii) contain it."""
    out = np.empty(len(queries), dtype=np.int64)
    for i in range(0, len(queries), chunk):
        out[i:i + chunk] = (_sq_dists(queries[i:i + chunk], centres) <= radii[None, :]).sum(1)
    return out


def _nearest_fake_within(real: np.ndarray, fake: np.ndarray, real_radii: np.ndarray, chunk: int = 1024) -> np.ndarray:
    out = np.empty(len(real), dtype=bool)
    for i in range(0, len(real), chunk):
        out[i:i + chunk] = _sq_dists(real[i:i + chunk], fake).min(1) <= real_radii[i:i + chunk]
    return out


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    r_real, r_fake = _knn_radii(real, k), _knn_radii(fake, k)
    precision = float((_ball_counts(fake, real, r_real) > 0).mean())
    recall = float((_ball_counts(real, fake, r_fake) > 0).mean())
    return precision, recall


def density_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    r_real = _knn_radii(real, k)
    density = float(_ball_counts(fake, real, r_real).sum() / (k * len(fake)))
    coverage = float(_nearest_fake_within(real, fake, r_real).mean())
    return density, coverage


@dataclass
class Report:
    n_real: int
    n_fake: int
    frechet_distance: float
    precision: float
    recall: float
    density: float
    coverage: float
    class_accuracy: float | None = None  # conditional: share recognised as the intended class
    recognised_histogram: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def compare(real_feats: np.ndarray, fake_feats: np.ndarray, fake_logits: np.ndarray | None = None,
            intended: np.ndarray | None = None) -> Report:
    """All metrics between two feature sets (and class recognition for conditional runs)."""
    if len(real_feats) < 10 or len(fake_feats) < 10:
        raise GansampleError(f"n: need at least 10 real and 10 generated samples, got "
                             f"{len(real_feats)} and {len(fake_feats)}", "n")
    p, r = precision_recall(real_feats, fake_feats)
    d, c = density_coverage(real_feats, fake_feats)
    rep = Report(len(real_feats), len(fake_feats), frechet_distance(real_feats, fake_feats), p, r, d, c)
    if fake_logits is not None:
        pred = fake_logits.argmax(1)
        rep.recognised_histogram = np.bincount(pred, minlength=fake_logits.shape[1]).tolist()
        if intended is not None:
            rep.class_accuracy = float((pred == intended).mean())
    return rep
