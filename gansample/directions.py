"""Principal directions of a generator's latent space, and edits along them.

GANSpace (Harkonen et al. 2020) for z-space generators: sample many latents, take the
activations of the generator's first layer (the output of its first nonlinearity that
depends on z), find their principal components, and map each component back to z by
linear regression of z on the PCA coordinates. Direction k is the unit vector in z that
moves the first layer along its k-th principal component; z ~ N(0, I), so an amount of 1
is one standard deviation of z along it.

Directions are stored beside the generator as ``directions.npz`` (plain arrays, no
pickles) or, when the model folder cannot be written, cached under the user's cache
folder by the generator file's SHA-256. Computing them needs the ``onnx`` package (to
expose the first layer's output); reading them does not.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import GansampleError, bad_value, check_count
from .files import file_sha256, user_cache_dir
from .generator import Generator
from .registry import DIRECTIONS_FILE

log = logging.getLogger("gansample")
ACTIVATIONS = ("Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "Tanh", "Softplus", "HardSigmoid",
               "PRelu", "Mish", "HardSwish")
MAX_DIRECTIONS = 64
MAX_SAMPLES = 200_000
MAX_AMOUNTS = 64
MAX_AMOUNT = 100.0
DEFAULT_K, DEFAULT_SAMPLES = 16, 8192


@dataclass
class Directions:
    vectors: np.ndarray  # float32 [K, z_dim], unit length
    explained: np.ndarray  # float32 [K]: share of the layer's variance per component
    layer: str  # the graph tensor the PCA ran on
    generator_sha256: str

    def __len__(self) -> int:
        return len(self.vectors)


@dataclass
class EditResult:
    images: np.ndarray  # uint8 [S, A, H, W, C]: seed by amount
    latents: np.ndarray  # float32 [S, A, z_dim]
    labels: np.ndarray | None  # int64 [S]
    seeds: list[int]
    amounts: np.ndarray  # float32 [A]
    direction: int


def cache_dir() -> Path:
    return user_cache_dir("directions")


def _source_file(g: Generator) -> Path:
    """The float generator the directions are computed on (and keyed by)."""
    return g.files.generators.get("fp32") or g.files.generators.get("given") or g.session.path


def _first_layer(model: object, z_name: str = "z") -> str:
    """Name of the first nonlinearity's output downstream of z (else the first node's)."""
    graph = model.graph  # type: ignore[attr-defined]
    tainted = {z_name}
    first = ""
    for node in graph.node:  # ONNX nodes are topologically sorted
        if any(i in tainted for i in node.input):
            tainted.update(node.output)
            first = first or node.output[0]
            if node.op_type in ACTIVATIONS:
                return str(node.output[0])
    if not first:
        raise GansampleError("model: no node of the generator reads z", "model")
    return first


def _activations(g: Generator, z: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, str]:
    try:
        import onnx
    except ModuleNotFoundError:
        raise GansampleError("computing latent directions needs the onnx package: pip install 'gansample[wrap]' "
                             "(or use a model folder that ships directions.npz)", "model") from None
    import tempfile

    from .session import Session

    model = onnx.load(str(_source_file(g)))
    layer = _first_layer(model)
    model.graph.output.append(onnx.helper.make_tensor_value_info(layer, onnx.TensorProto.FLOAT, None))
    # The probe graph goes to the system's temporary folder: the model folder may be
    # read-only and the cache folder may not exist yet.
    with tempfile.TemporaryDirectory(prefix="gansample-pca-") as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(model, str(path))
        s = Session(path, g.device, g.session_threads, check=False)
        feeds: dict[str, np.ndarray] = {"z": z}
        if "psi" in s.input_names:
            feeds["psi"] = np.ones(len(z), np.float32)
        if labels is not None:
            feeds["label"] = labels
        out = []
        for i in range(0, len(z), 512):
            part = {k: v[i:i + 512] for k, v in feeds.items()}
            out.append(s.sess.run([layer], part)[0].reshape(len(part["z"]), -1).astype(np.float32))
        del s
    return np.concatenate(out), layer


def _top_components(a: np.ndarray, k: int, seed: int = 0, iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Top-k principal axes [k, D] and their variances of centred rows ``a`` [N, D], by
    randomised SVD (Halko et al. 2011): a few power iterations on a k+10-wide sketch,
    instead of a full SVD of N x D."""
    rng = np.random.default_rng(seed)
    q = a @ rng.standard_normal((a.shape[1], k + 10)).astype(np.float32)
    for _ in range(iters):
        q, _ = np.linalg.qr(q)
        q = a @ (a.T @ q)
    q, _ = np.linalg.qr(q)
    _, s, vt = np.linalg.svd(q.T @ a, full_matrices=False)
    return vt[:k], (s[:k] ** 2) / max(len(a) - 1, 1)


def compute_directions(g: Generator, k: int = DEFAULT_K, samples: int = DEFAULT_SAMPLES, seed: int = 0) -> Directions:
    """Principal latent directions of ``g`` (see the module docstring)."""
    k = check_count("k", k, 1, min(MAX_DIRECTIONS, g.info.z_dim))
    samples = check_count("samples", samples, max(2 * k, 64), MAX_SAMPLES)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((samples, g.info.z_dim), dtype=np.float32)
    labels = rng.integers(0, g.info.num_classes, samples).astype(np.int64) if g.info.conditional else None
    acts, layer = _activations(g, z, labels)
    if labels is not None:  # directions of z, not of the class: centre each class on its own
        for c in range(g.info.num_classes):
            acts[labels == c] -= acts[labels == c].mean(0)
    else:
        acts -= acts.mean(0)
    total = float((acts.astype(np.float64) ** 2).sum() / max(samples - 1, 1))
    axes, var = _top_components(acts, k, seed)
    coords = acts @ axes.T  # [N, k]
    # z ~ coords @ U: each row of U is the change in z per unit of one component.
    u, *_ = np.linalg.lstsq(coords.astype(np.float64), z.astype(np.float64), rcond=None)
    vectors = (u / np.linalg.norm(u, axis=1, keepdims=True)).astype(np.float32)
    return Directions(vectors, (var / max(total, 1e-12)).astype(np.float32), layer, file_sha256(_source_file(g)))


