"""Projection: find the latent (and class) whose generated image matches a given image,
with onnxruntime only (no autograd).

Two stages:
1. a start: the model's encoder (``encoder.onnx``, image -> z + class logits, trained by
   ``gansample train-encoder``) when it has one, and a screen of random latents (for every
   class the encoder or the features model does not rule out);
2. a gradient-free refinement: CMA-ES (the ``cma`` package) over z, one population per
   generator batch, minimising

       loss = mean((G(z) - x)^2) in [-1, 1] units
            + feature_weight * ||f(G(z)) - f(x)||^2 / ||f(x)||^2     (features model, if any)
            + d_weight * softplus(-D(G(z)))                           (discriminator, if asked)

The result keeps the best candidate ever evaluated, so more steps never make it worse.
"""

from __future__ import annotations

import os
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import GansampleError, bad_value, check_count, first_line
from .generator import Generator
from .latents import MAX_SEED
from .session import Device, Session

MAX_STEPS = 10_000
MAX_POPSIZE = 1024
MAX_IMAGES = 10_000  # images in one project() call
DEFAULT_STEPS = 40
DEFAULT_POPSIZE = 32
SCREEN = 256  # random latents screened per class for the start


class Encoder:
    """An ``encoder.onnx``: uint8 images NHWC -> (z [N, z_dim], class logits [N, K] or None)."""

    def __init__(self, path: str | os.PathLike[str], device: "str | Device" = "auto", threads: int | None = None) -> None:
        self.session = Session(path, device, threads)
        self.info = self.session.info
        if self.info.role != "encoder":
            raise bad_value("encoder", str(path), f"an encoder (role 'encoder'); this file's role is {self.info.role!r}")
        # Session checked the graph: 'images' in; 'z' (and 'class_logits') out.
        self.outputs = [o.name for o in self.session.sess.get_outputs()]

    def matches(self, g: Generator) -> str:
        """'' when this encoder was trained for ``g``'s graph family, else why not."""
        i, gi = self.info, g.info
        if (i.z_dim, i.num_classes, i.img_resolution, i.img_channels) != (
                gi.z_dim, gi.num_classes, gi.img_resolution, gi.img_channels):
            return (f"the encoder is for z_dim {i.z_dim}, {i.num_classes} classes, {i.img_resolution} px x "
                    f"{i.img_channels}; the generator has z_dim {gi.z_dim}, {gi.num_classes} classes, "
                    f"{gi.img_resolution} px x {gi.img_channels}")
        return ""

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        outs = self.session.sess.run(None, {"images": np.ascontiguousarray(images, np.uint8)})
        named = dict(zip(self.outputs, outs))
        return named["z"].astype(np.float32), named.get("class_logits")


