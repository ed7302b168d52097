"""ONNX export: real files, real onnxruntime, parity with PyTorch, the metadata contract."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import run_cli
from gansample import metadata as md
from gansample.generator import quantize


def _sess(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_writes_all_files_with_metadata(tiny_model):
    names = sorted(p.name for p in tiny_model.iterdir())
    assert names == ["discriminator.onnx", "generator.onnx", "generator_fp16.onnx", "generator_int8.onnx",
                     "generator_mix.onnx", "generator_uint8.onnx"]
    g = md.read_onnx(onnx.load(tiny_model / "generator.onnx"))
    assert (g.role, g.z_dim, g.num_classes, g.img_resolution, g.img_channels) == ("generator", 16, 2, 28, 1)
    assert g.class_names == ["circles", "squares"] and g.train_steps == 4 and g.output == md.FLOAT_NCHW
    assert md.read_onnx(onnx.load(tiny_model / "generator_uint8.onnx")).output == md.UINT8_NHWC
    assert md.read_onnx(onnx.load(tiny_model / "discriminator.onnx")).role == "discriminator"
    # The same info through onnxruntime, as the runtime reads it.
    via_ort = md.ModelInfo.from_props(_sess(tiny_model / "generator.onnx").get_modelmeta().custom_metadata_map)
    assert via_ort == g
    for f in tiny_model.iterdir():
        onnx.checker.check_model(onnx.load(f), full_check=True)


def test_metadata_round_trip_and_validation():
    info = md.ModelInfo(role="generator", img_resolution=32, img_channels=3, z_dim=8, num_classes=2,
                        class_names=["a", "b"], metrics={"fd": 1.5})
    model = onnx.ModelProto()
    md.write(model, info)
    assert md.read_onnx(model) == info
    with pytest.raises(md.GansampleError, match="not a gansample model"):
        md.ModelInfo.from_props({"other": "1"}, "x.onnx")
    bad = info.to_props() | {"gansample.img_channels": "2"}
    with pytest.raises(md.GansampleError, match="img_channels 2"):
        md.ModelInfo.from_props(bad, "x.onnx")


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_parity_with_pytorch_at_several_batch_sizes(tiny_run, tiny_model, batch):
    from gansample.training import checkpoint as ckpt
    from gansample.training.models import Discriminator, Generator
    state = ckpt.load(str(tiny_run))
    G = Generator(**state["g_args"]).eval()
    G.load_state_dict(state["G_ema"])
    D = Discriminator(**state["d_args"]).eval()
    D.load_state_dict(state["D"])
    z = torch.randn(batch, 16, generator=torch.Generator().manual_seed(batch))
    y = torch.arange(batch) % 2
    with torch.no_grad():
        ref = G(z, y).numpy()
        d_ref = D(torch.from_numpy(ref), y).numpy()
    out = _sess(tiny_model / "generator.onnx").run(None, {"z": z.numpy(), "label": y.numpy()})[0]
    assert out.shape == (batch, 1, 28, 28)
    assert np.abs(out - ref).max() <= 1e-4
    logits = _sess(tiny_model / "discriminator.onnx").run(None, {"images": ref, "label": y.numpy()})[0]
    assert logits.shape == (batch,)
    assert np.abs(logits - d_ref).max() <= 1e-4 * max(1.0, np.abs(d_ref).max())
    u8 = _sess(tiny_model / "generator_uint8.onnx").run(None, {"z": z.numpy(), "label": y.numpy()})[0]
    assert u8.dtype == np.uint8 and u8.shape == (batch, 28, 28, 1)
    np.testing.assert_array_equal(u8, quantize(out))
    f16 = _sess(tiny_model / "generator_fp16.onnx").run(None, {"z": z.numpy(), "label": y.numpy()})[0]
    assert np.abs(f16.astype(int) - u8.astype(int)).max() <= 2


def test_label_changes_the_image(tiny_model):
    s = _sess(tiny_model / "generator.onnx")
    z = np.random.RandomState(0).randn(1, 16).astype(np.float32)
    a = s.run(None, {"z": z, "label": np.array([0])})[0]
    b = s.run(None, {"z": z, "label": np.array([1])})[0]
    assert np.abs(a - b).max() > 1e-3


def test_export_bad_input(tmp_path, tiny_run, capsys):
    assert run_cli("export", tmp_path / "missing.pt", "--out", tmp_path / "o") == 2
    assert "CHECKPOINT: got" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip")
    assert run_cli("export", corrupt, "--out", tmp_path / "o") == 2
    assert "corrupt or truncated" in capsys.readouterr().err
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert run_cli("export", foreign, "--out", tmp_path / "o") == 2
    assert "not a gansample checkpoint" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert run_cli("export", tiny_run, "--out", a_file) == 2
    assert "existing file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("resolution,channels,ncls", [(28, 1, 3), (32, 3, 0), (64, 3, 2)])
def test_phase_generator_matches_the_generator(resolution, channels, ncls):
    """The export-time rewrite (MatMul + overlap-add, 2x2 frame convs, output conv on the
    frame) computes the same function as the trained net, in PyTorch and
    after export to ONNX, for every depth of the architecture."""
    from gansample.training.export import Uint8Output, _to_onnx, fold_generator, generator_inputs
    from gansample.training.fastgraph import PhaseGenerator
    from gansample.training.models import Generator as TorchG

    torch.manual_seed(resolution)
    G = TorchG(z_dim=8, resolution=resolution, channels=channels, num_classes=ncls, width=4)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    G.eval()
    fast = PhaseGenerator(fold_generator(G)).eval()
    z = torch.randn(6, 8)
    y = torch.arange(6) % ncls if ncls else None
    with torch.no_grad():
        ref = G(z, y)
        assert float((fast(z, y) - ref).abs().max()) < 1e-5
        if ncls:
            w = torch.softmax(torch.randn(6, ncls), 1)
            assert float((fast.forward_mix(z, w) - G.forward_mix(z, w)).abs().max()) < 1e-5
        model = _to_onnx(Uint8Output(fast), *generator_inputs(z, y), "images")
    feeds = {"z": z.numpy(), **({"label": y.numpy()} if ncls else {})}
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    expect = quantize(ref.numpy())
    assert out.shape == expect.shape
    assert np.abs(out.astype(int) - expect.astype(int)).max() <= 1
