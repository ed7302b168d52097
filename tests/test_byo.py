"""Bring your own GAN: generators from other projects (written here from their public
descriptions, random weights) exported through the API and the CLI, foreign ONNX files
wrapped; everything downstream runs on them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from gansample import Generator, interpolate

ROOT = Path(__file__).resolve().parent.parent
NETS = Path(__file__).resolve().parent / "byo_nets.py"
sys.path.insert(0, str(NETS.parent))
import byo_nets as nets  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def _plain_export(module: torch.nn.Module, example: torch.Tensor, path: Path, inputs: list[str],
                  outputs: list[str]) -> Path:
    """An ONNX file as other projects write it: plain torch.onnx.export (TorchScript),
    names of their own, a dynamic batch on every input and output."""
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes={n: {0: "b"} for n in inputs + outputs}, dynamo=False)
    return path


def _same_bytes_at_batch_1_and_7(folder: Path, psi: float = 1.0) -> np.ndarray:
    g = Generator(folder, device="cpu", batch_size=7)
    batched = g.sample(seeds=range(7), psi=psi).images
    g1 = Generator(folder, device="cpu", batch_size=1)
    single = np.concatenate([g1.sample(seeds=[s], psi=psi).images for s in range(7)])
    assert np.array_equal(batched, single)
    return batched


@pytest.fixture(scope="module")
def dcgan_cli_model(tmp_path_factory) -> Path:
    """pytorch/examples' DCGAN G saved as a state dict and exported through the CLI."""
    d = tmp_path_factory.mktemp("dcgan")
    torch.manual_seed(0)
    G = nets.DCGANGenerator(nz=100, ngf=16, nc=3)
    for m in G.modules():  # non-trivial BatchNorm statistics, as a trained net has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(G.state_dict(), d / "netG.pth")
    out = d / "dcgan"
    assert run_cli("export", "--module", f"{NETS}:DCGANGenerator", "--weights", d / "netG.pth",
                   "--arg", "ngf=16", "--z-dim", "100", "--range", "-1,1", "--layout", "NCHW", "--out", out) == 0
    return out


def test_dcgan_through_the_cli(dcgan_cli_model, tmp_path, capsys) -> None:
    from gansample.metadata import ModelInfo
    g = Generator(dcgan_cli_model, device="cpu")
    assert (g.info.img_resolution, g.info.img_channels, g.info.z_dim) == (64, 3, 100)
    assert g.info.provenance == "torch-module" and g.info.architecture["latent_shape"] == [100, 1, 1]
    assert isinstance(g.info, ModelInfo)
    out = tmp_path / "o"
    assert run_cli("generate", "--seeds", "0-7", "--model", dcgan_cli_model, "--outdir", out, "-q") == 0
    files = sorted(out.glob("seed*.png"))
    assert len(files) == 8 and Image.open(files[0]).size == (64, 64)
    # Parity with the PyTorch module on the seed rule's latents (not only the export check).
    torch.manual_seed(0)
    G = nets.DCGANGenerator(nz=100, ngf=16, nc=3)
    G.load_state_dict(torch.load(dcgan_cli_model.parent / "netG.pth", weights_only=True))
    from gansample.latents import latents_for_seeds
    z = torch.from_numpy(latents_for_seeds([0, 1, 2], 100)).view(3, 100, 1, 1)
    with torch.no_grad():
        ref = G.eval()(z).numpy()
    fl = Generator(dcgan_cli_model / "generator.onnx", device="cpu").session.run({"z": z.view(3, 100).numpy()})
    assert np.abs(fl - ref).max() < 1e-4
    _same_bytes_at_batch_1_and_7(dcgan_cli_model)


