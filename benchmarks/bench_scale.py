"""Sharded output and the Ray engine against local PNG files.

Every run is its own `gansample generate` process (wall time from start to exit, peak RSS
from getrusage of the finished child), sizes and backends interleaved within a round.

    python benchmarks/bench_scale.py                          # n = 20,000 and 100,000
    python benchmarks/bench_scale.py --n 20000 --rounds 2 --skip-ray
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = [  # label, extra arguments
    ("local png files", ["--format", "png"]),
    ("local parquet", ["--format", "parquet"]),
    ("local webdataset", ["--format", "webdataset"]),
    ("ray parquet, 1 worker", ["--format", "parquet", "--engine", "ray", "--workers", "1"]),
    ("ray parquet, 2 workers", ["--format", "parquet", "--engine", "ray", "--workers", "2"]),
]


def run(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one gansample process, measured by a bare parent."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "gansample", *args],
                         capture_output=True, text=True, check=True)
    secs, rss = out.stdout.split()
    return float(secs), int(rss) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--skip-ray", action="store_true")
    a = ap.parse_args()
    cases = [c for c in CASES if not (a.skip_ray and "ray" in c[0])]
    work = Path(tempfile.mkdtemp(prefix="gansample-scale-"))
    res: dict[tuple[str, int], list[tuple[float, float]]] = {}
    startup: list[float] = []
    try:
        for _ in range(a.rounds):
            if not a.skip_ray:  # what Ray's start-up costs: a 64-image run
                out = work / "startup"
                startup.append(run(["generate", "-n", "64", "--format", "parquet", "--engine", "ray", "--workers",
                                    "1", "--outdir", str(out), "-q", "--device", "cpu"])[0])
                shutil.rmtree(out, ignore_errors=True)
            for n in a.n:
                for label, extra in cases:
                    out = work / "out"
                    res.setdefault((label, n), []).append(
                        run(["generate", "-n", str(n), *extra, "--outdir", str(out), "-q", "--device", "cpu"]))
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"# generate on this machine (bundled model; median of {a.rounds} round(s), each run its own process)\n")
    print("| backend | n | seconds | img/s | vs local PNG | peak RSS (the gansample process; Ray actors apart) |")
    print("|---|---|---|---|---|---|")
    for n in a.n:
        base = statistics.median(t for t, _ in res[("local png files", n)])
        for label, _ in cases:
            t = statistics.median(x for x, _ in res[(label, n)])
            rss = statistics.median(r for _, r in res[(label, n)])
            print(f"| {label} | {n:,} | {t:.1f} | {n / t:,.0f} | {base / t:.2f}x | {rss:.0f} MB |")
    if startup:
        print(f"\nRay start-up (a 64-image `--engine ray` run, whole process): {statistics.median(startup):.1f} s")


if __name__ == "__main__":
    main()
