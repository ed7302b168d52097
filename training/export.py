"""Export a checkpoint to self-describing ONNX files.

exported/<name>/
  generator.onnx        fp32, z (+label) -> float32 NCHW in [-1, 1]   (the portable one)
  generator_uint8.onnx  fp32 compute, post-processing in the graph -> uint8 NHWC
  generator_fp16.onnx   fp16 compute for GPUs -> uint8 NHWC
  generator_mix.onnx    conditional models: z + class_weights [B, K] -> uint8 NHWC (class blends)
  discriminator.onnx    float32 NCHW in [-1, 1] (+label) -> raw logits [B]
BatchNorm is folded into the preceding layer before export, spectral norm is baked in.
The float, uint8 and mix generators are exported from the same function rewritten for
onnxruntime's fast CPU kernels (training/fastgraph.py); the fp16 one keeps the plain
transposed convolutions that GPU libraries run well.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import subprocess
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from gansample import metadata as md
from gansample.errors import GansampleError, bad_value, first_line
from gansample.reduced import add_int8, features_for
from gansample.files import atomic_write, publish
from gansample.registry import MODEL_FILES

from . import checkpoint as ckpt
from .fastgraph import PhaseGenerator
from .models import Discriminator, Generator

PARITY_TOL = 1e-4


# --- graph surgery before export -------------------------------------------------------
def _fold_bn_into(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d,
                  out_dim: int, repeat: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    # y = gamma * (x - mean) / sqrt(var + eps) + beta  with x = W a + b
    #   = (scale * W) a + (scale * (b - mean) + beta),   scale = gamma / sqrt(var + eps)
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    scale, shift = scale.repeat_interleave(repeat), shift.repeat_interleave(repeat)
    shape = [1] * weight.dim()
    shape[out_dim] = -1
    b = bias if bias is not None else torch.zeros_like(scale)
    return weight * scale.view(shape), b * scale + shift


@torch.no_grad()
def fold_generator(G: Generator) -> Generator:
    """A copy of G (in eval mode) with every BatchNorm folded into the layer before it."""
    G = copy.deepcopy(G).eval()
    lin = cast(nn.Linear, G.fc[0])
    w, b = _fold_bn_into(lin.weight, lin.bias, cast(nn.BatchNorm2d, G.fc_norm[0]), out_dim=0,
                         repeat=G.base * G.base)
    new = nn.Linear(lin.in_features, lin.out_features, bias=True)
    new.weight.copy_(w)
    new.bias.copy_(b)
    G.fc[0] = new
    G.fc_norm[0] = nn.Identity()
    mods = list(G.blocks)
    for i, m in enumerate(mods):
        if isinstance(m, nn.BatchNorm2d):
            conv = cast(nn.ConvTranspose2d, mods[i - 1])
            # ConvTranspose2d weight is [in, out, k, k]: output channels on dim 1.
            w, b = _fold_bn_into(conv.weight, conv.bias, m, out_dim=1)
            fused = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, cast(Any, conv.kernel_size),
                                       cast(Any, conv.stride), cast(Any, conv.padding), bias=True)
            fused.weight.copy_(w)
            cast(torch.Tensor, fused.bias).copy_(b)
            mods[i - 1], mods[i] = fused, nn.Identity()
    G.blocks = nn.Sequential(*[m for m in mods if not isinstance(m, nn.Identity)])
    return G


def bake_discriminator(D: Discriminator) -> Discriminator:
    """A copy of D with spectral norm's current weight made permanent (eval mode)."""
    D = copy.deepcopy(D).eval()
    for m in list(D.modules()):
        if parametrize.is_parametrized(m):
            for name in list(cast(Any, m).parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return D


def quantize(x: torch.Tensor) -> torch.Tensor:
    """float NCHW [-1, 1] -> uint8 NHWC by md.QUANTIZE_RULE: the torch side of the rule
    whose numpy side is gansample.generator.quantize (same constants, same order)."""
    x = torch.clamp(x * md.QUANT_SCALE + md.QUANT_OFFSET, 0.0, 255.0)
    return x.to(torch.uint8).permute(0, 2, 3, 1)


class Uint8Output(nn.Module):
    """Post-processing inside the graph: float NCHW [-1, 1] -> uint8 NHWC, by md.QUANTIZE_RULE."""

    def __init__(self, g: nn.Module, half: bool = False) -> None:
        super().__init__()
        self.g, self.fp16 = g, half

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        return quantize(self.g(z.half() if self.fp16 else z, label).float())


class MixOutput(nn.Module):
    """z + class_weights [B, num_classes] -> uint8 NHWC: for interpolating between classes."""

    def __init__(self, g: Generator | PhaseGenerator) -> None:
        super().__init__()
        self.g = g

    def forward(self, z: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        return quantize(self.g.forward_mix(z, class_weights))


# --- export ------------------------------------------------------------------------------
def generator_inputs(z: torch.Tensor, label: torch.Tensor | None) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """Example inputs and their ONNX names for exporting a generator: a label input only
    for class-conditional models (the model contract in docs/model-format.md)."""
    return ((z, label), ["z", "label"]) if label is not None else ((z,), ["z"])


def _to_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str],
             output: str | list[str]) -> Any:
    """``module`` as an ONNX ModelProto with a dynamic batch on every input; ``output``
    names its output (or outputs)."""
    import onnx
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    dyn = tuple({0: batch} for _ in names)
    # The exporter is chatty (progress lines, warnings about optional torchvision ops).
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    # torch.export logs the exceptions of tracing attempts it recovers from as ERROR lines.
    for name in ("torch._subclasses.fake_tensor", "torch.export", "torch._dynamo", "torch.fx.experimental"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, None, input_names=names,
                                    output_names=[output] if isinstance(output, str) else output,
                                    dynamic_shapes=dyn, dynamo=True, optimize=True, verbose=False)
    assert program is not None
    model = program.model_proto
    model = onnx.shape_inference.infer_shapes(model)
    return model


