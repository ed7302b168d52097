"""Which generator file `variant="auto"` runs, and why.

On a GPU: fp16, then uint8, then fp32. On a CPU: the int8 variant when its metadata says
it passed the quality gate (gansample.reduced) *and* it is faster than the uint8 variant
on this CPU with these threads; otherwise uint8, then fp32. Whether int8 is faster depends
on the CPU (int8 dot-product units: VNNI, AMX, Arm dot product), so it is measured once:
a short interleaved run of both files (about a second), remembered in the user's cache
folder per model file, CPU and onnxruntime version (not per thread count: every program on
the machine then gives a seed the same bytes). ``--variant`` skips all
of this.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from .errors import WriteError
from .files import atomic_write, user_cache_dir

SPEEDUP_NEEDED = 1.05  # int8 is chosen only when it measured at least this much faster
PROBE_ROUNDS = 3
PROBE_SECONDS = 0.08  # per file per round
CACHE_FILE = "variant-choices.json"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(int8: Path, uint8: Path) -> str:
    """One choice per pair of files, CPU model and onnxruntime version: not per thread
    count, so that every program on this machine gives a seed the same bytes."""
    import onnxruntime as ort
    parts = [cpu_name(), str(os.cpu_count()), ort.__version__]
    for p in (int8, uint8):
        st = p.stat()
        parts += [str(p.resolve()), str(st.st_size), str(st.st_mtime_ns)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _cache_path() -> Path:
    return user_cache_dir("variants") / CACHE_FILE


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(_cache_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(key: str, entry: dict[str, Any]) -> None:
    data = _read_cache()
    data[key] = entry
    if len(data) > 200:  # a bounded file: the oldest entries go
        data = dict(sorted(data.items(), key=lambda kv: kv[1].get("when", 0))[-200:])
    try:
        _cache_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write(_cache_path(), json.dumps(data, indent=1).encode())
    except (OSError, WriteError):  # a read-only home: measured again next time
        pass


def _rate(step: Callable[[], Any], seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while True:
        step()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def probe(int8: Any, uint8: Any, batch: int) -> dict[str, float]:
    """Images per second of two ``Generator`` objects at ``batch`` (their own threads
    and spinning), interleaved rounds, medians."""
    from . import latents as lat
    seeds = list(range(batch))
    z = lat.latents_for_seeds(seeds, uint8.info.z_dim)
    labels = uint8.labels_for(seeds, None)
    gens = {"int8": int8, "uint8": uint8}
    rates: dict[str, list[float]] = {k: [] for k in gens}
    for g in gens.values():
        g.run(z, labels)  # warm-up
    for _ in range(PROBE_ROUNDS):
        for k, g in gens.items():
            rates[k].append(_rate(lambda: g.run(z, labels), PROBE_SECONDS) * batch)
    return {k: statistics.median(v) for k, v in rates.items()}


def choose_cpu(gens: dict[str, Path], threads: int | None, open_cpu: Callable[[Path], Any]) -> tuple[str, str]:
    """(variant, reason) for `auto` on the CPU among the files ``gens`` (variant -> path);
    ``open_cpu(path)`` opens one of them as a ``Generator`` on the CPU, with the caller's
    threads, spinning and batch size (passed in: this module does not import
    gansample.generator, which imports it)."""
    fallback = "uint8" if "uint8" in gens else "fp32"
    if "int8" not in gens or "uint8" not in gens:
        return fallback, f"{fallback}: the CPU default (this model has no int8 variant)"
    key = _key(gens["int8"], gens["uint8"])
    hit = _read_cache().get(key)
    if isinstance(hit, dict) and hit.get("variant") in gens and isinstance(hit.get("reason"), str):
        return hit["variant"], hit["reason"] + " (remembered)"
    int8 = open_cpu(gens["int8"])
    gate = int8.info.gate
    if not gate.get("passed"):
        why = "; ".join(gate.get("reasons", [])) or "it was never measured"
        variant, reason = "uint8", f"uint8: the int8 variant did not pass the quality gate ({why})"
    else:
        uint8 = open_cpu(gens["uint8"])
        r = probe(int8, uint8, uint8.batch_size)
        ratio = r["int8"] / r["uint8"]
        faster = ratio >= SPEEDUP_NEEDED
        variant = "int8" if faster else "uint8"
        reason = (f"{variant}: int8 passed the quality gate and ran at {ratio:.2f}x uint8 on this CPU "
                  f"({r['int8']:.0f} vs {r['uint8']:.0f} img/s, {threads or os.cpu_count()} threads)"
                  + ("" if faster else f"; it is used from {SPEEDUP_NEEDED:.2f}x"))
    _remember(key, {"variant": variant, "reason": reason, "when": time.time(), "cpu": cpu_name()})
    return variant, reason
