"""Latent interpolation: exact frame counts, keyframes equal generated images, files decode."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from gansample import Generator
from gansample.interpolation import frame_times, interpolate
from gansample.latents import slerp, z_from_seed


def test_frame_count_and_loop_structure():
    assert len(frame_times(3, 30, loop=False)) == 2 * 30 + 1
    assert len(frame_times(3, 30, loop=True)) == 3 * 30
    loop = frame_times(3, 4, loop=True)
    assert loop[-4:][0][:2] == (2, 0)  # the last transition leads back to the first keyframe


def test_slerp_keeps_norm_between_keyframes():
    a, b = z_from_seed(1, 512), z_from_seed(2, 512)
    path = slerp(a, b, np.linspace(0, 1, 11))
    norms = np.linalg.norm(path, axis=1)
    lo, hi = sorted([np.linalg.norm(a), np.linalg.norm(b)])
    assert np.all(norms >= lo - 1e-3) and np.all(norms <= hi + 1e-3)
    np.testing.assert_allclose(path[0], a, atol=1e-5)
    np.testing.assert_allclose(path[-1], b, atol=1e-5)


def test_first_frame_equals_generate_and_loop_returns(tiny_model, tmp_path):
    assert run_cli("generate", "--seeds", "3", "--model", tiny_model, "--outdir", tmp_path / "g", "-q") == 0
    generated = np.asarray(Image.open(tmp_path / "g" / "seed0003.png"))
    assert run_cli("interpolate", "--seeds", "3,17,42", "--steps", "4", "--model", tiny_model,
                   "--out", tmp_path / "frames", "-q") == 0
    frames = sorted((tmp_path / "frames").iterdir())
    assert len(frames) == 2 * 4 + 1
    np.testing.assert_array_equal(np.asarray(Image.open(frames[0])), generated)
    g = Generator(tiny_model, device="cpu")
    res = interpolate(g, "3,4", steps=5, loop=True, cls=0)
    assert len(res) == 10
    # Step 5 of 5 would be keyframe 0 again: frame 9 is one step away from it.
    np.testing.assert_allclose(res.latents[0, -1], slerp(z_from_seed(4, 16), z_from_seed(3, 16), np.array([0.8]))[0],
                               atol=1e-5)
    # 3 and 4 have different classes (seed % 2): the walk blends class weights too.
    mixed = interpolate(g, "3,4", steps=4)
    np.testing.assert_allclose(mixed.class_weights[0, :, 0], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(mixed.frames[0], g.sample(seeds=[3]).images[0])
    np.testing.assert_array_equal(mixed.frames[-1], g.sample(seeds=[4]).images[0])


def test_gif_decodes_with_frame_count_and_duration(tiny_model, tmp_path):
    out = tmp_path / "walk.gif"
    assert run_cli("interpolate", "--seeds", "1,2,3", "--steps", "6", "--fps", "20", "--loop",
                   "--model", tiny_model, "--out", out, "--grid", "2", "-q") == 0
    gif = Image.open(out)
    assert gif.n_frames == 18
    assert gif.info["duration"] == 50
    assert gif.size[0] > gif.size[1]  # two walks side by side


def test_mp4_decodes(tiny_model, tmp_path):
    av = pytest.importorskip("av")
    out = tmp_path / "walk.mp4"
    assert run_cli("interpolate", "--seeds", "1,2", "--steps", "12", "--model", tiny_model, "--out", out, "-q") == 0
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 13 and frames[0].shape == (28, 28, 3)


@pytest.mark.parametrize("args, needle", [
    (["--seeds", "5"], "--seeds: got '5'; at least two"),
    (["--seeds", "1,2", "--steps", "1"], "--steps: got 1"),
    (["--seeds", "1,2", "--out", "walk.avi"], "--out: got 'walk.avi'"),
    (["--seeds", "1,2", "--out", "/proc/nope/walk.gif"], "--out: got '/proc/nope'"),
])
def test_interpolate_bad_input(tiny_model, tmp_path, capsys, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    assert run_cli("interpolate", "--model", tiny_model, *args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []
