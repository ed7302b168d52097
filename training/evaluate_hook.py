"""Periodic evaluation during training (config eval_every): G_ema's samples against the
real test split, in the bundled classifier's feature space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from gansample.errors import bad_value
from gansample.latents import labels_for_seeds, latents_for_seeds
from gansample.metrics import FeatureExtractor, compare, features_path

from .config import TrainConfig
from .data import ImageData
from .export import quantize

if TYPE_CHECKING:
    from .train import Trainer


def make_evaluator(cfg: TrainConfig, data: ImageData) -> Callable[["Trainer"], dict[str, float]]:
    """Standard datasets: against their test split. Image folders (e.g. the emoji set):
    against the training images themselves, with ``cfg.features`` or the bundled
    features model named after the folder (exported/features/NAME.onnx)."""
    from gansample.errors import GansampleError
    standard = data.name in ("fashion-mnist", "mnist") and data.resolution == 28
    path = cfg.features or None
    if path is None:
        try:
            path = str(features_path(data.name))
        except GansampleError:
            raise bad_value("eval_every", cfg.eval_every, "periodic evaluation needs a features model: a "
                            "bundled one (fashion-mnist, mnist at 28 px; exported/features/NAME.onnx) or "
                            "--set features=FILE.onnx (python -m gansample.training.classifier)") from None
    fx = FeatureExtractor(path, device="cpu")
    if (fx.info.img_resolution, fx.info.img_channels) != (data.resolution, data.channels):
        raise bad_value("features", path, f"a features model for {data.resolution} px x {data.channels} images")
    if standard:
        from gansample.evaluate import real_features
        real = real_features(fx, data.name, cfg.data_dir)
    else:
        real = fx(np.ascontiguousarray(data.images.transpose(0, 2, 3, 1)))[0]
    seeds = list(range(cfg.eval_n))

    @torch.no_grad()
    def evaluate(trainer: "Trainer") -> dict[str, float]:
        G, ncls = trainer.G_ema, trainer.g_args["num_classes"]
        z = torch.from_numpy(latents_for_seeds(seeds, cfg.z_dim)).to(trainer.device)
        y = labels_for_seeds(seeds, ncls) if ncls else None
        yt = torch.from_numpy(y).to(trainer.device) if y is not None else None
        imgs = torch.cat([G(z[i:i + 500], yt[i:i + 500] if yt is not None else None)
                          for i in range(0, len(z), 500)])
        u8 = quantize(imgs.float()).cpu().numpy()
        fake, logits = fx(np.ascontiguousarray(u8))
        return compare(real, fake, logits, y).as_dict()

    return evaluate
