"""Hostile input and bad days: sizes checked before work, full disks, mismatched model
files, crafted checkpoints, images of any bit depth, interrupts, telemetry."""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import onnx
import pytest
from PIL import Image

from conftest import run_cli
from gansample import GansampleError, Generator
from gansample import metadata as md

EXE = [sys.executable, "-m", "gansample"]


def _cli(*args: object, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# --- sizes from the user are checked before any work --------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["generate", "-n", "1000000000"], "argument -n: got 1000000000"),
    (["generate", "--seeds", "0-4294967295"], "--seeds: got '0-4294967295'; at most 100000000 seeds"),
    (["generate", "-n", "1000", "--filter", "top:1e-9"], "--filter: got 'top:1e-09'"),
    (["interpolate", "--seeds", "1,2", "--steps", "100000000"], "--steps: got 100000000"),
    (["interpolate", "--seeds", "1,2", "--grid", "100000"], "--grid: got 100000"),
    (["interpolate", "--seeds", "1,2", "--steps", "20000", "--scale", "16"], "--steps"),
    (["interpolate", "--seeds", ",".join(str(i) for i in range(5000))], "--seeds: got"),
    (["generate", "--seeds", "1," * 6000], "--seeds: got"),
])
def test_huge_requests_are_refused_at_once(tiny_model, tmp_path, args, needle) -> None:
    t0 = time.perf_counter()
    out = _cli(*args, "--model", tiny_model,
               *(["--outdir", tmp_path] if args[0] == "generate" else ["--out", tmp_path / "w.gif"]))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert time.perf_counter() - t0 < 30
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "w.gif").exists()


def test_seed_ranges_stay_ranges() -> None:
    from gansample.latents import parse_seeds
    s = parse_seeds("0-4294967295,7")
    assert len(s) == 2**32 + 1 and s[2**32] == 7 and s[-2] == 2**32 - 1 and s[5:8] == [5, 6, 7]
    with pytest.raises(GansampleError, match="at most 256 seeds"):
        parse_seeds("0-100000000", limit=256)


def test_api_sample_refuses_more_than_fits_in_memory(tiny_model) -> None:
    g = Generator(tiny_model, device="cpu")
    with pytest.raises(GansampleError, match=r"^n: got '<1000000000 images>'.*iter_samples"):
        g.sample(n=10**9)
    it = g.iter_samples(seeds="0-4294967295")  # lazy: nothing is built up front
    assert next(it).seeds == list(range(64))


