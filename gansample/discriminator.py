"""Discriminator: how real does an image look to the model? Scoring files and arrays,
and discriminator-guided sampling (top-fraction filtering and DRS)."""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from . import latents as lat
from .errors import GansampleError, bad_value, check_count
from .generator import Generator
from .images import IMAGE_EXTENSIONS, ImageLoadError, find_images, is_grayscale, open_image, preprocess
from .registry import resolve_model
from .session import Session


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [-1, 1], the inverse of the generator's quantisation."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


@dataclass
class FileScore:
    path: str
    score: float | None  # raw logit; higher = more real to D
    label: int | None = None  # class scored under (conditional D)
    error: str = ""


@dataclass
class ScoreResult:
    rows: list[FileScore] = field(default_factory=list)

    @property
    def scored(self) -> list[FileScore]:
        return [r for r in self.rows if r.score is not None]

    @property
    def failed(self) -> list[FileScore]:
        return [r for r in self.rows if r.score is None]

    def sorted(self) -> list[FileScore]:
        """Best first; ties keep input order (a stable sort)."""
        return sorted(self.scored, key=lambda r: -r.score)  # type: ignore[operator]


MAX_FILES = 1_000_000  # files in one score call
MAX_CANDIDATES = 2_000_000  # seeds a filter may score (their scores are kept)


