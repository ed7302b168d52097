"""Latent walks: one engine for the CLI, the Python API and the web demo."""

from __future__ import annotations

import io
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import latents as lat
from .errors import GansampleError, bad_value, check_count
from .generator import Generator
from .images import make_grid, to_pil
from .output import atomic_write, ensure_outdir, save_png

METHODS = ("slerp", "lerp")
OUTPUT_KINDS = (".gif", ".mp4", "folder")
MAX_KEYFRAMES = 1_000
MAX_STEPS = 10_000
MAX_WALKS = 64
MAX_FRAMES = 100_000
# Every frame of a walk is held in memory (as it is for GIF and MP4 encoding): a walk's
# frames may take at most this many bytes, checked before anything is generated.
MAX_WALK_BYTES = 1 * 2**30


@dataclass
class Interpolation:
    frames: np.ndarray  # uint8 [F, H, W, C] (a grid of walks when there are several)
    latents: np.ndarray  # float32 [walks, F, z_dim]
    class_weights: np.ndarray | None  # float32 [walks, F, num_classes] for conditional models
    keyframes: list[list[int]]  # seeds, per walk (-1 for keyframes given as latents)
    steps: int
    method: str
    loop: bool

    def __len__(self) -> int:
        return len(self.frames)


def frame_count(n_keys: int, steps: int, loop: bool) -> int:
    """How many frames a walk through ``n_keys`` keyframes has (see frame_times)."""
    return (n_keys if loop else n_keys - 1) * steps + (0 if loop else 1)


def check_walk(n_keys: int, steps: int, loop: bool, walks: int, resolution: int, channels: int,
               max_frames: int = MAX_FRAMES, max_bytes: int = MAX_WALK_BYTES) -> int:
    """Validate the size of a walk before any work; returns its frame count. (Too few
    keyframes are refused by interpolate, which can echo them.)"""
    if n_keys > MAX_KEYFRAMES:
        raise bad_value("seeds", f"<{n_keys} seeds>", f"at most {MAX_KEYFRAMES} keyframes")
    frames = frame_count(n_keys, steps, loop)
    if frames > max_frames:
        raise bad_value("steps", steps, f"at most {max_frames} frames in all; {n_keys} keyframes x {steps} "
                        f"steps make {frames}")
    side = resolution + 2
    cols = int(np.ceil(np.sqrt(walks))) if walks > 1 else 1
    per_frame = (cols * side) * (int(np.ceil(walks / cols)) * side) * channels if walks > 1 else resolution ** 2 * channels
    if frames * per_frame * (1 if walks == 1 else 2) > max_bytes:
        raise bad_value("steps" if walks == 1 else "walks", steps if walks == 1 else walks,
                        f"a walk whose frames fit in {max_bytes >> 20} MB; {frames} frames of "
                        f"{per_frame} bytes do not (fewer steps, keyframes or walks)")
    return frames


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


