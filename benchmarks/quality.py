"""Quality figures for a model card: the model vs a baseline, and discriminator filtering.

    python benchmarks/quality.py exported/fashion-mnist --baseline /path/to/dcgan-export \
        --n 10000 --contact-sheet exported/fashion-mnist/contact_sheet.png

Prints Markdown tables: the evaluator's metrics for each model (n samples vs the real
test split), and the same number of samples with and without `--filter top:0.5` and
`--filter drs` (Frechet distance should drop when D's scores carry information).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gansample import Discriminator, Generator  # noqa: E402
from gansample.discriminator import filter_seeds, parse_filter  # noqa: E402
from gansample.evaluate import real_features  # noqa: E402
from gansample.images import make_grid
from gansample.output import save_png  # noqa: E402
from gansample.metrics import FeatureExtractor, compare, features_path  # noqa: E402

COLS = ("frechet_distance", "precision", "recall", "density", "coverage", "class_accuracy")


def row(name: str, rep) -> str:
    d = rep.as_dict()
    cells = [f"{d[c]:.3f}" if d.get(c) is not None else "–" for c in COLS]
    return f"| {name} | {d['n_fake']} | " + " | ".join(cells) + " |"


def header(first: str) -> str:
    return (f"| {first} | n | Frechet distance | precision | recall | density | coverage | class accuracy |\n"
            "|---|---|---|---|---|---|---|---|")


def recall_diagnostic(real: np.ndarray, dataset: str,
                      runs: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """Where k-NN recall (k=3) comes from: per real class, the share of real images inside some
    generated sample's ball; per class (as the classifier recognises the samples), the median
    k-NN radius of generated samples over that of real ones; and recall again with every
    generated ball capped at the real median radius of its class, which removes the credit
    that wide (noisy) samples get for large balls. ``runs``: (name, features, logits)."""
    from gansample.datasets import load_standard
    from gansample.metrics import _ball_counts, _knn_radii
    _, labels = load_standard(dataset, "test")
    r_real = _knn_radii(real, 3)
    classes = range(int(labels.max()) + 1)
    med_real = np.array([np.median(r_real[labels == c]) for c in classes])
    print("\n| samples | recall | recall, balls capped | per real class recall | radius ratio per class |")
    print("|---|---|---|---|---|")
    for name, feats, logits in runs:
        pred = logits.argmax(1)
        r_fake = _knn_radii(feats, 3)
        inside = _ball_counts(real, feats, r_fake) > 0
        capped = _ball_counts(real, feats, np.minimum(r_fake, med_real[pred])) > 0
        per_class = " ".join(f"{inside[labels == c].mean():.2f}" for c in classes)
        ratio = " ".join(f"{np.sqrt(np.median(r_fake[pred == c]) / med_real[c]):.2f}" for c in classes)
        print(f"| {name} | {inside.mean():.3f} | {capped.mean():.3f} | {per_class} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--filter-n", type=int, default=5_000)
    ap.add_argument("--contact-sheet", default=None)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--recall-diagnostic", action="store_true",
                    help="per-class recall and k-NN radii of the model (and baseline) vs the real images")
    ap.add_argument("--filters", default="top:0.5,drs:80",
                    help="comma list of --filter specs to compare with the unfiltered samples")
    a = ap.parse_args()

    fx = FeatureExtractor(features_path(a.dataset), device="cpu")
    real = real_features(fx, a.dataset)

    runs = []  # (name, features, logits) of the full sample sets, for --recall-diagnostic

    def evaluate(images: np.ndarray, labels: np.ndarray | None, name: str | None = None):
        feats, logits = fx(images)
        if name:
            runs.append((name, feats, logits))
        return compare(real, feats, logits, labels)

    g = Generator(a.model, device="cpu")
    print(header("model"))
    res = g.sample(n=a.n)
    print(row(f"{g.name} (gansample recipe)", evaluate(res.images, res.labels, g.name)))
    if a.baseline:
        b = Generator(a.baseline, device="cpu")
        rb = b.sample(n=a.n)
        print(row(f"{b.name} (plain DCGAN recipe)", evaluate(rb.images, rb.labels, b.name)))
    if a.recall_diagnostic:
        recall_diagnostic(real, a.dataset, runs)

    d = Discriminator(a.model, device="cpu")
    n = a.filter_n
    print()
    print(header("samples"))
    plain = g.sample(n=n)
    print(row("unfiltered (seeds 0..n-1)", evaluate(plain.images, plain.labels)))
    for method, param in map(parse_filter, a.filters.split(",")):
        t = time.perf_counter()
        fr = filter_seeds(g, d, method, param, n=n)
        kept = g.sample(seeds=fr.seeds)
        note = f"{fr.method}, acceptance {fr.acceptance_rate:.2f}, {time.perf_counter() - t:.0f}s"
        print(row(f"filtered ({note})", evaluate(kept.images, kept.labels)))

    if a.contact_sheet and g.info.conditional:
        rows = [g.sample(seeds=range(10), cls=k).images for k in range(g.info.num_classes)]
        sheet = make_grid(np.concatenate(rows), cols=10)
        save_png(sheet.repeat(2, 0).repeat(2, 1), a.contact_sheet, compress_level=9)
        print(f"\ncontact sheet: {a.contact_sheet} (rows: {', '.join(g.class_names)}; columns: seeds 0-9)")


if __name__ == "__main__":
    main()
