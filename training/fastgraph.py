"""An export-only form of the generator that onnxruntime's CPU kernels run fast.

The trained generator upsamples with 4x4 stride-2 transposed convolutions. onnxruntime
runs ConvTranspose as one small GEMM per image followed by a scalar col2im, at about a
third of the speed of its NCHWc convolutions; the final 3x3 convolution to 1 or 3
channels wastes most of an NCHWc block. This module computes the same function with
the operators onnxruntime is fast at (profiled per node, see docs/benchmarks.md):

* every transposed conv but the last as four 2x2 convolutions, one per output phase
  (a, b) (output pixel (2m+a, 2n+b)), each on the input padded on the side its taps
  reach past, then the four phases interleaved: every phase uses exactly its own 2x2 of
  the 4x4 kernel taps (a 3x3 sub-pixel conv would spend 5 of 9 multiply-adds on zeros);
* the last transposed conv as one 2x2 convolution (padding 1) to 4*cout channels on an
  (H+1) x (W+1) "frame": channel group (a, b) holds phase (a, b) at frame pixel
  (m+a, n+b), the row and column each group has left over are masked to zero, and the
  output convolution is evaluated on the frame itself: every 3x3 tap of it reads frame
  offset 0 or 1 in each direction, so it is a MatMul over the channels to (2x2 offsets x
  4 output phases x channels) and four shifted adds, and the only full-resolution
  shuffle left is of the final 1- or 3-channel image.

The result matches the folded generator to float rounding (the export parity check
compares it against PyTorch).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .models import Generator

# A 4x4, stride-2, padding-1 transposed conv along one axis: output 2m + a receives
# input m + d through kernel tap k, for (d, k) in _TAPS[a].
_TAPS = {0: ((-1, 3), (0, 1)), 1: ((0, 2), (1, 0))}


def frame_conv_weights(ct: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4x4 stride-2 padding-1 ConvTranspose2d as a 2x2 padding-1 Conv2d with 4*cout
    outputs ordered (a, b, cout). Phase a takes input rows m + d for the (d, k) in
    _TAPS[a], d in {a-1, a}; the conv's output row m + a covers input rows m+a-1, m+a."""
    w = ct.weight  # [cin, cout, 4, 4]
    cin, cout = w.shape[:2]
    k = torch.zeros(2, 2, cout, cin, 2, 2, dtype=w.dtype)
    for a in (0, 1):
        for b in (0, 1):
            for dr, kr in _TAPS[a]:
                for dc, kc in _TAPS[b]:
                    k[a, b, :, :, dr - a + 1, dc - b + 1] = w[:, :, kr, kc].t()
    bias = ct.bias if ct.bias is not None else torch.zeros(cout, dtype=w.dtype)
    return k.reshape(4 * cout, cin, 2, 2), bias.repeat(4)


def _conv(weight: torch.Tensor, bias: torch.Tensor, padding: int) -> nn.Conv2d:
    """A Conv2d holding the given weights [cout, cin, k, k] and bias [cout]."""
    cout, cin, k = weight.shape[:3]
    conv = nn.Conv2d(cin, cout, k, 1, padding)
    with torch.no_grad():
        conv.weight.copy_(weight)
        cast(torch.Tensor, conv.bias).copy_(bias)
    return conv


