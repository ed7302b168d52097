"""The encoder behind `gansample project`: a small CNN trained to invert a generator,
image -> z (+ class logits), exported beside it as ``encoder.onnx`` (role ``encoder``).

It learns from the generator's own samples, drawn through the runtime (onnxruntime) on
the fly: no dataset and no torch generator are needed, so any model folder gansample can
sample from (our trainer's, an exported module, a wrapped ONNX file) gets an encoder. Its
guess is the starting point of the gradient-free refinement in gansample.projection.

    gansample train-encoder --model fashion-mnist --steps 3000
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gansample import metadata as md
from gansample.errors import bad_value, check_count
from gansample.files import atomic_write, ensure_outdir, file_sha256
from gansample.generator import Generator
from gansample.registry import ENCODER_FILE

from .export import _to_onnx

log = logging.getLogger("gansample")
MAX_STEPS = 1_000_000
MAX_BATCH = 4096


class Encoder(nn.Module):
    """uint8 NHWC [B, R, R, C] -> z [B, z_dim] (and class logits [B, K] when K > 0).

    Strided 4x4 convolutions halve the image down to at most 4x4, then two linear layers.
    For 28 px and width 64: 28 -> 14 -> 7 -> 3."""

    def __init__(self, resolution: int, channels: int, z_dim: int, num_classes: int = 0, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        size, ch = resolution, width
        while size > 4:
            out = min(ch * 2, 8 * width)
            layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            size, ch = size // 2, out
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(ch * size * size, 512), nn.LeakyReLU(0.2))
        self.z = nn.Linear(512, z_dim)
        self.cls = nn.Linear(512, num_classes) if num_classes else None

    def forward(self, images: torch.Tensor) -> Any:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        h = self.fc(self.net(x))
        if self.cls is None:
            return self.z(h)
        return self.z(h), self.cls(h)


def train_encoder(g: Generator, steps: int = 3000, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
                  width: int = 64, progress: Callable[[int, float], None] | None = None) -> tuple[Encoder, dict[str, Any]]:
    """Train an encoder for ``g`` on fresh samples of ``g`` (z ~ N(0, I), psi 1, uniform
    classes). Loss: squared error on z plus cross-entropy on the class. Returns the
    encoder (eval mode) and its figures on 2,048 held-out samples."""
    steps = check_count("steps", steps, 1, MAX_STEPS)
    batch_size = check_count("batch_size", batch_size, 2, MAX_BATCH)
    info = g.info
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    enc = Encoder(info.img_resolution, info.img_channels, info.z_dim, info.num_classes, width)
    opt = torch.optim.AdamW(enc.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        z = rng.standard_normal((n, info.z_dim), dtype=np.float32)
        y = rng.integers(0, info.num_classes, n) if info.num_classes else None
        return g.run(z, y), z, y

    enc.train()
    for step in range(steps):
        imgs, z, y = draw(batch_size)
        out = enc(torch.from_numpy(imgs))
        z_hat, logits = out if info.num_classes else (out, None)
        loss = F.mse_loss(z_hat, torch.from_numpy(z))
        if logits is not None and y is not None:
            loss = loss + 0.1 * F.cross_entropy(logits, torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step + 1, loss.item())
    enc.eval()
    imgs, z, y = draw(2048)
    with torch.no_grad():
        out = enc(torch.from_numpy(imgs))
    z_hat = (out[0] if info.num_classes else out).numpy()
    # Share of z's variance the encoder explains (1 = exact inverse, 0 = predicts the mean).
    figures: dict[str, Any] = {"z_r2": round(float(1 - ((z_hat - z) ** 2).sum() / ((z - z.mean(0)) ** 2).sum()), 4),
                               "train_steps": steps, "batch_size": batch_size}
    if info.num_classes and y is not None:
        figures["class_accuracy"] = round(float((out[1].argmax(1).numpy() == y).mean()), 4)
    return enc, figures


def export_encoder(enc: Encoder, g: Generator, figures: dict[str, Any], out: str | Path) -> Path:
    """Write ``enc`` as an ONNX file with role ``encoder`` that names the generator file
    it inverts (by SHA-256), checked against onnxruntime before it is moved into place."""
    import onnx
    import onnxruntime as ort

    info = g.info
    dummy = torch.zeros(2, info.img_resolution, info.img_resolution, info.img_channels, dtype=torch.uint8)
    proto = _to_onnx(enc, (dummy,), ["images"], ["z", "class_logits"] if info.num_classes else ["z"])
    gen_path = g.files.generators.get("fp32") or g.session.path  # the family's portable file
    meta = md.ModelInfo(role="encoder", img_resolution=info.img_resolution, img_channels=info.img_channels,
                        z_dim=info.z_dim, num_classes=info.num_classes, class_names=list(info.class_names),
                        output=md.UINT8_NHWC, name=f"{g.name}-encoder", dataset=info.dataset,
                        train_steps=int(figures.get("train_steps", 0)), metrics=figures,
                        architecture={"generator_file": gen_path.name, "generator_sha256": file_sha256(gen_path)},
                        provenance=info.provenance)
    md.write(proto, meta)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    # Parity with torch before the file is published.
    probe = torch.randint(0, 256, dummy.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = enc(probe)
    ref_z = (ref[0] if info.num_classes else ref).numpy()
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["z"], {"images": probe.numpy()})[0]
    if not np.allclose(got, ref_z, atol=1e-3):
        raise RuntimeError(f"encoder export parity failed: max |diff| {np.abs(got - ref_z).max():.2e}")
    path = encoder_path(out)
    atomic_write(path, data)
    return path


def encoder_path(out: str | Path) -> Path:
    """``out`` as given (a .onnx file) or ``out``/encoder.onnx (a folder, created)."""
    path = Path(out)
    if path.suffix == ".onnx":
        ensure_outdir(path.parent, "out")
        return path
    return ensure_outdir(path, "out") / ENCODER_FILE


def main(model: str | None, steps: int, batch_size: int, out: str | None, device: str = "auto",
         quiet: bool = False) -> Path:
    """`gansample train-encoder`: train and write ``encoder.onnx`` into the model's folder
    (or ``out``)."""
    g = Generator(model, device=device, batch_size=max(64, min(batch_size, 1024)), spinning=False)
    if g.info.role != "generator":
        raise bad_value("model", model, "a generator")
    target = encoder_path(out if out is not None else g.files.folder)  # checked before training
    check_count("steps", steps, 1, MAX_STEPS)
    check_count("batch_size", batch_size, 2, MAX_BATCH)
    t0 = time.perf_counter()
    last = [t0]

    def progress(step: int, loss: float) -> None:
        if not quiet and (time.perf_counter() - last[0] > 10 or step == steps):
            last[0] = time.perf_counter()
            log.warning("encoder: step %d/%d, loss %.4f", step, steps, loss)

    enc, figures = train_encoder(g, steps, batch_size, progress=progress)
    figures["train_seconds"] = round(time.perf_counter() - t0, 1)
    return export_encoder(enc, g, figures, target)
