"""Everything gansample writes to disk: atomic files, PNG files + grid + manifest (streamed
as batches arrive), npz, and the zip the web demo offers.

One rule for every file: it is written under a temporary name beside its final one and
renamed into place only when every byte is written, so a reader never finds a file under a
final name that is not complete, and a full disk or a kill leaves at most a temporary file,
which the next run in that folder removes.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from .errors import GansampleError
from .files import (  # noqa: F401  (re-exported: the writers' public home stays gansample.output)
    _TMP_SUFFIX, _tmp_path, _write_all, atomic_write, clean_stale_temps, ensure_outdir, seed_filename, temp_dir,
    write_error)
from .images import encode_png, make_grid
from .latents import chunks

if TYPE_CHECKING:
    from .generator import Generator

FORMATS = ("png", "npz", "grid", "webdataset", "parquet")
GRID_MAX = 256  # grid.png shows at most this many images (the first seeds of the run)
MANIFEST = "manifest.csv"
MANIFEST_FIELDS = ["seed", "class", "class_name", "psi", "file"]
def save_png(image: np.ndarray, path: str | os.PathLike[str], compress_level: int = 1) -> None:
    """Write one uint8 [H, W, C] image as PNG, atomically."""
    atomic_write(path, encode_png(image, compress_level))


def save_pngs(images: "np.ndarray | Sequence[np.ndarray]", paths: Sequence[str | os.PathLike[str]],
              compress_level: int = 1) -> None:
    for image, path in zip(images, paths):
        save_png(image, path, compress_level)


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
    atomic_write(path, write)


class PngWriter:
    """Encode and write PNG files on worker threads while the caller runs inference
    (onnxruntime releases the GIL while it runs; Pillow's encoder and the file system
    calls release it too). One task per batch keeps the hand-off cost per image small,
    and at most ``max_pending`` batches are in flight, so memory stays flat however many
    images pass through. ``workers=0`` writes in the calling thread.
    """

    def __init__(self, workers: int | None = None, max_pending: int = 8) -> None:
        self.pool = ThreadPoolExecutor(workers or os.cpu_count() or 2) if workers != 0 else None
        self.pending: deque[Future[None]] = deque()
        self.max_pending = max_pending

    def write(self, images: "np.ndarray | Sequence[np.ndarray]", paths: Sequence[Path]) -> None:
        if self.pool is None:
            save_pngs(images, paths)
            return
        self.pending.append(self.pool.submit(save_pngs, images, paths))
        while len(self.pending) > self.max_pending:
            self.pending.popleft().result()  # re-raises a failed write

    def close(self) -> None:
        """Wait for every queued write; re-raises the first failure."""
        if self.pool is None:
            return
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True)

    def abort(self) -> None:
        """Drop queued writes and wait for the running ones (each still atomic)."""
        if self.pool is None:
            return
        for f in self.pending:
            f.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "PngWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.abort()
        else:
            self.close()


# --- manifests --------------------------------------------------------------------------
class CsvWriter:
    """A CSV file written row by row (memory flat in the number of rows) to a temporary
    name, renamed into place by :meth:`commit`; :meth:`abort` removes it. Quoting is the
    csv module's: names with commas, quotes or any Unicode read back exactly."""

    def __init__(self, path: str | os.PathLike[str], fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        self.tmp = _tmp_path(self.path)
        try:
            self.fd: int | None = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as e:
            raise write_error(self.path, e) from None
        self.buf = io.StringIO()
        self.csv = csv.writer(self.buf, lineterminator="\n")
        self.csv.writerow(self.fields)

    def write(self, row: dict[str, Any]) -> None:
        self.csv.writerow([row.get(k, "") for k in self.fields])
        if self.buf.tell() > 1 << 16:
            self._flush()

    def _flush(self) -> None:
        assert self.fd is not None
        try:
            _write_all(self.fd, self.buf.getvalue().encode("utf-8"))
        except OSError as e:
            self.abort()
            raise write_error(self.path, e) from None
        self.buf.seek(0)
        self.buf.truncate()

    def commit(self) -> Path:
        self._flush()
        assert self.fd is not None
        os.close(self.fd)
        self.fd = None
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            raise write_error(self.path, e) from None
        return self.path

    def abort(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            os.unlink(self.tmp)
        except OSError:
            pass

    def __enter__(self) -> "CsvWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.abort()


def write_csv(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> Path:
    with CsvWriter(path, fields) as w:
        for r in rows:
            w.write(r)
        return w.commit()


def manifest_rows(seeds: Sequence[int], labels: np.ndarray | None, class_names: Sequence[str], psi: float,
                  files: Sequence[str], scores: dict[int, float] | None = None) -> Iterable[dict[str, Any]]:
    """One manifest row per seed: seed, class index and name, psi, file (and d_score)."""
    for i, s in enumerate(seeds):
        row: dict[str, Any] = {"seed": s, "class": "" if labels is None else int(labels[i]),
                               "class_name": "" if labels is None else class_names[int(labels[i])],
                               "psi": psi, "file": files[i]}
        if scores is not None and s in scores:
            row["d_score"] = round(float(scores[s]), 6)
        yield row


# --- samples ----------------------------------------------------------------------------
@dataclass
class WriteReport:
    """What :func:`write_samples` did."""

    outdir: Path
    format: str
    written: int = 0  # images generated and written
    skipped: int = 0  # seeds whose PNG existed (skip_existing)
    files: list[Path] = field(default_factory=list)  # grid, npz, manifest


def _size(n: float) -> str:
    """Bytes in the largest unit that keeps a digit before the point (0.00 GB says nothing)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def check_space(outdir: Path, n: int, format: str, image_bytes: int, z_dim: int) -> None:
    """Refuse a run that cannot fit on the disk before it starts. The estimate is a low
    one (PNG at half the raw size, no file-system overhead), so only runs that are sure
    to fail are refused; a disk that fills up anyway ends the run cleanly."""
    per = {"npz": 2 * (image_bytes + 4 * z_dim + 16), "grid": 0}.get(format, image_bytes // 2 + 60)
    need = n * per
    try:
        free = shutil.disk_usage(outdir).free
    except OSError:
        return
    if need > free:
        raise GansampleError(f"outdir: got {str(outdir)!r}; {format} output for {n} images needs at least "
                             f"{_size(need)} and the folder's disk has {_size(free)} free "
                             "(fewer images, or a folder on a larger disk)", "outdir")


class _NpzSpill:
    """The arrays of an npz, appended batch by batch to .npy files beside the output
    (header first: the total count is known), then zipped into it. Plain appends, not
    memory maps: a memory map's touched pages count as the process's memory (+100 MB at
    n = 100,000), appends keep it flat for any n."""

    def __init__(self, outdir: Path, n: int, shapes: dict[str, tuple[tuple[int, ...], Any]]) -> None:
        self.dir = temp_dir(outdir, "npz")
        self.files: dict[str, tuple[Any, np.dtype[Any]]] = {}
        try:
            for k, (shape, dt) in shapes.items():
                f = open(self.dir / f"{k}.npy", "wb")
                self.files[k] = (f, np.dtype(dt))
                np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dt)),
                                                         "fortran_order": False, "shape": (n, *shape)})
        except OSError as e:
            self.close()
            raise write_error(self.dir, e) from None

    def add(self, **parts: np.ndarray) -> None:
        for k, v in parts.items():
            f, dt = self.files[k]
            try:
                f.write(np.ascontiguousarray(v, dtype=dt).tobytes())
            except OSError as e:
                raise write_error(self.dir / f"{k}.npy", e) from None

    def commit(self, path: Path) -> None:
        try:
            for f, _ in self.files.values():
                f.close()
        except OSError as e:
            raise write_error(self.dir, e) from None
        names = list(self.files)

        def write(tmp: Path) -> None:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
                for k in names:
                    z.write(self.dir / f"{k}.npy", f"{k}.npy")
        atomic_write(path, write)

    def close(self) -> None:
        for f, _ in self.files.values():
            try:
                f.close()
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def write_samples(g: "Generator", seeds: Sequence[int], outdir: str | os.PathLike[str], format: str = "png",
                  psi: float = 1.0, cls: int | str | None = None, skip_existing: bool = False,
                  scores: dict[int, float] | None = None, workers: int | None = None,
                  progress: Callable[[int], None] | None = None, shard_size: int = 10_000,
                  command: Sequence[str] | None = None, engine: str = "local", address: str | None = None,
                  gpus_per_worker: float = 0.0) -> WriteReport:
    """Sample ``seeds`` with ``g`` and write them to ``outdir``:

    - ``png``: ``seedNNNN.png`` per seed, ``grid.png`` (the first 256 seeds) and ``manifest.csv``;
    - ``npz``: ``images.npz`` (images, seeds, latents, labels) and ``manifest.csv``;
    - ``grid``: ``grid.png`` and ``manifest.csv``.

    Everything is streamed batch by batch, so memory is flat in the number of seeds.
    ``skip_existing`` (png) leaves seeds whose file exists alone; the grid still shows the
    run's first seeds. ``scores`` (seed -> D score) adds a ``d_score`` column.
    ``progress(k)`` is called after every batch with the number of seeds it covered.

    ``webdataset`` / ``parquet``: shards of ``shard_size`` samples and ``index.json``
    (gansample.shards; ``skip_existing`` keeps complete shards).

    ``engine="ray"`` samples shards on Ray Data (``address``: None for a local instance,
    "auto" or HOST:PORT for a cluster; ``workers`` actors, ``gpus_per_worker``)."""
    if engine not in ("local", "ray"):
        raise GansampleError(f"engine: got {engine!r}; local or ray", "engine")
    if engine == "ray" and format not in ("webdataset", "parquet"):
        raise GansampleError(f"format: got {format!r}; the ray engine writes webdataset or parquet shards", "format")
    if format not in FORMATS:
        raise GansampleError(f"format: got {format!r}; valid: {', '.join(FORMATS)}", "format")
    psi = g.check_psi(psi)
    g.labels_for(list(seeds[:1]), cls)  # validates cls before any output
    out = ensure_outdir(outdir)
    n = len(seeds)
    check_space(out, n, format, g.info.img_resolution ** 2 * g.info.img_channels, g.info.z_dim)
    if format in ("webdataset", "parquet"):
        from .errors import check_count
        from .shards import INDEX, write_shards
        size = check_count("shard_size", shard_size, 1, 10_000_000)
        runner = None
        if engine == "ray":
            from .distributed import RayRunner
            runner = RayRunner(g, seeds, psi, cls, workers, gpus_per_worker, address)
        write_shards(g, seeds, out, format, psi, cls, skip_existing, scores, size,
                     None if engine == "ray" else workers, progress, command, runner)
        return WriteReport(out, format, written=n, files=[out / INDEX])
    names = g.class_names if g.info.conditional else []
    fields = MANIFEST_FIELDS + (["d_score"] if scores is not None else [])
    report = WriteReport(out, format)
    grid: list[np.ndarray] = []
    r, c = g.info.img_resolution, g.info.img_channels
    manifest = CsvWriter(out / MANIFEST, fields)
    spill: _NpzSpill | None = None
    writer = PngWriter(workers if format == "png" else 0)
    done = 0
    try:
        if format == "npz":
            spill = _NpzSpill(out, n, {"images": ((r, r, c), np.uint8), "seeds": ((), np.int64),
                                       "latents": ((g.info.z_dim,), np.float32),
                                       **({"labels": ((), np.int64)} if g.info.conditional else {})})
        for part in chunks(seeds, g.batch_size):
            files = [seed_filename(s) for s in part] if format == "png" else [""] * len(part)
            in_grid = [done + i < GRID_MAX for i in range(len(part))]
            exists = ([(out / f).exists() for f in files] if skip_existing and format == "png"
                      else [False] * len(part))
            if format == "png":
                need = [i for i in range(len(part)) if in_grid[i] or not exists[i]]
            elif format == "grid":
                need = [i for i in range(len(part)) if in_grid[i]]
            else:
                need = list(range(len(part)))
            labels = g.labels_for(part, cls)
            if need:
                res = g.sample(seeds=[part[i] for i in need], psi=psi, cls=cls)
                for j, i in enumerate(need):
                    if in_grid[i]:
                        grid.append(res.images[j])
                if format == "png":
                    todo = [j for j, i in enumerate(need) if not exists[i]]
                    writer.write(res.images[todo], [out / files[need[j]] for j in todo])
                    report.written += len(todo)
                elif spill is not None:
                    spill.add(images=res.images, seeds=np.asarray(part, np.int64), latents=res.latents,
                              **({"labels": res.labels} if res.labels is not None else {}))
                    report.written += len(part)
            report.skipped += sum(exists)
            for row in manifest_rows(part, labels, names, psi, files, scores):
                manifest.write(row)
            done += len(part)
            if progress is not None:
                progress(len(part))
        writer.close()  # every PNG is in place before the grid and the manifest name them
        if format in ("png", "grid") and grid:
            path = out / "grid.png"
            save_png(make_grid(np.stack(grid)), path, compress_level=6)
            report.files.append(path)
        if spill is not None:
            spill.commit(out / "images.npz")
            report.files.append(out / "images.npz")
        report.files.append(manifest.commit())
    except BaseException:
        writer.abort()
        manifest.abort()
        raise
    finally:
        if spill is not None:
            spill.close()
    return report


def zip_bytes(images: np.ndarray, seeds: Sequence[int], labels: np.ndarray | None, class_names: Sequence[str],
              psi: float, scores: np.ndarray | None = None, order: Sequence[int] | None = None) -> bytes:
    """The web demo's download: the PNGs and a manifest.csv (the columns ``generate``
    writes, plus d_score when scores are given), in ``order``."""
    order = list(range(len(seeds))) if order is None else list(order)
    files = [seed_filename(seeds[i]) for i in order]
    sel_labels = None if labels is None else labels[order]
    by_seed = None if scores is None else {seeds[i]: float(scores[i]) for i in order}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS + (["d_score"] if scores is not None else []),
                       lineterminator="\n")
    w.writeheader()
    w.writerows(manifest_rows([seeds[i] for i in order], sel_labels, class_names, psi, files, by_seed))
    out = io.BytesIO()
    # Fixed entry times: the same request gives the same bytes (the demo shares such files).
    with zipfile.ZipFile(out, "w") as z:
        for i, f in zip(order, files):
            z.writestr(zipfile.ZipInfo(f, date_time=(2000, 1, 1, 0, 0, 0)), encode_png(images[i], 6))
        z.writestr(zipfile.ZipInfo(MANIFEST, date_time=(2000, 1, 1, 0, 0, 0)), buf.getvalue().encode("utf-8"))
    return out.getvalue()


def write_zip(path: str | os.PathLike[str], images: np.ndarray, seeds: Sequence[int], labels: np.ndarray | None,
              class_names: Sequence[str], psi: float, scores: np.ndarray | None = None,
              order: Sequence[int] | None = None) -> Path:
    """:func:`zip_bytes`, written atomically to ``path``."""
    return atomic_write(path, zip_bytes(images, seeds, labels, class_names, psi, scores, order))
