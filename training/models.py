"""Generator and discriminator for 28, 32, 64 and 128 px images.

The `fastgan` recipe (for small colour sets, after Liu et al. 2021, "FastGAN") adds
skip-layer excitation to G (sle=True: each feature map gates the channels of the map two
upsamplings later, so coarse layout steers fine texture through a short path) and a
reconstruction decoder to D (recon=True: D must rebuild the real image from its coarsest
features, which keeps it from memorising a small set), with hinge loss and colour +
translation DiffAugment (config.fastgan_recipe).

DCGAN-family convolutional nets. The `gansample` recipe adds what a GAN engineer
would choose today: spectral norm and a projection head in D (Miyato 2018), hinge
loss, an EMA of G's weights and differentiable augmentation (see train.py). The
`dcgan` recipe is the plain pytorch/examples one (BatchNorm in D, no spectral norm),
kept as the baseline that the quality claims are measured against.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

SUPPORTED_RESOLUTIONS = (28, 32, 64, 128)


def base_size(resolution: int) -> int:
    """Spatial size of the first feature map: 7 for 28 px, 4 for the powers of two."""
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(
            f"resolution: got {resolution!r}; supported: {', '.join(map(str, SUPPORTED_RESOLUTIONS))}"
        )
    return 7 if resolution == 28 else 4


def _widths(resolution: int, width: int) -> list[int]:
    # Channel count per feature-map size, from the smallest map to the full resolution:
    # width at full size, doubling each halving, capped at 8 * width.
    n = int(math.log2(resolution // base_size(resolution)))
    return [min(width * 2 ** (n - i), width * 8) for i in range(n + 1)]


class SkipExcitation(nn.Module):
    """Skip-layer excitation: a low-resolution map [B, cin, h, w] -> channel gates
    [B, cout, 1, 1] in (0, 1) for a map two upsamplings later. Global pooling (not
    FastGAN's 4x4 pooling) works at every base size, 7 for 28 px included."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.LeakyReLU(0.1),
                                 nn.Conv2d(cout, cout, 1), nn.Sigmoid())

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        return self.net(low)


