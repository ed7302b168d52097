"""Bring your own GAN: any PyTorch generator (and discriminator) into the model contract.

``export_generator(G, out, z_dim=100)`` wraps ``G`` in an adapter with the contract's
signature (latents ``z`` [B, z_dim] reshaped to what G takes, e.g. DCGAN's [B, nz, 1, 1];
labels ``label`` [B] as indices or one-hot; images out as float NCHW in [-1, 1] whatever
G's range and layout; for style-based generators, truncation in W towards the average w
with a ``psi`` input), exports it with torch's current exporter (falling back to the
TorchScript exporter where that fails), writes the same variants as the trainer's path and
checks parity against PyTorch at two batch sizes. Random noise drawn inside G (per-layer
noise of style-based generators) is frozen: one fixed map per call site, the same for every
image, so an image depends only on (model, seed, class, psi).
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import inspect
import io
import logging
import math
import os
import pickle
import warnings
import zipfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gansample import metadata as md
from gansample.errors import GansampleError, bad_value, check_count, first_line
from gansample.files import publish
from gansample.reduced import add_int8, features_for
from gansample.registry import MODEL_FILES
from gansample.wrap import MAX_CLASSES, MAX_Z_DIM, check_class_names

from .export import _ort_run, _save, _simplify, _to_onnx, quantize

log = logging.getLogger("gansample")
CONDITIONING = ("index", "onehot")
MAX_ONEHOT_CLASSES = 4096  # a 64 MB float32 one-hot table in the exported graph
RANGES = ((-1.0, 1.0), (0.0, 1.0))
LAYOUTS = ("NCHW", "NHWC")
PARITY_BATCHES = (1, 7)
PARITY_TOL = 1e-4  # relative to max(1, |reference|)
MAX_LATENT_DIMS = 8  # dimensions of the latent shape, without the batch


def check_latent_shape(latent_shape: Sequence[int]) -> tuple[int, ...]:
    """The latent shape without the batch (e.g. (100, 1, 1)), its sizes checked before any
    tensor is built, or a GansampleError naming ``latent_shape``."""
    try:
        dims = list(latent_shape)
        text = ",".join(str(d) for d in dims)
    except TypeError:
        dims, text = [], repr(latent_shape)
    valid = (f"1 to {MAX_LATENT_DIMS} integers >= 1 joined by commas, e.g. 100,1,1, whose product (the latent "
             f"size) is at most {MAX_Z_DIM}")
    try:
        shape = tuple(check_count("latent_shape", d, 1, MAX_Z_DIM) for d in dims)
    except GansampleError:
        raise bad_value("latent_shape", text, valid) from None
    if not 1 <= len(shape) <= MAX_LATENT_DIMS or math.prod(shape) > MAX_Z_DIM:
        raise bad_value("latent_shape", text, valid)
    return shape


# --- noise --------------------------------------------------------------------------------
class FrozenNoise:
    """Inside ``with noise:``, torch.randn and torch.randn_like return fixed tensors: the
    k-th call of a forward pass gets the k-th map of a seeded bank, drawn for one image and
    broadcast over the batch. Call :meth:`reset` at the start of every forward pass."""

    def __init__(self, seed: int = 0) -> None:
        self.bank: list[torch.Tensor] = []
        self.i = 0
        self.gen = torch.Generator().manual_seed(seed)
        self.dtype = torch.float32  # of the maps handed out (float16 while an fp16 variant is traced)
        self._saved: tuple[Any, ...] | None = None
        self._randn = torch.randn

    def reset(self) -> None:
        self.i = 0

    def _next(self, shape: Sequence[Any], dtype: Any = None, device: Any = None) -> torch.Tensor:
        one = tuple(int(s) for s in shape[1:])
        if self.i == len(self.bank):
            self.bank.append(self._randn((1, *one), generator=self.gen))
        t = self.bank[self.i]
        self.i += 1
        if tuple(t.shape[1:]) != one:
            raise GansampleError(f"the generator draws noise of shape {list(shape)} where the frozen map has "
                                 f"{list(t.shape)}: its noise calls change between forward passes")
        t = t.to(dtype=dtype or self.dtype, device=device or "cpu")
        return t.expand(*shape) if len(shape) else t.reshape(())

    def randn(self, *size: Any, **kw: Any) -> torch.Tensor:
        if kw.get("generator") is not None:  # explicitly seeded draws are left alone
            return self._randn(*size, **kw)
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (list, tuple, torch.Size)) else size
        return self._next(shape, kw.get("dtype"), kw.get("device"))

    def randn_like(self, x: torch.Tensor, **kw: Any) -> torch.Tensor:
        return self._next(tuple(x.shape), kw.get("dtype") or x.dtype, kw.get("device") or x.device)

    def __enter__(self) -> "FrozenNoise":
        self._saved = (torch.randn, torch.randn_like, F.conv2d)
        torch.randn, torch.randn_like = self.randn, self.randn_like  # type: ignore[assignment]
        F.conv2d = _conv2d_batch_groups  # type: ignore[assignment]
        self.reset()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        torch.randn, torch.randn_like, F.conv2d = self._saved


_conv2d = F.conv2d


def _conv2d_batch_groups(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                         stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: Any = 1) -> torch.Tensor:
    """F.conv2d, except for the modulated-convolution trick of style-based generators
    (the batch folded into channels, one group per image: x [1, B*cin, H, W], groups=B).
    ONNX needs a constant group count, so that case is computed without groups, as a sum
    of k*k shifted einsums over the batch: the same numbers, any batch size."""
    if isinstance(groups, int) and groups == 1 or x.shape[0] != 1 or stride not in (1, (1, 1)) \
            or dilation not in (1, (1, 1)) or isinstance(padding, str):
        return _conv2d(x, weight, bias, stride, padding, dilation, groups)
    g = groups
    _, gc, h, w = x.shape
    cout_g, cin, kh, kw = weight.shape
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    xs = F.pad(x.reshape(g, cin, h, w), (pw, pw, ph, ph))
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    wt = weight.reshape(g, -1, cin, kh, kw)  # [B, cout, cin, kh, kw]
    out = None
    for i in range(kh):
        for j in range(kw):
            term = torch.einsum("goc,gchw->gohw", wt[:, :, :, i, j], xs[:, :, i:i + ho, j:j + wo])
            out = term if out is None else out + term
    assert out is not None
    out = out.reshape(1, -1, ho, wo)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


# --- the adapter ------------------------------------------------------------------------------
class ContractAdapter(nn.Module):
    """Any generator -> the contract: ``forward(z [B, z_dim], label [B]?, psi [B]?)`` returns
    float NCHW in [-1, 1]. ``soft=True`` takes class weights [B, K] instead of labels (the
    mix variant, for one-hot-conditioned generators)."""

    def __init__(self, G: nn.Module, latent_shape: Sequence[int], num_classes: int = 0,
                 conditioning: str | None = None, output_range: tuple[float, float] = (-1.0, 1.0),
                 layout: str = "NCHW", truncation: str = "z", mapping: str = "mapping",
                 synthesis: str = "synthesis", w_avg: torch.Tensor | None = None,
                 noise: FrozenNoise | None = None, soft: bool = False) -> None:
        super().__init__()
        self.G = G
        self.latent_shape = tuple(int(d) for d in latent_shape)
        self.num_classes, self.conditioning = num_classes, conditioning
        self.lo, self.hi = float(output_range[0]), float(output_range[1])
        self.layout, self.truncation, self.soft = layout, truncation, soft
        self.mapping_name, self.synthesis_name = mapping, synthesis
        self.noise = noise
        self.eye: torch.Tensor
        if num_classes and conditioning == "onehot":
            self.register_buffer("eye", torch.eye(num_classes))
        if truncation == "w":
            assert w_avg is not None
            self.register_buffer("w_avg", w_avg.detach().float().clone())

    def onehot(self, label: torch.Tensor) -> torch.Tensor:
        return self.eye.index_select(0, label)

    def _condition(self, label: torch.Tensor | None) -> torch.Tensor | None:
        if not self.num_classes or label is None:
            return None
        if self.soft:
            return label  # class weights [B, K]
        if self.conditioning == "onehot":
            return self.onehot(label)
        return label

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None,
                psi: torch.Tensor | None = None) -> torch.Tensor:
        if self.noise is not None:
            self.noise.reset()
        x = z.reshape((z.shape[0], *self.latent_shape))
        y = self._condition(label)
        extra = () if y is None else (y,)
        if self.truncation == "w":
            w = getattr(self.G, self.mapping_name)(x, *extra)
            p = (psi if psi is not None else torch.ones(z.shape[0])).reshape((-1,) + (1,) * (w.dim() - 1))
            w = self.w_avg + p.to(w.dtype) * (w - self.w_avg)
            img = getattr(self.G, self.synthesis_name)(w)
        else:
            img = self.G(x, *extra)
        if self.layout == "NHWC":
            img = img.permute(0, 3, 1, 2)
        if (self.lo, self.hi) != (-1.0, 1.0):
            img = (img - self.lo) * (2.0 / (self.hi - self.lo)) - 1.0
        return img


class DiscriminatorAdapter(nn.Module):
    """Any discriminator -> the contract: float NCHW [-1, 1] images (+ labels) in, logits [B] out."""

    def __init__(self, D: nn.Module, num_classes: int, conditioning: str | None,
                 input_range: tuple[float, float], layout: str) -> None:
        super().__init__()
        self.D, self.num_classes, self.conditioning = D, num_classes, conditioning
        self.lo, self.hi, self.layout = float(input_range[0]), float(input_range[1]), layout
        self.eye: torch.Tensor
        if num_classes and conditioning == "onehot":
            self.register_buffer("eye", torch.eye(num_classes))

    def onehot(self, label: torch.Tensor) -> torch.Tensor:
        return self.eye.index_select(0, label)

    def forward(self, images: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        x = images
        if (self.lo, self.hi) != (-1.0, 1.0):
            x = (x + 1.0) * ((self.hi - self.lo) / 2.0) + self.lo
        if self.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        extra: tuple[torch.Tensor, ...] = ()
        if self.num_classes and label is not None:
            extra = (self.onehot(label) if self.conditioning == "onehot" else label,)
        return self.D(x, *extra).reshape(images.shape[0], -1)[:, 0]


class _Quantized(nn.Module):
    """A contract adapter with the uint8 NHWC output inside the graph (``half``: fp16 compute)."""

    def __init__(self, g: nn.Module, names: Sequence[str], half: bool = False) -> None:
        super().__init__()
        self.g, self.fp16 = g, half
        # The adapter's keyword for each input after z (labels and class weights share one).
        self.keys = ["psi" if n == "psi" else "label" for n in names[1:]]

    def forward(self, z: torch.Tensor, a: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
        # Explicit parameters, not *args: torch.export maps dynamic shapes to named inputs.
        kw = {k: t for k, t in zip(self.keys, (a, b)) if t is not None}
        if self.fp16:
            z = z.half()
            kw = {k: t.half() if t.is_floating_point() else t for k, t in kw.items()}
        return quantize(self.g(z, **kw).float())


# --- export -------------------------------------------------------------------------------
def _export(module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], output: str) -> tuple[Any, str]:
    """(ONNX model, exporter used): torch's current exporter, else the TorchScript one."""
    try:
        return _to_onnx(module, args, names, output), "dynamo"
    except Exception as e:  # the exporter raises many types; the fallback is tried for any
        first = first_line(e)
        log.info("torch.onnx dynamo exporter failed (%s); trying the TorchScript exporter", first)
    import onnx
    buf = io.BytesIO()
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, args, buf, input_names=names,  # type: ignore[arg-type]
                              output_names=[output], dynamo=False, opset_version=18, dynamic_axes={n: {0: "batch"} for n in [*names, output]})
        except Exception as e:
            first = first_line(e, 300)
            raise GansampleError(f"module: neither torch exporter can export this generator ({first})",
                                 "module") from None
    return onnx.shape_inference.infer_shapes(onnx.load_from_string(buf.getvalue())), "torchscript"


