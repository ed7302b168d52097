"""The training loop: read it top to bottom.

D maximises E[log D(x)] + E[log(1 - D(G(z)))] (here in its hinge form, Lim & Ye 2017);
G tries to fool D. Stabilisers of the `gansample` recipe: spectral norm + projection
in D, DiffAugment on every image D sees (Zhao et al. 2020), optional lazy R1 on real
images, and an EMA of G's weights that is what gets sampled and exported.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import json
import logging
import re
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from gansample.errors import GansampleError, bad_value, first_line
from gansample.images import make_grid
from gansample.output import atomic_write, clean_stale_temps, ensure_outdir, save_png, write_error
from gansample.latents import labels_for_seeds, latents_for_seeds

from . import checkpoint as ckpt
from .config import RESUMABLE, TrainConfig, dcgan_recipe, fastgan_recipe, resolve_augment
from .data import BatchSchedule, ImageData, load_dataset
from .export import quantize
from .watch import TensorBoard, plot_metrics, read_rows
from .models import Discriminator, Generator, standing_stats

log = logging.getLogger("gansample")

GRID_SEEDS = 64


# --- DiffAugment: the same random transform is differentiable w.r.t. the image --------
def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    for p in policy.split(","):
        if p == "color":
            x = x + (torch.rand(x.size(0), 1, 1, 1, device=x.device) - 0.5)
            mean = x.mean(dim=[1, 2, 3], keepdim=True)
            x = (x - mean) * (torch.rand(x.size(0), 1, 1, 1, device=x.device) + 0.5) + mean
        elif p == "translation":
            x = _translate(x, ratio=0.125)
        elif p == "cutout":
            x = _cutout(x, ratio=0.5)
    return x


def _translate(x: torch.Tensor, ratio: float) -> torch.Tensor:
    b, _, h, w = x.shape
    s = int(h * ratio + 0.5)
    shift = torch.randint(-s, s + 1, (2, b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    # Shift by sampling a zero-padded copy at (y - dy, x - dx).
    yy = torch.clamp(gy[None] + shift[0] + 1, 0, h + 1)
    xx = torch.clamp(gx[None] + shift[1] + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0], value=-1.0)  # pad with "black" in [-1, 1]
    bi = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[bi, yy, xx].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device) - ch // 2
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device) - cw // 2
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = (gy[None] >= oy) & (gy[None] < oy + ch) & (gx[None] >= ox) & (gx[None] < ox + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


# --- negative data augmentation: real images made unreal ------------------------------
def negatives(x: torch.Tensor, kinds: list[str]) -> torch.Tensor:
    """One corrupted copy of each image in x, kind chosen per image."""
    b = x.shape[0]
    which = torch.randint(0, len(kinds), (b,), device=x.device)
    out = x.clone()
    for k, kind in enumerate(kinds):
        m = which == k
        if not m.any():
            continue
        xs = x[m]
        if kind == "blank":
            xs = torch.rand(xs.shape[0], 1, 1, 1, device=x.device).mul(2).sub(1).expand_as(xs).clone()
        elif kind == "noise":
            xs = torch.rand_like(xs).mul(2).sub(1)
        elif kind == "blur":
            for _ in range(3):
                xs = F.avg_pool2d(xs, 5, 1, 2, count_include_pad=False)
        elif kind == "jigsaw":
            # Swap the image's quadrants in a random cyclic order.
            h, w = xs.shape[2] // 2, xs.shape[3] // 2
            q = [xs[:, :, :h, :w], xs[:, :, :h, w:2 * w], xs[:, :, h:2 * h, w:2 * w], xs[:, :, h:2 * h, :w]]
            shift = int(torch.randint(1, 4, (1,)))
            q = q[shift:] + q[:shift]
            xs = xs.clone()
            xs[:, :, :h, :w], xs[:, :, :h, w:2 * w], xs[:, :, h:2 * h, w:2 * w], xs[:, :, h:2 * h, :w] = q
        out[m] = xs
    return out


# --- losses ------------------------------------------------------------------------
def d_loss(cfg: TrainConfig, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if cfg.loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # BCE with logits


def g_loss(cfg: TrainConfig, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if cfg.loss == "hinge" else F.softplus(-fake).mean()


def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) when torchrun started this process group, else (0, 1)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> bool:
    """Join torchrun's process group (gloo on the CPU, NCCL on CUDA) when RANK and
    WORLD_SIZE say there is one; the same script runs single-process without them."""
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise bad_value("device", name, "CUDA is not available to torch on this machine; use cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else torch.device(name)


def new_run_dir(outdir: Path, data: ImageData, cfg: TrainConfig) -> Path:
    outdir = ensure_outdir(outdir, "outdir")
    ids = [int(m.group(1)) for p in outdir.iterdir() if (m := re.match(r"^(\d{5})-", p.name))]
    # The data's name goes into the folder name: cut so the name fits any file system.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", data.name)[:64] or "data"
    tag = f"{max(ids, default=-1) + 1:05d}-{name}-{data.resolution}px{'-cond' if cfg.conditional else ''}"
    if cfg.recipe != "gansample":
        tag += f"-{cfg.recipe}"
    run = outdir / tag
    try:
        run.mkdir()
    except OSError as e:
        raise write_error(run, e) from None
    return run


class Trainer:
    def __init__(self, cfg: TrainConfig, data: ImageData, run_dir: Path, state: dict[str, Any] | None = None):
        self.cfg, self.data, self.run_dir = resolve_augment(cfg, data.channels), data, run_dir
        cfg = self.cfg
        clean_stale_temps(run_dir)  # checkpoint temporaries of a killed run
        self.device = pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        ncls = len(data.class_names) if cfg.conditional else 0
        if state is not None:
            # A resumed run keeps the nets its checkpoint was made with, even when a config
            # default has changed since (older checkpoints predate some fields).
            self.g_args, self.d_args = dict(state["g_args"]), dict(state["d_args"])
        else:
            fast = cfg.recipe == "fastgan"
            sle = fast if cfg.g_sle is None else cfg.g_sle
            recon = fast if cfg.d_recon is None else cfg.d_recon
            self.g_args = dict(z_dim=cfg.z_dim, resolution=data.resolution, channels=data.channels,
                               num_classes=ncls, width=cfg.g_width, **({"sle": True} if sle else {}))
            self.d_args = dict(resolution=data.resolution, channels=data.channels, num_classes=ncls,
                               width=cfg.d_width, recipe=cfg.recipe, norm=cfg.d_norm,
                               **({"recon": True} if recon else {}))
        for cls, args, what in ((Generator, self.g_args, "g_width/z_dim"), (Discriminator, self.d_args, "d_width")):
            ckpt.check_model_size(cls, args, what)
        self.G = Generator(**self.g_args).to(self.device)
        self.D = Discriminator(**self.d_args).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # Under torchrun: DDP for G and D (BatchNorm buffers stay per rank: no broadcast,
        # and SyncBatchNorm does not run on the CPU); G_ema follows G's synchronised
        # parameters, so it is the same on every rank. self.G/self.D stay the plain modules.
        self.rank, self.world = dist_rank_world()
        self.master = self.rank == 0
        if self.world > 1 and cfg.batch_size % self.world:
            raise bad_value("batch_size", cfg.batch_size, f"a multiple of the {self.world} processes")
        self.Gt: nn.Module = self.G
        self.Dt: nn.Module = self.D
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.Gt = DDP(self.G, device_ids=ids, broadcast_buffers=False)
            self.Dt = DDP(self.D, device_ids=ids, broadcast_buffers=False)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)
        self.step = 0
        self.d_step = 0  # D fine-tuning steps done after the GAN steps
        self.best: dict[str, Any] | None = None
        if state is not None:
            try:
                self._restore(state)
            except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as e:
                first = first_line(e)
                raise GansampleError(f"resume: {state.get('path', 'checkpoint')} does not fit the models "
                                     f"its config describes ({first})", "resume") from None
        if self.world > 1:  # each rank draws its own latents (the models were initialised alike)
            torch.manual_seed(cfg.seed * 7919 + 104729 * self.step + self.rank + 1)
        self.images = torch.from_numpy(np.array(data.images))  # uint8, CPU; batches move to device
        self.labels = torch.from_numpy(data.labels) if data.labels is not None else None
        self.schedule = BatchSchedule(len(data.images), cfg.batch_size, cfg.seed)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        # Fixed latents for the progress grids, by the runtime's seed rule.
        self.grid_z = torch.from_numpy(latents_for_seeds(range(GRID_SEEDS), cfg.z_dim)).to(self.device)
        self.grid_y = torch.from_numpy(labels_for_seeds(range(GRID_SEEDS), ncls)).to(self.device) if ncls else None
        self.evaluate: Callable[[Trainer], dict[str, float]] | None = None
        # TensorBoard (rank 0; the 'tensorboard' extra), checked before any step is taken.
        self.tb = TensorBoard(run_dir) if cfg.tensorboard and self.master else None
        self._stats_step: int | None = None  # step at which G_ema's BatchNorm stats were last recomputed

    # --- state ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "step": self.step, "d_step": self.d_step, "config": json.loads(self.cfg.to_json()),
            "g_args": self.g_args, "d_args": self.d_args,
            "class_names": list(self.data.class_names), "dataset": self.data.name,
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": rng,
            "best": self.best,
        }

    def _restore(self, s: dict[str, Any]) -> None:
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        self.G_ema.load_state_dict(s["G_ema"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.step = int(s["step"])
        self.d_step = int(s.get("d_step", 0))
        self.best = s.get("best")
        torch.set_rng_state(s["rng"]["torch"])
        if "cuda" in s["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["rng"]["cuda"])

    def save_checkpoint(self) -> Path:
        self.refresh_ema_stats()
        path = self.run_dir / ckpt.checkpoint_name(self.step + self.d_step)
        ckpt.save(self.state(), path)
        keep = {path.name} | ({self.best["file"]} if self.best else set())
        old = [p for p in ckpt.list_checkpoints(self.run_dir) if p.name not in keep]
        for p in old[: max(0, len(old) - (self.cfg.keep_ckpts - 1))]:
            p.unlink()
        return path

    # --- one step --------------------------------------------------------------------
    def _batch(self, step: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.schedule.indices(self.step if step is None else step)
        if self.world > 1:  # this rank's slice of the global batch: together, a single run's batch
            b = len(idx) // self.world
            idx = idx[self.rank * b:(self.rank + 1) * b]
        x = self.images[idx].to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        y = self.labels[idx].to(self.device) if self.labels is not None else None
        return x, y

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.augment) if self.cfg.augment else x

    def train_step(self) -> dict[str, float]:
        cfg, B = self.cfg, self.cfg.batch_size // self.world
        real, y = self._batch()
        ncls = self.g_args["num_classes"]
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()
        # D step: push real logits up and fake logits down.
        z = torch.randn(B, cfg.z_dim, device=self.device)
        y_fake = torch.randint(0, ncls, (B,), device=self.device) if ncls else None
        with amp:
            with torch.no_grad():
                fake = self.Gt(z, y_fake)
            real_aug = self._aug(real)
            recon = 0.0
            if self.D.decoder is not None:
                # D rebuilds the real image from its coarsest features (FastGAN): L1 against
                # the augmented real batch, downscaled to the decoder's size.
                d_real, rebuilt = self.Dt(real_aug, y, recon=True)
                assert rebuilt is not None
                target = F.adaptive_avg_pool2d(real_aug, rebuilt.shape[-1])
                loss_rec = (rebuilt.float() - target.float()).abs().mean()
                recon = float(loss_rec.detach())
                d_real = d_real.float()
            else:
                d_real = self.Dt(real_aug, y).float()
                loss_rec = None
            d_fake = self.Dt(self._aug(fake), y_fake).float()
            loss_d = d_loss(cfg, d_real, d_fake) + (loss_rec if loss_rec is not None else 0.0)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        r1 = 0.0
        if cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0:
            # Lazy R1: gamma/2 * ||grad_x D(x)||^2 on real images, scaled by the interval.
            real_r = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.Dt(real_r, y).sum(), real_r, create_graph=True)
            penalty = grad.square().sum(dim=[1, 2, 3]).mean()
            (penalty * cfg.r1_gamma / 2 * cfg.r1_every).backward()
            r1 = float(penalty.detach())
        self.opt_d.step()
        # G step: make D call the fakes real.
        z = torch.randn(B, cfg.z_dim, device=self.device)
        y_fake = torch.randint(0, ncls, (B,), device=self.device) if ncls else None
        if y_fake is not None and cfg.ms_weight > 0:
            y_fake[B // 2: 2 * (B // 2)] = y_fake[: B // 2]  # pairs with the same class
        with amp:
            fake = self.Gt(z, y_fake)
            loss_g = g_loss(cfg, self.Dt(self._aug(fake), y_fake).float())
            if cfg.ms_weight > 0:
                # Mode seeking: two latents of one class must give different images;
                # penalise 1 / (image distance / latent distance).
                h = B // 2
                ratio = (fake[:h] - fake[h:2 * h]).abs().mean(dim=[1, 2, 3]) / (z[:h] - z[h:2 * h]).abs().mean(dim=1)
                loss_g = loss_g + cfg.ms_weight / (ratio.float().mean() + 1e-5)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self._update_ema()
        self.step += 1
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_real": d_real.detach().mean().item(),
                "d_fake": d_fake.detach().mean().item(), "r1": r1, **({"recon": recon} if self.D.decoder is not None else {})}

    def finetune_d_step(self) -> dict[str, float]:
        """D alone, logistic loss, G frozen: real vs G's samples and negative images."""
        cfg, B = self.cfg, self.cfg.batch_size // self.world
        real, y = self._batch(self.step + self.d_step)
        ncls = self.g_args["num_classes"]
        z = torch.randn(B, cfg.z_dim, device=self.device)
        y_fake = torch.randint(0, ncls, (B,), device=self.device) if ncls else None
        with torch.no_grad():
            fake = self.G_ema(z, y_fake)
        kinds = [k for k in cfg.nda.split(",") if k]
        fakes, fake_y = [fake], [y_fake]
        if kinds:
            fakes.append(negatives(real, kinds))
            fake_y.append(torch.randint(0, ncls, (B,), device=self.device) if ncls else None)
        d_real = self.Dt(real, y)
        d_fake = torch.cat([self.Dt(f, fy) for f, fy in zip(fakes, fake_y)])
        loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        self.d_step += 1
        return {"loss_d": loss.item(), "d_real": d_real.detach().mean().item(),
                "d_fake": d_fake[:B].detach().mean().item(), "d_neg": d_fake[B:].detach().mean().item()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        beta = self.cfg.ema_beta
        if beta > 0 and self.cfg.ema_warmup > 0:
            # Ramp the decay so the EMA does not average in the random initialisation.
            beta = min(beta, (1 + self.step) / (10 + self.step))
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
            pe.lerp_(p, 1 - beta) if beta > 0 else pe.copy_(p)
        # G_ema's BatchNorm buffers are not copied from G: refresh_ema_stats recomputes them
        # from scratch before G_ema is used or saved.

    def refresh_ema_stats(self) -> None:
        """Give G_ema BatchNorm statistics of its own (once per step) before it samples a
        grid, is evaluated, saved, or used as D's opponent in fine-tuning."""
        if self._stats_step != self.step:
            standing_stats(self.G_ema, self.device, samples=self.cfg.standing_samples, seed=self.cfg.seed)
            self._stats_step = self.step

    @torch.no_grad()
    def sample_grid(self) -> Path:
        self.refresh_ema_stats()
        imgs = self.G_ema(self.grid_z, self.grid_y)
        u8 = quantize(imgs.float()).cpu().numpy()
        path = self.run_dir / f"samples-{self.step:08d}.png"
        grid = make_grid(u8, cols=8)
        save_png(grid, path, compress_level=6)
        if self.tb is not None:
            self.tb.grid(self.step, grid)
        return path

    # --- the loop --------------------------------------------------------------------
    def run(self, progress: bool = True) -> Path:
        try:
            return self._run(progress)
        except OSError as e:  # metrics.jsonl on a full disk and the like (files are WriteErrors already)
            raise write_error(self.run_dir / "metrics.jsonl", e) from None

    def _run(self, progress: bool) -> Path:
        cfg = self.cfg
        log_path = self.run_dir / "metrics.jsonl"
        if self.step == 0 and self.master:
            self.sample_grid()
        # Only rank 0 writes: checkpoints, sample grids, metrics and the progress bar.
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (progress and self.master), unit="step",
                   dynamic_ncols=True, desc=self.run_dir.name)
        t_last, step_last = time.perf_counter(), self.step
        with (open(log_path, "a", encoding="utf-8") if self.master else open(os.devnull, "w")) as log:
            while self.step < cfg.steps:
                stats = self.train_step()
                now = time.perf_counter()
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    ips = (self.step - step_last) * cfg.batch_size / max(now - t_last, 1e-9)
                    t_last, step_last = now, self.step
                    row = {"step": self.step, "kimg": self.step * cfg.batch_size / 1000,
                           "img_per_s": round(ips, 1), **{k: round(v, 6) for k, v in stats.items()},
                           "lr_g": self.opt_g.param_groups[0]["lr"], "lr_d": self.opt_d.param_groups[0]["lr"]}
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    if self.tb is not None:
                        self.tb.scalars(self.step, row)
                    bar.set_postfix(D=f"{stats['loss_d']:.3f}", G=f"{stats['loss_g']:.3f}",
                                    img_s=f"{ips:.0f}")
                bar.update(1)
                if not self.master:
                    continue
                if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                    self.sample_grid()
                if cfg.eval_every and self.evaluate and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                    self._evaluate(log)
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
            bar.close()
            if self.d_step < cfg.d_finetune_steps:
                self._finetune_d(log, progress)
        if self.master:
            plot_metrics(self.run_dir)  # the whole run, whether or not it was evaluated
            if self.tb is not None:
                self.tb.close()
        return self.run_dir

    def _finetune_d(self, log: Any, progress: bool) -> None:
        cfg = self.cfg
        self.refresh_ema_stats()  # D learns against the G that gets exported
        # BatchNorm statistics stay as the GAN training left them: updating them from the
        # blank/noise negatives would shift the normalisation every score is made with
        # (measured: with it, keeping D's best half of G's samples raised FD 1.52 -> 1.80).
        self.D.eval()
        bar = tqdm(total=cfg.d_finetune_steps, initial=self.d_step, disable=not progress, unit="step",
                   dynamic_ncols=True, desc="D fine-tune")
        while self.d_step < cfg.d_finetune_steps:
            stats = self.finetune_d_step()
            if self.d_step % cfg.log_every == 0 or self.d_step == cfg.d_finetune_steps:
                log.write(json.dumps({"step": self.step, "d_step": self.d_step,
                                      **{k: round(v, 6) for k, v in stats.items()}}) + "\n")
                log.flush()
                bar.set_postfix(D=f"{stats['loss_d']:.3f}", real=f"{stats['d_real']:.2f}",
                                fake=f"{stats['d_fake']:.2f}", neg=f"{stats['d_neg']:.2f}")
            bar.update(1)
            if self.d_step % cfg.ckpt_every == 0 or self.d_step == cfg.d_finetune_steps:
                self.save_checkpoint()
        bar.close()

    def _evaluate(self, log: Any) -> None:
        assert self.evaluate is not None
        self.refresh_ema_stats()
        metrics = self.evaluate(self)
        log.write(json.dumps({"step": self.step, "eval": metrics}) + "\n")
        log.flush()
        if self.tb is not None:
            self.tb.scalars(self.step, metrics, "eval")
        plot_metrics(self.run_dir)
        fd = metrics["frechet_distance"]
        if self.best is None or fd < self.best["frechet_distance"]:
            self.best = {"step": self.step, "frechet_distance": fd, "file": ckpt.checkpoint_name(self.step)}
            ckpt.save(self.state(), self.run_dir / "checkpoint-best.pt")