# --- full disks, unwritable and over-long paths ---------------------------------------------------
@contextlib.contextmanager
def _small_disk(tmp_path: Path, kb: int, mode: str) -> Iterator[tuple[Path, str]]:
    """``tmpfs``: a real tiny tmpfs (where this machine lets us mount one, else the
    patched form); ``patched``: a folder whose os.write fails with ENOSPC after ``kb``
    kilobytes (patched in the test process)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = (subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(mnt)], capture_output=True)
         if mode == "tmpfs" else None)
    if r is not None and r.returncode == 0:
        try:
            yield mnt, "tmpfs"
        finally:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        return
    budget = [kb * 1024]
    real = os.write

    def write(fd: int, data) -> int:  # type: ignore[no-untyped-def]
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if target.startswith(str(mnt)):
            if budget[0] <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            data = bytes(data)[: budget[0]]
            budget[0] -= len(data)
        return real(fd, data)
    real_du = shutil.disk_usage

    def disk_usage(path):  # type: ignore[no-untyped-def]
        if str(path).startswith(str(mnt)):
            return SimpleNamespace(total=kb * 1024, used=kb * 1024 - budget[0], free=budget[0])
        return real_du(path)
    os.write = write  # type: ignore[assignment]
    shutil.disk_usage = disk_usage  # type: ignore[assignment]
    try:
        yield mnt, "patched"
    finally:
        os.write = real  # type: ignore[assignment]
        shutil.disk_usage = real_du  # type: ignore[assignment]


def _all_final_files_decode(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            assert not p.name.endswith(".gansample-tmp"), f"temporary file left: {p}"
            if p.suffix == ".png":
                with Image.open(p) as im:
                    im.load()
            elif p.suffix == ".csv":
                list(csv.reader(p.open(encoding="utf-8")))


@pytest.mark.parametrize("mode", ["tmpfs", "patched"])
def test_disk_full_leaves_nothing_broken_under_a_final_name(tiny_model, tmp_path, capsys, mode) -> None:
    with _small_disk(tmp_path, 160, mode) as (disk, kind):
        # A run that cannot fit is refused before it starts ...
        assert run_cli("generate", "-n", "100000", "--model", tiny_model, "--outdir", disk / "big", "-q") == 2
        assert "needs at least" in capsys.readouterr().err
        # ... and one that fills the disk on the way ends cleanly.
        if kind == "tmpfs":
            out = _cli("generate", "-n", "300", "--model", tiny_model, "--outdir", disk / "o", "-q")
            rc, err = out.returncode, out.stderr
        else:
            rc = run_cli("generate", "-n", "300", "--model", tiny_model, "--outdir", disk / "o", "-q")
            err = capsys.readouterr().err
        assert rc == 1, err
        assert "No space left on device" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        _all_final_files_decode(disk)
        assert not (disk / "o" / "manifest.csv").exists()  # the manifest names only complete runs


def test_short_writes_are_continued_and_failures_reported(tmp_path, monkeypatch) -> None:
    from gansample import output
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data)[:7]))  # every write is short
    output.atomic_write(tmp_path / "a.bin", b"0123456789" * 10)
    assert (tmp_path / "a.bin").read_bytes() == b"0123456789" * 10
    monkeypatch.setattr(os, "write", lambda fd, data: 0)  # a write that makes no progress
    with pytest.raises(GansampleError, match="cannot write .*b.bin: No space left on device"):
        output.atomic_write(tmp_path / "b.bin", b"x" * 100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


@pytest.mark.slow  # 25 s of subprocesses; test_hostile keeps the other unwritable-output checks
def test_unwritable_and_overlong_output_paths(tiny_model, tmp_path, tiny_run) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    long = tmp_path / ("x" * 300)
    try:
        for args, flag in ((["generate", "-n", "2", "--model", tiny_model, "--outdir", ro / "o"], "--outdir"),
                           (["generate", "-n", "2", "--model", tiny_model, "--outdir", long], "--outdir"),
                           (["export", tiny_run, "--out", long], "--out"),
                           (["export", tiny_run, "--out", ro / "m"], "--out")):
            out = _cli(*args, timeout=300)
            if os.geteuid() == 0 and ro in Path(args[-1]).parents:
                continue  # root writes anywhere
            assert out.returncode in (1, 2) and "Traceback" not in out.stderr, out.stderr
            assert flag in out.stderr or "cannot write" in out.stderr, out.stderr
    finally:
        ro.chmod(0o700)


# --- model files whose metadata does not match the graph -----------------------------------------
def _tampered(src: Path, dst: Path, file: str = "generator.onnx", **changes: object) -> Path:
    shutil.copytree(src, dst)
    m = onnx.load(str(dst / file))
    info = md.read_onnx(m)
    for k, v in changes.items():
        setattr(info, k, v)
    md.write(m, info)
    onnx.save(m, str(dst / file))
    for other in dst.glob("generator_*.onnx"):
        other.unlink()
    return dst


@pytest.mark.parametrize("changes, needle", [
    ({"z_dim": 17}, "input 'z' has shape"),
    ({"img_resolution": 32}, "probe run returned shape"),
    ({"num_classes": 5, "class_names": ["a", "b", "c", "d", "e"]}, "probe run"),
    ({"num_classes": 0, "class_names": []}, "the graph's inputs are"),
    ({"img_channels": 3}, "probe run returned shape"),
])
def test_metadata_graph_mismatch_is_one_line(tiny_model, tmp_path, changes, needle) -> None:
    bad = _tampered(tiny_model, tmp_path / "bad", **changes)
    out = _cli("generate", "-n", "2", "--model", bad, "--outdir", tmp_path / "o")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "--model:" in out.stderr and "does not match its gansample metadata" in out.stderr and needle in out.stderr


def test_mix_variant_as_model_is_explained(tiny_model, tmp_path) -> None:
    out = _cli("generate", "-n", "2", "--model", tiny_model / "generator_mix.onnx", "--outdir", tmp_path)
    assert out.returncode == 2 and "class-blending variant" in out.stderr and "Traceback" not in out.stderr


def test_discriminator_mismatch(tiny_model, tmp_path) -> None:
    bad = _tampered(tiny_model, tmp_path / "badd", "discriminator.onnx", img_resolution=64)
    img = tmp_path / "a.png"
    Image.new("L", (28, 28), 128).save(img)
    out = _cli("score", img, "--model", bad)
    assert out.returncode == 2 and "does not match its gansample metadata" in out.stderr


# --- checkpoints ------------------------------------------------------------------------------
def _crafted_checkpoint(tiny_run: Path, path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    import torch
    from gansample.training import checkpoint as ckpt
    state = torch.load(ckpt.resolve(str(tiny_run)), weights_only=True)
    edit(state)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s["g_args"].update(z_dim=10**9), "z_dim 1000000000"),
    (lambda s: s["g_args"].update(bogus=1), "unknown Generator argument(s) bogus"),
    (lambda s: s.pop("G_ema"), "lacks G_ema"),
    (lambda s: s["G_ema"].pop(next(iter(s["G_ema"]))), "does not hold a usable gansample G/D"),
    (lambda s: s["d_args"].update(resolution=4096), "resolution 4096"),
])
def test_crafted_checkpoints_are_refused_by_export(tiny_run, tmp_path, edit, needle) -> None:
    p = _crafted_checkpoint(tiny_run, tmp_path / "c.pt", edit)
    out = _cli("export", p, "--out", tmp_path / "m", timeout=300)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not (tmp_path / "m" / "generator.onnx").exists()


def test_crafted_checkpoint_is_refused_by_resume(tiny_run, tmp_path) -> None:
    import torch
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    from gansample.training import checkpoint as ckpt
    last = ckpt.resolve(str(run))
    state = torch.load(last, weights_only=True)
    state["opt_g"] = {"state": {}, "param_groups": []}
    torch.save(state, last)
    out = _cli("train", "--resume", run, "--steps", "8", timeout=300)
    assert out.returncode == 2 and "--resume:" in out.stderr and "Traceback" not in out.stderr, out.stderr


# --- images as a viewer shows them --------------------------------------------------------------
def test_16_bit_png_scores_like_its_8_bit_version(tmp_path) -> None:
    from gansample import Discriminator, datasets
    fm = Path("/usr/share/datasets/fashion-mnist")
    if not fm.is_dir():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    x, _ = datasets.load_standard("fashion-mnist", "test")
    a8 = x[3]
    Image.fromarray(a8).save(tmp_path / "p8.png")
    Image.fromarray(a8.astype(np.uint16) * 257).save(tmp_path / "p16.png")
    with Image.open(tmp_path / "p16.png") as im:
        assert im.mode.startswith("I")  # a real 16-bit file
    d = Discriminator("fashion-mnist", device="cpu")
    res = {Path(r.path).name: r.score for r in d.score_files([str(tmp_path / "p8.png"), str(tmp_path / "p16.png")], 0).rows}
    assert res["p16.png"] == pytest.approx(res["p8.png"], abs=1e-5)


def test_image_bombs_are_refused_from_the_header(tmp_path) -> None:
    from gansample.images import ImageLoadError, open_image
    big = tmp_path / "big.png"
    Image.new("P", (7999, 7999), 0).save(big, optimize=True)
    assert big.stat().st_size < 200_000
    t0 = time.perf_counter()
    with pytest.raises(ImageLoadError, match="too large"):
        open_image(str(big))
    assert time.perf_counter() - t0 < 2


# --- interrupts -------------------------------------------------------------------------------------
def test_interrupt_exits_130_cleanly_and_next_run_cleans_up(tiny_model, tmp_path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        out = tmp_path / sig.name
        p = subprocess.Popen([*EXE, "generate", "-n", "200000", "--model", str(tiny_model), "--outdir", str(out),
                              "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and not any(out.glob("seed*.png")):
            time.sleep(0.1)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err
        assert not [f for f in out.iterdir() if f.name.endswith(".gansample-tmp")]
        assert not (out / "manifest.csv").exists()
        _all_final_files_decode(out)
    # A kill -9 leaves temporary files; the next run in that folder removes them.
    out = tmp_path / "killed"
    p = subprocess.Popen([*EXE, "generate", "-n", "200000", "--model", str(tiny_model), "--outdir", str(out), "-q"])
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("seed*.png"))) < 200:
        time.sleep(0.1)
    p.kill()
    p.wait()
    stale = [f for f in out.iterdir() if f.name.endswith(".gansample-tmp")]
    assert stale, "the killed run left no temporary file (the manifest's at least)"
    assert _cli("generate", "-n", "2", "--model", tiny_model, "--outdir", out, "-q").returncode == 0
    assert not [f for f in out.iterdir() if f.name.endswith(".gansample-tmp")]


def test_skip_existing_rerun_keeps_the_full_grid(tiny_model, tmp_path) -> None:
    out = tmp_path / "o"
    assert run_cli("generate", "-n", "12", "--model", tiny_model, "--outdir", out, "-q") == 0
    full = (out / "grid.png").read_bytes()
    for s in (3, 7):
        (out / f"seed{s:04d}.png").unlink()
    assert run_cli("generate", "-n", "12", "--model", tiny_model, "--outdir", out, "-q", "--skip-existing") == 0
    assert (out / "grid.png").read_bytes() == full
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [int(r["seed"]) for r in rows] == list(range(12))


# --- privacy ----------------------------------------------------------------------------------------
def test_no_telemetry_files_written(tiny_model, tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    env_clean = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run([*EXE, "generate", "-n", "4", "--model", str(tiny_model), "--outdir", str(tmp_path / "o"),
                          "-q"], capture_output=True, text=True, timeout=120, env={**env_clean, **env})
    assert out.returncode == 0, out.stderr
    code = ("import gansample; from gansample import Generator; "
            f"Generator({str(tiny_model)!r}, device='auto').sample(seeds=[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env_clean, **env})
    assert out.returncode == 0, out.stderr
    assert not (home / ".cache" / "Microsoft").exists(), list(home.rglob("*"))


def test_stale_temporaries_of_a_reused_pid_are_removed(tmp_path) -> None:
    """In a container every run may be pid 1: a temporary name left by a killed run with
    our own pid but another process token is stale, ours is not."""
    from gansample import output
    stale = tmp_path / f".manifest.csv.{os.getpid()}-00000000{7}.gansample-tmp"
    stale.write_text("x")
    mine = output._tmp_path(tmp_path / "manifest.csv")
    mine.write_text("y")
    foreign_dead = tmp_path / ".grid.png.999999999-abcdef0112.gansample-tmp"
    foreign_dead.write_text("z")
    output.ensure_outdir(tmp_path)
    assert not stale.exists() and not foreign_dead.exists() and mine.exists()
    assert not output._tmp_path(tmp_path / "manifest.csv").exists()  # a fresh name every time


def test_seeds_compare_by_value_and_lazy_bounds() -> None:
    from gansample.latents import Seeds, parse_seeds
    assert parse_seeds("0-4") == parse_seeds("0-2,3-4") == list(range(5))
    s = Seeds([range(10**9, 2**32)])
    assert (s.min(), s.max()) == (10**9, 2**32 - 1)
    g_limit = Generator.seed_list
    with pytest.raises(GansampleError, match="at most 5 seeds"):
        g_limit(range(100), None, limit=5)
    t0 = time.perf_counter()
    assert len(g_limit(range(2**32), None)) == 2**32  # bounds from the range's ends, not by iterating
    assert time.perf_counter() - t0 < 1


def test_discriminator_checks_labels(tiny_model) -> None:
    from gansample import Discriminator
    d = Discriminator(tiny_model, device="cpu")
    imgs = np.zeros((3, 28, 28, 1), np.uint8)
    with pytest.raises(GansampleError, match=r"^labels: got 7; class indices 0-1"):
        d.logits(imgs, [0, 1, 7])
    with pytest.raises(GansampleError, match=r"^labels: got 'shape \[2\]'"):
        d.logits(imgs, [0, 1])
    assert d.logits(imgs, [0, 1, 1]).shape == (3,)


def test_reexport_removes_variants_it_no_longer_writes(tiny_model, tiny_run, tmp_path) -> None:
    dst = tmp_path / "m"
    shutil.copytree(tiny_model, dst)
    assert (dst / "generator_fp16.onnx").exists()
    assert (dst / "generator_int8.onnx").exists()
    assert run_cli("export", tiny_run, "--out", dst, "--no-fp16", "--no-int8") == 0
    assert not (dst / "generator_fp16.onnx").exists() and (dst / "generator_uint8.onnx").exists()
    assert not (dst / "generator_int8.onnx").exists()
    assert not [p for p in dst.iterdir() if p.name.startswith(".")]