def _node_pixels(model_file: Path, seeds: str, tmp_path: Path) -> np.ndarray | None:
    """The Node embedding example's pixels for ``seeds`` (None where node or its npm
    packages are not installed)."""
    node = shutil.which("node")
    if not node or not (ROOT / "examples" / "node_modules" / "onnxruntime-node").is_dir():
        return None
    r = subprocess.run([node, "node/generate.mjs", str(model_file), "--seeds", seeds, "--json",
                        str(tmp_path / "n.json")], cwd=ROOT / "examples", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return np.asarray(json.loads((tmp_path / "n.json").read_text())["pixels"], dtype=np.uint8)


def test_dcgan_node_example_reproduces(dcgan_cli_model, tmp_path) -> None:
    pix = _node_pixels(dcgan_cli_model / "generator.onnx", "0-3", tmp_path)
    if pix is None:
        pytest.skip("node or the examples' npm packages are not installed")
    ours = Generator(dcgan_cli_model, device="cpu", variant="fp32").sample(seeds=range(4)).images
    theirs = pix.reshape(ours.shape)
    assert np.abs(theirs.astype(int) - ours.astype(int)).max() <= 1


def test_onehot_conditional_generator(tmp_path) -> None:
    from gansample.training import byo
    torch.manual_seed(1)
    G = nets.OneHotGenerator(z_dim=16, num_classes=4)
    out = tmp_path / "onehot"
    rep = byo.export_generator(G, out, z_dim=16, num_classes=4, conditioning="onehot", int8=False,
                               class_names=["a", "b", "c", "d"], fp16=False)
    assert rep["generator_max_abs_diff"] < 1e-4 and (out / "generator_mix.onnx").exists()
    imgs = _same_bytes_at_batch_1_and_7(out)
    assert imgs.shape == (7, 32, 32, 1)
    g = Generator(out, device="cpu")
    by_class = [g.sample(seeds=[5], cls=c).images[0] for c in "abcd"]
    assert not np.array_equal(by_class[0], by_class[1])  # the label reaches the network
    walk = interpolate(g, "0,1,2", steps=4)  # classes differ at the keyframes: the mix variant
    assert walk.frames.shape == (9, 32, 32, 1)


def test_unit_range_nhwc_generator(tmp_path) -> None:
    from gansample.training import byo
    torch.manual_seed(2)
    G = nets.UnitNHWCGenerator(z_dim=8)
    out = tmp_path / "nhwc"
    rep = byo.export_generator(G, out, z_dim=8, output_range=(0, 1), layout="NHWC", fp16=False, int8=False)
    assert rep["generator_max_abs_diff"] < 1e-4
    imgs = _same_bytes_at_batch_1_and_7(out)
    from gansample.latents import latents_for_seeds
    with torch.no_grad():
        ref = G(torch.from_numpy(latents_for_seeds(range(7), 8))).numpy()  # [0, 1], NHWC
    expect = np.clip(np.floor((ref * 2 - 1) * 127.5 + 128), 0, 255).astype(np.uint8)
    assert np.abs(imgs.astype(int) - expect.astype(int)).max() <= 1
    assert interpolate(Generator(out, device="cpu"), "1,2", steps=3).frames.shape == (4, 16, 16, 3)


@pytest.fixture(scope="module")
def style_model(tmp_path_factory) -> tuple[nets.StyleGenerator, Path, dict]:
    """A style-based generator (mapping, modulated convs grouped by batch, per-layer noise,
    w average) exported once for the tests that use it (its export takes the longest)."""
    from gansample.training import byo
    torch.manual_seed(3)
    G = nets.StyleGenerator(z_dim=32, w_dim=32, width=16)
    out = tmp_path_factory.mktemp("style") / "style"
    rep = byo.export_generator(G, out, z_dim=32, truncation="w", fp16=False, int8=False)
    return G, out, rep


def test_style_based_generator_truncates_in_w(style_model) -> None:
    G, out, rep = style_model
    assert rep["generator_max_abs_diff"] < 1e-4
    g = Generator(out, device="cpu")
    assert g.info.truncation == "w" and g.info.format_version == 2
    assert np.allclose(g.info.architecture["w_avg"], G.w_avg.numpy(), atol=1e-6)
    _same_bytes_at_batch_1_and_7(out, psi=0.7)
    # psi = 0: every seed gives the w-average image.
    avg = g.sample(seeds=range(6), psi=0).images
    assert all(np.array_equal(avg[0], a) for a in avg)
    # ... which is G's own image of w_avg (noise frozen as exported).
    assert not np.array_equal(avg[0], g.sample(seeds=[0], psi=1).images[0])
    walk = interpolate(g, "0,5", steps=3, psi=0.5)
    assert walk.frames.shape == (4, 32, 32, 3)


def test_wrap_foreign_onnx(tmp_path) -> None:
    torch.manual_seed(4)
    G = nets.make_small_dcgan(nz=32, ngf=8).eval()
    foreign = _plain_export(G, torch.randn(2, 32, 1, 1), tmp_path / "foreign.onnx", ["noise"], ["img"])
    out = tmp_path / "wrapped"
    assert run_cli("wrap", foreign, "--out", out, "--z-dim", "32", "--range", "-1,1", "--layout", "NCHW") == 0
    g = Generator(out, device="cpu")
    assert g.info.provenance == "onnx-wrap" and (out / "generator_uint8.onnx").exists()
    imgs = _same_bytes_at_batch_1_and_7(out)
    from gansample.latents import latents_for_seeds
    with torch.no_grad():
        ref = G(torch.from_numpy(latents_for_seeds(range(7), 32)).view(7, 32, 1, 1)).numpy()
    expect = np.clip(np.floor(ref * 127.5 + 128), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert np.abs(imgs.astype(int) - expect.astype(int)).max() <= 1
    assert run_cli("generate", "--seeds", "0-3", "--model", out, "--outdir", tmp_path / "o", "-q") == 0
    pix = _node_pixels(out / "generator.onnx", "0-6", tmp_path)
    if pix is not None:
        assert np.abs(pix.reshape(imgs.shape).astype(int) - imgs.astype(int)).max() <= 1
    from gansample import ui
    models = ui.Models([str(out)], "cpu")
    name = next(n for n, spec in models.paths.items() if spec == str(out))
    items, zip_path, status = ui.generate(models, name, "0-3", 0, 4, 1.0, ui.BY_SEED, ui.SORTS[0], "")
    assert len(items) == 4 and "4 images" in status


@pytest.mark.parametrize("args, needle", [
    (["--z-dim", "33"], "--z-dim: got 33"),
    (["--z-dim", "32", "--layout", "NHWC"], "--layout: got 'NHWC'"),
    (["--z-dim", "32", "--resolution", "32"], "--resolution: got 32"),
    (["--z-dim", "32", "--range", "0,255"], "--range: got '0,255'"),
])
def test_wrap_refuses_wrong_declarations(tmp_path, capsys, args, needle) -> None:
    torch.manual_seed(5)
    G = nets.make_small_dcgan(nz=32, ngf=8).eval()
    foreign = _plain_export(G, torch.randn(2, 32, 1, 1), tmp_path / "f.onnx", ["z"], ["img"])
    assert run_cli("wrap", foreign, "--out", tmp_path / "m", *args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "m" / "generator.onnx").exists()


def test_wrap_range_mismatch_is_seen(tmp_path, capsys) -> None:
    class Bytes(torch.nn.Module):  # outputs 0..255, declared as -1..1
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return (torch.sigmoid(z[:, :3, None, None].expand(-1, 3, 8, 8)) * 255)
    foreign = _plain_export(Bytes(), torch.randn(2, 8), tmp_path / "b.onnx", ["z"], ["img"])
    assert run_cli("wrap", foreign, "--out", tmp_path / "m", "--z-dim", "8") == 2
    assert "the range of the graph's output" in capsys.readouterr().err


def _bad_export(tmp_path: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gansample", "export", "--out", str(tmp_path / "m"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # 20 s of subprocess exports; the default run keeps one bad-input export test per command
def test_export_module_bad_input(tmp_path) -> None:
    torch.manual_seed(6)
    small = nets.make_small_dcgan(nz=32, ngf=8)
    good = tmp_path / "g.pth"
    torch.save(small.state_dict(), good)
    other = tmp_path / "o.pth"
    torch.save(nets.UnitNHWCGenerator().state_dict(), other)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": small.state_dict(), "x": Evil()}, evil)
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (["--module", tmp_path / "nope.py:G", "--weights", good, "--z-dim", "32"], "--module: got"),
        (["--module", f"{NETS}:NoSuchClass", "--weights", good, "--z-dim", "32"], "DCGANGenerator"),
        (["--module", f"{NETS}:NotAModule", "--weights", good, "--z-dim", "32"], "nn.Module"),
        (["--module", f"{NETS}:make_small_dcgan", "--weights", other, "--z-dim", "32"], "missing main.0.weight"),
        (["--module", f"{NETS}:make_small_dcgan", "--weights", evil, "--z-dim", "32"], "never loaded"),
        (["--module", f"{NETS}:make_small_dcgan", "--weights", good, "--z-dim", "31"], "--z-dim: got 31"),
        (["--module", f"{NETS}:make_small_dcgan", "--arg", "bogus=1", "--weights", good, "--z-dim", "32"], "--arg"),
    ]
    for args, needle in cases:
        out = _bad_export(tmp_path, *args)
        assert out.returncode == 2, (args, out.stderr)
        assert needle in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) <= 2, out.stderr
        assert not (tmp_path / "m" / "generator.onnx").exists()
    assert not marker.exists()  # the pickle's code never ran
    out = subprocess.run([sys.executable, "-m", "gansample", "export", "--out", str(afile), "--module",
                          f"{NETS}:make_small_dcgan", "--weights", str(good), "--z-dim", "32"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "--out: got" in out.stderr


def test_wrap_several_outputs_need_a_choice(tmp_path, capsys) -> None:
    class Two(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            img = torch.tanh(z[:, :3, None, None].expand(-1, 3, 8, 8))
            return img, img.mean(dim=(1, 2, 3))
    foreign = _plain_export(Two(), torch.randn(2, 8), tmp_path / "two.onnx", ["z"], ["img", "score"])
    assert run_cli("wrap", foreign, "--out", tmp_path / "m", "--z-dim", "8") == 2
    assert "--output: got None; one of the graph's outputs ['img', 'score']" in capsys.readouterr().err
    assert run_cli("wrap", foreign, "--out", tmp_path / "m", "--z-dim", "8", "--output", "img") == 0
    assert Generator(tmp_path / "m", device="cpu").sample(seeds=[1]).images.shape == (1, 8, 8, 3)


def test_dcgan_with_its_discriminator_scores_and_filters(tmp_path) -> None:
    from gansample import Discriminator
    from gansample.training import export_generator
    torch.manual_seed(7)
    G = nets.make_small_dcgan(nz=32, ngf=8)
    D = nets.DCGANDiscriminator(ndf=8, nc=3)
    out = tmp_path / "gd"
    rep = export_generator(G, out, z_dim=32, discriminator=D, fp16=False, int8=False)
    assert rep["discriminator_max_abs_diff"] < 1e-4
    g, d = Generator(out, device="cpu"), Discriminator(out, device="cpu")
    imgs = g.sample(seeds=range(4)).images
    with torch.no_grad():
        ref = D.eval()(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    assert np.abs(d.logits(imgs) - ref).max() < 1e-3
    assert run_cli("generate", "-n", "4", "--filter", "top:0.5", "--model", out, "--outdir", tmp_path / "o",
                   "-q") == 0
    assert len(list((tmp_path / "o").glob("seed*.png"))) == 4


def test_embedding_examples_run_a_w_truncated_model(style_model, tmp_path) -> None:
    """The numpy-only and Node examples feed psi to a generator that truncates in W."""
    out = style_model[1]
    ours = Generator(out, device="cpu", variant="fp32").sample(seeds=range(3)).images
    py = subprocess.run([sys.executable, str(ROOT / "examples" / "python" / "generate.py"),
                         str(out / "generator.onnx"), "--seeds", "0-2", "--outdir", str(tmp_path / "py")],
                        capture_output=True, text=True, timeout=120)
    assert py.returncode == 0, py.stderr
    got = np.stack([np.asarray(Image.open(tmp_path / "py" / f"seed{s:04d}.png")) for s in range(3)])
    assert np.array_equal(got, ours)
    pix = _node_pixels(out / "generator.onnx", "0-2", tmp_path)
    if pix is not None:
        assert np.abs(pix.reshape(ours.shape).astype(int) - ours.astype(int)).max() <= 1


def test_wrap_with_a_foreign_discriminator(tmp_path) -> None:
    from gansample import Discriminator
    torch.manual_seed(9)
    G = nets.make_small_dcgan(nz=32, ngf=8).eval()
    D = nets.DCGANDiscriminator(ndf=8, nc=3).eval()
    _plain_export(G, torch.randn(2, 32, 1, 1), tmp_path / "g.onnx", ["z"], ["x"])
    _plain_export(D, torch.randn(2, 3, 64, 64), tmp_path / "d.onnx", ["img"], ["p"])
    out = tmp_path / "gd"
    assert run_cli("wrap", tmp_path / "g.onnx", "--discriminator", tmp_path / "d.onnx", "--z-dim", "32",
                   "--out", out) == 0
    imgs = Generator(out, device="cpu").sample(seeds=range(3)).images
    with torch.no_grad():
        ref = D(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    assert np.abs(Discriminator(out, device="cpu").logits(imgs) - ref).max() < 1e-4
    assert run_cli("wrap", tmp_path / "g.onnx", "--discriminator", tmp_path / "g.onnx", "--z-dim", "32",
                   "--out", tmp_path / "bad") == 2
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
    # Wrapping again into the same folder without a discriminator: the earlier one, which
    # belongs to another generator's images, goes; no staging folder is left behind.
    assert run_cli("wrap", tmp_path / "g.onnx", "--z-dim", "32", "--out", out, "--no-int8") == 0
    assert sorted(f.name for f in out.iterdir()) == ["generator.onnx", "generator_uint8.onnx"]


# --- bad input found by fuzzing: refused with the flag named, nothing written ----------------------
def _refused(capsys, argv: list, needle: str, out: Path) -> str:
    """The CLI exits 2 with ``needle`` in one error line, no traceback, and no ``out`` folder."""
    assert run_cli(*argv) == 2, argv
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, (argv, err)
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists(), argv
    return err


@pytest.fixture
def nhwc_weights(tmp_path) -> Path:
    torch.manual_seed(10)
    torch.save(nets.UnitNHWCGenerator(z_dim=8).state_dict(), tmp_path / "u.pth")
    return tmp_path / "u.pth"


@pytest.mark.parametrize("shape", ["100000000000", "0", "-3", "1024,1024,2", "8,1,1,1,1,1,1,1,1"])
def test_export_latent_shape_is_checked_first(tmp_path, capsys, nhwc_weights, shape) -> None:
    out = tmp_path / "m"
    err = _refused(capsys, ["export", "--module", f"{NETS}:UnitNHWCGenerator", "--weights", nhwc_weights,
                            f"--latent-shape={shape}", "--range", "0,1", "--layout", "NHWC", "--no-int8", "--out",
                            out], f"--latent-shape: got {shape!r}", out)
    assert "at most 1048576" in err


def test_export_user_code_that_raises(tmp_path, capsys, nhwc_weights) -> None:
    src = tmp_path / "user.py"
    src.write_text("import torch\nfrom torch import nn\n\n"
                   "def boom():\n    raise RuntimeError('boom')\n\n"
                   "class Fails(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                   "        self.fc = nn.Linear(8, 16 * 16 * 3)\n\n"
                   "    def forward(self, z):\n        raise ValueError('bad forward')\n")
    (tmp_path / "imports.py").write_text("raise RuntimeError('at import')\n")
    out = tmp_path / "m"
    common = ["--weights", nhwc_weights, "--z-dim", "8", "--no-int8", "--no-fp16", "--out", out]
    _refused(capsys, ["export", "--module", f"{src}:boom", *common],
             "--module: calling boom() failed: RuntimeError: boom", out)
    _refused(capsys, ["export", "--module", f"{tmp_path / 'imports.py'}:G", *common],
             "(RuntimeError: at import)", out)
    err = _refused(capsys, ["export", "--module", f"{src}:Fails", *common],
                   "--module: calling the generator failed: ValueError: bad forward", out)
    assert "--z-dim" not in err
    _refused(capsys, ["export", "--module", f"{src}:Fails", "--latent-shape", "8", *common[:2], *common[4:]],
             "--module: the generator fails on the contract's inputs (ValueError: bad forward)", out)


def test_export_messages_name_flags(tmp_path, capsys, nhwc_weights) -> None:
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    out = tmp_path / "m"
    common = ["--module", f"{NETS}:UnitNHWCGenerator", "--weights", nhwc_weights, "--range", "0,1", "--layout",
              "NHWC", "--no-int8", "--no-fp16", "--out", out]
    err = _refused(capsys, ["export", *common, "--z-dim", "8", "--classes", names],
                   "--classes: got 3 classes, but the generator takes no labels", out)
    assert "latent_shape" not in err
    err = _refused(capsys, ["export", *common, "--z-dim", "9"], "give the shape with --latent-shape", out)
    assert "latent_shape" not in err and err.startswith("gansample export: error: --z-dim: got 9")
    _refused(capsys, ["export", *common, "--z-dim", "8", "--conditioning", "onehot"],
             "--conditioning: got 'onehot'; nothing for an unconditional generator (a conditional one needs its "
             "--classes)", out)
    names.write_text("a\nb\na\n")
    _refused(capsys, ["export", *common, "--z-dim", "8", "--classes", names], "--classes: got 'a'; each class name "
             "once", out)
    # One-hot conditioning stores a classes x classes table in the model: bounded before it is built.
    names.write_text("".join(f"c{i}\n" for i in range(5000)))
    _refused(capsys, ["export", *common, "--z-dim", "8", "--classes", names, "--conditioning", "onehot"],
             "--classes: got '<5000 names>'; at most 4096 classes with --conditioning onehot", out)


def _onnx_graph(path: Path, nodes: list, inputs: list, outputs: list, inits: list = ()) -> Path:
    import onnx
    from onnx import helper
    graph = helper.make_graph(nodes, "foreign", inputs, outputs, list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_wrap_checks_the_image_size_before_running(tmp_path, capsys) -> None:
    from onnx import TensorProto, helper

    from gansample.errors import GansampleError
    from gansample.wrap import wrap_onnx

    def fixed(name: str, shape: list[int]) -> Path:  # an image of a fixed shape, whatever the latent
        return _onnx_graph(tmp_path / name, [
            helper.make_node("ConstantOfShape", ["shape"], ["img"],
                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5]))],
            [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8])],
            [helper.make_tensor_value_info("img", TensorProto.FLOAT, shape)],
            [helper.make_tensor("shape", TensorProto.INT64, [4], shape)])
    out = tmp_path / "m"
    huge = fixed("huge.onnx", [1, 3, 30000, 30000])  # 10.8 GB an image: refused unrun
    err = _refused(capsys, ["wrap", huge, "--out", out, "--z-dim", "8", "--no-int8"],
                   f"FOREIGN.onnx: got {str(huge)!r}; a generator of images at most 4096x4096 pixels", out)
    assert "[1, 3, 30000, 30000]" in err
    one = fixed("one.onnx", [1, 3, 8, 8])  # small, but one image for any batch
    _refused(capsys, ["wrap", one, "--out", out, "--z-dim", "8", "--no-int8"],
             "a generator whose image batch follows the latent batch: 4 latents gave output of shape [1, 3, 8, 8]",
             out)
    with pytest.raises(GansampleError, match="resolution: got 5000; an integer from 1 to 4096") as e:
        wrap_onnx(one, out, z_dim=8, resolution=5000, int8=False)
    assert e.value.arg == "resolution" and not out.exists()


class _Conditional(torch.nn.Module):
    """An embedding of 10 classes beside the latent, 8x8 RGB."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 8)
        self.fc = torch.nn.Linear(16, 3 * 8 * 8)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(torch.cat([z, self.emb(y)], 1))).view(-1, 3, 8, 8)


@pytest.fixture
def conditional_onnx(tmp_path) -> Path:
    torch.manual_seed(11)
    path = tmp_path / "cond.onnx"
    with torch.no_grad():
        torch.onnx.export(_Conditional().eval(), (torch.randn(2, 8), torch.tensor([0, 1])), str(path),
                          input_names=["noise", "cls"], output_names=["img"], dynamo=False,
                          dynamic_axes={"noise": {0: "b"}, "cls": {0: "b"}, "img": {0: "b"}})
    return path


def test_wrap_conditional_graph_needs_its_class_names(tmp_path, capsys, conditional_onnx) -> None:
    out = tmp_path / "m"
    common = ["wrap", conditional_onnx, "--out", out, "--z-dim", "8", "--no-int8"]
    err = _refused(capsys, common, "--classes: got None; the names of the graph's 10 classes, one per line: it is "
                   "conditional (it takes an integer label input 'cls')", out)
    assert "--z-dim" not in err and "gs_foreign" not in err
    cases = [(["a", "b"], "--classes: got '<2 names>'; 10 names, one per class of the graph's label input 'cls'"),
             ([str(i) for i in range(11)], "--classes: got '<11 names>'; 10 names"),
             ([str(i) for i in range(100_001)], "--classes: got '<100001 names>'; at most 100000 class names"),
             ([*"abcdefghi", "a"], "--classes: got 'a'; each class name once")]
    names = tmp_path / "names.txt"
    for lines, needle in cases:
        names.write_text("\n".join(lines) + "\n")
        _refused(capsys, [*common, "--classes", names], needle, out)
    names.write_text("\n".join("abcdefghij") + "\n")
    _refused(capsys, [*common, "--classes", names, "--conditioning", "onehot"],
             "--conditioning: got 'onehot'; index: a wrapped graph takes integer labels", out)
    assert run_cli(*common, "--classes", names) == 0
    g = Generator(out, device="cpu")
    assert g.info.class_names == list("abcdefghij")
    assert not np.array_equal(g.sample(seeds=[3], cls="a").images, g.sample(seeds=[3], cls="j").images)


def test_wrap_class_count_is_tried_where_the_graph_hides_it(tmp_path, capsys) -> None:
    """A label table the graph computes (not a constant): the smoke sample tries the last class."""
    from onnx import TensorProto, helper
    table = np.random.RandomState(0).randn(10, 3 * 4 * 4).astype(np.float32)
    graph = _onnx_graph(tmp_path / "hidden.onnx", [
        helper.make_node("Identity", ["table"], ["t2"]),
        helper.make_node("Add", ["t2", "zero"], ["t3"]),
        helper.make_node("Gather", ["t3", "y"], ["e"]),
        helper.make_node("ReduceMean", ["z"], ["zm"], axes=[1], keepdims=1),
        helper.make_node("Add", ["e", "zm"], ["s"]),
        helper.make_node("Tanh", ["s"], ["t"]),
        helper.make_node("Reshape", ["t", "shape"], ["img"])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 8]),
         helper.make_tensor_value_info("y", TensorProto.INT64, ["b"])],
        [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["b", 3, 4, 4])],
        [helper.make_tensor("table", TensorProto.FLOAT, [10, 48], table.reshape(-1)),
         helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
         helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 3, 4, 4])])
    names = tmp_path / "names.txt"
    names.write_text("\n".join(map(str, range(12))) + "\n")
    out = tmp_path / "m"
    _refused(capsys, ["wrap", graph, "--out", out, "--z-dim", "8", "--no-int8", "--classes", names],
             "--classes: got '<12 names>'; as many names as the graph has classes: a smoke sample with label 11 failed",
             out)
    names.write_text("\n".join(map(str, range(10))) + "\n")
    assert run_cli("wrap", graph, "--out", out, "--z-dim", "8", "--no-int8", "--classes", names) == 0


def test_wrap_conditioning_without_classes_and_empty_out(tmp_path, capsys, monkeypatch) -> None:
    from gansample.errors import GansampleError
    from gansample.wrap import wrap_onnx
    torch.manual_seed(12)
    foreign = _plain_export(nets.UnitNHWCGenerator(z_dim=8).eval(), torch.randn(2, 8), tmp_path / "u.onnx", ["z"],
                            ["img"])
    out = tmp_path / "m"
    common = ["wrap", foreign, "--z-dim", "8", "--range", "0,1", "--layout", "NHWC", "--no-int8"]
    for cond in ("onehot", "index"):
        _refused(capsys, [*common, "--out", out, "--conditioning", cond],
                 f"--conditioning: got {cond!r}; nothing for an unconditional graph", out)
    monkeypatch.chdir(tmp_path)
    assert run_cli(*common, "--out", "") == 2
    assert "--out: got ''" in capsys.readouterr().err
    with pytest.raises(GansampleError, match="out: got ''; a folder path") as e:
        wrap_onnx(foreign, "", z_dim=8, output_range=(0.0, 1.0), layout="NHWC", int8=False)
    assert e.value.arg == "out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.onnx"]
