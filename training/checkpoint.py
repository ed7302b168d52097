"""Checkpoints: torch tensors and plain containers only, loaded with weights_only=True
(nothing in a checkpoint can execute code), written atomically."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from gansample.errors import GansampleError, bad_value

FORMAT = "gansample-checkpoint"
VERSION = 1
_NAME = re.compile(r"^checkpoint-(\d{8})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:08d}.pt"


def save(obj: dict[str, Any], path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a kill during the
    save leaves the previous checkpoints intact and never a partial file under ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **obj}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def list_checkpoints(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if _NAME.match(p.name))


def resolve(path_str: str, arg: str = "--resume") -> Path:
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


def load(path_str: str, arg: str = "CHECKPOINT") -> dict[str, Any]:
    path = resolve(path_str, arg)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise GansampleError(f"{arg}: {path} is not a safe gansample checkpoint: it contains "
                             f"pickled objects other than tensors, which are never loaded "
                             f"({first[:200]})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise GansampleError(f"{arg}: {path} is corrupt or truncated and cannot be read "
                             f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise GansampleError(f"{arg}: {path} is a readable torch file but not a gansample "
                             "checkpoint (no 'format: gansample-checkpoint' entry)")
    if obj.get("version", 0) > VERSION:
        raise GansampleError(f"{arg}: {path} has checkpoint version {obj['version']}; this "
                             f"gansample reads up to {VERSION}: upgrade gansample")
    obj["path"] = str(path)
    return obj