def find_latent_shape(G: nn.Module, z_dim: int, num_classes: int = 0, conditioning: str | None = None,
                      call: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None
                      ) -> tuple[int, ...]:
    """The latent shape G takes, found by trying [B, z] and then [B, z, 1, 1]."""
    z_dim = check_count("z_dim", z_dim, 1, MAX_Z_DIM)
    y = None
    if num_classes:
        y = (torch.zeros(1, dtype=torch.long) if conditioning != "onehot" else
             F.one_hot(torch.zeros(1, dtype=torch.long), num_classes).float())
    shapes = ((z_dim,), (z_dim, 1, 1))

    def attempt(shape: tuple[int, ...], label: torch.Tensor | None) -> str | None:
        """None where G makes a 4-D image from these inputs, else what went wrong."""
        try:
            with torch.no_grad():
                out = (call(G, torch.zeros(1, *shape), label) if call else
                       G(torch.zeros(1, *shape), *(() if label is None else (label,))))
        except Exception as e:  # the user's module raises what it raises
            return f"{type(e).__name__}: {first_line(e, 120)}"
        return None if isinstance(out, torch.Tensor) and out.dim() == 4 else \
            f"output {list(getattr(out, 'shape', [])) or type(out).__name__}"

    errors = []
    for shape in shapes:
        err = attempt(shape, y)
        if err is None:
            return shape
        errors.append(err)
    if y is not None:
        for shape in shapes:
            if attempt(shape, None) is None:
                raise GansampleError(f"num_classes: got {num_classes} classes, but the generator takes no labels: "
                                     f"it makes images from [B, {', '.join(map(str, shape))}] latents alone and "
                                     f"fails when given labels too ({errors[shapes.index(shape)]})", "num_classes")
    if len(set(errors)) == 1 and not errors[0].startswith("output") and str(z_dim) not in errors[0]:
        # The same failure whatever the latent's shape: the module's code, not the latent size.
        raise GansampleError(f"module: calling the generator failed: {errors[0]} (on [1, {z_dim}] and "
                             f"[1, {z_dim}, 1, 1] latents)", "module")
    raise GansampleError(f"z_dim: got {z_dim}; the generator takes neither [B, {z_dim}] nor [B, {z_dim}, 1, 1] "
                         f"latents and returns a 4-D image ([{z_dim}]: {errors[0]}; [{z_dim}, 1, 1]: {errors[1]}); "
                         "give the shape with latent_shape", "z_dim", refs=["latent_shape"])


