"""Past one machine: sharded datasets read back by standard loaders, resumable after a
kill, and the same shards sampled on a real local Ray instance."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXE = [sys.executable, "-m", "gansample"]


def _cli(*args: object, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("npz")
    assert _cli("generate", "--seeds", "0-1999", "--format", "npz", "--outdir", out, "-q").returncode == 0
    with np.load(out / "images.npz") as z:
        return {k: z[k] for k in z.files}


def _decode(png: bytes) -> np.ndarray:
    a = np.asarray(Image.open(io.BytesIO(png)))
    return a[:, :, None] if a.ndim == 2 else a


def _check_parquet(folder: Path, ref: dict[str, np.ndarray]) -> None:
    import pyarrow.parquet as pq
    index = json.loads((folder / "index.json").read_text())
    assert index["count"] == 2000 and [s["count"] for s in index["shards"]] == [700, 700, 600]
    table = pq.read_table([folder / s["file"] for s in index["shards"]])
    assert table.column("seed").to_pylist() == list(range(2000))
    assert table.column("label").to_pylist() == ref["labels"].tolist()
    imgs = np.stack([_decode(d["bytes"]) for d in table.column("image").to_pylist()])
    assert np.array_equal(imgs, ref["images"])
    names = table.column("class_name").to_pylist()
    assert names[:3] == ["T-shirt/top", "Trouser", "Pullover"]
    import datasets
    ds = datasets.load_dataset("parquet", data_files=[str(folder / s["file"]) for s in index["shards"]],
                               split="train", cache_dir=str(folder.parent / "hf-cache"))
    first = ds[5]
    assert first["seed"] == 5 and np.array_equal(np.asarray(first["image"]).reshape(ref["images"][5].shape),
                                                 ref["images"][5])


def _check_webdataset(folder: Path, ref: dict[str, np.ndarray]) -> None:
    import webdataset as wds
    index = json.loads((folder / "index.json").read_text())
    urls = [str(folder / s["file"]) for s in index["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [json.loads(s["json"])["seed"] for s in samples] == list(range(2000))
    assert [int(s["cls"]) for s in samples] == ref["labels"].tolist()
    assert np.array_equal(np.stack([_decode(s["png"]) for s in samples]), ref["images"])


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_local_shards_are_read_by_standard_loaders(reference, tmp_path, fmt) -> None:
    out = tmp_path / fmt
    r = _cli("generate", "-n", "2000", "--format", fmt, "--shard-size", "700", "--outdir", out, "-q")
    assert r.returncode == 0, r.stderr
    (_check_parquet if fmt == "parquet" else _check_webdataset)(out, reference)
    index = json.loads((out / "index.json").read_text())
    assert index["model"]["name"] == "fashion-mnist" and len(index["model"]["sha256"]) == 64
    assert index["command"][:2] == ["gansample", "generate"]


@pytest.mark.slow  # three 20,000-image sharded runs, one of them killed
def test_killed_run_resumes_to_the_same_dataset(tmp_path) -> None:
    full = tmp_path / "full"
    assert _cli("generate", "-n", "20000", "--format", "webdataset", "--shard-size", "2000", "--outdir", full,
                "-q").returncode == 0
    part = tmp_path / "part"
    p = subprocess.Popen([*EXE, "generate", "-n", "20000", "--format", "webdataset", "--shard-size", "2000",
                          "--outdir", str(part), "-q"])
    deadline = time.time() + 120
    while time.time() < deadline and len(list(part.glob("shard-*.tar"))) < 2:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done = sorted(part.glob("shard-*.tar"))
    assert 2 <= len(done) < 10, done
    import tarfile
    for f in done:  # only complete shards under final names
        with tarfile.open(f) as t:
            assert len(t.getnames()) == 3 * 2000
    assert _cli("generate", "-n", "20000", "--format", "webdataset", "--shard-size", "2000", "--outdir", part,
                "-q", "--skip-existing").returncode == 0
    assert not [f for f in part.iterdir() if f.name.endswith(".gansample-tmp")]
    for f in sorted(full.glob("shard-*.tar")):
        assert (part / f.name).read_bytes() == f.read_bytes(), f.name


@pytest.fixture(scope="module")
def ray_available() -> None:
    pytest.importorskip("ray")


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_ray_engine_matches_local(ray_available, reference, tmp_path, fmt) -> None:
    out = tmp_path / f"ray-{fmt}"
    r = _cli("generate", "-n", "2000", "--format", fmt, "--shard-size", "700", "--engine", "ray", "--workers", "1",
             "--outdir", out, "-q")
    assert r.returncode == 0, r.stderr
    (_check_parquet if fmt == "parquet" else _check_webdataset)(out, reference)


def test_ray_engine_bad_input(ray_available, tmp_path) -> None:
    cases = [
        (["--engine", "ray", "--format", "png"], "--format: got 'png'; the ray engine writes"),
        (["--engine", "ray", "--format", "parquet", "--address", "127.0.0.1:1"], "--address: got '127.0.0.1:1'"),
        (["--engine", "ray", "--format", "parquet", "--workers", "0"], "argument --workers: got 0"),
        (["--engine", "ray", "--format", "parquet", "--gpus-per-worker", "1"], "--gpus-per-worker: got 1.0"),
    ]
    for args, needle in cases:
        t0 = time.time()
        r = _cli("generate", "-n", "10", "--outdir", tmp_path / "o", "-q", *args, timeout=180)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert time.time() - t0 < 120
    # Without the extra: an install hint, not a traceback.
    fake = tmp_path / "noray"
    fake.mkdir()
    (fake / "ray.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    r = _cli("generate", "-n", "10", "--outdir", tmp_path / "o2", "-q", "--engine", "ray", "--format", "parquet",
             env={"PYTHONPATH": str(fake)})
    assert r.returncode == 2 and "pip install 'gansample[ray]'" in r.stderr, r.stderr


def test_torchrun_two_processes_train_in_step(image_folder, tmp_path) -> None:
    """torchrun --nproc_per_node=2 (gloo on the CPU): the ranks end with equal parameters,
    rank 0 alone writes one run folder, and its checkpoint resumes in one process and exports."""
    import torch
    runs = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(Path(__file__).parent / "ddp_worker.py"), str(image_folder), str(runs)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [torch.load(runs / f"rank{i}.pt", weights_only=True) for i in (0, 1)]
    for net in ("G", "D", "G_ema"):
        params = [k for k in ranks[0][net] if "running_" not in k and "num_batches" not in k]
        assert params and all(torch.equal(ranks[0][net][k], ranks[1][net][k]) for k in params), net
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "checkpoint-00000020.pt").exists()
    from conftest import run_cli
    assert run_cli("train", "--resume", folders[0], "--steps", "22", "-q") == 0
    assert (folders[0] / "checkpoint-00000022.pt").exists()
    assert run_cli("export", folders[0], "--out", tmp_path / "m", "--no-fp16", "--no-int8") == 0
    assert (tmp_path / "m" / "generator.onnx").exists()


def test_train_nproc_beyond_the_machine_is_refused(image_folder, tmp_path, capsys) -> None:
    from conftest import run_cli
    assert run_cli("train", "--data", image_folder, "--nproc", "64", "--outdir", tmp_path, "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert "--nproc: got 64; at most" in err and "CPU cores" in err


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_shard_output_imports_no_torch(tmp_path, fmt) -> None:
    """The runtime never imports torch: not even to write shards (the webdataset package
    would: tar shards are written with the standard library)."""
    code = ("import sys; from gansample.cli import main; "
            f"rc = main(['generate', '-n', '8', '--format', '{fmt}', '--outdir', {str(tmp_path)!r}, '-q']); "
            "print(rc, sorted(m for m in ('torch', 'gradio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr
