"""The int8 CPU variant: written by export, gated against fp32, picked only when it passed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from gansample import metadata as md
from gansample import reduced, variants
from gansample.generator import Generator
from gansample.registry import bundled_dir

from conftest import run_cli

FEATURES = bundled_dir() / "features" / "fashion-mnist.onnx"  # 28 px grayscale, like the tiny models


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test remembers its speed probes in its own cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def gated_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with its int8 variant rebuilt and gated with a features model."""
    out = tmp_path_factory.mktemp("gated") / "tiny-gated"
    shutil.copytree(tiny_model, out)
    record = reduced.build_int8(out, FEATURES, seeds=300)  # smaller sets than export's 1,000: test time
    assert record["features"] == FEATURES.name and _int8_info(out).gate == record
    return out


def _int8_info(folder: Path) -> md.ModelInfo:
    return md.read_onnx(onnx.load(folder / reduced.INT8_FILE))


def test_export_writes_int8_that_runs_close_to_fp32(tiny_model):
    info = _int8_info(tiny_model)
    assert (info.variant, info.output, info.role) == ("int8", md.UINT8_NHWC, "generator")
    gate = info.gate
    assert gate["seeds"] == reduced.GATE_SEEDS and not gate["passed"]
    # The tiny model's dataset (a folder of shapes) has no features model: not gated, never auto.
    assert any("no features model" in r for r in gate["reasons"])
    q = onnx.load(tiny_model / reduced.INT8_FILE)
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    a = Generator(tiny_model, device="cpu", variant="int8").sample(seeds="0-199").images
    b = Generator(tiny_model, device="cpu", variant="uint8").sample(seeds="0-199").images
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() <= reduced.MAX_MEAN_PIXEL_DIFF
    assert gate["mean_pixel_diff"] <= reduced.MAX_MEAN_PIXEL_DIFF and gate["max_pixel_diff"] >= diff.max() - 1


