"""Checkpoints: torch tensors and plain containers only, loaded with weights_only=True
(nothing in a checkpoint can execute code), written atomically."""

from __future__ import annotations

import inspect
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from gansample.errors import GansampleError, bad_value, first_line
from gansample.files import atomic_write

from .models import SUPPORTED_RESOLUTIONS, Discriminator, Generator

FORMAT = "gansample-checkpoint"
VERSION = 1
_NAME = re.compile(r"^checkpoint-(\d{8})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:08d}.pt"


def save(obj: dict[str, Any], path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a kill during the
    save leaves the previous checkpoints intact and never a partial file under ``path``."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **obj}, f)
    atomic_write(path, write, fsync=True)


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if _NAME.match(p.name))


def resolve(path_str: str, arg: str = "resume") -> Path:
    """A checkpoint file, or a run folder (its latest checkpoint)."""
    path = Path(path_str)
    if path.is_dir():
        ckpts = list_checkpoints(path)
        if not ckpts:
            raise bad_value(arg, path_str, "a run folder containing checkpoint-*.pt files, "
                            "or a checkpoint file; this folder has none")
        return ckpts[-1]
    if not path.is_file():
        raise bad_value(arg, path_str, "an existing checkpoint file or run folder")
    return path


def load(path_str: str, arg: str = "checkpoint") -> dict[str, Any]:
    path = resolve(path_str, arg)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = first_line(e, 200, "")
        raise GansampleError(f"{arg}: {path} is not a safe gansample checkpoint: it contains "
                             f"pickled objects other than tensors, which are never loaded "
                             f"({first[:200]})", arg) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise GansampleError(f"{arg}: {path} is corrupt or truncated and cannot be read "
                             f"({first_line(e)})", arg) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise GansampleError(f"{arg}: {path} is a readable torch file but not a gansample "
                             "checkpoint (no 'format: gansample-checkpoint' entry)", arg)
    if obj.get("version", 0) > VERSION:
        raise GansampleError(f"{arg}: {path} has checkpoint version {obj['version']}; this "
                             f"gansample reads up to {VERSION}: upgrade gansample", arg)
    obj["path"] = str(path)
    check_state(obj, arg, resume=False, path=str(path))
    return obj


# Bounds on the model arguments a checkpoint may carry, checked before a tensor is built.
_ARG_BOUNDS = {"z_dim": (1, 4096), "channels": (1, 3), "num_classes": (0, 100_000), "width": (1, 4096)}


def check_model_args(args: Any, cls: type, source: str, arg: str | None = None) -> dict[str, Any]:
    """The constructor arguments of G or D stored in a checkpoint: known keys only, sizes
    in range. A crafted or damaged checkpoint is refused before it allocates anything."""
    if not isinstance(args, dict):
        raise GansampleError(f"{source}: the model arguments are not a dict", arg)
    params = set(inspect.signature(cls).parameters)
    unknown = sorted(set(args) - params)
    if unknown:
        raise GansampleError(f"{source}: unknown {cls.__name__} argument(s) {', '.join(map(str, unknown))}; "
                             f"this version knows {', '.join(sorted(params))}", arg)
    for k, v in args.items():
        if k == "resolution":
            if v not in SUPPORTED_RESOLUTIONS:
                raise GansampleError(f"{source}: {cls.__name__} resolution {v!r}; supported: "
                                     f"{', '.join(map(str, SUPPORTED_RESOLUTIONS))}", arg)
        elif k in _ARG_BOUNDS:
            lo, hi = _ARG_BOUNDS[k]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise GansampleError(f"{source}: {cls.__name__} {k} {v!r}; expected an integer from {lo} to {hi}", arg)
    check_model_size(cls, args, source, arg)
    return args


MAX_PARAMS = 400_000_000  # per network: 1.6 GB of float32 weights, several times any recipe here


def check_model_size(cls: type, args: dict[str, Any], source: str, arg: str | None = None) -> int:
    """Build the network on the meta device (no memory) and count its parameters; refuse
    sizes that would exhaust the machine before a real tensor is allocated."""
    try:
        with torch.device("meta"):
            model = cls(**args)
    except (TypeError, ValueError, RuntimeError) as e:
        raise GansampleError(f"{source}: {cls.__name__} cannot be built from {args} "
                             f"({first_line(e)})", arg) from None
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    if n > MAX_PARAMS:
        raise GansampleError(f"{source}: {cls.__name__} with {args} would have {n:,} parameters; "
                             f"at most {MAX_PARAMS:,}", arg)
    return n


REQUIRED = ("g_args", "d_args", "G_ema", "D", "step")


def check_state(state: dict[str, Any], arg: str, resume: bool = False, path: str = "") -> None:
    """Keys and model arguments of a checkpoint (``resume``: also what training needs);
    errors name ``arg``, the argument that gave the checkpoint."""
    source = f"{arg}: {path or state.get('path', 'checkpoint')}"
    need = REQUIRED + (("G", "opt_g", "opt_d", "rng", "config") if resume else ())
    missing = [k for k in need if k not in state]
    if missing:
        raise GansampleError(f"{source}: the checkpoint lacks {', '.join(missing)}", arg)
    check_model_args(state["g_args"], Generator, source, arg)
    check_model_args(state["d_args"], Discriminator, source, arg)
    if isinstance(state["step"], bool) or not isinstance(state["step"], int) or state["step"] < 0:
        raise GansampleError(f"{source}: step {state['step']!r} is not a count", arg)