def save_directions(d: Directions, path: str | os.PathLike[str]) -> Path:
    from .output import save_npz
    save_npz(path, directions=d.vectors, explained=d.explained, layer=np.array(d.layer),
             generator_sha256=np.array(d.generator_sha256))
    return Path(path)


def read_directions(path: str | os.PathLike[str]) -> Directions:
    try:
        with np.load(path, allow_pickle=False) as f:
            return Directions(np.asarray(f["directions"], np.float32), np.asarray(f["explained"], np.float32),
                              str(f["layer"]), str(f["generator_sha256"]))
    except (OSError, KeyError, ValueError) as e:
        raise GansampleError(f"directions: {path} is not a gansample directions file ({e})", "directions") from None


def load_directions(g: Generator, compute: bool = True) -> Directions:
    """The directions of ``g``: from its model folder, else from the cache, else computed
    (and stored in the folder if it is writable, else in the cache)."""
    sha = file_sha256(_source_file(g))
    stored = g.files.folder / DIRECTIONS_FILE
    cached = cache_dir() / f"{sha}.npz"
    for path in (stored, cached):
        if path.is_file():
            d = read_directions(path)
            if d.generator_sha256 == sha and d.vectors.shape[1:] == (g.info.z_dim,):
                return d
    if not compute:
        raise GansampleError(f"directions: model {g.name!r} has no directions yet "
                             "(run `gansample directions --model ...`)", "direction")
    log.info("directions: computing the principal directions of %s (once; stored for later runs)", g.name)
    d = compute_directions(g)
    target = stored if os.access(g.files.folder, os.W_OK) else cached
    try:
        save_directions(d, target)
    except GansampleError:  # a read-only or full folder: the directions still serve this run
        if target is stored:
            try:
                save_directions(d, cached)
            except GansampleError:
                pass
    return d


def parse_amounts(text: "str | float | Sequence[float]", arg: str = "amount") -> np.ndarray:
    """``-3:3:7`` (start:stop:count, inclusive), ``-2,0,2`` or one number -> float32 [A]."""
    want = f"START:STOP:COUNT (e.g. -3:3:7), a list like -2,0,2 or one number; |amount| <= {MAX_AMOUNT:g}, " \
           f"at most {MAX_AMOUNTS} amounts"
    try:
        if isinstance(text, str):
            if ":" in text:
                parts = text.split(":")
                if len(parts) != 3:
                    raise ValueError
                count = int(parts[2])
                if not 1 <= count <= MAX_AMOUNTS:
                    raise ValueError
                values = np.linspace(float(parts[0]), float(parts[1]), count)
            else:
                values = np.array([float(p) for p in text.split(",")])
        else:
            values = np.atleast_1d(np.asarray(text, dtype=np.float64))
    except (TypeError, ValueError, OverflowError):
        raise bad_value(arg, text, want) from None
    if not 1 <= len(values) <= MAX_AMOUNTS or not np.isfinite(values).all() or np.abs(values).max() > MAX_AMOUNT:
        raise bad_value(arg, text, want)
    return values.astype(np.float32)


def edit(g: Generator, seeds: "Sequence[int] | str", direction: int, amounts: "str | float | Sequence[float]",
         psi: float = 1.0, cls: "int | str | None" = None, directions: Directions | None = None) -> EditResult:
    """Move each seed's latent along principal direction ``direction`` by each of
    ``amounts`` (in standard deviations of z). Amount 0 is exactly the seed's image."""
    from .latents import latents_for_seeds
    amounts_arr = parse_amounts(amounts)
    psi = g.check_psi(psi)
    seed_list = list(g.seed_list(seeds, None, 4096))
    if not seed_list:
        raise bad_value("seeds", seeds, "at least one seed")
    g._check_size("seeds", len(seed_list) * len(amounts_arr))
    d = directions or load_directions(g)
    if isinstance(direction, bool) or not isinstance(direction, (int, np.integer)) or not 0 <= direction < len(d):
        raise bad_value("direction", direction, f"a direction index 0-{len(d) - 1} (0 = the strongest)")
    labels = g.labels_for(seed_list, cls)
    z0 = g.truncate(latents_for_seeds(seed_list, g.info.z_dim), psi)  # what `generate` feeds
    z = z0[:, None, :] + amounts_arr[None, :, None] * d.vectors[direction][None, None, :]
    z[:, amounts_arr == 0] = z0[:, None, :]  # bit-exact: x + 0 * v can differ from x (-0.0, inf)
    flat = z.reshape(-1, g.info.z_dim)
    y = None if labels is None else np.repeat(labels, len(amounts_arr))
    imgs = g.run(flat, y, psi)
    r, c = g.info.img_resolution, g.info.img_channels
    return EditResult(imgs.reshape(len(seed_list), len(amounts_arr), r, r, c), z, labels, seed_list, amounts_arr,
                      int(direction))
