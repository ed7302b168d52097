"""Bad input found by fuzzing the CLI: each case exits 2 with a message that names the flag
and echoes the value, before work is spent, and leaves no output folder behind."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from gansample import GansampleError

EXE = [sys.executable, "-m", "gansample"]


def _refused(capsys, *argv: object) -> str:
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """An .npy header that declares ``shape`` (the data after it is absent)."""
    text = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def test_empty_values_are_refused_not_taken_as_here_or_default(tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bundled = Path(__file__).resolve().parent.parent / "exported" / "fashion-mnist" / "directions.npz"
    before = bundled.stat().st_mtime_ns
    assert "--out: got ''; expected a non-empty value" in _refused(capsys, "directions", "--out", "", "-q")
    assert bundled.stat().st_mtime_ns == before  # "" once meant the bundled model's own file
    assert "--outdir: got ''" in _refused(capsys, "generate", "-n", 2, "--model", tiny_model, "--outdir", "")
    assert "--out: got ''" in _refused(capsys, "interpolate", "--seeds", "1,2", "--model", tiny_model, "--out", "")
    assert "--model: got '  '" in _refused(capsys, "generate", "-n", 2, "--model", "  ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, needle", [
    (["--filter", "bogus"], "--filter: got 'bogus'"),
    (["--filter", "top:0"], "--filter: got 'top:0'"),
    (["--engine", "ray", "--format", "png"], "--format: got 'png'"),
    (["--gpus-per-worker", "1"], "--gpus-per-worker: got 1.0; it applies to --engine ray only"),
    (["--address", "auto"], "--address: got 'auto'; it applies to --engine ray only"),
    (["--engine", "ray", "--format", "parquet", "--gpus-per-worker", "nan"], "--gpus-per-worker: got nan"),
    (["--engine", "ray", "--format", "parquet", "--gpus-per-worker", "-1"], "--gpus-per-worker: got -1.0"),
    (["--shard-size", "100"], "--shard-size: got 100; it applies to --format webdataset or parquet, not png"),
    (["--format", "npz", "--skip-existing"], "--format: got 'npz'; --skip-existing works on png files and shards"),
])
def test_refused_generate_leaves_no_empty_folders(tiny_model, tmp_path, capsys, args, needle):
    out = tmp_path / "a" / "b" / "c"
    assert needle in _refused(capsys, "generate", "-n", 4, "--model", tiny_model, "--outdir", out, *args)
    assert not (tmp_path / "a").exists()


def test_ray_options_are_checked_before_ray_starts(tiny_model, tmp_path):
    code = ("import sys\nfrom gansample.cli import main\n"
            f"rc = main(['generate', '-n', '4', '--model', {str(tiny_model)!r}, '--outdir', {str(tmp_path / 'o')!r}, "
            "'--engine', 'ray', '--format', 'parquet', '--gpus-per-worker', '-1'])\n"
            "print(rc, 'ray' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr


def test_existing_output_folder_is_kept_when_a_command_fails(tiny_model, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    _refused(capsys, "generate", "-n", 4, "--model", tiny_model, "--outdir", out, "--filter", "bogus")
    assert out.is_dir()  # only folders the failed command created are removed


def test_seeds_out_of_range(tiny_model, tmp_path, capsys, image_folder):
    img = next(p for p in sorted(Path(image_folder).rglob("*.png")))
    err = _refused(capsys, "project", img, "--model", tiny_model, "--seed", -1, "--out", tmp_path / "p")
    assert "--seed: got -1; an integer from 0 to 4294967295" in err
    assert not (tmp_path / "p").exists()
    for seed in ("-1", "99999999999999999999999"):
        err = _refused(capsys, "train", "--data", image_folder, "--steps", 1, "--device", "cpu", "--seed", seed,
                       "--outdir", tmp_path / "runs")
        assert f"--seed: got {seed}" in err
        assert not (tmp_path / "runs").exists()


def test_latent_files_are_sized_from_their_headers(tiny_model, tmp_path, capsys):
    huge = tmp_path / "huge.npy"
    huge.write_bytes(_npy_header((10**11, 16)))
    err = _refused(capsys, "generate", "--latents", huge, "--model", tiny_model, "--class", 0,
                   "--outdir", tmp_path / "o")
    assert f"--latents: got '{huge}'; latent arrays of at most 256 MB decoded" in err
    # A compressed .npz whose member declares more than it can hold: refused before decoding.
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("latents.npy", _npy_header((6_250_000, 16)) + bytes(1024))
    assert "headers declare 381 MB" in _refused(capsys, "interpolate", "--latents", bomb, huge, "--model", tiny_model,
                                                "--class", 0, "--out", tmp_path / "w.gif")
    text = tmp_path / "z.npy"
    text.write_text("not an array")
    assert f"--latents: got '{text}'; an .npz or .npy latent file" in _refused(
        capsys, "generate", "--latents", text, "--model", tiny_model, "--class", 0, "--outdir", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_latent_keyframes_are_counted_per_latent_and_names_kept_apart(tiny_model, tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        np.save(tmp_path / d / "z.npy", rng.standard_normal((3, 16)).astype(np.float32))
    np.save(tmp_path / "one.npy", rng.standard_normal((1, 16)).astype(np.float32))
    # One file of three latents is a three-keyframe walk.
    assert run_cli("interpolate", "--latents", tmp_path / "a" / "z.npy", "--model", tiny_model, "--class", 0,
                   "--steps", 2, "--out", tmp_path / "frames") == 0
    assert len(list((tmp_path / "frames").glob("*.png"))) == 5
    err = _refused(capsys, "interpolate", "--latents", tmp_path / "one.npy", "--model", tiny_model, "--class", 0,
                   "--out", tmp_path / "w.gif")
    assert "--latents: got 1 latent(s) in 1 file(s); a walk needs 2 to" in err
    # Two files of one name in two folders: six images, none overwritten.
    assert run_cli("generate", "--latents", tmp_path / "a" / "z.npy", tmp_path / "b" / "z.npy", "--model", tiny_model,
                   "--class", 0, "--outdir", tmp_path / "g", "-q") == 0
    pngs = sorted(p.name for p in (tmp_path / "g").glob("z*.png"))
    assert len(pngs) == 6 and "z-2-000.png" in pngs


def test_output_files_are_checked_before_the_work(tiny_model, tmp_path, capsys):
    err = _refused(capsys, "directions", "--model", tiny_model, "--out", "/proc/d.npz", "-q")
    assert "--out: got '/proc/d.npz'; the folder cannot be written" in err
    assert "--out: got" in _refused(capsys, "directions", "--model", tiny_model, "--out", tmp_path, "-q")
    err = _refused(capsys, "evaluate", "fashion-mnist", "--n", 10, "--nearest", 4, "--nearest-out", "/proc/x.png")
    assert "--nearest-out: got '/proc/x.png'" in err
    err = _refused(capsys, "evaluate", "fashion-mnist", "--n", 10, "--nearest-out", tmp_path / "x.png")
    assert "--nearest-out" in err and "--nearest K, which was not given" in err
    err = _refused(capsys, "evaluate", "fashion-mnist", "--n", 10, "--data-dir", tmp_path / "none")
    assert f"--data-dir: got '{tmp_path / 'none'}'; an existing folder" in err


def test_errors_about_a_features_file_name_features(tmp_path, capsys):
    bad = tmp_path / "f.onnx"
    bad.write_text("not onnx")
    err = _refused(capsys, "evaluate", "fashion-mnist", "--n", 10, "--features", bad)
    assert err.splitlines()[-1].startswith(f"gansample evaluate: error: --features: {bad} is not a valid ONNX model")


def test_missing_dataset_names_the_evaluate_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("GANSAMPLE_DATA", raising=False)
    from gansample import datasets
    if any(Path(d).is_dir() for d in datasets.KNOWN["mnist"].system_dirs):
        pytest.skip("MNIST is installed here")
    err = _refused(capsys, "evaluate", "fashion-mnist", "--n", 10, "--dataset", "mnist")
    assert "--dataset: dataset 'mnist' not found" in err and "(--download)" not in err


def test_disk_space_message_uses_readable_units(tmp_path, monkeypatch):
    import shutil
    from types import SimpleNamespace

    from gansample.output import check_space
    # A 64 KB disk (what a small tmpfs reports): the message once read "0.00 GB ... 0.00 GB".
    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(total=10**6, used=10**6 - 65_536, free=65_536))
    with pytest.raises(GansampleError) as e:
        check_space(tmp_path, 500, "png", 28 * 28, 64)
    assert "needs at least 226.00 KB and the folder's disk has 65.54 KB free" in str(e.value)


def test_app_options_are_checked_before_gradio_loads(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def app(*args: str) -> subprocess.CompletedProcess:
        code = ("import sys\nfrom gansample.cli import main\n"
                f"rc = main(['app', *{list(args)!r}])\nprint(rc, 'gradio' in sys.modules)\n")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)

    out = app("--host", "bad host name!!")
    assert out.stdout.split() == ["2", "False"] and "--host: got 'bad host name!!'" in out.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = app("--port", str(port))
        assert out.stdout.split() == ["2", "False"] and f"--port: got {port}; 127.0.0.1:{port} cannot be listened on" \
            in out.stderr
    out = app("--port", "0")
    assert out.stdout.split() == ["2", "False"] and "--port" in out.stderr
    help_out = subprocess.run([*EXE, "app", "--help"], capture_output=True, text=True, timeout=60)
    assert help_out.returncode == 0 and "--default" in help_out.stdout
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    out = subprocess.run([*EXE, "app", "--default", "nope", "--port", str(free)], capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 2 and "--default: got 'nope'; the demo's models are: emoji, fashion-mnist" in out.stderr
    assert "Traceback" not in out.stderr


def test_train_settings_are_checked_before_torch_loads(image_folder):
    code = ("import sys\nfrom gansample.cli import main\n"
            f"rcs = [main(['train', '--data', {str(image_folder)!r}, *args]) for args in "
            "(['--steps', '0'], ['--set', 'batch_size=0'], ['--set', 'augment=bogus'], ['--seed', '-1'])]\n"
            "print(*rcs, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "2", "2", "2", "False"], out.stdout + out.stderr
    assert "--steps: got 0" in out.stderr and "--set augment: got 'bogus'" in out.stderr


def test_a_data_folder_named_like_a_model_does_not_hide_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fashion-mnist").mkdir()  # e.g. the user's copy of the data set
    assert run_cli("models", "--format", "json") == 0
    import json
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fashion-mnist"]["resolution"] == 28 and "error" not in rows["fashion-mnist"]
    assert run_cli("generate", "-n", 2, "-q") == 0
    assert sorted(p.name for p in (tmp_path / "out" / "fashion-mnist").glob("seed*.png")) == ["seed0000.png",
                                                                                             "seed0001.png"]


def test_latent_npz_headers_read_only_what_is_loaded(tiny_model, tmp_path, capsys):
    z = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    extra = tmp_path / "extra.npz"
    with zipfile.ZipFile(extra, "w") as f:  # a note beside the arrays: numpy loads it, so do we
        f.writestr("README.txt", "projected latents")
        buf = __import__("io").BytesIO()
        np.save(buf, z)
        f.writestr("latents.npy", buf.getvalue())
    assert run_cli("generate", "--latents", extra, "--model", tiny_model, "--class", 0, "--outdir", tmp_path / "g",
                   "-q") == 0
    assert len(list((tmp_path / "g").glob("extra-*.png"))) == 3
    # Sixteen small members first, then a latents.npy that declares 300 MB: still sized.
    bomb = tmp_path / "bomb17.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as f:
        for i in range(16):
            f.writestr(f"a{i}.npy", _npy_header((1,)) + bytes(4))
        f.writestr("latents.npy", _npy_header((5_000_000, 16)) + bytes(1024))
    assert "headers declare 305 MB" in _refused(capsys, "generate", "--latents", bomb, "--model", tiny_model,
                                                "--class", 0, "--outdir", tmp_path / "o")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(extra.read_bytes()[:40])  # a zip cut short
    assert f"--latents: got '{broken}'; an .npz or .npy latent file" in _refused(
        capsys, "generate", "--latents", broken, "--model", tiny_model, "--class", 0, "--outdir", tmp_path / "o")


def test_parents_made_before_a_failing_folder_are_removed(tiny_model, tmp_path, capsys):
    err = _refused(capsys, "generate", "-n", 2, "--model", tiny_model, "--outdir", tmp_path / "newp" / ("x" * 300))
    assert "--outdir: got" in err and "cannot be written" in err
    assert not (tmp_path / "newp").exists()


def test_app_blames_the_host_for_an_address_not_of_this_machine():
    from gansample.commands import _check_listen
    with pytest.raises(GansampleError, match=r"--host: got '192\.0\.2\.1'; no address of it can be listened on"):
        _check_listen("192.0.2.1", 7861)  # TEST-NET-1: never an address of this machine
    for host in ("0.0.0.0", "localhost"):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        _check_listen(host, port)