def interpolate(g: Generator, seeds: "Sequence[int] | str | None" = None, steps: int = 30, method: str = "slerp",
                loop: bool = False, psi: float = 1.0, cls: "int | str | None" = None,
                walks: int = 1, latents: np.ndarray | None = None,
                labels: "Sequence[int] | np.ndarray | None" = None) -> Interpolation:
    """Walk through the latents (and, for conditional models without ``cls``, the classes)
    of keyframe ``seeds``. ``walks`` > 1 adds walks whose keyframes are the seeds shifted
    by 1, 2, ...; they are tiled side by side in each frame.

    Or walk through given keyframe ``latents`` [K, z_dim] (e.g. from gansample.projection:
    real images), with their ``labels`` [K] for conditional models (or ``cls``). Given
    latents are used as they are (no truncation in z)."""
    if (seeds is None) == (latents is None):
        raise bad_value("seeds", seeds, "either keyframe seeds or keyframe latents, not both or neither")
    steps = check_count("steps", steps, 2, MAX_STEPS, "an integer (frames per transition)")
    if method not in METHODS:
        raise bad_value("method", method, f"valid: {', '.join(METHODS)}")
    walks = check_count("walks", walks, 1, MAX_WALKS)
    psi = g.check_psi(psi)
    if latents is not None:
        return _walk_latents(g, latents, labels, steps, method, loop, psi, cls, walks)
    assert seeds is not None
    seed_list = list(g.seed_list(seeds, None, MAX_KEYFRAMES))
    if len(seed_list) < 2:
        raise bad_value("seeds", seeds, "at least two keyframe seeds, e.g. 3,17,42")
    if max(seed_list) + walks - 1 > lat.MAX_SEED:
        raise bad_value("walks", walks, f"walks whose shifted seeds stay <= {lat.MAX_SEED}")
    check_walk(len(seed_list), steps, loop, walks, g.info.img_resolution, g.info.img_channels)
    keys_z, keys_y, keyframes = [], [], []
    for j in range(walks):
        keys = [s + j for s in seed_list]
        keyframes.append(keys)
        keys_z.append(g.truncate(lat.latents_for_seeds(keys, g.info.z_dim), psi))
        keys_y.append(g.labels_for(keys, cls))
    return _render(g, keys_z, keys_y, keyframes, steps, method, loop, psi)


