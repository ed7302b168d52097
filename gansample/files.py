"""Atomic files: the one writer every file gansample writes goes through.

A file is written under a temporary name beside its final one, every write is checked,
and it is renamed into place only when complete: a reader never finds a file under a final
name that is not complete, and a full disk or a kill leaves at most a temporary file,
which the next run in that folder removes (``ensure_outdir``).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import GansampleError, WriteError

_TMP_SUFFIX = ".gansample-tmp"
_TMP_NAME = re.compile(r"^\..*\.(\d+)-([0-9a-f]{8})\d+" + re.escape(_TMP_SUFFIX) + "$")
_counter = itertools.count()
# Temporary names carry the writer's pid and a token of this process: a later process
# that got the same pid (pid 1 in every container run) still sees them as stale.
_TOKEN = os.urandom(4).hex()


def seed_filename(seed: int) -> str:
    """The file name of a seed's image: ``seed0042.png`` (StyleGAN's)."""
    return f"seed{seed:04d}.png"


# --- atomic files -----------------------------------------------------------------------
def user_cache_dir(name: str) -> Path:
    """~/.cache/gansample/NAME (or under $XDG_CACHE_HOME): downloaded datasets, computed
    directions."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "gansample" / name


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (ties encoders and directions to their generator)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tmp_path(path: Path) -> Path:
    # The process id in the name tells a later run whether the writer is still alive.
    # The final name is cut (in bytes) so that the temporary name fits where the final one does.
    stem = path.name.encode("utf-8")[:80].decode("utf-8", "ignore")
    return path.with_name(f".{stem}.{_tmp_tag()}{_TMP_SUFFIX}")


def _tmp_tag() -> str:
    return f"{os.getpid()}-{_TOKEN}{next(_counter)}"


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """os.write until every byte is written: a short write is continued, a write that
    makes no progress is a full disk."""
    view = memoryview(data)
    while len(view):
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def write_error(path: str | os.PathLike[str], e: OSError) -> WriteError:
    return WriteError(f"cannot write {os.fspath(path)}: {e.strerror or e}")


def atomic_write(path: str | os.PathLike[str], content: bytes | Callable[[Path], None],
                 fsync: bool = False) -> Path:
    """Write ``content`` (bytes, or a function that writes a given temporary path) to
    ``path`` atomically. Every write is checked; on any failure the temporary file is
    removed, nothing appears under ``path``, and OS errors become one-line WriteErrors
    naming the path. ``fsync`` also makes the data durable before the rename."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        if isinstance(content, (bytes, bytearray, memoryview)):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
            try:
                _write_all(fd, content)
                if os.fstat(fd).st_size != len(content):
                    raise OSError(errno.EIO, f"wrote {os.fstat(fd).st_size} of {len(content)} bytes")
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        else:
            content(tmp)
            if fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _writer_alive(pid: int, token: str) -> bool:
    if pid == os.getpid():
        return token == _TOKEN  # same pid, other token: a dead process whose pid was reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike[str]) -> int:
    """Remove temporary files that killed runs left in ``folder`` (their writer process
    is gone); returns how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _TMP_NAME.match(entry.name)
        if m and not _writer_alive(int(m.group(1)), m.group(2)):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


class CreatedFolders:
    """The folders ``ensure_outdir`` creates while this is active (parents first), so that a
    command that then fails can remove those still empty (`gansample` does, for every
    command): a refused or interrupted run leaves no empty output folders behind."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        _TRACKERS.append(self)

    def remove_empty(self) -> None:
        for p in reversed(self.paths):
            with contextlib.suppress(OSError):  # not empty (earlier files, or this run's), or gone
                p.rmdir()

    def stop(self) -> None:
        if self in _TRACKERS:
            _TRACKERS.remove(self)


_TRACKERS: list[CreatedFolders] = []


def ensure_outdir(path: str | os.PathLike[str], arg: str = "outdir", given: str | None = None) -> Path:
    """Create the folder (and parents), check it is writable and clear temporary files
    left by killed runs; or raise an error naming ``arg`` that echoes ``given`` (what the
    user typed, e.g. the file the folder is for; default: ``path``)."""
    out = Path(path)
    shown = str(path) if given is None else given
    if not str(path).strip():
        raise GansampleError(f"{arg}: got {shown!r}; expected a folder path", arg)
    try:
        if out.exists() and not out.is_dir():
            raise GansampleError(f"{arg}: got {shown!r}; it is an existing file, expected a folder", arg)
        missing: list[Path] = []
        p = out.absolute()
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        for t in _TRACKERS:  # before mkdir: a deeper part that fails leaves its parents made
            t.paths.extend(reversed(missing))
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise GansampleError(f"{arg}: got {shown!r}; the folder cannot be written ({e.strerror or e})",
                             arg) from None
    clean_stale_temps(out)
    return out


def temp_dir(parent: str | os.PathLike[str], label: str) -> Path:
    """A temporary folder in ``parent`` that a later run there removes if this process
    dies before removing it itself."""
    try:
        return Path(tempfile.mkdtemp(dir=parent, prefix=f".{label}.", suffix=f".{_tmp_tag()}{_TMP_SUFFIX}"))
    except OSError as e:
        raise write_error(parent, e) from None


def publish(outdir: str | os.PathLike[str], build: Callable[[Path], dict[str, Any]],
            managed: Iterable[str], arg: str = "out") -> dict[str, Any]:
    """Run ``build(stage)`` on a staging folder inside ``outdir`` and move what it wrote in
    only after every check passed (a killed run's staging folder is removed by the next run
    in that folder). Files named in ``managed`` that this build did not write (variants or a
    discriminator of an earlier model there) would be picked up beside the new ones: they go."""
    out = ensure_outdir(outdir, arg)
    stage = temp_dir(out, "export")
    try:
        report = build(stage)
        new = {f.name for f in stage.iterdir()}
        for old in managed:
            if old not in new and (out / old).is_file():
                (out / old).unlink()
        for f in sorted(stage.iterdir()):
            os.replace(f, out / f.name)
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report