def test_calibration_latents_shrink_for_models_with_large_activations(tiny_model, tmp_path, monkeypatch):
    u8 = tiny_model / reduced.UINT8_FILE
    assert reduced.calibration_count(u8) == len(reduced.CALIB_SEEDS)  # a small model: all of them
    monkeypatch.setattr(reduced, "CALIB_BUDGET_BYTES", 1)
    assert reduced.calibration_count(u8) == 128  # never fewer
    counts = []
    for budget in (10**5, 10**6, 10**7, 10**8, 10**9):
        monkeypatch.setattr(reduced, "CALIB_BUDGET_BYTES", budget)
        counts.append(reduced.calibration_count(u8))
    assert counts == sorted(counts) and all(c % 64 == 0 and 128 <= c <= 1024 for c in counts)
    assert any(128 < c < 1024 for c in counts)  # the budget, not the bounds, decided somewhere
    # The variant made on fewer latents is still a working int8 file.
    monkeypatch.setattr(reduced, "CALIB_BUDGET_BYTES", 10**6)
    assert reduced.calibration_count(u8) < len(reduced.CALIB_SEEDS)
    out = reduced.make_int8(u8, tmp_path / "int8.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(out).graph.node)


def test_gate_measures_fd_and_recall_against_fp32s_band(gated_model):
    gate = _int8_info(gated_model).gate
    assert gate["seeds"] == 300 and gate["reference_seeds"] == "2000000-2000599"
    for key in ("fd", "fd_fp32", "recall", "recall_fp32"):
        assert isinstance(gate[key], float)
    lo, hi = gate["fd_band"]
    assert lo <= gate["fd_fp32"] <= hi and lo < hi
    fd_ok = gate["fd"] - gate["fd_fp32"] <= hi - lo
    rlo, rhi = gate["recall_band"]
    rec_ok = gate["recall_fp32"] - gate["recall"] <= rhi - rlo
    pix_ok = gate["mean_pixel_diff"] <= reduced.MAX_MEAN_PIXEL_DIFF
    assert gate["passed"] == (fd_ok and rec_ok and pix_ok)
    assert len(gate["reasons"]) == (not fd_ok) + (not rec_ok) + (not pix_ok)


def test_gate_fails_a_variant_that_draws_other_images(tiny_model, tiny_uncond_model):
    """Another model's uint8 file stands in for a broken variant: the gate must refuse it."""
    rec = reduced.gate(tiny_model / "generator_uint8.onnx", tiny_uncond_model / "generator_uint8.onnx", FEATURES,
                       seeds=200)
    assert not rec["passed"]
    assert any("mean pixel difference" in r for r in rec["reasons"]), rec["reasons"]


def _set_gate(folder: Path, passed: bool) -> None:
    path = folder / reduced.INT8_FILE
    record = dict(_int8_info(folder).gate, passed=passed, reasons=[] if passed else ["set by the test"])
    reduced.write_gate(path, record)


def test_auto_picks_int8_only_when_its_metadata_says_it_passed(gated_model, tmp_path, monkeypatch):
    folder = tmp_path / "m"
    shutil.copytree(gated_model, folder)
    monkeypatch.setattr(variants, "SPEEDUP_NEEDED", 0.0)  # any measured speed counts as faster

    _set_gate(folder, passed=False)
    g = Generator(folder, device="cpu")
    assert g.info.variant == "uint8" and "set by the test" in g.variant_reason

    _set_gate(folder, passed=True)  # a new file: measured afresh
    g = Generator(folder, device="cpu")
    assert g.info.variant == "int8" and "passed the quality gate" in g.variant_reason
    again = Generator(folder, device="cpu")
    assert again.info.variant == "int8" and again.variant_reason.endswith("(remembered)")

    # Forced variants skip the choice; an int8 that is not faster is not chosen.
    assert Generator(folder, device="cpu", variant="fp32").info.variant == "fp32"
    monkeypatch.setattr(variants, "SPEEDUP_NEEDED", 1e6)
    (folder / reduced.INT8_FILE).touch()  # the cached choice belongs to the old file
    slow = Generator(folder, device="cpu")
    assert slow.info.variant == "uint8" and "ran at" in slow.variant_reason


def test_cli_variant_flag_and_info(gated_model, tiny_uncond_model, tmp_path, capsys):
    assert run_cli("info", gated_model, "--variant", "fp32", "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["generator_in_use"]["variant"] == "fp32"
    assert report["files"]["generator (int8)"]["gate"]["seeds"] == 300
    assert run_cli("info", gated_model) == 0
    out = capsys.readouterr().out
    assert "in use:" in out and "gate:" in out
    assert run_cli("generate", "--model", gated_model, "--variant", "int8", "-n", "3", "--outdir", tmp_path / "o",
                   "-q") == 0
    assert len(list((tmp_path / "o").rglob("seed*.png"))) == 3
    # tiny_uncond_model was exported without the fp16 variant.
    assert run_cli("generate", "--model", tiny_uncond_model, "--variant", "fp16", "-n", "3", "--outdir",
                   tmp_path / "p") == 2
    err = capsys.readouterr().err
    assert "--variant" in err and "fp16" in err and "int8" in err and "Traceback" not in err


def test_quantize_command(tiny_model, tmp_path, capsys):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    (folder / reduced.INT8_FILE).unlink()
    assert run_cli("quantize", folder, "--features", tmp_path / "missing.onnx") == 2
    assert "--features" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in tiny_model.iterdir()
                                                              if p.name != reduced.INT8_FILE)
    assert run_cli("quantize", folder, "--features", FEATURES) == 0
    out = capsys.readouterr().out
    assert "int8 quality gate" in out and "FD" in out
    assert _int8_info(folder).gate["features"] == FEATURES.name
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize("name", ["fashion-mnist", "emoji"])
def test_bundled_models_ship_a_gated_int8_variant(name):
    info = _int8_info(bundled_dir() / name)
    assert info.gate["passed"] and info.gate["seeds"] == reduced.GATE_SEEDS and "fd" in info.gate


def _foreign_onnx(module, z_dim: int, path: Path) -> Path:
    """An ONNX generator as another project would write it (plain torch.onnx.export)."""
    import torch
    with torch.no_grad():
        torch.onnx.export(module.eval(), (torch.randn(2, z_dim),), str(path), input_names=["noise"],
                          output_names=["img"], dynamic_axes={"noise": {0: "b"}, "img": {0: "b"}}, dynamo=False)
    return path


def test_wrap_writes_a_gated_int8_where_the_graph_has_convolutions(tmp_path, capsys):
    import torch
    from torch import nn
    torch.manual_seed(3)
    conv_net = nn.Sequential(nn.Linear(16, 16 * 7 * 7), nn.Unflatten(1, (16, 7, 7)), nn.ReLU(),
                             nn.Upsample(scale_factor=2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                             nn.Upsample(scale_factor=2), nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 1, 3, padding=1), nn.Tanh())
    foreign = _foreign_onnx(conv_net, 16, tmp_path / "conv.onnx")
    out = tmp_path / "wrapped"
    assert run_cli("wrap", foreign, "--out", out, "--z-dim", "16", "--features", FEATURES) == 0
    assert "int8 quality gate:" in capsys.readouterr().out
    gate = _int8_info(out).gate
    assert gate["features"] == FEATURES.name and "fd" in gate
    a = Generator(out, device="cpu", variant="int8").sample(seeds="0-63").images
    b = Generator(out, device="cpu", variant="uint8").sample(seeds="0-63").images
    assert np.abs(a.astype(int) - b.astype(int)).mean() <= reduced.MAX_MEAN_PIXEL_DIFF

    # A graph of transposed convolutions has nothing onnxruntime runs faster in int8: no file.
    dcgan = nn.Sequential(nn.Unflatten(1, (16, 1, 1)), nn.ConvTranspose2d(16, 8, 7), nn.ReLU(),
                          nn.ConvTranspose2d(8, 1, 4, 4), nn.Tanh())
    foreign = _foreign_onnx(dcgan, 16, tmp_path / "dcgan.onnx")
    assert run_cli("wrap", foreign, "--out", tmp_path / "plain", "--z-dim", "16") == 0
    assert not (tmp_path / "plain" / reduced.INT8_FILE).exists()
    assert "no Conv nodes" in capsys.readouterr().err
