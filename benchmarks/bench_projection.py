"""Projection figures for the closing note and the model card (issue: latent tools).

1. Round trip: project G(seed) for N seeds of the bundled model; median pixel RMSE (0-255),
   feature distance, and seconds per image on the given threads.
2. Real images: project M Fashion-MNIST test images; a reconstruction "wins" when it is
   nearer (features space) to its own source than to each of 10 other random test images.
Writes side-by-side sheets (inputs above reconstructions) to --out for a person to look at.

    python benchmarks/bench_projection.py --seeds 100 --real 200 --threads 2 --out bench-out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from gansample import Generator, datasets
from gansample.images import make_grid
from gansample.output import save_png
from gansample.projection import features_for, project


def sheet(p, path: Path, n: int = 20) -> None:
    save_png(make_grid(np.concatenate([p.targets[:n], p.reconstructions[:n]]), cols=min(n, len(p))), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fashion-mnist")
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--real", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    g = Generator(a.model, device="cpu", threads=a.threads, spinning=False)
    fx = features_for(g)
    rows = []
    src = g.sample(seeds=range(1000, 1000 + a.seeds))
    t0 = time.perf_counter()
    p = project(g, src.images, features=fx)
    wall = time.perf_counter() - t0
    sheet(p, a.out / "round-trip.png")
    rows.append(("G(seed) round trip", len(p), np.median(p.pixel_rmse), np.median(p.feature_distance),
                 wall / len(p), f"labels recovered {np.mean(p.labels == src.labels):.0%}" if p.labels is not None else ""))
    x, _ = datasets.load_standard(g.info.dataset, "test")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(x), a.real, replace=False)
    imgs = np.asarray(x[idx])[..., None]
    t0 = time.perf_counter()
    q = project(g, imgs, features=fx)
    wall = time.perf_counter() - t0
    sheet(q, a.out / "real.png")
    f_rec, f_all = fx(q.reconstructions)[0], fx(np.asarray(x)[..., None])[0]
    wins = 0
    for i, j in enumerate(idx):
        others = rng.choice(np.setdiff1d(np.arange(len(x)), [j]), 10, replace=False)
        own = np.linalg.norm(f_rec[i] - f_all[j])
        wins += own < np.linalg.norm(f_rec[i] - f_all[others], axis=1).min()
    rows.append((f"{g.info.dataset} test images", len(q), np.median(q.pixel_rmse), np.median(q.feature_distance),
                 wall / len(q), f"nearer to own source than to 10 others: {wins / len(q):.1%}"))
    # The scale of feature distances: two different real test images.
    a_, b_ = f_all[rng.choice(len(x), 2000)], f_all[rng.choice(len(x), 2000)]
    print(f"model {g.name}, {a.threads} threads, encoder: {'yes' if g.files.encoder else 'no'}; "
          f"median feature distance between two random test images: {np.median(np.linalg.norm(a_ - b_, axis=1)):.3f}")
    print(f"| set | images | median pixel RMSE (0-255) | median feature distance | s / image | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]} |")
    print(f"sheets: {a.out / 'round-trip.png'}, {a.out / 'real.png'}")


if __name__ == "__main__":
    main()
