"""Generators from other projects' public descriptions, with random weights, for the
bring-your-own tests (loaded by file path, as a user's models.py would be)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DCGANGenerator(nn.Module):
    """pytorch/examples dcgan: latent [B, nz, 1, 1] -> 64x64, ConvTranspose + BatchNorm, tanh."""

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class DCGANDiscriminator(nn.Module):
    """pytorch/examples dcgan D: 64x64 -> [B] (sigmoid removed: raw logits)."""

    def __init__(self, ndf: int = 16, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, 1, 8, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def make_small_dcgan(nz: int = 32, ngf: int = 8) -> DCGANGenerator:
    """A factory, as some projects expose instead of a class."""
    return DCGANGenerator(nz=nz, ngf=ngf, nc=3)


class OneHotGenerator(nn.Module):
    """Class-conditional on one-hot rows [B, K] concatenated to z; 32x32 grayscale."""

    def __init__(self, z_dim: int = 16, num_classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.fc = nn.Linear(z_dim + num_classes, width * 4 * 4)
        self.width = width
        self.up = nn.Sequential(nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(width, width, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(torch.cat([z, onehot], 1))).view(-1, self.width, 4, 4)
        return self.up(h)


class UnitNHWCGenerator(nn.Module):
    """Output in [0, 1] and channels-last [B, H, W, 3], 16x16."""

    def __init__(self, z_dim: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(z_dim, 16 * 16 * 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(z)).view(-1, 16, 16, 3)


class ModulatedConv(nn.Module):
    """StyleGAN2's modulated, demodulated 3x3 conv, done as one grouped conv over the
    batch (the form that defeats naive exporters)."""

    def __init__(self, cin: int, cout: int, w_dim: int, demod: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.affine = nn.Linear(w_dim, cin)
        self.demod = demod

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, cin, h, wd = x.shape
        s = self.affine(w) + 1.0  # [B, cin]
        weight = self.weight[None] * s[:, None, :, None, None]  # [B, cout, cin, 3, 3]
        if self.demod:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=[2, 3, 4], keepdim=True) + 1e-8)
        x = x.reshape(1, b * cin, h, wd)
        out = F.conv2d(x, weight.reshape(-1, cin, 3, 3), padding=1, groups=b)
        return out.reshape(b, -1, h, wd)


class StyleLayer(nn.Module):
    def __init__(self, cin: int, cout: int, w_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv(cin, cout, w_dim)
        self.noise_strength = nn.Parameter(torch.full([], 0.1))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w)
        noise = torch.randn([x.shape[0], 1, x.shape[2], x.shape[3]], device=x.device)  # per-layer noise
        return F.leaky_relu(x + noise * self.noise_strength + self.bias[None, :, None, None], 0.2)


class StyleGenerator(nn.Module):
    """A small style-based generator: mapping network z -> w, constant input, modulated
    convolutions with per-layer noise, upsampling to 32x32 RGB, and a tracked w average."""

    def __init__(self, z_dim: int = 32, w_dim: int = 32, width: int = 16) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.mapping = nn.Sequential(nn.Linear(z_dim, w_dim), nn.LeakyReLU(0.2), nn.Linear(w_dim, w_dim))
        self.synthesis = StyleSynthesis(w_dim, width)
        self.register_buffer("w_avg", torch.randn(w_dim) * 0.5)


class StyleSynthesis(nn.Module):
    def __init__(self, w_dim: int, width: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, width, 4, 4))
        self.layers = nn.ModuleList(StyleLayer(width, width, w_dim) for _ in range(4))
        self.to_rgb = ModulatedConv(width, 3, w_dim, demod=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.const.expand(w.shape[0], -1, -1, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, w)
            if i < 3:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return torch.tanh(self.to_rgb(x, w))


class NotAModule:
    """A class that is not an nn.Module (for the error test)."""

    def __init__(self) -> None:
        self.x = 1
