"""The trainer: real training on tiny data, checkpoints, resume, bad input."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FASHION_DIR, TINY, run_cli, serve_folder, tiny_config
from gansample.errors import GansampleError


def losses(run: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss_d"], r["loss_g"]) for r in rows if "loss_d" in r]


def test_tiny_run_writes_checkpoint_grid_and_metrics(tiny_run):
    names = sorted(p.name for p in tiny_run.iterdir())
    assert "checkpoint-00000004.pt" in names
    assert "samples-00000004.png" in names and "config.json" in names
    grid = Image.open(tiny_run / "samples-00000004.png")
    assert grid.size[0] > 28 * 8  # 8 columns of 28 px plus padding
    rows = losses(tiny_run)
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(r[1]) and np.isfinite(r[2]) for r in rows)
    assert tiny_run.name.startswith("00000-shapes-28px-cond")


def test_resume_continues_and_reproduces_losses(image_folder, tmp_path):
    from gansample.training.train import train
    straight = train(tiny_config(image_folder, 4, conditional=True), tmp_path / "a", progress=False)
    half = train(tiny_config(image_folder, 2, conditional=True), tmp_path / "b", progress=False)
    resumed = train(tiny_config(image_folder, 2), resume=str(half), steps=4, progress=False)
    assert resumed == half
    assert (half / "checkpoint-00000004.pt").exists()
    a, b = losses(straight), losses(resumed)
    assert [r[0] for r in b] == [1, 2, 3, 4]
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-7)


def test_discriminator_finetune_after_resume(image_folder, tmp_path):
    from gansample.training import checkpoint as ckpt
    from gansample.training.train import negatives, train
    run = train(tiny_config(image_folder, 2, conditional=True), tmp_path, progress=False)
    before = ckpt.load(str(run))["D"]
    cfg = tiny_config(image_folder, 2)
    cfg.d_finetune_steps = 3
    train(cfg, resume=str(run), progress=False)
    state = ckpt.load(str(run))
    assert (state["step"], state["d_step"]) == (2, 3) and state["path"].endswith("checkpoint-00000005.pt")
    # D's weights move; its BatchNorm statistics stay those of the GAN training.
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], state["D"][k]) for k in stats)
    assert not all(torch.equal(before[k], state["D"][k]) for k in before if k.endswith("weight"))
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["d_step"] for r in rows if "d_step" in r] == [1, 2, 3]
    assert all(np.isfinite(r["d_neg"]) for r in rows if "d_step" in r)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    neg = negatives(x, ["blank", "noise", "blur", "jigsaw"])
    assert neg.shape == x.shape and not torch.equal(neg, x)


def test_pickle_with_code_is_refused(tmp_path):
    from gansample.training import checkpoint as ckpt

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "gansample-checkpoint", "payload": Evil()}, path)
    with pytest.raises(GansampleError, match="not a safe gansample checkpoint"):
        ckpt.load(str(path))
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint_gives_clear_error(tiny_run, tmp_path):
    from gansample.training import checkpoint as ckpt
    data = (tiny_run / "checkpoint-00000004.pt").read_bytes()
    bad = tmp_path / "checkpoint-00000004.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(GansampleError, match="corrupt or truncated"):
        ckpt.load(str(bad))


def test_checkpoint_save_is_atomic(tiny_run, tmp_path, monkeypatch):
    """A crash in the middle of torch.save leaves no file under the checkpoint's name."""
    from gansample.training import checkpoint as ckpt

    def crash(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    target = tmp_path / "checkpoint-00000009.pt"
    with pytest.raises(KeyboardInterrupt):
        ckpt.save({"step": 9}, target)
    assert list(tmp_path.iterdir()) == []


def test_cli_train_and_grayscale_rgb_detection(tmp_path, capsys):
    from conftest import make_image_folder
    rgb = make_image_folder(tmp_path / "rgb", n_per_class=4, rgb=True)
    assert run_cli("train", "--data", rgb, "--steps", 2, "--resolution", 32, "--batch-size", 4,
                   "--outdir", tmp_path / "runs", "-q", *TINY) == 0
    run = next((tmp_path / "runs").iterdir())
    state = torch.load(run / "checkpoint-00000002.pt", weights_only=True)
    assert state["g_args"]["channels"] == 3 and state["g_args"]["resolution"] == 32
    assert state["config"]["steps"] == 2
    assert "run folder:" in capsys.readouterr().out


def test_folder_skips_broken_images(tmp_path):
    from gansample.training.data import load_dataset
    from conftest import make_image_folder
    root = make_image_folder(tmp_path / "d", n_per_class=3)
    (root / "circles" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    good = (root / "squares" / "000.png").read_bytes()
    (root / "squares" / "truncated.png").write_bytes(good[: len(good) // 2])
    data = load_dataset(str(root), 28, None, conditional=True)
    assert data.skipped == 2 and len(data.images) == 6
    assert data.class_names == ["circles", "squares"] and sorted(set(data.labels.tolist())) == [0, 1]


def _folder_with(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir()
    (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("make, args, needle", [
    (lambda p: p / "missing", [], "--data"),
    (lambda p: (p / "empty").mkdir() or p / "empty", [], "no image files"),
    (lambda p: _folder_with(p / "txt", "a.png", b"hello"), [], "could be decoded"),
    (lambda p: "imagenet", [], "fashion-mnist, mnist"),
    (lambda p: "fashion-mnist", ["--resolution", "48"], "--resolution: got 48"),
    (lambda p: "fashion-mnist", ["--steps", "0"], "--steps: got 0"),
    (lambda p: "fashion-mnist", ["--set", "lr=1"], "unknown key 'lr'; valid keys:"),
])
def test_train_bad_input(tmp_path, capsys, make, args, needle):
    data = make(tmp_path)
    code = run_cli("train", "--data", data, "--outdir", tmp_path / "runs", "-q", *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_refuses_a_config_setting_it_does_not_know(tiny_run, tmp_path, capsys):
    """A checkpoint from a newer or patched trainer: name the unknown setting, exit 2, and
    do not train on without it."""
    state = torch.load(tiny_run / "checkpoint-00000004.pt", map_location="cpu", weights_only=True)
    state["config"]["future_weight"] = 1.0
    (tmp_path / "run").mkdir()
    torch.save(state, tmp_path / "run" / "checkpoint-00000004.pt")
    assert run_cli("train", "--resume", tmp_path / "run", "--steps", "6", "-q") == 2
    err = capsys.readouterr().err
    assert "settings this gansample does not know: future_weight" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint-00000004.pt"]


def test_resume_pointing_at_nothing(tmp_path, capsys):
    assert run_cli("train", "--resume", tmp_path / "nothing", "-q") == 2
    assert "--resume: got" in capsys.readouterr().err


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_found_offline():
    from gansample import datasets
    x, y = datasets.load_standard("fashion-mnist", "test")
    assert x.shape == (10000, 28, 28) and y.shape == (10000,) and set(y.tolist()) == set(range(10))


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_download_verifies_checksums_against_local_server(tmp_path):
    """The download path, served from a local HTTP server (never the internet)."""
    from gansample import datasets
    served = tmp_path / "served"
    served.mkdir()
    for f in FASHION_DIR.iterdir():
        (served / f.name).write_bytes(f.read_bytes())
    with serve_folder(served) as root:
        url = root + "/"
        dest = datasets.download("fashion-mnist", tmp_path / "cache", base_url=url)
        x, y = datasets.load_standard("fashion-mnist", "test", data_dir=str(dest))
        assert x.shape == (10000, 28, 28)
        # A tampered file fails verification and leaves nothing behind.
        with gzip.open(served / "t10k-labels-idx1-ubyte.gz", "wb") as f:
            f.write(b"\0\0\x08\x01\0\0\0\x01\x07")
        with pytest.raises(GansampleError, match="checksum mismatch"):
            datasets.download("fashion-mnist", tmp_path / "cache2", base_url=url)
        assert not (tmp_path / "cache2" / "t10k-labels-idx1-ubyte.gz").exists()
        assert not [p for p in (tmp_path / "cache2").iterdir() if p.name.startswith(".download")]


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")
@pytest.mark.slow  # 16 s; test_colour evaluates a run periodically in the default run
def test_periodic_evaluation_keeps_best_checkpoint(tmp_path):
    from gansample.training.config import TrainConfig
    from gansample.training.train import train
    cfg = TrainConfig(data="fashion-mnist", conditional=True, steps=4, batch_size=8, z_dim=16, g_width=8,
                      d_width=8, sample_every=4, ckpt_every=4, log_every=2, threads=1, eval_every=2, eval_n=60,
                      tensorboard=True)
    run = train(cfg, tmp_path, progress=False)
    evals = [json.loads(l)["eval"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert len(evals) == 2 and all(e["n_fake"] == 60 and e["frechet_distance"] > 0 for e in evals)
    best = torch.load(run / "checkpoint-best.pt", weights_only=True)["best"]
    assert best["frechet_distance"] == min(e["frechet_distance"] for e in evals)
    # Training you can watch: metrics.png after the evaluations, and TensorBoard events
    # that tensorboard's own reader parses (losses, learning rate, img/s, metrics, grids).
    from PIL import Image
    plot = Image.open(run / "metrics.png")
    assert plot.size[0] > plot.size[1] > 100
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss_d", "train/loss_g", "train/lr_g", "train/img_per_s", "eval/frechet_distance",
            "eval/recall"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("eval/frechet_distance")] == [2, 4]
    assert [e.value for e in acc.Scalars("eval/frechet_distance")] == pytest.approx(
        [e["frechet_distance"] for e in evals], rel=1e-5)
    assert "samples" in tags["images"] and acc.Images("samples")[-1].step == 4


def test_ema_generator_is_saved_with_its_own_batchnorm_statistics(tiny_run):
    """G_ema's BatchNorm running statistics must describe G_ema's own activations (standing
    statistics), not those of the trained G that the EMA copies buffers from each step."""
    from gansample.training import checkpoint as ckpt
    from gansample.training.models import Generator
    state = ckpt.load(str(tiny_run))
    G = Generator(**state["g_args"])
    G.load_state_dict(state["G_ema"])
    G.eval()
    norms = [m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    seen: dict[torch.nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda m, inp, out: seen.__setitem__(m, inp[0])) for m in norms]
    g = torch.Generator().manual_seed(99)  # other latents than the ones the stats came from
    z = torch.randn(20_000, G.z_dim, generator=g)
    y = torch.randint(0, G.num_classes, (20_000,), generator=g)
    with torch.no_grad():
        G(z, y)
    for h in hooks:
        h.remove()
    g_stats = {k: v for k, v in state["G"].items() if k.endswith("running_mean")}
    for (name, m), g_mean in zip(((n, m) for n, m in G.named_modules() if m in seen), g_stats.values()):
        x = seen[m]
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))
        std = var.sqrt().clamp_min(1e-3)
        assert ((m.running_mean - mean).abs() / std).max() < 0.05, name
        assert ((m.running_var - var).abs() / var.clamp_min(1e-6)).max() < 0.1, name
        # The trained G's statistics are not what was saved with the EMA weights.
        assert not torch.equal(m.running_mean, g_mean), name


def test_resume_takes_a_schedule_setting_even_when_it_equals_the_default(image_folder, tmp_path):
    """`--set log_every=10` on resume must replace the run's saved log_every=1, although
    10 is also the config default."""
    from gansample.training.train import train
    run = train(tiny_config(image_folder, 2), tmp_path, progress=False)
    assert run_cli("train", "--resume", run, "--steps", "4", "--set", "log_every=10", "-q") == 0
    # Logged at every step before the resume; afterwards only at the last step.
    assert [r[0] for r in losses(run)] == [1, 2, 4]
