"""Discriminator scoring and discriminator-guided sampling, on real Fashion-MNIST images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import FASHION_DIR, run_cli
from gansample import Discriminator, Generator, datasets
from gansample.discriminator import drs_accept_prob, filter_seeds, parse_filter, within_class_rank
from gansample.errors import GansampleError

pytestmark = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")


@pytest.fixture(scope="module")
def real():
    x, y = datasets.load_standard("fashion-mnist", "test")
    return x[:300, :, :, None], y[:300]


@pytest.fixture(scope="module")
def d():
    return Discriminator(device="cpu")


def test_real_images_score_higher_than_noise_blank_and_blur(d, real):
    x, y = real
    rng = np.random.RandomState(0)
    sets = {
        "noise": rng.randint(0, 256, x.shape).astype(np.uint8),
        "black": np.zeros_like(x),
        "white": np.full_like(x, 255),
        "gray": np.full_like(x, 128),
        "blur": np.stack([np.asarray(Image.fromarray(im[:, :, 0]).filter(ImageFilter.GaussianBlur(2.5)))
                          for im in x])[..., None],
    }
    real_true = d.logits(x, y).mean()
    real_best = d.best_class_logits(x)[0].mean()
    for name, imgs in sets.items():
        assert real_true > d.logits(imgs, y).mean(), name
        assert real_best > d.best_class_logits(imgs)[0].mean(), name


def test_score_alone_equals_score_in_batch(d, real):
    x, y = real
    batch = d.logits(x[:50], y[:50])
    for i in (0, 17, 49):
        alone = d.logits(x[i:i + 1], y[i:i + 1])[0]
        assert alone == pytest.approx(batch[i], abs=1e-5)


def _write(folder, x, n):
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"real{i:02d}.png"
        Image.fromarray(x[i, :, :, 0]).save(p)
        paths.append(p)
    return paths


def test_score_command_sorted_stable_and_bad_files(d, real, tmp_path, capsys):
    x, _ = real
    paths = _write(tmp_path / "imgs", x, 4)
    dup = tmp_path / "imgs" / "real00-copy.png"
    dup.write_bytes(paths[0].read_bytes())
    (tmp_path / "imgs" / "notes.png").write_text("not an image")
    data = paths[1].read_bytes()
    (tmp_path / "imgs" / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.new("L", (9000, 9000)).save(tmp_path / "bomb.png")  # 81 Mpixel, a few kB on disk
    Image.new("RGB", (28, 28), (255, 0, 0)).save(tmp_path / "red.png")
    code = run_cli("score", tmp_path / "imgs", tmp_path / "bomb.png", tmp_path / "red.png",
                   str(tmp_path / "nothing*.png"), "--format", "json")
    out = capsys.readouterr()
    assert code == 0
    rep = json.loads(out.out)
    scored = {r["path"].rsplit("/", 1)[1]: r for r in rep["scores"]}
    assert set(scored) == {"real00.png", "real00-copy.png", "real01.png", "real02.png", "real03.png"}
    scores = [r["score"] for r in rep["scores"]]
    assert scores == sorted(scores, reverse=True)
    # Equal scores keep their input order (a stable sort): the copy comes after the original.
    names = [r["path"].rsplit("/", 1)[1] for r in rep["scores"]]
    assert scored["real00.png"]["score"] == scored["real00-copy.png"]["score"]
    assert names.index("real00-copy.png") < names.index("real00.png")  # found first: folders are sorted
    errors = {r["path"].rsplit("/", 1)[1]: r["error"] for r in rep["skipped"]}
    assert "not an image" in errors["notes.png"]
    assert "truncated" in errors["truncated.png"]
    assert "too large" in errors["bomb.png"]
    assert "wrong channel count" in errors["red.png"]
    assert "no file matches" in errors["nothing*.png"]
    for name in ("notes.png", "bomb.png", "red.png"):
        assert name in out.err  # one message per bad file on stderr
    # Same scores through the API, one file at a time.
    alone = d.score_files([str(paths[2])]).rows[0].score
    assert alone == pytest.approx(scored["real02.png"]["score"], abs=1e-5)


def test_score_no_valid_input_exits_2(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    assert run_cli("score", tmp_path / "a.txt", tmp_path / "missing.png") == 2
    err = capsys.readouterr().err
    assert "none of it could be scored" in err and "Traceback" not in err


def test_csv_and_class_option(real, tmp_path, capsys):
    x, _ = real
    paths = _write(tmp_path, x, 3)
    assert run_cli("score", *paths, "--format", "csv", "--class", "Trouser") == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 3 and {r["class"] for r in rows} == {"Trouser"}
    assert run_cli("score", *paths, "--class", "Hat") == 2
    assert "--class: got 'Hat'" in capsys.readouterr().err


def test_filters_are_deterministic_and_recorded(tmp_path):
    g, d = Generator(device="cpu"), Discriminator(device="cpu")
    a = filter_seeds(g, d, "top", 0.5, n=40)
    b = filter_seeds(g, d, "top", 0.5, n=40)
    assert a.seeds == b.seeds and len(a.seeds) == 40 and len(a.candidates) == 80
    # Stratified by class: every class keeps half of its candidates.
    labels = np.array(a.candidates) % 10
    assert all(a.kept[labels == c].sum() == 4 for c in range(10))
    drs1 = filter_seeds(g, d, "drs", 80, n=30, calibration=300)
    drs2 = filter_seeds(g, d, "drs", 80, n=30, calibration=300)
    assert drs1.seeds == drs2.seeds and len(drs1.seeds) == 30 and 0 < drs1.acceptance_rate < 1
    out = tmp_path / "o"
    assert run_cli("generate", "-n", "20", "--filter", "top:0.5", "--outdir", out, "-q") == 0
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    cand = list(csv.DictReader(open(out / "candidates.csv")))
    assert len(rows) == 20 and len(cand) == 40 and sum(int(c["kept"]) for c in cand) == 20
    kept = {c["seed"]: float(c["d_score"]) for c in cand if c["kept"] == "1"}
    assert {r["seed"] for r in rows} == set(kept)
    assert all(float(r["d_score"]) == pytest.approx(kept[r["seed"]]) for r in rows)
    assert sorted(p.name for p in out.glob("seed*.png")) == sorted(r["file"] for r in rows)


def test_filter_helpers():
    assert parse_filter("top:0.25") == ("top", 0.25) and parse_filter("drs") == ("drs", 80.0)
    for bad in ("top", "top:0", "top:1.5", "drs:101", "best"):
        with pytest.raises(GansampleError, match="filter: got"):
            parse_filter(bad)
    logits = np.array([-3.0, -1.0, 0.0, 1.0, 2.0])
    p = drs_accept_prob(logits, max_logit=2.0, gamma=0.0)
    assert np.all(np.diff(p) > 0) and p[-1] > 0.99
    ranks = within_class_rank(np.array([1.0, 5.0, 3.0, 0.0]), np.array([0, 0, 1, 1]))
    assert ranks.tolist() == [0.5, 0.0, 0.0, 0.5]