class Generator(nn.Module):
    """z [B, z_dim] (+ label [B]) -> image [B, C, H, W] in [-1, 1]."""

    def __init__(self, z_dim: int = 64, resolution: int = 28, channels: int = 1,
                 num_classes: int = 0, width: int = 64, sle: bool = False) -> None:
        super().__init__()
        self.args = dict(z_dim=z_dim, resolution=resolution, channels=channels,
                         num_classes=num_classes, width=width, **({"sle": True} if sle else {}))
        self.z_dim, self.num_classes = z_dim, num_classes
        self.base = base_size(resolution)
        ws = _widths(resolution, width)
        in_dim = z_dim * 2 if num_classes else z_dim
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        # z -> [B, ws[0], base, base]
        self.fc = nn.Sequential(nn.Linear(in_dim, ws[0] * self.base ** 2, bias=False))
        self.fc_norm = nn.Sequential(nn.BatchNorm2d(ws[0]), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        for cin, cout in zip(ws[:-1], ws[1:]):
            # 4x4 stride-2 transposed conv doubles H and W.
            blocks += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.blocks = nn.Sequential(*blocks)
        self.to_img = nn.Sequential(nn.Conv2d(ws[-1], channels, 3, 1, 1), nn.Tanh())
        self.ws = ws
        # Gate i: from the map after stage i (0 = the first map) into the map after stage i + 2.
        self.sle = nn.ModuleList(SkipExcitation(ws[i], ws[i + 2]) for i in range(len(ws) - 2)) if sle else None

    def forward(self, z: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if label is None:
                raise ValueError("label: this generator is class-conditional and needs labels")
            z = torch.cat([z, self.embed(label)], dim=1)
        return self.synthesize(z)

    def forward_mix(self, z: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        """Soft classes: the label embedding is a weighted mix of class embeddings
        ([B, num_classes] @ [num_classes, z_dim]); one-hot weights equal forward()."""
        assert self.embed is not None
        return self.synthesize(torch.cat([z, class_weights @ self.embed.weight], dim=1))

    def synthesize(self, h: torch.Tensor) -> torch.Tensor:
        x = self.fc(h).view(h.shape[0], self.ws[0], self.base, self.base)
        x = self.fc_norm(x)
        if self.sle is None:
            return self.to_img(self.blocks(x))
        # A stage ends at each ReLU (before and after BatchNorm folding alike).
        maps = [x]
        for m in self.blocks:
            x = m(x)
            if isinstance(m, nn.ReLU):
                if len(maps) >= 2:
                    x = x * self.sle[len(maps) - 2](maps[-2])
                maps.append(x)
        return self.to_img(x)


class Discriminator(nn.Module):
    """image [B, C, H, W] in [-1, 1] (+ label [B]) -> raw logit [B]."""

    def __init__(self, resolution: int = 28, channels: int = 1, num_classes: int = 0,
                 width: int = 64, recipe: str = "gansample", norm: str | None = None, recon: bool = False) -> None:
        super().__init__()
        # norm: "spectral" (spectral norm on every layer), "batch" (BatchNorm after the
        # strided convs, spectral norm on the head) or "none" (the plain DCGAN D: BatchNorm,
        # no spectral norm anywhere).
        norm = norm or ("spectral" if recipe in ("gansample", "fastgan") else "none")
        self.args = dict(resolution=resolution, channels=channels, num_classes=num_classes,
                         width=width, recipe=recipe, norm=norm, **({"recon": True} if recon else {}))
        self.num_classes = num_classes
        sn = spectral_norm if norm == "spectral" else (lambda m: m)
        use_bn = norm in ("batch", "none")
        ws = list(reversed(_widths(resolution, width)))  # full resolution first
        base = base_size(resolution)
        layers: list[nn.Module] = [sn(nn.Conv2d(channels, ws[0], 3, 1, 1)), nn.LeakyReLU(0.2, inplace=True)]
        for cin, cout in zip(ws[:-1], ws[1:]):
            layers.append(sn(nn.Conv2d(cin, cout, 4, 2, 1, bias=norm == "spectral")))
            if use_bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.features = nn.Sequential(*layers)
        feat = ws[-1] * base * base
        # The head and the projection embedding are spectrally normalised in every variant
        # (unless norm == "none"): an unbounded projection <embed(y), phi(x)> lets the
        # logits of a BatchNorm D run away.
        head_sn = spectral_norm if norm != "none" else (lambda m: m)
        self.head = head_sn(nn.Linear(feat, 1))
        # Projection discriminator: logit += <embed(y), phi(x)>.
        self.embed = head_sn(nn.Embedding(num_classes, feat)) if num_classes else None
        # FastGAN's self-supervision: rebuild the (downscaled) real image from D's coarsest
        # features, base -> 4 x base px. Training only: not part of the exported graph.
        self.decoder = None
        if recon:
            c = ws[-1]
            self.decoder = nn.Sequential(
                nn.Upsample(scale_factor=2), nn.Conv2d(c, c // 2, 3, 1, 1), nn.BatchNorm2d(c // 2), nn.GLU(dim=1),
                nn.Upsample(scale_factor=2), nn.Conv2d(c // 4, c // 4, 3, 1, 1), nn.BatchNorm2d(c // 4),
                nn.GLU(dim=1), nn.Conv2d(c // 8, channels, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor, label: torch.Tensor | None = None, recon: bool = False) -> Any:
        """logits [B]; with ``recon`` (a D with a decoder, in training) also the decoder's
        rebuilt image [B, C, 4b, 4b]: (logits, rebuilt)."""
        f = self.features(x)
        h = f.flatten(1)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            if label is None:
                raise ValueError("label: this discriminator is class-conditional and needs labels")
            out = out + (self.embed(label) * h).sum(dim=1)
        if not recon:
            return out
        return out, (self.decoder(f) if self.decoder is not None else None)


@torch.no_grad()
def standing_stats(G: Generator, device: torch.device, samples: int = 10_000, batch_size: int = 500,
                   seed: int = 0) -> None:
    """Recompute G's BatchNorm statistics from its own activations on fresh latents and
    labels ("standing statistics", Brock et al. 2019), then leave G in eval mode.

    An EMA generator needs this: the running means and variances tracked during training
    belong to the trained G's weights, not to their average. On the bundled model, moving
    from G's statistics to standing ones lowered the Frechet distance from 3.00 to 2.38.
    Uses its own random generator, so the training RNG stream is untouched."""
    norms = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    g = torch.Generator().manual_seed(seed)
    G.train()
    try:
        for start in range(0, samples, batch_size):
            b = min(batch_size, samples - start)
            z = torch.randn(b, G.z_dim, generator=g).to(device)
            y = torch.randint(0, G.num_classes, (b,), generator=g).to(device) if G.num_classes else None
            G(z, y)
    finally:
        G.eval()
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