def _simplify(model: Any) -> Any:
    try:
        import onnxslim
    except ModuleNotFoundError:
        return model
    with redirect_stdout(io.StringIO()):
        return onnxslim.slim(model)


def _save(model: Any, path: Path) -> None:
    import onnx
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    atomic_write(path, data)


def _ort_run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def source_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def export_checkpoint(checkpoint: str, out: str | os.PathLike[str], name: str | None = None,
                      fp16: bool = True, parity_batch: int = 16,
                      metrics: dict[str, Any] | None = None, int8: bool = True,
                      features: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Export G (EMA weights) and D of ``checkpoint`` into the folder ``out``; returns a
    report with the parity figures. Raises GansampleError on bad input or failed parity.
    ``int8``: also the int8 CPU variant, gated in the space of ``features`` (none: the
    bundled features model of the checkpoint's dataset)."""
    outdir = Path(out)
    try:
        if outdir.exists() and not outdir.is_dir():
            raise bad_value("out", str(out), "a folder path (this path is an existing file)")
    except OSError as e:  # a name too long for the file system, a path through a file ...
        raise bad_value("out", str(out), f"a folder path that can be created ({e.strerror or e})") from None
    state = ckpt.load(checkpoint, "checkpoint")
    try:
        G = Generator(**state["g_args"])
        G.load_state_dict(state["G_ema"])
        D = Discriminator(**state["d_args"])
        D.load_state_dict(state["D"])
    except (KeyError, RuntimeError, TypeError) as e:
        raise GansampleError(f"checkpoint: {checkpoint} does not hold a usable gansample G/D "
                             f"({first_line(e)})", "checkpoint") from None
    feats = features_for(str(state.get("dataset", "")), features) if int8 else None

    def build(stage: Path) -> dict[str, Any]:
        report = _export_models(G, D, state, stage, name or outdir.resolve().name, fp16, parity_batch, metrics)
        if int8:
            add_int8(stage, feats, report)
        return report
    return publish(outdir, build, MODEL_FILES)


def _export_models(G: Generator, D: Discriminator, state: dict[str, Any], outdir: Path, name: str,
                   fp16: bool, parity_batch: int, metrics: dict[str, Any] | None) -> dict[str, Any]:
    G.eval()
    D.eval()
    base = _base_info(state, name, metrics)
    emitter = _Emitter(outdir)
    with torch.no_grad():
        ref, y = _export_generators(G, emitter, base, fp16, parity_batch)
        _export_discriminator(D, emitter, base, state, ref, y)
    return emitter.report


def _base_info(state: dict[str, Any], name: str, metrics: dict[str, Any] | None) -> md.ModelInfo:
    """The generator's metadata; every other file's is this with a few fields changed."""
    ga = state["g_args"]
    ncls = ga["num_classes"]
    class_names = list(state.get("class_names") or [])[:ncls] if ncls else []
    return md.ModelInfo(role="generator", img_resolution=ga["resolution"], img_channels=ga["channels"],
                        z_dim=ga["z_dim"], num_classes=ncls, class_names=class_names,
                        name=name, dataset=state.get("dataset", ""),
                        train_steps=int(state["step"]), source_commit=source_commit(),
                        metrics=metrics or {}, architecture=dict(ga))


class _Emitter:
    """Exports modules into one folder and records each file's size in ``report``."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.report: dict[str, Any] = {"files": {}}

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], output: str,
                 fname: str, info: md.ModelInfo) -> Path:
        model = _simplify(_to_onnx(module, args, names, output))
        md.write(model, info)
        path = self.outdir / fname
        _save(model, path)
        self.report["files"][fname] = path.stat().st_size
        return path


def _export_generators(G: Generator, emit: _Emitter, base: md.ModelInfo, fp16: bool,
                       parity_batch: int) -> tuple[np.ndarray, torch.Tensor]:
    """generator.onnx (checked for parity), the uint8, mix and fp16 variants. Returns
    PyTorch's images for the parity inputs and their labels (D's parity check uses them)."""
    g = fold_generator(G)
    fast = PhaseGenerator(g).eval()
    ncls = base.num_classes
    gen = torch.Generator().manual_seed(1234)
    z = torch.randn(parity_batch, base.z_dim, generator=gen)
    y = torch.randint(0, max(ncls, 1), (parity_batch,), generator=gen)
    g_args, g_names = generator_inputs(z, y if ncls else None)
    feeds = {"z": z.numpy(), **({"label": y.numpy()} if ncls else {})}
    ref = G(*g_args).numpy()
    p = emit(fast, g_args, g_names, "images", "generator.onnx", base)
    diff = float(np.abs(_ort_run(p, feeds) - ref).max())
    emit.report["generator_max_abs_diff"] = diff
    if not diff <= PARITY_TOL:
        raise GansampleError(f"export parity check failed: generator.onnx differs from PyTorch by "
                             f"{diff:.3g} (tolerance {PARITY_TOL})")
    variant = lambda v: md.ModelInfo(**{**base.__dict__, "output": md.UINT8_NHWC, "variant": v})  # noqa: E731
    emit(Uint8Output(fast), g_args, g_names, "images", "generator_uint8.onnx", variant("uint8"))
    if ncls:
        onehot = torch.nn.functional.one_hot(y, ncls).float()
        emit(MixOutput(fast), (z, onehot), ["z", "class_weights"], "images", "generator_mix.onnx", variant("mix"))
    if fp16:
        emit(Uint8Output(copy.deepcopy(g).half(), half=True), g_args, g_names, "images", "generator_fp16.onnx",
             variant("fp16"))
    return ref, y


def _export_discriminator(D: Discriminator, emit: _Emitter, base: md.ModelInfo, state: dict[str, Any],
                          ref: np.ndarray, y: torch.Tensor) -> None:
    """discriminator.onnx, checked for parity on the generator's parity images."""
    d = bake_discriminator(D)
    ncls = base.num_classes
    x = torch.from_numpy(ref)
    d_args = (x, y) if ncls else (x,)
    d_names = ["images", "label"] if ncls else ["images"]
    d_ref = d(*d_args).numpy()
    p = emit(d, d_args, d_names, "logits", "discriminator.onnx",
             md.ModelInfo(**{**base.__dict__, "role": "discriminator", "architecture": dict(state["d_args"])}))
    d_feeds = {"images": ref, **({"label": y.numpy()} if ncls else {})}
    ddiff = float(np.abs(_ort_run(p, d_feeds) - d_ref).max())
    emit.report["discriminator_max_abs_diff"] = ddiff
    if not ddiff <= PARITY_TOL * max(1.0, float(np.abs(d_ref).max())):
        raise GansampleError(f"export parity check failed: discriminator.onnx differs from PyTorch "
                             f"by {ddiff:.3g} (tolerance {PARITY_TOL} relative)")
