"""Latent-space tools: the encoder, projection (CMA-ES over onnxruntime), latent files,
walks through real images, principal directions and edits, the memorisation check."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FASHION_DIR, run_cli
from gansample import Generator
from gansample.directions import compute_directions, edit, load_directions, parse_amounts
from gansample.errors import GansampleError
from gansample.projection import Encoder, load_latents, project, save_latents
from gansample.registry import DIRECTIONS_FILE, ENCODER_FILE

needs_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")


@pytest.fixture(scope="module")
def tiny_with_encoder(tiny_model, tmp_path_factory) -> Path:
    """A copy of the tiny model with an encoder trained by the real trainer (20 steps)."""
    folder = tmp_path_factory.mktemp("latent") / "tiny"
    shutil.copytree(tiny_model, folder)
    assert run_cli("train-encoder", "--model", folder, "--steps", "20", "--batch-size", "16", "-q") == 0
    return folder


def test_encoder_is_exported_with_its_contract(tiny_with_encoder):
    g = Generator(tiny_with_encoder, device="cpu")
    enc = Encoder(tiny_with_encoder / ENCODER_FILE, "cpu")
    assert enc.info.role == "encoder" and enc.matches(g) == ""
    from gansample.files import file_sha256
    assert enc.info.architecture["generator_sha256"] == file_sha256(g.files.generators["fp32"])
    z, logits = enc(g.sample(seeds=range(5)).images)
    assert z.shape == (5, g.info.z_dim) and np.isfinite(z).all()
    assert logits is not None and logits.shape == (5, g.info.num_classes)
    assert set(enc.info.metrics) >= {"z_r2", "class_accuracy", "train_steps"}


def test_projection_never_worse_than_its_start_and_reproducible(tiny_with_encoder):
    g = Generator(tiny_with_encoder, device="cpu", spinning=False)
    target = g.sample(seeds=[7]).images
    short = project(g, target, steps=1, popsize=8)
    longer = project(g, target, steps=12, popsize=8)
    assert short.start == "encoder" and short.notes == [
        "no features model: the loss is pixels only and no feature distance is reported"]
    assert longer.pixel_rmse[0] <= short.pixel_rmse[0] + 1e-9
    again = project(g, target, steps=12, popsize=8)
    assert np.array_equal(again.latents, longer.latents)
    # The stored reconstruction is exactly what the generator makes from the stored latent.
    assert np.array_equal(g.sample(latents=longer.latents, labels=longer.labels).images, longer.reconstructions)
    # Without the encoder: random starts over every class, and the result says so.
    bare = project(g, target, steps=2, popsize=8, encoder=False)
    assert bare.start == "random starts" and "random starts only" in bare.notes[0]


def test_projection_arguments_are_checked(tiny_with_encoder):
    g = Generator(tiny_with_encoder, device="cpu")
    img = g.sample(seeds=[1]).images
    with pytest.raises(GansampleError, match="steps: got 0"):
        project(g, img, steps=0)
    with pytest.raises(GansampleError, match="popsize"):
        project(g, img, popsize=10**9)
    with pytest.raises(GansampleError, match="images: got"):
        project(g, img[:, :5])
    with pytest.raises(GansampleError, match="feature_weight"):
        project(g, img, feature_weight=float("nan"))


def test_latent_files_round_trip_and_refuse_pickles(tmp_path):
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    save_latents(tmp_path / "a.npz", z, np.array([0, 1, 2]))
    got, labels = load_latents(tmp_path / "a.npz", 8)
    assert np.array_equal(got, z) and labels.tolist() == [0, 1, 2]
    np.save(tmp_path / "b.npy", z[:1])
    assert load_latents([tmp_path / "b.npy"], 8)[1] is None
    np.savez(tmp_path / "evil.npz", latents=np.array([{"x": 1}], dtype=object))
    with pytest.raises(GansampleError, match="latents: got"):
        load_latents(tmp_path / "evil.npz", 8)
    with pytest.raises(GansampleError, match=r"shape \[N, 16\]"):
        load_latents(tmp_path / "a.npz", 16)
    with pytest.raises(GansampleError, match="labels or none"):
        load_latents([tmp_path / "a.npz", tmp_path / "b.npy"], 8)


def test_cli_project_bad_input_is_reported_and_the_rest_runs(tiny_model, tmp_path, capsys):
    """No encoder (noted), a non-image (skipped, the others run), a colour image for a
    grayscale model (converted, noted), a wrong size (resized, noted)."""
    g = Generator(tiny_model, device="cpu")
    assert g.info.img_channels == 1 and g.files.encoder is None
    src = g.sample(seeds=[3]).images[0, :, :, 0]
    Image.fromarray(src).save(tmp_path / "gray.png")
    Image.fromarray(np.stack([src] * 3, -1)).resize((40, 40)).save(tmp_path / "colour.png")
    (tmp_path / "notes.png").write_text("not an image")
    out = tmp_path / "out"
    rc = run_cli("project", tmp_path / "gray.png", tmp_path / "notes.png", tmp_path / "colour.png",
                 "--model", tiny_model, "--out", out, "--steps", "2", "--popsize", "8")
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "notes.png: skipped: not an image" in cap.err
    assert "no encoder.onnx" in cap.err and "random starts" in cap.err
    assert "converted to grayscale" in cap.err and "resized from 40 px" in cap.err
    for stem in ("gray", "colour"):
        assert (out / f"{stem}.npz").is_file() and (out / f"{stem}-side-by-side.png").is_file()
        rec = np.asarray(Image.open(out / f"{stem}-reconstruction.png"))
        assert rec.shape == (28, 28)
    summary = (out / "summary.csv").read_text()
    assert "converted to grayscale" in summary and summary.count("random starts") == 2
    # generate --latents reproduces the reconstruction exactly.
    assert run_cli("generate", "--model", tiny_model, "--latents", out / "gray.npz", "--outdir", tmp_path / "re",
                   "-q") == 0
    assert (tmp_path / "re" / "gray.png").read_bytes() == (out / "gray-reconstruction.png").read_bytes()


@pytest.mark.parametrize("argv, flag", [
    (["--steps", "0"], "--steps: got 0"),
    (["--popsize", "2"], "--popsize: got 2"),
    (["--d-weight", "-1"], "--d-weight: got -1"),
    (["--class", "nope"], "--class: got 'nope'"),
])
def test_cli_project_bad_arguments_exit_2(tiny_model, tmp_path, capsys, argv, flag):
    Image.new("L", (28, 28)).save(tmp_path / "x.png")
    assert run_cli("project", tmp_path / "x.png", "--model", tiny_model, "--out", tmp_path / "o", *argv) == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_project_nothing_usable_exit_2(tiny_model, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("text")
    assert run_cli("project", tmp_path / "a.txt", "--model", tiny_model, "--out", tmp_path / "o") == 2
    assert "IMAGE: got" in capsys.readouterr().err


def test_directions_computed_cached_and_edits(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_model, folder)
    g = Generator(folder, device="cpu")
    d = compute_directions(g, k=4, samples=256)
    assert d.vectors.shape == (4, g.info.z_dim)
    assert np.allclose(np.linalg.norm(d.vectors, axis=1), 1, atol=1e-5)
    assert np.all(np.diff(d.explained) <= 1e-6) and 0 < d.explained.sum() <= 1
    # First use stores them in the (writable) model folder; later uses read them back.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = load_directions(g)
    assert (folder / DIRECTIONS_FILE).is_file()
    again = load_directions(Generator(folder, device="cpu"))
    assert np.array_equal(first.vectors, again.vectors)
    res = edit(g, [4, 9], 0, "-2:2:5", directions=first)
    assert res.images.shape == (2, 5, 28, 28, 1) and res.amounts.tolist() == [-2, -1, 0, 1, 2]
    plain = g.sample(seeds=[4, 9]).images
    assert np.array_equal(res.images[:, 2], plain)
    assert not np.array_equal(res.images[:, 0], plain)
    with pytest.raises(GansampleError, match="direction: got 99"):
        edit(g, [1], 99, "0", directions=first)


@pytest.mark.parametrize("text", ["-3:3:0", "1:2", "a,b", "1e9", "0:1:65", "nan"])
def test_bad_amounts_are_refused(text):
    with pytest.raises(GansampleError, match="amount: got"):
        parse_amounts(text)


def test_cli_edit_amount_zero_is_the_generate_png(tmp_path):
    assert run_cli("edit", "--seeds", "5", "--direction", "0", "--amount", "0", "--outdir", tmp_path / "e", "-q") == 0
    assert run_cli("generate", "--seeds", "5", "--outdir", tmp_path / "g", "-q") == 0
    assert (tmp_path / "e" / "seed0005-dir00.png").read_bytes() == (tmp_path / "g" / "seed0005.png").read_bytes()
    assert run_cli("edit", "--seeds", "5,6", "--amount", "-3:3:7", "--outdir", tmp_path / "s", "-q") == 0
    strip = np.asarray(Image.open(tmp_path / "s" / "seed0006-dir00.png"))
    assert strip.shape == (28, 28 * 7)
    single = np.asarray(Image.open(tmp_path / "g" / "seed0005.png"))
    five = np.asarray(Image.open(tmp_path / "s" / "seed0005-dir00.png"))
    assert np.array_equal(five[:, 3 * 28:4 * 28], single)


def test_interpolate_through_latents_and_images(tiny_with_encoder, tmp_path):
    from gansample.interpolation import interpolate
    g = Generator(tiny_with_encoder, device="cpu")
    keys = g.sample(seeds=[1, 2, 3])
    res = interpolate(g, None, steps=4, latents=keys.latents, labels=keys.labels)
    assert res.frames.shape[0] == 9
    # The keyframes are hit exactly.
    assert np.array_equal(res.frames[[0, 4, 8]], keys.images)
    with pytest.raises(GansampleError, match="labels"):
        interpolate(g, None, steps=4, latents=keys.latents)
    for i, img in enumerate(keys.images):
        Image.fromarray(img[:, :, 0]).save(tmp_path / f"k{i}.png")
    out = tmp_path / "walk"
    assert run_cli("interpolate", "--model", tiny_with_encoder, "--images", tmp_path / "k0.png",
                   tmp_path / "k1.png", "--steps", "3", "--out", f"{out}/", "-q") == 0
    assert len(list(out.glob("*.png"))) == 4


@needs_fashion
def test_bundled_model_round_trip(tmp_path):
    """The bundled model ships an encoder and directions; G(seed) comes back close."""
    g = Generator(device="cpu", spinning=False)
    assert g.files.encoder is not None and (g.files.folder / DIRECTIONS_FILE).is_file()
    from gansample.projection import features_for
    fx = features_for(g)
    src = g.sample(seeds=range(100, 104))
    p = project(g, src.images, features=fx)
    assert p.start == "encoder" and np.array_equal(p.labels, src.labels)
    assert np.median(p.pixel_rmse) < 25
    # Nearer to its own source than to the other sources, in the features space.
    f_rec, f_src = fx(p.reconstructions)[0], fx(src.images)[0]
    dist = np.linalg.norm(f_rec[:, None] - f_src[None], axis=2)
    assert (dist.argmin(1) == np.arange(4)).all()


@needs_fashion
@pytest.mark.slow  # features of all 70,000 Fashion-MNIST images
def test_cli_evaluate_nearest_writes_grid(tmp_path, capsys):
    out = tmp_path / "near.png"
    assert run_cli("evaluate", "--n", "200", "--nearest", "4", "--nearest-out", out, "--format", "json") == 0
    import json
    rep = json.loads(capsys.readouterr().out)["nearest"]
    assert 0 <= rep["share_closer"] <= 1 and 0 <= rep["share_near_copies"] <= rep["share_closer"]
    assert rep["real_p01"] < rep["real_median"] and len(rep["shown"]) == 4
    grid = np.asarray(Image.open(out))
    assert grid.shape[:2] == (4 * 30 + 2, 4 * 30 + 2)
    assert run_cli("evaluate", "--nearest", "4", "--nearest-out", tmp_path / "x.txt") == 2
