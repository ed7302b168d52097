"""Image I/O: loading images with the training preprocessing, grids, atomic writes."""

from __future__ import annotations

import io
import os
import tempfile
import threading
import warnings
from collections import deque
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .errors import GansampleError

_UMASK = os.umask(0o022)
os.umask(_UMASK)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Decompression-bomb guard: refuse anything above this many pixels before decoding.
MAX_PIXELS = 64_000_000
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


class ImageLoadError(Exception):
    """One file could not be used as an image; the message says why."""


def find_images(root: str | os.PathLike[str]) -> list[Path]:
    """All image files below ``root`` (recursive), sorted for a stable order."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def open_image(path: str | os.PathLike[str] | bytes) -> Image.Image:
    """Open and fully decode an image, turning every failure into ImageLoadError."""
    src = io.BytesIO(path) if isinstance(path, bytes) else path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(src)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageLoadError(f"image too large ({w}x{h} = {w * h} pixels; limit {MAX_PIXELS})")
            img.load()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"image too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError("not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"broken or truncated image ({e})") from None
    return img


def is_grayscale(img: Image.Image) -> bool:
    return img.mode in _GRAY_MODES


def preprocess(img: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """Centre-crop to a square, resize to ``resolution`` and convert to ``channels``
    (1 = grayscale, 3 = RGB). Returns uint8 [H, W, C]. This is the one preprocessing
    used for training data and for images scored by the discriminator."""
    if img.mode in ("RGBA", "LA", "P", "PA"):
        # Composite transparency onto white, as a viewer would show it.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    if s != resolution:
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 [N, H, W, C] images into one uint8 [H', W', C] grid."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 [H, W, C] (C = 1 or 3) -> PIL image."""
    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into
    place: readers never see a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure_outdir(path: str | os.PathLike[str], arg: str = "--outdir") -> Path:
    """Create the folder (and parents) and check it is writable, or raise a clear error."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise GansampleError(f"{arg}: got {str(path)!r}; it is an existing file, expected a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise GansampleError(f"{arg}: got {str(path)!r}; the folder is not writable ({e.strerror})") from None
    return out


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path`` and rename it into place. The
    temporary name is unique per process and thread, so no random names are needed."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # the umask applies
    try:
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 [H, W, C] -> PNG bytes. Low zlib effort: for small GAN samples level 1 is
    several times faster than the default and barely larger."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def save_png(image: np.ndarray, path: str | os.PathLike[str], compress_level: int = 1) -> None:
    """Write one uint8 [H, W, C] image as PNG, atomically."""
    write_bytes_atomic(path, encode_png(image, compress_level))


def save_pngs(images: "np.ndarray | list[np.ndarray]", paths: "list[str] | list[Path]",
              compress_level: int = 1) -> None:
    """Write a batch of uint8 [H, W, C] images as PNG files, each atomically."""
    for image, path in zip(images, paths):
        save_png(image, path, compress_level)


class PngWriter:
    """Encode and write PNG files on worker threads while the caller runs inference
    (onnxruntime releases the GIL while it runs; Pillow's encoder and the file system
    calls release it too). One task per batch keeps the hand-off cost per image small,
    and at most ``max_pending`` batches are in flight, so memory stays flat however many
    images pass through. ``workers=0`` writes in the calling thread.
    """

    def __init__(self, workers: int | None = None, max_pending: int = 8) -> None:
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(workers or os.cpu_count() or 2) if workers != 0 else None
        self.pending: deque = deque()
        self.max_pending = max_pending

    def write(self, images: np.ndarray, paths: "list[Path]") -> None:
        if self.pool is None:
            save_pngs(images, paths)
            return
        self.pending.append(self.pool.submit(save_pngs, images, paths))
        while len(self.pending) > self.max_pending:
            self.pending.popleft().result()  # re-raises a failed write

    def close(self) -> None:
        if self.pool is None:
            return
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)

    def __enter__(self) -> "PngWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            for f in self.pending:
                f.cancel()
        self.close()
