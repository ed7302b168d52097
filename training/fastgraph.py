"""An export-only form of the generator that onnxruntime's CPU kernels run fast.

The trained generator upsamples with 4x4 stride-2 transposed convolutions. onnxruntime
runs ConvTranspose as one small GEMM per image followed by a scalar col2im, at about a
third of the speed of its NCHWc convolutions; the final 3x3 convolution to 1 or 3
channels wastes most of an NCHWc block. This module computes the same function with
the operators onnxruntime is fast at (profiled per node, see docs/benchmarks.md):

* the first transposed conv (on the small map the linear layer makes) as one batched
  MatMul per pixel, [N*H*W, cin] x [cin, 4*4*cout], followed by its overlap-add written
  as shifted slices and adds, all in NHWC;
* the last transposed conv as its sub-pixel equivalent: a 3x3 convolution to
  4*cout channels, one group of cout per output phase (a, b), where output pixel
  (2m+a, 2n+b) is phase (a, b) at (m, n) -- no interleaving at full resolution;
* the output convolution evaluated directly on that phase representation, as a MatMul
  to (3x3 taps x 4 phases x channels) followed by shifted adds, so the only
  full-resolution shuffle left is of the final 1- or 3-channel image.

Transposed convs in between (64 px and larger models) are kept as they are. The
result matches the folded generator to float rounding (the export parity check
compares it against PyTorch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .models import Generator

# A 4x4, stride-2, padding-1 transposed conv along one axis: output 2m + a receives
# input m + d through kernel tap k, for (d, k) in _TAPS[a].
_TAPS = {0: ((-1, 3), (0, 1)), 1: ((0, 2), (1, 0))}


def _shift(x: torch.Tensor, d: int, axis: int) -> torch.Tensor:
    """out[..., m, ...] = x[..., m + d, ...] along ``axis``, zero where m + d is outside."""
    if d == 0:
        return x
    size = x.shape[axis]
    pad = [0, 0] * (x.dim() - axis - 1) + ([0, d] if d > 0 else [-d, 0])
    return F.pad(x, pad).narrow(axis, d if d > 0 else 0, size)


def _overlap_add(y: torch.Tensor, axis: int, tap_axis: int) -> torch.Tensor:
    """Overlap-add of a stride-2 4-tap transposed conv along ``axis``; the kernel taps lie
    on ``tap_axis`` (> axis). Returns the two output phases stacked right after ``axis``."""
    phases = []
    for a in (0, 1):
        (d0, k0), (d1, k1) = _TAPS[a]
        phases.append(_shift(y.select(tap_axis, k0), d0, axis) + _shift(y.select(tap_axis, k1), d1, axis))
    return torch.stack(phases, axis + 1)


def _sum_taps(z: torch.Tensor, axis: int, tap_axis: int) -> torch.Tensor:
    """sum over t in 0..2 of z[..., m + t - 1, ..., t, ...]: a 3-tap conv along ``axis``."""
    return (_shift(z.select(tap_axis, 0), -1, axis) + z.select(tap_axis, 1)
            + _shift(z.select(tap_axis, 2), 1, axis))


def subpixel_weights(ct: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 stride-2 padding-1 ConvTranspose2d as a 3x3 padding-1 Conv2d with 4*cout
    outputs ordered (a, b, cout): output channel group (a, b) is phase (a, b)."""
    w = ct.weight  # [cin, cout, 4, 4]
    cin, cout = w.shape[:2]
    k = torch.zeros(2, 2, cout, cin, 3, 3, dtype=w.dtype)
    for a in (0, 1):
        for b in (0, 1):
            for dr, kr in _TAPS[a]:
                for dc, kc in _TAPS[b]:
                    k[a, b, :, :, dr + 1, dc + 1] = w[:, :, kr, kc].t()
    bias = ct.bias if ct.bias is not None else torch.zeros(cout, dtype=w.dtype)
    return k.reshape(4 * cout, cin, 3, 3), bias.repeat(4)


def phase_conv_weights(conv: nn.Conv2d, cin: int) -> torch.Tensor:
    """A 3x3 padding-1 conv on a 2x upsampled map, as per-tap weights on the map's phase
    representation: [(a, b, cin), (dr, dc, a', b', cout)] for a MatMul followed by
    _sum_taps over (dr, dc) in 0..2 (offsets -1..1 on the half-resolution grid)."""
    w = conv.weight  # [cout, cin, 3, 3]
    cout = w.shape[0]
    k = torch.zeros(2, 2, cin, 3, 3, 2, 2, cout, dtype=w.dtype)
    for ao in (0, 1):
        for bo in (0, 1):
            for r in (-1, 0, 1):
                for c in (-1, 0, 1):
                    a, er = (ao + r) % 2, (ao + r) // 2
                    b, ec = (bo + c) % 2, (bo + c) // 2
                    k[a, b, :, er + 1, ec + 1, ao, bo, :] += w[:, :, r + 1, c + 1].t()
    return k.reshape(4 * cin, 9 * 4 * cout)


