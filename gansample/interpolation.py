"""Latent walks: one engine for the CLI, the Python API and the web demo."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import latents as lat
from .errors import GansampleError, bad_value
from .generator import Generator
from .images import atomic_write, ensure_outdir, make_grid, save_png, to_pil

METHODS = ("slerp", "lerp")
OUTPUT_KINDS = (".gif", ".mp4", "folder")


@dataclass
class Interpolation:
    frames: np.ndarray  # uint8 [F, H, W, C] (a grid of walks when there are several)
    latents: np.ndarray  # float32 [walks, F, z_dim]
    class_weights: np.ndarray | None  # float32 [walks, F, num_classes] for conditional models
    keyframes: list[list[int]]  # seeds, per walk
    steps: int
    method: str
    loop: bool

    def __len__(self) -> int:
        return len(self.frames)


def frame_times(n_keys: int, steps: int, loop: bool) -> list[tuple[int, int, float]]:
    """(from key, to key, t) for every frame: `steps` frames per transition, starting on
    each keyframe; a closed loop returns to the first key, an open walk ends on the last."""
    transitions = n_keys if loop else n_keys - 1
    out = [(i, (i + 1) % n_keys, k / steps) for i in range(transitions) for k in range(steps)]
    if not loop:
        out.append((n_keys - 1, n_keys - 1, 0.0))
    return out


def walk(keys: np.ndarray, steps: int, method: str, loop: bool) -> np.ndarray:
    """[K, D] keyframe vectors -> [F, D] path."""
    fn = lat.slerp if method == "slerp" else lat.lerp
    frames = frame_times(len(keys), steps, loop)
    return np.stack([fn(keys[a], keys[b], np.array([t]))[0] if a != b else keys[a] for a, b, t in frames])


def interpolate(g: Generator, seeds: Sequence[int] | str, steps: int = 30, method: str = "slerp",
                loop: bool = False, psi: float = 1.0, cls: "int | str | None" = None,
                walks: int = 1) -> Interpolation:
    """Walk through the latents (and, for conditional models without ``cls``, the classes)
    of keyframe ``seeds``. ``walks`` > 1 adds walks whose keyframes are the seeds shifted
    by 1, 2, ...; they are tiled side by side in each frame."""
    seed_list = lat.parse_seeds(seeds) if isinstance(seeds, str) else [int(s) for s in seeds]
    if len(seed_list) < 2:
        raise bad_value("--seeds", seeds, "at least two keyframe seeds, e.g. 3,17,42")
    if int(steps) < 2:
        raise bad_value("--steps", steps, "an integer >= 2 (frames per transition)")
    if method not in METHODS:
        raise bad_value("--method", method, f"valid: {', '.join(METHODS)}")
    if walks < 1:
        raise bad_value("--grid", walks, "an integer >= 1")
    psi = g.check_psi(psi)
    ncls = g.info.num_classes
    all_z, all_w, frames_per_walk, keyframes = [], [], [], []
    for j in range(walks):
        keys = [s + j for s in seed_list]
        keyframes.append(keys)
        z = walk(lat.truncate(lat.latents_for_seeds(keys, g.info.z_dim), psi), steps, method, loop)
        labels = g.labels_for(keys, cls)
        if labels is None:
            imgs, w = g.run(z, None), None
        elif len(set(labels.tolist())) == 1:
            imgs, w = g.run(z, np.full(len(z), labels[0], np.int64)), np.eye(ncls, dtype=np.float32)[
                np.full(len(z), labels[0])]
        else:
            # Different classes at the keyframes: blend the class embeddings linearly.
            w = walk(np.eye(ncls, dtype=np.float32)[labels], steps, "lerp", loop)
            imgs = g.run_mix(z, w)
        all_z.append(z)
        all_w.append(w)
        frames_per_walk.append(imgs)
    if walks == 1:
        frames = frames_per_walk[0]
    else:
        frames = np.stack([make_grid(np.stack([fw[f] for fw in frames_per_walk]), cols=walks)
                           for f in range(len(frames_per_walk[0]))])
    cw = np.stack(all_w) if all_w[0] is not None else None
    return Interpolation(frames, np.stack(all_z), cw, keyframes, int(steps), method, loop)


def output_kind(out: str) -> str:
    p = Path(out)
    if p.suffix.lower() in (".gif", ".mp4"):
        return p.suffix.lower()
    if p.suffix == "" or out.endswith(os.sep) or p.is_dir():
        return "folder"
    raise bad_value("--out", out, "a .gif or .mp4 file, or a folder for PNG frames (e.g. frames/)")


def check_output(out: str) -> str:
    """Validate --out before any work: its kind, and that its folder can be written."""
    kind = output_kind(out)
    p = Path(out)
    ensure_outdir(p if kind == "folder" else p.parent, "--out")
    if kind == ".mp4":
        try:
            import av  # noqa: F401
        except ModuleNotFoundError:
            raise GansampleError("--out: MP4 needs the 'video' extra (PyAV): pip install 'gansample[video]'; "
                                 "or write a .gif") from None
    return kind


def save(result: Interpolation, out: str, fps: float = 24.0, scale: int = 1) -> Path:
    """Write the frames as a GIF (Pillow), an MP4 (PyAV) or a folder of PNGs, atomically."""
    kind = check_output(out)
    frames = result.frames
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    path = Path(out)
    if kind == "folder":
        path.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            save_png(f, path / f"frame{i:04d}.png")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".gif":
        pils = [to_pil(f) for f in frames]
        duration = max(20, int(round(1000 / fps)))  # GIF delays are in 10 ms units, 20 ms minimum
        atomic_write(path, lambda tmp: pils[0].save(tmp, format="GIF", save_all=True, append_images=pils[1:],
                                                    duration=duration, loop=0, optimize=False, disposal=1))
        return path
    atomic_write(path, lambda tmp: _write_mp4(frames, tmp, fps))
    return path


def _write_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    import fractions

    import av
    h, w = frames.shape[1:3]
    # H.264 with yuv420p needs even sizes: pad by one pixel where needed.
    ph, pw = h + h % 2, w + w % 2
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": "18"}
        for f in frames:
            rgb = np.repeat(f, 3, axis=2) if f.shape[2] == 1 else f
            if (ph, pw) != (h, w):
                rgb = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
