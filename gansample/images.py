"""Image reading (any mode and bit depth, as a viewer shows it; sizes checked from the
header before decoding), the training preprocessing, grids and PNG encoding. Writing
files is gansample.output's job."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Decompression-bomb guards, checked from the header before anything is decoded: the
# pixel count, and the bytes the decoded image and its conversion to RGBA would take
# (an 8 kB palette PNG of 7999x7999 pixels passes a 64-megapixel cap but needed 1.3 GB
# to convert and score).
MAX_PIXELS = 40_000_000
MAX_DECODED_BYTES = 100 * 2**20
MAX_FILE_BYTES = 64 * 2**20
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
                    "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4, "I;16": 2, "I;16L": 2,
                    "I;16B": 2, "I;16N": 2}


class ImageLoadError(Exception):
    """One file could not be used as an image; the message says why."""


def find_images(root: str | os.PathLike[str]) -> list[Path]:
    """All image files below ``root`` (recursive), sorted for a stable order."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def open_image(path: str | os.PathLike[str] | bytes, target: int | None = None) -> Image.Image:
    """Open and fully decode an image, as a viewer shows it (EXIF orientation applied,
    16-bit and float images scaled to 8 bits), turning every failure into
    ImageLoadError. File size, pixel count and decoded bytes are checked before
    decoding. ``target``: the side the image will be reduced to, which lets JPEG decode
    at a reduced scale."""
    if isinstance(path, bytes):
        if len(path) > MAX_FILE_BYTES:
            raise ImageLoadError(f"file too large ({len(path)} bytes; limit {MAX_FILE_BYTES})")
        src: io.BytesIO | str | os.PathLike[str] = io.BytesIO(path)
    else:
        src = path
        try:
            size = os.path.getsize(path)
        except OSError as e:
            raise ImageLoadError(f"cannot read the file ({e.strerror or e})") from None
        if size > MAX_FILE_BYTES:
            raise ImageLoadError(f"file too large ({size} bytes; limit {MAX_FILE_BYTES})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(src)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageLoadError(f"image too large ({w}x{h} = {w * h} pixels; limit {MAX_PIXELS})")
            if target and img.format == "JPEG":
                img.draft("RGB" if img.mode not in _GRAY_MODES else "L", (target, target))
                w, h = img.size
            decoded = w * h * max(_BYTES_PER_PIXEL.get(img.mode, 4), 4)  # RGBA after conversion
            if decoded > MAX_DECODED_BYTES:
                raise ImageLoadError(f"image too large to decode ({w}x{h} {img.mode} needs {decoded >> 20} MB; "
                                     f"limit {MAX_DECODED_BYTES >> 20} MB)")
            img.load()
            viewed = _as_viewed(img)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageLoadError(f"image too large ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError("not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(f"broken or truncated image ({e})") from None
    return viewed


def _as_viewed(img: Image.Image) -> Image.Image:
    """Orientation and bit depth as an image viewer shows them. A 16-bit grayscale PNG
    holds 0..65535; converting it with Pillow's convert("L") clips to 255 (all white),
    so high-bit-depth and float images are scaled to 8 bits here instead."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode.startswith("I;16") or img.mode == "I":
        # Integer arithmetic in place, row blocks at a time: memory stays near the decoded size.
        a = np.asarray(img)
        wide = img.mode.startswith("I;16") or int(a.max(initial=0)) > 255
        out = np.empty(a.shape, np.uint8)
        for i in range(0, len(a), 256):
            block = np.clip(a[i:i + 256], 0, 65535 if wide else 255).astype(np.uint32)
            out[i:i + 256] = (block * 255 + 32767) // 65535 if wide else block
        return Image.fromarray(out, "L")
    if img.mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        ftop = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(np.rint(a * (255.0 / ftop)), 0, 255).astype(np.uint8), "L")
    return img


def is_grayscale(img: Image.Image) -> bool:
    return img.mode in _GRAY_MODES


def preprocess(img: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """Centre-crop to a square, resize to ``resolution`` and convert to ``channels``
    (1 = grayscale, 3 = RGB). Returns uint8 [H, W, C]. This is the one preprocessing
    used for training data and for images scored by the discriminator."""
    # Crop first: the conversions below then touch only the square that is kept.
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    if (w, h) != (s, s):
        img = img.crop((left, top, left + s, top + s))
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency onto white, as a viewer would show it.
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
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


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 [H, W, C] -> PNG bytes. Low zlib effort: for small GAN samples level 1 is
    several times faster than the default and barely larger."""
    buf = io.BytesIO()
    to_pil(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


