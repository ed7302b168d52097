"""Shared fixtures: tiny real datasets, a tiny real training run and its real ONNX export."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("OMP_NUM_THREADS", "2")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def make_image_folder(root: Path, n_per_class: int = 12, size: int = 36, classes=("circles", "squares"),
                      rgb: bool = False) -> Path:
    """Two visually distinct classes of synthetic images in class sub-folders."""
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[:size, :size]
    for ci, cname in enumerate(classes):
        d = root / cname
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            cy, cx, r = rng.randint(10, size - 10), rng.randint(10, size - 10), rng.randint(4, 9)
            if ci == 0:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            else:
                mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
            img = (mask * 220 + rng.randint(0, 30, (size, size))).astype(np.uint8)
            if rgb:
                img = np.stack([img, img // 2, 255 - img], axis=-1)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "shapes")


TINY = ["--set", "g_width=8", "--set", "d_width=8", "--set", "z_dim=16", "--set", "sample_every=2",
        "--set", "ckpt_every=2", "--set", "log_every=1", "--set", "threads=1"]


def tiny_config(data: Path, steps: int, **kw):
    from gansample.training.config import TrainConfig
    return TrainConfig(data=str(data), resolution=28, steps=steps, batch_size=8, z_dim=16, g_width=8,
                       d_width=8, sample_every=2, ckpt_every=2, log_every=1, threads=1, **kw)


@pytest.fixture(scope="session")
def tiny_run(image_folder, tmp_path_factory) -> Path:
    """A real 4-step conditional training run on the synthetic folder."""
    from gansample.training.train import train
    return train(tiny_config(image_folder, 4, conditional=True), tmp_path_factory.mktemp("runs"), progress=False)


@pytest.fixture(scope="session")
def tiny_model(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported to ONNX by the real exporter (all variants)."""
    from gansample.training.export import export_checkpoint
    out = tmp_path_factory.mktemp("exported") / "tiny"
    export_checkpoint(str(tiny_run), out)
    return out


@pytest.fixture(scope="session")
def tiny_uncond_model(image_folder, tmp_path_factory) -> Path:
    from gansample.training.export import export_checkpoint
    from gansample.training.train import train
    run = train(tiny_config(image_folder, 2), tmp_path_factory.mktemp("runs-u"), progress=False)
    out = tmp_path_factory.mktemp("exported-u") / "tiny-uncond"
    export_checkpoint(str(run), out, fp16=False)
    return out


def run_cli(*argv: str) -> int:
    from gansample.cli import main
    return main([str(a) for a in argv])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """A static HTTP server on 127.0.0.1 (a free port) for the duration of the block."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
