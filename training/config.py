"""Training configuration: one dataclass, overridable from the command line."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from typing import Any

from gansample.errors import GansampleError, bad_value

RECIPES = ("gansample", "dcgan", "fastgan")
NDA_KINDS = ("blank", "noise", "blur", "jigsaw")
# Fields that may change when a run is resumed: the schedule, not the model or the data.
RESUMABLE = ("steps", "d_finetune_steps", "nda", "sample_every", "ckpt_every", "keep_ckpts", "log_every",
             "eval_every", "eval_n", "device", "threads", "amp", "tensorboard")


@dataclass
class TrainConfig:
    data: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    resolution: int | None = None  # None: the dataset's own (28 for MNIST-like)
    channels: int | None = None  # None: 1 if every image is grayscale, else 3
    conditional: bool = False
    recipe: str = "gansample"  # "dcgan": the plain pytorch/examples recipe (baseline)
    steps: int = 10_000
    batch_size: int = 64
    z_dim: int = 64
    g_width: int = 64
    d_width: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    loss: str = "bce"  # bce (non-saturating) | hinge
    d_norm: str = "batch"  # batch (BatchNorm convs, spectral-norm head) | spectral (everywhere) | none (DCGAN)
    # The fastgan recipe's parts, on their own (None: as the recipe has them): skip-layer
    # excitation in G, and D's reconstruction decoder.
    g_sle: bool | None = None
    d_recon: bool | None = None
    # Mode-seeking term (Mao et al. 2019): two latents must give different images (of the same
    # class in conditional runs); 0 disables it. Without it the bundled recipe collapsed to
    # nearly one image per class (recall 0.001 at 10,000 steps).
    ms_weight: float = 0.5
    r1_gamma: float = 0.0  # R1 penalty weight; 0 disables it
    r1_every: int = 16  # lazy regularisation interval
    ema_beta: float = 0.999  # EMA of G's weights; 0 disables it
    ema_warmup: int = 500  # steps over which the EMA decay ramps up
    standing_samples: int = 10_000  # latents G_ema's BatchNorm statistics are recomputed from
    # DiffAugment policy, a comma list of translation, color, cutout; "" disables it. "auto":
    # color,translation for colour data, translation for grayscale (on 64 px emoji the colour
    # transforms kept the default recipe's recall from collapsing: docs/colour.md; cutout
    # trained worse on Fashion-MNIST). The fastgan recipe's "auto" is colour + translation
    # whatever the data.
    augment: str = "auto"
    # After the GAN steps: train D alone against the frozen G with the logistic loss, so
    # its logits estimate log p_data/p_G as DRS assumes (Azadi et al. 2019), adding
    # negative-data-augmentation images as fakes (Sinha et al. 2021) so that blank, noisy,
    # blurred and scrambled inputs are judged unreal when users score them.
    d_finetune_steps: int = 0
    nda: str = "blank,noise,blur,jigsaw"
    sample_every: int = 500
    ckpt_every: int = 1000
    keep_ckpts: int = 3
    log_every: int = 10
    eval_every: int = 0  # evaluate G_ema every N steps and keep the best checkpoint
    eval_n: int = 2000
    features: str = ""  # features model .onnx for eval_every ("": the bundled one for the dataset)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    tensorboard: bool = False  # TensorBoard event files in RUN/tensorboard (the 'tensorboard' extra)

    def validate(self) -> None:
        # Sizes are bounded before any tensor is built: a mistyped width or z_dim would
        # otherwise allocate until the machine runs out of memory.
        for name, flag, hi in (("steps", "steps", 10**9), ("batch_size", "batch_size", 65_536),
                               ("z_dim", "z_dim", 4096), ("g_width", "g_width", 4096),
                               ("d_width", "d_width", 4096), ("sample_every", "sample_every", 10**9),
                               ("ckpt_every", "ckpt_every", 10**9), ("log_every", "log_every", 10**9),
                               ("keep_ckpts", "keep_ckpts", 10**6), ("r1_every", "r1_every", 10**6),
                               ("standing_samples", "standing_samples", 10**7)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise bad_value(flag, value, f"an integer from 1 to {hi}")
        for name, hi in (("eval_every", 10**9), ("eval_n", 10**6), ("threads", 1024), ("d_finetune_steps", 10**9),
                         ("seed", 2**32 - 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
                raise bad_value(name, value, f"an integer from 0 to {hi}")
        if self.recipe not in RECIPES:
            raise bad_value("recipe", self.recipe, f"valid: {', '.join(RECIPES)}")
        if self.d_norm not in ("spectral", "batch", "none"):
            raise bad_value("d_norm", self.d_norm, "valid: spectral, batch, none")
        if self.loss not in ("hinge", "bce"):
            raise bad_value("loss", self.loss, "valid: hinge, bce")
        if self.device not in ("auto", "cpu", "cuda"):
            raise bad_value("device", self.device, "valid: auto, cpu, cuda")
        if self.channels not in (None, 1, 3):
            raise bad_value("channels", self.channels, "valid: 1, 3")
        bad = [a for a in self.augment.split(",") if a and a not in ("translation", "cutout", "color")]
        if bad and self.augment != "auto":
            raise bad_value("augment", self.augment, "auto, or a comma list of: translation, cutout, color")
        bad = [a for a in self.nda.split(",") if a and a not in NDA_KINDS]
        if bad:
            raise bad_value("nda", self.nda, f"a comma list of: {', '.join(NDA_KINDS)}")
        if self.d_finetune_steps < 0:
            raise bad_value("d_finetune_steps", self.d_finetune_steps, "an integer >= 0")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_saved(cls, saved: dict[str, Any], source: str) -> TrainConfig:
        """The config stored in a checkpoint. Keys this version does not know (a checkpoint
        from a newer or patched trainer) are refused by name instead of dropped: resuming
        without them would silently train a different recipe."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(saved) - valid)
        if unknown:
            raise GansampleError(f"{source}: its training config has settings this gansample does not "
                                 f"know: {', '.join(unknown)}; resume it with the gansample that wrote it")
        return cls(**saved)


