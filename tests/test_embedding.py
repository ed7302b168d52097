"""The embedding kit: the examples run without gansample and match its pixels."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import serve_folder
from gansample import Generator
from gansample.latents import z_from_seed

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "exported" / "fashion-mnist" / "generator.onnx"
NODE = shutil.which("node")
HAVE_NPM = (ROOT / "examples" / "node_modules" / "onnxruntime-node").is_dir()
needs_node = pytest.mark.skipif(not (NODE and HAVE_NPM), reason="node or examples/node_modules missing "
                                "(scripts/test.sh installs them)")
SEEDS = list(range(12))


@pytest.fixture(scope="module")
def reference():
    # The examples run generator.onnx (fp32 compute): compare with the same arithmetic.
    return Generator(MODEL.parent, device="cpu", variant="uint8").sample(seeds=SEEDS)


def _latents_file(tmp_path: Path, ref) -> Path:
    # Explicit latents, as an app that makes its own would pass them (truncated, not from seeds).
    z = (ref.latents * 0.7).tolist()
    p = tmp_path / "latents.json"
    p.write_text(json.dumps({"latents": z, "labels": [int(v) for v in (ref.labels[::-1])]}))
    return p


def test_python_example_matches(reference, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples/python/generate.py"), str(MODEL), "--seeds", "0-11",
                          "--outdir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    imgs = np.stack([np.asarray(Image.open(tmp_path / f"seed{s:04d}.png")) for s in SEEDS])[..., None]
    assert np.abs(imgs.astype(int) - reference.images).max() <= 1
    bad = subprocess.run([sys.executable, str(ROOT / "examples/python/generate.py"),
                          str(MODEL.parent / "discriminator.onnx")], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "not a gansample generator" in bad.stderr


@needs_node
def test_node_seed_rule_and_pixels_match(reference, tmp_path):
    out = subprocess.run([NODE, str(ROOT / "examples/node/generate.mjs"), str(MODEL), "--seeds", "0-11",
                          "--json", str(tmp_path / "r.json"), "--outdir", str(tmp_path / "png")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads((tmp_path / "r.json").read_text())
    px = np.array(res["pixels"]).reshape(reference.images.shape)
    assert res["labels"] == reference.labels.tolist()
    assert np.abs(px - reference.images.astype(int)).max() <= 1
    png = np.asarray(Image.open(tmp_path / "png" / "seed0005.png"))
    np.testing.assert_array_equal(png[..., None], px[5])
    # The same latents and labels given explicitly.
    lat = _latents_file(tmp_path, reference)
    out = subprocess.run([NODE, str(ROOT / "examples/node/generate.mjs"), str(MODEL), "--latents", str(lat),
                          "--json", str(tmp_path / "l.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    want = Generator(MODEL.parent, device="cpu", variant="uint8").sample(latents=reference.latents * 0.7,
                                                                         labels=reference.labels[::-1]).images
    got = np.array(json.loads((tmp_path / "l.json").read_text())["pixels"]).reshape(want.shape)
    assert np.abs(got - want.astype(int)).max() <= 1


@needs_node
def test_node_rejects_non_generator(tmp_path):
    for path in (MODEL.parent / "discriminator.onnx", ROOT / "pyproject.toml"):
        out = subprocess.run([NODE, str(ROOT / "examples/node/generate.mjs"), str(path)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2 and "not a gansample generator" in out.stderr or "not an ONNX" in out.stderr


def test_js_seed_rule_equals_numpy():
    if not NODE:
        pytest.skip("node missing")
    code = ("import {zFromSeed} from './examples/js/gansample.js';"
            "console.log(JSON.stringify([0, 1, 42, 4294967295].map(s => Array.from(zFromSeed(s, 64)))));")
    out = subprocess.run([NODE, "--input-type=module", "-e", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    for seed, z in zip([0, 1, 42, 4294967295], json.loads(out.stdout)):
        np.testing.assert_array_equal(np.array(z, dtype=np.float32), z_from_seed(seed, 64))


@pytest.fixture(scope="module")
def server():
    with serve_folder(ROOT) as url:
        yield url


@needs_node
def test_web_page_generates_matching_pixels(reference, server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("Debian chromium not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.goto(f"{server}/examples/web/index.html?model=/exported/fashion-mnist/generator.onnx&seeds=0-11")
        page.wait_for_function("document.body.dataset.status", timeout=60_000)
        assert page.evaluate("document.body.dataset.status") == "done", page.inner_text("#error")
        res = json.loads(page.inner_text("#result"))
        px = np.array(res["pixels"]).reshape(reference.images.shape)
        assert np.abs(px - reference.images.astype(int)).max() <= 1
        assert page.locator("#images canvas").count() == 12
        page.goto(f"{server}/examples/web/index.html?model=/exported/fashion-mnist/discriminator.onnx")
        page.wait_for_function("document.body.dataset.status", timeout=60_000)
        assert "not a gansample generator" in page.inner_text("#error")
        browser.close()
