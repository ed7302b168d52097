"""The colour recipe (fastgan) at 64 and 128 px, the emoji data set's extraction, and the
features model and evaluator for image folders."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image_folder
from gansample import Generator


def _tiny_fastgan(folder: Path, out: Path, resolution: int, steps: int = 1, **settings) -> Path:
    from gansample.training.config import TrainConfig
    from gansample.training.train import train
    cfg = TrainConfig(data=str(folder), resolution=resolution, conditional=True, steps=steps,
                      batch_size=4, z_dim=16, g_width=8, d_width=8, sample_every=steps, ckpt_every=steps,
                      log_every=1, threads=1, standing_samples=64, **{"recipe": "fastgan", **settings})
    return train(cfg, out, progress=False)


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("colour") / "shapes", n_per_class=6, size=72, rgb=True)


@pytest.mark.parametrize("resolution", [64, 128])
def test_fastgan_one_step_on_cpu(colour_folder, tmp_path, resolution):
    run = _tiny_fastgan(colour_folder, tmp_path, resolution)
    state = torch.load(next(run.glob("checkpoint-*.pt")), weights_only=True)
    assert state["g_args"]["sle"] is True and state["d_args"]["recon"] is True
    assert state["g_args"]["resolution"] == resolution and state["g_args"]["channels"] == 3
    assert state["config"]["loss"] == "hinge" and "color" in state["config"]["augment"]
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["recon"] > 0 and np.isfinite(row["loss_d"])
    assert (run / "metrics.png").is_file()


@pytest.mark.parametrize("resolution", [64, 128])
def test_default_recipe_on_colour_data_uses_colour_augmentation(colour_folder, tmp_path, resolution):
    # The colour recipe of docs/colour.md: the default recipe with colour + translation
    # DiffAugment, chosen by augment="auto" because the data is RGB.
    run = _tiny_fastgan(colour_folder, tmp_path, resolution, recipe="gansample")
    state = torch.load(next(run.glob("checkpoint-*.pt")), weights_only=True)
    assert state["config"]["augment"] == "color,translation" and state["config"]["recipe"] == "gansample"
    assert json.loads((run / "config.json").read_text())["augment"] == "color,translation"
    assert state["g_args"]["resolution"] == resolution and "sle" not in state["g_args"]
    assert np.isfinite(json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["loss_d"])


def test_augment_auto_follows_the_data_and_an_explicit_policy_wins(tmp_path):
    gray = make_image_folder(tmp_path / "gray", n_per_class=4, size=32, rgb=False)
    run = _tiny_fastgan(gray, tmp_path / "g", 32, recipe="gansample")
    assert json.loads((run / "config.json").read_text())["augment"] == "translation"
    rgb = make_image_folder(tmp_path / "rgb", n_per_class=4, size=32, rgb=True)
    run = _tiny_fastgan(rgb, tmp_path / "r", 32, recipe="gansample", augment="translation")
    assert json.loads((run / "config.json").read_text())["augment"] == "translation"
    from gansample.errors import GansampleError
    from gansample.training.config import TrainConfig
    with pytest.raises(GansampleError, match="augment.*'blur'.*auto, or a comma list"):
        TrainConfig(augment="blur").validate()


def test_fastgan_exports_through_the_phase_graph(colour_folder, tmp_path):
    from gansample.training.export import export_checkpoint
    run = _tiny_fastgan(colour_folder, tmp_path / "runs", 64, steps=2)
    report = export_checkpoint(str(run), tmp_path / "m", fp16=False, int8=False)
    assert report["generator_max_abs_diff"] < 1e-4
    g = Generator(tmp_path / "m", device="cpu")
    out = g.sample(seeds=range(6), cls="squares")
    assert out.images.shape == (6, 64, 64, 3)
    # The CPU default (uint8, phase-conv graph with the excitation gates) matches the portable file.
    plain = Generator(tmp_path / "m", device="cpu", variant="fp32").sample(seeds=range(6), cls="squares")
    assert np.abs(out.images.astype(int) - plain.images.astype(int)).max() <= 1


def _fake_package(path: Path) -> Path:
    """A .tgz laid out like emoji-datasource-google: emoji.json, img/google/64, LICENSE."""
    entries = [
        {"image": "1f600.png", "category": "Smileys & Emotion", "has_img_google": True},
        {"image": "1f385.png", "category": "People & Body", "has_img_google": True,
         "skin_variations": {"1F3FB": {"image": "1f385-1f3fb.png", "has_img_google": True}}},
        {"image": "1f3fb.png", "category": "Component", "has_img_google": True},
        {"image": "1f4a9.png", "category": "Objects", "has_img_google": False},
    ]
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("package/emoji.json", json.dumps(entries).encode())
        add("package/LICENSE", b"MIT")
        for name in ("1f600.png", "1f385.png", "1f385-1f3fb.png", "1f3fb.png", "1f4a9.png"):
            buf = io.BytesIO()
            Image.new("RGBA", (64, 64), (255, 200, 0, 128)).save(buf, format="PNG")
            add(f"package/img/google/64/{name}", buf.getvalue())
    return path


def test_emoji_extraction(tmp_path):
    from gansample.training.emoji import extract
    counts = extract(_fake_package(tmp_path / "pkg.tgz"), tmp_path / "emoji")
    assert counts == {"Smileys & Emotion": 1, "People & Body": 2}
    assert sorted(p.name for p in (tmp_path / "emoji").iterdir()) == [
        "LICENSE-DATA.txt", "LICENSE-IMAGES.txt", "People-and-Body", "Smileys-and-Emotion"]
    assert "Apache License" in (tmp_path / "emoji" / "LICENSE-IMAGES.txt").read_text()
    from gansample.training.data import load_dataset
    data = load_dataset(str(tmp_path / "emoji"), 32, None, conditional=True)
    # Transparent pixels are composited onto white, as a viewer shows them.
    assert data.images.shape == (3, 3, 32, 32) and data.class_names == ["People-and-Body", "Smileys-and-Emotion"]
    with pytest.raises(Exception, match="not the emoji-datasource-google package"):
        bad = tmp_path / "bad.tgz"
        with tarfile.open(bad, "w:gz") as tar:
            tar.addfile(tarfile.TarInfo("package/other.txt"), io.BytesIO(b""))
        extract(bad, tmp_path / "x")


def test_folder_features_model_and_evaluation(colour_folder, tmp_path):
    """A features model for an image folder (the colour data sets have no bundled one),
    then periodic evaluation against the folder's own images with it."""
    from gansample.metrics import FeatureExtractor
    from gansample.training.classifier import export_classifier, train_classifier
    model, acc, names = train_classifier(str(colour_folder), epochs=1, batch=4, resolution=32)
    assert names == ["circles", "squares"] and 0 <= acc <= 1
    export_classifier(model, str(colour_folder), acc, tmp_path / "f.onnx", names)
    fx = FeatureExtractor(tmp_path / "f.onnx", device="cpu")
    assert (fx.info.img_resolution, fx.info.img_channels, fx.info.dataset) == (32, 3, "shapes")
    from gansample.training.config import TrainConfig
    from gansample.training.train import train
    cfg = TrainConfig(data=str(colour_folder), resolution=32, conditional=True, recipe="fastgan", steps=2,
                      batch_size=4, z_dim=16, g_width=8, d_width=8, sample_every=2, ckpt_every=2, log_every=1,
                      threads=1, eval_every=2, eval_n=20, features=str(tmp_path / "f.onnx"), standing_samples=64)
    run = train(cfg, tmp_path / "runs", progress=False)
    ev = [json.loads(l)["eval"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert len(ev) == 1 and ev[0]["n_real"] == 12 and ev[0]["frechet_distance"] > 0
    assert (run / "metrics.png").is_file()