def dcgan_recipe(cfg: TrainConfig) -> TrainConfig:
    """The pytorch/examples DCGAN recipe: BCE loss, Adam(2e-4, beta1=0.5), BatchNorm in D,
    no spectral norm, no EMA, no augmentation."""
    return dataclasses.replace(cfg, recipe="dcgan", loss="bce", lr_g=2e-4, lr_d=2e-4, beta1=0.5,
                               beta2=0.999, ema_beta=0.0, augment="", r1_gamma=0.0, ms_weight=0.0,
                               d_norm="none")


def fastgan_recipe(cfg: TrainConfig) -> TrainConfig:
    """Small colour sets (training/models.py): skip-layer excitation in G, a reconstruction
    decoder in D, spectral norm everywhere in D, hinge loss, colour + translation
    DiffAugment; the EMA, mode-seeking term and Adam settings of the gansample recipe."""
    return dataclasses.replace(cfg, recipe="fastgan", loss="hinge", d_norm="spectral",
                               augment=cfg.augment if cfg.augment != "auto" else "color,translation")


def resolve_augment(cfg: TrainConfig, channels: int) -> TrainConfig:
    """``augment="auto"`` made concrete for the data (what config.json and checkpoints keep)."""
    if cfg.augment != "auto":
        return cfg
    return dataclasses.replace(cfg, augment="color,translation" if channels == 3 else "translation")


def _parse(name: str, text: str, typ: Any) -> Any:
    typ = str(typ)
    try:
        if text.lower() in ("none", "null") and "None" in typ:
            return None
        if typ.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ.startswith("int"):
            return int(text)
        if typ.startswith("float"):
            return float(text)
    except ValueError:
        raise bad_value(name, text, f"expected a value of type {typ}") from None
    return text


def apply_overrides(cfg: TrainConfig, items: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings; unknown keys are rejected with the valid list."""
    valid = {f.name: f.type for f in fields(TrainConfig)}
    changes: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise bad_value("--set", item, "expected KEY=VALUE")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in valid:
            raise GansampleError(f"--set: unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")
        changes[key] = _parse(key, text.strip(), valid[key])
    return dataclasses.replace(cfg, **changes)
