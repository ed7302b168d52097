"""The torch-free runtime and `gansample generate`: real sessions on real tiny models."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from conftest import run_cli
from gansample import Generator
from gansample.errors import GansampleError
from gansample.latents import parse_seeds, z_from_seed
from gansample.session import cuda_status


@pytest.mark.parametrize("text, seeds", [
    ("0-3", [0, 1, 2, 3]), ("1,5,9", [1, 5, 9]), ("0-2,100", [0, 1, 2, 100]), (" 7 ", [7]),
    ("3-3", [3]),
])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "5-2", "1,,2", "-3", "1-2-3", "0x10"])
def test_parse_seeds_rejects(text):
    with pytest.raises(GansampleError, match="seeds: got"):
        parse_seeds(text)


def test_seed_rule_is_stylegans():
    np.testing.assert_array_equal(z_from_seed(42, 5), np.random.RandomState(42).randn(5).astype(np.float32))


def test_latents_for_seeds_equals_a_fresh_randomstate_per_seed():
    from gansample.latents import latents_for_seeds
    seeds = [0, 1, 5, 123456, 2**31, 2**32 - 1, 7]
    z = latents_for_seeds(seeds, 32)
    for row, s in zip(z, seeds):
        assert np.array_equal(row, np.random.RandomState(s).randn(32).astype(np.float32))


@pytest.mark.parametrize("variant", ["uint8", "fp32", "int8"])
def test_same_seed_same_bytes_at_any_batch_size(tiny_model, variant):
    ref = None
    for bs in (1, 5, 64):
        out = Generator(tiny_model, device="cpu", variant=variant, batch_size=bs).sample(seeds="0-69")
        assert out.images.shape == (70, 28, 28, 1) and out.images.dtype == np.uint8
        ref = out.images if ref is None else ref
        np.testing.assert_array_equal(out.images, ref)
    # A seed's image does not depend on which other seeds are in the request.
    alone = Generator(tiny_model, device="cpu", variant=variant).sample(seeds=[42]).images[0]
    np.testing.assert_array_equal(alone, ref[42])


def test_variants_agree_and_result_object(tiny_model):
    u8 = Generator(tiny_model, device="cpu", variant="uint8")
    f32 = Generator(tiny_model, device="cpu", variant="fp32")
    assert u8.session.path.name == "generator_uint8.onnx"
    # auto picks uint8 on the CPU: the tiny model's int8 variant could not be gated (no
    # features model for its dataset), so it is never chosen automatically.
    auto = Generator(tiny_model, device="cpu")
    assert auto.session.path.name == "generator_uint8.onnx" and "quality gate" in auto.variant_reason
    a, b = u8.sample(n=16, psi=0.7), f32.sample(n=16, psi=0.7)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.seeds == list(range(16)) and a.labels.tolist() == [s % 2 for s in range(16)]
    np.testing.assert_allclose(a.latents[3], 0.7 * z_from_seed(3, 16), rtol=1e-6)
    c = u8.sample(n=4, cls="squares")
    assert c.labels.tolist() == [1, 1, 1, 1]
    d = u8.sample(latents=a.latents[:2] / 0.7, labels=[0, 1], psi=0.7)
    np.testing.assert_array_equal(d.images, a.images[:2])
    batches = list(u8.iter_samples(n=150, chunk=64))
    assert [len(b) for b in batches] == [64, 64, 22]
    # Iterating gives the same images as one call (psi 1 here, 0.7 above).
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches])[:16], u8.sample(n=16).images)


def test_cli_generate_writes_files_and_manifest(tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("generate", "-n", 12, "--model", tiny_model, "--outdir", out, "--batch-size", 5) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["grid.png", "manifest.csv"] + [f"seed{i:04d}.png" for i in range(12)]
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert [r["seed"] for r in rows] == [str(i) for i in range(12)]
    assert rows[3] == {"seed": "3", "class": "1", "class_name": "squares", "psi": "1.0", "file": "seed0003.png"}
    api = Generator(tiny_model, device="cpu").sample(seeds=[3]).images[0]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "seed0003.png"))[:, :, None], api)
    assert str(out) in capsys.readouterr().out
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_generate_seeds_class_trunc_skip_existing_and_npz(tiny_model, tmp_path):
    out = tmp_path / "o"
    assert run_cli("generate", "--seeds", "5,7", "--class", "circles", "--trunc", "0.5",
                   "--model", tiny_model, "--outdir", out) == 0
    before = (out / "seed0005.png").stat().st_mtime_ns
    assert run_cli("generate", "--seeds", "5-8", "--class", "0", "--trunc", "0.5", "--model", tiny_model,
                   "--outdir", out, "--skip-existing") == 0
    assert (out / "seed0005.png").stat().st_mtime_ns == before
    assert (out / "seed0008.png").exists()
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert [r["seed"] for r in rows] == ["5", "6", "7", "8"] and {r["class"] for r in rows} == {"0"}
    assert run_cli("generate", "-n", 9, "--format", "npz", "--model", tiny_model, "--outdir", tmp_path / "n") == 0
    z = np.load(tmp_path / "n" / "images.npz")
    assert z["images"].shape == (9, 28, 28, 1) and z["seeds"].tolist() == list(range(9))
    assert run_cli("generate", "-n", 9, "--format", "grid", "--model", tiny_model, "--outdir", tmp_path / "g") == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["grid.png", "manifest.csv"]


def test_runtime_never_imports_torch_or_gradio(tiny_model, tmp_path):
    code = (
        "import sys\n"
        "import gansample\n"
        "from gansample.cli import main\n"
        f"rc = main(['generate', '-n', '3', '--model', {str(tiny_model)!r}, '--outdir', {str(tmp_path)!r}, '-q'])\n"
        "heavy = [m for m in ('torch', 'gradio', 'onnx') if m in sys.modules]\n"
        "print(rc, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "0 []", out.stdout + out.stderr


def test_models_lists_bundled_extra_and_unreadable(tiny_model, tmp_path, monkeypatch, capsys):
    """`gansample models` names what --model finds: both bundled models, a folder from
    $GANSAMPLE_MODELS with its metadata, and a broken folder with the reason (not a crash)."""
    extra = tmp_path / "extra"
    shutil.copytree(tiny_model, extra / "tiny")
    (extra / "broken").mkdir()
    (extra / "broken" / "generator.onnx").write_bytes(b"not an onnx file")
    monkeypatch.setenv("GANSAMPLE_MODELS", str(extra))
    assert run_cli("models", "--format", "json") == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"fashion-mnist", "emoji", "tiny", "broken"} <= set(rows)
    assert rows["fashion-mnist"]["default"] and not rows["emoji"]["default"]
    assert (rows["emoji"]["resolution"], rows["emoji"]["channels"], len(rows["emoji"]["classes"])) == (32, 3, 9)
    assert rows["fashion-mnist"]["encoder"] and "int8" in rows["fashion-mnist"]["generators"]
    assert rows["tiny"]["classes"] == ["circles", "squares"] and rows["tiny"]["folder"] == str(extra / "tiny")
    assert "not a valid ONNX model" in rows["broken"]["error"] and "resolution" not in rows["broken"]
    assert run_cli("models") == 0
    out = capsys.readouterr().out
    assert "fashion-mnist (default): 28x28 grayscale, 10 classes" in out and "emoji: 32x32 RGB, 9 classes" in out
    assert "broken: unreadable:" in out
    # Every name it lists is one --model accepts.
    assert run_cli("info", "emoji", "--format", "json") == 0 and json.loads(capsys.readouterr().out)["model"] == "emoji"


@pytest.mark.skipif(cuda_status()[0], reason="CUDA is usable here")
def test_device_cuda_without_cuda_exits_2(tiny_model, tmp_path, capsys):
    assert run_cli("generate", "-n", 2, "--model", tiny_model, "--device", "cuda", "--outdir", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "--device: got 'cuda'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def _plain_onnx(path: Path) -> Path:
    node = helper.make_node("Identity", ["z"], ["images"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


@pytest.mark.parametrize("args, needle", [
    (["--model", "no-such-model"], "--model: unknown model 'no-such-model'; available:"),
    (["-n", "0"], "argument -n: got 0"),
    (["-n", "-4"], "argument -n: got -4"),
    (["--seeds", "9-3"], "--seeds: got '9-3'"),
    (["--trunc", "3"], "--trunc: got 3.0"),
    (["--class", "hexagons"], "--class: got 'hexagons'; class names: circles, squares"),
    (["--class", "7"], "--class: got '7'; a class index 0-1"),
    (["--format", "tiff"], "argument --format: invalid choice: 'tiff'"),
])
def test_generate_bad_input(tiny_model, tmp_path, capsys, args, needle):
    argv = ["generate", "--outdir", tmp_path / "o"] + (args if "--model" in args else ["--model", tiny_model] + args)
    try:
        code = run_cli(*argv)
    except SystemExit as e:  # argparse's own errors exit 2 with usage
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_generate_bad_files_and_outdir(tiny_model, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    assert run_cli("generate", "--model", corrupt, "--outdir", tmp_path / "o") == 2
    assert "is not a valid ONNX model" in capsys.readouterr().err
    plain = _plain_onnx(tmp_path / "plain.onnx")
    assert run_cli("generate", "--model", plain, "--outdir", tmp_path / "o") == 2
    assert "not a gansample model" in capsys.readouterr().err
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    assert run_cli("generate", "-n", 2, "--model", tiny_model, "--outdir", blocker / "sub") == 2
    assert "--outdir: got" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_info_shows_metadata_and_providers(tiny_model, capsys):
    assert run_cli("info", tiny_model) == 0
    out = capsys.readouterr().out
    assert "classes:    2: 0=circles, 1=squares" in out
    assert "generator (uint8): generator_uint8.onnx" in out and "CPUExecutionProvider" in out
    assert "z tensor(float) ['batch', 16]" in out
    # The discriminator's line names its output as logits and the image layout it takes.
    assert "logits tensor(float) ['batch']  [raw logits; images in as float32 NCHW [-1,1]]" in out
