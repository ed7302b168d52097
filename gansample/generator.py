"""Generator: seeds (or latents) in, uint8 images out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from . import latents as lat
from .errors import bad_value, check_count
from .metadata import FLOAT_NCHW, QUANT_OFFSET, QUANT_SCALE, ModelInfo
from .registry import ModelFiles, resolve_model
from .session import Device, Session, resolve_device

VARIANTS = ("auto", "fp32", "uint8", "fp16", "int8")  # "mix" is used through Generator.run_mix
PSI_RANGE = (0.0, 2.0)
MAX_BATCH = 65_536
MAX_BATCH_BYTES = 2**30  # one batch's float32 output
# sample() holds every image in memory at once: above this many bytes of images it refuses
# and points to iter_samples(), which keeps memory flat.
MAX_SAMPLE_BYTES = 2 * 2**30


@dataclass
class SampleResult:
    """One batch of samples. ``images`` is uint8 [N, H, W, C]."""

    images: np.ndarray
    seeds: list[int] | None
    latents: np.ndarray  # float32 [N, z_dim] as fed to the graph (after truncation in z, if any)
    labels: np.ndarray | None  # int64 [N], or None for unconditional models
    psi: float = 1.0

    def __len__(self) -> int:
        return len(self.images)

    def pil(self, i: int):  # -> PIL.Image.Image
        from .images import to_pil
        return to_pil(self.images[i])


def class_index(info: ModelInfo, cls: int | str, arg: str = "cls", model: str = "") -> int:
    """A class given by index or (case-insensitive) name -> its index, or a clear error."""
    if not info.conditional:
        raise bad_value(arg, cls, f"model {model or info.name!r} is unconditional: it takes no class")
    names = info.class_names or [str(i) for i in range(info.num_classes)]
    if isinstance(cls, str) and not cls.strip().lstrip("-").isdigit():
        folded = {n.lower(): i for i, n in enumerate(names)}
        if cls.lower() not in folded:
            raise bad_value(arg, cls, f"class names: {', '.join(names)} (or an index 0-{len(names) - 1})")
        return folded[cls.lower()]
    try:
        idx = int(cls)
    except (TypeError, ValueError, OverflowError):
        raise bad_value(arg, cls, f"a class index 0-{info.num_classes - 1} or a name: {', '.join(names)}") from None
    if not 0 <= idx < info.num_classes:
        raise bad_value(arg, cls, f"a class index 0-{info.num_classes - 1} or a name: {', '.join(names)}")
    return idx


def quantize(x: np.ndarray) -> np.ndarray:
    """float32 NCHW in [-1, 1] -> uint8 NHWC by metadata.QUANTIZE_RULE, exactly as the
    uint8 graph variant does."""
    y = np.clip(x * np.float32(QUANT_SCALE) + np.float32(QUANT_OFFSET), 0.0, 255.0).astype(np.uint8)
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
        batch_size = check_count("batch_size", batch_size, 1, MAX_BATCH)
        if threads is not None:
            threads = check_count("threads", threads, 1, 1024)
        self.files: ModelFiles = resolve_model(model)
        if not self.files.generators:
            raise bad_value("model", str(model), "a model with a generator (generator*.onnx)")
        self.device: Device = resolve_device(device)
        path = self._pick(variant, threads, spinning, batch_size)
        # spinning: onnxruntime's worker threads busy-wait between parallel sections (its
        # default, the fastest for inference alone); `generate` turns it off while PNG
        # encoders need the same cores.
        self.session_threads, self.spinning = threads, spinning
        self.session = Session(path, self.device, threads, spinning)
        self.info: ModelInfo = self.session.info
        if self.info.role != "generator":
            raise bad_value("model", str(path), f"a generator; this model's role is {self.info.role!r}")
        if self.info.variant == "mix":
            raise bad_value("model", str(path), "a generator that takes class labels; this file is the "
                            "class-blending variant (z + class_weights), used by interpolate: pass its "
                            "model folder or generator.onnx")
        batch_bytes = batch_size * self.info.img_resolution ** 2 * self.info.img_channels * 4
        if batch_bytes > MAX_BATCH_BYTES:
            raise bad_value("batch_size", batch_size, f"a batch whose float images fit in {MAX_BATCH_BYTES >> 20} MB: "
                            f"at most {MAX_BATCH_BYTES // (batch_bytes // batch_size)} for this model")
        self.batch_size = batch_size

    def _pick(self, variant: str, threads: int | None, spinning: bool, batch_size: int) -> Path:
        """The file to run; ``variant_reason`` says why (``gansample info`` shows it)."""
        gens = {k: v for k, v in self.files.generators.items() if k != "mix"}
        if "given" in gens:
            self.variant_reason = "the file given"
            return gens["given"]
        if variant != "auto":
            if variant not in gens:
                raise bad_value("variant", variant, f"this model has: {', '.join(sorted(gens))}")
            self.variant_reason = f"{variant}: asked for (variant={variant})"
            return gens[variant]
        pick: str
        if "CUDAExecutionProvider" in self.device.providers:
            pick = next(v for v in ("fp16", "uint8", "fp32", "int8") if v in gens)
            self.variant_reason = f"{pick}: the GPU default"
        elif "uint8" in gens or "int8" in gens:
            from .variants import choose_cpu

            def open_cpu(path: Path) -> Generator:  # the speed probe's batch: at most 64
                return Generator(path, device="cpu", threads=threads, batch_size=min(batch_size, 64),
                                 spinning=spinning)
            pick, self.variant_reason = choose_cpu(gens, threads, open_cpu)
        else:
            pick = "fp32" if "fp32" in gens else next(iter(gens))
            self.variant_reason = f"{pick}: the CPU default (this model has no uint8 or int8 variant)"
        return gens[pick]

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
    def class_index(self, cls: int | str, arg: str = "cls") -> int:
        return class_index(self.info, cls, arg, self.name)

    def labels_for(self, seeds: Sequence[int], cls: "int | str | None") -> np.ndarray | None:
        """Labels for a batch of seeds: ``cls`` for all, or each seed's own class."""
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
            raise bad_value("psi", psi, f"a number in [{PSI_RANGE[0]}, {PSI_RANGE[1]}]") from None
        if not PSI_RANGE[0] <= psi <= PSI_RANGE[1] or psi != psi:
            raise bad_value("psi", psi, f"a number in [{PSI_RANGE[0]}, {PSI_RANGE[1]}] "
                            "(1 = no truncation, smaller = less varied, more typical)")
        return psi

    @staticmethod
    def seed_list(seeds: "Sequence[int] | str | None", n: int | None, limit: int | None = None) -> Sequence[int]:
        """The seeds to sample: a seed string (kept as ranges), a sequence, or 0..n-1.
        With ``limit``, more seeds than that are refused before anything is built."""
        if seeds is not None and n is not None:
            raise bad_value("seeds", seeds, "give either seeds or n, not both")
        if isinstance(seeds, str):
            return lat.parse_seeds(seeds, "seeds", limit)
        if seeds is None:
            return lat.Seeds([range(check_count("n", 1 if n is None else n, 1, limit))])
        try:
            count = len(seeds)
        except TypeError:
            raise bad_value("seeds", seeds, "a seed string like 0-63 or a sequence of integer seeds") from None
        if limit is not None and count > limit:
            raise bad_value("seeds", f"<{count} seeds>", f"at most {limit} seeds here")
        out: Sequence[int]
        if isinstance(seeds, range) and seeds.step == 1:
            out = lat.Seeds([seeds])
        elif isinstance(seeds, lat.Seeds):
            out = seeds
        else:
            try:
                out = [int(s) for s in seeds]
            except (TypeError, ValueError, OverflowError):
                raise bad_value("seeds", seeds, f"integer seeds in 0-{lat.MAX_SEED}") from None
        if count:
            lo, hi = (out.min(), out.max()) if isinstance(out, lat.Seeds) else (min(out), max(out))
            if lo < 0 or hi > lat.MAX_SEED:
                raise bad_value("seeds", seeds, f"seeds in 0-{lat.MAX_SEED}")
        return out

    # --- sampling ----------------------------------------------------------------------
    @property
    def w_space(self) -> bool:
        """Truncation happens in W inside the graph (a `psi` input), not on z."""
        return self.info.truncation == "w"

    def truncate(self, z: np.ndarray, psi: float) -> np.ndarray:
        """The latents the graph is fed for ``psi``: z scaled by psi (truncation in z), or z
        unchanged where the graph truncates in W itself."""
        return z if self.w_space else lat.truncate(z, psi)

    def _psi_feed(self, n: int, psi: float) -> dict[str, np.ndarray]:
        return {"psi": np.full(n, psi, np.float32)} if self.w_space else {}

    def run(self, z: np.ndarray, labels: np.ndarray | None, psi: float = 1.0) -> np.ndarray:
        """Latents [N, z_dim] (+ labels [N]) -> uint8 [N, H, W, C], in batches. ``psi`` is
        used only by generators that truncate in W (z is already truncated otherwise)."""
        if z.ndim != 2 or z.shape[1] != self.info.z_dim:
            raise bad_value("latents", z.shape, f"shape [N, {self.info.z_dim}]")
        if not np.isfinite(z).all():
            raise bad_value("latents", "non-finite values", "finite numbers (no NaN or inf)")
        if self.info.conditional and labels is None:
            raise bad_value("labels", None, "this model is class-conditional and needs labels")
        feeds = {"z": z.astype(np.float32, copy=False), **self._psi_feed(len(z), psi)}
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

    def run_mix(self, z: np.ndarray, class_weights: np.ndarray, psi: float = 1.0) -> np.ndarray:
        """Latents + class weights [N, num_classes] (soft labels) -> uint8 images, through
        the model's generator_mix.onnx (conditional models exported by gansample)."""
        if "mix" not in self.files.generators:
            raise bad_value("model", self.name, "a conditional model exported with generator_mix.onnx "
                            "(needed to blend classes)")
        if not hasattr(self, "_mix"):
            self._mix = Session(self.files.generators["mix"], self.device, self.session_threads, self.spinning)
        return self._run_batches(self._mix, {"z": z.astype(np.float32, copy=False), **self._psi_feed(len(z), psi),
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
            z = np.asarray(latents, dtype=np.float32)
            self._check_size("latents", len(z) if z.ndim else 0)
            z = self.truncate(z, psi)
            ys = None
            if self.info.conditional:
                if labels is None and cls is None:
                    raise bad_value("labels", None, "this model is class-conditional: pass labels or cls")
                ys = (np.asarray(labels, dtype=np.int64) if labels is not None
                      else np.full(len(z), self.class_index(cls), np.int64) if cls is not None else None)
                assert ys is not None
                if ys.shape != (len(z),):
                    raise bad_value("labels", f"shape {list(ys.shape)}", f"one label per latent: shape [{len(z)}]")
                bad = ys[(ys < 0) | (ys >= self.info.num_classes)]
                if len(bad):
                    raise bad_value("labels", int(bad[0]), f"class indices 0-{self.info.num_classes - 1}")
            return SampleResult(self.run(z, ys, psi), None, z, ys, psi)
        chosen = self.seed_list(seeds, n)
        self._check_size("seeds" if seeds is not None else "n", len(chosen))
        chosen = list(chosen)
        z = self.truncate(lat.latents_for_seeds(chosen, self.info.z_dim), psi)
        ys = self.labels_for(chosen, cls)
        return SampleResult(self.run(z, ys, psi), chosen, z, ys, psi)

    def _check_size(self, arg: str, count: int) -> None:
        per_image = self.info.img_resolution ** 2 * self.info.img_channels
        if count * per_image > MAX_SAMPLE_BYTES:
            raise bad_value(arg, f"<{count} images>", f"at most {MAX_SAMPLE_BYTES // per_image} images in one "
                            "sample() call (they are held in memory); use iter_samples() for more")

    def iter_samples(self, seeds: "Sequence[int] | str | None" = None, n: int | None = None,
                     psi: float = 1.0, cls: "int | str | None" = None,
                     chunk: int | None = None) -> Iterator[SampleResult]:
        """Like :meth:`sample`, but yields one result per batch: memory stays flat in n."""
        psi = self.check_psi(psi)
        chosen = self.seed_list(seeds, n)
        self.labels_for(list(chosen[:1]), cls)  # validate cls before starting
        step = check_count("chunk", chunk, 1, MAX_BATCH) if chunk is not None else self.batch_size
        for part in lat.chunks(chosen, step):
            z = self.truncate(lat.latents_for_seeds(part, self.info.z_dim), psi)
            ys = self.labels_for(part, cls)
            yield SampleResult(self.run(z, ys, psi), part, z, ys, psi)

