"""Training data: a folder of images, an IDX file, or a standard dataset name.

Everything is decoded once into a uint8 array [N, C, H, W] in memory; batches are
drawn by a schedule that depends only on (seed, step), so a resumed run sees exactly
the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gansample import datasets
from gansample.errors import GansampleError, bad_value
from gansample.images import IMAGE_EXTENSIONS, ImageLoadError, find_images, is_grayscale, open_image, preprocess

from .models import SUPPORTED_RESOLUTIONS


@dataclass
class ImageData:
    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray | None  # int64 [N], or None when unlabelled
    class_names: list[str] = field(default_factory=list)
    name: str = ""
    skipped: int = 0

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])


def _resize_array(images: np.ndarray, resolution: int) -> np.ndarray:
    """[N, H, W] uint8 -> [N, 1, R, R], resizing with Pillow when R differs."""
    if images.shape[-1] != resolution:
        from PIL import Image
        images = np.stack([np.asarray(Image.fromarray(im).resize((resolution, resolution),
                                                                   Image.Resampling.LANCZOS))
                           for im in images])
    return images[:, None]


def load_folder(root: Path, resolution: int, channels: int | None, labelled: bool) -> ImageData:
    if not root.is_dir():
        raise bad_value("data", str(root), "a folder of images, an IDX file, or one of: "
                        + ", ".join(sorted(datasets.KNOWN)))
    files = find_images(root)
    if not files:
        raise bad_value("data", str(root), f"the folder has no image files "
                        f"({', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)})")
    decoded, rels, skipped = [], [], 0
    for p in files:
        try:
            decoded.append(open_image(p))
            rels.append(p.relative_to(root))
        except ImageLoadError:
            skipped += 1
    if not decoded:
        raise bad_value("data", str(root), f"none of its {len(files)} image files could be "
                        "decoded (all broken or truncated)")
    if channels is None:
        channels = 1 if all(is_grayscale(im) for im in decoded) else 3
    arr = np.stack([preprocess(im, resolution, channels) for im in decoded]).transpose(0, 3, 1, 2)
    labels, names = None, []
    if labelled:
        if any(len(r.parts) < 2 for r in rels):
            raise bad_value("conditional", True, f"class labels come from sub-folder names, but "
                            f"{root} has images directly in it; put each class in its own sub-folder")
        names = sorted({r.parts[0] for r in rels})
        if len(names) < 2:
            raise bad_value("conditional", True, f"found {len(names)} class sub-folder(s) in {root}; "
                            "need at least 2")
        labels = np.array([names.index(r.parts[0]) for r in rels], dtype=np.int64)
    return ImageData(np.ascontiguousarray(arr), labels, names, root.name, skipped)


def load_dataset(spec: str, resolution: int | None = None, channels: int | None = None,
                 conditional: bool = False, data_dir: str | None = None,
                 download: bool = False) -> ImageData:
    """Load ``spec``: a known name (fashion-mnist, mnist), an IDX images file, or a folder."""
    if resolution is not None and resolution not in SUPPORTED_RESOLUTIONS:
        raise bad_value("resolution", resolution,
                        f"supported: {', '.join(map(str, SUPPORTED_RESOLUTIONS))}")
    path = Path(spec)
    if spec in datasets.KNOWN:
        imgs, labs = datasets.load_standard(spec, "train", data_dir, allow_download=download)
        info = datasets.KNOWN[spec]
        arr = _resize_array(imgs, resolution or 28)
        if channels == 3:
            arr = np.repeat(arr, 3, axis=1)
        return ImageData(arr, labs if conditional else None,
                         list(info.class_names) if conditional else [], spec)
    if path.is_file():
        imgs = datasets.read_idx(path)
        if imgs.ndim != 3:
            raise bad_value("data", spec, "an IDX images file has 3 dimensions [N, H, W]; "
                            f"this one has shape {imgs.shape}")
        labels: np.ndarray | None = None
        if conditional:
            lab_path = _labels_beside(path)
            labels = datasets.read_idx(lab_path).astype(np.int64)
            if len(labels) != len(imgs):
                raise GansampleError(f"data: {lab_path} has {len(labels)} labels for {len(imgs)} images", "data")
        arr = _resize_array(imgs, resolution or (28 if imgs.shape[-1] == 28 else 32))
        names = [str(i) for i in range(int(labels.max()) + 1)] if labels is not None else []
        return ImageData(arr, labels, names, path.name.split("-")[0])
    if path.exists() or path.is_dir() or "/" in spec or spec.startswith("."):
        return load_folder(path, resolution or 64, channels, conditional)
    raise bad_value("data", spec, "a folder of images, an IDX images file, or one of the dataset "
                    f"names: {', '.join(sorted(datasets.KNOWN))}")


def _labels_beside(images_path: Path) -> Path:
    name = images_path.name.replace("images-idx3", "labels-idx1")
    cand = images_path.with_name(name)
    if name == images_path.name or not cand.is_file():
        raise bad_value("conditional", True, f"no labels file found beside {images_path} "
                        f"(looked for {cand.name})")
    return cand


class BatchSchedule:
    """Batch ``step`` is slice [step*B, (step+1)*B) of the endless concatenation of
    per-epoch permutations, each seeded by (seed, epoch): stateless, so resumable."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._cache = {epoch: torch.randperm(self.n, generator=g)}
        return self._cache[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.batch_size
        out: list[int] = []
        while len(out) < self.batch_size:
            epoch, pos = divmod(start + len(out), self.n)
            take = min(self.batch_size - len(out), self.n - pos)
            out.extend(self._perm(epoch)[pos:pos + take].tolist())
        return torch.tensor(out)
