"""Generator: seeds (or latents) in, uint8 images out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from . import latents as lat
from .errors import bad_value
from .metadata import FLOAT_NCHW, ModelInfo
from .registry import ModelFiles, resolve_model
from .session import Device, Session, resolve_device

VARIANTS = ("auto", "fp32", "uint8", "fp16")  # "mix" is used through Generator.run_mix
PSI_RANGE = (0.0, 2.0)


@dataclass
class SampleResult:
    """One batch of samples. ``images`` is uint8 [N, H, W, C]."""

    images: np.ndarray
    seeds: list[int] | None
    latents: np.ndarray  # float32 [N, z_dim], after truncation
    labels: np.ndarray | None  # int64 [N], or None for unconditional models
    psi: float = 1.0

    def __len__(self) -> int:
        return len(self.images)

    def pil(self, i: int):  # -> PIL.Image.Image
        from .images import to_pil
        return to_pil(self.images[i])


def class_index(info: ModelInfo, cls: int | str, arg: str = "--class", model: str = "") -> int:
    """A class given by index or (case-insensitive) name -> its index, or a clear error."""
    if not info.conditional:
        raise bad_value(arg, cls, f"model {model or info.name!r} is unconditional: it takes no class")
    names = info.class_names or [str(i) for i in range(info.num_classes)]
    if isinstance(cls, str) and not cls.strip().lstrip("-").isdigit():
        folded = {n.lower(): i for i, n in enumerate(names)}
        if cls.lower() not in folded:
            raise bad_value(arg, cls, f"class names: {', '.join(names)} (or an index 0-{len(names) - 1})")
        return folded[cls.lower()]
    idx = int(cls)
    if not 0 <= idx < info.num_classes:
        raise bad_value(arg, cls, f"a class index 0-{info.num_classes - 1} or a name: {', '.join(names)}")
    return idx


def quantize(x: np.ndarray) -> np.ndarray:
    """float32 NCHW in [-1, 1] -> uint8 NHWC, exactly as the uint8 graph variant does."""
    y = np.clip(x * np.float32(127.5) + np.float32(128.0), 0.0, 255.0).astype(np.uint8)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1))


class Generator:
    """Load a gansample generator and sample from it.

    >>> g = Generator("fashion-mnist")
    >>> out = g.sample(seeds=range(8), psi=0.8)
    >>> out.images.shape  # (8, 28, 28, 1)
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, device: str = "auto",
                 variant: str = "auto", threads: int | None = None, batch_size: int = 64,
                 spinning: bool = True) -> None:
        if variant not in VARIANTS:
            raise bad_value("variant", variant, f"valid: {', '.join(VARIANTS)}")
        if batch_size < 1:
            raise bad_value("--batch-size", batch_size, "expected an integer >= 1")
        self.files: ModelFiles = resolve_model(model)
        if not self.files.generators:
            raise bad_value("--model", str(model), "a model with a generator (generator*.onnx)")
        self.device: Device = resolve_device(device)
        path = self._pick(variant)
        # spinning: onnxruntime's worker threads busy-wait between parallel sections (its
        # default, the fastest for inference alone); `generate` turns it off while PNG
        # encoders need the same cores.
        self.session_threads, self.spinning = threads, spinning
        self.session = Session(path, self.device, threads, spinning)
        self.info: ModelInfo = self.session.info
        if self.info.role != "generator":
            raise bad_value("--model", str(path), f"a generator; this model's role is {self.info.role!r}")
        self.batch_size = batch_size

    def _pick(self, variant: str):
        gens = {k: v for k, v in self.files.generators.items() if k != "mix"}
        if "given" in gens:
            return gens["given"]
        if variant != "auto":
            if variant not in gens:
                raise bad_value("variant", variant, f"this model has: {', '.join(sorted(gens))}")
            return gens[variant]
        gpu = "CUDAExecutionProvider" in self.device.providers
        order = ("fp16", "uint8", "fp32") if gpu else ("uint8", "fp32")
        return next(gens[v] for v in order if v in gens)

    # --- properties ------------------------------------------------------------------
    @property
    def provider(self) -> str:
        return self.session.provider

    @property
    def name(self) -> str:
        return self.info.name or self.files.name

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names or [str(i) for i in range(self.info.num_classes)]

    # --- argument handling -------------------------------------------------------------
    def class_index(self, cls: int | str, arg: str = "--class") -> int:
        return class_index(self.info, cls, arg, self.name)

    def labels_for(self, seeds: Sequence[int], cls: "int | str | None") -> np.ndarray | None:
        if not self.info.conditional:
            if cls is not None:
                self.class_index(cls)  # raises: unconditional
            return None
        if cls is None:
            return lat.labels_for_seeds(seeds, self.info.num_classes)
        return np.full(len(seeds), self.class_index(cls), dtype=np.int64)

    @staticmethod
    def check_psi(psi: float) -> float:
        try:
            psi = float(psi)
        except (TypeError, ValueError):
            raise bad_value("--trunc", psi, f"a number in [{PSI_RANGE[0]}, {PSI_RANGE[1]}]") from None
        if not PSI_RANGE[0] <= psi <= PSI_RANGE[1] or psi != psi:
            raise bad_value("--trunc", psi, f"a number in [{PSI_RANGE[0]}, {PSI_RANGE[1]}] "
                            "(1 = no truncation, smaller = less varied, more typical)")
        return psi

    @staticmethod
    def seed_list(seeds: "Sequence[int] | str | None", n: int | None) -> list[int]:
        if seeds is not None and n is not None:
            raise bad_value("seeds", seeds, "give either seeds or n, not both")
        if isinstance(seeds, str):
            return lat.parse_seeds(seeds)
        if seeds is not None:
            out = [int(s) for s in seeds]
            if any(s < 0 or s > lat.MAX_SEED for s in out):
                raise bad_value("--seeds", seeds, f"seeds in 0-{lat.MAX_SEED}")
            return out
        if n is None:
            n = 1
        if isinstance(n, bool) or int(n) < 1:
            raise bad_value("-n", n, "expected an integer >= 1")
        return list(range(int(n)))

    # --- sampling ----------------------------------------------------------------------
    def run(self, z: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        """Latents [N, z_dim] (+ labels [N]) -> uint8 [N, H, W, C], in batches."""
        if z.ndim != 2 or z.shape[1] != self.info.z_dim:
            raise bad_value("latents", z.shape, f"shape [N, {self.info.z_dim}]")
        if self.info.conditional and labels is None:
            raise bad_value("labels", None, "this model is class-conditional and needs labels")
        feeds = {"z": z.astype(np.float32, copy=False)}
        if labels is not None:
            feeds["label"] = np.asarray(labels, dtype=np.int64)
        return self._run_batches(self.session, feeds)

    def _run_batches(self, session: Session, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Run ``inputs`` (arrays with one row per image) through ``session`` in batches of
        ``batch_size``; returns uint8 [N, H, W, C] whatever the model's output layout."""
        n_total = len(next(iter(inputs.values())))
        bs = self.batch_size
        out = []
        for i in range(0, n_total, bs):
            feeds = {k: np.ascontiguousarray(v[i:i + bs]) for k, v in inputs.items()}
            n = len(feeds["z"])
            if session.on_cuda and n < bs:
                # One fixed batch shape on the GPU: pad so kernels are not re-planned.
                feeds = {k: np.concatenate([v, np.zeros((bs - n, *v.shape[1:]), v.dtype)]) for k, v in feeds.items()}
            y = session.run(feeds)[:n]
            out.append(quantize(y) if session.info.output == FLOAT_NCHW else y)
        return np.concatenate(out) if out else np.zeros((0,), np.uint8)

    def run_mix(self, z: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
        """Latents + class weights [N, num_classes] (soft labels) -> uint8 images, through
        the model's generator_mix.onnx (conditional models exported by gansample)."""
        if "mix" not in self.files.generators:
            raise bad_value("--model", self.name, "a conditional model exported with generator_mix.onnx "
                            "(needed to blend classes)")
        if not hasattr(self, "_mix"):
            self._mix = Session(self.files.generators["mix"], self.device, self.session_threads, self.spinning)
        return self._run_batches(self._mix, {"z": z.astype(np.float32, copy=False),
                                             "class_weights": class_weights.astype(np.float32, copy=False)})

    def sample(self, seeds: "Sequence[int] | str | None" = None, n: int | None = None, psi: float = 1.0,
               cls: "int | str | None" = None, latents: np.ndarray | None = None,
               labels: "Sequence[int] | np.ndarray | None" = None) -> SampleResult:
        """Sample by seeds (a list or a seed string like ``"0-63"``), by count ``n`` (seeds
        0..n-1), or by explicit ``latents`` [N, z_dim] (+ ``labels``). ``cls`` fixes the
        class of a conditional model (index or name); without it the class of seed s is
        ``s % num_classes``. ``psi`` is the truncation factor."""
        psi = self.check_psi(psi)
        if latents is not None:
            z = lat.truncate(np.asarray(latents, dtype=np.float32), psi)
            ys = None
            if self.info.conditional:
                if labels is None and cls is None:
                    raise bad_value("labels", None, "this model is class-conditional: pass labels or cls")
                ys = (np.asarray(labels, dtype=np.int64) if labels is not None
                      else np.full(len(z), self.class_index(cls), np.int64))
                bad = ys[(ys < 0) | (ys >= self.info.num_classes)]
                if len(bad):
                    raise bad_value("labels", int(bad[0]), f"class indices 0-{self.info.num_classes - 1}")
            return SampleResult(self.run(z, ys), None, z, ys, psi)
        chosen = self.seed_list(seeds, n)
        z = lat.truncate(lat.latents_for_seeds(chosen, self.info.z_dim), psi)
        ys = self.labels_for(chosen, cls)
        return SampleResult(self.run(z, ys), chosen, z, ys, psi)

    def iter_samples(self, seeds: "Sequence[int] | str | None" = None, n: int | None = None,
                     psi: float = 1.0, cls: "int | str | None" = None,
                     chunk: int | None = None) -> Iterator[SampleResult]:
        """Like :meth:`sample`, but yields one result per batch: memory stays flat in n."""
        psi = self.check_psi(psi)
        chosen = self.seed_list(seeds, n)
        self.labels_for(chosen[:1], cls)  # validate cls before starting
        step = chunk or self.batch_size
        for i in range(0, len(chosen), step):
            part = chosen[i:i + step]
            z = lat.truncate(lat.latents_for_seeds(part, self.info.z_dim), psi)
            ys = self.labels_for(part, cls)
            yield SampleResult(self.run(z, ys), part, z, ys, psi)