def _walk_latents(g: Generator, latents: np.ndarray, labels: "Sequence[int] | np.ndarray | None", steps: int,
                  method: str, loop: bool, psi: float, cls: "int | str | None", walks: int) -> Interpolation:
    z = np.asarray(latents, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != g.info.z_dim or not 2 <= len(z) <= MAX_KEYFRAMES:
        raise bad_value("latents", f"shape {list(z.shape)}", f"[K, {g.info.z_dim}] with 2 <= K <= {MAX_KEYFRAMES}")
    if not np.isfinite(z).all():
        raise bad_value("latents", "non-finite values", "finite numbers")
    if walks != 1:
        raise bad_value("walks", walks, "1 with keyframe latents (shifted walks need seeds)")
    check_walk(len(z), steps, loop, 1, g.info.img_resolution, g.info.img_channels)
    y: np.ndarray | None = None
    if g.info.conditional:
        if cls is not None:
            y = np.full(len(z), g.class_index(cls), np.int64)
        elif labels is None:
            raise bad_value("labels", None, "one label per keyframe latent (this model is class-conditional), or cls")
        else:
            y = np.asarray(labels, dtype=np.int64)
            if y.shape != (len(z),) or ((y < 0) | (y >= g.info.num_classes)).any():
                raise bad_value("labels", y.tolist()[:20], f"{len(z)} class indices 0-{g.info.num_classes - 1}")
    elif cls is not None:
        g.class_index(cls)  # raises: unconditional
    return _render(g, [z], [y], [[-1] * len(z)], steps, method, loop, psi)


def _render(g: Generator, keys_z: list[np.ndarray], keys_y: list[np.ndarray | None], keyframes: list[list[int]],
            steps: int, method: str, loop: bool, psi: float) -> Interpolation:
    ncls = g.info.num_classes
    all_z, all_w, frames_per_walk = [], [], []
    for kz, labels in zip(keys_z, keys_y):
        z = walk(kz, steps, method, loop)
        if labels is None:
            imgs, w = g.run(z, None, psi), None
        elif len(set(labels.tolist())) == 1:
            imgs, w = g.run(z, np.full(len(z), labels[0], np.int64), psi), np.eye(ncls, dtype=np.float32)[
                np.full(len(z), labels[0])]
        else:
            # Different classes at the keyframes: blend the class embeddings linearly.
            w = walk(np.eye(ncls, dtype=np.float32)[labels], steps, "lerp", loop)
            imgs = g.run_mix(z, w, psi)
        all_z.append(z)
        all_w.append(w)
        frames_per_walk.append(imgs)
    if len(frames_per_walk) == 1:
        frames = frames_per_walk[0]
    else:
        frames = np.stack([make_grid(np.stack([fw[f] for fw in frames_per_walk]), cols=len(frames_per_walk))
                           for f in range(len(frames_per_walk[0]))])
    cw = np.stack([w for w in all_w if w is not None]) if all_w[0] is not None else None
    return Interpolation(frames, np.stack(all_z), cw, keyframes, int(steps), method, loop)


def output_kind(out: str) -> str:
    p = Path(out)
    if p.suffix.lower() in (".gif", ".mp4"):
        return p.suffix.lower()
    if p.suffix == "" or out.endswith(os.sep) or p.is_dir():
        return "folder"
    raise bad_value("out", out, "a .gif or .mp4 file, or a folder for PNG frames (e.g. frames/)")


MAX_SCALE = 16


def check_output(out: str, fps: float = 24.0, scale: int = 1) -> str:
    """Validate the output options before any work: the kind of ``out`` and that its
    folder can be written, ``fps`` and ``scale``."""
    try:
        fps_ok = 0 < float(fps) <= 100
    except (TypeError, ValueError):
        fps_ok = False
    if not fps_ok:
        raise bad_value("fps", fps, "a number in (0, 100]")
    check_count("scale", scale, 1, MAX_SCALE, "an integer (upscaling factor)")
    kind = output_kind(out)
    p = Path(out)
    ensure_outdir(p if kind == "folder" else p.parent, "out")
    if kind == ".mp4":
        try:
            import av  # noqa: F401
        except ModuleNotFoundError:
            raise GansampleError("out: MP4 needs the 'video' extra (PyAV): pip install 'gansample[video]'; "
                                 "or write a .gif", "out") from None
    return kind


def save(result: Interpolation, out: str, fps: float = 24.0, scale: int = 1) -> Path:
    """Write the frames as a GIF (Pillow), an MP4 (PyAV) or a folder of PNGs, atomically.
    Frames are upscaled one at a time (``scale``), so memory stays that of the walk."""
    kind = check_output(out, fps, scale)
    scale = int(scale)
    # PNG folders and MP4 take the upscaled frames one at a time; Pillow's GIF writer holds
    # them all, so a GIF's upscaled frames get the walk's own memory bound.
    limit = MAX_WALK_BYTES if kind == ".gif" else 4 * MAX_WALK_BYTES
    if result.frames.nbytes * scale * scale > limit:
        raise bad_value("scale", scale, f"a factor whose upscaled frames stay under {limit >> 20} MB "
                        f"({len(result)} frames of {result.frames[0].nbytes} bytes here)")

    def frames() -> Iterator[np.ndarray]:
        for f in result.frames:
            yield f.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else f
    path = Path(out)
    if kind == "folder":
        ensure_outdir(path, "out")
        for i, f in enumerate(frames()):
            save_png(f, path / f"frame{i:04d}.png")
        return path
    if kind == ".gif":
        atomic_write(path, gif_bytes(frames(), fps))
        return path
    atomic_write(path, lambda tmp: _write_mp4(frames(), tmp, fps))
    return path


def gif_bytes(frames: Iterable[np.ndarray], fps: float) -> bytes:
    """Frames (uint8 [H, W, C]) -> an endlessly looping GIF."""
    pils = [to_pil(f) for f in frames]
    duration = max(20, int(round(1000 / fps)))  # GIF delays are in 10 ms units, 20 ms minimum
    buf = io.BytesIO()
    pils[0].save(buf, format="GIF", save_all=True, append_images=pils[1:], duration=duration, loop=0,
                 optimize=False, disposal=1)
    return buf.getvalue()


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    import fractions

    import av
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    # H.264 with yuv420p needs even sizes: pad by one pixel where needed.
    ph, pw = h + h % 2, w + w % 2
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": "18"}
        for f in itertools.chain([first], it):
            rgb = np.repeat(f, 3, axis=2) if f.shape[2] == 1 else f
            if (ph, pw) != (h, w):
                rgb = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
