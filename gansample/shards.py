"""Sharded datasets: samples as WebDataset tar shards or Parquet files that standard
loaders read directly (the ``webdataset`` package; pyarrow and Hugging Face ``datasets``).

Shard k holds the samples at positions [k*S, (k+1)*S) of the seed list, so a shard's
content depends only on (model, seeds, class, psi, S): every shard is written to a
temporary name and renamed when complete, a killed run leaves only complete shards, and a
rerun with ``skip_existing`` writes only the missing ones and ends with the same dataset,
byte for byte (fixed tar times, deterministic PNG encoding). ``index.json`` lists the
shards with their counts, the model's identity and the command. Needs the ``shards``
extra (pyarrow) for Parquet; tar shards need nothing beyond the standard library.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generator as Gen, Iterable, Iterator, Sequence

import numpy as np

from .errors import GansampleError
from .images import encode_png
from .files import _tmp_path, atomic_write, seed_filename, write_error

if TYPE_CHECKING:
    from .generator import Generator

SHARD_FORMATS = ("webdataset", "parquet")
SUFFIX = {"webdataset": ".tar", "parquet": ".parquet"}
INDEX = "index.json"
TAR_MTIME = 946684800  # 2000-01-01: fixed entry times, so equal samples give equal shards


def shard_name(k: int, format: str) -> str:
    return f"shard-{k:05d}{SUFFIX[format]}"


def require(format: str) -> None:
    """The packages a shard format needs, or an install hint naming --format."""
    if format == "webdataset":
        return  # plain tar: the standard library writes it
    mod = "pyarrow"
    try:
        __import__(mod)
    except ModuleNotFoundError:
        raise GansampleError(f"format: {format} shards need the '{mod}' package: pip install 'gansample[shards]'",
                             "format") from None


def _features(with_score: bool) -> dict[str, Any]:
    feats: dict[str, Any] = {"image": {"_type": "Image"}, "seed": {"dtype": "int64", "_type": "Value"},
                             "label": {"dtype": "int64", "_type": "Value"},
                             "class_name": {"dtype": "string", "_type": "Value"},
                             "psi": {"dtype": "float32", "_type": "Value"}}
    if with_score:
        feats["d_score"] = {"dtype": "float32", "_type": "Value"}
    return feats


class ShardWriter:
    """Writes one shard at a time to a temporary file, renamed into place by :meth:`close`."""

    def __init__(self, path: Path, format: str, with_score: bool) -> None:
        self.path, self.format, self.with_score = path, format, with_score
        self.tmp = _tmp_path(path)
        self.count = 0
        try:
            self.file = open(self.tmp, "wb")
            if format == "webdataset":
                # The WebDataset layout is plain tar (members KEY.EXT, grouped by key): written
                # with the standard library's tarfile, because importing the webdataset
                # package imports torch, which the runtime never does.
                self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq
                fields = [pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
                          pa.field("seed", pa.int64()), pa.field("label", pa.int64()),
                          pa.field("class_name", pa.string()), pa.field("psi", pa.float32())]
                if with_score:
                    fields.append(pa.field("d_score", pa.float32()))
                meta = {b"huggingface": json.dumps({"info": {"features": _features(with_score)}}).encode()}
                self.schema = pa.schema(fields, metadata=meta)
                self.pq = pq.ParquetWriter(self.file, self.schema, compression="none")
        except OSError as e:
            self.abort()
            raise write_error(path, e) from None

    def add(self, pngs: Sequence[bytes], seeds: Sequence[int], labels: "Sequence[int] | np.ndarray | None",
            names: Sequence[str], psi: float, scores: Sequence[float] | None) -> None:
        try:
            if self.format == "webdataset":
                for i, s in enumerate(seeds):
                    meta: dict[str, Any] = {"seed": int(s), "class": None if labels is None else int(labels[i]),
                                            "class_name": names[i], "psi": psi}
                    if scores is not None:
                        meta["d_score"] = float(scores[i])
                    members = {"png": pngs[i], "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")}
                    if labels is not None:
                        members["cls"] = str(int(labels[i])).encode()
                    key = Path(seed_filename(int(s))).stem
                    for ext in sorted(members):
                        info = tarfile.TarInfo(f"{key}.{ext}")
                        info.size, info.mtime, info.mode = len(members[ext]), TAR_MTIME, 0o444
                        info.uname = info.gname = "gansample"
                        self.tar.addfile(info, io.BytesIO(members[ext]))
            else:
                import pyarrow as pa
                cols: dict[str, Any] = {
                    "image": [{"bytes": b, "path": seed_filename(int(s))} for b, s in zip(pngs, seeds)],
                    "seed": [int(s) for s in seeds],
                    "label": None if labels is None else [int(v) for v in labels],
                    "class_name": list(names), "psi": [float(psi)] * len(seeds)}
                if labels is None:
                    cols["label"] = [None] * len(seeds)
                if self.with_score:
                    cols["d_score"] = [float(v) for v in (scores or [])]
                self.pq.write_table(pa.Table.from_pydict(cols, schema=self.schema))
        except OSError as e:
            self.abort()
            raise write_error(self.path, e) from None
        self.count += len(seeds)

    def close(self) -> None:
        try:
            if self.format == "webdataset":
                self.tar.close()
            else:
                self.pq.close()
            self.file.close()
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            raise write_error(self.path, e) from None

    def abort(self) -> None:
        f = getattr(self, "file", None)
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


def model_identity(g: "Generator") -> dict[str, Any]:
    path = Path(g.session.path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"name": g.name, "file": path.name, "sha256": h.hexdigest(), "provenance": g.info.provenance,
            "img_resolution": g.info.img_resolution, "img_channels": g.info.img_channels,
            "num_classes": g.info.num_classes}


Batch = tuple[list[int], Any, "np.ndarray | None"]  # seeds, uint8 images or PNG bytes, labels
Runner = Callable[[list[tuple[int, int]]], Iterable[Batch]]


def plan(n: int, shard_size: int, batch_size: int, skip: set[int]) -> list[tuple[int, int]]:
    """Position ranges [start, stop) of at most ``batch_size``, in order, covering every
    shard not in ``skip``; a range never straddles two shards."""
    out = []
    for k in range((n + shard_size - 1) // shard_size):
        if k in skip:
            continue
        lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
        out += [(a, min(hi, a + batch_size)) for a in range(lo, hi, batch_size)]
    return out


def local_runner(g: "Generator", seeds: Sequence[int], psi: float, cls: int | str | None) -> Runner:
    """Sample the planned ranges in this process."""
    def run(ranges: list[tuple[int, int]]) -> Iterable[Batch]:
        for a, b in ranges:
            part = list(seeds[a:b])
            r = g.sample(seeds=part, psi=psi, cls=cls)
            yield part, r.images, r.labels
    return run


def _split(batches: Iterator[Batch]) -> Gen[Batch, int, None]:
    """Re-cut a stream of batches: each ``send(k)`` returns the next at most k samples
    (a runner's batch may straddle two shards)."""
    carry: Batch | None = None
    want = yield ([], [], None)  # primed by the first send
    while True:
        if carry is None:
            carry = next(batches)
        s_part, data, labels = carry
        if len(s_part) <= want:
            carry = None
            want = yield s_part, data, labels
        else:
            carry = (s_part[want:], data[want:], None if labels is None else labels[want:])
            want = yield s_part[:want], data[:want], None if labels is None else labels[:want]


def write_shards(g: "Generator", seeds: Sequence[int], outdir: Path, format: str, psi: float,
                 cls: int | str | None = None, skip_existing: bool = False, scores: dict[int, float] | None = None,
                 shard_size: int = 10_000, workers: int | None = None, progress: Callable[[int], None] | None = None,
                 command: Sequence[str] | None = None, runner: Runner | None = None) -> dict[str, Any]:
    """Sample ``seeds`` into shards of ``shard_size`` in ``outdir`` (see the module doc).
    ``runner(ranges)`` yields (seeds, images or PNG bytes, labels) for the planned position
    ranges, in order; by default ``g`` samples them here (the Ray engine passes its own)."""
    require(format)
    names = g.class_names if g.info.conditional else []
    n = len(seeds)
    n_shards = (n + shard_size - 1) // shard_size
    complete = {k for k in range(n_shards) if skip_existing and (outdir / shard_name(k, format)).is_file()}
    if progress is not None and complete:
        progress(sum(min(n, (k + 1) * shard_size) - k * shard_size for k in complete))
    stream = _split(iter((runner or local_runner(g, seeds, psi, cls))(plan(n, shard_size, g.batch_size, complete))))
    next(stream)  # primed: each send(k) returns the next at most k samples
    entries = []

    def encode_and_add(w: ShardWriter, s_part: list[int], data: Any, labels: "np.ndarray | None") -> None:
        pngs = (list(pool.map(encode_png, data)) if isinstance(data, np.ndarray) and data.ndim == 4 else list(data))
        cls_names = [names[int(v)] for v in labels] if labels is not None and names else [""] * len(s_part)
        w.add(pngs, s_part, labels, cls_names, psi, [scores[s] for s in s_part] if scores is not None else None)

    # Encoding and writing a batch (one writer thread, PNGs on the pool) overlap the
    # sampling of the next: at most one batch is in flight, so memory stays flat.
    with ThreadPoolExecutor(workers or os.cpu_count() or 2) as pool, ThreadPoolExecutor(1) as writer:
        for k in range(n_shards):
            lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
            path = outdir / shard_name(k, format)
            entries.append({"file": path.name, "count": hi - lo, "first_seed": int(seeds[lo]),
                            "last_seed": int(seeds[hi - 1])})
            if k in complete:
                continue
            w = ShardWriter(path, format, scores is not None)
            pending: Future[None] | None = None
            taken = 0
            try:
                while taken < hi - lo:
                    s_part, data, labels = stream.send(hi - lo - taken)
                    taken += len(s_part)
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(encode_and_add, w, s_part, data, labels)
                    if progress is not None:
                        progress(len(s_part))
                if pending is not None:
                    pending.result()
                w.close()
            except BaseException:
                if pending is not None and not pending.cancel():
                    try:
                        pending.result()  # let a running write finish before its file goes
                    except BaseException:
                        pass
                w.abort()
                raise
    index = {"format": format, "shards": entries, "count": n, "shard_size": shard_size, "psi": psi,
             "class": cls, "model": model_identity(g), "command": list(command or [])}
    atomic_write(outdir / INDEX, (json.dumps(index, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return index
