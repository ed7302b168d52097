"""The wheel carries the bundled model: a regular (non-editable) install finds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_the_bundled_model(tmp_path: Path) -> None:
    # Build from a clean copy: setuptools reuses a build/ folder left in the tree, which
    # would let a wheel carry files the package configuration no longer names.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "node_modules", "runs", ".gpu", ".pytest_cache", "__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(wheels)],
                   check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = wheels.glob("gansample-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # Exactly one import name: no `training` or `app` beside `gansample` in site-packages.
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"gansample"}, top
    assert "gansample/training/train.py" in names and "gansample/ui.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)[:20]
    for f in ("generator.onnx", "generator_uint8.onnx", "generator_int8.onnx", "generator_fp16.onnx",
              "generator_mix.onnx", "discriminator.onnx", "encoder.onnx", "directions.npz", "MODEL_CARD.md"):
        assert f"gansample/exported/fashion-mnist/{f}" in names
    assert "gansample/exported/features/fashion-mnist.onnx" in names
    for f in ("generator.onnx", "generator_uint8.onnx", "generator_int8.onnx", "discriminator.onnx", "MODEL_CARD.md",
              "contact_sheet.png"):
        assert f"gansample/exported/emoji/{f}" in names
    assert "gansample/exported/features/emoji.onnx" in names
    print(f"wheel: {wheel.name}, {wheel.stat().st_size / 2**20:.1f} MB")

    # Install it on its own into a target folder and run it from outside the checkout, with
    # the target first on the path, so nothing can come from the source tree.
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    code = ("import gansample, sys; from gansample import Generator; "
            "g = Generator('fashion-mnist', device='cpu'); r = g.sample(seeds=[0, 1]); "
            "print(gansample.__file__); print(g.files.folder); print(r.images.shape); "
            "import gansample.training.config as c; print(c.__file__)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout.splitlines()
    assert out[0].startswith(str(site)), out
    assert Path(out[1]) == site / "gansample" / "exported" / "fashion-mnist", out
    assert out[2] == "(2, 28, 28, 1)", out
    assert out[3] == str(site / "gansample" / "training" / "config.py"), out