@dataclass
class Projection:
    """What project() found, one row per input image."""

    latents: np.ndarray  # float32 [N, z_dim]: feed to Generator.sample(latents=..., labels=...)
    labels: np.ndarray | None  # int64 [N] for conditional models
    reconstructions: np.ndarray  # uint8 [N, H, W, C]: G(latents, labels)
    targets: np.ndarray  # uint8 [N, H, W, C]: the inputs as the model sees them
    pixel_rmse: np.ndarray  # [N], in 0-255 pixel units
    feature_distance: np.ndarray  # [N], Euclidean, in the features model's space (NaN without one)
    seconds: np.ndarray  # [N] wall time per image
    start: str  # "encoder" or "random starts"
    notes: list[str] = field(default_factory=list)  # run-wide notes (no encoder, no features model ...)

    def __len__(self) -> int:
        return len(self.latents)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class _Objective:
    """The loss of many candidate latents for one target image, in generator batches."""

    def __init__(self, g: Generator, target: np.ndarray, features: Any, feature_weight: float,
                 d: Any, d_weight: float) -> None:
        self.g, self.d, self.fx = g, d, features
        self.t = target.astype(np.float32) / 127.5 - 1.0
        self.fw, self.dw = feature_weight, d_weight
        self.ft = None
        if features is not None:
            self.ft = features(target[None])[0][0]
            self.fnorm = max(float(self.ft @ self.ft), 1e-6)

    def __call__(self, z: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        imgs = self.g.run(z.astype(np.float32), labels)
        x = imgs.astype(np.float32) / 127.5 - 1.0
        loss = ((x - self.t) ** 2).reshape(len(z), -1).mean(1)
        if self.ft is not None:
            f = self.fx(imgs)[0]
            loss = loss + self.fw * ((f - self.ft) ** 2).sum(1) / self.fnorm
        if self.d is not None and self.dw:
            loss = loss + self.dw * _softplus(-self.d.logits(imgs, labels))
        return loss, imgs


def _load_cma() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it warns when matplotlib is missing (only its plots need it)
            import cma
    except ModuleNotFoundError:
        raise GansampleError("projection needs the 'cma' package (CMA-ES): pip install 'gansample[project]'",
                             "steps") from None
    return cma


def check_args(steps: int, popsize: int, feature_weight: float, d_weight: float,
               seed: int = 0) -> tuple[int, int, float, float, int]:
    """The search's settings, each checked by name (before any image is read or model run)."""
    steps = check_count("steps", steps, 1, MAX_STEPS, "an integer (CMA-ES generations)")
    popsize = check_count("popsize", popsize, 4, MAX_POPSIZE, "an integer (candidates per generation)")
    out = []
    for name, v in (("feature_weight", feature_weight), ("d_weight", d_weight)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise bad_value(name, v, "a number >= 0") from None
        if not (0.0 <= f <= 1e6):
            raise bad_value(name, v, "a number in [0, 1e6]")
        out.append(f)
    return steps, popsize, out[0], out[1], check_count("seed", seed, 0, MAX_SEED, "an integer")


def features_for(g: Generator, path: "str | os.PathLike[str] | None" = None, device: str = "auto") -> Any:
    """The features model for the loss: ``path``, else the bundled one for the model's
    dataset (when its image size matches), else None (the loss is then pixels only)."""
    from .metrics import FeatureExtractor, features_path
    given = path is not None
    if path is None and g.info.dataset:
        try:
            path = features_path(g.info.dataset)
        except GansampleError:
            path = None
    if path is None:
        return None
    fx = FeatureExtractor(path, device=device, threads=g.session_threads)
    if (fx.info.img_resolution, fx.info.img_channels) != (g.info.img_resolution, g.info.img_channels):
        if given:
            raise GansampleError(f"features: {path} takes {fx.info.img_resolution} px x {fx.info.img_channels} "
                                 f"images; the model makes {g.info.img_resolution} px x {g.info.img_channels}",
                                 "features")
        return None
    return fx


def load_encoder(g: Generator, encoder: "Encoder | str | os.PathLike[str] | None | bool") -> tuple[Encoder | None, str]:
    """The encoder to start from: the given one, the model folder's ``encoder.onnx``
    (``encoder=None``), or none (``encoder=False``); with a note when there is none."""
    if encoder is False:
        return None, "no encoder asked for: refinement from random starts only"
    if encoder is None or encoder is True:
        path = g.files.encoder
        if path is None:
            return None, (f"model {g.name!r} has no encoder.onnx: refinement from random starts only "
                          "(slower and less exact; `gansample train-encoder` makes one)")
        enc = Encoder(path, g.device, g.session_threads)
    else:
        enc = encoder if isinstance(encoder, Encoder) else Encoder(encoder, g.device, g.session_threads)
    why = enc.matches(g)
    if why:
        raise bad_value("encoder", str(enc.session.path), f"an encoder for this generator ({why})")
    return enc, ""


def project(g: Generator, images: np.ndarray, cls: "int | str | None" = None, steps: int = DEFAULT_STEPS,
            popsize: int = DEFAULT_POPSIZE, encoder: "Encoder | str | os.PathLike[str] | None | bool" = None,
            features: Any = None, feature_weight: float = 1.0, d: Any = None, d_weight: float = 0.0,
            seed: int = 0) -> Projection:
    """Project uint8 images [N, H, W, C] (already at the model's size and channels; see
    gansample.images.preprocess) into ``g``'s latent space.

    ``cls`` fixes the class of a conditional model; otherwise the encoder's class (or the
    best of a screen over every class) is used. ``features``: a
    gansample.metrics.FeatureExtractor for the feature term (None: pixels only).
    ``d``: a gansample.discriminator.Discriminator for the realism term (``d_weight`` > 0)."""
    steps, popsize, feature_weight, d_weight, seed = check_args(steps, popsize, feature_weight, d_weight, seed)
    info = g.info
    r, c = info.img_resolution, info.img_channels
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (r, r, c) or images.dtype != np.uint8:
        raise bad_value("images", f"{images.dtype} {list(images.shape)}", f"uint8 [N, {r}, {r}, {c}]")
    check_count("images", len(images), 1, MAX_IMAGES, "1 or more images")
    fixed = g.class_index(cls) if cls is not None else None  # refuses any class for unconditional models
    enc, note = load_encoder(g, encoder)
    if features is not None and (features.info.img_resolution, features.info.img_channels) != (r, c):
        raise bad_value("features", str(features.session.path), f"a features model for {r}x{r}x{c} images")
    cma = _load_cma()
    notes = [note] if note else []
    rng = np.random.default_rng(seed)
    z_enc, logits = enc(images) if enc is not None else (None, None)
    n = len(images)
    out_z = np.zeros((n, info.z_dim), np.float32)
    out_y = np.zeros(n, np.int64) if info.conditional else None
    recon = np.zeros_like(images)
    seconds = np.zeros(n)
    for i in range(n):
        t0 = time.perf_counter()
        obj = _Objective(g, images[i], features, feature_weight, d, d_weight)
        if fixed is not None:
            classes = [fixed]
        elif info.conditional and logits is not None:
            classes = [int(np.argmax(logits[i]))]
        elif info.conditional:
            classes = list(range(info.num_classes))
        else:
            classes = [-1]
        # Start: the encoder's guess against a screen of random latents (per candidate class).
        best: tuple[float, Any, Any, Any] = (np.inf, None, None, None)
        for k in classes:
            cands = rng.standard_normal((SCREEN if enc is None else popsize, info.z_dim)).astype(np.float32)
            if z_enc is not None:
                cands[0] = z_enc[i]
            y = np.full(len(cands), k, np.int64) if k >= 0 else None
            loss, imgs = obj(cands, y)
            j = int(np.argmin(loss))
            if loss[j] < best[0]:
                best = (float(loss[j]), cands[j].copy(), k, imgs[j])
        f_best, z_best, k_best, img_best = best
        assert z_best is not None and k_best is not None
        y_pop = np.full(popsize, k_best, np.int64) if k_best >= 0 else None
        es = cma.CMAEvolutionStrategy(z_best.astype(np.float64), 0.5 if enc is not None else 0.7,
                                      {"popsize": popsize, "seed": int(rng.integers(1, 2**31)), "verbose": -9,
                                       "maxiter": steps, "tolfun": 0, "tolflatfitness": 10**9,
                                       "CMA_active": True,
                                       # Separable CMA-ES: no eigendecomposition per generation
                                       # (64-d: 0.62 s against 1.05 s per image, same error).
                                       "CMA_diagonal": True})
        for _ in range(steps):
            pop = np.asarray(es.ask(), np.float32)
            loss, imgs = obj(pop, y_pop)
            es.tell(list(pop.astype(np.float64)), loss.tolist())
            j = int(np.argmin(loss))
            if loss[j] < f_best:
                f_best, z_best, img_best = float(loss[j]), pop[j].copy(), imgs[j]
        out_z[i] = z_best
        if out_y is not None:
            out_y[i] = k_best
        recon[i] = img_best
        seconds[i] = time.perf_counter() - t0
    diff = recon.astype(np.float64) - images.astype(np.float64)
    rmse = np.sqrt((diff ** 2).reshape(n, -1).mean(1))
    if features is not None:
        fd = np.linalg.norm(features(recon)[0] - features(images)[0], axis=1)
    else:
        fd = np.full(n, np.nan)
        notes.append("no features model: the loss is pixels only and no feature distance is reported")
    return Projection(out_z, out_y, recon, images, rmse, fd, seconds, "encoder" if enc is not None else "random starts",
                      notes)


def save_latents(path: str | os.PathLike[str], latents: np.ndarray, labels: np.ndarray | None = None,
                 psi: float = 1.0) -> Path:
    """Write latents (+ labels) as a plain .npz (no pickles) that ``load_latents``,
    ``gansample generate --latents`` and numpy read."""
    from .output import save_npz
    arrays: dict[str, np.ndarray] = {"latents": np.asarray(latents, np.float32), "psi": np.float32(psi) * np.ones(1, np.float32)}
    if labels is not None:
        arrays["labels"] = np.asarray(labels, np.int64)
    save_npz(path, **arrays)
    return Path(path)


MAX_LATENT_FILE = 256 * 2**20  # on disk, and decoded (an .npz compresses)


LATENT_MEMBERS = ("latents.npy", "labels.npy")  # what load_latents reads from an .npz


def _declared_arrays(path: Path) -> list[tuple[tuple[int, ...], np.dtype[Any]]]:
    """(shape, dtype) of the arrays that load_latents reads from an .npy or .npz, as their
    headers declare them, read without decoding any data: the sizes are checked before
    memory is spent. An .npz is told by its first bytes, as numpy tells it."""

    def header(f: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f, max_header_size=10_000)
        return tuple(int(d) for d in shape), dtype

    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            f.seek(0)
            return [header(f)]
    with zipfile.ZipFile(path) as z:
        out = []
        for member in LATENT_MEMBERS:
            if member in z.namelist():
                with z.open(member) as m:
                    out.append(header(m))
        return out


def check_latent_files(paths: "Sequence[str | os.PathLike[str]]", arg: str = "latents",
                       max_rows: int | None = None) -> None:
    """Each latent file exists, is at most MAX_LATENT_FILE on disk and decoded, and all of them
    together declare at most ``max_rows`` latents: read from the headers, nothing decoded."""
    rows = 0
    for p in paths:
        path = Path(p)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise bad_value(arg, str(p), f"a readable .npz or .npy latent file ({e.strerror or e})") from None
        if size > MAX_LATENT_FILE:
            raise bad_value(arg, str(p), f"a latent file of at most {MAX_LATENT_FILE >> 20} MB")
        try:
            declared = _declared_arrays(path)
        except (OSError, ValueError, EOFError, RuntimeError, NotImplementedError, zlib.error,
                zipfile.BadZipFile) as e:
            raise bad_value(arg, str(p), f"an .npz or .npy latent file ({first_line(e)})") from None
        decoded = sum(int(np.prod(shape, dtype=np.float64)) * dtype.itemsize for shape, dtype in declared)
        if decoded > MAX_LATENT_FILE:
            raise bad_value(arg, str(p), f"latent arrays of at most {MAX_LATENT_FILE >> 20} MB decoded; its headers "
                            f"declare {decoded / 2**20:.0f} MB")
        if declared:  # the latents: the first array of an .npy, latents.npy of an .npz
            shape = declared[0][0]
            rows += shape[0] if len(shape) > 1 else 1
        if max_rows is not None and rows > max_rows:
            raise bad_value(arg, str(p), f"at most {max_rows} latents in all files together; "
                            f"these declare {rows} so far")


def load_latents(paths: "str | os.PathLike[str] | Sequence[str | os.PathLike[str]]", z_dim: int | None = None,
                 arg: str = "latents", max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one or more latent files (.npz with ``latents`` [N, z_dim] and optional
    ``labels`` [N], as written by project(); or a .npy of latents) -> (latents, labels).
    ``max_rows``: the most latents the caller takes from all files together, checked from
    the files' headers before anything is decoded."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    check_latent_files(paths, arg, max_rows)
    zs, ys = [], []
    for p in paths:
        path = Path(p)
        try:
            data = np.load(path, allow_pickle=False)
            if isinstance(data, np.ndarray):
                z, y = data, None
            else:
                with data:
                    if "latents" not in data.files:
                        raise bad_value(arg, str(p), f"an .npz with a 'latents' array (it has: {', '.join(data.files)})")
                    z = data["latents"]
                    y = data["labels"] if "labels" in data.files else None
        except GansampleError:
            raise
        except (OSError, ValueError, EOFError, NotImplementedError, zlib.error, zipfile.BadZipFile) as e:
            raise bad_value(arg, str(p), f"an .npz or .npy latent file without pickled objects "
                            f"({first_line(e)})") from None
        z = np.asarray(z)
        if z.ndim == 1:
            z = z[None]
        if z.ndim != 2 or not np.issubdtype(z.dtype, np.floating) or (z_dim is not None and z.shape[1] != z_dim):
            want = f"[N, {z_dim}]" if z_dim is not None else "[N, z_dim]"
            raise bad_value(arg, str(p), f"float latents of shape {want}; this file has {z.dtype} {list(z.shape)}")
        if y is not None and (y.ndim != 1 or len(y) != len(z) or not np.issubdtype(y.dtype, np.integer)):
            raise bad_value(arg, str(p), f"integer labels [N] beside the latents; this file has {y.dtype} {list(y.shape)}")
        zs.append(z.astype(np.float32))
        ys.append(None if y is None else y.astype(np.int64))
    labels = None
    if all(y is not None for y in ys):
        labels = np.concatenate([y for y in ys if y is not None])
    elif any(y is not None for y in ys):
        raise bad_value(arg, " ".join(str(p) for p in paths)[:200], "latent files that all have labels or none do")
    return np.concatenate(zs), labels


@dataclass
class Target:
    """One input image as the model sees it, with what was done to it."""

    path: str
    image: np.ndarray | None  # uint8 [H, W, C] at the model's size; None when unusable
    notes: list[str] = field(default_factory=list)
    error: str = ""


def load_targets(paths: Sequence[str], resolution: int, channels: int, limit: int = MAX_IMAGES) -> list[Target]:
    """Files, folders and globs -> one Target per file, in order. Unusable files carry an
    error (the others are still used); colour for a grayscale model, grayscale for a
    colour one and other sizes are converted, with a note."""
    from .discriminator import expand_paths
    from .images import ImageLoadError, is_grayscale, open_image, preprocess

    out = []
    for path, error in expand_paths(paths, limit):
        if error:
            out.append(Target(path, None, error=error))
            continue
        try:
            img = open_image(path, target=resolution)
        except ImageLoadError as e:
            out.append(Target(path, None, error=str(e)))
            continue
        notes = []
        gray = is_grayscale(img)
        if channels == 1 and not gray:
            notes.append(f"colour image ({img.mode}) converted to grayscale for this grayscale model")
        elif channels == 3 and gray:
            notes.append("grayscale image repeated into RGB for this colour model")
        w, h = img.size
        if w != h:
            notes.append(f"{w}x{h} centre-cropped to a square")
        if min(w, h) != resolution:
            notes.append(f"resized from {min(w, h)} px to the model's {resolution} px")
        out.append(Target(path, preprocess(img, resolution, channels), notes))
    return out