def export_generator(G: nn.Module, out: str | Path, *, z_dim: int | None = None,
                     latent_shape: Sequence[int] | None = None, num_classes: int = 0,
                     class_names: Sequence[str] | None = None, conditioning: str | None = None,
                     output_range: tuple[float, float] = (-1.0, 1.0), layout: str = "NCHW",
                     truncation: str = "z", mapping: str = "mapping", synthesis: str = "synthesis",
                     w_avg: torch.Tensor | str | None = "w_avg", discriminator: nn.Module | None = None,
                     name: str | None = None, fp16: bool = True, noise_seed: int = 0,
                     source: str = "", int8: bool = True,
                     features: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Export any generator ``G`` (an ``nn.Module``) into the model folder ``out``.

    ``z_dim`` (or ``latent_shape``, e.g. ``(100, 1, 1)``; found by trying when only z_dim
    is given); ``num_classes`` with ``conditioning`` "index" (G takes int labels) or
    "onehot" (G takes one-hot rows) and ``class_names``; ``output_range`` (-1, 1) or
    (0, 1) and ``layout`` "NCHW" or "NHWC" of G's output; ``truncation`` "w" for a
    style-based G with ``G.mapping(z[, c]) -> w``, ``G.synthesis(w) -> image`` and an
    average ``w_avg`` (a tensor or the name of G's attribute); ``discriminator`` takes
    images in the same range and layout. ``int8``: also the int8 CPU variant, gated in the
    space of the ``features`` model (without one it is written but never chosen
    automatically). Returns a report: files, parity figures and the exporter used. Raises
    GansampleError naming the argument on bad input or failed parity.
    """
    if not isinstance(G, nn.Module):
        raise bad_value("G", type(G).__name__, "a torch.nn.Module")
    if layout not in LAYOUTS:
        raise bad_value("layout", layout, f"one of {', '.join(LAYOUTS)}")
    rng = (float(output_range[0]), float(output_range[1]))
    if rng not in RANGES:
        raise bad_value("output_range", output_range, "(-1, 1) or (0, 1)")
    if truncation not in md.TRUNCATION_SPACES:
        raise bad_value("truncation", truncation, f"one of {', '.join(md.TRUNCATION_SPACES)}")
    if not str(out).strip():
        raise bad_value("out", str(out), "a folder path")
    num_classes = check_count("num_classes", num_classes, 0, MAX_CLASSES)
    if num_classes and conditioning not in CONDITIONING:
        raise bad_value("conditioning", conditioning, f"one of {', '.join(CONDITIONING)} for a conditional G")
    if conditioning == "onehot" and num_classes > MAX_ONEHOT_CLASSES:
        # The adapters carry a num_classes x num_classes table into the ONNX file.
        raise bad_value("class_names", f"<{num_classes} names>",
                        f"at most {MAX_ONEHOT_CLASSES} classes with --conditioning onehot "
                        f"(its one-hot table is stored in the model; index conditioning takes up to {MAX_CLASSES})")
    if not num_classes and conditioning is not None:
        raise GansampleError(f"conditioning: got {conditioning!r}; nothing for an unconditional generator (a "
                             "conditional one needs its class_names)", "conditioning", refs=["class_names"])
    names = check_class_names(class_names or [])
    if names and len(names) != num_classes:
        raise bad_value("class_names", f"<{len(names)} names>", f"{num_classes} names (num_classes)")
    if z_dim is not None:
        z_dim = check_count("z_dim", z_dim, 1, MAX_Z_DIM)
    if latent_shape is not None:
        latent_shape = check_latent_shape(latent_shape)
    G = G.eval()
    w_tensor = None
    if truncation == "w":
        for attr in (mapping, synthesis):
            if not callable(getattr(G, attr, None)):
                raise bad_value("truncation", "w", f"a generator with G.{mapping}(z) and G.{synthesis}(w) "
                                f"(it has no callable {attr!r}; name them with mapping=, synthesis=)")
        w_tensor = getattr(G, w_avg) if isinstance(w_avg, str) else w_avg
        if not isinstance(w_tensor, torch.Tensor):
            raise bad_value("w_avg", w_avg if isinstance(w_avg, str) else type(w_avg).__name__,
                            "a tensor, or the name of G's attribute holding the average w")
    noise = FrozenNoise(noise_seed)

    def make(soft: bool = False) -> ContractAdapter:
        return ContractAdapter(G, shape, num_classes, conditioning, rng, layout, truncation, mapping, synthesis,
                               w_tensor, noise, soft).eval()

    with noise, torch.no_grad():
        if latent_shape is None:
            if z_dim is None:
                raise GansampleError("z_dim: got None; the latent size (or latent_shape)", "z_dim",
                                     refs=["latent_shape"])
            shape = find_latent_shape(G, z_dim, num_classes, conditioning,
                                      (lambda m, x, y: make_probe(m, x, y)) if truncation == "w" else None)
        else:
            shape = tuple(latent_shape)
        zdim = math.prod(shape)
        if z_dim is not None and z_dim != zdim:
            raise GansampleError(f"z_dim: got {z_dim}; the product of latent_shape {list(shape)} ({zdim})", "z_dim",
                                 refs=["latent_shape"])
        adapter = make()
        probe = _example_inputs(adapter, 1, zdim, num_classes, truncation)
        try:
            img = adapter(*probe[0])
        except Exception as e:  # the user's module raises what it raises
            first = first_line(e)
            raise GansampleError(f"module: the generator fails on the contract's inputs ({type(e).__name__}: {first})",
                                 "module") from None
        if img.dim() != 4 or img.shape[1] not in (1, 3) or img.shape[2] != img.shape[3]:
            raise bad_value("layout", layout, f"a layout that makes G's output [B, C, H, H] with C 1 or 3; "
                            f"G returns {list(img.shape)} read as {layout} (is it "
                            f"{'NHWC' if layout == 'NCHW' else 'NCHW'}?)")
        res, ch = int(img.shape[2]), int(img.shape[1])
    info = md.ModelInfo(role="generator", img_resolution=res, img_channels=ch, z_dim=zdim,
                        num_classes=num_classes, class_names=names, name=name or Path(out).resolve().name,
                        provenance="torch-module", truncation=truncation,
                        architecture={"module": f"{type(G).__module__}.{type(G).__qualname__}", "source": source,
                                      "latent_shape": list(shape), "conditioning": conditioning or "",
                                      "output_range": list(rng), "layout": layout, "noise": "frozen",
                                      **({"w_avg": [round(float(v), 7) for v in w_tensor.flatten()]}
                                         if w_tensor is not None else {})})
    info.validate("G")
    d_adapter = (DiscriminatorAdapter(discriminator.eval(), num_classes, conditioning, rng, layout).eval()
                 if discriminator is not None else None)
    feats = features_for("", features) if int8 else None

    def build(stage: Path) -> dict[str, Any]:
        report = _write_variants(stage, make, d_adapter, info, fp16, noise)
        if int8:
            add_int8(stage, feats, report)
        return report
    return publish(Path(out), build, MODEL_FILES)


def make_probe(G: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """For latent-shape discovery on style-based generators: mapping then synthesis."""
    w = G.mapping(x, *(() if y is None else (y,)))  # type: ignore[operator]
    return G.synthesis(w)  # type: ignore[operator]


def _example_inputs(adapter: ContractAdapter, batch: int, z_dim: int, num_classes: int, truncation: str,
                    seed: int = 1234) -> tuple[tuple[torch.Tensor, ...], list[str], dict[str, np.ndarray]]:
    gen = torch.Generator().manual_seed(seed)
    args: list[torch.Tensor] = [torch.randn(batch, z_dim, generator=gen)]
    names = ["z"]
    if num_classes:
        args.append(torch.randint(0, num_classes, (batch,), generator=gen))
        names.append("label")
    if truncation == "w":
        args.append(torch.rand(batch, generator=gen) * 0.5 + 0.5)
        names.append("psi")
    return tuple(args), names, {n: a.numpy() for n, a in zip(names, args)}


def _write_variants(stage: Path, make: Callable[..., ContractAdapter], d: DiscriminatorAdapter | None,
                    info: md.ModelInfo, fp16: bool, noise: FrozenNoise) -> dict[str, Any]:
    report: dict[str, Any] = {"files": {}, "exporter": {}}
    adapter = make()

    def emit(module: nn.Module, args: tuple[torch.Tensor, ...], names: list[str], output: str, fname: str,
             meta: md.ModelInfo) -> Path:
        model, used = _export(module, args, names, output)
        model = _simplify(model)
        md.write(model, meta)
        path = stage / fname
        _save(model, path)
        report["files"][fname] = path.stat().st_size
        report["exporter"][fname] = used
        return path

    with noise, torch.no_grad():
        args, names, _ = _example_inputs(adapter, 2, info.z_dim, info.num_classes, info.truncation)
        p = emit(adapter, args, names, "images", "generator.onnx", info)
        report["generator_max_abs_diff"] = _parity(p, adapter, info, "generator.onnx")
        variant = lambda v: md.ModelInfo(**{**info.__dict__, "output": md.UINT8_NHWC, "variant": v})  # noqa: E731
        emit(_Quantized(adapter, names), args, names, "images", "generator_uint8.onnx", variant("uint8"))
        if info.num_classes and adapter.conditioning == "onehot":
            soft = make(soft=True)
            w = torch.nn.functional.one_hot(args[1], info.num_classes).float()
            mix_names = ["z", "class_weights", *names[2:]]
            emit(_Quantized(soft, mix_names), (args[0], w, *args[2:]), mix_names, "images",
                 "generator_mix.onnx", variant("mix"))
        x = adapter(*args)  # D's parity images, before anything else runs G
        if fp16:
            shared, adapter.noise = adapter.noise, None  # the noise bank is shared, not copied
            half = copy.deepcopy(adapter).half()
            adapter.noise = half.noise = shared
            noise.dtype = torch.float16
            try:
                emit(_Quantized(half, names, half=True), args, names, "images", "generator_fp16.onnx",
                     variant("fp16"))
            except GansampleError as e:  # fp16 is a GPU speed variant: its absence is not fatal
                log.warning("no fp16 variant: %s", e)
            finally:
                noise.dtype = torch.float32
        if d is not None:
            d_args = (x, args[1]) if info.num_classes else (x,)
            d_names = ["images", "label"] if info.num_classes else ["images"]
            d_info = md.ModelInfo(**{**info.__dict__, "role": "discriminator", "truncation": "z"})
            p = emit(d, d_args, d_names, "logits", "discriminator.onnx", d_info)
            ref = d(*d_args).numpy()
            got = _ort_run(p, {n: a.numpy() for n, a in zip(d_names, d_args)})
            diff = float(np.abs(got.reshape(-1) - ref.reshape(-1)).max())
            report["discriminator_max_abs_diff"] = diff
            if not diff <= PARITY_TOL * max(1.0, float(np.abs(ref).max())):
                raise GansampleError(f"export parity check failed: discriminator.onnx differs from PyTorch by "
                                     f"{diff:.3g} (tolerance {PARITY_TOL} relative)")
    return report


def _parity(path: Path, adapter: ContractAdapter, info: md.ModelInfo, fname: str) -> float:
    """ONNX vs PyTorch at two batch sizes; fails loudly above the tolerance."""
    worst = 0.0
    for b in PARITY_BATCHES:
        args, names, feeds = _example_inputs(adapter, b, info.z_dim, info.num_classes, info.truncation, seed=99 + b)
        ref = adapter(*args).numpy()
        got = _ort_run(path, feeds)
        diff = float(np.abs(got - ref).max())
        worst = max(worst, diff)
        if not diff <= PARITY_TOL * max(1.0, float(np.abs(ref).max())):
            raise GansampleError(f"export parity check failed: {fname} differs from PyTorch by {diff:.3g} at "
                                 f"batch size {b} (tolerance {PARITY_TOL} relative)")
    return worst


# --- modules, factories and weights from files (the CLI's route) ---------------------------------
def load_module(spec: str, args: dict[str, Any] | None = None) -> nn.Module:
    """``path/to/models.py:Name``: a class (or factory function) built with ``args``."""
    path_text, sep, attr = spec.rpartition(":")
    if not sep or not attr or not path_text:
        raise bad_value("module", spec, "FILE.py:NAME, e.g. models.py:Generator")
    path = Path(path_text)
    if not path.is_file() or path.suffix != ".py":
        raise bad_value("module", spec, f"an existing .py file before the colon ({path} is not one)")
    mod_name = f"gansample_user_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(mod_name, path)
    assert loader_spec is not None and loader_spec.loader is not None
    module = importlib.util.module_from_spec(loader_spec)
    try:
        loader_spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # the user's file: SyntaxError, ImportError, anything it raises
        first = first_line(e)
        raise bad_value("module", spec, f"a file that imports cleanly ({type(e).__name__}: {first})") from None
    target = getattr(module, attr, None)
    if target is None:
        found = sorted(n for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, nn.Module)
                       and v.__module__ == mod_name)
        raise bad_value("module", spec, f"a class or function defined in {path.name}; its nn.Module classes: "
                        f"{', '.join(found) or 'none'}")
    if inspect.isclass(target) and not issubclass(target, nn.Module):
        raise bad_value("module", spec, f"a torch.nn.Module class; {attr} is a {target.__name__} class "
                        "that does not derive from nn.Module")
    if not callable(target):
        raise bad_value("module", spec, f"a class or factory function; {attr} is a {type(target).__name__}")
    kwargs = args or {}
    try:
        inspect.signature(target).bind(**kwargs)
    except TypeError as e:
        raise bad_value("arg", kwargs, f"arguments {attr} accepts ({e})") from None
    except ValueError:  # no signature to read (a builtin): the call itself checks
        pass
    try:
        obj = target(**kwargs)
    except (Exception, SystemExit) as e:  # the user's code raises what it raises
        raise GansampleError(f"module: calling {attr}() failed: {type(e).__name__}: {first_line(e)}",
                             "module") from None
    if not isinstance(obj, nn.Module):
        raise bad_value("module", spec, f"a factory that returns an nn.Module; {attr} returned "
                        f"{type(obj).__name__}")
    return obj


def parse_args(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> a dict (values read as Python literals, else as strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise bad_value("arg", item, "KEY=VALUE with KEY a Python identifier, e.g. ngf=64")
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value
    return out


STATE_KEYS = ("state_dict", "model", "generator", "netG", "G", "g_ema", "G_ema", "discriminator", "netD", "D")


def load_weights(module: nn.Module, path: str | Path, key: str | None = None, arg: str = "weights") -> None:
    """Load a state dict saved with torch.save (``weights_only=True``: a pickle that carries
    code is refused and never runs), directly or under ``key`` in a dict."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise bad_value(arg, str(path), "an existing weights file") from None
    except pickle.UnpicklingError as e:
        first = first_line(e, 160, "")
        raise GansampleError(f"{arg}: {path} holds pickled objects other than tensors, which are never "
                             f"loaded (it may carry code) ({first})", arg) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise GansampleError(f"{arg}: {path} cannot be read as torch weights "
                             f"({first_line(e, 160)})", arg) from None
    state = _find_state_dict(obj, key, path, arg)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise GansampleError(f"{arg}: {path} does not match the module: missing {', '.join(missing[:4]) or 'none'}"
                             f"{' ...' if len(missing) > 4 else ''}; unexpected "
                             f"{', '.join(unexpected[:4]) or 'none'}{' ...' if len(unexpected) > 4 else ''}", arg)
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise GansampleError(f"{arg}: {path}: {k} has shape {list(state[k].shape)}, the module's "
                             f"{list(own[k].shape)} (check --arg values)", arg)
    module.load_state_dict(state)


def _find_state_dict(obj: Any, key: str | None, path: str | Path, arg: str) -> dict[str, torch.Tensor]:
    def is_state(x: Any) -> bool:
        return isinstance(x, dict) and bool(x) and all(isinstance(v, torch.Tensor) for v in x.values())
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            keys = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
            raise bad_value("weights_key", key, f"a key of the dict in {path} (it has: {keys[:200]})")
        obj = obj[key]
    if is_state(obj):
        return dict(obj)
    if isinstance(obj, dict):
        for k in STATE_KEYS:
            if is_state(obj.get(k)):
                return dict(obj[k])
    raise GansampleError(f"{arg}: {path} holds no state dict (a dict of tensors) at its top level or under "
                         f"{', '.join(STATE_KEYS)}; name the key with --weights-key", arg)