def expand_paths(items: Iterable[str], limit: int = MAX_FILES) -> list[tuple[str, str]]:
    """Files, folders (recursive) and globs -> [(path, error)], in the given order."""
    out: list[tuple[str, str]] = []
    for item in items:
        if any(ch in item for ch in "*?[") and not os.path.exists(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                out.append((item, "no file matches this pattern"))
            out.extend((m, "") for m in matches if os.path.isfile(m))
        elif os.path.isdir(item):
            found = find_images(item)
            if not found:
                out.append((item, f"folder has no image files ({', '.join(IMAGE_EXTENSIONS)})"))
            out.extend((str(p), "") for p in found)
        elif os.path.isfile(item):
            out.append((item, ""))
        else:
            out.append((item, "no such file or folder"))
        if len(out) > limit:
            raise bad_value("paths", f"<more than {limit} files>", f"at most {limit} files in one call")
    return out


class Discriminator:
    """Load a gansample discriminator and score images with it (raw logits)."""

    def __init__(self, model: str | os.PathLike[str] | None = None, device: str = "auto",
                 threads: int | None = None, batch_size: int = 64) -> None:
        files = resolve_model(model)
        if files.discriminator is None:
            raise bad_value("model", str(model), f"a model with discriminator.onnx; {files.folder} has none")
        batch_size = check_count("batch_size", batch_size, 1, 65_536)
        self.session = Session(files.discriminator, device, threads)
        self.info = self.session.info
        if self.info.role != "discriminator":
            raise bad_value("model", str(files.discriminator), f"a discriminator; its role is {self.info.role!r}")
        self.batch_size = batch_size
        self.name = self.info.name or files.name

    @property
    def provider(self) -> str:
        return self.session.provider

    def logits(self, images: np.ndarray, labels: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """uint8 [N, H, W, C] (+ labels for a conditional D) -> float32 [N]. Each image's
        score is independent of the others in the batch."""
        r, c = self.info.img_resolution, self.info.img_channels
        if images.ndim != 4 or images.shape[1:] != (r, r, c):
            raise bad_value("images", images.shape, f"uint8 [N, {r}, {r}, {c}]")
        if self.info.conditional:
            if labels is None:
                raise bad_value("labels", None, "this discriminator is class-conditional: pass labels")
        ys = np.asarray(labels, dtype=np.int64) if labels is not None and self.info.conditional else None
        if ys is not None:
            if ys.shape != (len(images),):
                raise bad_value("labels", f"shape {list(ys.shape)}", f"one label per image: shape [{len(images)}]")
            bad = ys[(ys < 0) | (ys >= self.info.num_classes)]
            if len(bad):
                raise bad_value("labels", int(bad[0]), f"class indices 0-{self.info.num_classes - 1}")
        out = []
        for i in range(0, len(images), self.batch_size):
            feeds = {"images": to_float(images[i:i + self.batch_size])}
            if ys is not None:
                feeds["label"] = ys[i:i + self.batch_size]
            out.append(self.session.run(feeds))
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    def best_class_logits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conditional D without a given class: the class under which the image looks most
        real, and that logit."""
        all_l = np.stack([self.logits(images, np.full(len(images), k)) for k in range(self.info.num_classes)], 1)
        return all_l.max(1), all_l.argmax(1)

    def load(self, path: str) -> np.ndarray:
        """One file -> uint8 [H, W, C] with the training preprocessing; ImageLoadError if unusable."""
        img = open_image(path, target=self.info.img_resolution)
        r, c = self.info.img_resolution, self.info.img_channels
        if c == 1 and not is_grayscale(img):
            # Judged at the model's resolution, so a large upload costs no more than a small one.
            rgb = preprocess(img, r, 3).astype(np.int16)
            if np.abs(rgb - rgb[:, :, :1]).max() > 8:
                raise ImageLoadError(f"wrong channel count: a colour image ({img.mode}), but the model "
                                     "takes grayscale (1 channel)")
        return preprocess(img, r, c)

    def score_files(self, items: Iterable[str], cls: int | None = None) -> ScoreResult:
        """Score files, folders and globs; unusable files get a message and do not stop the
        rest. Files are read and scored a batch at a time, so memory is flat in their number."""
        rows = [FileScore(path, None, None, error) for path, error in expand_paths(items)]
        todo = [i for i, r in enumerate(rows) if not r.error]
        for start in range(0, len(todo), self.batch_size):
            good: list[tuple[int, np.ndarray]] = []
            for i in todo[start:start + self.batch_size]:
                try:
                    good.append((i, self.load(rows[i].path)))
                except ImageLoadError as e:
                    rows[i].error = str(e)
            if not good:
                continue
            imgs = np.stack([g[1] for g in good])
            labels: np.ndarray | None
            if self.info.conditional and cls is None:
                scores, labels = self.best_class_logits(imgs)
            else:
                labels = np.full(len(imgs), cls if cls is not None else 0) if self.info.conditional else None
                scores = self.logits(imgs, labels)
            for j, (i, _) in enumerate(good):
                rows[i].score = float(scores[j])
                rows[i].label = int(labels[j]) if labels is not None else None
        return ScoreResult(rows)


# --- discriminator-guided sampling ---------------------------------------------------------
@dataclass
class FilterResult:
    seeds: list[int]  # kept, in seed order
    candidates: list[int]
    scores: np.ndarray  # one per candidate
    kept: np.ndarray  # bool per candidate
    method: str
    acceptance_rate: float
    extra: dict = field(default_factory=dict)


def parse_filter(spec: str) -> tuple[str, float]:
    """``top:F`` (keep the best fraction F in (0, 1]) or ``drs`` / ``drs:P`` (rejection
    sampling, gamma at the P-th percentile of F(x) on the calibration set; default 80)."""
    name, _, arg = spec.partition(":")
    try:
        if name == "top" and arg:
            f = float(arg)
            if 0 < f <= 1:
                return "top", f
        elif name == "drs":
            p = float(arg) if arg else 80.0
            if 0 <= p <= 100:
                return "drs", p
    except ValueError:
        pass
    raise bad_value("filter", spec, "top:F with 0 < F <= 1 (e.g. top:0.5), or drs, or drs:P with "
                    "0 <= P <= 100 (the percentile that sets DRS's gamma)")


def _candidate_scores(g: Generator, d: Discriminator, seeds: list[int], psi: float, cls) -> tuple[np.ndarray, np.ndarray]:
    """D's logits for the seeds' images, and the class each was generated with (0 if none)."""
    scores, labels = [], []
    for res in g.iter_samples(seeds=seeds, psi=psi, cls=cls):
        scores.append(d.logits(res.images, res.labels))
        labels.append(res.labels if res.labels is not None else np.zeros(len(res), np.int64))
    return np.concatenate(scores), np.concatenate(labels)


def within_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each candidate's rank among the candidates of its class, as a fraction in [0, 1)
    (0 = the best of its class). A conditional D's logits are comparable within a class,
    not across classes: ranking within classes keeps the class balance of the pool."""
    frac = np.empty(len(scores))
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = idx[np.argsort(-scores[idx], kind="stable")]
        frac[order] = np.arange(len(idx)) / len(idx)
    return frac


def drs_accept_prob(logits: np.ndarray, max_logit: float, gamma: float, eps: float = 1e-6) -> np.ndarray:
    """Azadi et al. 2019, eq. 8: F(x) = D(x) - D*_M - log(1 - exp(D(x) - D*_M - eps)) - gamma;
    accept with probability sigmoid(F(x))."""
    return 1.0 / (1.0 + np.exp(-drs_f(logits, max_logit, gamma, eps)))


def drs_f(logits: np.ndarray, max_logit: float, gamma: float = 0.0, eps: float = 1e-6) -> np.ndarray:
    delta = logits.astype(np.float64) - max_logit
    return delta - np.log1p(-np.exp(np.minimum(delta - eps, -1e-12))) - gamma


def _chunks(seeds: list[int] | None, size: int) -> Iterable[list[int]]:
    if seeds is not None:
        for i in range(0, len(seeds), size):
            yield seeds[i:i + size]
        return
    start = 0
    while True:
        yield list(range(start, start + size))
        start += size


def _uniform_for_seed(seed: int) -> float:
    # The acceptance draw comes from the seed's own stream, after its latent: deterministic.
    return float(np.random.RandomState(seed + 0x5EED).rand())


def filter_seeds(g: Generator, d: Discriminator, method: str, param: float, n: int | None = None,
                 seeds: list[int] | None = None, psi: float = 1.0, cls=None,
                 calibration: int = 1000, max_candidates: int | None = None) -> FilterResult:
    """Choose which seeds to keep. With ``n``: candidates are seeds 0, 1, 2, ... until n
    are kept; with ``seeds``: the pool is exactly those seeds."""
    if (n is None) == (seeds is None):
        raise GansampleError("filter_seeds: give n or seeds")
    if d.info.num_classes != g.info.num_classes or d.info.img_resolution != g.info.img_resolution:
        raise GansampleError("filter: the discriminator does not match the generator (classes or resolution)", "filter")
    if method == "top":
        size = len(seeds) if seeds is not None else math.ceil(n / param)  # type: ignore[operator]
        if size > MAX_CANDIDATES:
            raise bad_value("filter", f"top:{param:g}", f"a fraction that needs at most {MAX_CANDIDATES} "
                            f"candidates; {size} are needed here")
        pool = list(seeds) if seeds is not None else list(range(size))
        keep_n = n if n is not None else max(1, round(len(pool) * param))
        scores, labels = _candidate_scores(g, d, pool, psi, cls)
        order = np.argsort(within_class_rank(scores, labels), kind="stable")[:keep_n]
        kept = np.zeros(len(pool), bool)
        kept[order] = True
        return FilterResult([s for s, k in zip(pool, kept) if k], pool, scores, kept, f"top:{param:g}",
                            float(kept.mean()))
    # DRS: the candidate pool's size is checked before anything is scored.
    if seeds is not None and len(seeds) > MAX_CANDIDATES:
        raise bad_value("seeds", f"<{len(seeds)} seeds>", f"at most {MAX_CANDIDATES} candidates for a filter")
    if n is not None and n > MAX_CANDIDATES // 2:
        raise bad_value("n", n, f"at most {MAX_CANDIDATES // 2} images kept by DRS (it scores "
                        f"at most {MAX_CANDIDATES} candidates)")
    # DRS: calibrate D*_M and gamma on a burn-in set of seeds outside the candidate range.
    # Per class for conditional models: their logits live on different scales.
    calib_seeds = list(range(lat.MAX_SEED - calibration + 1, lat.MAX_SEED + 1))
    calib, calib_y = _candidate_scores(g, d, calib_seeds, psi, cls)
    max_logit: dict[int, float] = {}
    gamma: dict[int, float] = {}
    for c in np.unique(calib_y):
        sc = calib[calib_y == c]
        max_logit[int(c)] = float(sc.max())
        gamma[int(c)] = float(np.percentile(drs_f(sc, max_logit[int(c)]), param))
    limit = min(max_candidates or (100 * n if n is not None else len(seeds or [])), MAX_CANDIDATES)
    cand: list[int] = []
    scores_all: list[float] = []
    kept_all: list[bool] = []
    n_kept = 0
    for chunk in _chunks(seeds, g.batch_size * 4):
        for seed, logit, c in zip(chunk, *_candidate_scores(g, d, chunk, psi, cls)):
            c = int(c)
            max_logit[c] = max(max_logit.get(c, float(logit)), float(logit))  # D*_M: the largest logit seen
            p = float(drs_accept_prob(np.array([logit]), max_logit[c], gamma.get(c, 0.0))[0])
            cand.append(seed)
            scores_all.append(float(logit))
            kept_all.append(_uniform_for_seed(seed) < p)
            n_kept += kept_all[-1]
            if n is not None and n_kept >= n:
                break
        if (n is not None and n_kept >= n) or len(cand) >= limit:
            break
    kept = np.array(kept_all, bool)
    if n is not None and kept.sum() < n:
        raise GansampleError(f"filter drs: accepted only {int(kept.sum())} of {len(cand)} candidates "
                             f"(limit {limit}); use a lower percentile (drs:P with smaller P)", "filter")
    return FilterResult([s for s, k in zip(cand, kept) if k], cand, np.array(scores_all), kept,
                        f"drs:{param:g}", float(kept.mean()), {"gamma": gamma, "max_logit": max_logit})
