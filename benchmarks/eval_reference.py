"""Reference rows for `gansample evaluate`: what the metrics say about known sets.

Real training images (n of them) are compared with the real test split in the bundled
classifier's feature space: unchanged (the floor), with added noise, blurred, and with
half of the classes dropped. Prints a Markdown table (docs/evaluation.md holds one).

    python benchmarks/eval_reference.py --n 10000
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageFilter

from gansample import datasets
from gansample.evaluate import real_features
from gansample.metrics import FeatureExtractor, compare, features_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--n", type=int, default=10_000)
    a = ap.parse_args()
    fx = FeatureExtractor(features_path(a.dataset), device="cpu")
    real = real_features(fx, a.dataset)
    x, y = datasets.load_standard(a.dataset, "train")
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(x))[: a.n]
    base = x[idx]
    noisy = np.clip(base.astype(np.float32) + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    blurred = np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(1.5))) for im in base])
    keep = np.isin(y, np.arange(5))
    half = x[np.flatnonzero(keep)[rng.permutation(keep.sum())[: a.n]]]
    print(f"| set ({a.n} images vs the {len(real)} test images) | Frechet distance | precision | recall | density | coverage |")
    print("|---|---|---|---|---|---|")
    for name, imgs in [("real train images (floor)", base), ("+ Gaussian noise, sigma 40/255", noisy),
                       ("Gaussian blur, radius 1.5", blurred), ("classes 5-9 dropped", half)]:
        r = compare(real, fx(imgs[..., None])[0])
        print(f"| {name} | {r.frechet_distance:.3f} | {r.precision:.3f} | {r.recall:.3f} | "
              f"{r.density:.3f} | {r.coverage:.3f} |")


if __name__ == "__main__":
    main()
