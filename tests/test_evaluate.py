"""Evaluation metrics on small real data (Fashion-MNIST test images, bundled classifier)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import FASHION_DIR, run_cli
from gansample import datasets
from gansample.metrics import FeatureExtractor, compare, features_path, frechet_distance

pytestmark = pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")


@pytest.fixture(scope="module")
def fx():
    return FeatureExtractor(features_path("fashion-mnist"), device="cpu")


@pytest.fixture(scope="module")
def test_split():
    return datasets.load_standard("fashion-mnist", "test")


def test_frechet_distance_matches_closed_form():
    rng = np.random.RandomState(0)
    a = rng.normal(0, 1, (4000, 3))
    b = rng.normal(0, 2, (4000, 3)) + np.array([1.0, 0, 0])
    # Isotropic Gaussians: ||dmu||^2 + d * (s1 - s2)^2 = 1 + 3 * (1 - 2)^2 = 4.
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.08)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_identical_sets_score_near_zero_and_distortion_scores_worse(fx, test_split):
    x, _ = test_split
    imgs = x[:600, :, :, None]
    f = fx(imgs)[0]
    same = compare(f, f)
    assert same.frechet_distance < 1e-6
    assert same.precision == 1.0 and same.recall == 1.0 and same.coverage == 1.0
    blurred = np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(1.5))) for im in x[600:1200]])
    other_real = compare(f, fx(x[600:1200, :, :, None])[0])
    distorted = compare(f, fx(blurred[..., None])[0])
    assert distorted.frechet_distance > 5 * other_real.frechet_distance
    assert distorted.precision < other_real.precision and distorted.recall < other_real.recall


def test_dropping_classes_lowers_recall_and_coverage(fx, test_split):
    x, y = test_split
    real = fx(x[:1000, :, :, None])[0]
    full = x[1000:1600]
    half = x[1000:][y[1000:] < 5][:600]
    r_full, r_half = compare(real, fx(full[..., None])[0]), compare(real, fx(half[..., None])[0])
    assert r_half.recall < r_full.recall - 0.2
    assert r_half.coverage < r_full.coverage - 0.2


def test_classifier_recognises_real_classes(fx, test_split):
    x, y = test_split
    _, logits = fx(x[:500, :, :, None])
    assert (logits.argmax(1) == y[:500]).mean() > 0.85


def test_evaluate_command_on_bundled_model(capsys):
    assert run_cli("evaluate", "--n", "300", "--format", "json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["model"] == "fashion-mnist" and rep["n_fake"] == 300 and rep["n_real"] == 10000
    assert 0 <= rep["precision"] <= 1 and rep["frechet_distance"] > 0
    assert sum(rep["recognised_histogram"]) == 300 and rep["class_accuracy"] > 0.5


def test_evaluate_bad_input(capsys, tiny_model):
    assert run_cli("evaluate", "--n", "5") == 2
    assert "--n: got 5" in capsys.readouterr().err
    assert run_cli("evaluate", tiny_model, "--n", "20") == 2  # trained on a folder: no real test split
    assert "--dataset: got 'shapes'" in capsys.readouterr().err
