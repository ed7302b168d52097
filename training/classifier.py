"""The feature extractor behind `gansample evaluate`: a small CNN classifier trained on a
dataset's training split, exported to ONNX with role `features`.

Output `features` is the 128-d penultimate layer (what the Frechet distance, precision,
recall, density and coverage are computed on); output `logits` names the class.

    python -m gansample.training.classifier --data fashion-mnist --out exported/features/fashion-mnist.onnx
"""

from __future__ import annotations

import argparse
import io
import time
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gansample import datasets
from gansample import metadata as md
from gansample.files import atomic_write

FEATURE_DIM = 128


class Classifier(nn.Module):
    """uint8 NHWC [B, H, W, C] -> (features [B, 128], logits [B, classes]). Takes the
    runtime's image layout directly, so generated images need no conversion."""

    def __init__(self, num_classes: int = 10, channels: int = 1, resolution: int = 28) -> None:
        super().__init__()
        self.resolution = resolution  # the size it was trained at (any size runs: global pooling)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(128, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        f = self.net(x)
        return f, self.head(f)


def folder_split(folder: str, resolution: int, seed: int = 0, test_share: float = 0.15) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A class-per-folder image set (e.g. training/emoji.py's) as NHWC uint8 train/test
    arrays, split at random per class (seeded)."""
    from .data import load_folder
    data = load_folder(Path(folder), resolution, None, True)
    assert data.labels is not None
    x = data.images.transpose(0, 2, 3, 1)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(x), bool)
    for c in range(len(data.class_names)):
        idx = np.flatnonzero(data.labels == c)
        test[rng.choice(idx, max(1, int(len(idx) * test_share)), replace=False)] = True
    return x[~test], data.labels[~test], x[test], data.labels[test], data.class_names


def train_classifier(name: str, epochs: int = 3, batch: int = 128, seed: int = 0,
                     resolution: int = 32) -> tuple[Classifier, float, list[str]]:
    """``name``: a standard dataset (28 px grayscale) or a class-per-folder image set."""
    torch.manual_seed(seed)
    if name in datasets.KNOWN:
        xtr, ytr = datasets.load_standard(name, "train")
        xte, yte = datasets.load_standard(name, "test")
        xtr, xte = np.asarray(xtr)[..., None], np.asarray(xte)[..., None]
        names = list(datasets.KNOWN[name].class_names)
    else:
        xtr, ytr, xte, yte, names = folder_split(name, resolution, seed)
    xtr_t, ytr_t = torch.from_numpy(np.array(xtr)), torch.from_numpy(ytr)
    model = Classifier(len(names), xtr.shape[-1], int(xtr.shape[1]))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * (len(xtr) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(len(xtr) // batch):
            idx = perm[i * batch:(i + 1) * batch]
            x = xtr_t[idx]
            # Light augmentation: random horizontal flips (garments and digits alike keep their class).
            if name != "mnist":
                flip = torch.rand(len(idx)) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(2), x)
            loss = F.cross_entropy(model(x)[1], ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(np.array(xte[i:i + 1000])))[1].argmax(1)
                          for i in range(0, len(xte), 1000)])
    return model, float((pred.numpy() == yte).mean()), names


def export_classifier(model: Classifier, name: str, accuracy: float, out: Path,
                      class_names: list[str] | None = None) -> None:
    import onnx
    first = model.net[0]
    assert isinstance(first, nn.Conv2d)
    r, c = model.resolution, int(first.in_channels)
    dummy = torch.zeros(2, r, r, c, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model, (dummy,), None, input_names=["images"],
                                 output_names=["features", "logits"], dynamic_shapes=({0: batch},),
                                 dynamo=True, verbose=False)
    assert prog is not None
    proto = prog.model_proto
    names = class_names or list(datasets.KNOWN[name].class_names)
    dataset = name if name in datasets.KNOWN else Path(name).name
    info = md.ModelInfo(role="features", img_resolution=r, img_channels=c, output=md.UINT8_NHWC,
                        num_classes=len(names), class_names=names,
                        name=f"{dataset}-features", dataset=dataset,
                        metrics={"test_accuracy": round(accuracy, 4), "feature_dim": FEATURE_DIM})
    md.write(proto, info)
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = proto.SerializeToString()
    atomic_write(out, data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist",
                    help=f"{', '.join(sorted(datasets.KNOWN))} or a class-per-folder image set")
    ap.add_argument("--resolution", type=int, default=32, help="image size for a folder set")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t = time.time()
    model, acc, names = train_classifier(a.data, a.epochs, resolution=a.resolution)
    export_classifier(model, a.data, acc, a.out, names)
    print(f"{a.data}: test accuracy {acc:.4f}, {time.time() - t:.0f}s -> {a.out}")


if __name__ == "__main__":
    main()