class PhaseConvs(nn.Module):
    """A 4x4 stride-2 padding-1 transposed conv as four 2x2 convolutions, one per output
    phase (a, b), each on the input padded on the side its taps reach past (top for a = 0,
    bottom for a = 1; likewise left/right for b): exact multiply-adds, no frame border;
    then the phases are interleaved into [n, cout, 2H, 2W]."""

    def __init__(self, ct: nn.ConvTranspose2d) -> None:
        super().__init__()
        w, b = frame_conv_weights(ct)  # [(a, b, cout), cin, 2, 2]
        self.convs = nn.ModuleList(_conv(wi, bi, 0) for wi, bi in zip(w.chunk(4), b.chunk(4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        p = [F.relu(conv(F.pad(x, (1 - b, b, 1 - a, a))))
             for (a, b), conv in zip(((0, 0), (0, 1), (1, 0), (1, 1)), self.convs)]
        rows = [torch.stack([p[2 * a], p[2 * a + 1]], dim=-1) for a in (0, 1)]
        return torch.stack(rows, dim=3).reshape(n, -1, 2 * h, 2 * w)  # [n, c, h, (a), w, (b)]


def frame_mask(h: int, w: int) -> torch.Tensor:
    """[2, 2, 1, h+1, w+1]: 1 where frame group (a, b) holds a phase pixel, 0 on the row and
    column each group has left over (they stand for the zero padding of the output conv)."""
    mask = torch.ones(2, 2, 1, h + 1, w + 1)
    mask[0, :, :, h, :] = 0
    mask[1, :, :, 0, :] = 0
    mask[:, 0, :, :, w] = 0
    mask[:, 1, :, :, 0] = 0
    return mask


def frame_output_weights(conv: nn.Conv2d, cin: int) -> torch.Tensor:
    """A 3x3 padding-1 conv on the 2x upsampled map, as weights on the frame:
    [(fr, fc, ao, bo, cout), (a, b, cin)] for a MatMul over the frame's channels followed
    by out[(ao, bo, cout), m, n] = sum over (fr, fc) in {0, 1}^2 of t[(fr, fc, ...), m+fr, n+fc].
    Tap r of output phase ao reads upsampled row 2m + ao + r = 2(m + e) + a with
    a = (ao + r) % 2, e = (ao + r) // 2, which is frame row m + e + a: offset fr = e + a."""
    w = conv.weight  # [cout, cin, 3, 3]
    cout = w.shape[0]
    k = torch.zeros(2, 2, 2, 2, cout, 2, 2, cin, dtype=w.dtype)
    for ao in (0, 1):
        for bo in (0, 1):
            for r in (-1, 0, 1):
                for c in (-1, 0, 1):
                    a, b = (ao + r) % 2, (bo + c) % 2
                    fr, fc = (ao + r) // 2 + a, (bo + c) // 2 + b
                    k[fr, fc, ao, bo, :, a, b, :] += w[:, :, r + 1, c + 1]
    return k.reshape(16 * cout, 4 * cin)


class PhaseGenerator(nn.Module):
    """The folded generator (gansample.training.export.fold_generator) rewritten for onnxruntime.
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
        self.sle = g.sle  # skip-layer excitation gates (fastgan recipe), applied per stage as in G
        self.base, self.c0 = g.base, g.ws[0]
        self.fc = g.fc[0]
        # Every transposed conv but the last: frame conv, then interleave.
        self.up = nn.ModuleList(PhaseConvs(ct) for ct in convts[:-1])
        last = convts[-1]
        self.c_last = last.out_channels
        self.last = _conv(*frame_conv_weights(last), padding=1)
        self.phase = g.args["resolution"] // 2  # H and W of the frame's phases
        self.mask: torch.Tensor
        self.register_buffer("mask", frame_mask(self.phase, self.phase))
        out_conv = cast(nn.Conv2d, g.to_img[0])
        self.channels = out_conv.out_channels
        self.w_out = nn.Parameter(frame_output_weights(out_conv, last.out_channels).detach())
        self.b_out = nn.Parameter(cast(torch.Tensor, out_conv.bias).detach().repeat(4).view(-1, 1, 1))
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
        n = h.shape[0]
        x = F.relu(self.fc(h)).view(n, self.c0, self.base, self.base)
        maps = [x]
        for up in self.up:
            x = up(x)
            if self.sle is not None and len(maps) >= 2:
                x = x * self.sle[len(maps) - 2](maps[-2])
            maps.append(x)
        # Last transposed conv onto the frame: [n, (a, b, c), H+1, W+1], H = half the output.
        hp, c, ch = self.phase, self.c_last, self.channels
        f = F.relu(self.last(x)).view(n, 2, 2, c, hp + 1, hp + 1) * self.mask
        if self.sle is not None:  # the gate of the last stage, per channel on every phase
            f = f * self.sle[len(maps) - 2](maps[-2]).view(n, 1, 1, c, 1, 1)
        # Output conv on the frame: a MatMul over channels, then four shifted adds.
        t = torch.matmul(self.w_out, f.view(n, 4 * c, (hp + 1) ** 2)).view(n, 2, 2, 4 * ch, hp + 1, hp + 1)
        o = t[:, 0, 0, :, :hp, :hp] + t[:, 0, 1, :, :hp, 1:] + t[:, 1, 0, :, 1:, :hp] + t[:, 1, 1, :, 1:, 1:]
        o = torch.tanh(o + self.b_out)  # [n, (ao, bo, ch), H, W]
        o = o.view(n, 2, 2, ch, hp, hp).permute(0, 3, 4, 1, 5, 2)
        return o.reshape(n, ch, 2 * hp, 2 * hp)