class PhaseGenerator(nn.Module):
    """The folded generator (training.export.fold_generator) rewritten for onnxruntime.
    Same inputs and outputs as Generator: forward(z, label) and forward_mix(z, weights)."""

    def __init__(self, g: Generator) -> None:
        super().__init__()
        convts = [m for m in g.blocks if isinstance(m, nn.ConvTranspose2d)]
        if len(convts) < 2 or any(m.kernel_size != (4, 4) or m.stride != (2, 2) or m.padding != (1, 1)
                                  for m in convts):
            raise ValueError("PhaseGenerator needs at least two 4x4 stride-2 transposed convs")
        if any(isinstance(m, nn.BatchNorm2d) for m in g.modules()):
            raise ValueError("PhaseGenerator needs a generator with its BatchNorms folded")
        self.embed = g.embed
        self.base, c0 = g.base, g.ws[0]
        lin: nn.Linear = g.fc[0]
        # The linear layer's outputs reordered from (c, h, w) to (h, w, c): NHWC directly.
        order = torch.arange(lin.out_features).view(c0, g.base, g.base).permute(1, 2, 0).reshape(-1)
        self.fc = nn.Linear(lin.in_features, lin.out_features)
        with torch.no_grad():
            self.fc.weight.copy_(lin.weight[order])
            self.fc.bias.copy_(lin.bias[order] if lin.bias is not None else torch.zeros_like(self.fc.bias))
        first = convts[0]
        self.c1 = first.out_channels
        # [cin, cout, kr, kc] -> [cin, (kr, kc, cout)]
        self.w1 = nn.Parameter(first.weight.detach().permute(0, 2, 3, 1).reshape(first.in_channels, -1))
        self.b1 = nn.Parameter(first.bias.detach().clone())
        self.middle = nn.ModuleList(convts[1:-1])
        last = convts[-1]
        w, b = subpixel_weights(last)
        self.last = nn.Conv2d(last.in_channels, 4 * last.out_channels, 3, 1, 1)
        with torch.no_grad():
            self.last.weight.copy_(w)
            self.last.bias.copy_(b)
        out_conv: nn.Conv2d = g.to_img[0]
        self.channels = out_conv.out_channels
        self.w_out = nn.Parameter(phase_conv_weights(out_conv, last.out_channels).detach())
        self.b_out = nn.Parameter(out_conv.bias.detach().repeat(4))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(label)], dim=1)
        return self.synthesize(z)

    def forward_mix(self, z: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        assert self.embed is not None
        return self.synthesize(torch.cat([z, class_weights @ self.embed.weight], dim=1))

    def synthesize(self, h: torch.Tensor) -> torch.Tensor:
        n, s = h.shape[0], self.base
        x = F.relu(self.fc(h)).view(n, s, s, -1)
        # First transposed conv: MatMul to every kernel tap, then overlap-add (NHWC).
        y = (x @ self.w1).view(n, s, s, 4, 4, self.c1)
        y = _overlap_add(_overlap_add(y, 1, 3), 3, 4)  # [n, s, 2, s, 2, c1]
        x = F.relu(y.reshape(n, 2 * s, 2 * s, self.c1) + self.b1).permute(0, 3, 1, 2)
        for m in self.middle:
            x = F.relu(m(x))
        # Last transposed conv as a sub-pixel conv: [n, (a, b, c), H, W], H = half the output.
        x = F.relu(self.last(x)).permute(0, 2, 3, 1)
        hh, ww = x.shape[1], x.shape[2]
        # Output conv on the phase representation: taps by MatMul, then shifted sums.
        t = (x @ self.w_out).view(n, hh, ww, 3, 3, 4 * self.channels)
        o = torch.tanh(_sum_taps(_sum_taps(t, 1, 3), 2, 3) + self.b_out)  # [n, H, W, (a, b, c)]
        o = o.view(n, hh, ww, 2, 2, self.channels).permute(0, 5, 1, 3, 2, 4)
        return o.reshape(n, self.channels, 2 * hh, 2 * ww)
