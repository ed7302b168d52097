"""Sampling on Ray Data (the ``ray`` extra): the seed positions are the dataset, actors
each hold one gansample Generator and return PNG bytes, and the driver writes them with
the same shard and file writers as a local run, so the output is byte-identical to it."""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .errors import GansampleError, bad_value, check_count, first_line

if TYPE_CHECKING:
    from .generator import Generator

MAX_WORKERS = 4096


class _Sampler:
    """A Ray actor: one Generator (one onnxruntime session with the actor's threads,
    spinning off) turning position ranges into PNG bytes."""

    def __init__(self, model: str, device: str, seeds: Sequence[int], psi: float, cls: Any, threads: int,
                 variant: str = "auto") -> None:
        from .generator import Generator
        self.g = Generator(model, device=device, variant=variant, threads=threads, spinning=False)
        self.seeds, self.psi, self.cls = seeds, psi, cls

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from .images import encode_png
        out_seeds: list[int] = []
        out_png: list[bytes] = []
        out_label: list[int] = []
        for a, b in zip(batch["start"].tolist(), batch["stop"].tolist()):
            part = list(self.seeds[a:b])
            r = self.g.sample(seeds=part, psi=self.psi, cls=self.cls)
            out_seeds += part
            out_png += [encode_png(im) for im in r.images]
            out_label += r.labels.tolist() if r.labels is not None else [-1] * len(part)
        png = np.empty(len(out_png), dtype=object)
        png[:] = out_png
        return {"seed": np.asarray(out_seeds, np.int64), "png": png, "label": np.asarray(out_label, np.int64)}


def connect(address: str | None, timeout: float = 10.0) -> None:
    """ray.init for a local instance (``address`` None) or a cluster; an unreachable
    address is an error within ``timeout`` seconds, not a hang."""
    try:
        import ray
    except ModuleNotFoundError:
        raise GansampleError("engine: ray needs the 'ray' extra: pip install 'gansample[ray]'", "engine") from None
    if ray.is_initialized():
        return
    if address not in (None, "auto", "local") and not address.startswith("ray://"):
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
        except (OSError, ValueError) as e:
            raise bad_value("address", address, f"a reachable Ray head HOST:PORT, 'auto' or 'local' ({e})") from None
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address in (None, "local"):
            ray.init(num_cpus=os.cpu_count(), **kw)
        else:
            ray.init(address=address, **kw)
    except ConnectionError as e:
        raise bad_value("address", address, f"a running Ray cluster ({first_line(e, 160)})") from None


class RayRunner:
    """A shard writer's runner: the planned ranges sampled by a pool of Ray actors."""

    def __init__(self, g: "Generator", seeds: Sequence[int], psi: float, cls: Any, workers: int | None = None,
                 gpus_per_worker: float = 0.0, address: str | None = None) -> None:
        # Plain range checks come before a Ray instance is started or joined (seconds).
        self.workers = check_count("workers", workers, 1, MAX_WORKERS) if workers is not None else None
        if isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, (int, float)) \
                or not 0 <= gpus_per_worker <= 64:
            raise bad_value("gpus_per_worker", gpus_per_worker, "a number from 0 to 64 (a fraction shares a GPU)")
        connect(address)
        import ray
        cpus = int(ray.cluster_resources().get("CPU", 1))
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpus_per_worker and not gpus:
            raise bad_value("gpus_per_worker", gpus_per_worker, "0 on this cluster: it has no GPUs")
        # Leave a CPU slot for Ray's read and write tasks: actors that take every slot stall the pipeline.
        self.size = self.workers or max(1, cpus - 1)
        self.cpus_per_actor = max(1, (cpus - 1) // self.size) if cpus > 1 else 1
        self.gpus = gpus_per_worker
        self.model = str(g.session.path if g.files.generators.get("given") else g.files.folder)
        self.device = "cuda" if gpus_per_worker else "cpu"
        # CPU workers run the file the driver chose (int8 or uint8), so that a cluster of
        # unlike CPUs still gives every seed the bytes a local run gives it.
        self.variant = g.info.variant if self.device == "cpu" and not g.session.on_cuda else "auto"
        self.seeds, self.psi, self.cls = seeds, psi, cls

    def __call__(self, ranges: list[tuple[int, int]]) -> Iterator[tuple[list[int], list[bytes], np.ndarray | None]]:
        import ray
        from ray.data import ActorPoolStrategy, DataContext
        if not ranges:
            return
        ctx = DataContext.get_current()
        ctx.execution_options.preserve_order = True  # shards in seed order
        ctx.enable_progress_bars = False  # the driver shows its own bar
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        items = ray.data.from_items([{"start": a, "stop": b} for a, b in ranges])
        ds = items.map_batches(_Sampler, batch_size=4, compute=ActorPoolStrategy(size=self.size),
                            fn_constructor_kwargs={"model": self.model, "device": self.device, "seeds": self.seeds,
                                                   "psi": self.psi, "cls": self.cls, "threads": self.cpus_per_actor,
                                                   "variant": self.variant},
                            num_cpus=self.cpus_per_actor, num_gpus=self.gpus)
        conditional = None
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            labels = batch["label"]
            if conditional is None:
                conditional = bool(len(labels)) and int(labels[0]) >= 0
            yield batch["seed"].tolist(), list(batch["png"]), (labels if conditional else None)


def shutdown() -> None:
    try:
        import ray
    except ModuleNotFoundError:
        return
    if ray.is_initialized():
        ray.shutdown()