def train(cfg: TrainConfig, outdir: str | Path = "runs", resume: str | None = None,
          progress: bool = True, steps: int | None = None, given: Iterable[str] = ()) -> Path:
    """Train from scratch, or continue the run/checkpoint ``resume`` (to ``steps`` total).
    When resuming, the schedule fields named in ``given`` (set explicitly by the caller)
    and those that differ from the defaults replace the saved ones. Under torchrun
    (RANK/WORLD_SIZE set) every process runs this; rank 0 alone writes."""
    joined = init_distributed()
    try:
        return _train(cfg, outdir, resume, progress, steps, given)
    finally:
        if joined:
            import torch.distributed as dist
            dist.destroy_process_group()


def _train(cfg: TrainConfig, outdir: str | Path, resume: str | None, progress: bool, steps: int | None,
           given: Iterable[str]) -> Path:
    rank, world = dist_rank_world()
    state = None
    if resume:
        state = ckpt.load(resume, "resume")
        ckpt.check_state(state, "resume", resume=True)
        saved = TrainConfig.from_saved(state["config"], f"resume: {state['path']}")
        # Schedule fields given now win over the saved ones; the model and data stay.
        changed = {k: getattr(cfg, k) for k in RESUMABLE
                   if k in given or getattr(cfg, k) != getattr(TrainConfig(), k)}
        cfg = dataclasses.replace(saved, **changed)
        if steps is not None:
            cfg.steps = steps
        run_dir = Path(state["path"]).parent
    if cfg.recipe == "dcgan" and (state is None):
        cfg = dcgan_recipe(cfg)
    if cfg.recipe == "fastgan" and (state is None):
        cfg = fastgan_recipe(cfg)
    cfg.validate()
    data = load_dataset(cfg.data, cfg.resolution, cfg.channels, cfg.conditional, cfg.data_dir, cfg.download)
    if data.skipped:
        log.warning("skipped %d unreadable image file(s) in %s", data.skipped, cfg.data)
    cfg = resolve_augment(cfg, data.channels)
    if world > 1 and cfg.d_finetune_steps:
        raise bad_value("d_finetune_steps", cfg.d_finetune_steps, "0 under torchrun (fine-tune D by resuming the "
                        "checkpoint in one process)")
    if state is None:
        made = [""]
        if rank == 0:
            run_dir = new_run_dir(Path(outdir), data, cfg)
            atomic_write(run_dir / "config.json", (json.dumps(json.loads(cfg.to_json()), indent=2) + "\n").encode())
            made = [str(run_dir)]
        if world > 1:  # one run folder: rank 0's
            import torch.distributed as dist
            dist.broadcast_object_list(made, src=0)
        run_dir = Path(made[0])
    trainer = Trainer(cfg, data, run_dir, state)
    if cfg.eval_every:
        from .evaluate_hook import make_evaluator
        trainer.evaluate = make_evaluator(cfg, data)
    if state is not None and trainer.step >= cfg.steps and trainer.d_step >= cfg.d_finetune_steps:
        raise bad_value("steps", cfg.steps, f"must be larger than the checkpoint's step ({trainer.step}) "
                        "to continue (or raise --set d_finetune_steps)")
    out = trainer.run(progress=progress)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()  # every rank finished before rank 0's checkpoint is read
    return out


def img_per_s(run_dir: Path) -> float:
    rows = read_rows(run_dir / "metrics.jsonl")
    rates = [r["img_per_s"] for r in rows if "img_per_s" in r][1:]  # first includes warm-up
    return float(np.median(rates)) if rates else 0.0
